"""Our cells against torch.nn's with the same weights, and gradient checks in float64."""
import math

import pytest
import torch

from rnnkit.nn import GRUCell, LSTMCell, RNNCell, State, make_cell

B, I, H = 3, 4, 5

# (ours, torch's twin) constructors for every cell kind, with and without bias.
CASES = {
    "rnn_tanh": (lambda bias: RNNCell(I, H, bias), lambda bias: torch.nn.RNNCell(I, H, bias)),
    "rnn_relu": (
        lambda bias: RNNCell(I, H, bias, nonlinearity="relu"),
        lambda bias: torch.nn.RNNCell(I, H, bias, nonlinearity="relu"),
    ),
    "lstm": (lambda bias: LSTMCell(I, H, bias), lambda bias: torch.nn.LSTMCell(I, H, bias)),
    "gru": (lambda bias: GRUCell(I, H, bias), lambda bias: torch.nn.GRUCell(I, H, bias)),
}


def _pair(kind: str, bias: bool = True):
    ours_fn, theirs_fn = CASES[kind]
    ours, theirs = ours_fn(bias), theirs_fn(bias)
    ours.load_state_dict(theirs.state_dict())  # strict: names and shapes must match torch's
    return ours, theirs


def _state(kind: str, dtype=torch.float32, requires_grad: bool = False) -> State:
    h = torch.randn(B, H, dtype=dtype, requires_grad=requires_grad)
    c = torch.randn(B, H, dtype=dtype, requires_grad=requires_grad) if kind == "lstm" else None
    return State(h, c)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(CASES))
def test_cell_matches_torch_outputs_and_gradients(kind, bias):
    torch.manual_seed(0)
    ours, theirs = _pair(kind, bias)
    x = torch.randn(B, I, requires_grad=True)
    s0 = _state(kind, requires_grad=True)
    mine = ours(x, s0)
    ref = State.from_torch(theirs(x, s0.as_torch()))
    assert torch.allclose(mine.h, ref.h, atol=1e-5)
    if kind == "lstm":
        assert torch.allclose(mine.c, ref.c, atol=1e-5)
    # A random linear read-out, so every output element carries its own gradient.
    w = [torch.randn_like(t) for t in mine if t is not None]
    inputs = [x, *[t for t in s0 if t is not None]]

    def grads(out: State, params):
        loss = sum((a * b).sum() for a, b in zip([t for t in out if t is not None], w))
        return torch.autograd.grad(loss, inputs + list(params))

    g_ours, g_ref = grads(mine, ours.parameters()), grads(ref, theirs.parameters())
    assert len(g_ours) == len(g_ref)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", list(CASES))
def test_zero_state_when_none(kind):
    torch.manual_seed(0)
    ours, theirs = _pair(kind)
    x = torch.randn(B, I)
    assert torch.allclose(ours(x).h, State.from_torch(theirs(x)).h, atol=1e-5)
    zeros = State(torch.zeros(B, H), torch.zeros(B, H) if kind == "lstm" else None)
    assert torch.equal(ours(x).h, ours(x, zeros).h)


@pytest.mark.parametrize("kind", list(CASES))
def test_forward_is_projection_then_recur(kind):
    torch.manual_seed(0)
    cell, _ = _pair(kind)
    xs = torch.randn(B, 6, I)
    xw = cell.input_projection(xs)  # all steps at once
    assert xw.shape == (B, 6, cell.weight_ih.shape[0])
    s_step = s_split = _state(kind)
    for t, xw_t in enumerate(xw.unbind(1)):
        s_step = cell(xs[:, t], s_step)
        s_split = cell.recur(xw_t, s_split)
        assert torch.allclose(s_step.h, s_split.h, atol=1e-6)


@pytest.mark.parametrize("kind", list(CASES))
def test_gradcheck_float64(kind):
    torch.manual_seed(0)
    cell, _ = _pair(kind)
    cell = cell.double()
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    s0 = _state(kind, torch.float64, requires_grad=True)
    if kind == "rnn_relu":  # keep pre-activations away from relu's kink
        with torch.no_grad():
            cell.weight_hh.mul_(0.1)

    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    inputs = (x, *[t for t in s0 if t is not None], *params)

    n_state = 2 if kind == "lstm" else 1

    def step(x, *rest):  # rest: h[, c], *params
        state, params = State(*rest[:n_state]), rest[n_state:]
        out = torch.func.functional_call(cell, dict(zip(names, params)), (x, state))
        return tuple(t for t in out if t is not None)

    assert torch.autograd.gradcheck(step, inputs)


@pytest.mark.parametrize("kind", list(CASES))
def test_parameter_layout_and_init_match_torch(kind):
    torch.manual_seed(0)
    ours, theirs = CASES[kind][0](True), CASES[kind][1](True)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    bound = 1 / math.sqrt(H)
    for p in ours.parameters():
        assert p.abs().max() <= bound and p.std() > bound / 4  # uniform(-1/sqrt(H), 1/sqrt(H))
    assert list(dict(ours.named_parameters())) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert CASES[kind][0](False).bias_ih is None


def test_make_cell():
    assert isinstance(make_cell("lstm", I, H), LSTMCell)
    assert isinstance(make_cell("gru", I, H), GRUCell)
    assert make_cell("rnn", I, H).nonlinearity == "tanh"
    assert make_cell("rnn_tanh", I, H).nonlinearity == "tanh"
    relu = make_cell("rnn_relu", I, H, bias=False)
    assert relu.nonlinearity == "relu" and relu.bias_hh is None
    with pytest.raises(ValueError, match="rnn_tanh.*lstm.*gru"):
        make_cell("transformer", I, H)


def test_bad_inputs_raise_clear_errors():
    cell = LSTMCell(I, H)
    with pytest.raises(ValueError, match=r"\(B, input_size=4\)"):
        cell(torch.randn(B, I + 1))
    with pytest.raises(ValueError, match=r"\(B, input_size=4\)"):
        cell(torch.randn(B, 2, I))
    with pytest.raises(ValueError, match="state.c must be given"):
        cell(torch.randn(B, I), State(torch.zeros(B, H)))
    with pytest.raises(ValueError, match=r"state.h must be \(B, H\)"):
        cell(torch.randn(B, I), State(torch.zeros(B, H + 1), torch.zeros(B, H)))
    with pytest.raises(ValueError, match="state.c must be None"):
        GRUCell(I, H)(torch.randn(B, I), State(torch.zeros(B, H), torch.zeros(B, H)))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNCell(I, H, nonlinearity="sigmoid")
