"""ClassificationMetrics against hand-computed values (scikit-learn's conventions), and the confusion plot."""
import pytest
import torch

from rnnkit.metrics import ClassificationMetrics
from rnnkit.plots import confusion_matrix

# Rows gold, columns predicted:
#            p0  p1  p2   support
#   gold 0 [  5,  1,  0 ]   6
#   gold 1 [  2,  3,  0 ]   5
#   gold 2 [  1,  1,  2 ]   4
#   predicted 8   5   2     15 items, 10 on the diagonal
CONFUSION = [[5, 1, 0], [2, 3, 0], [1, 1, 2]]


def _pairs(confusion):
    gold, pred = [], []
    for g, row in enumerate(confusion):
        for p, n in enumerate(row):
            gold += [g] * n
            pred += [p] * n
    perm = torch.randperm(len(gold), generator=torch.Generator().manual_seed(0))
    return torch.tensor(pred)[perm], torch.tensor(gold)[perm]


def test_hand_computed_three_classes():
    pred, gold = _pairs(CONFUSION)
    m = ClassificationMetrics(3, ["neg", "neu", "pos"])
    m.update(pred, gold)
    r = m.compute()
    assert r["confusion"] == CONFUSION and r["total"] == 15
    assert r["accuracy"] == pytest.approx(10 / 15)
    want = {  # precision = TP / column sum, recall = TP / row sum, F1 = 2PR / (P + R)
        "neg": (5 / 8, 5 / 6, 5 / 7, 6),  # F1: 2 * 5/8 * 5/6 / (5/8 + 5/6) = 5/7
        "neu": (3 / 5, 3 / 5, 3 / 5, 5),
        "pos": (2 / 2, 2 / 4, 2 / 3, 4),
    }
    for name, (p, rec, f1, support) in want.items():
        got = r["per_class"][name]
        assert got["precision"] == pytest.approx(p) and got["recall"] == pytest.approx(rec)
        assert got["f1"] == pytest.approx(f1) and got["support"] == support
    assert r["macro_f1"] == pytest.approx((5 / 7 + 3 / 5 + 2 / 3) / 3)  # = 208/315
    assert r["macro_precision"] == pytest.approx((5 / 8 + 3 / 5 + 1) / 3)
    assert r["macro_recall"] == pytest.approx((5 / 6 + 3 / 5 + 1 / 2) / 3)


def test_batched_updates_equal_one_update_and_scores_are_argmaxed():
    pred, gold = _pairs(CONFUSION)
    once = ClassificationMetrics(3)
    once.update(pred, gold)
    batched = ClassificationMetrics(3)
    for lo, hi in [(0, 4), (4, 5), (5, 5), (5, 11), (11, 15)]:  # includes an empty batch
        batched.update(pred[lo:hi], gold[lo:hi])
    assert batched.compute() == once.compute()
    scores = ClassificationMetrics(3)
    scores.update(torch.nn.functional.one_hot(pred, 3).float() + 0.1 * torch.rand(15, 3), gold)
    assert scores.compute() == once.compute()
    once.reset()
    with pytest.raises(ValueError, match="nothing seen"):
        once.compute()


def test_zero_division_convention():
    # class 1 has gold items but is never predicted; class 2 occurs nowhere
    m = ClassificationMetrics(3)
    m.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1]))
    r = m.compute()
    assert r["per_class"]["0"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 2}
    assert r["per_class"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert r["per_class"]["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # sklearn f1_score([0,0,1,1], [0,0,0,0], average="macro") = (2/3 + 0) / 2: absent class 2 left out
    assert r["macro_f1"] == pytest.approx(1 / 3)
    assert r["macro_precision"] == pytest.approx(0.25) and r["macro_recall"] == pytest.approx(0.5)
    # a class predicted but never gold: precision 0, recall 0 (no support), and it counts in the macro
    m = ClassificationMetrics(3)
    m.update(torch.tensor([0, 2]), torch.tensor([0, 0]))
    r = m.compute()
    assert r["per_class"]["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0) / 2) and r["accuracy"] == 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match="distinct"):
        ClassificationMetrics(2, ["a", "a"])
    m = ClassificationMetrics(2)
    with pytest.raises(ValueError, match="ids must lie"):
        m.update(torch.tensor([0, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pred must be"):
        m.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1]))


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_plot_writes_a_png(tmp_path, normalize):
    path = tmp_path / "plots" / "confusion.png"
    confusion_matrix(CONFUSION, ["neg", "neu", "pos"], path, normalize=normalize, title="valid")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="2 x 2"):
        confusion_matrix(CONFUSION, ["a", "b"], path)
