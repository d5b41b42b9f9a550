"""Trainer and run folders: exact resume after SIGKILL, atomic files, config checks."""
import signal
import subprocess
import sys
import time

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit.batching import StreamBatches
from rnnkit.errors import CheckpointError, ConfigError
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.trainer import TrainConfig, Trainer, TrainingError, lr_factor

TRAIN_ARGS = ["--deterministic", "--max-steps", "40", "--save-every", "2", "--eval-every", "20", "--hidden", "24",
              "--layers", "2", "--embedding-size", "8", "--dropout", "0.1", "--seq-len", "16",
              "--batch-size", "4", "--no-progress", "--sample-length", "0", "--threads", "1"]


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "rnnkit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _final_weights(run):
    return ckpt.load_training_state(run)["model"]


@pytest.mark.xfail(torch.cuda.is_available(), strict=False,
                   reason="on an H200 (torch 2.11+cu130, 2026-11-27) the resumed run's weights differed from the "
                          "uninterrupted run's by up to 1e-3, with --deterministic too; CPU runs are bitwise equal. "
                          "--deterministic now draws dropout between stacked layers from torch's generator instead "
                          "of cuDNN's (which checkpoints cannot save); not yet confirmed on a GPU (docs/gpu-results.md)")
def test_sigkill_then_resume_gives_bitwise_same_weights(tmp_path, tiny_text):
    full, cut = tmp_path / "full", tmp_path / "cut"
    p = _cli(["train", "lm", "--data", str(tiny_text), "--out", str(full), *TRAIN_ARGS])
    assert p.wait(timeout=240) == 0, p.stderr.read()

    p = _cli(["train", "lm", "--data", str(tiny_text), "--out", str(cut), *TRAIN_ARGS])
    state = cut / ckpt.LAST / ckpt.STATE
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let it run on a little, then kill at an arbitrary moment
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = ckpt.load_training_state(cut)["step"]
    assert 0 < killed_at < 40, "the kill should land mid-run; make the run longer if this fails"

    p = _cli(["train", "lm", "--out", str(cut), "--resume", "--no-progress", "--sample-length", "0",
              "--threads", "1"])
    assert p.wait(timeout=240) == 0, p.stderr.read()
    a, b = _final_weights(full), _final_weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ckpt.load_training_state(cut)["step"] == 40


def _tiny_trainer(tmp_path, **cfg):
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=5, hidden_size=8, num_layers=1, embedding_size=4))
    data = StreamBatches(torch.arange(200) % 5, batch_size=2, seq_len=8)
    return Trainer(model, TrainConfig(**{"max_steps": 6, "eval_every": 3, **cfg}), data,
                   evaluate=lambda m: {"loss": 1.0}, run_dir=tmp_path, progress=False, log=lambda s: None)


def test_trainer_writes_run_folder(tmp_path):
    _tiny_trainer(tmp_path).fit()
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "loss.png").stat().st_size > 1000
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 3
    assert not list(tmp_path.glob("**/*.tmp"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    tr = _tiny_trainer(tmp_path, eval_every=2)
    tr.fit()
    good = (tmp_path / "model.safetensors").read_bytes()
    tr2 = _tiny_trainer(tmp_path, max_steps=8, eval_every=2)
    with torch.no_grad():
        tr2.model.out.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="last good checkpoint"):
        tr2.fit()
    assert (tmp_path / "model.safetensors").read_bytes() == good


def test_early_stopping(tmp_path):
    values = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    tr = _tiny_trainer(tmp_path, max_steps=100, eval_every=1, patience=2)
    tr.evaluate_fn = lambda m: {"loss": next(values)}
    tr.fit()
    assert tr.step == 4 and tr.best == 0.5


def test_lr_schedules():
    c = TrainConfig(max_steps=10, lr=1.0, schedule="cosine", warmup_steps=2)
    f = [lr_factor(c, s, 10) for s in range(10)]
    assert f[0] == 0.5 and f[1] == 1.0 and f[2] == 1.0 and f[-1] < 0.05
    assert all(a >= b for a, b in zip(f[1:], f[2:]))
    lin = TrainConfig(max_steps=4, schedule="linear")
    assert [lr_factor(lin, s, 4) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ConfigError):
        TrainConfig(schedule="bogus").validate()


def test_corrupt_and_truncated_weights_are_reported(tmp_path):
    _tiny_trainer(tmp_path).fit()
    w = tmp_path / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_tensors(w)
    w.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_tensors(w)


def test_weights_file_holds_no_pickle(tmp_path):
    _tiny_trainer(tmp_path).fit()
    for f in [tmp_path / "model.safetensors", tmp_path / "last" / "state.safetensors"]:
        head = f.read_bytes()[:16]
        assert not head.startswith(b"\x80") and not head.startswith(b"PK")  # pickle / torch zip
        ckpt.load_tensors(f)


def test_max_time_stops_after_evaluating_and_saving(tmp_path):
    tr = _tiny_trainer(tmp_path, max_steps=1000, eval_every=500, max_time=1e-9)
    history = tr.fit()
    assert tr.step == 1 and len(history) == 1 and "valid_loss" in history[0]
    assert ckpt.load_training_state(tmp_path)["step"] == 1


def test_deterministic_kernels_hold_during_fit_and_are_restored(tmp_path):
    seen = []
    trainer = _tiny_trainer(tmp_path, deterministic=True)
    trainer.evaluate_fn = lambda m: seen.append(torch.are_deterministic_algorithms_enabled()) or {"loss": 1.0}
    assert not torch.are_deterministic_algorithms_enabled()
    trainer.fit()
    assert seen == [True, True]  # both evaluations ran with deterministic kernels only
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    seen.clear()
    _tiny = _tiny_trainer(tmp_path / "plain")
    _tiny.evaluate_fn = lambda m: seen.append(torch.are_deterministic_algorithms_enabled()) or {"loss": 1.0}
    _tiny.fit()
    assert seen == [False, False]


def _trained_weights(tmp_path, steps):
    tr = _tiny_trainer(tmp_path, max_steps=steps, eval_every=steps)
    tr.fit()
    return {k: v.clone() for k, v in tr.model.named_parameters()}


def test_ema_holds_the_moving_average_of_the_trained_weights(tmp_path):
    raw = [dict(_tiny_trainer(tmp_path / "init").model.named_parameters())]
    raw[0] = {k: v.detach().clone() for k, v in raw[0].items()}
    raw += [_trained_weights(tmp_path / f"raw{t}", t) for t in range(1, 5)]
    assert not torch.equal(raw[1]["out.weight"], raw[2]["out.weight"])

    expected, average = [], dict(raw[0])
    for t in range(4):  # step t (0-based) moves the weights raw[t] -> raw[t + 1]
        decay = min(0.2, (1 + t) / (10 + t))  # (1+t)/(10+t) while smaller: 0.1, 0.18, then 0.2
        average = {k: decay * average[k] + (1 - decay) * raw[t + 1][k] for k in average}
        expected.append(average)

    seen, losses = [], iter([4.0, 3.0, 2.0, 1.0])
    tr = _tiny_trainer(tmp_path / "ema", max_steps=4, eval_every=1, ema=0.2)
    tr.evaluate_fn = lambda m: seen.append({k: v.clone() for k, v in m.named_parameters()}) or \
        {"loss": next(losses)}
    tr.fit()
    for got, want in zip(seen, expected):  # validation sees the average after each step
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    for k, v in tr.model.named_parameters():  # training itself runs on the raw weights, untouched
        assert torch.equal(v, raw[4][k]), k
    state = ckpt.load_training_state(tmp_path / "ema")
    saved, _ = ckpt.load_tensors(tmp_path / "ema" / "model.safetensors")
    for k in expected[-1]:
        assert torch.equal(state["model"][k], raw[4][k])
        assert torch.equal(saved[k], state["ema"][k])  # the best (last) evaluation saved the average
        torch.testing.assert_close(saved[k], expected[-1][k], rtol=0, atol=1e-6)


def test_ema_resumes_exactly(tmp_path):
    whole = _tiny_trainer(tmp_path / "whole", ema=0.9, save_every=1)
    whole.fit()
    cut = _tiny_trainer(tmp_path / "cut", ema=0.9, max_time=1e-9)  # stops after its first step
    cut.fit()
    assert ckpt.load_training_state(tmp_path / "cut")["step"] == 1
    resumed = _tiny_trainer(tmp_path / "cut", ema=0.9)
    resumed.fit(resume=True)
    a, b = ckpt.load_training_state(tmp_path / "whole"), ckpt.load_training_state(tmp_path / "cut")
    assert a["step"] == b["step"] == 6
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert not torch.equal(a["ema"]["out.weight"], a["model"]["out.weight"])


def test_ema_option_bounds():
    assert TrainConfig(max_steps=1, ema=0.999).ema == 0.999
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="ema"):
            TrainConfig(max_steps=1, ema=bad)


def test_ema_with_tied_weights_averages_the_one_tensor_and_saves_it_under_both_names(tmp_path):
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=5, hidden_size=8, num_layers=1, embedding_size=8,
                                              tie_weights=True))
    data = StreamBatches(torch.arange(200) % 5, batch_size=2, seq_len=8)
    tr = Trainer(model, TrainConfig(max_steps=4, eval_every=4, ema=0.5), data, evaluate=lambda m: {"loss": 1.0},
                 run_dir=tmp_path, progress=False, log=lambda s: None)
    tr.fit()
    assert model.out.weight is model.embedding.weight
    saved, _ = ckpt.load_tensors(tmp_path / "model.safetensors")
    average = tr.ema["embedding.weight"]
    assert torch.equal(saved["embedding.weight"], average) and torch.equal(saved["out.weight"], average)
    assert not torch.equal(average, model.embedding.weight)
