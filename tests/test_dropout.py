"""rnnkit's CPU dropout: torch's distribution and scaling, its gradient, and the layer-by-layer fused path."""
import pytest
import torch

import rnnkit.nn.dropout as impl
from rnnkit.nn import Dropout, Recurrent, State


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_zeroes_a_fraction_p_and_scales_the_rest(p, dtype):
    torch.manual_seed(0)
    x = torch.rand(400, 500, dtype=dtype) + 1.0  # no zeros of its own
    y = impl.dropout(x, p)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.005  # 200,000 draws: 4+ standard deviations
    expected = (x.float() / (1 - p)).to(dtype)
    torch.testing.assert_close(y[kept].float(), expected[kept].float(), rtol=1e-2 if dtype == torch.bfloat16 else 1e-6,
                               atol=0)
    assert y.dtype == dtype


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(50, 60, requires_grad=True)
    y = impl.dropout(x, 0.3)
    y.backward(torch.ones_like(y))
    mask = (y != 0).float()
    torch.testing.assert_close(x.grad, mask / 0.7)


def test_identity_when_not_training_or_p_zero_and_zeros_at_p_one():
    x = torch.randn(5, 6)
    assert impl.dropout(x, 0.5, training=False) is x
    assert impl.dropout(x, 0.0) is x
    assert torch.equal(impl.dropout(x, 1.0), torch.zeros_like(x))
    d = Dropout(0.5).eval()
    assert d(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dropout(1.5)


def test_same_seed_same_mask():
    x = torch.randn(30, 40)
    torch.manual_seed(3)
    a = impl.dropout(x, 0.4)
    torch.manual_seed(3)
    assert torch.equal(a, impl.dropout(x, 0.4))


def _stack(mode, bidirectional, batch):
    """A 3-layer stack with dropout 0.3, an input that wants gradients, and a random start state."""
    torch.manual_seed(0)
    rnn = Recurrent(mode, 6, 10, num_layers=3, bidirectional=bidirectional, dropout=0.3)
    x = torch.randn(batch, 7, 6, requires_grad=True)
    D = 2 if bidirectional else 1
    h0 = torch.randn(3 * D, batch, 10)
    return rnn, x, State(h0, torch.randn(3 * D, batch, 10)) if mode == "lstm" else State(h0)


def _assert_same_run(x, got, ref):
    """Outputs, final states and input gradients of two runs agree to rounding."""
    (out, state), (ref_out, ref_state) = got, ref
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(state.h, ref_state.h)
    if ref_state.c is not None:
        torch.testing.assert_close(state.c, ref_state.c)
    (g_ref,) = torch.autograd.grad(ref_out.square().sum(), x)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_by_layer_fused_path_equals_the_stacked_kernel(mode, bidirectional):
    """The path that puts rnnkit's dropout between layers computes what the stacked kernel does."""
    rnn, x, state = _stack(mode, bidirectional, 4)
    rnn.dropout = 0.0  # no masks, so the two paths must agree to rounding
    ref = rnn._forward_fused(x, None, state)
    _assert_same_run(x, rnn._forward_fused_by_layer(x, state), ref)


def test_training_forward_takes_the_layer_path_on_cpu(monkeypatch):
    torch.manual_seed(0)
    rnn = Recurrent("lstm", 4, 8, num_layers=2, dropout=0.5)
    calls = []
    orig = rnn._forward_fused_by_layer
    monkeypatch.setattr(rnn, "_forward_fused_by_layer", lambda *a: calls.append(1) or orig(*a))
    rnn(torch.randn(2, 5, 4))
    assert calls == [1]
    rnn.eval()
    rnn(torch.randn(2, 5, 4))
    assert calls == [1]  # evaluation: the stacked kernel, no dropout
    monkeypatch.setattr(impl, "USE_TORCH", True)
    rnn.train()
    rnn(torch.randn(2, 5, 4))
    assert calls == [1]  # torch's dropout asked for: the stacked kernel draws it


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_by_layer_packed_path_equals_the_stacked_packed_kernel(mode, bidirectional):
    """Uneven lengths, one layer at a time over the packed data: what the stacked packed kernel computes."""
    rnn, x, state = _stack(mode, bidirectional, 5)
    lengths = torch.tensor([7, 3, 5, 1, 6])
    rnn.dropout = 0.0
    ref = rnn._forward_fused(x, lengths, state)
    rnn.dropout = 1e-12  # takes the layer path with a mask that keeps everything: only a draw of
    # exactly 0 (2^-24 each) would drop one, and none does under this seed
    with torch.random.fork_rng():
        torch.manual_seed(1)
        got = rnn._forward_fused(x, lengths, state)
    _assert_same_run(x, got, ref)


@pytest.mark.parametrize("lengths", [None, torch.tensor([5, 2])])
def test_deterministic_mode_draws_dropout_between_layers_from_torch_generator(monkeypatch, lengths):
    """Under --deterministic (torch.use_deterministic_algorithms) the layer path runs even where the
    stacked kernel would otherwise draw the masks (cuDNN keeps its own generator, which no checkpoint
    saves); USE_TORCH stands in for such a device here."""
    torch.manual_seed(0)
    rnn = Recurrent("lstm", 4, 8, num_layers=2, dropout=0.5)
    calls = []
    orig = rnn._forward_fused_by_layer
    monkeypatch.setattr(rnn, "_forward_fused_by_layer", lambda *a: calls.append(1) or orig(*a))
    monkeypatch.setattr(impl, "USE_TORCH", True)
    x = torch.randn(2, 5, 4)
    rnn._forward_fused(x, lengths, State(torch.zeros(2, 2, 8), torch.zeros(2, 2, 8)))
    assert calls == []
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(7)
        a, _ = rnn._forward_fused(x, lengths, State(torch.zeros(2, 2, 8), torch.zeros(2, 2, 8)))
        torch.manual_seed(7)
        b, _ = rnn._forward_fused(x, lengths, State(torch.zeros(2, 2, 8), torch.zeros(2, 2, 8)))
    finally:
        torch.use_deterministic_algorithms(was)
    assert calls == [1, 1]
    assert torch.equal(a, b)  # the masks follow torch's seed
