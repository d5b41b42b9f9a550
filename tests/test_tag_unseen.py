"""Development and test data whose tags training lacks: training goes on, such tags are reported once per
file, scored as errors (accuracy, and missed entities for F1), and evaluate and predict never fail on them."""
import random

import pytest
import torch

from rnnkit.data import read_conll, read_conllu
from rnnkit.tasks.tag import TagDataConfig, evaluate, load_run, predict, predict_sentences, train_tag
from rnnkit.trainer import TrainConfig

SMALL = {"hidden_size": 24, "embedding_size": 16, "char_embedding_size": 8, "char_hidden_size": 8,
         "char_encoder": "lstm"}
LEXICON = {"the": "DET", "a": "DET", "cat": "NOUN", "dog": "NOUN", "sat": "VERB", "ran": "VERB"}


def _conllu(sents):
    out = []
    for n, sent in enumerate(sents, 1):
        out.append(f"# sent_id = {n}")
        out += [f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(sent, 1)]
        out.append("")
    return "\n".join(out) + "\n"


def _sents(n, seed, extra=()):
    rng = random.Random(seed)
    words = list(LEXICON)
    sents = [[(w, LEXICON[w]) for w in (rng.choice(words) for _ in range(rng.randint(2, 5)))] for _ in range(n)]
    return sents + [list(e) for e in extra]


@pytest.fixture(scope="module")
def pos(tmp_path_factory):
    d = tmp_path_factory.mktemp("unseen")
    (d / "train.conllu").write_text(_conllu(_sents(60, 0)), encoding="utf-8")
    (d / "dev.conllu").write_text(_conllu(_sents(6, 1, [[("the", "DET"), ("rex", "PROPN")]])), encoding="utf-8")
    (d / "test.conllu").write_text(_conllu(_sents(6, 2, [[("rex", "PROPN"), ("ran", "VERB"), ("!", "PUNCT")],
                                                         [("rex", "PROPN")]])), encoding="utf-8")
    said = []
    result = train_tag(d / "run", dict(SMALL), TagDataConfig(train=str(d / "train.conllu"),
                                                            valid=str(d / "dev.conllu"), test=str(d / "test.conllu")),
                       TrainConfig(max_steps=60, batch_size=8, lr=0.02), progress=False, log=said.append)
    return d, result, said


def test_training_goes_on_and_reports_each_file_once(pos):
    d, result, said = pos
    dev = [m for m in said if m.startswith(str(d / "dev.conllu"))]
    test = [m for m in said if m.startswith(str(d / "test.conllu"))]
    assert len(dev) == 1 and "'PROPN' 1 (" in dev[0] and "1 tag that the training data lacks" in dev[0]
    assert len(test) == 1 and "'PROPN' 2 (" in test[0] and "'PUNCT' 1 (" in test[0]
    assert result["split"] == "test" and result["unseen_tag_tokens"] == 3


def test_unseen_tags_count_as_errors_in_accuracy(pos):
    d, result, _ = pos
    _, model, enc, _ = load_run(d / "run")
    sents = read_conllu(d / "test.conllu")
    pred = predict_sentences(model, enc, sents)
    right = sum(p == g for s, ps in zip(sents, pred) for p, g in zip(ps, s.tags))
    tokens = sum(len(s.tokens) for s in sents)
    assert result["accuracy"] == right / tokens  # every token in the denominator
    assert all(p not in ("PROPN", "PUNCT") for ps in pred for p in ps)  # the model cannot say them
    scored = evaluate(d / "run", str(d / "test.conllu"))
    assert scored["accuracy"] == result["accuracy"] and scored["unseen_tags"] == {"PROPN": 2, "PUNCT": 1}
    assert predict(d / "run", "", fmt="conllu", path=str(d / "test.conllu")).count("\n") > tokens  # no failure


NER_TRAIN = """John NNP I-NP B-PER
lives VBZ I-VP O
in IN I-PP O
Paris NNP I-NP B-LOC
. . O O

"""
NER_TEST = """Mary NNP I-NP B-PER
saw VBZ I-VP O
Rome NNP I-NP B-LOC
and CC O O
Linux NNP I-NP B-MISC
. . O O

"""


@pytest.mark.parametrize("crf", [False, True])
def test_an_entity_of_an_unseen_type_is_missed(tmp_path, crf):
    (tmp_path / "train.txt").write_text(NER_TRAIN * 20, encoding="utf-8")
    (tmp_path / "test.txt").write_text(NER_TEST, encoding="utf-8")
    said = []
    result = train_tag(tmp_path / "run", {**SMALL, "crf": crf}, TagDataConfig(
        train=str(tmp_path / "train.txt"), valid=str(tmp_path / "test.txt"), test=str(tmp_path / "test.txt")),
        TrainConfig(max_steps=40, batch_size=4, lr=0.02), progress=False, log=said.append)
    assert sum("'B-MISC' 1" in m for m in said) == 2  # once for the validation file, once for the test file
    _, model, enc, _ = load_run(tmp_path / "run")
    sents = read_conll(tmp_path / "test.txt")
    pred = predict_sentences(model, enc, sents)
    from seqeval.metrics import classification_report

    gold = [s.tags for s in sents]
    ref = classification_report(gold, pred, output_dict=True, zero_division=0)
    assert result["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["support"] == 3 and result["recall"] == pytest.approx(ref["micro avg"]["recall"])
    assert result["f1"] == pytest.approx(ref["micro avg"]["f1-score"]) and result["recall"] <= 2 / 3
    assert torch.isfinite(torch.tensor(result["loss"]))
