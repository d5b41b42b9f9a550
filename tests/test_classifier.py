"""Classifier: every pooling trains, pads are never read, ``last`` matches torch.nn.LSTM's final states."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit.batching import classify_batch
from rnnkit.models import MODELS, Classifier, ClassifierConfig, build_model

POOLINGS = ["last", "mean", "max", "attention"]
V, C, PAD = 11, 3, 0


def _model(**kw):
    torch.manual_seed(0)
    cfg = {"vocab_size": V, "num_classes": C, "embedding_size": 8, "hidden_size": 6, "pad_id": PAD, **kw}
    return Classifier(ClassifierConfig(**cfg))


def _seqs(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, V, (n,), generator=g).tolist() for n in lengths]


# pooling x cell x directions x layers is 48 configurations; a stride of 5 through the product
# visits 10 of them and every value of every axis (5 is coprime with 4, 3, 2 and 2).
GRID = list(itertools.product(POOLINGS, ["lstm", "gru", "rnn"], [False, True], [1, 2]))[::5]


@pytest.mark.parametrize("pooling,cell,bi,layers", GRID)
def test_shapes_gradients_and_no_nan(pooling, cell, bi, layers):
    m = _model(pooling=pooling, cell=cell, bidirectional=bi, num_layers=layers, dropout=0.1,
               mlp_hidden=5 if layers == 2 else 0)
    batch = classify_batch(_seqs([4, 1, 6]), [0, 2, 1], PAD)
    logits = m(batch.inputs, batch.lengths, batch.mask)
    assert logits.shape == (3, C) and torch.isfinite(logits).all()
    out = m.loss(batch)
    assert out.num_tokens.dim() == 0 and int(out.num_tokens) == 3 and out.carry is None
    out.loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (m.embedding.weight.grad[PAD] == 0).all()  # padding_idx


@pytest.mark.parametrize("backend", ["fused", "reference"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_logits_do_not_depend_on_the_batch(pooling, backend):
    m = _model(pooling=pooling, cell="lstm", bidirectional=True, num_layers=2, dropout=0.3, backend=backend).eval()
    seqs = _seqs([5, 2, 7, 1, 4])
    alone = torch.cat([m(torch.tensor([s])) for s in seqs])  # (5, C), no padding at all
    batch = classify_batch(seqs, None, PAD)
    together = m(batch.inputs, batch.lengths, batch.mask)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    # shorter sequences only (a different padded width), mask alone instead of lengths
    short = classify_batch([seqs[1], seqs[3], seqs[4]], None, PAD)
    torch.testing.assert_close(m(short.inputs, mask=short.mask), alone[[1, 3, 4]], atol=1e-5, rtol=0)
    # whatever sits in the pads is never read
    noisy = batch.inputs.masked_scatter(~batch.mask, torch.randint(1, V, (int((~batch.mask).sum()),)))
    torch.testing.assert_close(m(noisy, batch.lengths), together, atol=1e-6, rtol=0)


def test_attention_weights_are_zero_on_pads_and_sum_to_one():
    m = _model(pooling="attention", bidirectional=True, num_layers=2)
    batch = classify_batch(_seqs([3, 6, 1]), None, PAD)
    pooled = m.encode(batch.inputs, batch.lengths)
    w = pooled.weights
    assert w.shape == batch.mask.shape and pooled.features.shape == (3, 12)
    assert (w[~batch.mask] == 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(3))
    assert w[2, 0] == 1.0  # one real token takes all the weight
    assert m.encode(batch.inputs, batch.lengths).weights is not None
    assert _model(pooling="mean").encode(batch.inputs, batch.lengths).weights is None


@pytest.mark.parametrize("pooling,cell", [("last", "lstm"), ("mean", "rnn"), ("max", "lstm"), ("attention", "gru")])
def test_overfits_a_tiny_labelled_set(pooling, cell):
    m = _model(pooling=pooling, cell=cell, embedding_size=16, hidden_size=16, mlp_hidden=8)
    seqs = _seqs([3, 5, 2, 6, 4, 1, 5, 3], seed=1)
    batch = classify_batch(seqs, [0, 1, 2, 0, 1, 2, 1, 0], PAD)
    opt = torch.optim.Adam(m.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        out = m.loss(batch)
        mean = out.loss / out.num_tokens
        mean.backward()
        opt.step()
        if mean.item() < 0.05:
            break
    assert mean.item() < 0.05
    m.eval()
    assert (m.predict_proba(batch.inputs, batch.lengths).argmax(1) == batch.labels).all()


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_last_pooling_is_torch_lstm_packed_final_states(backend):
    m = _model(pooling="last", cell="lstm", bidirectional=True, num_layers=2, backend=backend).eval()
    H = m.config.hidden_size
    lstm = torch.nn.LSTM(8, H, num_layers=2, bidirectional=True, batch_first=True)
    lstm.load_state_dict(m.rnn.state_dict())
    batch = classify_batch(_seqs([4, 7, 2, 5]), None, PAD)
    emb = m.embedding(batch.inputs)  # (B, T, E)
    packed = pack_padded_sequence(emb, batch.lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        _, (h_n, _) = lstm(packed)  # (L*D, B, H)
        feats = m.encode(batch.inputs, batch.lengths).features  # (B, 2H)
    torch.testing.assert_close(feats, torch.cat([h_n[-2], h_n[-1]], dim=1), atol=1e-6, rtol=0)
    torch.testing.assert_close(m(batch.inputs, batch.lengths), m.head(torch.cat([h_n[-2], h_n[-1]], 1)),
                               atol=1e-6, rtol=0)
    # forward half: state at the last real token; backward half: after reading the first token
    for b, n in enumerate(batch.lengths.tolist()):
        with torch.no_grad():
            alone, _ = lstm(emb[b: b + 1, :n])  # (1, n, 2H), top layer
        torch.testing.assert_close(feats[b, :H], alone[0, n - 1, :H], atol=1e-6, rtol=0)
        torch.testing.assert_close(feats[b, H:], alone[0, 0, H:], atol=1e-6, rtol=0)


def test_registry_loss_proba_and_pretrained_embeddings():
    m = build_model("classifier", {"vocab_size": V, "num_classes": C, "embedding_size": 4, "hidden_size": 5})
    assert MODELS["classifier"] == (Classifier, ClassifierConfig) and "language_model" in MODELS
    batch = classify_batch(_seqs([2, 3]), [1, 2], PAD)
    logits = m(batch.inputs, batch.lengths, batch.mask)
    out = m.loss(batch)
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, batch.labels, reduction="sum"))
    p = m.predict_proba(batch.inputs, batch.lengths)
    assert p.shape == (2, C) and not p.requires_grad
    torch.testing.assert_close(p.sum(1), torch.ones(2))

    vectors = torch.randn(V, 4)
    m.load_pretrained_embeddings(vectors)
    assert torch.equal(m.embedding.weight.detach(), vectors)
    with pytest.raises(ValueError, match="vocab_size, embedding_size"):
        m.load_pretrained_embeddings(torch.randn(V, 5))

    frozen = _model(freeze_embeddings=True)
    frozen.loss(batch).loss.backward()
    assert frozen.embedding.weight.grad is None and frozen.head.weight.grad is not None


def test_bad_inputs_raise_clear_errors():
    m = _model()
    x = torch.randint(1, V, (2, 4))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        m(x.unsqueeze(2))
    with pytest.raises(ValueError, match="lengths"):
        m(x, torch.tensor([4, 5]))
    with pytest.raises(ValueError, match="prefix"):
        m(x, mask=torch.tensor([[True, False, True, True]] * 2))
    with pytest.raises(ValueError, match="disagree"):
        m(x, torch.tensor([4, 2]), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="vocab_size"):
        m(torch.full((1, 2), V))
    with pytest.raises(ValueError, match="pooling"):
        _model(pooling="sum")
    with pytest.raises(ValueError, match="labels"):
        m.loss(classify_batch([[1, 2]], None, PAD))  # unlabelled rows are -1


def test_ensemble_averages_its_members_probabilities_and_each_member_learns_alone():
    K = 3
    ens = _model(ensemble=K, pooling="max", bidirectional=True, dropout=0.2).eval()
    assert len(ens.members) == K and not hasattr(ens, "embedding")
    first = ens.members[0].embedding.weight
    assert not any(torch.equal(first, m.embedding.weight) for m in ens.members[1:])  # own initialisations
    batch = classify_batch(_seqs([4, 1, 6, 3]), [0, 2, 1, 1], PAD)
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(batch.inputs, batch.lengths), -1) for m in ens.members])  # (K, B, C)
        logits = ens(batch.inputs, batch.lengths)
    torch.testing.assert_close(torch.softmax(logits, -1), probs.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(ens.predict_proba(batch.inputs, batch.lengths), probs.mean(0), atol=1e-6, rtol=0)
    # the ensemble's loss is the mean of the members' own losses, so each member's gradient is
    # 1/K of what training it alone would give
    out = ens.loss(batch)
    own = [F.cross_entropy(m(batch.inputs, batch.lengths), batch.labels, reduction="sum") for m in ens.members]
    torch.testing.assert_close(out.loss, sum(own) / K)
    out.loss.backward()
    alone = _model(pooling="max", bidirectional=True, dropout=0.2).eval()
    alone.load_state_dict(ens.members[1].state_dict())
    alone.loss(batch).loss.backward()
    for (name, p), q in zip(ens.members[1].named_parameters(), alone.parameters()):
        torch.testing.assert_close(p.grad * K, q.grad, atol=1e-6, rtol=1e-5, msg=name)
    # batch invariance holds for the ensemble as for each member
    alone_rows = torch.cat([ens(torch.tensor([s])) for s in _seqs([4, 1, 6, 3])])
    torch.testing.assert_close(logits, alone_rows, atol=1e-5, rtol=0)
    vectors = torch.randn(V, 8)
    ens.load_pretrained_embeddings(vectors)
    assert all(torch.equal(m.embedding.weight.detach(), vectors) for m in ens.members)
    with pytest.raises(ValueError, match="member"):
        ens.encode(batch.inputs, batch.lengths)
    with pytest.raises(ValueError, match="ensemble"):
        _model(ensemble=0)
