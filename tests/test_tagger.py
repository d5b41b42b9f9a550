"""Tagger: every (CRF x char encoder x directions) trains, pads are never read, tiny sets are learned."""
import itertools

import pytest
import torch

from rnnkit.batching import tag_batch
from rnnkit.metrics import Accuracy
from rnnkit.models import MODELS, Tagger, TaggerConfig, build_model

V, K, CV, PAD, UNK, CPAD = 12, 4, 9, 0, 1, 0
CHAR_ENCODERS = ["none", "lstm", "cnn"]
GRID = list(itertools.product([False, True], CHAR_ENCODERS, [False, True]))


def _model(**kw):
    torch.manual_seed(0)
    cfg = {"vocab_size": V, "num_tags": K, "embedding_size": 8, "char_vocab_size": CV, "char_embedding_size": 5,
           "char_hidden_size": 4, "hidden_size": 6, "pad_id": PAD, "char_pad_id": CPAD, **kw}
    return Tagger(TaggerConfig(**cfg))


def _data(lengths, seed=0):
    """Sentences of word ids, their tags (a function of the word and its left neighbour) and characters."""
    g = torch.Generator().manual_seed(seed)
    words = [torch.randint(2, V, (n,), generator=g).tolist() for n in lengths]
    tags = [[(w + (s[i - 1] if i else 0)) % K for i, w in enumerate(s)] for s in words]
    chars = [[torch.randint(1, CV, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
              for _ in s] for s in words]
    return words, tags, chars


def _batch(words, tags, chars):
    return tag_batch(words, tags, PAD, chars=chars, char_pad_id=CPAD)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("crf,chars,bi", GRID)
def test_shapes_gradients_and_no_nan(crf, chars, bi):
    m = _model(crf=crf, char_encoder=chars, bidirectional=bi, num_layers=2, dropout=0.1)
    batch = _batch(*_data([4, 1, 6]))
    emissions = m(batch.inputs, batch.lengths, batch.mask, batch.chars)
    assert emissions.shape == (3, 6, K) and torch.isfinite(emissions).all()
    out = m.loss(batch)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.carry is None
    assert out.num_tokens.dim() == 0 and int(out.num_tokens) == batch.num_tokens == 11
    out.loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"
    assert (m.crf is not None) == crf
    m.eval()
    pred = m.predict(batch.inputs, batch.lengths, batch.mask, batch.chars)
    assert [len(p) for p in pred] == [4, 1, 6] and all(0 <= t < K for p in pred for t in p)


@pytest.mark.parametrize("crf,chars", list(itertools.product([False, True], CHAR_ENCODERS)))
def test_pads_change_neither_loss_nor_gradients(crf, chars):
    m = _model(crf=crf, char_encoder=chars, bidirectional=True)
    words, tags, chr_ = _data([5, 2, 3])
    batch = _batch(words, tags, chr_)
    out = m.loss(batch)
    out.loss.backward()
    want_loss, want_grads = out.loss.detach(), _grads(m)

    # Two extra pad columns and two extra character columns, junk everywhere a pad is.
    g = torch.Generator().manual_seed(3)
    B, T, W = batch.chars.shape
    mask = torch.cat([batch.mask, torch.zeros(B, 2, dtype=torch.bool)], 1)  # (B, T+2)
    inputs = torch.randint(0, V, (B, T + 2), generator=g).masked_scatter(mask, batch.inputs[batch.mask])
    targets = torch.randint(0, K, (B, T + 2), generator=g).masked_scatter(mask, batch.targets[batch.mask])
    chars_t = torch.randint(0, CV, (B, T + 2, W + 2), generator=g)
    chars_t[mask] = torch.cat([batch.chars[batch.mask], torch.full((int(mask.sum()), 2), CPAD)], 1)
    padded = type(batch)(inputs, targets, mask.sum(1), mask, None, chars_t)
    m.zero_grad()
    out = m.loss(padded)
    out.loss.backward()
    torch.testing.assert_close(out.loss.detach(), want_loss)
    assert int(out.num_tokens) == 10
    got = _grads(m)
    assert got.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got[name], want_grads[name], msg=name)

    # ... and the batch's summed loss is the sum of each sentence's alone
    with torch.no_grad():
        alone = sum(float(m.loss(_batch([w], [t], [c])).loss) for w, t, c in zip(words, tags, chr_))
    assert float(want_loss) == pytest.approx(alone, rel=1e-5)


@pytest.mark.parametrize("crf,chars", [(False, "lstm"), (True, "cnn"), (True, "none")])
def test_predictions_do_not_depend_on_the_batch(crf, chars):
    m = _model(crf=crf, char_encoder=chars).eval()
    words, _, chr_ = _data([6, 1, 4, 3, 6], seed=2)
    batch = _batch(words, None, chr_)
    together = m.predict(batch.inputs, batch.lengths, batch.mask, batch.chars)
    for i, (w, c) in enumerate(zip(words, chr_)):
        one = _batch([w], None, [c])
        assert m.predict(one.inputs, one.lengths, one.mask, one.chars) == [together[i]]
    pair = _batch(words[1:3], None, chr_[1:3])
    assert m.predict(pair.inputs, pair.lengths, pair.mask, pair.chars) == together[1:3]


@pytest.mark.parametrize("crf,chars", [(False, "none"), (True, "lstm"), (False, "cnn")])
def test_overfits_a_tiny_tagged_set(crf, chars):
    m = _model(crf=crf, char_encoder=chars, hidden_size=16)
    words, tags, chr_ = _data([5, 3, 7, 4, 6, 2], seed=4)
    batch = _batch(words, tags, chr_)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    acc = Accuracy()
    for step in range(200):
        m.train()
        opt.zero_grad()
        out = m.loss(batch)
        (out.loss / out.num_tokens).backward()
        opt.step()
        if step % 10 == 9:
            m.eval()
            pred = m.predict(batch.inputs, batch.lengths, batch.mask, batch.chars)
            if pred == tags:
                break
    acc.update(torch.tensor([t for p in pred for t in p]), torch.tensor([t for s in tags for t in s]))
    assert acc.compute()["accuracy"] == 1.0, f"after {step + 1} steps"


@pytest.mark.parametrize("chars", ["lstm", "cnn"])
def test_char_encoder_tells_unknown_words_apart_by_spelling(chars):
    m = _model(char_encoder=chars).eval()
    spellings = [[[[3, 4, 5]]], [[[6, 7, 8]]], [[[3, 4, 5]]]]  # one sentence of one word each
    batches = [_batch([[UNK]], None, s) for s in spellings]
    emissions = [m(b.inputs, b.lengths, b.mask, b.chars) for b in batches]
    assert not torch.allclose(emissions[0], emissions[1])  # same word id, different characters
    torch.testing.assert_close(emissions[0], emissions[2])
    plain = _model(char_encoder="none").eval()
    torch.testing.assert_close(plain(batches[0].inputs, chars=batches[0].chars),
                               plain(batches[1].inputs, chars=batches[1].chars))


def test_crf_loss_is_the_summed_sentence_nll():
    m = _model(crf=True, char_encoder="cnn")
    batch = _batch(*_data([4, 2]))
    emissions = m(batch.inputs, batch.lengths, batch.mask, batch.chars)
    want = -m.crf.log_likelihood(emissions, batch.targets, batch.mask).sum()
    torch.testing.assert_close(m.loss(batch).loss, want)


def test_registry_and_pretrained_embeddings():
    assert MODELS["tagger"] == (Tagger, TaggerConfig)
    m = build_model("tagger", {"vocab_size": V, "num_tags": K, "embedding_size": 4, "hidden_size": 3})
    assert isinstance(m, Tagger) and m.config.bidirectional and m.crf is None
    matrix = torch.randn(V, 4)
    m.load_pretrained_embeddings(matrix)
    torch.testing.assert_close(m.embedding.weight.detach(), matrix)
    with pytest.raises(ValueError, match="vocab_size"):
        m.load_pretrained_embeddings(torch.randn(V + 1, 4))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="char_encoder"):
        _model(char_encoder="gru")
    with pytest.raises(ValueError, match="char_vocab_size"):
        _model(char_encoder="lstm", char_vocab_size=0)
    m = _model(char_encoder="lstm")
    batch = _batch(*_data([3, 2]))
    with pytest.raises(ValueError, match="needs chars"):
        m(batch.inputs, batch.lengths)
    with pytest.raises(ValueError, match="char ids"):
        m(batch.inputs, batch.lengths, chars=batch.chars + CV)
    with pytest.raises(ValueError, match="word ids"):
        m(batch.inputs + V, batch.lengths, chars=batch.chars)
    batch.targets[0, 0] = K
    with pytest.raises(ValueError, match="tags"):
        m.loss(batch)


def test_word_dropout_only_in_training_and_only_on_real_words():
    torch.manual_seed(0)
    from rnnkit.models import Tagger, TaggerConfig
    m = Tagger(TaggerConfig(vocab_size=10, num_tags=3, embedding_size=4, hidden_size=4, word_dropout=1.0, unk_id=1))
    x = torch.tensor([[5, 6, 7], [8, 9, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    all_unk = torch.tensor([[1, 1, 1], [1, 1, 0]])
    m.train()
    torch.manual_seed(1)
    a = m(x, mask=mask)
    torch.manual_seed(1)
    m.config.word_dropout = 0.0
    b = m(all_unk, mask=mask)
    assert torch.allclose(a, b)  # every real word became <unk>; the pad stayed a pad
    m.eval()
    m.config.word_dropout = 1.0
    assert not torch.allclose(m(x, mask=mask), m(all_unk, mask=mask))


@pytest.mark.parametrize("crf", [False, True])
def test_loss_and_predict_equal_loss_and_predict_separately(crf):
    torch.manual_seed(0)
    model = Tagger(TaggerConfig(vocab_size=12, num_tags=5, embedding_size=8, hidden_size=6, crf=crf)).eval()
    b = tag_batch([[3, 4, 5], [6, 7], [8]], [[1, 2, 3], [4, 0], [2]], 0)
    out, pred = model.loss_and_predict(b)
    with torch.no_grad():
        ref = model.loss(b)
    torch.testing.assert_close(out.loss, ref.loss)
    assert int(out.num_tokens) == int(ref.num_tokens) == 6
    assert pred == model.predict(b.inputs, lengths=b.lengths, mask=b.mask)
