"""rnnkit.nn.onednn: the oneDNN matmul and the Linear layer built on it equal nn.Linear / addmm."""
import pytest
import torch
from torch import nn

import rnnkit.nn.onednn as onednn
from rnnkit.nn.onednn import Linear, linear

needs_onednn = pytest.mark.skipif(onednn.onednn_linear_op() is None, reason="this torch has no usable oneDNN matmul")


@pytest.fixture
def every_product(monkeypatch):
    """Every float32 product goes to oneDNN, however small, and the calls are counted."""
    monkeypatch.setattr(onednn, "ONEDNN_MIN_MACS", 0)
    monkeypatch.setattr(onednn, "_FASTER", True)
    calls = []
    real = onednn.onednn_linear_op

    def counting():
        op = real()
        calls.append(op)
        return op
    monkeypatch.setattr(onednn, "onednn_linear_op", counting)
    return calls


def _pair(bias=True, seed=0):
    torch.manual_seed(seed)
    ours = Linear(7, 5, bias=bias)
    theirs = nn.Linear(7, 5, bias=bias)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(6, 7), (3, 4, 7), (2, 1, 3, 7)])
def test_linear_equals_nn_linear_in_outputs_and_gradients(shape, bias, every_product):
    ours, theirs = _pair(bias)
    x = torch.randn(shape)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    assert every_product, "the oneDNN path was not taken"
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_non_contiguous_input_and_frozen_weight(every_product):
    ours, theirs = _pair()
    ours.weight.requires_grad_(False)
    x = torch.randn(7, 6).t()  # (6, 7), not contiguous
    x1, x2 = x.clone().t().contiguous().t().requires_grad_(), x.clone().requires_grad_()
    y1 = ours(x1)
    y1.sum().backward()
    theirs(x2).sum().backward()
    assert ours.weight.grad is None
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


def test_falls_back_where_onednn_does_not_apply(every_product, monkeypatch):
    """float64 and small products take F.linear: the very numbers of nn.Linear, and no oneDNN call."""
    ours, theirs = _pair()
    x = torch.randn(4, 7, dtype=torch.float64)
    assert torch.equal(ours.double()(x), theirs.double()(x))
    ours, theirs = _pair()
    monkeypatch.setattr(onednn, "ONEDNN_MIN_MACS", 10**9)
    x = torch.randn(4, 7)
    assert torch.equal(ours(x), theirs(x))
    assert not every_product, "a product went to oneDNN"


def test_checkpoints_are_nn_linear_ones():
    ours, theirs = _pair()
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    assert isinstance(ours, nn.Linear)


@needs_onednn
def test_linear_function_with_add_and_bias(every_product):
    torch.manual_seed(1)
    x, w, b, a = torch.randn(5, 3), torch.randn(4, 3), torch.randn(4), torch.randn(5, 4)
    torch.testing.assert_close(linear(x, w, b, a), x @ w.t() + b + a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(linear(x, w), x @ w.t(), atol=1e-5, rtol=1e-5)


def test_a_broken_op_is_never_used(monkeypatch):
    """The internal op is checked before use: one that computes something else leaves addmm in charge."""
    class Wrong:
        def __call__(self, x, w, b, *rest):
            return torch.zeros(x.shape[0], w.shape[0])

        def binary(self, x, a, w, b, *rest):
            return torch.zeros_like(a)

    monkeypatch.setattr(onednn, "_ONEDNN_LINEAR", onednn._UNCHECKED)
    monkeypatch.setattr(onednn, "_FASTER", None)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", Wrong(), raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    assert onednn.onednn_linear_op() is None
    monkeypatch.setattr(onednn, "ONEDNN_MIN_MACS", 0)
    x, w = torch.randn(5, 3), torch.randn(4, 3)
    torch.testing.assert_close(linear(x, w), x @ w.t())


@pytest.mark.parametrize("forced,expected", [("0", False), ("1", True)])
def test_the_choice_can_be_forced(forced, expected, monkeypatch):
    monkeypatch.setattr(onednn, "_FASTER", None)
    monkeypatch.setenv("RNNKIT_ONEDNN_MATMUL", forced)
    assert onednn.onednn_is_faster() is (expected and onednn.onednn_linear_op() is not None)


def test_the_choice_is_timed_once(monkeypatch):
    monkeypatch.setattr(onednn, "_FASTER", None)
    monkeypatch.delenv("RNNKIT_ONEDNN_MATMUL", raising=False)
    first = onednn.onednn_is_faster()
    assert isinstance(first, bool) and onednn._FASTER is first and onednn.onednn_is_faster() is first
