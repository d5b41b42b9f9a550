"""``rnnkit serve``: trained run folders behind an HTTP JSON API, with a playground page.

Each run folder is opened once, when the app is built, and its model stays in
memory.  Endpoints (OpenAPI schema at ``/openapi.json``, Swagger UI at ``/docs``):

* ``GET  /api/models``    the loaded models: name (the run folder's name), task and what the task needs
* ``POST /api/generate``  language models: continuations of a prime text (temperature, top-k, top-p)
* ``POST /api/inspect``   language models: what ``rnnkit inspect`` draws, as JSON: per token the hidden state
                          of chosen units, the first unit's gates, the units most active at each token, and
                          the units most correlated with simple features of the text
* ``POST /api/classify``  classifiers: label and class probabilities
* ``POST /api/tag``       taggers: a tag per whitespace-separated token, one sentence per line
* ``POST /api/translate`` seq2seq: n-best translations and the attention weights of the best one
* ``GET  /``              the playground page (static HTML and JS, no outside resources)

A request names a ``model`` and carries ``text``: one string or a list of up to
``max_batch`` strings of at most ``max_chars`` characters each; ``results``
holds one entry per text, in order (``/api/inspect`` reads one string and
answers for it alone).  Bad requests get a 4xx answer whose
``detail`` is a message saying what was wrong; the server goes on serving.

FastAPI, pydantic and uvicorn are imported when an app is built, so that
``import rnnkit`` (and this module) stays light: ``pip install 'rnnkit[serve]'``.
"""
# no ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, which name
# request models built inside create_app
import threading
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from rnnkit.errors import ConfigError, RnnkitError

PLAYGROUND = Path(__file__).parent / "playground"
INSPECT_MAX_TOKENS = 400  # POST /api/inspect reads at most this many tokens of the text (as ``rnnkit inspect``)
MAX_UNITS = 16            # units one inspect request may ask for
TOP_UNITS = 5             # units listed per token by POST /api/inspect


class RequestError(RnnkitError):
    """A request the server refuses: ``status`` is its HTTP status code."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ per-task adapters: a run opened once


class _Loaded:
    """One run folder, opened once; calls on it are serialised by its lock."""

    task = endpoint = ""

    def __init__(self, name: str, run: Path, config: dict[str, Any], int8: bool = False) -> None:
        self.name, self.run, self.config, self.int8 = name, run, config, int8
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        from rnnkit.tasks import TASKS

        return {"name": self.name, "task": self.task, "endpoint": f"/api/{TASKS[self.task].endpoint}",
                "int8": self.int8}


class _LM(_Loaded):
    task, endpoint = "lm", "generate"

    def __init__(self, name: str, run: Path, int8: bool = False) -> None:
        from rnnkit.tasks import lm

        self.opened = lm.load_run(run, int8=int8)  # (config, model, vocab, tokenizer, data config)
        config, self.model, self.vocab, self.tok, self.data = self.opened
        super().__init__(name, run, config, int8)
        self.labels: list[str] = config.get("labels") or []
        q = repr(name).replace("{", "{{").replace("}", "}}")  # the messages are format templates
        # rnnkit.tasks.lm.generate_from's messages, worded for the API (its defaults name the CLI's options)
        self.wording = {
            "unknown_tokens": "the text has {count} token(s) the model's vocabulary lacks: {tokens}",
            "label_needed": f"model {q} generates for a label: give \"label\", one of {{labels}}",
            "unknown_label": f"unknown label {{label!r}}; model {q} knows {{labels}}",
            "no_label": f"model {q} is not conditioned on a label: leave \"label\" out",
            "empty_prime": f"model {q} needs a non-empty text to continue",
        }

    def info(self) -> dict[str, Any]:
        rnn = self.model.rnn
        return {**super().info(), "labels": self.labels, "tokenizer": self.data.tokenizer, "cell": rnn.mode,
                "num_layers": rnn.num_layers, "hidden_size": rnn.hidden_size}

    def generate(self, prime: str, *, length: int, temperature: float, top_k: Optional[int],
                 top_p: Optional[float], seed: Optional[int], num_samples: int, label: Optional[str]) -> list[str]:
        """:func:`rnnkit.tasks.lm.generate_from` on the model in memory (bad input: a 422 RequestError)."""
        import torch

        from rnnkit.tasks.lm import generate_from

        try:
            with self.lock, torch.inference_mode():
                return generate_from(self.opened, prime=prime, length=length, temperature=temperature,
                                     top_k=top_k, top_p=top_p, seed=seed, num_samples=num_samples, label=label,
                                     wording=self.wording)
        except ConfigError as e:
            raise RequestError(str(e)) from None

    def inspect(self, text: str, *, layer: int, units: Optional[Sequence[int]], label: Optional[str],
                max_tokens: int) -> dict[str, Any]:
        """What ``rnnkit inspect`` computes (:func:`rnnkit.tasks.inspect.inspect_run`: the same tokens, inputs,
        correlations and choice of units), as JSON instead of a picture; see ``POST /api/inspect``."""
        from rnnkit.tasks.inspect import GATE_NAMES, read_text

        try:
            with self.lock:
                r = read_text(self.opened, text, units=units, layer=layer, label=label, max_tokens=max_tokens)
        except ConfigError as e:
            raise RequestError(str(e)) from None
        rnn, hidden, units, H = self.model.rnn, r.traced["hidden"], r.units, self.model.rnn.hidden_size
        tokens, truncated, layer, traced, corr = r.tokens, r.truncated, r.layer, r.traced, r.correlations

        def r4(values: Any) -> list[float]:
            return [round(v, 4) for v in values.tolist()]

        top = hidden.abs().topk(min(TOP_UNITS, H), dim=1).indices  # (T, k): the units largest in |activation|
        top_values = hidden.gather(1, top)  # (T, k)
        return {
            "tokens": tokens, "truncated": truncated, "layer": layer, "cell": rnn.mode, "hidden_size": H,
            "units": units,
            "activations": {str(u): r4(hidden[:, u]) for u in units},
            "gates": {g: r4(traced[g][:, units[0]]) for g in GATE_NAMES.get(rnn.mode, ())},
            "correlations": {name: [[u, r] for u, r in pairs] for name, pairs in corr.items()},
            "top_units": [[[u, round(v, 4)] for u, v in zip(us, vs)]
                          for us, vs in zip(top.tolist(), top_values.tolist())],
        }


class _Classifier(_Loaded):
    task, endpoint = "classify", "classify"

    def __init__(self, name: str, run: Path, int8: bool = False) -> None:
        from rnnkit.tasks import classify

        config, self.model, self.enc = classify.load_run(run, int8=int8)
        super().__init__(name, run, config, int8)
        self.labels: list[str] = config["labels"]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "labels": self.labels}

    def classify(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, Any]]:
        """:func:`rnnkit.tasks.classify.predict_with` on the model in memory."""
        from rnnkit.tasks.classify import predict_with

        with self.lock:
            return predict_with(self.model, self.enc, self.labels, texts, batch_size)


class _Tagger(_Loaded):
    task, endpoint = "tag", "tag"

    def __init__(self, name: str, run: Path, int8: bool = False) -> None:
        from rnnkit.tasks import tag

        config, self.model, self.enc, self.data = tag.load_run(run, int8=int8)
        super().__init__(name, run, config, int8)
        self.tags = list(self.enc.tags.tokens)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "tags": self.tags, "entity": bool(self.config.get("entity"))}

    def tag(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Per text: its sentences (one per non-empty line, split on whitespace) with a tag per token."""
        import torch

        from rnnkit.data import Sentence, read_tokens
        from rnnkit.tasks.tag import predict_sentences

        per_text = [read_tokens(t) for t in texts]
        sents = [Sentence(toks, None, "<request>", i + 1) for toks_list in per_text for i, toks in enumerate(toks_list)]
        with self.lock, torch.inference_mode():
            tags = predict_sentences(self.model, self.enc, sents)
        out, k = [], 0
        for text, toks_list in zip(texts, per_text):
            rows = [{"tokens": s.tokens, "tags": t} for s, t in zip(sents[k: k + len(toks_list)],
                                                                      tags[k: k + len(toks_list)])]
            k += len(toks_list)
            out.append({"text": text, "sentences": rows})
        return out


class _Translator(_Loaded):
    task, endpoint = "seq2seq", "translate"

    def __init__(self, name: str, run: Path, int8: bool = False) -> None:
        from rnnkit.tasks.seq2seq import Translator

        self.translator = Translator(run, int8=int8)
        super().__init__(name, run, self.translator.config, int8)

    def info(self) -> dict[str, Any]:
        d = self.translator.data
        return {**super().info(), "attention": self.translator.model.config.attention != "none",
                "beam": d.beam, "length_penalty": d.length_penalty}

    def translate(self, texts: Sequence[str], *, beam: Optional[int], n_best: int,
                  length_penalty: Optional[float], attention: bool) -> list[dict[str, Any]]:
        import torch

        b = beam or self.translator.data.beam
        if n_best > b:
            raise RequestError(f"n_best ({n_best}) cannot exceed the beam size ({b})")
        with self.lock, torch.inference_mode():
            hyps = self.translator.translate(texts, beam=b, n_best=n_best, length_penalty=length_penalty)
            out = []
            for text, h in zip(texts, hyps):
                row: dict[str, Any] = {"source": text, "translation": h[0].text, "attention": None,
                                       "n_best": [{"text": o.text, "score": round(o.score, 4)} for o in h]}
                if attention:
                    src, tgt, weights = self.translator.attention(text, h[0])
                    if weights is not None:
                        row["attention"] = {"source_tokens": src, "output_tokens": tgt,
                                            "weights": [[round(w, 4) for w in r] for r in weights.tolist()]}
                out.append(row)
        return out


# the registry's endpoint name -> what opens a run for it
_ADAPTERS = {cls.endpoint: cls for cls in (_LM, _Classifier, _Tagger, _Translator)}


def _names(runs: Sequence[Path]) -> list[str]:
    """The run folders' names, made unique with their parent folder (then a counter) where two clash."""
    base = [r.name for r in runs]
    names = [f"{r.parent.name}/{r.name}" if base.count(r.name) > 1 else r.name for r in runs]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n}-{seen[n]}"
    return names


def load_runs(runs: Sequence[Union[str, Path]], int8: bool = False) -> dict[str, _Loaded]:
    """Open every run folder once: model name -> loaded model (``CheckpointError``/``ConfigError`` if one fails);
    ``int8``: every model quantised for int8 inference (``rnnkit.nn.int8``)."""
    from rnnkit.tasks import task_of_run

    if not runs:
        raise ConfigError("give at least one run folder to serve")
    paths = [Path(r).resolve() for r in runs]
    loaded: dict[str, _Loaded] = {}
    for name, path in zip(_names(paths), paths):
        loaded[name] = _ADAPTERS[task_of_run(path, "serve").endpoint](name, path, int8)
    return loaded


# ------------------------------------------------------------------ the app


def _schemas(max_chars: int, max_batch: int):
    """Request and response models (built here so that pydantic is imported only with the app)."""
    from types import SimpleNamespace

    from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

    from rnnkit.tasks.lm import GenerateOptions
    from rnnkit.tasks.seq2seq import DecodeOptions

    text_doc = f"one text, or a list of up to {max_batch} texts (a batch); at most {max_chars} characters each"

    class _Request(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: str = Field(description="a model name from GET /api/models")
        text: Union[str, list[str]] = Field(description=text_doc)

        @model_validator(mode="after")
        def _unicode(self):
            _check_unicode(self.model_dump())
            return self

    GenerateRequest = create_model(
        "GenerateRequest", __base__=_Request,
        text=(Union[str, list[str]], Field("", description="prime text(s) to continue (may be empty for a "
                                                           "label-conditioned model); " + text_doc)),
        **_declared(GenerateOptions, ("length", "temperature", "top_k", "top_p", "seed", "num_samples", "label"),
                    {"length": {"default": 200, "le": max_chars},
                     "num_samples": {"le": max_batch, "description": f"samples per text (texts x samples <= "
                                                                     f"{max_batch})"}}))

    class ClassifyRequest(_Request):
        pass

    class TagRequest(_Request):
        text: Union[str, list[str]] = Field(description="whitespace-tokenised text, one sentence per line; "
                                                        + text_doc)

    TranslateRequest = create_model(
        "TranslateRequest", __base__=_Request,
        **_declared(DecodeOptions, ("beam", "n_best", "length_penalty"), {}),
        attention=(bool, Field(True, description="include the attention weights of the best translation")))

    class InspectRequest(_Request):
        text: str = Field(description=f"the text to read (at least two tokens; at most {max_chars} characters, "
                                      f"of which the first {INSPECT_MAX_TOKENS} tokens are read)")
        layer: int = Field(-1, description="the recurrent layer, from 0 (negative: from the top; -1 the top one)")
        units: Optional[list[int]] = Field(None, min_length=1, max_length=MAX_UNITS,
                                           description="hidden units to report (default: as `rnnkit inspect`, up "
                                                       "to 4 units that correlate best with the text's features)")
        label: Optional[str] = Field(None, description="label-conditioned models: the label to read the text for")

    class ErrorResponse(BaseModel):
        detail: str = Field(description="what was wrong with the request")

    class Limits(BaseModel):
        max_chars: int
        max_batch: int

    class ModelInfo(BaseModel):
        name: str
        task: str = Field(description="lm | classify | tag | seq2seq")
        endpoint: str = Field(description="the endpoint that serves this model")
        labels: Optional[list[str]] = Field(None, description="classify: the classes; lm: the labels it is "
                                                              "conditioned on (empty: none)")
        tokenizer: Optional[str] = Field(None, description="lm: char | word")
        cell: Optional[str] = Field(None, description="lm: the recurrent cell (lstm | gru | rnn_tanh | rnn_relu)")
        num_layers: Optional[int] = Field(None, description="lm: recurrent layers")
        hidden_size: Optional[int] = Field(None, description="lm: units per layer")
        tags: Optional[list[str]] = Field(None, description="tag: the tag set")
        entity: Optional[bool] = Field(None, description="tag: entity chunk tags (B-/I-/E-/S-)")
        attention: Optional[bool] = Field(None, description="seq2seq: whether the model has attention weights")
        beam: Optional[int] = Field(None, description="seq2seq: the run's default beam size")
        length_penalty: Optional[float] = Field(None, description="seq2seq: the run's default length penalty")
        int8: Optional[bool] = Field(None, description="whether the model runs with int8 weights (serve --int8)")

    class ModelsResponse(BaseModel):
        models: list[ModelInfo]
        limits: Limits

    class Generated(BaseModel):
        prime: str
        samples: list[str] = Field(description="num_samples texts, each starting with the prime")

    class GenerateResponse(BaseModel):
        model: str
        results: list[Generated]

    class InspectResponse(BaseModel):
        model: str
        tokens: list[str] = Field(description="the tokens read, in order (one per character for a char model)")
        truncated: bool = Field(description=f"whether the text had more than {INSPECT_MAX_TOKENS} tokens "
                                            "(only those were read)")
        layer: int = Field(description="the layer read, counted from 0")
        cell: str = Field(description="lstm | gru | rnn_tanh | rnn_relu")
        hidden_size: int
        units: list[int] = Field(description="the units reported, in order")
        activations: dict[str, list[float]] = Field(description="unit -> its hidden state after each token")
        gates: dict[str, list[float]] = Field(description="the first unit's gates after each token: input, forget "
                                                          "and output gate (LSTM), reset and update gate (GRU), "
                                                          "none for a plain RNN")
        correlations: dict[str, list[tuple[int, float]]] = Field(
            description="feature of the position (inside quotes, position in line, ...) -> the 3 units whose "
                        "hidden state correlates most with it: [unit, Pearson r], by |r|")
        top_units: list[list[tuple[int, float]]] = Field(
            description=f"per token, the {TOP_UNITS} units with the largest |hidden state| there: [unit, value]")

    class Classified(BaseModel):
        text: str
        label: str = Field(description="the most probable class")
        probs: dict[str, float] = Field(description="class -> probability, in the model's class order")

    class ClassifyResponse(BaseModel):
        model: str
        labels: list[str]
        results: list[Classified]

    class TaggedSentence(BaseModel):
        tokens: list[str]
        tags: list[str]

    class Tagged(BaseModel):
        text: str
        sentences: list[TaggedSentence] = Field(description="one per non-empty line of the text")

    class TagResponse(BaseModel):
        model: str
        tags: list[str] = Field(description="the model's tag set")
        results: list[Tagged]

    class Hypothesis(BaseModel):
        text: str
        score: float

    class Attention(BaseModel):
        source_tokens: list[str]
        output_tokens: list[str] = Field(description="the best translation's tokens and <eos>")
        weights: list[list[float]] = Field(description="one row per output token, one column per source token")

    class Translated(BaseModel):
        source: str
        translation: str = Field(description="the best hypothesis")
        n_best: list[Hypothesis]
        attention: Optional[Attention] = Field(None, description="null without attention (the model has none, "
                                                                 "or the request said attention: false)")

    class TranslateResponse(BaseModel):
        model: str
        results: list[Translated]

    return SimpleNamespace(**{k: v for k, v in locals().items() if isinstance(v, type)})


def _declared(cls: type, names: Sequence[str], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """pydantic field definitions for the declared options ``names`` of dataclass ``cls``: the CLI's
    bounds, defaults and help, with per-field ``overrides`` (the server's own limits)."""
    from typing import Literal

    from pydantic import Field

    from rnnkit import options

    out = {}
    for name in names:
        o = options.find(cls, name)
        s = o.spec
        kw = {"default": o.default, "description": s.help, "ge": s.ge, "gt": s.gt, "le": s.le, "lt": s.lt}
        kw.update(overrides.get(name, {}))
        tp = Literal[tuple(s.choices)] if s.choices else o.type
        out[name] = (Optional[tp] if o.optional else tp,
                     Field(**{k: v for k, v in kw.items() if v is not None or k == "default"}))
    return out


def _check_unicode(value: Any, where: str = "") -> None:
    """``ValueError`` for a string that is not valid Unicode (a lone surrogate such as ``\\ud800``)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"{where or 'a string'} holds a lone surrogate (U+{ord(value[e.start]):04X}) at "
                             f"character {e.start}; send valid Unicode") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_unicode(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_unicode(v, f"{where}[{i}]")


def _error_message(errors: Sequence[dict[str, Any]]) -> tuple[int, str]:
    """A status code and one readable message for pydantic's validation errors."""
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (e.get("ctx") or {}).get("error", e.get("msg", ""))
        return 400, f"the request body is not valid JSON ({reason})"
    parts = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        if e.get("type") == "missing" and not loc:
            return 400, "the request needs a JSON object body"
        # a str | list[str] field reports both alternatives: say it once
        if len(loc) >= 2 and loc[0] == "text" and loc[1] in ("str", "list[str]"):
            msg = "must be a string or a list of strings"
            loc = ["text"] + loc[2:]
        elif e.get("type") == "extra_forbidden":
            msg = "is not a field of this request"
        elif e.get("type") == "model_attributes_type":
            return 400, "the request body must be a JSON object"
        else:
            msg = e.get("msg", "is invalid").removeprefix("Value error, ")
        part = f"{'.'.join(loc) + ': ' if loc else ''}{msg}"
        if part not in parts:
            parts.append(part)
    return 422, "; ".join(parts)


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 before it is read,
    from its Content-Length, or while it streams in (chunked requests), so that no request makes
    the server hold more than ``limit`` bytes of it."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self.limit):
            return await self._refuse(scope, receive, send, f"the request body has "
                                      f"{length.decode(errors='replace')} bytes; the limit is {self.limit}")
        # read the body here, at most limit bytes of it, then hand it on
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await self._refuse(scope, receive, send, f"the request body passed {self.limit} bytes; "
                                                                f"the limit is {self.limit}")
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope, receive, send, message: str) -> None:
        from starlette.responses import JSONResponse

        await JSONResponse({"detail": message}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def create_app(runs: Sequence[Union[str, Path]], max_chars: int = 2000, max_batch: int = 32, int8: bool = False):
    """A FastAPI app serving the given run folders (each opened once, here, quantised with ``int8``);
    see the module docstring."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import FileResponse, JSONResponse
        from fastapi.staticfiles import StaticFiles
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError:
        raise ConfigError("serving needs FastAPI and uvicorn: pip install 'rnnkit[serve]'") from None

    import rnnkit

    if max_chars < 1 or max_batch < 1:
        raise ConfigError("max_chars and max_batch must be >= 1")
    models = load_runs(runs, int8)
    S = _schemas(max_chars, max_batch)
    app = FastAPI(title="rnnkit", version=rnnkit.__version__,
                  description="Trained rnnkit run folders behind a JSON API. Every request names a `model` "
                              "(see `GET /api/models`) and carries `text`: one string or a list of up to "
                              f"{max_batch} strings of at most {max_chars} characters each. Errors are 4xx "
                              "JSON objects whose `detail` says what was wrong.")
    app.state.models = models
    app.state.limits = {"max_chars": max_chars, "max_batch": max_batch}
    # the largest body a valid request can need: every character JSON-escaped (6 bytes), and room for the rest
    app.add_middleware(_BodyLimit, limit=6 * max_chars * max_batch + 65_536)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        status, message = _error_message(exc.errors())
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RnnkitError)
    async def _rnnkit_error(request: Request, exc: RnnkitError):  # e.g. a ConfigError from the task code
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such page: {request.url.path} (the API is under /api, its documentation at /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    errors = {code: {"model": S.ErrorResponse, "description": why} for code, why in (
        (400, "bad JSON, a model of another task, or input the model cannot take"),
        (404, "unknown model"), (413, "a text or a batch over the limits"),
        (422, "a missing, empty or invalid field"))}

    def _model(name: str, task: str) -> _Loaded:
        m = models.get(name)
        if m is None:
            raise RequestError(f"unknown model {name!r}; loaded: {', '.join(models)}", 404)
        if m.task != task:
            raise RequestError(f"model {name!r} serves the {m.task!r} task, not {task!r}: use POST "
                               f"{m.info()['endpoint']}", 400)
        return m

    def _texts(text: Union[str, list[str]], *, allow_empty: bool = False) -> tuple[list[str], bool]:
        """The request's texts as a list, whether it was a list, after the length and batch checks."""
        many = isinstance(text, list)
        texts = text if many else [text]
        if not texts:
            raise RequestError("text: the list is empty; give at least one text")
        if len(texts) > max_batch:
            raise RequestError(f"text: {len(texts)} texts in one request; the limit is {max_batch}", 413)
        for i, t in enumerate(texts):
            where = f"text[{i}]" if many else "text"
            if len(t) > max_chars:
                raise RequestError(f"{where}: {len(t)} characters; the limit is {max_chars}", 413)
            if not allow_empty and not t.strip():
                raise RequestError(f"{where}: empty; give some text")
        return texts, many

    @app.get("/api/models", summary="The loaded models and the request limits", tags=["api"],
             response_model=S.ModelsResponse, response_model_exclude_none=True)
    def list_models():
        return {"models": [m.info() for m in models.values()], "limits": app.state.limits}

    @app.post("/api/generate", summary="Continue text with a language model", tags=["api"],
              response_model=S.GenerateResponse, responses=errors)
    def generate(req: S.GenerateRequest):  # type: ignore[name-defined]
        m = _model(req.model, "lm")
        texts, _ = _texts(req.text, allow_empty=True)
        if len(texts) * req.num_samples > max_batch:
            raise RequestError(f"{len(texts)} texts x {req.num_samples} samples = "
                               f"{len(texts) * req.num_samples} sequences; the limit is {max_batch}", 413)
        results = [{"prime": t, "samples": m.generate(t, length=req.length, temperature=req.temperature,
                                                      top_k=req.top_k, top_p=req.top_p, seed=req.seed,
                                                      num_samples=req.num_samples, label=req.label)}
                   for t in texts]
        return {"model": m.name, "results": results}

    @app.post("/api/inspect", summary="Hidden units and gates of a language model over a text", tags=["api"],
              response_model=S.InspectResponse, responses=errors)
    def inspect(req: S.InspectRequest):  # type: ignore[name-defined]
        m = _model(req.model, "lm")
        (text,), _ = _texts(req.text)
        return {"model": m.name, **m.inspect(text, layer=req.layer, units=req.units, label=req.label,
                                             max_tokens=INSPECT_MAX_TOKENS)}

    @app.post("/api/classify", summary="Label texts with a classifier", tags=["api"],
              response_model=S.ClassifyResponse, responses=errors)
    def classify(req: S.ClassifyRequest):  # type: ignore[name-defined]
        m = _model(req.model, "classify")
        texts, _ = _texts(req.text)
        return {"model": m.name, "labels": m.labels, "results": m.classify(texts)}

    @app.post("/api/tag", summary="Tag tokens with a tagger", tags=["api"],
              response_model=S.TagResponse, responses=errors)
    def tag(req: S.TagRequest):  # type: ignore[name-defined]
        m = _model(req.model, "tag")
        texts, _ = _texts(req.text)
        return {"model": m.name, "tags": m.tags, "results": m.tag(texts)}

    @app.post("/api/translate", summary="Translate texts with a seq2seq model", tags=["api"],
              response_model=S.TranslateResponse, responses=errors)
    def translate(req: S.TranslateRequest):  # type: ignore[name-defined]
        m = _model(req.model, "seq2seq")
        texts, _ = _texts(req.text)
        return {"model": m.name, "results": m.translate(texts, beam=req.beam, n_best=req.n_best,
                                                         length_penalty=req.length_penalty,
                                                         attention=req.attention)}

    @app.get("/", include_in_schema=False)
    def playground():
        return FileResponse(PLAYGROUND / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=PLAYGROUND), name="static")
    return app


def serve(runs: Sequence[Union[str, Path]], host: str = "127.0.0.1", port: int = 8000, *, max_chars: int = 2000,
          max_batch: int = 32, log_level: str = "info", int8: bool = False) -> None:
    """Load the runs and serve them with uvicorn until interrupted (what ``rnnkit serve`` calls)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serving needs FastAPI and uvicorn: pip install 'rnnkit[serve]'") from None
    app = create_app(runs, max_chars=max_chars, max_batch=max_batch, int8=int8)
    print(f"serving {', '.join(f'{n} ({m.task})' for n, m in app.state.models.items())}; "
          f"playground at http://{host}:{port}/ , API documentation at http://{host}:{port}/docs", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
