"""LanguageModel: every config trains, generation agrees with the full forward, one-to-many works."""
import pytest
import torch

from rnnkit.batching import StreamBatches, lm_batch
from rnnkit.decoding import generate
from rnnkit.models import MODELS, build_model, LanguageModel, LanguageModelConfig
from rnnkit.nn import State

CONFIGS = [
    dict(cell="rnn", embedding_size=None, num_layers=1, bias=False),
    dict(cell="lstm", embedding_size=8, num_layers=2, dropout=0.1),
    dict(cell="gru", embedding_size=16, hidden_size=16, num_layers=2, tie_weights=True),
    dict(cell="lstm", embedding_size=8, num_layers=1, num_labels=3),
]


def _model(**kw):
    torch.manual_seed(0)
    return LanguageModel(LanguageModelConfig(**{"vocab_size": 7, "hidden_size": 12, **kw}))


@pytest.mark.parametrize("kw", CONFIGS)
def test_every_parameter_gets_a_gradient_and_shapes_are_right(kw):
    m = _model(**kw)
    x = torch.randint(0, 7, (3, 5))
    labels = torch.tensor([0, 1, 2]) if kw.get("num_labels") else None
    logits, state = m(x, labels=labels)
    assert logits.shape == (3, 5, 7) and isinstance(state, State)
    logits.sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kw", CONFIGS)
def test_overfits_a_tiny_stream(kw):
    m = _model(**kw)
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 6] * 8)
    data = StreamBatches(ids, batch_size=2, seq_len=7)
    opt = torch.optim.Adam(m.parameters(), lr=0.03)
    labels = torch.tensor([1, 1]) if kw.get("num_labels") else None
    for _ in range(60):
        for b in data.epoch_batches():
            b.labels = labels
            out = m.loss(b)
            opt.zero_grad()
            (out.loss / out.num_tokens).backward()
            opt.step()
    m.eval()
    total = count = 0.0
    for b in data.epoch_batches():
        b.labels = labels
        with torch.no_grad():
            out = m.loss(b)
        total, count = total + float(out.loss), count + int(out.num_tokens)
    assert total / count < 0.05


@pytest.mark.parametrize("kw", CONFIGS)
def test_step_by_step_equals_full_forward(kw):
    m = _model(**kw).eval()
    x = torch.randint(0, 7, (2, 6))
    labels = torch.tensor([2, 0]) if kw.get("num_labels") else None
    full, _ = m(x, labels=labels)
    state, steps = None, []
    logits, state = m.step(x[:, :2], state, labels)  # a prime of two tokens in one call
    steps.append(logits)
    for t in range(2, 6):
        logits, state = m.step(x[:, t:t + 1], state, labels)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_tbptt_carry_equals_one_long_pass():
    m = _model(cell="lstm", embedding_size=8, num_layers=2).eval()
    ids = torch.randint(0, 7, (2 * 40,))
    whole = StreamBatches(ids, batch_size=2, seq_len=100)
    windows = StreamBatches(ids, batch_size=2, seq_len=7)
    (b,) = list(whole.epoch_batches())
    expect = m.loss(b).loss
    carry, total = None, 0.0
    for w in windows.epoch_batches():
        out = m.loss(w, carry)
        carry, total = out.carry, total + out.loss
    torch.testing.assert_close(total, expect, atol=1e-4, rtol=1e-5)


def test_padded_sequence_batch_equals_each_alone():
    m = _model(cell="gru", embedding_size=8, num_layers=2, num_labels=2).eval()
    seqs, labels = [[1, 2, 3, 4, 5], [3], [6, 6, 2]], [0, 1, 1]
    b = lm_batch(seqs, pad_id=0, bos_id=1, eos_id=2, labels=labels)
    together = m.loss(b)
    alone = [m.loss(lm_batch([s], 0, 1, 2, [l])) for s, l in zip(seqs, labels)]
    torch.testing.assert_close(together.loss, sum(a.loss for a in alone), atol=1e-5, rtol=1e-5)
    assert int(together.num_tokens) == sum(len(s) + 1 for s in seqs)


def test_conditioned_generation_depends_on_label():
    m = _model(cell="lstm", embedding_size=8, num_layers=1, num_labels=3).eval()
    prime = torch.full((1, 1), 1)
    out = [generate(lambda t, s, l=l: m.step(t, s, torch.tensor([l])), None, prime, 8, greedy=True)
           for l in range(3)]
    assert len({tuple(o[0].tolist()) for o in out}) > 1


def test_registry_and_config_errors():
    assert "language_model" in MODELS
    m = build_model("language_model", {"vocab_size": 5, "hidden_size": 4})
    assert isinstance(m, LanguageModel)
    with pytest.raises(ValueError, match="unknown language_model config fields"):
        build_model("language_model", {"vocab_size": 5, "bogus": 1})
    with pytest.raises(ValueError, match="tie-weights"):
        _model(tie_weights=True, embedding_size=5)


# ---- sampling equals a loop stepping torch.nn.LSTM ---------------------------------------------------------

class _TorchLSTMLoop(torch.nn.Module):
    """What a user writes by hand: torch's embedding, LSTM and linear on the model's weights, one token per
    call, softmax and torch.multinomial (or the argmax)."""

    def __init__(self, m: LanguageModel) -> None:
        super().__init__()
        c = m.config
        self.emb = torch.nn.Embedding(c.vocab_size, c.embedding_size)
        self.rnn = torch.nn.LSTM(c.embedding_size, c.hidden_size, c.num_layers, batch_first=True)
        self.out = torch.nn.Linear(c.hidden_size, c.vocab_size)
        self.emb.load_state_dict(m.embedding.state_dict())
        self.rnn.load_state_dict(m.rnn.state_dict())
        self.out.load_state_dict(m.out.state_dict())

    @torch.inference_mode()
    def sample(self, prime, length, generator=None, greedy=False):
        y, hx = self.rnn(self.emb(prime))
        logits, out = self.out(y[:, -1]), []
        for _ in range(length):
            if greedy:
                token = logits.argmax(-1, keepdim=True)
            else:
                token = torch.multinomial(logits.float().softmax(-1), 1, generator=generator)  # (B, 1)
            out.append(token)
            y, hx = self.rnn(self.emb(token), hx)
            logits = self.out(y[:, -1])
        return torch.cat(out, 1)


@pytest.mark.parametrize("compiled_on", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_generate_draws_the_text_of_a_torch_lstm_loop(batch, n_threads, compiled_on, step_loops, monkeypatch):
    import rnnkit.nn.fused_step as fused_step

    monkeypatch.setattr(fused_step, "SPLIT_MIN_ENTRIES", 0)  # two threads: the halved products too
    calls = step_loops(compiled_on)
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        torch.manual_seed(0)
        m = LanguageModel(LanguageModelConfig(vocab_size=65, hidden_size=48, num_layers=2, embedding_size=16)).eval()
        theirs = _TorchLSTMLoop(m).eval()
        prime = torch.randint(0, 65, (batch, 8))
        for seed in (1, 2):
            ours = generate(m.step, None, prime, 120, generator=torch.Generator().manual_seed(seed))
            assert torch.equal(ours, theirs.sample(prime, 120, torch.Generator().manual_seed(seed)))
        assert torch.equal(generate(m.step, None, prime, 60, greedy=True), theirs.sample(prime, 60, greedy=True))
        assert m.rnn.__dict__.get("_step_cache") is not None  # the fused step ran
        assert bool(calls) == compiled_on
    finally:
        torch.set_num_threads(before)


def test_step_after_training_uses_the_new_weights():
    m = _model(cell="lstm", embedding_size=8, num_layers=2)
    x = torch.randint(0, 7, (2, 5))
    m.eval()
    with torch.no_grad():
        m.step(x[:, :1], None)  # lays out the weights for the fused step
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    logits, _ = m(x)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 7), x.roll(-1, 1).reshape(-1)).backward()
    opt.step()
    m.eval()
    full, _ = m(x)
    state, steps = None, []
    with torch.no_grad():
        for t in range(5):
            logits, state = m.step(x[:, t:t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-6, rtol=0)
