"""int8 inference (``rnnkit.nn.int8``, ``--int8``): close to the float model, inference only, every command.

Tolerances.  Weights are rounded to int8 with one scale per output row (error at most
half a step, 1/254 of the row's largest weight) and each product's input to 8 bits
with one scale per call, so a product comes out within about 1 % of its float value
(measured: 0.3-1 % relative error over whole LSTM/GRU/RNN stacks below).  The bounds
are 3-5 times that: a relative error of 5 % on a stack's outputs, and probabilities
within 0.03 (a softmax moves a probability by at most a quarter of the change in a
logit difference, and these logits are a few units large).  Tied or near-tied
decisions may flip, so argmax checks ask for most tokens, not all.
"""
import io
import json
import random
import sys

import numpy as np
import pytest
import torch
from torch import nn

from rnnkit.cli import main
from rnnkit.errors import ConfigError
from rnnkit.models import (Classifier, ClassifierConfig, LanguageModel, LanguageModelConfig, Seq2Seq, Seq2SeqConfig,
                           Tagger, TaggerConfig)
from rnnkit.nn import Recurrent, State
from rnnkit.nn.int8 import Int8Linear, Int8Recurrent, is_quantized, quantize
from rnnkit.nn.onednn import Linear

from test_serve import make_tiny_runs  # tests/ is on sys.path under pytest

REL = 0.05   # relative error of a whole recurrent stack's outputs and states
PROB = 0.03  # absolute difference of a probability


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------- layers


def test_linear_is_close_to_float_on_any_leading_shape_and_keeps_a_tied_weight():
    torch.manual_seed(0)
    emb = nn.Embedding(50, 32)
    for layer in (nn.Linear(32, 50), Linear(32, 50), nn.Linear(32, 50, bias=False)):
        if layer.bias is None:
            layer.weight = emb.weight  # tied, as a language model's output layer may be
        q = Int8Linear(layer)
        x = torch.randn(3, 5, 32)
        with torch.inference_mode():
            assert q(x).shape == (3, 5, 50)
            assert rel(q(x), layer(x)) < REL / 2
            assert q(x[:0]).shape == (0, 5, 50)
        if layer.bias is None:
            assert q.weight is emb.weight


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_is_close_to_float_with_pads_lengths_and_a_given_state(mode, bidirectional):
    torch.manual_seed(1)
    rnn = Recurrent(mode, 16, 32, num_layers=2, bidirectional=bidirectional).eval()
    D = 2 if bidirectional else 1
    x, lengths = torch.randn(4, 7, 16), torch.tensor([7, 3, 5, 1])
    h0 = torch.randn(2 * D, 4, 32) * 0.5
    state = State(h0, torch.randn_like(h0) * 0.5 if mode == "lstm" else None)
    with torch.inference_mode():
        ref_out, ref_state = rnn(x, lengths, state)
        q = Int8Recurrent.from_float(rnn)
        out, final = q(x, lengths, state)
        assert out.shape == ref_out.shape and final.h.shape == ref_state.h.shape
        assert rel(out, ref_out) < REL and rel(final.h, ref_state.h) < REL
        if mode == "lstm":
            assert rel(final.c, ref_state.c) < REL
        for b, n in enumerate(lengths.tolist()):
            assert bool((out[b, n:] == 0).all())  # pads: exactly zero
            alone, s = q(x[b: b + 1, :n], None, state.index_select(torch.tensor([b]), dim=1))
            # alone, its input is quantised with a scale of its own: close, not equal
            assert rel(alone[0], out[b, :n]) < REL and rel(s.h[:, 0], final.h[:, b]) < REL
        noisy = x.clone()
        noisy[1, 3:], noisy[3, 1:] = 100.0, -50.0  # whatever sits in the pads is never read
        assert torch.equal(q(noisy, lengths, state)[0], out)
        assert q(x, lengths, need_state=False)[1] is None
        one, _ = q(x[:, :1], None, state)  # a single step, as decoding runs it
        assert rel(one, rnn(x[:, :1], None, state)[0]) < REL


def test_quantize_swaps_linear_and_recurrent_layers_and_leaves_embeddings_float():
    torch.manual_seed(2)
    model = Tagger(TaggerConfig(vocab_size=30, num_tags=5, char_vocab_size=12, char_encoder="lstm",
                                embedding_size=16, char_embedding_size=8, char_hidden_size=8, hidden_size=24))
    assert quantize(model) is model and is_quantized(model) and not model.training
    assert isinstance(model.rnn, Int8Recurrent) and isinstance(model.char_rnn, Int8Recurrent)
    assert isinstance(model.out, Int8Linear) and type(model.embedding) is nn.Embedding
    assert quantize(model) is model  # quantising twice changes nothing
    assert "int8" in repr(model.rnn)


@pytest.mark.parametrize("cell", ["mingru", "lru", "slstm"])
def test_cells_without_an_int8_form_stay_float_while_the_rest_is_quantised(cell):
    torch.manual_seed(6)
    model = LanguageModel(LanguageModelConfig(vocab_size=30, cell=cell, hidden_size=32, num_layers=1,
                                              embedding_size=16)).eval()
    tokens = torch.randint(0, 30, (2, 9))
    with torch.inference_mode():
        ref_out, _ = model.rnn(model.recurrent_inputs(tokens))
        ref, _ = model(tokens)
        quantize(model)
        out, _ = model.rnn(model.recurrent_inputs(tokens))
        logits, _ = model(tokens)
    assert type(model.rnn) is Recurrent and not any(isinstance(m, Int8Linear) for m in model.rnn.modules())
    assert isinstance(model.out, Int8Linear)
    assert torch.equal(out, ref_out) and rel(logits, ref) < REL
    with pytest.raises(ConfigError, match="inference only"):
        model.train()


def test_a_quantised_model_refuses_training():
    model = quantize(LanguageModel(LanguageModelConfig(vocab_size=20, hidden_size=16, num_layers=1)))
    with pytest.raises(ConfigError, match="inference only"):
        model.train()
    model.eval()  # eval is fine
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="float32 models on the CPU"):
        quantize(Classifier(ClassifierConfig(vocab_size=10, num_classes=2, hidden_size=8)).double())


# ---------------------------------------------------------------------------- task models


def _agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).float().mean())


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_language_model_logits_correlate_and_agree(cell):
    torch.manual_seed(3)
    model = LanguageModel(LanguageModelConfig(vocab_size=60, cell=cell, hidden_size=64, num_layers=2,
                                              embedding_size=32)).eval()
    tokens = torch.randint(0, 60, (2, 40))
    with torch.inference_mode():
        ref, _ = model(tokens)
        step_ref = model.step(tokens[:, :1], None)[0]
        logits, _ = quantize(model)(tokens)
        step = model.step(tokens[:, :1], None)[0]
    assert _corr(logits, ref) > 0.99 and _agree(logits, ref) > 0.9
    assert _corr(step, step_ref) > 0.99


@pytest.mark.parametrize("pooling,bidirectional", [("last", True), ("attention", False), ("mean", True)])
def test_classifier_probabilities_stay_within_tolerance(pooling, bidirectional):
    torch.manual_seed(4)
    model = Classifier(ClassifierConfig(vocab_size=80, num_classes=3, embedding_size=32, hidden_size=48,
                                        pooling=pooling, bidirectional=bidirectional, mlp_hidden=16)).eval()
    inputs, lengths = torch.randint(1, 80, (6, 12)), torch.tensor([12, 5, 9, 1, 12, 3])
    ref = model.predict_proba(inputs, lengths)
    probs = quantize(model).predict_proba(inputs, lengths)
    assert float((probs - ref).abs().max()) < PROB


def test_seq2seq_logits_correlate_and_greedy_outputs_mostly_agree():
    from rnnkit.tasks.seq2seq import translate_ids

    for attention in ("bahdanau", "luong", "none"):
        torch.manual_seed(5)
        cfg = Seq2SeqConfig(src_vocab_size=40, tgt_vocab_size=40, embedding_size=32, hidden_size=64,
                            attention=attention, bridge="linear", dropout=0.0)
        model = Seq2Seq(cfg).eval()
        src, lengths, tgt = torch.randint(3, 40, (4, 9)), torch.tensor([9, 4, 7, 2]), torch.randint(3, 40, (4, 6))
        rows = [r[:n] for r, n in zip(src.tolist(), lengths.tolist())]
        with torch.inference_mode():
            ref, _ = model(src, lengths, tgt)
            greedy = translate_ids(model, rows, 0, beam=1)
            logits, _ = quantize(model)(src, lengths, tgt)
            greedy8 = translate_ids(model, rows, 0, beam=1)
        assert _corr(logits, ref) > 0.99, attention
        assert isinstance(model.out, Int8Linear) and isinstance(model.decoder, Int8Recurrent)
        assert len(greedy8) == len(greedy)


# ---------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    return {**make_tiny_runs(root), "root": root}


@pytest.fixture
def quantised(monkeypatch):
    """The models ``quantize`` converted while the test ran (so a test can tell --int8 took effect)."""
    import rnnkit.nn.int8 as int8

    seen, real = [], int8.quantize
    monkeypatch.setattr(int8, "quantize", lambda model: seen.append(real(model)) or seen[-1])
    return seen


def _cli(capsys, *argv: str, stdin: str = "") -> str:
    capsys.readouterr()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        assert main(list(argv)) == 0
    finally:
        sys.stdin = old
    return capsys.readouterr().out


def test_predict_with_int8_classifier_and_tagger(runs, capsys, quantised):
    texts = "great fun film\nboring cold story\na lovely film\n"
    want = [json.loads(r) for r in _cli(capsys, "predict", str(runs["classify"]), "--json", stdin=texts).splitlines()]
    got = [json.loads(r) for r in _cli(capsys, "predict", str(runs["classify"]), "--json", "--int8",
                                       stdin=texts).splitlines()]
    assert len(got) == 3 and len(quantised) == 1
    for g, w in zip(got, want):
        assert max(abs(g["probs"][k] - w["probs"][k]) for k in w["probs"]) < PROB
    sents = "John Smith lives in Paris .\nMary flew to New York .\n"
    tags = _cli(capsys, "predict", str(runs["tag"]), stdin=sents).split()
    tags8 = _cli(capsys, "predict", str(runs["tag"]), "--int8", stdin=sents).split()
    assert len(tags8) == len(tags) and sum(a == b for a, b in zip(tags, tags8)) >= 0.9 * len(tags)
    assert len(quantised) == 2 and isinstance(quantised[1], Tagger)


def test_translate_chat_and_generate_with_int8(runs, capsys, quantised):
    src = (runs["root"] / "s2s.src").read_text().splitlines()[:20]
    out = _cli(capsys, "translate", str(runs["seq2seq"]), stdin="\n".join(src) + "\n").splitlines()
    out8 = _cli(capsys, "translate", str(runs["seq2seq"]), "--int8", stdin="\n".join(src) + "\n").splitlines()
    assert len(out8) == 20 and sum(a == b for a, b in zip(out, out8)) >= 18
    assert _cli(capsys, "chat", str(runs["seq2seq"]), "--int8", stdin=src[0] + "\n").strip() == out[0]
    text = _cli(capsys, "generate", str(runs["lm"]), "--int8", "--prime", "the ", "--length", "20", "--seed", "1")
    assert text.startswith("the ") and len(text) >= 20
    assert [type(m) for m in quantised] == [Seq2Seq, Seq2Seq, LanguageModel]


def test_evaluate_with_int8_reports_close_metrics(runs, capsys, quantised):
    root = runs["root"]
    cases = {"lm": ["--data", str(root / "lm.txt")], "classify": ["--data", str(root / "sent.tsv")],
             "tag": ["--data", str(root / "ner.txt")],
             "seq2seq": ["--src", str(root / "s2s.src"), "--tgt", str(root / "s2s.tgt")]}
    for task, args in cases.items():
        base = json.loads(_cli(capsys, "evaluate", str(runs[task]), *args, "--json"))
        q = json.loads(_cli(capsys, "evaluate", str(runs[task]), *args, "--json", "--int8"))
        if task == "lm":
            assert abs(q["loss"] - base["loss"]) < 0.02 * base["loss"]
        elif task == "seq2seq":
            assert abs(q["chrf"] - base["chrf"]) < 2.0
        else:
            assert abs(q["accuracy"] - base["accuracy"]) < 0.02, task
    assert [type(m) for m in quantised] == [LanguageModel, Classifier, Tagger, Seq2Seq]


def test_serve_with_int8_loads_every_run_quantised(runs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rnnkit.serve import create_app

    app = create_app([runs[t] for t in ("lm", "classify", "tag", "seq2seq")], int8=True)
    assert all(is_quantized(getattr(m, "model", None) or m.translator.model) for m in app.state.models.values())
    with TestClient(app) as client:
        assert all(m["int8"] for m in client.get("/api/models").json()["models"])
        r = client.post("/api/classify", json={"model": "tiny-classify", "text": "great fun film"})
        assert r.status_code == 200 and r.json()["results"][0]["label"] in ("pos", "neg")
        r = client.post("/api/translate", json={"model": "tiny-seq2seq", "text": "cat dog"})
        assert r.status_code == 200 and r.json()["results"][0]["translation"]
        r = client.post("/api/generate", json={"model": "tiny-lm", "text": "the ", "length": 10, "seed": 0})
        assert r.status_code == 200
        # inspect draws the float weights the quantised model keeps
        r = client.post("/api/inspect", json={"model": "tiny-lm", "text": "the cat sat on the mat"})
        assert r.status_code == 200 and r.json()["cell"] == "lstm"
    # the flag reaches the server from the command line
    from rnnkit.cli import build_parser

    assert build_parser().parse_args(["serve", str(runs["lm"]), "--int8"]).int8 is True


def test_export_int8_loads_in_onnxruntime_and_agrees_with_the_int8_model(runs, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from rnnkit.tasks.runs import open_run

    printed = _cli(capsys, "export", str(runs["classify"]), "--out", str(tmp_path / "cls.onnx"), "--int8")
    assert str(tmp_path / "cls.onnx") in printed
    meta = json.loads((tmp_path / "cls.json").read_text())
    assert meta["int8"]["method"] == "onnxruntime.quantization.quantize_dynamic"
    graph = onnx.load(str(tmp_path / "cls.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops and "Gemm" not in ops
    assert json.loads({p.key: p.value for p in graph.metadata_props}["rnnkit"])["int8"] == meta["int8"]
    _, model, _ = open_run(runs["classify"], int8=True)
    _, float_model, _ = open_run(runs["classify"])
    rng = random.Random(0)
    lens = np.array([5, 2, 4], dtype=np.int64)
    tokens = np.zeros((3, 5), dtype=np.int64)
    for i, n in enumerate(lens):
        tokens[i, :n] = [rng.randrange(2, model.config.vocab_size) for _ in range(n)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(tmp_path / "cls.onnx"), opts, providers=["CPUExecutionProvider"])
    probs = sess.run(["probs"], {"tokens": tokens, "lengths": lens})[0]
    t, n = torch.from_numpy(tokens), torch.from_numpy(lens)
    assert np.abs(probs - model.predict_proba(t, n).numpy()).max() < PROB
    assert np.abs(probs - float_model.predict_proba(t, n).numpy()).max() < PROB
    # seq2seq: both graphs quantised, and they load and run
    _cli(capsys, "export", str(runs["seq2seq"]), "--out", str(tmp_path / "s2s"), "--int8")
    enc = ort.InferenceSession(str(tmp_path / "s2s.encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    ort.InferenceSession(str(tmp_path / "s2s.decoder.onnx"), opts, providers=["CPUExecutionProvider"])
    src_vocab = json.loads((tmp_path / "s2s.json").read_text())["model"]["src_vocab_size"]
    out = enc.run(None, {"src": np.where(tokens > 0, tokens % (src_vocab - 3) + 3, 0), "src_lengths": lens})
    assert all(np.isfinite(o).all() for o in out if o.dtype != bool)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_export_int8_of_a_gru_or_rnn_language_model_keeps_its_recurrence_float(cell, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from rnnkit.tasks.runs import open_run

    (tmp_path / "t.txt").write_text("the cat sat on the mat. the dog ran.\n" * 40, encoding="utf-8")
    run = tmp_path / "run"
    _cli(capsys, "train", "lm", "--data", str(tmp_path / "t.txt"), "--out", str(run), "--cell", cell,
         "--max-steps", "20", "--hidden", "32", "--layers", "1", "--embedding-size", "8", "--seq-len", "16",
         "--batch-size", "4", "--eval-every", "20", "--sample-length", "0", "--no-progress", "--threads", "1")
    _cli(capsys, "export", str(run), "--out", str(tmp_path / "lm.onnx"), "--int8")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "lm.onnx")).graph.node}
    assert "MatMulInteger" in ops and ("GRU" if cell == "gru" else "RNN") in ops  # output layer int8, recurrence float
    _, model, _ = open_run(run, int8=True)
    tokens = torch.randint(0, model.config.vocab_size, (2, 7))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(tmp_path / "lm.onnx"), opts, providers=["CPUExecutionProvider"])
    feeds = {"tokens": tokens.numpy(), "lengths": np.array([7, 7]), "h0": np.zeros((1, 2, 32), np.float32)}
    logits = torch.from_numpy(sess.run(["logits"], feeds)[0])
    with torch.inference_mode():
        ref, _ = model(tokens)
    assert rel(logits, ref) < REL
