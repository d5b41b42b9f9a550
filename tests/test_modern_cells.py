"""minGRU, minLSTM, LRU, sLSTM, mLSTM: the parallel form equals the reference steps, pads change nothing,
stepping equals unrolling, and every model runs, decodes and learns with each cell."""
import copy

import pytest
import torch
from torch.func import functional_call

import rnnkit.nn.parallel as parallel
import rnnkit.nn.xlstm as xlstm
from rnnkit.batching import StreamBatches, seq2seq_batch
from rnnkit.decoding import beam_search, greedy_search
from rnnkit.models import Classifier, ClassifierConfig, LanguageModel, LanguageModelConfig, Seq2Seq, Seq2SeqConfig
from rnnkit.models import Tagger, TaggerConfig
from rnnkit.nn import CELL_NAMES, CELLS, Recurrent, State, make_cell
from rnnkit.nn.base import SequenceCell
from rnnkit.tasks.inspect import GATE_NAMES, trace

NEW = ["mingru", "minlstm", "lru", "slstm", "mlstm"]
B, T, I, H, L = 4, 11, 3, 8, 2
LENGTHS = [11, 3, 6, 1]  # uneven, unsorted, one full, one of length 1


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 4 steps, so that an 11-step sequence crosses chunk boundaries and ends in a partial chunk."""
    monkeypatch.setattr(parallel, "CHUNK", 4)
    monkeypatch.setattr(xlstm, "CHUNK", 4)


def random_state(rnn: Recurrent, batch: int, dtype=torch.float32) -> State:
    """A random state of the stack's layout; normalisers positive, as the recurrence leaves them."""
    g = torch.Generator().manual_seed(5)
    LD = rnn.num_layers * rnn.num_directions
    return State(*(None if k is None else
                   (torch.rand(LD, batch, k, generator=g, dtype=dtype) + 0.5 if name == "n" else
                    torch.randn(LD, batch, k, generator=g, dtype=dtype)).requires_grad_()
                   for name, k in zip(rnn.spec.state_names, rnn.state_sizes)))


def readout_grads(out: torch.Tensor, st: State, wrt, seed=1):
    """Gradients of a random linear read-out of the outputs and every tensor of the final state."""
    g = torch.Generator().manual_seed(seed)
    tensors = [out] + [t for t in st if t is not None]
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in tensors)
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return [torch.zeros_like(w) if d is None else d for w, d in zip(wrt, grads)]  # None: no path, a zero gradient


@pytest.mark.parametrize("chunk", [4, 64])
def test_scans_follow_a_sequential_loop_over_long_sequences(chunk, monkeypatch):
    """Float32 scans over 3000 steps (strong and weak decay, a start state of either sign) against a
    float64 loop.  One chunk of all 3000 steps was 6e-4 relative off, 40x further (chunk=3000 here; 2-core x86_64
    CPU, torch 2.13.0, 2026-12-04): hence the chunks."""
    monkeypatch.setattr(parallel, "CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    n = 3000
    log_a = -torch.rand(2, n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.01, 1.0, 5.0], dtype=torch.float64)
    log_b = torch.randn(2, n, 3, generator=g, dtype=torch.float64)
    h0 = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.0, 3.0]], dtype=torch.float64)
    log_lam = torch.complex(torch.tensor([-0.001, -0.1, -2.0]), torch.tensor([0.3, 2.0, -1.0])).to(torch.complex128)
    b = torch.randn(2, n, 3, generator=g, dtype=torch.complex128)
    want_real, want_complex = [], []
    h, x = h0, h0.to(torch.complex128)
    for t in range(n):
        h = log_a[:, t].exp() * h + log_b[:, t].exp()
        x = log_lam.exp() * x + b[:, t]
        want_real.append(h)
        want_complex.append(x)
    got = parallel.log_scan(log_a.float(), log_b.float(), h0.float())
    torch.testing.assert_close(got, torch.stack(want_real, 1).float(), atol=1e-5, rtol=5e-5)
    got = parallel.invariant_scan(log_lam.to(torch.complex64), b.to(torch.complex64), h0.to(torch.complex64))
    torch.testing.assert_close(got, torch.stack(want_complex, 1).to(torch.complex64), atol=2e-4, rtol=1e-5)


def test_the_table():
    assert CELL_NAMES == ("rnn", "lstm", "gru", "mingru", "minlstm", "lru", "slstm", "mlstm")
    assert [n for n in CELL_NAMES if CELLS[n].exportable] == ["rnn", "lstm", "gru"]
    for name in NEW:
        row = CELLS[name]
        assert row.sequence_cell and row.parallel is not None and len(row.bridgeable) == len(row.state_names)
        cell = make_cell(name, I, H)
        assert isinstance(cell, row.cls) and len(cell.state_sizes) == len(row.state_names)
        x = torch.randn(B, I)
        torch.testing.assert_close(cell(x).h, cell.step(x, cell.zero_state(B, x)).h)  # a cell does one step
        assert GATE_NAMES[name] == row.gates


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", NEW)
def test_parallel_equals_reference(mode, bidirectional):
    """Outputs, final states and the gradients of inputs, initial state and weights, padded batch, 2 layers."""
    torch.manual_seed(0)
    rnn = Recurrent(mode, I, H, num_layers=L, bidirectional=bidirectional)
    x = torch.randn(B, T, I, requires_grad=True)
    state = random_state(rnn, B)
    lengths = torch.tensor(LENGTHS)
    init = [t for t in state if t is not None]
    results = {}
    for backend in ("reference", "fused"):
        rnn.backend = backend
        out, st = rnn(x, lengths, state)
        results[backend] = out, st, readout_grads(out, st, [x, *init, *rnn.parameters()])
    (out_r, st_r, g_r), (out_p, st_p, g_p) = results["reference"], results["fused"]
    assert out_p.shape == (B, T, H * (2 if bidirectional else 1))
    torch.testing.assert_close(out_p, out_r, atol=1e-5, rtol=1e-5)
    assert len(st_p) == len(st_r) == len(CELLS[mode].state_names)
    for a, b in zip(st_p, st_r):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for (name, _), a, b in zip([("x", 0)] + [("state", 0)] * len(init) + list(rnn.named_parameters()), g_p, g_r):
        assert b is not None and torch.isfinite(b).all(), name
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("mode", NEW)
def test_dropout_between_layers_and_no_bias(mode):
    """Both backends draw the same masks between layers (same numbers from the same seed); eval drops
    nothing; bias=False leaves out the biases (mLSTM's gate biases stay: they open the forget gate)."""
    rnn = Recurrent(mode, I, H, num_layers=3, dropout=0.5, bias=False)
    assert all("bias" not in n or "bias_gates" in n for n, _ in rnn.named_parameters())
    x = torch.randn(B, T, I)
    outs = {}
    for backend in ("fused", "reference"):
        rnn.backend = backend
        torch.manual_seed(3)
        outs[backend] = rnn.train()(x)[0]
    torch.testing.assert_close(outs["fused"], outs["reference"], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(outs["fused"], rnn.eval()(x)[0])


@pytest.mark.parametrize("mode", NEW)
def test_gradcheck_float64(mode):
    """The parallel form's gradients (inputs, initial state, every weight) against finite differences."""
    torch.manual_seed(0)
    cell = make_cell(mode, 2, 4).double()
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    g = torch.Generator().manual_seed(1)
    sizes = cell.state_sizes
    s_names = CELLS[mode].state_names
    s0 = [None if k is None else (torch.rand(2, k, generator=g, dtype=torch.float64) + 0.5 if n == "n"
                                  else torch.randn(2, k, generator=g, dtype=torch.float64)).requires_grad_()
          for n, k in zip(s_names, sizes)]
    given = [t for t in s0 if t is not None]

    def run(x, *rest):
        ps, ss = rest[:len(params)], list(rest[len(params):])
        state = State(*(None if t is None else ss.pop(0) for t in s0))
        out, final = functional_call(cell, dict(zip(names, ps)), (x, state, keep), strict=True)
        return (out, *[t for t in final if t is not None])

    cell.forward = cell.parallel  # functional_call runs forward
    assert torch.autograd.gradcheck(run, (x, *params, *given), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("mode", NEW)
def test_padded_batch_equals_each_sequence_alone(mode):
    torch.manual_seed(0)
    rnn = Recurrent(mode, I, H, num_layers=L, bidirectional=True).eval()
    x = torch.randn(B, T, I)
    state = random_state(rnn, B)
    with torch.no_grad():
        for backend in ("fused", "reference"):
            rnn.backend = backend
            out, st = rnn(x, torch.tensor(LENGTHS), state)
            for b, n in enumerate(LENGTHS):
                alone, st1 = rnn(x[b:b + 1, :n], None, state.index_select(torch.tensor([b])))
                torch.testing.assert_close(out[b, :n], alone[0], atol=1e-5, rtol=1e-5)
                assert not out[b, n:].any()  # zeros at pads
                for a, c in zip(st.index_select(torch.tensor([b])), st1):
                    if a is not None:
                        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", NEW)
def test_unroll_equals_single_steps(mode):
    torch.manual_seed(0)
    rnn = Recurrent(mode, I, H, num_layers=L).eval()
    x = torch.randn(B, T, I)
    with torch.no_grad():
        full, final = rnn(x)
        state, outs = None, []
        for x_t in x.split(1, dim=1):
            out, state = rnn(x_t, state=state)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    for a, b in zip(state, final):
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", NEW)
def test_state_methods_work_on_every_layout(mode):
    """What beam search, truncated BPTT, checkpoints and the trainer's carry do with a state."""
    torch.manual_seed(0)
    rnn = Recurrent(mode, I, H, num_layers=L, bidirectional=True)
    _, st = rnn(torch.randn(B, T, I))
    assert st.batch_size == B and all(t.shape[:2] == (2 * L, B) for t in st if t is not None)
    picked = st.index_select(torch.tensor([3, 3, 0]))
    assert picked.batch_size == 3 and torch.equal(picked.extra[-1][:, 0], st.extra[-1][:, 3]) if st.extra else True
    mixed = st.where(torch.tensor([True, False, True, False]), st.map(torch.zeros_like))
    assert all(not t[:, 1].any() and torch.equal(t[:, 0], s[:, 0]) for t, s in zip(mixed, st) if t is not None)
    restacked = State.stack([st.layer(i) for i in range(2 * L)])
    assert all(torch.equal(a, b) for a, b in zip(restacked, st) if a is not None)
    assert not any(t.requires_grad for t in st.detach() if t is not None)
    assert State(*list(st)) == st  # the trainer saves list(carry) and restores State(*carry)
    leaves, spec = torch.utils._pytree.tree_flatten(st)  # DDP and torch.compile see every tensor
    assert sum(isinstance(t, torch.Tensor) for t in leaves) == sum(t is not None for t in st)
    assert torch.utils._pytree.tree_unflatten(leaves, spec) == st
    copied = copy.deepcopy(st.detach())
    assert isinstance(copied, State) and all(torch.equal(a, b) for a, b in zip(copied, st) if a is not None)
    if any(t is not None for t in st.extra):
        with pytest.raises(ValueError, match="no torch.nn form"):
            st.as_torch()
    wrong = State(st.h, st.h) if len(st) == 2 and st.c is None else State(st.h)
    with pytest.raises(ValueError, match="state"):
        rnn(torch.randn(B, T, I), state=wrong)


@pytest.mark.parametrize("mode", NEW)
def test_inspect_traces_hidden_states_and_gates(mode):
    torch.manual_seed(0)
    rnn = Recurrent(mode, 5, H, num_layers=2)
    x = torch.randn(9, 5)
    with torch.no_grad():
        out, _ = rnn(x.unsqueeze(0))
        traced = trace(rnn, x)
    torch.testing.assert_close(traced[-1]["hidden"], out[0], atol=1e-5, rtol=1e-5)
    for gate in GATE_NAMES[mode]:
        v = traced[0][gate]
        assert v.shape == (9, H) and 0 <= float(v.min()) and float(v.max()) <= 1, gate


# ------------------------------------------------------------------ models

def _lm(mode: str, **kw) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(LanguageModelConfig(**{"vocab_size": 7, "cell": mode, "hidden_size": 16,
                                                "embedding_size": 8, "num_layers": 2, **kw}))


@pytest.mark.parametrize("mode", NEW)
def test_language_model_teacher_forced_logits_equal_step_by_step(mode):
    m = _lm(mode).eval()
    x = torch.randint(0, 7, (2, 9))
    with torch.no_grad():
        full, _ = m(x)
        logits, state = m.step(x[:, :3], None)  # a prime of three tokens in one call
        steps = [logits]
        for t in range(3, 9):
            logits, state = m.step(x[:, t:t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", NEW)
def test_language_model_overfits_a_short_string(mode):
    m = _lm(mode, num_layers=1, hidden_size=32)
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 6, 2, 4] * 6)
    data = StreamBatches(ids, batch_size=2, seq_len=9)
    opt = torch.optim.Adam(m.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        carry = None
        for b in data.epoch_batches():
            out = m.loss(b, carry)
            carry = out.carry
            opt.zero_grad()
            loss = out.loss / out.num_tokens
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("mode", NEW)
def test_classifier_and_tagger_train_with_every_parameter(mode):
    torch.manual_seed(0)
    x = torch.randint(1, 9, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    clf = Classifier(ClassifierConfig(vocab_size=9, num_classes=3, embedding_size=8, cell=mode, hidden_size=8,
                                      bidirectional=True, num_layers=2, pooling="last"))
    tag = Tagger(TaggerConfig(vocab_size=9, num_tags=4, embedding_size=8, cell=mode, hidden_size=8,
                              bidirectional=True, num_layers=2))
    for model, out in ((clf, clf(x, lengths)), (tag, tag(x, lengths))):
        out.sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("bridge", ["copy", "linear", "zero"])
@pytest.mark.parametrize("mode", NEW)
def test_seq2seq_decodes_with_every_bridge(mode, bridge):
    """Bidirectional encoder -> decoder of twice the width; teacher-forced logits (Luong: the decoder's
    parallel form from the bridged state; Bahdanau: its step loop) equal the step loop's; greedy equals
    beam 1 through the state's index_select."""
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, embedding_size=8, hidden_size=32,
                                  cell=mode, bidirectional=True, num_layers=2, dropout=0.0,
                                  attention="bahdanau" if bridge == "zero" else "luong", bridge=bridge)).eval()
    g = torch.Generator().manual_seed(1)
    src = [torch.randint(3, 11, (n,), generator=g).tolist() for n in (5, 3, 7)]
    tgt = [torch.randint(3, 13, (n,), generator=g).tolist() for n in (4, 6, 2)]
    b = seq2seq_batch(src, tgt, 0, 0, 1, 2)
    with torch.no_grad():
        forced, _ = model(b.inputs, b.lengths, b.decoder_inputs)
        state = model.encode(b.inputs, b.lengths)
        assert all(t.shape[:2] == (2, 3) for t in state.rnn if t is not None)
        steps = []
        for t in range(b.decoder_inputs.shape[1]):
            logits, state = model.step(b.decoder_inputs[:, t:t + 1], state)
            steps.append(logits)
        torch.testing.assert_close(torch.cat(steps, 1), forced, atol=1e-5, rtol=1e-5)
        start = model.encode(b.inputs, b.lengths)
        greedy = greedy_search(model.step, start, model.start_tokens(3, b.inputs.device), 2, max_len=6)
        beams = beam_search(model.step, start, model.start_tokens(3, b.inputs.device), 2, beam_size=1, max_len=6)
    assert [h[0].tokens for h in beams] == greedy


def test_bridge_refuses_a_state_that_does_not_fit():
    """mLSTM heads have gcd(width, 16) units: a 12-wide decoder has one head of 4, each 6-wide encoder
    direction one head of 2, so the joined matrix memories are smaller than the decoder's."""
    with pytest.raises(ValueError, match="does not fit"):
        Seq2Seq(Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=5, hidden_size=12, cell="mlstm", bidirectional=True))
    Seq2Seq(Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=5, hidden_size=12, cell="mlstm", bidirectional=True,
                          bridge="zero"))


def test_rnn_lstm_gru_keep_torch_names():
    for mode in ("rnn", "lstm", "gru"):
        assert "weight_ih_l0" in dict(Recurrent(mode, I, H).named_parameters())
    assert all(n.startswith("cells.") for n, _ in Recurrent("mingru", I, H, 2, True).named_parameters())
    assert isinstance(Recurrent("lru", I, H).cells[0], SequenceCell)
