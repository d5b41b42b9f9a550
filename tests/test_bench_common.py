"""benchmarks/_common.py: interleaved timings and their spread, the environment record, --repeats."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_common():
    spec = importlib.util.spec_from_file_location("bench_common_under_test", ROOT / "benchmarks" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()


def scripted_clock(durations):
    """A clock that, read twice per call, measures ``durations`` in order (with gaps between calls)."""
    readings, now = [], 100.0
    for d in durations:
        readings += [now, now + d]
        now += d + 0.25
    it = iter(readings)
    return lambda: next(it)


def interleave(**per_contestant):
    """The durations in the order timings() measures them: round by round, contestants in order."""
    return [d for round_ in zip(*per_contestant.values()) for d in round_]


A, B = [1.0, 2.0, 4.0, 3.0], [2.0, 3.0, 6.0, 12.0]


def fake_contestants(log):
    return {"a": lambda: log.append("a"), "b": lambda: log.append("b")}


def test_timings_statistics_on_scripted_durations():
    log = []
    t = common.timings(fake_contestants(log), rounds=4, clock=scripted_clock(interleave(a=A, b=B)))
    assert log == ["a", "b"] + ["a", "b"] * 4  # one warm-up call each, then interleaved rounds
    assert t["rounds"] == 4
    a = t["contestants"]["a"]
    assert a["seconds"] == A
    assert (a["median"], a["min"], a["max"]) == (2.5, 1.0, 4.0)
    assert (a["q1"], a["q3"], a["iqr"]) == (1.75, 3.25, 1.5)
    b = t["contestants"]["b"]
    assert (b["median"], b["min"], b["max"], b["iqr"]) == (4.5, 2.0, 12.0, 7.5 - 2.75)


def test_per_round_ratios_against_hand_values():
    t = common.timings(fake_contestants([]), rounds=4, clock=scripted_clock(interleave(a=A, b=B)))
    a_over_b = t["ratios"]["a"]["b"]  # b's seconds / a's: how much faster a ran, round by round
    assert a_over_b["per_round"] == [2.0, 1.5, 1.5, 4.0]
    assert (a_over_b["median"], a_over_b["min"], a_over_b["max"]) == (1.75, 1.5, 4.0)
    b_over_a = t["ratios"]["b"]["a"]
    assert b_over_a["per_round"] == pytest.approx([0.5, 2 / 3, 2 / 3, 0.25])
    assert b_over_a["min"] == 0.25 and b_over_a["max"] == pytest.approx(2 / 3)
    # the ratio of medians (4.5 / 2.5 = 1.8) is not what a round-by-round comparison gives
    assert a_over_b["median"] != pytest.approx(t["contestants"]["b"]["median"] / t["contestants"]["a"]["median"])


def test_three_contestants_give_every_pair():
    t = common.timings({"a": lambda: None, "b": lambda: None, "c": lambda: None}, rounds=2, warm_up=False,
                       clock=scripted_clock(interleave(a=[1.0, 2.0], b=[3.0, 4.0], c=[1.0, 1.0])))
    assert {a: sorted(r) for a, r in t["ratios"].items()} == {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]}
    assert t["ratios"]["c"]["b"]["per_round"] == [3.0, 4.0]


def test_median_times_keeps_its_answer(monkeypatch):
    monkeypatch.setattr(common, "time", types.SimpleNamespace(perf_counter=scripted_clock(interleave(a=A, b=B))))
    assert common.median_times(fake_contestants([]), rounds=4) == {"a": 2.5, "b": 4.5}


def test_one_round_and_no_rounds():
    t = common.timings(fake_contestants([]), rounds=1, clock=scripted_clock([2.0, 3.0]))
    assert t["contestants"]["a"]["iqr"] == 0.0
    assert t["ratios"]["a"]["b"] == {"median": 1.5, "min": 1.5, "max": 1.5, "per_round": [1.5]}
    with pytest.raises(ValueError):
        common.timings(fake_contestants([]), rounds=0)


def test_sync_is_timed_with_each_call_and_a_deadline_stops_the_rounds():
    log, now = [], [0.0]

    def call(name, seconds):
        def go():
            log.append(name)
            now[0] += seconds
        return go

    t = common.timings({"a": call("a", 1.0), "b": call("b", 1.0)}, rounds=10, clock=lambda: now[0],
                       sync=call("sync", 0.5), deadline=3.0)
    assert log == ["a", "b", "sync", "a", "sync", "b", "sync"]  # the deadline passed during round one
    assert t["rounds"] == 1 and t["contestants"]["a"]["seconds"] == [1.5]  # the wait counts


def test_quantile_interpolates():
    assert common.quantile([4, 1, 3, 2], 0.25) == 1.75
    assert common.quantile([1, 2, 3], 0.5) == 2
    assert common.quantile([5], 0.75) == 5
    assert common.quantile([1, 3], 1.0) == 3


def test_repeated_ratio_over_repeats():
    first = common.timings(fake_contestants([]), rounds=3, warm_up=False,
                           clock=scripted_clock(interleave(a=[1.0, 1.0, 1.0], b=[2.0, 1.5, 3.0])))
    second = common.timings(fake_contestants([]), rounds=3, warm_up=False,
                            clock=scripted_clock(interleave(a=[2.0, 2.0, 2.0], b=[2.4, 2.2, 2.6])))
    r = common.repeated_ratio([first, second], "a", "b")
    assert r["per_repeat"] == [2.0, pytest.approx(1.2)]
    assert r["min"] == pytest.approx(1.2) and r["max"] == 2.0 and r["median"] == pytest.approx(1.6)
    assert r["per_round"]["min"] == pytest.approx(1.1) and r["per_round"]["max"] == 3.0
    assert common.pooled_median([first, second], "a") == 1.5
    assert common.show_spread({"median": 1.434, "min": 1.2, "max": 1.61}) == "1.43 [1.20-1.61]"


def test_busy_warning_threshold():
    assert common.busy_warning([1.0, 0.5, 0.5], 2) is None  # exactly half the CPUs: not busy
    assert "machine busy: ratios may not hold" in common.busy_warning([1.01, 0.5, 0.5], 2)
    assert common.busy_warning(None, 2) is None and common.busy_warning([3.0], None) is None


def _report(tmp_path, name="fake"):
    args = argparse.Namespace(threads=1, quick=True, out=tmp_path / f"{name}.json")
    return json.loads(common.write_report(name, args, results=[1]).read_text())


ENVIRONMENT_KEYS = {"cpu_model", "logical_cpus", "start", "end", "torch", "torch_threads", "mkldnn_available",
                    "rnnkit_kernel_choices", "rnnkit_env", "command", "warnings"}


def test_write_report_records_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common.os, "getloadavg", lambda: (0.2, 0.3, 0.4))
    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("RNNKIT_SOME_SWITCH", "1")
    assert common.mark_start() is None
    report = _report(tmp_path)
    assert report["benchmark"] == "fake" and report["results"] == [1] and report["threads"] == 1
    env = report["environment"]
    assert ENVIRONMENT_KEYS <= set(env)
    assert env["logical_cpus"] == 2
    assert env["start"]["load_average"] == [0.2, 0.3, 0.4] and env["end"]["load_average"] == [0.2, 0.3, 0.4]
    assert env["start"]["utc"].endswith("+00:00")
    assert env["rnnkit_env"]["RNNKIT_SOME_SWITCH"] == "1"
    assert env["rnnkit_kernel_choices"].keys() == {"onednn_matmul", "lstm_scan", "compiled_loops"}
    assert env["torch"] == torch.__version__ and env["torch_threads"] == torch.get_num_threads()
    assert env["warnings"] == []
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]
    assert "machine busy" not in capsys.readouterr().err


def test_busy_machine_is_warned_and_recorded(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common.os, "getloadavg", lambda: (1.6, 1.2, 0.9))
    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)
    assert "machine busy" in common.mark_start()
    assert "machine busy: ratios may not hold" in capsys.readouterr().err
    env = _report(tmp_path)["environment"]
    assert len(env["warnings"]) == 1 and "1.60" in env["warnings"][0]


def test_environment_survives_missing_sources(monkeypatch):
    def broken():
        raise RuntimeError("no config")

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(common.torch.__config__, "show", broken)
    monkeypatch.setattr(common.os, "getloadavg", unavailable)
    import rnnkit.nn.onednn as onednn

    monkeypatch.setattr(onednn, "kernel_choices", broken)
    common.mark_start()
    env = common.environment()
    assert "config_error" in env and "onednn_version" not in env
    assert "error" in env["rnnkit_kernel_choices"]
    assert env["start"]["load_average"] is None and env["warnings"] == []


def test_repeats_option_only_where_a_script_repeats(capsys):
    assert common.parser("x").parse_args([]).__dict__.get("repeats") is None
    with pytest.raises(SystemExit):
        common.parser("x").parse_args(["--repeats", "2"])
    assert common.parser("x", repeats=True).parse_args([]).repeats == 1
    assert common.parser("x", repeats=True).parse_args(["--repeats", "3"]).repeats == 3
    with pytest.raises(SystemExit):
        common.parser("x", repeats=True).parse_args(["--repeats", "0"])


def _run_benchmark(script, tmp_path, *extra):
    out = tmp_path / f"{script}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--quick", "--threads", "1", *extra,
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def check_repeated_ratio(ratio, repeats):
    assert len(ratio["per_repeat"]) == repeats
    assert ratio["min"] == min(ratio["per_repeat"]) and ratio["max"] == max(ratio["per_repeat"])
    assert ratio["per_round"]["min"] <= ratio["min"] <= ratio["median"] <= ratio["max"] <= ratio["per_round"]["max"]


def test_gru_rnn_quick_with_repeats(tmp_path):
    report, stdout = _run_benchmark("gru_rnn", tmp_path, "--repeats", "2", "--python-loops")
    assert report["repeats"] == 2 and len(report["results"]) == 8
    for row in report["results"]:
        assert row["repeats"] == 2 and row["rounds"] == 3
        for kind in ("train", "inference"):
            k = row[kind]
            check_repeated_ratio(k["ratio"], repeats=2)
            assert k["ratio_rnnkit_vs_torch"] == round(k["ratio"]["median"], 3)
            assert len(k["timings"]) == 2
            for t in k["timings"]:
                assert len(t["contestants"]["rnnkit"]["seconds"]) == 3
                assert len(t["ratios"]["rnnkit"]["torch"]["per_round"]) == 3
            assert set(k["tokens_per_s"]) == {"rnnkit", "torch", "python_loops"}
            check_repeated_ratio(k["ratio_loops"], repeats=2)  # the compiled loops over the Python loops
            assert k["ratio_compiled_vs_python_loops"] == round(k["ratio_loops"]["median"], 3)
    for kind in ("train", "inference"):
        s = report["summary"][kind]
        assert s["min_ratio_of_repeats"] == min(r[kind]["ratio"]["min"] for r in report["results"])
        assert s["min_ratio_of_rounds"] <= s["min_ratio_of_repeats"]
    env = report["environment"]
    assert ENVIRONMENT_KEYS <= set(env) and "--repeats" in env["command"]
    assert "[" in stdout and "each repeat's ratio" in stdout and "over the Python loops" in stdout


def test_generation_quick_reports_the_spread(tmp_path):
    report, stdout = _run_benchmark("generation", tmp_path)
    assert report["repeats"] == 1
    for row in report["results"]:
        assert row["same_text"] is True
        check_repeated_ratio(row["ratio"], repeats=1)
        assert len(row["timings"]) == 1
    assert "environment" in report and "[" in stdout
