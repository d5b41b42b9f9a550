"""Recurrent against torch.nn.RNN/LSTM/GRU with the same weights, for both backends."""
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.nn import Recurrent, State

B, T, I, H, L = 4, 7, 3, 5, 2
LENGTHS = [7, 3, 5, 1]  # uneven, unsorted, one full, one of length 1
MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
BACKENDS = ["fused", "reference"]


def torch_twin(mode: str, **kw) -> torch.nn.Module:
    if mode == "lstm":
        return torch.nn.LSTM(I, H, batch_first=True, **kw)
    if mode == "gru":
        return torch.nn.GRU(I, H, batch_first=True, **kw)
    return torch.nn.RNN(I, H, batch_first=True, nonlinearity=mode[4:], **kw)


def pair(mode: str, backend: str, bidirectional: bool, num_layers: int = L, bias: bool = True):
    theirs = torch_twin(mode, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    ours = Recurrent(mode, I, H, num_layers, bidirectional, backend=backend, bias=bias)
    ours.load_state_dict(theirs.state_dict())  # strict: names and shapes as torch's
    return ours, theirs


def initial_state(mode: str, D: int) -> State:
    h = torch.randn(L * D, B, H, requires_grad=True)
    return State(h, torch.randn(L * D, B, H, requires_grad=True) if mode == "lstm" else None)


def run_torch(theirs, x, lengths, state):
    hx = None if state is None else state.as_torch()
    if lengths is None:
        out, hn = theirs(x, hx)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, hn = theirs(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, State.from_torch(hn)


def readout_grads(out, st, wrt, seed=1):
    """Gradients of a random linear read-out of outputs and final state."""
    g = torch.Generator().manual_seed(seed)
    tensors = [out, st.h] + ([st.c] if st.c is not None else [])
    loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in tensors)
    return torch.autograd.grad(loss, wrt)


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "uneven"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch(mode, backend, bidirectional, lengths, with_state):
    torch.manual_seed(0)
    ours, theirs = pair(mode, backend, bidirectional)
    x = torch.randn(B, T, I, requires_grad=True)
    state = initial_state(mode, 2 if bidirectional else 1) if with_state else None
    lens = None if lengths is None else torch.tensor(lengths)
    out, st = ours(x, lens, state)
    ref_out, ref_st = run_torch(theirs, x, lens, state)
    assert out.shape == (B, T, H * (2 if bidirectional else 1))
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(st.h, ref_st.h, atol=1e-5)
    assert (st.c is None) == (mode != "lstm")
    if mode == "lstm":
        assert torch.allclose(st.c, ref_st.c, atol=1e-5)
    extra = [] if state is None else [t for t in state if t is not None]
    g_ours = readout_grads(out, st, [x, *extra, *ours.parameters()])
    g_ref = readout_grads(ref_out, ref_st, [x, *extra, *theirs.parameters()])
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_bias_matches_torch(backend):
    torch.manual_seed(0)
    ours, theirs = pair("gru", backend, True, bias=False)
    x = torch.randn(B, T, I)
    lens = torch.tensor(LENGTHS)
    assert torch.allclose(ours(x, lens)[0], run_torch(theirs, x, lens, None)[0], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_padded_batch_equals_each_sequence_alone(mode, backend):
    torch.manual_seed(0)
    ours = Recurrent(mode, I, H, L, bidirectional=True, backend=backend)
    x = torch.randn(B, T, I)
    lens = torch.tensor(LENGTHS)
    out, st = ours(x, lens)
    for b, n in enumerate(LENGTHS):
        out_b, st_b = ours(x[b : b + 1, :n])  # alone, no pads at all
        assert torch.allclose(out[b, :n], out_b[0], atol=1e-6)
        assert torch.all(out[b, n:] == 0)
        for got, alone in zip(st, st_b):
            if got is not None:
                assert torch.allclose(got[:, b], alone[:, 0], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["rnn_tanh", "lstm", "gru"])
def test_pad_values_change_nothing(mode, backend):
    torch.manual_seed(0)
    ours = Recurrent(mode, I, H, L, bidirectional=True, backend=backend)
    lens = torch.tensor(LENGTHS)
    pad = torch.arange(T) >= lens.unsqueeze(1)  # (B, T)
    x1 = torch.randn(B, T, I)
    x2 = torch.where(pad.unsqueeze(2), 100 * torch.randn(B, T, I), x1)
    results = []
    for x in (x1, x2):
        x = x.clone().requires_grad_()
        out, st = ours(x, lens)
        grads = readout_grads(out, st, [x, *ours.parameters()])
        results.append((out, st.h, *grads))
        assert torch.all(grads[0][pad] == 0)  # pads get no gradient
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_backends_agree_after_flipping(mode):
    torch.manual_seed(0)
    m = Recurrent(mode, I, H, L, bidirectional=True)
    x, lens = torch.randn(B, T, I), torch.tensor(LENGTHS)
    fused = m(x, lens)
    m.backend = "reference"
    ref = m(x, lens)
    for a, b in zip((fused[0], *fused[1]), (ref[0], *ref[1])):
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)


def test_state_dict_is_torchs_and_crosses_backends():
    torch.manual_seed(0)
    ours = Recurrent("lstm", I, H, L, bidirectional=True, backend="fused")
    theirs = torch_twin("lstm", num_layers=L, bidirectional=True)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    other = Recurrent("lstm", I, H, L, bidirectional=True, backend="reference")
    other.load_state_dict(ours.state_dict())
    x = torch.randn(B, T, I)
    assert torch.allclose(ours(x)[0], other(x)[0], atol=1e-5)
    bound = 1 / H**0.5
    assert all(p.abs().max() <= bound for p in ours.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_only_in_training_and_only_between_layers(backend):
    torch.manual_seed(0)
    x, lens = torch.randn(B, T, I), torch.tensor(LENGTHS)
    plain = Recurrent("lstm", I, H, L, backend=backend)
    dropped = Recurrent("lstm", I, H, L, dropout=1.0, backend=backend)
    dropped.load_state_dict(plain.state_dict())
    # Eval: dropout is off.
    dropped.eval()
    assert torch.allclose(dropped(x, lens)[0], plain(x, lens)[0], atol=1e-6)
    # Training with p=1: the first layer's output is zeroed, so the output no longer depends on x ...
    dropped.train()
    a, b = dropped(x)[0], dropped(torch.randn(B, T, I))[0]
    assert torch.allclose(a, b) and a.abs().sum() > 0  # ... but the last layer's output is not dropped.
    # One layer: nothing between layers, so training changes nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = Recurrent("gru", I, H, 1, dropout=0.9, backend=backend)
    train_out = single.train()(x, lens)[0]
    assert torch.equal(train_out, single.eval()(x, lens)[0])


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="between layers"):
        Recurrent("gru", I, H, 1, dropout=0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_raise_clear_errors(backend):
    m = Recurrent("lstm", I, H, L, bidirectional=True, backend=backend)
    x = torch.randn(B, T, I)
    with pytest.raises(ValueError, match=r"\(B, T, input_size=3\)"):
        m(torch.randn(B, I))
    with pytest.raises(ValueError, match=r"\(B, T, input_size=3\)"):
        m(torch.randn(B, T, I + 1))
    with pytest.raises(ValueError, match="dtype"):
        m(x.double())
    with pytest.raises(ValueError, match="1-D integer tensor of size B=4"):
        m(x, torch.tensor([7.0, 3.0, 5.0, 1.0]))
    with pytest.raises(ValueError, match="1-D integer tensor of size B=4"):
        m(x, torch.tensor([7, 3, 5]))
    with pytest.raises(ValueError, match=r"\[1, T=7\]"):
        m(x, torch.tensor([7, 0, 5, 1]))
    with pytest.raises(ValueError, match="1-D integer tensor"):
        m(x, torch.ones(B, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[1, T=7\]"):
        m(x, torch.tensor([8, 3, 5, 1]))
    h = torch.zeros(L * 2, B, H)
    with pytest.raises(ValueError, match=r"state.h must be \(L\*D, B, H\) = \(4, 4, 5\)"):
        m(x, state=State(torch.zeros(L, B, H), torch.zeros(L, B, H)))
    with pytest.raises(ValueError, match="state.c must be given"):
        m(x, state=State(h))
    with pytest.raises(ValueError, match="state.c must be None"):
        Recurrent("gru", I, H, L, bidirectional=True, backend=backend)(x, state=State(h, h))
    with pytest.raises(ValueError, match="State"):
        m(x, state=(h, h))


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="backend must be one of"):
        Recurrent("gru", I, H, backend="cudnn")
    m = Recurrent("gru", I, H)
    with pytest.raises(ValueError, match="backend must be one of"):
        m.backend = "fast"
    assert m.backend == "fused"
    with pytest.raises(ValueError, match="mode must be one of"):
        Recurrent("transformer", I, H)
    with pytest.raises(ValueError, match="dropout"):
        Recurrent("gru", I, H, 2, dropout=1.5)


def test_rnn_alias_and_repr():
    m = Recurrent("rnn", I, H, L, bidirectional=True, dropout=0.1, backend="reference")
    assert m.mode == "rnn_tanh"
    r = repr(m)
    assert "rnn_tanh" in r and "bidirectional=True" in r and "dropout=0.1" in r and "reference" in r


@pytest.mark.parametrize("strategy", ["groups", "reference", "packed"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_every_fused_strategy_matches_torch(mode, strategy, monkeypatch):
    """The fused backend picks a path per device and batch; each must give torch's numbers."""
    monkeypatch.setattr(Recurrent, "_fused_strategy", lambda self, x, lengths: strategy)
    torch.manual_seed(0)
    ours, theirs = pair(mode, "fused", True)
    x = torch.randn(B, T, I, requires_grad=True)
    state = initial_state(mode, 2)
    lens = torch.tensor(LENGTHS)
    out, st = ours(x, lens, state)
    ref_out, ref_st = run_torch(theirs, x, lens, state)
    assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(st.h, ref_st.h, atol=1e-5)
    if mode == "lstm":
        assert torch.allclose(st.c, ref_st.c, atol=1e-5)
    extra = [state.h] + ([state.c] if state.c is not None else [])
    for a, b in zip(readout_grads(out, st, [x, *extra, *ours.parameters()]),
                    readout_grads(ref_out, ref_st, [x, *extra, *theirs.parameters()]), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_fused_strategy_choice_on_cpu():
    r = Recurrent("lstm", I, H)
    x = torch.randn(B, T, I)
    assert r._fused_strategy(x, None) == "direct"
    assert r._fused_strategy(x[:, :1], None) == "reference"  # one step: the cells are faster
    assert r._fused_strategy(x, torch.tensor([7, 7, 6, 6])) == "groups"
    many = Recurrent("lstm", I, H)
    xs = torch.randn(8, T, I)
    assert many._fused_strategy(xs, torch.tensor([7, 6, 5, 4, 3, 2, 1, 1])) == "reference"


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", MODES)
def test_outputs_only_padded_path_matches_torch(mode, bidirectional, layers):
    """need_state=False: one fused call per layer and direction over the padded batch, exact outputs."""
    torch.manual_seed(0)
    ours, theirs = pair(mode, "fused", bidirectional, num_layers=layers)
    x = torch.randn(B, T, I, requires_grad=True)
    lens = torch.tensor(LENGTHS)
    out, st = ours(x, lens, None, need_state=False)
    assert st is None
    ref_out, _ = run_torch(theirs, x, lens, None)
    assert torch.allclose(out, ref_out, atol=1e-5)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(out.shape, generator=g)
    ours_g = torch.autograd.grad((out * w).sum(), [x, *ours.parameters()])
    ref_g = torch.autograd.grad((ref_out * w).sum(), [x, *theirs.parameters()])
    for a, b in zip(ours_g, ref_g, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    x2 = x.detach().clone()
    x2[1, 3:] = 1e3  # pad values change nothing
    assert torch.allclose(ours(x2, lens, None, need_state=False)[0], out, atol=1e-5)


# ---- one time step in few operations (Recurrent.step, rnnkit.nn.fused_step) --------------------------------

def _step_through(r: Recurrent, x: torch.Tensor, state=None):
    """Every output ``(B, T, H)`` and the final state of ``Recurrent.step`` called once per time step."""
    outs = []
    for x_t in x.unbind(1):
        h, state = r.step(x_t, state)
        outs.append(h)
    return torch.stack(outs, 1), state


def _reference(r: Recurrent, x: torch.Tensor, state=None):
    """The cell equations on the same parameters (backend "reference": never the fused step)."""
    backend, r.backend = r.backend, "reference"
    try:
        return r(x, state=state)
    finally:
        r.backend = backend


def _assert_same_run(got, want, atol=1e-6):
    (out, st), (out_ref, st_ref) = got, want
    torch.testing.assert_close(out, out_ref, atol=atol, rtol=0)
    for a, b in zip(st, st_ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=atol, rtol=0)


@pytest.fixture
def threads():
    """Run with the thread count the test asks for, then restore it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("compiled_on", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_fused_step_equals_the_cell_equations(mode, bias, batch, n_threads, compiled_on, threads, step_loops,
                                              monkeypatch):
    import rnnkit.nn.fused_step as fused_step

    monkeypatch.setattr(fused_step, "SPLIT_MIN_ENTRIES", 0)  # two threads: the halved products too
    calls = step_loops(compiled_on)
    threads(n_threads)
    torch.manual_seed(0)
    H = 6  # even: every input product splits in two halves at two threads
    r = Recurrent(mode, I, H, num_layers=3, bias=bias).eval()  # I != H: the first layer differs
    x = torch.randn(batch, T, I)
    s0 = State(torch.randn(3, batch, H), torch.randn(3, batch, H) if mode == "lstm" else None)
    with torch.inference_mode():
        for state in (None, s0):
            _assert_same_run(_step_through(r, x, state), _reference(r, x, state))
            out, st = r(x[:, :1], state=state)  # forward on one step takes the same path
            _assert_same_run((out, st), _reference(r, x[:, :1], state))
    assert r.__dict__.get("_step_cache") is not None  # the fused step ran, not forward's loop
    assert bool(calls) == compiled_on  # and compiled exactly when asked


@pytest.mark.parametrize("mode", MODES)
def test_compiled_step_gives_the_same_bits_on_one_and_two_threads(mode, threads, step_loops):
    """Threads share a layer's units in blocks of 16, so no split changes a sum: hidden 40 is three blocks,
    the last one short, and two threads take one and two of them."""
    step_loops(True)
    torch.manual_seed(0)
    r = Recurrent(mode, I, 40, num_layers=2).eval()
    x = torch.randn(1, T, I)
    runs = []
    for n in (1, 2):
        threads(n)
        with torch.no_grad():
            runs.append(_step_through(r, x))
    (out1, st1), (out2, st2) = runs
    assert torch.equal(out1, out2) and all(a is None and b is None or torch.equal(a, b) for a, b in zip(st1, st2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_step_saturates_like_the_python_step(dtype, step_loops):
    """Inputs and cell states in the thousands, so that gate pre-activations pass where exp overflows (89 in
    float32, 709 in float64): the compiled step's gates saturate as torch's sigmoid does, no NaN.  One step
    (a recurrence would amplify rounding through the large weights); hidden 40: the vectorised loops."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, I, dtype=dtype) * 3000
    for mode in MODES:
        r = Recurrent(mode, I, 40, num_layers=2).to(dtype).eval()
        s0 = State(torch.randn(2, 2, 40, dtype=dtype), torch.randn(2, 2, 40, dtype=dtype) * 3000 if mode == "lstm" else None)
        runs = []
        with torch.no_grad():
            for on in (False, True):
                step_loops(on)
                runs.append(_step_through(r, x, s0))
        assert torch.isfinite(runs[1][0]).all()
        tol = 1e-4 if dtype == torch.float32 else 1e-12  # relative: c and a ReLU RNN's outputs reach thousands
        for a, b in zip([runs[1][0], *runs[1][1]], [runs[0][0], *runs[0][1]]):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch", [3, 20])
def test_compiled_step_on_token_rows_and_its_batch_limit(batch, step_loops, monkeypatch):
    """Token ids through a small vocabulary's table (the sampling path) agree with the Python step; above
    COMPILED_MAX_BATCH rows the Python step runs."""
    import rnnkit.nn.fused_step as fused_step

    torch.manual_seed(0)
    emb = torch.randn(11, I, dtype=torch.float64)
    tokens = torch.randint(0, 11, (batch, T))
    for mode in MODES:
        r = Recurrent(mode, I, H, num_layers=3).double().eval()
        runs = []
        for on in (False, True):
            calls = step_loops(on)
            calls.clear()
            state, outs = None, []
            with torch.inference_mode():
                for t in tokens.unbind(1):
                    h, state = r.token_step(t, emb, state)
                    outs.append(h)
            runs.append((torch.stack(outs, 1), state))
            assert len(calls) == (T if on else 0)
        _assert_same_run(runs[1], runs[0], atol=1e-12)
    monkeypatch.setattr(fused_step, "COMPILED_MAX_BATCH", 2)
    calls.clear()
    with torch.inference_mode():
        r.token_step(tokens[:, 0], emb)
    assert not calls


def test_fused_step_halves_give_the_numbers_of_one_product(threads, monkeypatch):
    import rnnkit.nn.fused_step as fused_step

    monkeypatch.setattr(fused_step, "SPLIT_MIN_ENTRIES", 0)
    monkeypatch.setattr(fused_step.compiled, "USE", False)  # the Python step: the compiled one has no halves
    batched, products = [], torch.baddbmm
    monkeypatch.setattr(torch, "baddbmm", lambda *a: batched.append(a[2].shape[0]) or products(*a))
    torch.manual_seed(0)
    r = Recurrent("lstm", 16, 32, num_layers=3).eval()
    x = torch.randn(1, 6, 16)
    runs = []
    for n in (1, 2):  # one thread: whole products; two: each input product in two halves of columns
        threads(n)
        with torch.no_grad():
            runs.append(_step_through(r, x))
    assert batched == [3] * 6 + [3, 2, 2, 2] * 6  # the 3 layers' hidden products; then the input products too
    (out1, st1), (out2, st2) = runs
    assert torch.equal(out1, out2) and torch.equal(st1.h, st2.h) and torch.equal(st1.c, st2.c)


@pytest.mark.parametrize("mode", MODES)
def test_fused_step_follows_every_change_of_the_weights(mode):
    torch.manual_seed(0)
    r = Recurrent(mode, I, H, num_layers=2)
    x = torch.randn(2, 4, I)

    def check():
        r.eval()
        with torch.no_grad():
            _assert_same_run(_step_through(r, x), _reference(r, x))

    check()
    # an optimizer step, trained through forward on one time step: the training path, with gradients
    r.train()
    opt = torch.optim.SGD(r.parameters(), lr=0.5)
    s0 = State(torch.randn(2, 2, H), torch.randn(2, 2, H) if mode == "lstm" else None)  # W_hh gets a gradient
    out, st = r(x[:, :1], state=s0)
    out_ref, _ = _reference(r, x[:, :1], s0)
    torch.testing.assert_close(out, out_ref)
    (out.square().sum() + st.h.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in r.parameters())
    opt.step()
    with torch.no_grad():  # in train mode without dropout the fused step runs, on the new weights
        _assert_same_run(_step_through(r, x), _reference(r, x))
    check()
    # load_state_dict copies into the same tensors
    other = Recurrent(mode, I, H, num_layers=2)
    r.load_state_dict(other.state_dict())
    check()
    # an in-place change under no_grad, without a train/eval switch
    with torch.no_grad():
        r.weight_hh_l1.mul_(-1.5)
    with torch.no_grad():
        _assert_same_run(_step_through(r, x), _reference(r, x))
    # a parameter's data replaced (no version counter moves)
    r.weight_ih_l0.data = torch.randn_like(r.weight_ih_l0)
    with torch.no_grad():
        _assert_same_run(_step_through(r, x), _reference(r, x))


def test_fused_step_is_inference_only():
    torch.manual_seed(0)
    r = Recurrent("lstm", I, H, num_layers=2, dropout=0.5)
    x = torch.randn(2, 1, I)
    with torch.no_grad():
        assert not r.fuses_step(2, x)  # training with dropout to draw between layers
        r.eval()
        assert r.fuses_step(2, x)
        assert not r.fuses_step(64, x)  # a large batch goes to the sequence kernel
        r.backend = "reference"
        assert not r.fuses_step(2, x)
        r.backend = "fused"
    assert not r.fuses_step(2, x)  # gradients wanted
    assert not Recurrent("lstm", I, H, bidirectional=True).eval().fuses_step(2, x)
    assert not Recurrent("mingru", I, H).eval().fuses_step(2, x)

    class OwnForward(Recurrent):
        def forward(self, x, lengths=None, state=None, need_state=True):
            return super().forward(x, lengths, state, need_state)

    with torch.no_grad():
        assert not OwnForward("lstm", I, H).eval().fuses_step(2, x)


def test_fused_step_cache_stays_out_of_state_dicts_and_copies():
    import copy
    import pickle

    torch.manual_seed(0)
    r = Recurrent("gru", I, H, num_layers=2).eval()
    x = torch.randn(2, 3, I)
    with torch.no_grad():
        want = _step_through(r, x)
    assert "_step_cache" in r.__dict__
    assert set(r.state_dict()) == {n for names in r._weight_names for n in names}
    for twin in (copy.deepcopy(r), pickle.loads(pickle.dumps(r))):
        assert "_step_cache" not in twin.__dict__
        with torch.no_grad():
            _assert_same_run(_step_through(twin, x), want, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_token_step_reads_a_table_and_follows_the_embedding(mode):
    import torch.nn.functional as F

    torch.manual_seed(0)
    V = 11
    r = Recurrent(mode, I, H, num_layers=2).eval()
    emb = torch.nn.Parameter(torch.randn(V, I))
    tokens = torch.randint(0, V, (3, 5))

    def check():
        state = None
        outs = []
        with torch.no_grad():
            for t in tokens.unbind(1):
                h, state = r.token_step(t, emb, state)
                outs.append(h)
            _assert_same_run((torch.stack(outs, 1), state), _reference(r, F.embedding(tokens, emb)))

    check()
    assert r._step_cache._table is not None  # the token rows came from the table
    with torch.no_grad():
        emb.mul_(2.0)  # a changed embedding: a new table
    check()
    one_hot = Recurrent(mode, V, H, num_layers=2).eval()  # embedding None: one-hot inputs
    with torch.no_grad():
        h, st = one_hot.token_step(tokens[:, 0], None)
        _assert_same_run((h.unsqueeze(1), st), _reference(one_hot, F.one_hot(tokens[:, :1], V).float()))
