"""benchmarks/peer_profile.py and limit.py --profile: where a training step's time goes, by part and by op group."""
from __future__ import annotations

import importlib.util

import pytest

from test_bench_common import _run_benchmark, common  # tests/ is on sys.path under pytest

PARTS = {"whole", "recurrent", "output", "optimizer", "rest"}
ROWS = ["lm-lstm-256", "lm-gru-256", "lm-lstm-512", "lm-gru-512", "seq2seq-gru-luong"]
HAS_KERAS = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None


def check_breakdown(b):
    assert set(b["groups"]) == set(common.OP_GROUPS) == set(b["groups_s"])
    assert sum(b["groups"].values()) == pytest.approx(1.0, abs=0.01)
    assert all(f >= 0 for f in b["groups"].values())
    assert b["self_cpu_s"] > 0 and b["groups"]["matmul"] > 0
    assert sum(b["groups_s"].values()) == pytest.approx(b["self_cpu_s"], rel=1e-6)
    assert b["top_ops"] and all(op["group"] in common.OP_GROUPS for op in b["top_ops"])
    fractions = [op["fraction"] for op in b["top_ops"]]
    assert fractions == sorted(fractions, reverse=True)
    assert b["timed_s"] > 0 and b["of_timed"] == pytest.approx(b["self_cpu_s"] / b["timed_s"], abs=1e-3)


@pytest.mark.parametrize("name, group", [
    ("aten::mkldnn_rnn_layer", "matmul"), ("aten::mkldnn_rnn_layer_backward", "matmul"),
    ("MkldnnRnnLayerBackward0", "matmul"), ("mkldnn::_linear_pointwise", "matmul"), ("aten::addmm", "matmul"),
    ("aten::bmm", "matmul"), ("AddmmBackward0", "matmul"), ("_LinearFunctionBackward", "matmul"),
    ("aten::sigmoid_", "elementwise"), ("aten::tanh_backward", "elementwise"), ("MulBackward0", "elementwise"),
    ("aten::_log_softmax_backward_data", "elementwise"), ("aten::add_", "elementwise"),
    ("aten::copy_", "copies"), ("aten::cat", "copies"), ("aten::_to_copy", "copies"), ("aten::clone", "copies"),
    ("Optimizer.step#Adam.step", "optimizer"), ("aten::_fused_adam_", "optimizer"),
    ("aten::_foreach_mul_", "optimizer"), ("aten::linalg_vector_norm", "optimizer"),
    ("aten::empty", "other"), ("aten::as_strided", "other"), ("aten::embedding_dense_backward", "other"),
    ("autograd::engine::evaluate_function: MulBackward0", "other"), ("ScanBackward", "other"),
])
def test_op_groups(name, group):
    assert common.op_group(name) == group


def test_peer_profile_quick_reports_every_part(tmp_path):
    report, stdout = _run_benchmark("peer_profile", tmp_path)
    assert report["benchmark"] == "peer_profile"
    assert report["parts"] == ["whole", "recurrent", "output", "optimizer", "rest"]
    assert report["keras_missing"] is (not HAS_KERAS)
    if not HAS_KERAS:
        assert "Keras is missing" in stdout
    assert [r["row"] for r in report["results"]] == ROWS
    for r in report["results"]:
        parts = r["parts"]
        assert set(parts) == PARTS
        assert parts["whole"]["rnnkit_fraction"] == 1.0
        for name in PARTS - {"rest"}:
            assert parts[name]["rnnkit_s"] > 0
        assert parts["rest"]["rnnkit_s"] == pytest.approx(
            parts["whole"]["rnnkit_s"] - sum(parts[p]["rnnkit_s"] for p in ("recurrent", "output", "optimizer")))
        for name in ("whole", "recurrent", "output", "optimizer"):
            assert len(r["timings"]["contestants"][f"rnnkit {name}"]["seconds"]) == r["rounds"]
        if HAS_KERAS:
            assert r["shortest"] in PARTS - {"whole"}
            for name in PARTS - {"rest"}:
                assert parts[name]["keras_s"] > 0 and parts[name]["ratio"]["median"] > 0
        else:
            assert all("keras_s" not in v for v in parts.values())
        check_breakdown(r["rnnkit_profile"])
        assert r["rnnkit_profile"]["timed_s"] == parts["whole"]["rnnkit_s"]
    assert "lm-lstm-256" in stdout and "recurrent" in stdout and "matmul" in stdout


def test_limit_quick_profile_records_the_breakdown(tmp_path):
    report, stdout = _run_benchmark("limit", tmp_path, "--profile")
    for r in report["results"]:
        p = r["profile"]
        check_breakdown(p)
        assert p["limit_s"] > 0
        assert p["matmul_over_limit"] == pytest.approx(p["groups_s"]["matmul"] / p["limit_s"], abs=1e-3)
    assert "of the limit's" in stdout and "matmul" in stdout

