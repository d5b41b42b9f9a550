"""Seq2seq end to end through the CLI: train, translate (beam, n-best, attention plots), chat, evaluate, errors."""
import io
import json
import random

import pytest
import torch

from rnnkit.batching import SequenceBatches, seq2seq_batch
from rnnkit.cli import main
from rnnkit.decoding import beam_search
from rnnkit.tasks.seq2seq import Translator, translate_ids

SMALL = ["--hidden", "32", "--embedding-size", "16", "--no-progress", "--threads", "1", "--lr", "0.01",
         "--batch-size", "16", "--dropout", "0"]
WORDS = "cat dog bird fish cow horse sheep goat duck frog".split()


def _pairs(n, seed):
    """A toy translation: lower-case words -> the same words upper-cased, in reverse order."""
    rng = random.Random(seed)
    src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return src, [" ".join(reversed(s.upper().split())) for s in src]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s")
    for name, n, seed in (("train", 400, 0), ("valid", 40, 1)):
        src, tgt = _pairs(n, seed)
        (d / f"{name}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (d / f"{name}.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def run(data):
    out = data / "run"
    assert main(["train", "seq2seq", "--train-src", str(data / "train.src"), "--train-tgt", str(data / "train.tgt"),
                 "--valid-src", str(data / "valid.src"), "--valid-tgt", str(data / "valid.tgt"),
                 "--test-src", str(data / "valid.src"), "--test-tgt", str(data / "valid.tgt"),
                 "--attention", "bahdanau", "--beam", "3", "--epochs", "10", "--out", str(out), *SMALL]) == 0
    return out


def test_learns_the_toy_translation_and_reports_bleu(run):
    report = json.loads((run / "report.json").read_text())
    assert report["split"] == "test" and report["bleu"] > 80, report
    assert (run / "test.hyp.txt").read_text().count("\n") == 40


def test_translate_n_best_json_and_attention_plots(run, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("cat dog bird\nfish cow\n"))
    assert main(["translate", str(run), "--beam", "4", "--n-best", "3", "--json",
                 "--plot-attention", str(tmp_path / "att")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["translation"] for r in rows] == ["BIRD DOG CAT", "COW FISH"]
    assert all(len(r["n_best"]) == 3 and r["n_best"][0]["text"] == r["translation"] for r in rows)
    scores = [h["score"] for h in rows[0]["n_best"]]
    assert scores == sorted(scores, reverse=True)
    pngs = sorted((tmp_path / "att").glob("*.png"))
    assert len(pngs) == 2 and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_beam_one_is_greedy_and_batches_do_not_change_outputs(run):
    t = Translator(run)
    src = [t.codec.src_ids(s) for s in _pairs(30, 7)[0]]
    pad = t.codec.src_vocab.pad_id
    greedy = translate_ids(t.model, src, pad, beam=1)
    b = seq2seq_batch(src, None, pad, 0, 1, 2)
    with torch.inference_mode():
        state = t.model.encode(b.inputs, b.lengths)
        limit = t.model.max_lengths(b.lengths if b.lengths is not None else torch.full((30,), b.inputs.shape[1]))
        beam1 = beam_search(t.model.step, state, t.model.start_tokens(30, b.inputs.device),
                            t.model.config.tgt_eos_id, beam_size=1, max_len=limit)
    assert [g[0][0] for g in greedy] == [h[0].tokens for h in beam1]
    batched = translate_ids(t.model, src, pad, beam=3, batch_size=30)
    alone = [translate_ids(t.model, [s], pad, beam=3)[0] for s in src]
    assert [b[0][0] for b in batched] == [a[0][0] for a in alone]
    for b, a in zip(batched, alone):
        assert b[0][1] == pytest.approx(a[0][1], abs=1e-4)


def test_attention_weights_cover_the_source_and_sum_to_one(run):
    t = Translator(run)
    best = t.translate(["cat dog bird"])[0][0]
    assert best.text == "BIRD DOG CAT" and t.codec.tgt_vocab.decode(best.ids) == ["BIRD", "DOG", "CAT"]
    src, out, w = t.attention("cat dog bird", best)
    assert src == ["cat", "dog", "bird"] and out == ["BIRD", "DOG", "CAT", "<eos>"]
    assert w.shape == (4, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(4))
    assert int(w[0].argmax()) == 2  # "BIRD" looks at "bird"
    # The weights belong to the ids given, whatever text they would detokenise to.
    ids = t.codec.tgt_vocab.encode(["CAT", "CAT"])
    _, out, w = t.attention("cat dog bird", ids)
    assert out == ["CAT", "CAT", "<eos>"] and w.shape == (3, 3)


def test_chat_answers_each_line_until_end_of_input(run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("cat dog\n\nfish cow horse\n"))
    assert main(["chat", str(run), "--beam", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["DOG CAT", "HORSE COW FISH"]


def test_evaluate_json_and_sampling(run, data, capsys):
    assert main(["evaluate", str(run), "--src", str(data / "valid.src"), "--tgt", str(data / "valid.tgt"),
                 "--beam", "1", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["sentences"] == 40 and m["bleu"] > 80 and "chrf" in m and m["beam"] == 1
    t = Translator(run)
    a = t.translate(["cat dog bird"], sample=True, temperature=0.7, seed=3)
    b = t.translate(["cat dog bird"], sample=True, temperature=0.7, seed=3)
    assert a == b


def test_interrupted_run_resumes_to_the_same_weights(data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from rnnkit.trainer import Trainer

    def args(out):
        return ["train", "seq2seq", "--train-src", str(data / "train.src"), "--train-tgt", str(data / "train.tgt"),
                "--attention", "luong", "--input-feeding", "--max-steps", "30", "--save-every", "10",
                "--out", str(out), *SMALL]

    assert main(args(tmp_path / "straight")) == 0
    save = Trainer._save_last

    def save_then_die(self):
        save(self)
        if self.step == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_last", save_then_die)
    assert main(args(tmp_path / "cut")) == 130
    monkeypatch.setattr(Trainer, "_save_last", save)
    assert main(args(tmp_path / "cut") + ["--resume"]) == 0
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mismatched_line_counts_name_both_files(data, tmp_path, capsys):
    (tmp_path / "short.tgt").write_text("A B\n", encoding="utf-8")
    assert main(["train", "seq2seq", "--train-src", str(data / "train.src"), "--train-tgt",
                 str(tmp_path / "short.tgt"), "--out", str(tmp_path / "r"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "train.src" in err and "short.tgt" in err and "400" in err


def test_tsv_and_cmudict_formats(tmp_path, capsys):
    src, tgt = _pairs(60, 3)
    (tmp_path / "p.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(src, tgt)), encoding="utf-8")
    assert main(["train", "seq2seq", "--train", str(tmp_path / "p.tsv"), "--valid", str(tmp_path / "p.tsv"),
                 "--attention", "none", "--max-steps", "5", "--out", str(tmp_path / "t"), *SMALL]) == 0
    rng = random.Random(0)
    letters = {"a": "AE1", "b": "B", "c": "K", "d": "D", "e": "EH0", "o": "OW1", "t": "T"}
    lines = []
    for i in range(200):
        w = "".join(rng.choice(list(letters)) for _ in range(rng.randint(2, 5)))
        lines.append(f"{w}{'(2)' if any(x.startswith(w + ' ') for x in lines) else ''} "
                     + " ".join(letters[ch] for ch in w))
    (tmp_path / "cmudict.dict").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["train", "seq2seq", "--train", str(tmp_path / "cmudict.dict"), "--max-steps", "5",
                 "--out", str(tmp_path / "g"), *SMALL]) == 0
    report = json.loads((tmp_path / "g" / "report.json").read_text())
    assert {"wer", "per"} <= set(report) and report["split"] == "test"
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    assert cfg["cmudict"] is True


def test_training_batches_sort_pairs_by_source_then_target_length(run):
    """Pairs are bucketed on both sides: each example once per epoch, the same source pads as
    bucketing by source length alone, and fewer decoder pads."""
    rng = random.Random(0)
    src = [[4] * rng.randint(1, 6) for _ in range(800)]
    tgt = [[5] * rng.randint(1, 12) for _ in range(800)]  # independent of the source length
    joint = Translator(run).codec.batches(src, tgt, 16, seed=0, shuffle=True)._epoch_order(0)
    plain = SequenceBatches(src, 16, make_batch=None, seed=0)._epoch_order(0)  # by source length only
    assert sorted(i for b in joint for i in b) == list(range(800))

    def padded(order, seqs):
        return sum(len(b) * max(len(seqs[i]) for i in b) for b in order)

    assert padded(joint, src) == padded(plain, src)
    real = sum(map(len, tgt))
    assert padded(joint, tgt) - real < 0.5 * (padded(plain, tgt) - real)


def test_a_training_set_whose_every_pair_is_over_the_length_caps_stops_before_writing(tmp_path, capsys):
    from rnnkit.cli import main

    data = tmp_path / "one.tsv"
    data.write_text(" ".join(["cat"] * 400) + "\t" + " ".join(["dog"] * 400) + "\n", encoding="utf-8")
    assert main(["train", "seq2seq", "--train", str(data), "--out", str(tmp_path / "r"), "--max-steps", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no training pair is within --max-src-len 250 and --max-tgt-len 250 tokens" in err
    assert not (tmp_path / "r").exists()
