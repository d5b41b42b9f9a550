"""EntityF1: hand-computed entity scores (conlleval's chunking), BIO and BIOES, batched = all at once."""
import pytest

from rnnkit.metrics import EntityF1

approx = pytest.approx


def _score(gold, pred, scheme="BIO"):
    m = EntityF1(scheme)
    m.update(gold, pred)
    return m.compute()


def test_wrong_type_is_a_miss_and_a_false_alarm():
    # gold: PER(0-1), LOC(3); pred: PER(0-1), ORG(3) -> 1 of 2 found, 1 of 2 right
    r = _score([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    assert (r["precision"], r["recall"], r["f1"]) == approx((0.5, 0.5, 0.5))
    assert r["support"] == 2 and r["sentences"] == 1
    assert r["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    assert r["macro_f1"] == approx(1 / 3)


def test_bioes():
    # sentence 1: gold PER(0), LOC(2-4); pred PER(0), LOC(2-3) -> the LOC boundary is wrong
    # sentence 2: gold = pred = ORG(0-1), LOC(2)
    gold = [["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"], ["B-ORG", "E-ORG", "S-LOC"]]
    pred = [["S-PER", "O", "B-LOC", "E-LOC", "O"], ["B-ORG", "E-ORG", "S-LOC"]]
    r = _score(gold, pred, "BIOES")
    # 4 gold, 4 predicted, 3 right
    assert (r["precision"], r["recall"], r["f1"]) == approx((0.75, 0.75, 0.75))
    assert r["per_type"]["LOC"] == approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_type"]["PER"]["f1"] == 1.0 and r["per_type"]["ORG"]["f1"] == 1.0


def test_broken_i_sequences_follow_conlleval():
    # conlleval starts a chunk at I-X after O (or after another type), and ends one when the type changes:
    # gold: PER(0-1), LOC(3-4); pred: PER(0-1) (from "I-PER I-PER"), LOC(3), PER(4)
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
    pred = [["I-PER", "I-PER", "O", "B-LOC", "I-PER"]]
    r = _score(gold, pred)
    # TP 1 (the PER), predicted 3, gold 2: P = 1/3, R = 1/2, F1 = 2PR/(P+R) = (1/3)/(5/6) = 0.4
    assert (r["precision"], r["recall"], r["f1"]) == approx((1 / 3, 1 / 2, 0.4))
    assert r["per_type"]["PER"] == approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert r["per_type"]["LOC"] == approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    # The type switch inside one span: gold PER(0-1); pred PER(0), LOC(1) -> nothing right
    r = _score([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["per_type"]["LOC"]["support"] == 0 and r["per_type"]["PER"]["support"] == 1


def test_default_mode_is_not_seqeval_strict():
    """Documents the choice: strict IOB2 would drop the I-PER-initial chunk and score 0 here."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
    pred = [["I-PER", "I-PER", "O", "B-LOC", "I-PER"]]
    assert f1_score(gold, pred, mode="strict", scheme=IOB2) == 0.0
    assert _score(gold, pred)["f1"] == approx(0.4)


def test_batched_updates_equal_one_update():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"], ["B-MISC", "O", "B-PER"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["O", "B-ORG"], ["B-MISC", "O", "O"]]
    m = EntityF1()
    for g, p in zip(gold, pred):
        m.update([g], [p])
    assert m.compute() == _score(gold, pred)
    m.reset()
    with pytest.raises(ValueError, match="no sentences"):
        m.compute()


def test_no_entities_scores_zero():
    r = _score([["O", "O"]], [["O", "O"]])
    assert (r["precision"], r["recall"], r["f1"], r["support"], r["per_type"]) == (0.0, 0.0, 0.0, 0, {})


def test_bad_input_raises():
    with pytest.raises(ValueError, match="scheme"):
        EntityF1("IOBX")
    m = EntityF1("BIO")
    with pytest.raises(ValueError, match="E-PER"):
        m.update([["B-PER", "E-PER"]], [["B-PER", "E-PER"]])
    with pytest.raises(ValueError, match="'PER'"):
        m.update([["PER"]], [["O"]])
    with pytest.raises(ValueError, match="one length"):
        m.update([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="equally many"):
        m.update([["O"]], [])
