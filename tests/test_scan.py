"""rnnkit.nn.scan (the GRU / plain-RNN / LSTM layers with a hand-written backward) against torch.nn.GRU / RNN / LSTM."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import rnnkit
import rnnkit.nn.recurrent as recurrent_module
import rnnkit.nn.onednn as onednn_module
import rnnkit.nn.compiled as compiled_module
import rnnkit.nn.scan as scan_module
from rnnkit.nn import Recurrent, State
from rnnkit.nn.dropout import dropout
from rnnkit.nn.scan import LSTMScan, Scan, free_spares, lstm_scan_layer, scan_layer

B, T, I, H, L = 4, 7, 3, 5, 2
LENGTHS = [7, 3, 5, 1]  # uneven, unsorted, one full, one of length 1
MODES = ["gru", "lstm", "rnn_tanh", "rnn_relu"]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def torch_twin(mode: str, input_size: int = I, **kw) -> torch.nn.Module:
    if mode in ("gru", "lstm"):
        return (torch.nn.GRU if mode == "gru" else torch.nn.LSTM)(input_size, H, batch_first=True, **kw)
    return torch.nn.RNN(input_size, H, batch_first=True, nonlinearity=mode[4:], **kw)


def pair(mode, bidirectional, dtype, num_layers=L, bias=True, dropout=0.0):
    theirs = torch_twin(mode, num_layers=num_layers, bidirectional=bidirectional, bias=bias).to(dtype)
    ours = Recurrent(mode, I, H, num_layers, bidirectional, dropout=dropout, bias=bias).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def readout(out, h, seed=1, c=None):
    """A random linear read-out of outputs and final states (every gradient then differs from 1)."""
    g = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in (out, h, c) if t is not None)


def run_twin(theirs, x, h0=None, c0=None):
    """torch's module on ``x`` from ``h0`` (and ``c0`` for an LSTM): ``(out, h_n, c_n or None)``."""
    if isinstance(theirs, torch.nn.LSTM):
        out, (h, c) = theirs(x, None if h0 is None else (h0, c0))
        return out, h, c
    out, h = theirs(x, h0)
    return out, h, None


def spy_on_scan(monkeypatch) -> list:
    """The modes of the layers Recurrent runs through rnnkit.nn.scan, one entry per layer and direction."""
    calls = []

    def spy(*args, **kw):
        calls.append(args[0])
        return scan_layer(*args, **kw)

    def lstm_spy(*args, **kw):
        calls.append("lstm")
        return lstm_scan_layer(*args, **kw)

    monkeypatch.setattr(recurrent_module, "scan_layer", spy)
    monkeypatch.setattr(recurrent_module, "lstm_scan_layer", lstm_spy)
    return calls


@pytest.fixture
def scan_calls(monkeypatch):
    """Spy on the scan, and let these small shapes take it and its oneDNN matmuls (in use the scan starts
    where it outruns PyTorch's C++ step loop, oneDNN where its call overhead pays: larger shapes)."""
    monkeypatch.setattr(recurrent_module, "SCAN_MIN_WORK", 0)
    monkeypatch.setattr(scan_module, "LSTM_SCAN", True)
    monkeypatch.setattr(recurrent_module, "LSTM_SCAN_MIN_WORK", 0)
    monkeypatch.setattr(recurrent_module, "LSTM_SCAN_MIN_STEPS", 0)
    monkeypatch.setattr(onednn_module, "ONEDNN_MIN_MACS", 0)
    monkeypatch.setattr(onednn_module, "_FASTER", onednn_module.onednn_linear_op() is not None)
    monkeypatch.setattr(scan_module, "PROJECTION_BLOCK_BYTES", 1000)  # a few steps per block: several blocks
    return spy_on_scan(monkeypatch)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", MODES)
def test_stack_matches_torch(mode, bidirectional, with_state, dtype, scan_calls):
    """Outputs, final states and the gradients of the input, the initial state and every parameter."""
    torch.manual_seed(0)
    ours, theirs = pair(mode, bidirectional, dtype)
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, I, dtype=dtype, requires_grad=True)
    lstm = mode == "lstm"
    h0 = torch.randn(L * D, B, H, dtype=dtype, requires_grad=True) if with_state else None
    c0 = torch.randn(L * D, B, H, dtype=dtype, requires_grad=True) if with_state and lstm else None
    out, st = ours(x, state=None if h0 is None else State(h0, c0))
    ref_out, ref_h, ref_c = run_twin(theirs, x, h0, c0)
    assert len(scan_calls) == L * D  # every layer and direction went through the scan
    tol = TOL[dtype]
    assert torch.allclose(out, ref_out, atol=tol, rtol=0)
    assert torch.allclose(st.h, ref_h, atol=tol, rtol=0)
    if lstm:
        assert torch.allclose(st.c, ref_c, atol=tol, rtol=0)
    states = [t for t in (h0, c0) if t is not None]
    wrt = [x, *states, *ours.parameters()]
    ref_wrt = [x, *states, *theirs.parameters()]
    for a, b in zip(torch.autograd.grad(readout(out, st.h, c=st.c), wrt),
                    torch.autograd.grad(readout(ref_out, ref_h, c=ref_c), ref_wrt), strict=True):
        assert torch.allclose(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", MODES)
def test_uneven_lengths_equal_each_sequence_alone_in_torch(mode, bidirectional, scan_calls):
    """A padded batch: each row's outputs, final state and gradients are what torch gives that row alone."""
    torch.manual_seed(0)
    dtype = torch.float64
    ours, theirs = pair(mode, bidirectional, dtype)
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, I, dtype=dtype, requires_grad=True)
    lstm = mode == "lstm"
    h0 = torch.randn(L * D, B, H, dtype=dtype, requires_grad=True)
    c0 = torch.randn(L * D, B, H, dtype=dtype, requires_grad=True) if lstm else None
    states = [t for t in (h0, c0) if t is not None]
    out, st = ours(x, torch.tensor(LENGTHS), State(h0, c0))
    assert len(scan_calls) == L * D
    loss, ref_loss = 0.0, 0.0
    x_alone = []
    for b, n in enumerate(LENGTHS):
        xb = x[b : b + 1, :n].detach().clone().requires_grad_()
        # the sequence alone: no pads at all
        ref_out, ref_h, ref_c = run_twin(theirs, xb, h0[:, b : b + 1], c0[:, b : b + 1] if lstm else None)
        assert torch.allclose(out[b, :n], ref_out[0], atol=1e-10, rtol=0)
        assert torch.all(out[b, n:] == 0)
        assert torch.allclose(st.h[:, b], ref_h[:, 0], atol=1e-10, rtol=0)
        if lstm:
            assert torch.allclose(st.c[:, b], ref_c[:, 0], atol=1e-10, rtol=0)
        loss = loss + readout(out[b, :n], st.h[:, b], seed=b, c=st.c[:, b] if lstm else None)
        ref_loss = ref_loss + readout(ref_out[0], ref_h[:, 0], seed=b, c=ref_c[:, 0] if lstm else None)
        x_alone.append(xb)
    grads = torch.autograd.grad(loss, [x, *states, *ours.parameters()])
    ref_grads = torch.autograd.grad(ref_loss, [*x_alone, *states, *theirs.parameters()])
    d_x, ref_d_x = grads[0], ref_grads[:B]
    for b, n in enumerate(LENGTHS):
        assert torch.allclose(d_x[b, :n], ref_d_x[b][0], atol=1e-10, rtol=0)
        assert torch.all(d_x[b, n:] == 0)  # pads get no gradient
    for a, r in zip(grads[1:], ref_grads[B:], strict=True):
        assert torch.allclose(a, r, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_outputs_only_padded_batch_uses_scan(mode, scan_calls):
    """need_state=False (the tagger's and classifier's call) takes the scan too, same outputs."""
    torch.manual_seed(0)
    ours, theirs = pair(mode, True, torch.float64)
    x, lens = torch.randn(B, T, I, dtype=torch.float64), torch.tensor(LENGTHS)
    out, st = ours(x, lens, need_state=False)
    assert st is None and len(scan_calls) == 2 * L
    for b, n in enumerate(LENGTHS):
        assert torch.allclose(out[b, :n], theirs(x[b : b + 1, :n])[0][0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_dropout_between_layers_is_torchs_layers_with_the_same_mask(mode, scan_calls):
    """Training with dropout: layer 0, the dropout mask the stack drew, layer 1 -- each as torch computes it."""
    torch.manual_seed(0)
    dtype = torch.float64
    ours, _ = pair(mode, True, dtype, dropout=0.5)
    ours.train()
    layers = []
    for layer in range(L):
        twin = torch_twin(mode, I if layer == 0 else 2 * H, bidirectional=True).to(dtype)
        sd = {k.replace(f"_l{layer}", "_l0"): v for k, v in ours.state_dict().items() if f"_l{layer}" in k}
        twin.load_state_dict(sd)
        layers.append(twin)
    x = torch.randn(B, T, I, dtype=dtype)
    torch.manual_seed(7)
    out = ours(x)[0]
    torch.manual_seed(7)  # the same random stream: the stack draws its mask over its time-major (T, B, 2H) input
    y0 = layers[0](x)[0]  # (B, T, 2H)
    mask_source = dropout(y0.transpose(0, 1).contiguous(), 0.5).transpose(0, 1)
    ref = layers[1](mask_source)[0]
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)
    assert not torch.allclose(out, layers[1](y0)[0])  # the mask did act
    assert len(scan_calls) == 2 * L


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode, reverse, masked):
    torch.manual_seed(0)
    G = {"gru": 3, "lstm": 4}.get(mode, 1)
    Tn, Bn, In, Hn = 4, 3, 2, 3
    states = [torch.randn(Bn, Hn)] * (2 if mode == "lstm" else 1)
    args = [torch.randn(Tn, Bn, In), *states, torch.randn(G * Hn, In), torch.randn(G * Hn, Hn) / 2,
            torch.randn(G * Hn), torch.randn(G * Hn)]
    args = [a.double().requires_grad_() for a in args]
    keep = torch.arange(Tn).unsqueeze(1) < torch.tensor([4, 1, 3]) if masked else None  # (T, B)
    if mode == "lstm":  # both outputs: every step's h and the final c
        assert torch.autograd.gradcheck(lambda *a: lstm_scan_layer(*a, keep=keep, reverse=reverse), args)
    else:
        assert torch.autograd.gradcheck(lambda *a: scan_layer(mode, *a, keep=keep, reverse=reverse), args)


@pytest.mark.parametrize("mode", MODES)
def test_without_bias(mode, scan_calls):
    torch.manual_seed(0)
    ours, theirs = pair(mode, True, torch.float64, bias=False)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    out, st = ours(x)
    ref_out, ref_h, ref_c = run_twin(theirs, x)
    assert len(scan_calls) == 2 * L
    assert torch.allclose(out, ref_out, atol=1e-10, rtol=0) and torch.allclose(st.h, ref_h, atol=1e-10, rtol=0)
    for a, b in zip(torch.autograd.grad(readout(out, st.h, c=st.c), [x, *ours.parameters()]),
                    torch.autograd.grad(readout(ref_out, ref_h, c=ref_c), [x, *theirs.parameters()]), strict=True):
        assert torch.allclose(a, b, atol=1e-9, rtol=0)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # printed by torch.backends.mkldnn.flags
@pytest.mark.parametrize("mode", MODES)
def test_onednn_and_fallback_matmuls_agree(mode, scan_calls):
    """float32 products go to oneDNN where torch has it; with oneDNN off they go to addmm: same numbers."""
    if onednn_module.onednn_linear_op() is None:
        pytest.skip("this torch has no oneDNN matmul")
    torch.manual_seed(0)
    ours = Recurrent(mode, I, H, L, bidirectional=True)
    x, lens = torch.randn(B, T, I), torch.tensor(LENGTHS)
    results = []
    for enabled in (True, False):
        with torch.backends.mkldnn.flags(enabled=enabled):
            out, st = ours(x, lens)
            grads = torch.autograd.grad(readout(out, st.h, c=st.c), list(ours.parameters()))
        results.append((out, st.h, *grads))
    assert len(scan_calls) == 2 * (2 * L)
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_graphs_alive_together_and_backward_twice(scan_calls):
    """Two forwards before their backward (gradient accumulation), and retain_graph: the scratch buffers are safe."""
    torch.manual_seed(0)
    ours = Recurrent("gru", I, H, L, bidirectional=True).double()
    x1, x2 = torch.randn(B, T, I, dtype=torch.float64), torch.randn(B, T + 2, I, dtype=torch.float64)
    params = list(ours.parameters())
    separate = [torch.autograd.grad(readout(*_out_h(ours, x)), params) for x in (x1, x2)]
    loss = readout(*_out_h(ours, x1)) + readout(*_out_h(ours, x2))  # both graphs alive
    together = torch.autograd.grad(loss, params, retain_graph=True)
    again = torch.autograd.grad(loss, params)
    assert len(scan_calls) == 4 * (2 * L)
    for s1, s2, t, a in zip(*separate, together, again):
        assert torch.allclose(s1 + s2, t, atol=1e-10) and torch.equal(t, a)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", MODES)
def test_sum_loss_float32(mode, bidirectional, scan_calls):
    """``out.sum()``: the incoming gradient is a broadcast (stride-0) tensor; float32 runs oneDNN's matmuls."""
    torch.manual_seed(0)
    ours, theirs = pair(mode, bidirectional, torch.float32)
    x = torch.randn(B, T, I, requires_grad=True)
    out, st = ours(x)
    ref_out, ref_h, _ = run_twin(theirs, x)
    assert len(scan_calls) == L * (2 if bidirectional else 1)
    for a, b in zip(torch.autograd.grad(out.sum() + st.h.sum(), [x, *ours.parameters()]),
                    torch.autograd.grad(ref_out.sum() + ref_h.sum(), [x, *theirs.parameters()]), strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    free_spares()  # the next backward allocates its scratch afresh: same numbers
    again = torch.autograd.grad(ours(x)[0].sum(), [x])[0]
    assert torch.allclose(again, torch.autograd.grad(theirs(x)[0].sum(), [x])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_training_size_float32(mode, monkeypatch):
    """A layer of the size the scan is for, as dispatched in use: float32 against torch to rounding."""
    torch.manual_seed(0)
    calls = spy_on_scan(monkeypatch)
    monkeypatch.setattr(scan_module, "LSTM_SCAN", True)  # the LSTM's scan is asked for (RNNKIT_LSTM_SCAN=1)
    Bb, Tb, Ib, Hb = 64, 40, 16, 128
    ours = Recurrent(mode, Ib, Hb, L, bidirectional=True)
    twin = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}.get(mode, torch.nn.RNN)
    theirs = twin(Ib, Hb, L, batch_first=True, bidirectional=True,
                  **({"nonlinearity": mode[4:]} if mode.startswith("rnn_") else {}))
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(Bb, Tb, Ib, requires_grad=True)
    out, st = ours(x)
    ref_out, ref_h, ref_c = run_twin(theirs, x)
    assert len(calls) == 2 * L
    assert torch.allclose(out, ref_out, atol=1e-5, rtol=0) and torch.allclose(st.h, ref_h, atol=1e-5, rtol=0)
    grads = torch.autograd.grad(readout(out, st.h, c=st.c), [x, *ours.parameters()])
    ref_grads = torch.autograd.grad(readout(ref_out, ref_h, c=ref_c), [x, *theirs.parameters()])
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5 * b.abs().max(), rtol=0)  # weight gradients reach ~100 here


def _out_h(module, x):
    out, st = module(x)
    return out, st.h


def test_dispatch(monkeypatch):
    """Where Recurrent takes the scan, and where it keeps its other paths."""
    torch.manual_seed(0)
    calls = spy_on_scan(monkeypatch)
    Bb, Hb = 64, 128  # 64 * 3 * 128^2 multiply-adds per GRU step: the scan's ground
    x, lens = torch.randn(Bb, T, I), torch.randint(1, T + 1, (Bb,))

    def used(module, inputs, lengths=None, **kw):
        calls.clear()
        module(inputs, lengths, **kw)
        return len(calls) > 0

    gru = Recurrent("gru", I, Hb, L)
    assert used(gru, x) and used(gru, x, lens) and used(gru, x, lens, need_state=False)
    assert used(gru.double(), x.double())
    gru.float()
    with torch.no_grad():
        assert used(gru, x)  # inference too: measured faster than torch's kernel as well
    assert used(Recurrent("rnn", I, 2 * Hb, L), x) and used(Recurrent("rnn_relu", I, 2 * Hb, L), x, lens)
    assert not used(gru, x[:, :1])  # one step (generation) keeps its own paths
    small = Recurrent("gru", I, 16, L)  # short sequences through a small layer: PyTorch's C++ loop is faster
    assert not used(small, x) and not used(gru, x[:2])
    long_x = torch.randn(Bb, 16, I)
    assert used(small, long_x)  # in training, long enough sequences make up for the Python step loop
    with torch.no_grad():
        assert not used(small, long_x)  # inference without a graph: torch's loop stays ahead on small layers
    lstm = Recurrent("lstm", I, Hb, L)
    monkeypatch.setattr(scan_module, "LSTM_SCAN", False)  # the default, whatever this process's environment says
    assert not used(lstm, long_x)  # LSTM: oneDNN's LSTM primitive unless RNNKIT_LSTM_SCAN=1
    monkeypatch.setattr(scan_module, "LSTM_SCAN", True)
    # asked for: in training from 16 steps
    assert used(lstm, long_x) and used(lstm, long_x, torch.randint(1, 17, (Bb,)))
    assert not used(lstm, x)  # fewer steps: PyTorch's kernel
    with torch.no_grad():
        assert not used(lstm, long_x)  # inference: oneDNN's LSTM primitive
    assert not used(Recurrent("lstm", I, 16, L), long_x)  # a small layer: PyTorch's kernel
    assert not used(Recurrent("gru", I, Hb, L, backend="reference"), x)  # the reference stays the cell loop
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not used(gru, x)
    assert gru._fused_strategy(x, None) == "scan" and gru._fused_strategy(x, lens) == "scan"


def test_scan_layer_checks_its_arguments():
    x, h0 = torch.randn(T, B, I), torch.zeros(B, H)
    w_ih, w_hh = torch.randn(3 * H, I), torch.randn(3 * H, H)
    with pytest.raises(ValueError, match="runs"):
        scan_layer("lstm", x, h0, w_ih, w_hh, None, None)
    with pytest.raises(ValueError, match="both biases or neither"):
        scan_layer("gru", x, h0, w_ih, w_hh, torch.zeros(3 * H), None)
    with pytest.raises(ValueError, match="both biases or neither"):
        lstm_scan_layer(x, h0, h0, torch.randn(4 * H, I), torch.randn(4 * H, H), None, torch.zeros(4 * H))
    assert issubclass(Scan, torch.autograd.Function) and issubclass(LSTMScan, torch.autograd.Function)


def test_lstm_scan_switch_from_the_environment_and_the_run_record(monkeypatch):
    """RNNKIT_LSTM_SCAN=1 turns the LSTM's scan on in a new process; a run folder's kernel record carries it."""
    env = {k: v for k, v in os.environ.items() if k != "RNNKIT_LSTM_SCAN"}
    src = str(Path(rnnkit.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    code = "import rnnkit.nn.scan as s; print(s.LSTM_SCAN)"
    outs = [subprocess.run([sys.executable, "-c", code], env=dict(env, **extra), capture_output=True, text=True,
                           check=True).stdout.strip() for extra in ({}, {"RNNKIT_LSTM_SCAN": "1"})]
    assert outs == ["False", "True"]
    monkeypatch.setattr(scan_module, "LSTM_SCAN", True)
    monkeypatch.setattr(onednn_module, "_FASTER", False)
    monkeypatch.setattr(compiled_module, "USE", True)
    assert onednn_module.kernel_choices() == {"onednn_matmul": False, "lstm_scan": True, "compiled_loops": True}
    onednn_module.apply_kernel_choices({"onednn_matmul": False})  # recorded before the scan existed: off
    assert scan_module.LSTM_SCAN is False
    onednn_module.apply_kernel_choices({"onednn_matmul": False, "lstm_scan": True})
    assert scan_module.LSTM_SCAN is True


def _layer_run(mode, dtype, reverse, masked, with_bias, compiled_on, seed=0, backward=True, scale=1.0):
    """Outputs and every gradient of one LSTM or GRU scan layer, with its loops compiled or in Python; inputs and
    weights times ``scale``."""
    from rnnkit.nn import compiled

    g = torch.Generator().manual_seed(seed)
    T, B, I, H = 7, 5, 6, 8
    G = 4 if mode == "lstm" else 3
    shapes = ((T, B, I), (B, H)) + (((B, H),) if mode == "lstm" else ()) + ((G * H, I), (G * H, H), (G * H,), (G * H,))
    args = [(torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_() for shape in shapes]
    if not with_bias:
        args[-2:] = [None, None]
    keep = None
    if masked:
        lengths = torch.tensor([7, 3, 1, 5, 7])
        keep = torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)
    was = compiled.USE
    compiled.set_compiled(compiled_on)
    try:
        if mode == "lstm":
            out, c_n = lstm_scan_layer(*args, keep=keep, reverse=reverse)
        else:
            out, c_n = scan_layer(mode, *args, keep=keep, reverse=reverse), torch.zeros(())
    finally:
        compiled.set_compiled(was)
    if not backward:
        return [out, c_n]
    w_out = torch.randn(out.shape, generator=g, dtype=dtype)
    w_c = torch.randn(c_n.shape, generator=g, dtype=dtype)
    ((out * w_out).sum() + (c_n * w_c).sum()).backward()
    return [out.detach(), c_n.detach()] + [a.grad for a in args if a is not None]


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_loops_equal_the_python_loops(mode, dtype, reverse, masked, with_bias, need_compiled):
    """Outputs, final states and the gradients of every input, state and weight."""
    ours = _layer_run(mode, dtype, reverse, masked, with_bias, True)
    python = _layer_run(mode, dtype, reverse, masked, with_bias, False)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for a, b in zip(ours, python):
        assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()
    for off in (torch.no_grad, torch.inference_mode):  # inference keeps no gates: a branch of its own
        with off():
            inferred = _layer_run(mode, dtype, reverse, masked, with_bias, True, backward=False)
            in_python = _layer_run(mode, dtype, reverse, masked, with_bias, False, backward=False)
        assert all(torch.allclose(a, b, rtol=tol, atol=tol) for a, b in zip(inferred, python[:2]))
        assert all(torch.allclose(a, b, rtol=tol, atol=tol) for a, b in zip(in_python, python[:2]))


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_loops_saturate_like_the_python_loops(mode, dtype, need_compiled):
    """Pre-activations in the hundreds (beyond exp's range in float32) saturate the gates, as torch's sigmoid
    does, instead of overflowing: the compiled loops are built with -ffast-math, under which exp(100) in
    1 / (1 + exp(-a)) came out NaN."""
    scale = 60.0 if dtype == torch.float64 else 12.0  # pre-activations past 709 / 89, where exp overflows
    ours = _layer_run(mode, dtype, False, True, True, True, scale=scale)
    python = _layer_run(mode, dtype, False, True, True, False, scale=scale)
    assert all(torch.isfinite(a).all() for a in ours)
    # float32: the outputs; its gradients here are float32 rounding of 1 - n^2 at saturation times weights in
    # the tens, where the two loops' sigmoids round apart (1e-5 against 1e-21), so float64 checks them
    compared = len(ours) if dtype == torch.float64 else 2
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    for a, b in zip(ours[:compared], python[:compared]):  # relative: the gradients run into the thousands
        assert (a - b).abs().max() <= tol * (1 + b.abs().max()), (a - b).abs().max()


def test_inference_saves_nothing_for_backward(monkeypatch):
    """Under no_grad the scans take their inference branch (no gates kept), though the weights require grad."""
    seen = []
    real = LSTMScan.forward

    def spy(ctx, *args):
        seen.append(any(ctx.needs_input_grad))
        return real(ctx, *args)

    monkeypatch.setattr(LSTMScan, "forward", staticmethod(spy))
    with torch.no_grad():
        _layer_run("lstm", torch.float64, False, False, True, True, backward=False)
    _layer_run("lstm", torch.float64, False, False, True, True)
    assert seen == [False, True]


def test_compiled_loops_are_used_and_recorded(monkeypatch, need_compiled):
    """Where built, the LSTM and GRU scans run the compiled loops (the Python loops are not entered), and the
    run record says which loops ran; RNNKIT_COMPILED=0 in the environment turns them off."""
    from rnnkit.nn import compiled
    from rnnkit.nn import scan as scan_module

    entered = []
    monkeypatch.setattr(scan_module, "_lstm_backward_loop", lambda *a: entered.append(1))
    monkeypatch.setattr(scan_module, "_Projection", lambda *a: entered.append(1))
    for mode in ("lstm", "gru"):
        ours = _layer_run(mode, torch.float64, False, True, True, True)
        assert not entered and all(torch.isfinite(t).all() for t in ours)
    assert onednn_module.kernel_choices()["compiled_loops"] is True
    monkeypatch.setattr(compiled, "USE", False)
    assert onednn_module.kernel_choices()["compiled_loops"] is False
    onednn_module.apply_kernel_choices({"onednn_matmul": False, "lstm_scan": False, "compiled_loops": True})
    assert compiled.USE is True
    onednn_module.apply_kernel_choices({"onednn_matmul": False, "lstm_scan": False})  # an older run: Python loops
    assert compiled.USE is False
    code = "from rnnkit.nn import compiled; print(compiled.USE)"
    src = str(Path(rnnkit.__file__).parents[1])
    env = dict(os.environ, RNNKIT_COMPILED="0",
               PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "False"


def test_loading_the_compiled_loops_leaves_the_floating_point_mode_alone(need_compiled):
    """They are compiled with -ffast-math for a vectorised exp; linked with it, the library would switch the whole
    process to flush denormals to zero on load."""
    from rnnkit.nn import compiled

    assert compiled.load()
    tiny = torch.tensor([1e-39]) * 0.5  # a float32 denormal
    assert tiny.item() != 0.0 and torch.tensor([1e-310], dtype=torch.float64).mul(0.5).item() != 0.0


def test_a_stale_build_lock_is_cleared_and_a_failed_build_falls_back(monkeypatch, tmp_path, capsys):
    """A lock left by a killed build would make every later process wait forever; a build that cannot run
    (here: no ninja on PATH) leaves the Python loops on, with the reason."""
    from rnnkit.nn import compiled

    monkeypatch.setenv("RNNKIT_BUILD_DIR", str(tmp_path))
    monkeypatch.setattr(compiled, "_LOADED", compiled._UNTRIED)
    monkeypatch.setattr(compiled, "_ERROR", None)
    where = tmp_path / compiled._name()
    where.mkdir()
    (where / "lock").write_text("")
    old = time.time() - 2 * compiled.STALE_LOCK_SECONDS
    os.utime(where / "lock", (old, old))
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler, no ninja
    assert compiled.load() is False and not (where / "lock").exists()
    assert compiled.build_error() and "Python loops" in capsys.readouterr().err
    monkeypatch.setattr(compiled, "USE", True)
    assert compiled.available() is False
    out = _layer_run("gru", torch.float64, False, False, True, True)  # falls back: same as the Python loops
    python = _layer_run("gru", torch.float64, False, False, True, False)
    assert all(torch.equal(a, b) for a, b in zip(out, python))


def test_gates_over_the_limit_run_the_python_loops(monkeypatch, need_compiled):
    """Above COMPILED_MAX_SAVED_BYTES of gates a training call runs the Python loops; inference keeps no gates
    and stays compiled."""
    entered = []
    real = scan_module._Projection

    def spy(*a):
        entered.append(1)
        return real(*a)

    monkeypatch.setattr(scan_module, "_Projection", spy)
    monkeypatch.setattr(scan_module, "COMPILED_MAX_SAVED_BYTES", 7 * 5 * 3 * 8 * 8 - 1)  # GRU gates, float64
    _layer_run("gru", torch.float64, False, False, True, True)
    assert entered == [1]
    with torch.no_grad():
        _layer_run("gru", torch.float64, False, False, True, True, backward=False)
    assert entered == [1]
    monkeypatch.setattr(scan_module, "COMPILED_MAX_SAVED_BYTES", 7 * 5 * 3 * 8 * 8)
    _layer_run("gru", torch.float64, False, False, True, True)
    assert entered == [1]
