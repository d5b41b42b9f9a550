"""``rnnkit serve``: the HTTP JSON API over tiny trained runs, checked against the task functions."""
import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from rnnkit.cli import main  # noqa: E402
from rnnkit.errors import CheckpointError  # noqa: E402
from rnnkit.serve import _names, create_app  # noqa: E402

POS = ["good great fine film", "a lovely warm story", "great acting and fun", "fun and lovely", "warm great film"]
NEG = ["bad dull boring film", "a terrible cold story", "boring acting and dull", "dull and terrible",
       "cold bad film"]
PEOPLE = ["John Smith", "Mary", "Anna Lee", "Peter", "Paul Jones", "Maria"]
PLACES = ["Paris", "Berlin", "New York", "Rome", "Madrid", "Tokyo"]
WORDS = "cat dog bird fish cow horse sheep goat duck frog".split()


def _ner_sentences(n: int, seed: int) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        who, where = rng.choice(PEOPLE).split(), rng.choice(PLACES).split()
        verb = rng.choice(["lives in", "visited", "flew to", "likes"]).split()
        rows = [(w, ("B-PER" if i == 0 else "I-PER")) for i, w in enumerate(who)]
        rows += [(w, "O") for w in verb]
        rows += [(w, ("B-LOC" if i == 0 else "I-LOC")) for i, w in enumerate(where)] + [(".", "O")]
        out.append("\n".join(f"{w} {t}" for w, t in rows))
    return "\n\n".join(out) + "\n\n"


def make_tiny_runs(root: Path) -> dict:
    """Train one tiny run per task under ``root`` (a few seconds each); task -> run folder."""
    root = Path(root)
    rng = random.Random(0)
    runs = {t: root / f"tiny-{t}" for t in ("lm", "classify", "tag", "seq2seq")}
    common = ["--no-progress", "--threads", "1"]
    (root / "lm.txt").write_text("the cat sat on the mat. the dog ran.\n" * 60, encoding="utf-8")
    assert main(["train", "lm", "--data", str(root / "lm.txt"), "--out", str(runs["lm"]), "--max-steps", "30",
                 "--hidden", "16", "--layers", "1", "--embedding-size", "8", "--seq-len", "16", "--batch-size", "4",
                 "--eval-every", "30", "--sample-length", "0", *common]) == 0
    (root / "sent.tsv").write_text("text\tlabel\n" + "".join(
        f"{rng.choice(POS)}\tpos\n{rng.choice(NEG)}\tneg\n" for _ in range(60)), encoding="utf-8")
    assert main(["train", "classify", "--train", str(root / "sent.tsv"), "--text-column", "text",
                 "--label-column", "label", "--out", str(runs["classify"]), "--epochs", "10", "--hidden", "16",
                 "--embedding-size", "16", "--lr", "0.01", "--batch-size", "16", *common]) == 0
    (root / "ner.txt").write_text(_ner_sentences(60, 0), encoding="utf-8")
    assert main(["train", "tag", "--train", str(root / "ner.txt"), "--out", str(runs["tag"]), "--epochs", "6",
                 "--hidden", "24", "--embedding-size", "16", "--char-embedding-size", "8", "--char-hidden", "8",
                 "--lr", "0.02", "--batch-size", "8", *common]) == 0
    src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(300)]
    (root / "s2s.src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (root / "s2s.tgt").write_text("\n".join(" ".join(reversed(s.upper().split())) for s in src) + "\n",
                                  encoding="utf-8")
    assert main(["train", "seq2seq", "--train-src", str(root / "s2s.src"), "--train-tgt", str(root / "s2s.tgt"),
                 "--attention", "bahdanau", "--beam", "3", "--epochs", "8", "--out", str(runs["seq2seq"]),
                 "--hidden", "32", "--embedding-size", "16", "--lr", "0.01", "--batch-size", "16", "--dropout", "0",
                 *common]) == 0
    return runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, port: int = 0):
    """Serve ``app`` with uvicorn on loopback in a background thread; yields the base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def app(runs):
    return create_app(list(runs.values()), max_chars=200, max_batch=4)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def test_models_lists_every_run_with_its_task(client):
    body = client.get("/api/models").json()
    assert {m["name"]: m["task"] for m in body["models"]} == {
        "tiny-lm": "lm", "tiny-classify": "classify", "tiny-tag": "tag", "tiny-seq2seq": "seq2seq"}
    assert body["limits"] == {"max_chars": 200, "max_batch": 4}
    info = {m["name"]: m for m in body["models"]}
    assert info["tiny-classify"]["labels"] == ["neg", "pos"] and info["tiny-classify"]["endpoint"] == "/api/classify"
    assert {"B-PER", "I-LOC", "O"} <= set(info["tiny-tag"]["tags"]) and info["tiny-tag"]["entity"] is True
    assert info["tiny-seq2seq"]["attention"] is True and info["tiny-seq2seq"]["beam"] == 3
    assert info["tiny-lm"]["labels"] == [] and info["tiny-lm"]["tokenizer"] == "char"
    assert (info["tiny-lm"]["cell"], info["tiny-lm"]["num_layers"], info["tiny-lm"]["hidden_size"]) == ("lstm", 1, 16)


def test_classify_equals_task_predict(client, runs):
    from rnnkit.tasks.classify import predict

    texts = ["great fun film", "boring cold story", "a lovely film", "zzz unknown words"]
    r = client.post("/api/classify", json={"model": "tiny-classify", "text": texts})
    assert r.status_code == 200
    body = r.json()
    assert body["labels"] == ["neg", "pos"]
    assert body["results"] == predict(runs["classify"], texts)
    assert [row["label"] for row in body["results"][:2]] == ["pos", "neg"]
    one = client.post("/api/classify", json={"model": "tiny-classify", "text": "great fun film"}).json()
    assert one["results"] == predict(runs["classify"], ["great fun film"])


def test_tag_equals_task_predict(client, runs):
    from rnnkit.tasks.tag import predict

    texts = ["John Smith lives in Paris .\nMary visited Rome .", "Peter likes Tokyo ."]
    body = client.post("/api/tag", json={"model": "tiny-tag", "text": texts}).json()
    assert "B-PER" in body["tags"]
    for text, res in zip(texts, body["results"]):
        expected = [line.split("\t") for line in predict(runs["tag"], text).splitlines() if line]
        got = [[tok, tag] for s in res["sentences"] for tok, tag in zip(s["tokens"], s["tags"])]
        assert got == expected
        assert res["text"] == text and len(res["sentences"]) == len(text.splitlines())
    assert body["results"][1]["sentences"][0]["tags"][0] == "B-PER"


def test_generate_equals_task_generate(client, runs):
    from rnnkit.tasks.lm import generate

    req = {"model": "tiny-lm", "text": ["the c", "the d"], "length": 20, "temperature": 0.7, "top_p": 0.9,
           "top_k": 5, "seed": 3, "num_samples": 2}
    body = client.post("/api/generate", json=req).json()
    assert [r["prime"] for r in body["results"]] == ["the c", "the d"]
    for res in body["results"]:
        assert res["samples"] == generate(runs["lm"], prime=res["prime"], length=20, temperature=0.7, top_k=5,
                                          top_p=0.9, seed=3, num_samples=2)
        assert all(s.startswith(res["prime"]) and len(s) == len(res["prime"]) + 20 for s in res["samples"])
    again = client.post("/api/generate", json=req).json()
    assert again == body  # a seed makes samples repeatable


def test_translate_equals_translator(client, runs):
    from rnnkit.tasks.seq2seq import Translator

    t = Translator(runs["seq2seq"])
    texts = ["cat dog bird", "cow fish"]
    body = client.post("/api/translate", json={"model": "tiny-seq2seq", "text": texts, "n_best": 2}).json()
    expected = t.translate(texts, n_best=2)
    for text, res, hyps in zip(texts, body["results"], expected):
        assert res["source"] == text and res["translation"] == hyps[0].text
        assert res["n_best"] == [{"text": h.text, "score": round(h.score, 4)} for h in hyps]
        src, out, weights = t.attention(text, hyps[0])
        att = res["attention"]
        assert att["source_tokens"] == src and att["output_tokens"] == out
        assert att["weights"] == [[round(w, 4) for w in row] for row in weights.tolist()]
        assert len(att["weights"]) == len(out) and all(abs(sum(r) - 1) < 1e-3 for r in att["weights"])
    assert body["results"][0]["translation"] == "BIRD DOG CAT"
    greedy = client.post("/api/translate", json={"model": "tiny-seq2seq", "text": "cow fish", "beam": 1,
                                                 "attention": False}).json()["results"][0]
    assert greedy["translation"] == t.translate(["cow fish"], beam=1)[0][0].text and greedy["attention"] is None


INSPECT_TEXT = "the cat sat on the mat.\nthe dog ran."


def _trace_directly(run, text, label=None):
    """``rnnkit.tasks.inspect.trace`` run on the run's model, by hand: the tokens and the top layer's traces."""
    import torch

    from rnnkit.tasks.inspect import trace
    from rnnkit.tasks.lm import load_run

    config, model, vocab, tok, _ = load_run(run)
    tokens = tok.tokenize(text)
    lab = torch.tensor([config["labels"].index(label)]) if label is not None else None
    with torch.no_grad():
        x = model.recurrent_inputs(torch.tensor([vocab.encode(tokens)]), lab)[0]
        return tokens, trace(model.rnn, x)[-1]


def _check_against_trace(body, traced):
    hidden = traced["hidden"]
    assert set(body["activations"]) == {str(u) for u in body["units"]}
    for u in body["units"]:
        assert body["activations"][str(u)] == pytest.approx(hidden[:, u].tolist(), abs=1e-4)
    for gate, values in body["gates"].items():
        assert values == pytest.approx(traced[gate][:, body["units"][0]].tolist(), abs=1e-4)
    assert len(body["top_units"]) == hidden.shape[0]
    for row, pairs in zip(hidden, body["top_units"]):
        assert [u for u, _ in pairs] == row.abs().argsort(descending=True)[:5].tolist()
        assert [v for _, v in pairs] == pytest.approx([float(row[u]) for u, _ in pairs], abs=1e-4)


def test_inspect_equals_trace_and_inspect_run(client, runs, tmp_path):
    from rnnkit.tasks.inspect import inspect_run

    r = client.post("/api/inspect", json={"model": "tiny-lm", "text": INSPECT_TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    tokens, traced = _trace_directly(runs["lm"], INSPECT_TEXT)
    assert body["tokens"] == tokens == list(INSPECT_TEXT) and body["truncated"] is False
    assert (body["model"], body["layer"], body["cell"], body["hidden_size"]) == ("tiny-lm", 0, "lstm", 16)
    assert set(body["gates"]) == {"input gate", "forget gate", "output gate"}
    _check_against_trace(body, traced)
    # the units and correlations are those `rnnkit inspect` chooses and prints
    cli = inspect_run(runs["lm"], INSPECT_TEXT, tmp_path / "inspect.png")
    assert 1 <= len(body["units"]) <= 4 and body["units"] == cli["units"] and body["layer"] == cli["layer"]
    assert body["correlations"] == {k: [list(p) for p in v] for k, v in cli["correlations"].items()}
    assert {"position in line", "start of word", "vowel"} <= set(body["correlations"])


def test_inspect_given_units_layer_and_token_cap(client, runs, monkeypatch):
    import rnnkit.serve

    req = {"model": "tiny-lm", "text": INSPECT_TEXT, "units": [7, 2, 7], "layer": 0}
    body = client.post("/api/inspect", json=req).json()
    assert body["units"] == [7, 2] and list(body["activations"]) == ["7", "2"]
    _check_against_trace(body, _trace_directly(runs["lm"], INSPECT_TEXT)[1])  # gates of unit 7
    monkeypatch.setattr(rnnkit.serve, "INSPECT_MAX_TOKENS", 10)
    body = client.post("/api/inspect", json={**req, "units": [1]}).json()
    assert body["tokens"] == list(INSPECT_TEXT[:10]) and body["truncated"] is True
    assert len(body["activations"]["1"]) == len(body["top_units"]) == len(body["gates"]["forget gate"]) == 10


def test_label_conditioned_lm_generates_and_inspects_for_a_label(tmp_path):
    from rnnkit.tasks.lm import generate

    names = tmp_path / "names"
    names.mkdir()
    (names / "short.txt").write_text("ab\nba\naab\n" * 5, encoding="utf-8")
    (names / "long.txt").write_text("abba\nbaab\nabab\n" * 5, encoding="utf-8")
    run = tmp_path / "names-lm"
    assert main(["train", "lm", "--data", str(names), "--out", str(run), "--max-steps", "3", "--hidden", "8",
                 "--layers", "2", "--cell", "gru", "--batch-size", "4", "--sample-length", "0", "--no-progress",
                 "--threads", "1"]) == 0
    with TestClient(create_app([run])) as c:
        gen = {"model": "names-lm", "text": "", "length": 6, "seed": 1, "label": "long"}
        assert c.post("/api/generate", json=gen).json()["results"][0]["samples"] == generate(
            run, length=6, seed=1, label="long")
        r = c.post("/api/generate", json={**gen, "label": None})
        assert r.status_code == 422 and 'give "label", one of [\'long\', \'short\']' in r.json()["detail"]
        r = c.post("/api/inspect", json={"model": "names-lm", "text": "abba"})
        assert r.status_code == 422 and "reads text for a label" in r.json()["detail"]
        body = c.post("/api/inspect", json={"model": "names-lm", "text": "abba", "label": "short"}).json()
    assert body["cell"] == "gru" and body["layer"] == 1 and set(body["gates"]) == {"reset gate", "update gate"}
    _check_against_trace(body, _trace_directly(run, "abba", label="short")[1])


BAD = [
    # (endpoint, raw body, status, words the message must hold)
    ("classify", "{not json", 400, "not valid JSON"),
    ("classify", "", 400, "JSON object body"),
    ("classify", "[1, 2]", 400, "JSON object"),
    ("classify", {"model": "nope", "text": "great film"}, 404, "unknown model 'nope'"),
    ("classify", {"model": "tiny-tag", "text": "great film"}, 400, "/api/tag"),
    ("translate", {"model": "tiny-classify", "text": "great film"}, 400, "/api/classify"),
    ("classify", {"model": "tiny-classify"}, 422, "text: Field required"),
    ("classify", {"text": "great film"}, 422, "model: Field required"),
    ("classify", {"model": "tiny-classify", "text": ""}, 422, "text: empty"),
    ("classify", {"model": "tiny-classify", "text": ["good", "   "]}, 422, "text[1]: empty"),
    ("classify", {"model": "tiny-classify", "text": []}, 422, "list is empty"),
    ("classify", {"model": "tiny-classify", "text": 42}, 422, "string or a list of strings"),
    ("classify", {"model": "tiny-classify", "text": "x" * 201}, 413, "201 characters; the limit is 200"),
    ("classify", {"model": "tiny-classify", "text": ["good"] * 5}, 413, "5 texts in one request; the limit is 4"),
    ("classify", {"model": "tiny-classify", "text": "good", "colour": "red"}, 422, "colour: is not a field"),
    ("tag", {"model": "tiny-tag", "text": "\n \n"}, 422, "text: empty"),
    ("generate", {"model": "tiny-lm", "text": "the", "temperature": 0}, 422, "temperature"),
    ("generate", {"model": "tiny-lm", "text": "the", "top_p": 1.5}, 422, "top_p"),
    ("generate", {"model": "tiny-lm", "text": "the", "length": 0}, 422, "length"),
    ("generate", {"model": "tiny-lm", "text": ["a", "b"], "num_samples": 3}, 413, "the limit is 4"),
    ("generate", {"model": "tiny-lm", "text": ""}, 422, "non-empty text"),
    ("generate", {"model": "tiny-lm", "text": "the Q"}, 422, "'Q'"),
    ("generate", {"model": "tiny-lm", "text": "the", "label": "x"}, 422, "not conditioned on a label"),
    ("translate", {"model": "tiny-seq2seq", "text": "cat", "beam": 2, "n_best": 3}, 422, "n_best"),
    ("translate", {"model": "tiny-seq2seq", "text": "cat", "beam": 99}, 422, "beam"),
    ("inspect", {"model": "tiny-classify", "text": "great film"}, 400, "/api/classify"),
    ("inspect", {"model": "tiny-lm", "text": "the Q cat"}, 422, "vocabulary lacks: 'Q'"),
    ("inspect", {"model": "tiny-lm", "text": "t"}, 422, "at least two tokens"),
    ("inspect", {"model": "tiny-lm", "text": "   "}, 422, "text: empty"),
    ("inspect", {"model": "tiny-lm", "text": ["the cat"]}, 422, "text: Input should be a valid string"),
    ("inspect", {"model": "tiny-lm", "text": "t" * 201}, 413, "201 characters; the limit is 200"),
    ("inspect", {"model": "tiny-lm", "text": "the cat", "layer": 1}, 422, "layer: must be in [0, 1)"),
    ("inspect", {"model": "tiny-lm", "text": "the cat", "units": [3, 16]}, 422, "units: must be in [0, 16), got [16]"),
    ("inspect", {"model": "tiny-lm", "text": "the cat", "units": []}, 422, "units"),
    ("inspect", {"model": "tiny-lm", "text": "the cat", "label": "x"}, 422, "not conditioned on a label"),
]


@pytest.mark.parametrize("endpoint,body,status,words", BAD, ids=[f"{e}-{w[:20]}" for e, _, _, w in BAD])
def test_bad_requests_get_4xx_with_a_message(client, endpoint, body, status, words):
    raw = body if isinstance(body, str) else json.dumps(body)
    r = client.post(f"/api/{endpoint}", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail


def test_server_keeps_serving_after_bad_requests(client, runs):
    from rnnkit.tasks.classify import predict

    for endpoint, body, _, _ in BAD:
        client.post(f"/api/{endpoint}", content=body if isinstance(body, str) else json.dumps(body),
                    headers={"content-type": "application/json"})
    r = client.post("/api/classify", json={"model": "tiny-classify", "text": "great fun film"})
    assert r.status_code == 200 and r.json()["results"] == predict(runs["classify"], ["great fun film"])


def test_unknown_pages_and_methods(client):
    r = client.get("/api/classify")
    assert r.status_code == 405 and "GET is not allowed" in r.json()["detail"]
    r = client.get("/api/nothing")
    assert r.status_code == 404 and "/docs" in r.json()["detail"]


def test_playground_page_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for id_ in ("model", "text", "run", "bars", "tokens", "legend", "translation", "heatmap", "generated", "error",
                "mode-inspect", "layer", "units", "inspect-unit", "inspect-text", "inspect-hover", "correlations"):
        assert f'id="{id_}"' in page.text
    assert "://" not in page.text  # nothing from outside: the page works without internet
    js = client.get("/static/playground.js")
    assert js.status_code == 200 and "api/models" in js.text
    assert client.get("/static/playground.css").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/models", "/api/generate", "/api/inspect", "/api/classify", "/api/tag",
            "/api/translate"} <= set(schema["paths"])
    assert {"text", "layer", "units", "label"} <= set(schema["components"]["schemas"]["InspectRequest"]["properties"])
    gen = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert {"model", "text", "temperature", "top_p", "top_k", "seed", "num_samples", "label"} <= set(gen)
    assert "TranslateResponse" in schema["components"]["schemas"]


def test_concurrent_requests_over_http_match_sequential_answers(app):
    import httpx

    texts = ["great fun film", "boring cold story", "a lovely warm story", "dull and terrible"]
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        expected = {t: c.post("/api/classify", json={"model": "tiny-classify", "text": t}).json() for t in texts}
        s2s = c.post("/api/translate", json={"model": "tiny-seq2seq", "text": "cat dog"}).json()

        def call(i):
            if i % 3 == 2:
                return "s2s", c.post("/api/translate", json={"model": "tiny-seq2seq", "text": "cat dog"}).json()
            t = texts[i % len(texts)]
            return t, c.post("/api/classify", json={"model": "tiny-classify", "text": t}).json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(48)))
    for key, body in answers:
        assert body == (s2s if key == "s2s" else expected[key])


def test_run_folder_errors_and_names(tmp_path, runs):
    with pytest.raises(CheckpointError, match="not a run folder"):
        create_app([tmp_path])
    assert _names([Path("a/run"), Path("b/run"), Path("c/x")]) == ["a/run", "b/run", "x"]
    assert _names([Path("a/run"), Path("a/run")]) == ["a/run", "a/run-2"]


def test_serve_calls_uvicorn(monkeypatch, runs, capsys):
    import uvicorn

    from rnnkit.serve import serve

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    serve([runs["classify"]], host="127.0.0.1", port=8123, max_batch=2)
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert seen["app"].state.limits["max_batch"] == 2
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out


def test_importing_rnnkit_does_not_import_fastapi():
    code = "import sys, rnnkit, rnnkit.serve; assert not {'fastapi', 'uvicorn', 'pydantic'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def _fuzz_value(rng: random.Random):
    """A JSON value of the kinds that break servers: huge and negative numbers, odd floats, lone
    surrogates and other Unicode, wrong types, nesting."""
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice([10**30, -10**30, 2**63, -1, 0, 1, 3, 2**31])
    if kind == 1:
        return rng.choice([1e308, -1e308, 0.0, -0.5, 1.5, 1e-320])
    if kind == 2:
        return rng.choice(["\ud800", "a\udfffb", "\ud83d", "x\x00y", "\u202e\u0301é", "🙂" * 3])
    if kind == 3:
        return "".join(rng.choice("catdog sat\n\t") for _ in range(rng.randrange(0, 60)))
    if kind == 4:
        return [_fuzz_value(rng) for _ in range(rng.randrange(0, 6))]
    if kind == 5:
        return {"a": _fuzz_value(rng)}
    if kind == 6:
        return rng.choice([True, False, None])
    if kind == 7:
        return "x" * rng.choice([199, 200, 201, 5000])
    return rng.choice(["cat dog", "great fun film", "John lives in Paris .", ""])


def test_fuzzed_requests_from_eight_clients_never_get_a_5xx(app):
    """Bounded (2,000 requests, loopback only): every answer is 2xx or 4xx, and the server still serves."""
    import httpx

    fields = {"generate": ["length", "temperature", "top_k", "top_p", "seed", "num_samples", "label"],
              "translate": ["beam", "n_best", "length_penalty", "attention"], "classify": [], "tag": [],
              "inspect": ["layer", "units", "label"]}
    models = {"generate": "tiny-lm", "inspect": "tiny-lm", "classify": "tiny-classify", "tag": "tiny-tag",
              "translate": "tiny-seq2seq"}

    def request(i: int):
        rng = random.Random(i)
        endpoint = rng.choice(sorted(fields))
        body = {"model": models[endpoint], "text": _fuzz_value(rng) if rng.random() < 0.6 else "cat dog"}
        for f in rng.sample(fields[endpoint], k=min(len(fields[endpoint]), rng.randrange(0, 4))):
            body[f] = _fuzz_value(rng)
        if rng.random() < 0.05:
            body["bogus"] = 1
        payload = json.dumps(body, ensure_ascii=True)  # \ud800 travels as an escape, as a client would send it
        r = c.post(f"/api/{endpoint}", content=payload, headers={"content-type": "application/json"})
        return r.status_code, endpoint, payload[:200], r.text[:200]

    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(request, range(2000)))
        assert c.post("/api/classify", json={"model": "tiny-classify", "text": "great fun"}).status_code == 200
    server_errors = [a for a in answers if a[0] >= 500]
    assert not server_errors, server_errors[:5]
    assert {s for s, *_ in answers} >= {200, 422}


def test_a_lone_surrogate_is_a_422_and_any_valid_unicode_is_served(client):
    r = client.post("/api/classify", content='{"model": "tiny-classify", "text": "bad \\ud800 film"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "surrogate" in r.json()["detail"]
    r = client.post("/api/classify", json={"model": "tiny-classify", "text": "great 🙂 film é \u202e"})
    assert r.status_code == 200


def test_an_oversized_body_is_refused_before_it_is_read(app):
    import httpx

    limit = 6 * 200 * 4 + 65_536
    received = []

    def body():  # a streamed (chunked) body with no Content-Length: refused as it passes the limit
        for _ in range(200):
            received.append(1)
            yield b"x" * 4096

    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/classify", content=b"{" + b" " * (limit + 10) + b"}",
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and str(limit) in r.json()["detail"]
        r = c.post("/api/classify", content=body(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.post("/api/classify", json={"model": "tiny-classify", "text": "great fun"})
        assert r.status_code == 200


def test_seeds_and_integers_are_bounded_by_the_declarations(client):
    r = client.post("/api/generate", json={"model": "tiny-lm", "text": "the", "seed": 10**30})
    assert r.status_code == 422 and "seed" in r.json()["detail"]
    r = client.post("/api/translate", json={"model": "tiny-seq2seq", "text": "cat", "beam": 10**6})
    assert r.status_code == 422 and "beam" in r.json()["detail"]


def test_predict_warns_about_empty_lines_and_translate_cuts_huge_sources(runs, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("great fun film\n\nboring film\n"))
    assert main(["predict", str(runs["classify"])]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and "1 empty input line(s) (first: line 2)" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("cat " * 20_000 + "\ndog cat\n"))
    assert main(["translate", str(runs["seq2seq"]), "--max-src-tokens", "50", "--beam", "1"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and "1 source text(s) longer than 50 tokens were cut" in err


def test_translate_and_evaluate_take_an_ensemble_of_runs(runs, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("cat dog\ndog cat bird\n", encoding="utf-8")
    run = str(runs["seq2seq"])
    assert main(["translate", run, str(src)]) == 0
    alone = capsys.readouterr().out
    assert main(["translate", run, run, str(src)]) == 0  # one run twice: the mean of equal log-probabilities
    assert capsys.readouterr().out == alone and len(alone.splitlines()) == 2
    assert main(["evaluate", run, run, "--src", str(src), "--tgt", str(src), "--json"]) == 0
    twice = json.loads(capsys.readouterr().out)
    assert main(["evaluate", run, "--src", str(src), "--tgt", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu"] == twice["bleu"]
    assert main(["evaluate", run, str(runs["classify"]), "--data", str(src)]) == 2
    assert "ensemble" in capsys.readouterr().err
