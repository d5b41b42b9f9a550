"""Classification end to end through the CLI: train, predict, evaluate, k-fold, errors."""
import json
import random

import pytest

from rnnkit.cli import main

SMALL = ["--hidden", "16", "--embedding-size", "16", "--no-progress", "--threads", "1", "--lr", "0.01",
         "--batch-size", "16"]
POS = ["good great fine film", "a lovely warm story", "great acting and fun", "fun and lovely", "warm great film"]
NEG = ["bad dull boring film", "a terrible cold story", "boring acting and dull", "dull and terrible",
       "cold bad film"]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("sent")
    rng = random.Random(0)
    (d / "train.tsv").write_text("text\tlabel\n" + "".join(
        f"{rng.choice(POS)}\tpos\n{rng.choice(NEG)}\tneg\n" for _ in range(60)), encoding="utf-8")
    (d / "test.tsv").write_text("text\tlabel\n" + "".join(
        f"{p}\tpos\n{n}\tneg\n" for p, n in zip(POS, NEG)), encoding="utf-8")
    (d / "classes").mkdir()
    (d / "classes" / "reviews.pos").write_text("\n".join(POS * 6) + "\n", encoding="latin-1")
    (d / "classes" / "reviews.neg").write_text("\n".join(NEG * 6) + "\n\n", encoding="latin-1")
    run = d / "run"
    assert main(["train", "classify", "--train", str(d / "train.tsv"), "--test", str(d / "test.tsv"),
                 "--text-column", "text", "--label-column", "label", "--out", str(run), "--epochs", "8",
                 "--bidirectional", "--layers", "2", "--pooling", "attention", *SMALL]) == 0
    return d, run


def test_train_reaches_full_test_accuracy_and_writes_reports(sentiment):
    d, run = sentiment
    report = json.loads((run / "report.json").read_text())
    assert report["split"] == "test" and report["accuracy"] == 1.0
    assert (run / "confusion.png").stat().st_size > 1000
    assert (run / "metrics.csv").read_text().startswith("step,")


def test_predict_from_the_run_folder(sentiment, tmp_path, capsys, monkeypatch):
    d, run = sentiment
    f = tmp_path / "in.txt"
    f.write_text("great fun film\nboring cold story\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(run), str(f), "--json"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    assert abs(sum(rows[0]["probs"].values()) - 1) < 1e-4
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("great fun film\n"))
    assert main(["predict", str(run)]) == 0
    assert capsys.readouterr().out.startswith("pos\t")


def test_evaluate_json(sentiment, capsys):
    d, run = sentiment
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(d / "test.tsv"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["accuracy"] == 1.0 and m["examples"] == 10 and set(m["per_class"]) == {"neg", "pos"}


def test_unseen_label_names_file_and_line(sentiment, tmp_path, capsys):
    d, run = sentiment
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\ngood film\tpos\nmeh\tneutral\n", encoding="utf-8")
    assert main(["evaluate", str(run), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "'neutral'" in err and "Traceback" not in err


def test_kfold_on_class_files_with_encoding(sentiment, tmp_path, capsys):
    d, _ = sentiment
    out = tmp_path / "cv"
    files = f"{d / 'classes' / 'reviews.pos'},{d / 'classes' / 'reviews.neg'}"
    assert main(["train", "classify", "--train", files, "--folds", "3", "--encoding", "latin-1",
                 "--out", str(out), "--epochs", "6", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 blank line" in printed and "line 31" in printed  # reported, not silently dropped
    cv = json.loads((out / "cv.json").read_text())
    assert cv["folds"] == 3 and len(cv["per_fold_accuracy"]) == 3 and cv["accuracy_mean"] > 0.9
    assert all((out / f"fold-0{k}" / "model.safetensors").is_file() for k in (1, 2, 3))


def test_kfold_without_validation_trains_on_whole_training_folds(sentiment, tmp_path, capsys):
    d, _ = sentiment
    out = tmp_path / "cv0"
    files = f"{d / 'classes' / 'reviews.pos'},{d / 'classes' / 'reviews.neg'}"
    assert main(["train", "classify", "--train", files, "--folds", "3", "--valid-split", "0", "--encoding",
                 "latin-1", "--out", str(out), "--epochs", "2", *SMALL]) == 0
    printed = capsys.readouterr().out
    sizes = [int(line.split()[0]) for line in printed.splitlines() if " training, 0 validation, " in line]
    examples = sum(1 for f in files.split(",") for line in open(f, encoding="latin-1") if line.strip())
    assert len(sizes) == 3 and sum(sizes) == 2 * examples  # each example trains in 2 of the 3 folds
    header = (out / "fold-01" / "metrics.csv").read_text().splitlines()[0]
    assert "valid_" not in header  # no validation pass, so nothing picked a "best" epoch
    assert json.loads((out / "cv.json").read_text())["folds"] == 3


def test_valid_split_out_of_range_is_refused(sentiment, tmp_path, capsys):
    d, _ = sentiment
    assert main(["train", "classify", "--train", str(d / "train.tsv"), "--valid-split", "1",
                 "--out", str(tmp_path / "r"), "--max-steps", "1", *SMALL]) == 2
    assert "--valid-split: 1.0 is not allowed; expected a number >= 0 and < 1" in capsys.readouterr().err
    assert main(["train", "classify", "--train", str(d / "train.tsv"), "--valid-split", "0", "--patience", "2",
                 "--out", str(tmp_path / "r"), "--max-steps", "1", *SMALL]) == 2
    assert "--valid-split 0 holds out none" in capsys.readouterr().err


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_other_tokenizers_train(sentiment, tmp_path, tokenizer, capsys):
    d, _ = sentiment
    out = tmp_path / tokenizer
    assert main(["train", "classify", "--train", str(d / "train.tsv"), "--text-column", "text",
                 "--label-column", "label", "--tokenizer", tokenizer, "--bpe-vocab-size", "60",
                 "--valid-split", "0.2", "--out", str(out), "--max-steps", "5", *SMALL]) == 0
    capsys.readouterr()
    assert main(["predict", str(out), str(d / "test.tsv")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 11  # the header line is just another text here


def test_pretrained_embeddings_coverage_reported(sentiment, tmp_path, capsys):
    d, _ = sentiment
    vec = tmp_path / "vec.txt"
    vec.write_text("good " + " ".join(["0.1"] * 16) + "\nbad " + " ".join(["-0.1"] * 16) + "\n", encoding="utf-8")
    assert main(["train", "classify", "--train", str(d / "train.tsv"), "--text-column", "text",
                 "--label-column", "label", "--embeddings", str(vec), "--out", str(tmp_path / "emb"),
                 "--max-steps", "3", *SMALL]) == 0
    assert "vectors for 2 of" in capsys.readouterr().out


def test_bad_column_count_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a film\tpos\nno label here\n", encoding="utf-8")
    assert main(["train", "classify", "--train", str(bad), "--out", str(tmp_path / "r"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 2" in err


def test_ensemble_run_trains_predicts_and_refuses_onnx(sentiment, tmp_path, capsys):
    d, _ = sentiment
    run = tmp_path / "ens"
    assert main(["train", "classify", "--train", str(d / "train.tsv"), "--test", str(d / "test.tsv"),
                 "--text-column", "text", "--label-column", "label", "--out", str(run), "--epochs", "8",
                 "--ensemble", "2", "--pooling", "max", *SMALL]) == 0
    assert "an ensemble of 2 classifiers" in capsys.readouterr().out
    assert json.loads((run / "report.json").read_text())["accuracy"] == 1.0
    f = tmp_path / "in.txt"
    f.write_text("great fun film\nboring cold story\n", encoding="utf-8")
    assert main(["predict", str(run), str(f), "--json"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    # the run folder's probabilities are the mean of its two members', read back from the saved weights
    import torch
    from rnnkit.tasks.classify import load_run
    config, model, enc = load_run(run)
    assert config["model"]["ensemble"] == 2 and len(model.members) == 2
    batch = torch.tensor(enc(["great fun film"]))
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(batch), -1) for m in model.members]).mean(0)[0]
    assert abs(rows[0]["probs"]["pos"] - float(mean[config["labels"].index("pos")])) < 1e-5
    pytest.importorskip("onnx")
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) != 0
    assert "ensemble of 2 classifiers" in capsys.readouterr().err
