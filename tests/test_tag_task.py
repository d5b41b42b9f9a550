"""Tagging end to end through the CLI: CoNLL-U POS and CoNLL NER, predict, evaluate, errors."""
import json

import pytest

from rnnkit.cli import main

SMALL = ["--hidden", "24", "--embedding-size", "16", "--char-embedding-size", "8", "--char-hidden", "8",
         "--no-progress", "--threads", "1", "--lr", "0.02", "--batch-size", "4"]

CONLLU = """# sent_id = 1
# text = the cat sat
1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_

# sent_id = 2
1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\trun\trun\tVERB\tVB\t_\t0\troot\t_\t_

# sent_id = 3
1\ta\ta\tDET\tDT\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tran\trun\tVERB\tVBD\t_\t0\troot\t_\t_
3.1\tfast\t_\t_\t_\t_\t_\t_\t_\t_

"""

NER = """-DOCSTART- -X- O O

John NNP I-NP I-PER
lives VBZ I-VP O
in IN I-PP O
Paris NNP I-NP I-LOC
. . O O

Mary NNP I-NP I-PER
Smith NNP I-NP I-PER
visited VBD I-VP O
Berlin NNP I-NP I-LOC
. . O O

"""


@pytest.fixture(scope="module")
def pos_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pos")
    (d / "train.conllu").write_text(CONLLU * 5, encoding="utf-8")
    (d / "dev.conllu").write_text(CONLLU, encoding="utf-8")
    out = d / "run"
    assert main(["train", "tag", "--train", str(d / "train.conllu"), "--valid", str(d / "dev.conllu"),
                 "--test", str(d / "dev.conllu"), "--char-encoder", "lstm", "--out", str(out),
                 "--epochs", "15", *SMALL]) == 0
    return d, out


def test_pos_tagger_learns_and_fills_conllu(pos_run, capsys):
    d, out = pos_run
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["accuracy"] == 1.0
    # the written predictions reproduce the input (comments, ranges, empty nodes kept)
    assert (out / "test.predictions.conllu").read_text() == CONLLU
    capsys.readouterr()
    assert main(["predict", str(out), str(d / "dev.conllu"), "--format", "conllu"]) == 0
    assert capsys.readouterr().out == CONLLU


def test_predict_plain_text(pos_run, tmp_path, capsys):
    _, out = pos_run
    f = tmp_path / "in.txt"
    f.write_text("the dog sat\n\na cat ran\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(out), str(f)]) == 0
    assert capsys.readouterr().out == "the\tDET\ndog\tNOUN\nsat\tVERB\n\na\tDET\ncat\tNOUN\nran\tVERB\n\n"


def test_a_tag_unknown_to_training_is_scored_as_an_error_at_evaluation(pos_run, tmp_path, capsys):
    _, out = pos_run
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tPROPN\tNN\t_\t0\troot\t_\t_\n\n")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(bad), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["unseen_tags"] == {"PROPN": 1} and metrics["accuracy"] <= 0.5


def test_wrong_column_count_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tthe\tthe\tDET\n\n")
    assert main(["train", "tag", "--train", str(bad), "--out", str(tmp_path / "r"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "10" in err


@pytest.mark.parametrize("char_encoder", ["cnn", "none"])
def test_ner_with_crf_scores_entities(tmp_path, capsys, char_encoder):
    (tmp_path / "train.txt").write_text(NER * 8, encoding="utf-8")
    (tmp_path / "dev.txt").write_text(NER, encoding="utf-8")
    out = tmp_path / "ner"
    assert main(["train", "tag", "--train", str(tmp_path / "train.txt"), "--valid", str(tmp_path / "dev.txt"),
                 "--scheme", "bioes", "--crf", "--char-encoder", char_encoder, "--out", str(out),
                 "--epochs", "15", *SMALL]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(tmp_path / "dev.txt"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["f1"] == 1.0 and set(m["per_type"]) == {"LOC", "PER"}
    pred = (out / "validation.predictions.conll").read_text().splitlines()
    assert pred[0] == "John S-PER S-PER"  # token, gold, predicted: what conlleval reads


def test_a_conllu_file_named_txt_is_read_as_conll_and_the_error_says_so(tmp_path, capsys):
    wrong = tmp_path / "train.txt"  # CoNLL-U content, a suffix that says CoNLL
    wrong.write_text("# sent_id = 1\n1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n"
                     "3\tsat\tsit\tVERB\tVBD\t_\t2\tdep\t_\t_\n\n", encoding="utf-8")
    assert main(["train", "tag", "--train", str(wrong), "--out", str(tmp_path / "r"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "guessed from the file name 'train.txt'" in err and "--format conllu" in err
    assert not (tmp_path / "r").exists()
