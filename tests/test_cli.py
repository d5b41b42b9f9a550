"""The command line: round trips from a run folder, and clear errors (exit 2, no traceback)."""
import json
import shutil

import pytest

from rnnkit.cli import main

SMALL = ["--hidden", "16", "--layers", "1", "--embedding-size", "8", "--seq-len", "16", "--batch-size", "4",
         "--eval-every", "10", "--no-progress", "--sample-length", "20", "--threads", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    text = d / "train.txt"
    text.write_text("abcabcabd\n" * 200, encoding="utf-8")
    out = d / "run"
    assert main(["train", "lm", "--data", str(text), "--out", str(out), "--max-steps", "30", *SMALL]) == 0
    return out, text


def _err(capsys, argv, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and "Traceback" not in err
    return err


def test_generate_and_evaluate_from_the_run_folder_alone(run, capsys):
    out, text = run
    capsys.readouterr()
    assert main(["generate", str(out), "--prime", "ab", "--length", "12", "--seed", "1",
                 "--num-samples", "3", "--top-k", "3", "--top-p", "0.9", "--temperature", "0.7"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("--- sample") == 3
    assert main(["generate", str(out), "--prime", "ab", "--length", "12", "--seed", "1",
                 "--num-samples", "3", "--top-k", "3", "--top-p", "0.9", "--temperature", "0.7"]) == 0
    assert capsys.readouterr().out == printed  # same seed, same text
    assert main(["evaluate", str(out), "--data", str(text), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"loss", "perplexity", "bpc"} <= metrics.keys()
    assert abs(metrics["bpc"] - metrics["loss"] / 0.6931471805599453) < 1e-9


def test_data_errors(tmp_path, capsys):
    assert "file not found" in _err(capsys, ["train", "lm", "--data", str(tmp_path / "nope.txt"),
                                             "--out", str(tmp_path / "r1"), "--max-steps", "1"])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "empty" in _err(capsys, ["train", "lm", "--data", str(empty), "--out", str(tmp_path / "r2")])
    bad = tmp_path / "latin.txt"
    bad.write_bytes(("hello\nworld\ncaf" + "\xe9" + " au lait\n").encode("latin-1") * 3)
    err = _err(capsys, ["train", "lm", "--data", str(bad), "--out", str(tmp_path / "r3")])
    assert "line 3" in err and "0xe9" in err and "--encoding" in err


def test_generation_option_errors(run, capsys):
    out, _ = run
    assert "lacks" in _err(capsys, ["generate", str(out), "--prime", "abz"])
    assert "temperature" in _err(capsys, ["generate", str(out), "--prime", "a", "--temperature", "0"])
    assert "top_p" in _err(capsys, ["generate", str(out), "--prime", "a", "--top-p", "1.5"]).replace("-", "_")
    assert "top_p" in _err(capsys, ["generate", str(out), "--prime", "a", "--top-p", "0"]).replace("-", "_")
    assert "no such run folder" in _err(capsys, ["generate", str(out) + "x", "--prime", "a"])


def test_resume_with_other_options_names_the_fields(run, tmp_path, capsys):
    out, text = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    err = _err(capsys, ["train", "lm", "--out", str(copy), "--resume", "--hidden", "32", "--lr", "0.01"])
    assert "model.hidden_size" in err and "train.lr" in err
    err = _err(capsys, ["train", "lm", "--data", str(text), "--out", str(copy), "--max-steps", "30", *SMALL])
    assert "--resume" in err  # never trains over an existing run


def test_corrupt_weights_are_reported(run, tmp_path, capsys):
    out, _ = run
    copy = tmp_path / "corrupt"
    shutil.copytree(out, copy)
    w = copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    assert "truncated or corrupt" in _err(capsys, ["generate", str(copy), "--prime", "a"])


def test_one_to_many_generates_for_a_label(names_dir, tmp_path, capsys):
    out = tmp_path / "names_run"
    assert main(["train", "lm", "--data", str(names_dir), "--out", str(out), "--max-steps", "150",
                 "--hidden", "32", "--layers", "1", "--embedding-size", "16", "--batch-size", "8",
                 "--lr", "0.01", "--eval-every", "50", "--no-progress", "--sample-length", "0"]) == 0
    capsys.readouterr()
    assert main(["generate", str(out), "--label", "Russian", "--length", "12", "--temperature", "0.01",
                 "--seed", "0"]) == 0
    russian = capsys.readouterr().out.strip()
    assert main(["generate", str(out), "--label", "Japanese", "--length", "12", "--temperature", "0.01",
                 "--seed", "0"]) == 0
    japanese = capsys.readouterr().out.strip()
    assert russian.endswith("ov") and russian != japanese
    assert "unknown label" in _err(capsys, ["generate", str(out), "--label", "Klingon"])
    assert main(["evaluate", str(out), "--data", str(names_dir), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["sequences"] == 60 and 0 < m["loss"] < 3


def test_hello_learns_hello(capsys):
    assert main(["hello"]) == 0
    printed = capsys.readouterr().out
    assert "generated from 'h': 'hello'" in printed and "p(o)" in printed


@pytest.mark.parametrize("argv", [["--help"], ["train", "lm", "--help"], ["generate", "--help"],
                                  ["evaluate", "--help"], ["hello", "--help"]])
def test_help(argv, capsys):
    assert main(argv) == 0 and "usage: rnnkit" in capsys.readouterr().out
