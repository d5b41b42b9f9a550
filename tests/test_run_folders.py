"""Run folders never get stuck, and a command given the wrong run says which commands take it."""
from __future__ import annotations

import json

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit.cli import main

TINY = ["--max-steps", "4", "--eval-every", "2", "--hidden", "8", "--layers", "1", "--embedding-size", "4",
        "--seq-len", "8", "--batch-size", "2", "--sample-length", "0", "--no-progress", "--threads", "1"]


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def lm_run(tmp_path, tiny_text):
    out = tmp_path / "lm"
    assert main(["train", "lm", "--data", str(tiny_text), "--out", str(out), *TINY]) == 0
    return out


def test_a_folder_without_a_checkpoint_is_replaced_by_a_rerun_and_resume_starts_over(tmp_path, tiny_text, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ckpt.CONFIG).write_text(json.dumps({"task": "lm", "model": {}, "data": {}, "train": {}}))
    (out / "vocab.json").write_text("{}")  # what a kill before the first checkpoint leaves
    assert main(["train", "lm", "--data", str(tiny_text), "--out", str(out), *TINY]) == 0
    assert "stopped before its first checkpoint; starting it afresh" in capsys.readouterr().out
    assert (out / ckpt.LAST / ckpt.STATE).is_file()

    other = tmp_path / "other"
    other.mkdir()
    (other / ckpt.CONFIG).write_text(json.dumps({"task": "lm", "model": {}, "data": {}, "train": {}}))
    assert main(["train", "lm", "--data", str(tiny_text), "--out", str(other), "--resume", *TINY]) == 0
    assert "has no completed checkpoint" in capsys.readouterr().out
    assert ckpt.load_training_state(other)["step"] == 4


def test_resume_removes_what_a_killed_write_left_and_refuses_overwrite_with_it(lm_run, tiny_text, capsys):
    stale = lm_run / ckpt.LAST / ".state.safetensors.123.tmp"
    stale.write_bytes(b"partial")
    assert main(["train", "lm", "--data", str(tiny_text), "--out", str(lm_run), "--resume",
                 *TINY[:-4], "--max-steps", "6", "--no-progress", "--threads", "1"]) == 2  # --max-steps differs
    capsys.readouterr()
    assert main(["train", "lm", "--out", str(lm_run), "--resume", "--no-progress", "--threads", "1"]) == 0
    assert not stale.exists() and "removed 1 unfinished file" in capsys.readouterr().out
    assert main(["train", "lm", "--out", str(lm_run), "--resume", "--overwrite"]) == 2
    assert "--resume and --overwrite" in _err(capsys)
    assert main(["train", "lm", "--out", str(lm_run / "new"), "--resume", "--overwrite"]) == 2
    assert "--resume and --overwrite" in _err(capsys)


@pytest.mark.parametrize("argv,words", [
    (["generate", "RUN"], ["a run of the classify task", "`rnnkit generate`", "takes lm runs", "rnnkit predict"]),
    (["inspect", "RUN", "--text", "ab", "--out", "x.png"], ["a run of the classify task", "rnnkit inspect"]),
    (["translate", "RUN"], ["a run of the classify task", "seq2seq"]),
])
def test_a_command_given_another_task_s_run_names_both(tmp_path, capsys, argv, words):
    run = tmp_path / "cls"
    run.mkdir()
    (run / ckpt.CONFIG).write_text(json.dumps({"task": "classify", "model": {}, "data": {}, "train": {}}))
    assert main([str(run) if a == "RUN" else a for a in argv]) == 2
    err = _err(capsys)
    for w in words:
        assert w in err, (w, err)


def test_predict_on_a_language_model_names_generate(lm_run, capsys):
    assert main(["predict", str(lm_run)]) == 2
    err = _err(capsys)
    assert "a run of the lm task" in err
    assert "rnnkit generate" in err


@pytest.mark.parametrize("content", ["[1, 2]", '{"task": 3}', '{"task": "lm", "model": []}'])
def test_a_config_that_is_not_a_run_s_is_named(tmp_path, capsys, content):
    run = tmp_path / "odd"
    run.mkdir()
    (run / ckpt.CONFIG).write_text(content)
    for argv in (["predict", str(run)], ["serve", str(run)], ["evaluate", str(run)]):
        assert main(argv) == 2
        assert "not an rnnkit run configuration" in _err(capsys)


def test_evaluate_refuses_options_that_do_not_apply_to_the_run(lm_run, capsys):
    assert main(["evaluate", str(lm_run), "--src", "a.txt"]) == 2
    assert "--src does not apply" in _err(capsys)


@pytest.mark.parametrize("cell", ["mingru", "lru", "slstm", "mlstm", "minlstm"])
def test_every_cell_trains_generates_and_export_refuses_the_new_ones_by_name(tmp_path, tiny_text, capsys, cell):
    pytest.importorskip("onnx")
    out = tmp_path / cell
    assert main(["train", "lm", "--data", str(tiny_text), "--out", str(out), "--cell", cell, *TINY]) == 0
    assert main(["generate", str(out), "--length", "5", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--out", str(tmp_path / "x.onnx")]) == 2
    assert f"the {cell} cell, which ONNX export cannot write" in _err(capsys)
    assert not (tmp_path / "x.onnx").exists()


def test_an_ema_run_saves_the_average_resumes_with_it_and_its_raw_weights_can_be_scored(tmp_path, tiny_text,
                                                                                        capsys):
    import runpy
    import sys

    out, raw = tmp_path / "ema", tmp_path / "raw"
    assert main(["train", "lm", "--data", str(tiny_text), "--out", str(out), "--ema", "0.9", *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["ema"] == 0.9
    state = ckpt.load_training_state(out)
    saved, _ = ckpt.load_tensors(out / "model.safetensors")
    assert all(torch.equal(saved[k], state["ema"][k]) for k in state["ema"])
    # resuming takes --ema from the run; another value is refused before anything is written
    assert main(["train", "lm", "--out", str(out), "--resume", "--ema", "0.5", "--max-steps", "6"]) == 2
    assert "ema" in _err(capsys)
    assert main(["train", "lm", "--data", str(tiny_text), "--out", str(tmp_path / "bad"), "--ema", "1",
                 *TINY]) == 2
    assert "--ema" in _err(capsys) and not (tmp_path / "bad").exists()

    argv = sys.argv
    sys.argv = ["raw_weights.py", str(out), str(raw)]
    try:
        runpy.run_path("scripts/raw_weights.py", run_name="__main__")
    finally:
        sys.argv = argv
    refused = (([str(out), str(raw)], "exists"), ([str(tmp_path / "none"), str(tmp_path / "x")], "raw_weights:"))
    for argv_bad, words in refused:
        sys.argv = ["raw_weights.py", *argv_bad]
        try:
            with pytest.raises(SystemExit, match=words):
                runpy.run_path("scripts/raw_weights.py", run_name="__main__")
        finally:
            sys.argv = argv
    weights, _ = ckpt.load_tensors(raw / "model.safetensors")
    assert all(torch.equal(weights[k], state["model"][k]) for k in state["model"])
    assert main(["evaluate", str(raw), "--data", str(tiny_text), "--json"]) == 0
    assert main(["evaluate", str(out), "--data", str(tiny_text), "--json"]) == 0
    raw_loss, ema_loss = (json.loads(line)["loss"] for line in capsys.readouterr().out.split("\n")
                          if line.startswith("{"))
    assert raw_loss != ema_loss
