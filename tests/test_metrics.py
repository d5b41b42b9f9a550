import math

import pytest
import torch

from rnnkit.losses import sequence_nll
from rnnkit.metrics import Accuracy, TokenNLL


def test_token_nll_hand_values():
    m = TokenNLL()
    m.update(3 * math.log(4), 3)  # 3 tokens, each with probability 1/4
    out = m.compute()
    assert out["loss"] == pytest.approx(math.log(4))
    assert out["perplexity"] == pytest.approx(4.0)
    assert out["bpc"] == pytest.approx(2.0)  # log2(4) bits per token
    assert out["tokens"] == 3


def test_token_nll_is_token_weighted_not_mean_of_batch_means():
    m = TokenNLL()
    m.update(10.0, 2)  # batch mean 5.0
    m.update(torch.tensor(2.0), torch.tensor(8))  # batch mean 0.25
    out = m.compute()
    assert out["loss"] == pytest.approx(1.2)  # 12 nats / 10 tokens, not (5 + 0.25) / 2
    assert out["perplexity"] == pytest.approx(math.exp(1.2))
    assert out["bpc"] == pytest.approx(1.2 / math.log(2))
    assert out["tokens"] == 10


def test_token_nll_batched_equals_all_at_once():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, 9, generator=g)
    targets = torch.randint(0, 9, (6, 4), generator=g)
    mask = torch.rand(6, 4, generator=g) > 0.3
    whole = TokenNLL()
    whole.update(*sequence_nll(logits, targets, mask))
    batched = TokenNLL()
    for sl in (slice(0, 1), slice(1, 4), slice(4, 6)):
        batched.update(*sequence_nll(logits[sl], targets[sl], mask[sl]))
    a, b = whole.compute(), batched.compute()
    assert a["tokens"] == b["tokens"] == int(mask.sum())
    for key in ("loss", "perplexity", "bpc"):
        assert a[key] == pytest.approx(b[key], rel=1e-6)


def test_token_nll_reset_and_empty():
    m = TokenNLL()
    with pytest.raises(ValueError):
        m.compute()
    m.update(5.0, 2)
    m.reset()
    m.update(1.0, 1)
    assert m.compute()["loss"] == pytest.approx(1.0)
    big = TokenNLL()
    big.update(1e4, 1)
    assert big.compute()["perplexity"] == math.inf


def test_accuracy_hand_values_with_mask():
    pred = torch.tensor([[1, 2, 3], [4, 5, 6]])
    gold = torch.tensor([[1, 0, 3], [4, 5, 0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    m = Accuracy()
    m.update(pred, gold, mask)
    assert m.compute() == {"accuracy": pytest.approx(3 / 4), "correct": 3, "total": 4}
    m.reset()
    m.update(pred, gold)
    assert m.compute() == {"accuracy": pytest.approx(4 / 6), "correct": 4, "total": 6}


def test_accuracy_batched_equals_all_at_once_and_accepts_scores():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(10, 7, 5, generator=g)
    gold = torch.randint(0, 5, (10, 7), generator=g)
    mask = torch.rand(10, 7, generator=g) > 0.2
    whole, batched = Accuracy(), Accuracy()
    whole.update(scores, gold, mask)  # scores (B, T, C): argmax taken
    for i in range(0, 10, 3):
        batched.update(scores[i:i + 3].argmax(-1), gold[i:i + 3], mask[i:i + 3])
    assert whole.compute() == batched.compute()
    hand = ((scores.argmax(-1) == gold) & mask).sum().item() / mask.sum().item()
    assert whole.compute()["accuracy"] == pytest.approx(hand)


def test_accuracy_bad_inputs():
    m = Accuracy()
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="bool mask"):
        m.update(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError):
        m.compute()
