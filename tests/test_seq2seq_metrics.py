import subprocess
import sys

import pytest

from rnnkit.metrics import ErrorRates, TranslationMetrics, edit_distance

sacrebleu = pytest.importorskip("sacrebleu")

HYPS = [
    "the cat sat on the mat .",
    "a dog is running in the park",
    "she reads books every evening after dinner",
    "it was raining heavily in the city yesterday",
    "my brother bought a new red car",
]
REFS = [
    "the cat sat on a mat .",
    "the dog runs in the park",
    "she reads a book every evening after dinner",
    "it rained heavily in the city yesterday",
    "my brother has bought a new car",
]


# ---------------------------------------------------------------- TranslationMetrics


def test_translation_metrics_equal_sacrebleu_corpus_scores():
    m = TranslationMetrics()
    m.update(HYPS, REFS)
    out = m.compute()
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS]).score
    chrf = sacrebleu.corpus_chrf(HYPS, [REFS]).score
    assert 0 < bleu < 100 and 0 < chrf < 100  # a non-trivial corpus
    assert out["bleu"] == pytest.approx(bleu, abs=1e-9)
    assert out["chrf"] == pytest.approx(chrf, abs=1e-9)
    assert out["sentences"] == len(HYPS)
    assert isinstance(out["bleu"], float) and isinstance(out["chrf"], float)


def test_translation_metrics_batched_equals_one_update_and_is_corpus_level():
    whole = TranslationMetrics()
    whole.update(HYPS, REFS)
    batched = TranslationMetrics()
    for sl in (slice(0, 2), slice(2, 3), slice(3, 5)):
        batched.update(HYPS[sl], REFS[sl])
    a, b = whole.compute(), batched.compute()
    assert a == b
    # BLEU is corpus-level: not the mean of per-batch (or per-sentence) scores
    batch_mean = sum(sacrebleu.corpus_bleu(HYPS[sl], [REFS[sl]]).score
                     for sl in (slice(0, 2), slice(2, 3), slice(3, 5))) / 3
    assert abs(b["bleu"] - batch_mean) > 1e-3


def test_translation_metrics_signatures_are_sacrebleus_defaults():
    m = TranslationMetrics()
    m.update(HYPS, REFS)
    out = m.compute()
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    bleu.corpus_score(HYPS, [REFS])  # sacrebleu fills in nrefs once a score is taken
    chrf.corpus_score(HYPS, [REFS])
    assert out["bleu_signature"] == str(bleu.get_signature())
    assert out["chrf_signature"] == str(chrf.get_signature())
    # sacrebleu 2.x signatures are "key:value|..." strings (no metric-name prefix)
    assert out["bleu_signature"].startswith("nrefs:1|")
    for part in ("case:mixed", "tok:13a", "smooth:exp", f"version:{sacrebleu.__version__}"):
        assert part in out["bleu_signature"].split("|")
    for part in ("nrefs:1", "case:mixed", "nc:6", "nw:0"):
        assert part in out["chrf_signature"].split("|")


def test_translation_metrics_perfect_hypotheses_score_100():
    m = TranslationMetrics()
    m.update(REFS, REFS)
    out = m.compute()
    assert out["bleu"] == pytest.approx(100.0)
    assert out["chrf"] == pytest.approx(100.0)


def test_translation_metrics_case_matters_by_default():
    m = TranslationMetrics()
    m.update([r.upper() for r in REFS], REFS)
    assert m.compute()["bleu"] < 100.0  # mixed case: "THE" != "the"


def test_translation_metrics_errors_and_reset():
    m = TranslationMetrics()
    with pytest.raises(ValueError, match="no sentences"):
        m.compute()
    with pytest.raises(ValueError, match="equally many"):
        m.update(HYPS, REFS[:-1])
    with pytest.raises(ValueError):
        m.update("a single string", "another one")
    with pytest.raises(ValueError, match="string"):
        m.update([["tokenised", "list"]], ["tokenised list"])
    assert m.hypotheses == [] and m.references == []  # a failed update changes nothing
    m.update(HYPS, REFS)
    m.reset()
    with pytest.raises(ValueError):
        m.compute()


def test_import_rnnkit_does_not_import_sacrebleu():
    code = "import sys, rnnkit, rnnkit.metrics; print('sacrebleu' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- edit_distance


@pytest.mark.parametrize("a, b, d", [
    ("kitten", "sitting", 3),
    ("sitting", "kitten", 3),
    ("flaw", "lawn", 2),
    ("", "", 0),
    ("", "abcd", 4),
    ("abcd", "", 4),
    ("same", "same", 0),
    ("abc", "xyz", 3),
    (["K", "AE1", "T"], ["K", "AE1", "T"], 0),
    (["K", "AE1", "T"], ["K", "AH0", "T"], 1),  # one substitution
    (["K", "AE1", "T"], ["K", "AE1", "T", "S"], 1),  # one insertion
    (["K", "AE1", "T"], ["AE1", "T"], 1),  # one deletion
    (["K", "AE1", "T"], [], 3),
    (["T", "AH0", "M", "EY1", "T", "OW2"], ["T", "AH0", "M", "AA1", "T", "OW2"], 1),
    ((1, 2, 3, 4), [2, 3, 4, 5], 2),  # any sequences, any comparable items
])
def test_edit_distance_hand_values(a, b, d):
    assert edit_distance(a, b) == d


def test_edit_distance_matches_full_table_on_random_sequences():
    import random

    def full(a, b):
        t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a) + 1):
            for j in range(len(b) + 1):
                if i == 0 or j == 0:
                    t[i][j] = i + j
                else:
                    t[i][j] = min(t[i - 1][j] + 1, t[i][j - 1] + 1, t[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        return t[-1][-1]

    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 8))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 8))]
        assert edit_distance(a, b) == full(a, b) == edit_distance(b, a)


# ---------------------------------------------------------------- ErrorRates


def test_error_rates_exact_match_is_correct():
    m = ErrorRates()
    m.update([["K", "AE1", "T"]], [[["K", "AE1", "T"]]])
    assert m.compute() == {"wer": 0.0, "per": 0.0, "words": 1, "phones": 3}


def test_error_rates_any_pronunciation_counts():
    m = ErrorRates()
    tomato = [["T", "AH0", "M", "EY1", "T", "OW2"], ["T", "AH0", "M", "AA1", "T", "OW2"]]
    m.update([["T", "AH0", "M", "AA1", "T", "OW2"]], [tomato])  # matches the second
    assert m.compute() == {"wer": 0.0, "per": 0.0, "words": 1, "phones": 6}


def test_error_rates_one_substitution_in_three_phones():
    m = ErrorRates()
    m.update([["K", "AH0", "T"]], [[["K", "AE1", "T"]]])
    out = m.compute()
    assert out["wer"] == 1.0
    assert out["per"] == pytest.approx(1 / 3)
    assert out["phones"] == 3


def test_error_rates_uses_closest_reference():
    m = ErrorRates()
    # 2 edits from the first (4 phones), 1 from the second (5 phones): the second is used
    m.update([["R", "IY1", "D", "IH0", "NG"]], [[["R", "EH1", "D", "Z"], ["R", "IY1", "D", "IH0", "Z"]]])
    out = m.compute()
    assert out["wer"] == 1.0
    assert out["per"] == pytest.approx(1 / 5)
    assert out["phones"] == 5


def test_error_rates_tie_goes_to_shorter_reference():
    m = ErrorRates()
    # distance 1 to both ("A B" by an insertion, "A B C D" by a deletion): the 2-phone one is used
    m.update([["A", "B", "C"]], [[["A", "B", "C", "D"], ["A", "B"]]])
    out = m.compute()
    assert out["phones"] == 2
    assert out["per"] == pytest.approx(1 / 2)


def test_error_rates_corpus_aggregation_by_hand():
    m = ErrorRates()
    hyps = [["K", "AH0", "T"], ["D", "AO1", "G", "Z"]]
    refs = [[["K", "AE1", "T"]],  # 1 error / 3 phones
            [["D", "AO1", "G"]]]  # 1 error (insertion) / 3 phones
    m.update(hyps, refs)
    m.update([["B", "IH1", "G"]], [[["B", "IH1", "G"]]])  # 0 errors / 3 phones, correct
    out = m.compute()
    assert out["words"] == 3
    assert out["phones"] == 9
    assert out["wer"] == pytest.approx(2 / 3)
    assert out["per"] == pytest.approx(2 / 9)  # summed errors / summed phones

    # summed, not a mean of per-word rates: 1/1 and 0/9 give 1/10, not 1/2
    m = ErrorRates()
    m.update([["X"], list("abcdefghi")], [[["Y"]], [list("abcdefghi")]])
    out = m.compute()
    assert out["per"] == pytest.approx(1 / 10)
    assert out["wer"] == pytest.approx(1 / 2)


def test_error_rates_batched_equals_one_update():
    hyps = [["K", "AH0", "T"], ["D", "AO1", "G", "Z"], ["B", "IH1", "G"], []]
    refs = [[["K", "AE1", "T"]], [["D", "AO1", "G"], ["D", "AA1", "G"]], [["B", "IH1", "G"]], [["AH0"]]]
    whole = ErrorRates()
    whole.update(hyps, refs)
    batched = ErrorRates()
    batched.update(hyps[:1], refs[:1])
    batched.update(hyps[1:], refs[1:])
    assert whole.compute() == batched.compute()
    assert whole.compute()["per"] == pytest.approx(3 / 10)  # 1 + 1 + 0 + 1 over 3 + 3 + 3 + 1


def test_error_rates_per_can_exceed_one():
    m = ErrorRates()
    m.update([["A", "B", "C", "D"]], [[["X"]]])
    assert m.compute()["per"] == pytest.approx(4.0)


def test_error_rates_errors():
    m = ErrorRates()
    with pytest.raises(ValueError, match="no words"):
        m.compute()
    with pytest.raises(ValueError, match="equally many"):
        m.update([["K", "AE1", "T"], ["D"]], [[["K", "AE1", "T"]]])
    with pytest.raises(ValueError, match="list of pronunciations"):
        m.update([["K", "AE1", "T"]], [["K", "AE1", "T"]])  # one pronunciation not wrapped in a list
    with pytest.raises(ValueError, match="non-empty"):
        m.update([["K"]], [[]])
    with pytest.raises(ValueError, match="empty"):
        m.update([["K"]], [[[]]])
    with pytest.raises(ValueError, match="phone strings"):
        m.update(["K AE1 T"], [[["K", "AE1", "T"]]])  # a string, not a phone list
    # a bad word later in the batch leaves the totals untouched
    with pytest.raises(ValueError):
        m.update([["K"], "bad"], [[["K"]], [["B"]]])
    assert (m.words, m.phones, m.word_errors, m.phone_errors) == (0, 0, 0, 0)
    m.update([["K"]], [[["K"]]])
    m.reset()
    with pytest.raises(ValueError):
        m.compute()
