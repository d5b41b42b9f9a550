"""Every option is declared once and checked before anything is written.

The table-driven tests derive a bad value for every declared option of every
``rnnkit train`` task from its declaration (below a lower bound, above an upper
bound, outside the choices, not a number) and check that the command exits 2 with
one line naming the option, no traceback, and no run folder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pytest

from rnnkit import options
from rnnkit.cli import main
from rnnkit.errors import ConfigError
from rnnkit.options import opt
from rnnkit.tasks import TASKS
from rnnkit.trainer import TrainConfig


def _bad_values(o: options.Option) -> list[str]:
    s = o.spec
    bad = []
    if s.choices is not None:
        bad.append("not-a-choice")
    if o.type in (int, float):
        bad.append("big")
        if s.ge is not None:  # (for an option whose 0 means "off", below 0)
            below = s.ge - 1 if o.type is int else s.ge - 0.5
            bad.append(str(int(below) - (1 if s.zero_is_none and below == 0 else 0) if o.type is int else below))
        if s.gt is not None:  # (0 itself is allowed where it means "off": below it)
            at = s.gt - (1 if s.zero_is_none and s.gt == 0 else 0)
            bad.append(str(int(at) if o.type is int else at))
        if s.le is not None:
            bad.append(str(int(s.le) + 1 if o.type is int else s.le + 0.5))
        if s.lt is not None:
            bad.append(str(int(s.lt) if o.type is int else s.lt))
    if o.type is float:
        bad += ["nan", "inf"]
    if s.parse is options.encoding:
        bad.append("no-such-codec")
    return bad


def _sections(task):
    from rnnkit.cli import _train_sections

    return _train_sections(task)


CASES = [(task.name, o.flag, value)
         for task in TASKS.values() for cls in _sections(task).values()
         for o in options.user_options(cls) for value in _bad_values(o)]


def _refused(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def test_every_option_has_help_and_a_bad_value_to_try():
    assert len(CASES) > 150
    for task in TASKS.values():
        for cls in _sections(task).values():
            for o in options.user_options(cls):
                assert o.spec.help, f"{cls.__name__}.{o.name} has no help text"


@pytest.mark.parametrize("task,flag,value", CASES)
def test_a_bad_value_of_any_option_exits_2_in_one_line_and_writes_nothing(tmp_path, capsys, task, flag, value):
    out = tmp_path / "run"
    _refused(capsys, ["train", task, flag, value, "--out", str(out)], flag)
    assert not out.exists()


@pytest.mark.parametrize("argv,words", [
    (["lm", "--clip-norm", "-1"], ["--clip-norm", ">= 0"]),
    (["lm", "--lr", "nan"], ["--lr"]),
    (["lm", "--tie-weights", "--embedding-size", "16"], ["--tie-weights", "--embedding-size 16"]),
    (["lm", "--tie-weights", "--embedding-size", "0"], ["--tie-weights"]),
    (["lm", "--max-steps", "5", "--epochs", "1"], ["--max-steps and --epochs"]),
    (["lm", "--valid-frac", "0.2"], ["unrecognized"]),  # no abbreviations
    (["classify", "--folds", "1", "--train", "x.tsv"], ["--folds"]),
    (["seq2seq", "--train", "a.tsv", "--train-src", "a", "--train-tgt", "b"], ["--train", "--train-src"]),
    (["seq2seq", "--hidden", "7"], ["--hidden 7", "even"]),
    (["lm", "--device", "cuda"], ["cuda"]),
    (["lm", "--precision", "fp16"], ["fp16"]),
    (["lm", "--threads", "0"], ["--threads"]),
])
def test_findings_are_refused_before_the_run_folder_exists(tmp_path, capsys, argv, words):
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    _refused(capsys, ["train", *argv, "--out", str(out)], *words)
    assert not out.exists()


def test_yaml_values_are_checked_against_the_declarations(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("hidden: big\n", encoding="utf-8")
    _refused(capsys, ["train", "lm", "--config", str(cfg), "--out", str(tmp_path / "r")], str(cfg), "hidden", "'big'")
    cfg.write_text("hiden: 4\n", encoding="utf-8")
    _refused(capsys, ["train", "lm", "--config", str(cfg), "--out", str(tmp_path / "r")], "unknown options hiden")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,words", [
    (["generate", "RUN", "--length", "0"], ["--length"]),
    (["generate", "RUN", "--seed", str(10**30)], ["--seed"]),
    (["generate", "RUN", "--top-p", "1.5"], ["--top-p"]),
    (["translate", "RUN", "--beam", "0"], ["--beam"]),
    (["translate", "RUN", "--sample", "--beam", "4"], ["--sample and --beam 4"]),
    (["serve", "RUN", "--port", "-1"], ["--port"]),
    (["serve", "RUN", "--port", "99999"], ["--port"]),
])
def test_inference_options_are_checked(tmp_path, capsys, argv, words):
    (tmp_path / "RUN").mkdir()
    _refused(capsys, [str(tmp_path / "RUN") if a == "RUN" else a for a in argv], *words)


@dataclass
class _Example:
    size: int = opt(4, ge=1, help="a size")
    rate: Optional[float] = opt(None, gt=0, le=1, help="a rate")
    name: str = opt("a", choices=("a", "b"), help="a name")
    off: Optional[int] = opt(5, ge=1, zero_is_none=True, help="a limit")

    def __post_init__(self):
        options.validate(self)


def test_declarations_check_the_api_too():
    assert _Example(size=3, rate=1, off=0) == _Example(3, 1.0, "a", None)
    for bad in ({"size": 0}, {"size": 2.5}, {"size": True}, {"rate": math.nan}, {"rate": 0}, {"name": "c"},
                {"off": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            _Example(**bad)
    with pytest.raises(ConfigError, match="max_steps"):
        TrainConfig(max_steps=0)


def test_flags_come_from_the_declarations_and_do_not_collide():
    from rnnkit.cli import build_parser

    parser = build_parser()
    assert parser is not None  # building it checks every flag is declared once per command
    for task in TASKS.values():
        flags = [o.flag for cls in _sections(task).values() for o in options.user_options(cls)]
        assert len(flags) == len(set(flags)), task.name


def test_check_user_values_runs_the_rules_between_fields_before_the_data_is_read():
    from rnnkit.models import LanguageModelConfig, Seq2SeqConfig

    options.check_user_values(LanguageModelConfig, {"hidden_size": 16, "embedding_size": 16, "tie_weights": True})
    with pytest.raises(ConfigError, match="tie-weights"):
        options.check_user_values(LanguageModelConfig, {"tie_weights": True})
    with pytest.raises(ConfigError, match="even"):
        options.check_user_values(Seq2SeqConfig, {"hidden_size": 5})


def test_an_unexpected_value_type_is_named(capsys):
    o = options.find(TrainConfig, "batch_size")
    with pytest.raises(ConfigError, match=r"f.yaml: batch_size: '8x' is not allowed; expected an integer >= 1"):
        options.coerce(o, "8x", source="f.yaml")
    assert options.coerce(o, 8, source="f.yaml") == 8


def test_best_metric_must_be_one_the_task_reports(tmp_path, tiny_text, capsys):
    out = tmp_path / "run"
    _refused(capsys, ["train", "lm", "--data", str(tiny_text), "--best-metric", "accuracy", "--out", str(out),
                      "--max-steps", "1", "--threads", "1"], "--best-metric accuracy", "reports loss")
    assert not out.exists()
