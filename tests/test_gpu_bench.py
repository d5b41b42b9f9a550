"""``benchmarks/gpu.py`` end to end on the CPU (``--device cpu --quick``): every section, in the JSON it writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from numbers import Real
from pathlib import Path

import pytest
import torch

from rnnkit.nn import CELL_NAMES

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("training", "beam_search", "sampling", "cells", "resume")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-bench") / "gpu.json"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick",
                           "--threads", "1", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def _rate(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and value > 0


def test_every_section_runs_and_the_run_is_described(report):
    assert tuple(report["sections"]) == SECTIONS
    for name, section in report["sections"].items():
        assert "error" not in section, (name, section.get("traceback"))
        assert isinstance(section["wall_s"], Real)
    device, env = report["device"], report["environment"]
    assert device["device"] == "cpu" and device["torch"] and {"device_name", "cuda", "cudnn"} <= device.keys()
    assert env["start"]["utc"].endswith("+00:00")
    assert "--quick" in env["command"] and "--device" in env["command"]


def test_the_cpu_sections_give_numeric_rates(report):
    s = report["sections"]
    training = s["training"]["results"]
    points = {(cell, precision) for cell in ("lstm", "gru") for precision in ("fp32", "bf16")}
    assert {(r["cell"], r["precision"]) for r in training} == points
    for r in training:
        assert all(_rate(v) for v in r["tokens_per_s"].values()) and len(r["tokens_per_s"]) == 2, r
        assert _rate(r["ratio_rnnkit_vs_torch"]) and isinstance(r["meets_target"], bool)
        assert r["ratio_spread"]["min"] <= r["ratio_rnnkit_vs_torch"] <= r["ratio_spread"]["max"]
        if r["precision"] == "fp32":  # the same weights: the same logits and first loss
            loss = r["first_step_loss"]
            assert r["max_abs_diff_logits"] < 1e-4 and loss["rnnkit"] == loss["torch.nn"], r
    assert all(_rate(v) for v in s["beam_search"]["sentences_per_s"].values())
    for r in s["sampling"]["results"]:
        assert r["same_text"] is True and all(_rate(v) for v in r["tokens_per_s"].values()), r
    cells = s["cells"]["results"]
    assert {r["cell"] for r in cells} == set(CELL_NAMES)
    assert all(_rate(r["tokens_per_s"]) and _rate(r["vs_lstm"]) for r in cells), cells


def test_the_resumed_run_is_bitwise_equal_on_cpu(report):
    r = report["sections"]["resume"]
    assert 0 < r["killed_at_step"] < r["steps"] == r["final_step"]
    assert r["bitwise_equal"] is True and r["max_abs_diff"] == 0 and r["best_weights"]["bitwise_equal"] is True
    assert "--deterministic" in r["command"] and "--device cpu" in r["command"]


def test_cuda_only_items_are_marked_skipped_on_cpu(report):
    for r in report["sections"]["sampling"]["results"]:
        assert "CUDA only" in r["cuda_graph"]["skipped"]
    cells = report["sections"]["cells"]
    assert "CUDA only" in cells["peak_memory"]["skipped"]
    assert all(r["peak_mib"] is None for r in cells["results"])


def test_a_failing_section_is_recorded_and_a_spent_cap_skips(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu

    def broken(run):
        raise RuntimeError("no such kernel")

    monkeypatch.setitem(gpu.SECTIONS, "training", broken)
    cpu = torch.device("cpu")
    result = gpu.run_section("training", gpu.Run(cpu, gpu.QUICK["training"], deadline=float("inf"), threads=1))
    assert result["error"] == "RuntimeError: no such kernel" and isinstance(result["wall_s"], Real)
    spent = gpu.training(gpu.Run(cpu, gpu.QUICK["training"], deadline=0.0, threads=1))  # the cap has passed
    assert spent["results"] and all(r["skipped"] == "time cap" for r in spent["results"])
