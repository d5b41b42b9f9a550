"""ONNX export: onnxruntime reproduces rnnkit's outputs on padded batches, and greedy translation
driven by a plain numpy loop over the exported encoder + decoder equals rnnkit's own."""
import json
import math
import random

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (pip install 'rnnkit[export]')")
onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install 'rnnkit[export]')")

from rnnkit.cli import main  # noqa: E402
from rnnkit.errors import CheckpointError, ConfigError  # noqa: E402
from rnnkit.export import export_onnx, viterbi  # noqa: E402
from rnnkit.nn import State  # noqa: E402
from rnnkit.tasks.runs import open_run  # noqa: E402
from rnnkit.tasks.seq2seq import translate_ids  # noqa: E402

ATOL = 1e-4
QUIET = ["--no-progress", "--threads", "1"]


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess, feeds):
    """Outputs of ``sess`` by name."""
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def close(actual, expected, what):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0, err_msg=what)


def padded(rows, pad):
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.full((len(rows), int(lengths.max())), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lengths


def random_rows(rng, lengths, lo, hi):
    return [[rng.randrange(lo, hi) for _ in range(n)] for n in lengths]


# ---------------------------------------------------------------------------- language model


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    (d / "tiny.txt").write_text("".join(f"the {w} sat on the mat.\n" for w in ("cat", "dog", "rat")) * 30)
    names = d / "names"
    names.mkdir()
    (names / "Russian.txt").write_text("\n".join(["Ivanov", "Petrov", "Popov"] * 6) + "\n")
    (names / "Japanese.txt").write_text("\n".join(["Tanaka", "Suzuki", "Sato"] * 6) + "\n")
    common = ["--max-steps", "3", "--seq-len", "16", "--batch-size", "4", "--sample-length", "0", *QUIET]
    assert main(["train", "lm", "--data", str(d / "tiny.txt"), "--hidden", "16", "--layers", "2",
                 "--embedding-size", "16", "--tie-weights", "--out", str(d / "lstm"), *common]) == 0
    # label-conditioned, one-hot input, GRU
    assert main(["train", "lm", "--data", str(names), "--cell", "gru", "--hidden", "12", "--layers", "1",
                 "--embedding-size", "0", "--out", str(d / "names_gru"), *common]) == 0
    return d


@pytest.mark.parametrize("name", ["lstm", "names_gru"])
def test_lm_logits_and_states_match_on_a_padded_batch_and_when_stepped(lm_runs, tmp_path, name):
    paths = export_onnx(lm_runs / name, tmp_path / "lm.onnx")
    assert paths == [tmp_path / "lm.onnx", tmp_path / "lm.json"]
    meta = json.loads(paths[1].read_text())
    _, model, _ = open_run(lm_runs / name)
    sess = session(paths[0])
    L, H, lstm = model.config.num_layers, model.config.hidden_size, model.config.cell == "lstm"
    rng = random.Random(0)
    lengths = [7, 3, 1, 5]
    tokens, lens = padded(random_rows(rng, lengths, 0, model.config.vocab_size), 0)
    gen = np.random.default_rng(0)
    h0 = gen.normal(size=(L, 4, H)).astype(np.float32)
    c0 = gen.normal(size=(L, 4, H)).astype(np.float32)
    feeds = {"tokens": tokens, "lengths": lens, "h0": h0}
    labels = None
    if lstm:
        feeds["c0"] = c0
    if meta["labels"]:
        assert meta["labels"] == ["Japanese", "Russian"] and model.config.embedding_size is None
        labels = np.array([1, 0, 1, 0], dtype=np.int64)
        feeds["labels"] = labels
    assert {i.name for i in sess.get_inputs()} == set(feeds)
    out = run(sess, feeds)
    state = State(torch.from_numpy(h0), torch.from_numpy(c0) if lstm else None)
    with torch.no_grad():
        logits, final = model(torch.from_numpy(tokens), state, lengths=torch.from_numpy(lens),
                              labels=None if labels is None else torch.from_numpy(labels))
    for b, n in enumerate(lengths):
        close(out["logits"][b, :n], logits[b, :n], f"logits of row {b}")
    close(out["h"], final.h, "h")
    if lstm:
        close(out["c"], final.c, "c")
    # stepping: one token at a time, the state fed back, gives the logits of the whole sequence
    step_feeds = {k: v[:1] for k, v in feeds.items() if k in ("labels",)}
    step_feeds.update({"h0": np.zeros((L, 1, H), np.float32), "lengths": np.ones(1, np.int64)})
    if lstm:
        step_feeds["c0"] = np.zeros((L, 1, H), np.float32)
    with torch.no_grad():
        whole, _ = model(torch.from_numpy(tokens[:1]), labels=None if labels is None else torch.from_numpy(labels[:1]))
    for t in range(lengths[0]):
        res = run(sess, {**step_feeds, "tokens": tokens[:1, t: t + 1]})
        close(res["logits"][0, 0], whole[0, t], f"stepped logits at {t}")
        step_feeds.update({k: res[v] for k, v in meta["decoding"]["state"].items()})


# ---------------------------------------------------------------------------- classifier


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("cls")
    rng = random.Random(0)
    pos, neg = ["good great fine film", "lovely warm story", "fun"], ["bad dull boring film", "cold story", "dull"]
    (d / "train.tsv").write_text("".join(f"{rng.choice(pos)}\tpos\n{rng.choice(neg)}\tneg\n" for _ in range(20)))
    return d


# variant -> (training options, opset: None for the default; 14 and 18 change how reductions are written)
CLASSIFIERS = {
    "lstm-bi-last": (["--cell", "lstm", "--bidirectional", "--layers", "2", "--pooling", "last"], None),
    "gru-attention-mlp": (["--cell", "gru", "--bidirectional", "--pooling", "attention", "--mlp-hidden", "8"], None),
    "rnn-max": (["--cell", "rnn", "--pooling", "max"], 18),
    "lstm-mean": (["--cell", "lstm", "--bidirectional", "--pooling", "mean"], 14),
}


@pytest.mark.parametrize("variant", list(CLASSIFIERS))
def test_classifier_probabilities_match_on_a_padded_batch(sentiment, tmp_path, variant):
    out = tmp_path / "run"
    options, opset = CLASSIFIERS[variant]
    assert main(["train", "classify", "--train", str(sentiment / "train.tsv"), "--max-steps", "3",
                 "--hidden", "8", "--embedding-size", "8", "--batch-size", "8", "--out", str(out),
                 *options, *QUIET]) == 0
    paths = export_onnx(out, tmp_path / "export" / "cls", opset=opset)  # no suffix: .onnx added, folders made
    assert paths == [tmp_path / "export" / "cls.onnx", tmp_path / "export" / "cls.json"]
    meta = json.loads(paths[1].read_text())
    assert meta["task"] == "classify" and meta["labels"] == ["neg", "pos"] and meta["special_ids"]["pad"] == 0
    assert meta["opset"] == (opset or 17) and onnx.load(str(paths[0])).opset_import[0].version == meta["opset"]
    _, model, _ = open_run(out)
    rng = random.Random(1)
    lengths = [6, 2, 1, 4, 6]
    tokens, lens = padded(random_rows(rng, lengths, 1, model.config.vocab_size), model.config.pad_id)
    res = run(session(paths[0]), {"tokens": tokens, "lengths": lens})
    t, n = torch.from_numpy(tokens), torch.from_numpy(lens)
    with torch.no_grad():
        close(res["logits"], model(t, n), "logits")
        close(res["probs"], model.predict_proba(t, n), "probabilities")
        if model.config.pooling == "attention":
            close(res["attention"], model.encode(t, n).weights, "attention pooling weights")
        # each row alone (no padding) gets the same probabilities
        for b, k in enumerate(lengths):
            alone = run(session(paths[0]), {"tokens": tokens[b: b + 1, :k], "lengths": lens[b: b + 1]})
            close(alone["probs"][0], res["probs"][b], f"row {b} alone")


# ---------------------------------------------------------------------------- tagger

CONLLU = "".join(
    f"1\t{a}\t_\tDET\t_\t_\t_\t_\t_\t_\n2\t{b}\t_\tNOUN\t_\t_\t_\t_\t_\t_\n3\t{c}\t_\tVERB\t_\t_\t_\t_\t_\t_\n\n"
    for a, b, c in [("the", "cat", "sat"), ("a", "dog", "ran"), ("the", "Dog", "sat"), ("a", "cat", "ran")])

TAGGERS = {
    "lstm-chars-softmax": (["--char-encoder", "lstm", "--cell", "lstm"], None),
    "gru-cnn-crf-2layers": (["--char-encoder", "cnn", "--crf", "--cell", "gru", "--layers", "2"], 18),
    "rnn-nochars-crf-uni": (["--cell", "rnn", "--crf", "--no-bidirectional"], 14),
}


@pytest.mark.parametrize("variant", list(TAGGERS))
def test_tagger_emissions_tags_and_viterbi_match(tmp_path, variant):
    (tmp_path / "train.conllu").write_text(CONLLU * 3)
    out = tmp_path / "run"
    assert main(["train", "tag", "--train", str(tmp_path / "train.conllu"), "--max-steps", "3", "--hidden", "8",
                 "--embedding-size", "8", "--char-embedding-size", "6", "--char-hidden", "5", "--batch-size", "4",
                 "--out", str(out), *TAGGERS[variant][0], *QUIET]) == 0
    (tmp_path / "exported").mkdir()
    paths = export_onnx(out, tmp_path / "exported", opset=TAGGERS[variant][1])  # a folder: model.onnx inside
    assert paths == [tmp_path / "exported" / "model.onnx", tmp_path / "exported" / "model.json"]
    meta = json.loads(paths[1].read_text())
    _, model, vocabs = open_run(out, ("vocab", "chars", "tags"))
    assert meta["labels"] == vocabs["tags"].tokens and sorted(meta["labels"]) == ["DET", "NOUN", "VERB"]
    c = model.config
    rng = random.Random(2)
    lengths = [5, 1, 3]
    words, lens = padded(random_rows(rng, lengths, 1, c.vocab_size), c.pad_id)
    feeds = {"tokens": words, "lengths": lens}
    chars_t = None
    if c.char_encoder != "none":
        # words of 1-4 characters (one empty word), right-padded with the char pad id; pads all pad
        chars = np.full(words.shape + (4,), c.char_pad_id, dtype=np.int64)
        for b, n in enumerate(lengths):
            for t in range(n):
                k = 0 if (b, t) == (0, 2) else rng.randint(1, 4)
                chars[b, t, :k] = [rng.randrange(1, c.char_vocab_size) for _ in range(k)]
        feeds["chars"] = chars
        chars_t = torch.from_numpy(chars)
    sess = session(paths[0])
    assert {i.name for i in sess.get_inputs()} == set(feeds)
    res = run(sess, feeds)
    t, n = torch.from_numpy(words), torch.from_numpy(lens)
    with torch.no_grad():
        emissions = model(t, n, chars=chars_t)
    for b, k in enumerate(lengths):
        close(res["emissions"][b, :k], emissions[b, :k], f"emissions of row {b}")
    predicted = model.predict(t, n, chars=chars_t)
    if c.crf:
        assert "tags" not in res and set(meta["crf"]) >= {"start", "end", "transitions"}
        assert [viterbi(res["emissions"][b], k, meta["crf"]) for b, k in enumerate(lengths)] == predicted
    else:
        assert [row[:k].tolist() for row, k in zip(res["tags"], lengths)] == predicted
        assert (res["tags"][1, 1:] == -1).all()


# ---------------------------------------------------------------------------- seq2seq

WORDS = "cat dog bird fish cow horse".split()
SEQ2SEQ = {
    "luong-general": ["--attention", "luong", "--score", "general", "--cell", "lstm", "--layers", "2"],
    "luong-dot-input-feeding": ["--attention", "luong", "--score", "dot", "--input-feeding", "--cell", "gru",
                                "--bridge", "linear"],
    "bahdanau": ["--attention", "bahdanau", "--cell", "lstm", "--no-bidirectional", "--layers", "2",
                 "--bridge", "linear"],
    "none": ["--attention", "none", "--cell", "rnn", "--layers", "2"],
    "bahdanau-zero-bridge": ["--attention", "bahdanau", "--cell", "gru", "--bridge", "zero"],
}


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s")
    rng = random.Random(0)
    src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))) for _ in range(120)]
    (d / "train.src").write_text("\n".join(src) + "\n")
    (d / "train.tgt").write_text("\n".join(" ".join(reversed(s.upper().split())) for s in src) + "\n")
    return d


@pytest.fixture(scope="module", params=list(SEQ2SEQ))
def s2s(request, parallel, tmp_path_factory):
    out = tmp_path_factory.mktemp("s2s-run") / request.param
    assert main(["train", "seq2seq", "--train-src", str(parallel / "train.src"), "--train-tgt",
                 str(parallel / "train.tgt"), "--max-steps", "40", "--hidden", "16", "--embedding-size", "8",
                 "--dropout", "0", "--lr", "0.02", "--batch-size", "16", "--out", str(out),
                 *SEQ2SEQ[request.param], *QUIET]) == 0
    paths = export_onnx(out, out.parent / "export" / "s2s.onnx")
    _, model, _ = open_run(out, ())
    return model, paths


def test_seq2seq_files_and_sidecar(s2s):
    model, paths = s2s
    stem = paths[0].parent / "s2s"
    assert paths == [stem.with_name("s2s.encoder.onnx"), stem.with_name("s2s.decoder.onnx"),
                     stem.with_name("s2s.json")]
    meta = json.loads(paths[2].read_text())
    c = model.config
    assert meta["special_ids"]["bos"] == c.tgt_bos_id and meta["special_ids"]["eos"] == c.tgt_eos_id
    assert meta["files"] == {"encoder": "s2s.encoder.onnx", "decoder": "s2s.decoder.onnx"}
    enc_out = [o["name"] for o in meta["graphs"]["encoder"]["outputs"]]
    dec_in = [i["name"] for i in meta["graphs"]["decoder"]["inputs"]]
    assert dec_in == ["token", *meta["decoding"]["inputs"]] and set(meta["decoding"]["inputs"]) <= set(enc_out)
    stored = {p.key: p.value for p in onnx.load(str(paths[1])).metadata_props}
    assert json.loads(stored["rnnkit"])["decoding"] == meta["decoding"]


def _source_batch(model, rng, lengths):
    rows = random_rows(rng, lengths, 4, model.config.src_vocab_size)  # no specials
    return rows, *padded(rows, model.config.src_pad_id)


def test_seq2seq_encoder_and_one_decoder_step_match(s2s):
    model, paths = s2s
    enc, dec = session(paths[0]), session(paths[1])
    rows, src, lens = _source_batch(model, random.Random(3), [4, 1, 6, 3])
    enc_out = run(enc, {"src": src, "src_lengths": lens})
    with torch.no_grad():
        state = model.encode(torch.from_numpy(src), torch.from_numpy(lens))
    close(enc_out["h"], state.rnn.h, "encoder h")
    if state.rnn.c is not None:
        close(enc_out["c"], state.rnn.c, "encoder c")
    close(enc_out["memory"], state.memory, "memory")
    assert (enc_out["mask"] == state.mask.numpy()).all()
    if state.keys is not None:
        close(enc_out["keys"], state.keys, "keys")
    if state.feed is not None:
        close(enc_out["feed"], state.feed, "feed")
    # two decoder steps from the encoder's state: logits, log-probs, new state, attention weights
    meta = json.loads(paths[2].read_text())["decoding"]
    ort_state = dict(enc_out)
    tokens = [np.full(4, model.config.tgt_bos_id), np.array([5, 6, 7, 4])]
    for k, tok in enumerate(tokens):
        res = run(dec, {"token": tok.astype(np.int64), **{n: ort_state[n] for n in meta["inputs"]}})
        with torch.no_grad():
            logits, weights, state = model.decode(torch.from_numpy(tok).long().unsqueeze(1), state)
        close(res["logits"], logits[:, 0], f"step {k} logits")
        close(res["log_probs"], torch.log_softmax(logits[:, 0], -1), f"step {k} log-probs")
        close(res["h_next"], state.rnn.h, f"step {k} h")
        if state.rnn.c is not None:
            close(res["c_next"], state.rnn.c, f"step {k} c")
        if state.feed is not None:
            close(res["feed_next"], state.feed, f"step {k} feed")
        if weights is None:
            assert "attention" not in res
        else:
            close(res["attention"], weights[:, 0], f"step {k} attention")
            assert (res["attention"][1, 1:] == 0).all()  # pads weigh nothing
        ort_state.update({n: res[o] for n, o in meta["state"].items()})


def onnx_greedy(enc, dec, meta, rows):
    """Greedy decoding with onnxruntime and numpy only, as rnnkit.decoding.greedy_search does it."""
    ids, d = meta["special_ids"], meta["decoding"]
    src, lens = padded(rows, ids["src_pad"])
    state = run(enc, {"src": src, "src_lengths": lens})
    limit = np.array([math.ceil(d["max_len_ratio"] * n) + d["max_len_extra"] for n in lens])
    bos, eos = d["start_token"], d["end_token"]
    token = np.full(len(rows), bos, dtype=np.int64)
    finished = limit == 0
    out = []
    for t in range(int(limit.max())):
        if finished.all():
            break
        res = run(dec, {"token": token, **{n: state[n] for n in d["inputs"]}})
        token = np.where(finished, eos, res["logits"].argmax(1)).astype(np.int64)
        out.append(token)
        finished = finished | (token == eos) | (limit <= t + 1)
        state.update({n: res[o] for n, o in d["state"].items()})
    result = []
    for row in np.stack(out, 1).tolist():
        result.append(row[: row.index(eos)] if eos in row else row)
    return result


def test_greedy_translation_through_the_exported_pair_equals_rnnkit(s2s):
    model, paths = s2s
    meta = json.loads(paths[2].read_text())
    rng = random.Random(4)
    rows = random_rows(rng, [rng.randint(1, 6) for _ in range(12)], 4, model.config.src_vocab_size)
    expected = [hyps[0][0] for hyps in translate_ids(model, rows, model.config.src_pad_id, beam=1)]
    got = onnx_greedy(session(paths[0]), session(paths[1]), meta, rows)
    assert got == expected
    assert any(len(r) < 2 * len(s) + 10 for r, s in zip(expected, rows))  # some rows stop at eos


# ---------------------------------------------------------------------------- errors


def test_errors_name_the_problem(tmp_path, lm_runs):
    with pytest.raises(CheckpointError, match="no such run folder"):
        export_onnx(tmp_path / "missing", tmp_path / "x.onnx")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"task": "hello", "model_name": "x"}))
    with pytest.raises(CheckpointError, match="unknown task 'hello'"):
        export_onnx(tmp_path / "odd", tmp_path / "x.onnx")
    (tmp_path / "cv" / "fold-01").mkdir(parents=True)
    (tmp_path / "cv" / "fold-01" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="cross-validation.*fold-01"):
        export_onnx(tmp_path / "cv", tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(lm_runs / "lstm", tmp_path / "x.onnx", opset=7)
    assert not (tmp_path / "x.onnx").exists()
