"""Device choice and mixed precision: bf16 autocast on CPU, fp16 refused off CUDA, checks of the options."""
import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit.batching import SequenceBatches, StreamBatches, lm_batch
from rnnkit.errors import ConfigError
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.trainer import TrainConfig, Trainer, resolve_device

CUDA = torch.cuda.is_available()
STREAM = torch.tensor([3 + (i * 7 + i // 5) % 9 for i in range(400)])


def _trainer(run_dir=None, stream=True, **cfg):
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=12, hidden_size=16, embedding_size=8))
    if stream:
        data = StreamBatches(STREAM, 4, seq_len=8)
    else:
        seqs = [[3 + (i * j + i) % 9 for j in range(2 + i % 7)] for i in range(40)]
        data = SequenceBatches(seqs, 8, make_batch=lambda s, l: lm_batch(s, 0, 1, 2), seed=1)
    config = TrainConfig(**{"max_steps": 30, "eval_every": 5, "lr": 0.02, "device": "cpu", **cfg})
    return Trainer(model, config, data, run_dir=run_dir, progress=False, log=lambda s: None)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "sequences"])
def test_bf16_on_cpu_trains_under_autocast(stream):
    tr = _trainer(stream=stream, precision="bf16")
    history = tr.fit()
    assert tr.scaler is None and tr.amp_dtype == torch.bfloat16
    assert history[-1]["train_loss"] < 0.85 * history[0]["train_loss"]
    fp32 = _trainer(stream=stream).fit()  # bf16 follows the fp32 run closely
    assert history[-1]["train_loss"] == pytest.approx(fp32[-1]["train_loss"], rel=0.03)
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())  # weights stay fp32
    if stream:  # the recurrent kernel ran in bf16: its carried state says so
        assert tr.carry.h.dtype == torch.bfloat16


def test_bf16_resume_is_exact(tmp_path):
    full = _trainer(tmp_path / "full", precision="bf16", max_steps=8, eval_every=4)
    full.fit()
    _trainer(tmp_path / "cut", precision="bf16", max_steps=5, eval_every=4).fit()
    resumed = _trainer(tmp_path / "cut", precision="bf16", max_steps=8, eval_every=4)
    resumed.fit(resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ckpt.load_training_state(tmp_path / "cut")["step"] == 8


def test_fp32_default_is_unchanged():
    tr = _trainer(max_steps=2)
    assert TrainConfig().device == "auto" and TrainConfig().precision == "fp32"
    assert tr.amp_dtype is None and tr.scaler is None and tr.device == torch.device("cpu")


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        TrainConfig(precision="fp16", device="cpu").validate()
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        _trainer(precision="fp16")
    if not CUDA:  # auto resolves to the CPU here
        with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
            _trainer(precision="fp16", device="auto")


def test_device_and_precision_are_checked():
    with pytest.raises(ConfigError, match="device: 'tpu' is not allowed; expected one of auto, cpu, cuda, mps"):
        TrainConfig(device="tpu")
    with pytest.raises(ConfigError, match="precision: 'fp8' is not allowed; expected one of fp32, bf16, fp16"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="device must be one of"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))
    if not CUDA:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    tr = _trainer(tmp_path / "full", stream=False, device="cuda", precision=precision, max_steps=12, eval_every=4)
    history = tr.fit()
    assert next(tr.model.parameters()).device.type == "cuda"
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (tr.scaler is not None) == (precision == "fp16")
    state = ckpt.load_training_state(tmp_path / "full")
    assert ("scaler" in state) == (precision == "fp16")
    # resume on the GPU continues the same run
    _trainer(tmp_path / "cut", stream=True, device="cuda", precision=precision, max_steps=6, eval_every=4).fit()
    resumed = _trainer(tmp_path / "cut", stream=True, device="cuda", precision=precision, max_steps=12,
                       eval_every=4)
    resumed.fit(resume=True)
    assert resumed.step == 12 and resumed.carry.h.device.type == "cuda"
