"""The language-model task: text -> char/word stream -> LanguageModel -> nats, perplexity, bits per token.

Two data shapes:
* a text file (default: the bundled Tiny Shakespeare) read as one contiguous
  stream for truncated BPTT, the last ``valid_fraction`` held out, or a corpus
  that comes as three files (``--data train.txt --valid valid.txt --test
  test.txt``: one sentence per line, tokenised, rare words already ``<unk>``).
  Word-level streams end every line with an end-of-line token (``<eos>``, the
  word corpora's convention; ``eol``), which counts as a token everywhere.  A
  test file is scored once with the best weights at the end of training, as the
  literature scores it: perplexity per token over every token of the file,
  end-of-line tokens included, the recurrent state carried across lines from
  the first token to the last (``score_stream``);
* a folder of ``*.txt`` files, one class per file and one sequence per line
  (the names-by-language data): the model is conditioned on the class label and
  generates a whole sequence for a label (one-to-many).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from rnnkit.batching import SequenceBatches, StreamBatches, lm_batch
from rnnkit.data import bundled_path, read_text, split_text
from rnnkit.decoding import Sampling, generate as generate_ids, validate_sampling
from rnnkit.errors import ConfigError, DataError
from rnnkit.options import encoding, opt, validate
from rnnkit.metrics import TokenNLL
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit import checkpoint as ckpt
from rnnkit import distributed
from rnnkit.tasks.runs import best_metric, main_log, model_device, on_main, open_run, prepare_run_dir, run_config, start_run
from rnnkit.tokenizers import make_tokenizer, tokenizer_from_config
from rnnkit.trainer import TrainConfig, Trainer
from rnnkit.vocab import Vocab

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
EOL = EOS  # the end-of-line token of word streams: <eos>, as the word-level corpora write it


@dataclass
class LMDataConfig:
    path: Optional[str] = opt(None, flag="data", metavar="PATH",
                              help="text file, or folder of <label>.txt files [bundled Tiny Shakespeare]")
    encoding: str = opt("utf-8", parse=encoding, help="text encoding of the data")
    valid_fraction: float = opt(0.1, ge=0, lt=1, help="held-out fraction: the end of the text "
                                                      "(or of each label's lines)")
    tokenizer: str = opt("char", choices=("char", "word"), help="character or word tokens")
    lower: bool = opt(False, help="lower-case the text before tokenising")
    seq_len: int = opt(128, ge=1, help="truncated-BPTT window in tokens (stream data)")
    min_freq: int = opt(1, ge=1, help="tokens rarer than this in training become <unk>")
    valid: Optional[str] = opt(None, help="validation text file (instead of holding out --valid-fraction of "
                                          "--data)")
    test: Optional[str] = opt(None, help="test text file, scored once with the best weights at the end: "
                                         "perplexity over every token, state carried across lines")
    eol: Optional[bool] = opt(None, help="end every line with an end-of-line token <eos> that the model predicts "
                                         "[word: yes; char: no, a newline is a character already]")
    unk_token: str = opt(UNK, help="the corpus's own unknown-word token, used as the vocabulary's")

    def __post_init__(self) -> None:
        validate(self)


def uses_eol(cfg: LMDataConfig) -> bool:
    """Whether lines end with the end-of-line token: ``eol``, or by default for word streams only."""
    return cfg.eol if cfg.eol is not None else cfg.tokenizer == "word"


@dataclass
class LMRunOptions:
    """What ``rnnkit train lm`` does after training (not part of the run's configuration)."""

    sample_length: int = opt(300, ge=0, le=100_000, help="tokens to sample at the end; 0: none")

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class GenerateOptions(Sampling):
    """What ``rnnkit generate`` and ``POST /api/generate`` take (besides the run)."""

    prime: Optional[str] = opt(None, help="text to start from [the run's default start]")
    length: int = opt(300, ge=1, le=100_000, help="tokens to generate")
    num_samples: int = opt(1, ge=1, le=1024, help="samples, drawn in one batch")
    label: Optional[str] = opt(None, help="class label to generate for (label-conditioned models)")


def _tokenizer(cfg: LMDataConfig):
    return make_tokenizer(cfg.tokenizer, **({"lower": cfg.lower} if cfg.tokenizer == "word" else {}))


def stream_tokens(text: str, tok, eol: bool, last_line_ends: bool = True) -> list[str]:
    """The tokens of ``text`` as one stream: with ``eol``, each line's tokens then the end-of-line token
    (the last line gets one too unless ``last_line_ends`` is False: a prime that stops mid-line);
    without, the tokenizer's tokens of the whole text."""
    if not eol:
        return tok.tokenize(text)
    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        out += tok.tokenize(line)
        if last_line_ends or i < len(lines) - 1 or text.endswith(("\n", "\r")):
            out.append(EOL)
    return out


def _read(path: Path, cfg: LMDataConfig) -> str:
    text = read_text(path, cfg.encoding)
    return text.lower() if cfg.lower and cfg.tokenizer == "char" else text


def _read_labelled(folder: Path, cfg: LMDataConfig, log) -> dict[str, list[str]]:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DataError(f"{folder}: no *.txt files; expected one file per label, one sequence per line")
    out = {}
    for f in files:
        lines = _read(f, cfg).splitlines()
        kept = [ln.strip() for ln in lines if ln.strip()]
        if len(kept) < len(lines):
            log(f"{f}: skipped {len(lines) - len(kept)} empty lines")
        if not kept:
            raise DataError(f"{f}: no non-empty lines")
        out[f.stem] = kept
    return out


def _split_labelled(data: dict[str, list[str]], fraction: float, seed: int):
    """A seeded stratified split: the same fraction of every label's lines to validation."""
    g = torch.Generator().manual_seed(seed)
    train, valid = [], []
    for label, lines in data.items():
        perm = torch.randperm(len(lines), generator=g).tolist()
        n_valid = int(round(len(lines) * fraction))
        valid += [(lines[i], label) for i in perm[:n_valid]]
        train += [(lines[i], label) for i in perm[n_valid:]]
    return train, valid


def _unit(cfg: LMDataConfig) -> str:
    return "word" if cfg.tokenizer == "word" else "char"


def evaluate_batches(model, batches, unit: str = "char") -> dict[str, float]:
    """Token-weighted NLL over one pass, carrying state along a stream; bits named for ``unit``."""
    meter, carry = TokenNLL(unit), None
    device = model_device(model)
    for batch in batches.epoch_batches():
        out = model.loss(batch.to(device), carry)
        carry = out.carry
        meter.update(out.loss, out.num_tokens)
    return meter.compute()


def start_id(vocab: Vocab, eol: bool) -> Optional[int]:
    """The token a stream is read after: the end-of-line token (or a newline character), as if a line had
    just ended; None when the vocabulary has neither."""
    for token in ((EOL, "\n") if eol else ("\n",)):
        if token in vocab:
            return vocab[token]
    return None


def score_stream(model, ids: torch.Tensor, seq_len: int, start: Optional[int], unit: str = "char") -> dict[str, Any]:
    """NLL, perplexity and bits per token of a whole stream ``ids (N,)``, read as the literature reads a test
    file: one lane, the recurrent state carried from the first token to the last (across lines), every
    token scored (end-of-line tokens included).  The first token is predicted after ``start`` (the
    end-of-line token: as if a line had just ended); with ``start`` None it is context only, not scored.
    Perplexity is ``exp`` of the mean NLL over the scored tokens."""
    stream = ids if start is None else torch.cat([ids.new_tensor([start]), ids])  # (N + 1,)
    if stream.numel() < 2:
        raise DataError("too short to score: a stream needs at least 2 tokens")
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        metrics: dict[str, Any] = evaluate_batches(model, StreamBatches(stream, 1, seq_len), unit)
    model.train(was_training)
    return metrics


class _Prepared:
    """Vocabulary, batch sources and model config for one data set."""

    def __init__(self, data: LMDataConfig, train: TrainConfig, log, vocab: Optional[Vocab] = None):
        self.tok = _tokenizer(data)
        path = Path(data.path) if data.path else bundled_path("tinyshakespeare")
        self.labelled = path.is_dir()
        if self.labelled:
            raw = _read_labelled(path, data, log)
            self.labels = sorted(raw)
            tr, va = _split_labelled(raw, data.valid_fraction, train.seed)
            tr_tok = [self.tok.tokenize(s) for s, _ in tr]
            va_tok = [self.tok.tokenize(s) for s, _ in va]
            self.vocab = vocab or Vocab.build(tr_tok, specials=[PAD, BOS, EOS], min_freq=data.min_freq,
                                              unk=data.unk_token)
            enc = self.vocab.encode
            make = lambda seqs, labels: lm_batch(seqs, self.vocab.pad_id, self.vocab.bos_id,  # noqa: E731
                                                 self.vocab.eos_id, labels)
            lab_id = {name: i for i, name in enumerate(self.labels)}
            self.train = SequenceBatches([enc(s) for s in tr_tok], train.batch_size, make_batch=make,
                                         labels=[lab_id[l] for _, l in tr], seed=train.seed)
            self.valid = SequenceBatches([enc(s) for s in va_tok], train.batch_size, make_batch=make,
                                         labels=[lab_id[l] for _, l in va], shuffle=False) if va else None
            self.summary = (f"{len(tr)} training and {len(va)} validation sequences, "
                            f"{len(self.labels)} labels")
        else:
            self.labels = []
            eol = uses_eol(data)
            if data.valid:
                text_train, text_valid = _read(path, data), _read(Path(data.valid), data)
            else:
                text_train, text_valid = split_text(_read(path, data), data.valid_fraction,
                                                    at_line=data.tokenizer == "word") \
                    if data.valid_fraction > 0 else (_read(path, data), "")  # words: never cut one in two
            tr_tok = stream_tokens(text_train, self.tok, eol)
            va_tok = stream_tokens(text_valid, self.tok, eol)
            self.vocab = vocab or Vocab.build([tr_tok], specials=[EOL] if eol else [], min_freq=data.min_freq,
                                              unk=data.unk_token)
            ids = torch.tensor(self.vocab.encode(tr_tok), dtype=torch.long)
            self.train = StreamBatches(ids, train.batch_size, data.seq_len)
            self.valid = None
            if va_tok:
                self.valid = StreamBatches(torch.tensor(self.vocab.encode(va_tok), dtype=torch.long),
                                           train.batch_size, data.seq_len)
            self.summary = (f"{len(tr_tok):,} training and {len(va_tok):,} validation tokens "
                            f"({path}{', ' + data.valid if data.valid else ''}"
                            f"{'; every line ends with ' + EOL if eol else ''})")
            if self.train.dropped_tokens:
                self.summary += f"; the last {self.train.dropped_tokens} training tokens do not fill a lane"
            va_tok = [va_tok]  # one sequence: the stream
        rare = ""
        if self.vocab.num_dropped_types:
            rare = (f" ({self.vocab.num_dropped_types:,} training types seen fewer than --min-freq "
                    f"{data.min_freq} times became {self.vocab.unk})")
        oov = self.vocab.oov_rate(va_tok) if va_tok else 0.0
        own = sum(t == self.vocab.unk for seq in va_tok for t in seq)
        n_va = sum(len(seq) for seq in va_tok)
        corpus_unk = f", {own / n_va:.2%} the corpus's own {self.vocab.unk}" if own and n_va else ""
        self.summary += (f"; vocabulary {len(self.vocab):,}{rare}, validation OOV rate {oov:.2%}"
                         f"{corpus_unk}")


def train_lm(out: str | Path, model_opts: dict[str, Any], data: LMDataConfig, train: TrainConfig, *,
             resume: bool = False, overwrite: bool = False, progress: bool = True, sample_length: int = 300,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a language model into run folder ``out``; returns the final validation metrics, and with a
    test file (``data.test``) its scores under ``"test"`` (also in ``out/report.json``)."""
    out = Path(out)
    log = main_log(log)
    resume = start_run(out, resume, overwrite, log)
    prep = _Prepared(data, train, log, vocab=Vocab.load(out / "vocab.json") if resume else None)
    log(prep.summary)
    mcfg = LanguageModelConfig(vocab_size=len(prep.vocab), num_labels=len(prep.labels), **model_opts)
    torch.manual_seed(train.seed)  # the initial weights are part of the run's definition
    model = LanguageModel(mcfg)
    best_metric(train, ("loss",))
    config = run_config("lm", "language_model", model=mcfg, data=data, train=train,
                        labels=prep.labels)
    prepare_run_dir(out, config, resume, overwrite, log)
    if not resume:
        on_main(prep.vocab.save, out / "vocab.json")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {mcfg.num_layers}-layer {mcfg.cell.upper()}, hidden {mcfg.hidden_size}, "
        f"{n_params:,} parameters")
    unit = _unit(data)
    valid_fn = (lambda m: evaluate_batches(m, prep.valid, unit)) if prep.valid is not None else None
    trainer = Trainer(model, train, prep.train, evaluate=valid_fn, run_dir=out, progress=progress, log=log)
    t0 = time.perf_counter()
    history = trainer.fit(resume=resume)
    log(f"trained {trainer.step} steps in {time.perf_counter() - t0:.0f} s; run folder: {out}")
    final = {k[len('valid_'):]: v for k, v in history[-1].items() if k.startswith("valid_")} if history else {}
    if data.test and not prep.labels and distributed.is_main():
        scores = evaluate(out, data.test, data.encoding)  # the best weights, read back as any user would
        final["test"] = scores
        ckpt.save_json(out / "report.json", {"split": "test", **scores})
        log(f"test ({data.test}): perplexity {scores['perplexity']:.2f}, "
            f"{scores[TokenNLL.BITS[unit]]:.4f} bits/{unit} over all {scores['tokens']:,} tokens"
            f"{' (end-of-line tokens included)' if uses_eol(data) else ''}, state carried across lines")
    if sample_length > 0 and distributed.is_main():
        label = prep.labels[0] if prep.labels else None
        for text in generate(out, prime=None, length=sample_length, temperature=0.8, seed=train.seed, label=label):
            log(("sample" + (f" ({label})" if label else "") + ":\n") + text)
    return final


def load_run(run: str | Path, *, int8: bool = False):
    """A trained language-model run, ready to use: ``(config, model, vocab, tokenizer, data config)``
    (``int8``: quantised, see ``open_run``)."""
    config, model, vocabs = open_run(run, int8=int8)
    data = LMDataConfig(**config["data"])
    return config, model, vocabs["vocab"], tokenizer_from_config({"name": data.tokenizer, **(
        {"lower": data.lower} if data.tokenizer == "word" else {})}), data


# how generate_from's messages name the inputs: the CLI's wording (the API passes its own, same keys and fields)
CLI_WORDING = {
    "unknown_tokens": "the prime text has {count} token(s) the model's vocabulary lacks: {tokens}",
    "label_needed": "this model generates for a label: pass --label, one of {labels}",
    "unknown_label": "unknown label {label!r}; the model knows {labels}",
    "no_label": "this model is not conditioned on a label; drop --label",
    "empty_prime": "give a non-empty --prime text to start from",
}


def check_known(tokens: Sequence[str], vocab: Vocab, say: dict[str, str]) -> None:
    """``ConfigError`` (worded by ``say["unknown_tokens"]``) naming the tokens ``vocab`` lacks."""
    unknown = sorted({t for t in tokens if t not in vocab or t == vocab.unk})
    if unknown:
        raise ConfigError(say["unknown_tokens"].format(count=len(unknown),
                                                       tokens=", ".join(repr(t) for t in unknown[:10])))


def label_index(config: dict[str, Any], label: Optional[str], say: dict[str, str]) -> Optional[int]:
    """The index of ``label`` among the run's labels, or None for a model without labels;
    ``ConfigError`` (worded by ``say``) for a label missing, unknown or not wanted."""
    labels = config.get("labels") or []
    if labels:
        if label is None:
            raise ConfigError(say["label_needed"].format(labels=labels))
        if label not in labels:
            raise ConfigError(say["unknown_label"].format(label=label, labels=labels))
        return labels.index(label)
    if label is not None:
        raise ConfigError(say["no_label"].format())
    return None


def generate(run: str | Path, *, prime: Optional[str] = None, length: int = 200, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
             num_samples: int = 1, label: Optional[str] = None, int8: bool = False) -> list[str]:
    """Sample ``num_samples`` continuations of ``prime`` (in one batch) from a trained run.

    ``prime`` None (or only whitespace, such as a newline a word tokenizer drops) starts a new line: after
    the end-of-line token or the newline character (a vocabulary with neither: after its most frequent
    token); an empty string asks to continue nothing, an error for a model without labels."""
    validate_sampling(temperature, top_k, top_p)
    if length < 1 or num_samples < 1:
        raise ConfigError("length and num_samples must be >= 1")
    return generate_from(load_run(run, int8=int8), prime=prime, length=length, temperature=temperature, top_k=top_k,
                         top_p=top_p, seed=seed, num_samples=num_samples, label=label)


def generate_from(opened: tuple, *, prime: Optional[str] = None, length: int = 200, temperature: float = 1.0,
                  top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
                  num_samples: int = 1, label: Optional[str] = None,
                  wording: Optional[dict[str, str]] = None) -> list[str]:
    """:func:`generate` on a run already opened: ``opened`` is what ``load_run(run)`` returns,
    ``(config, model, vocab, tokenizer, data config)``.  Bad input raises ``ConfigError`` with a message
    from ``wording`` (default :data:`CLI_WORDING`, which names the CLI's options)."""
    say = {**CLI_WORDING, **(wording or {})}
    validate_sampling(temperature, top_k, top_p)
    if length < 1 or num_samples < 1:
        raise ConfigError("length and num_samples must be >= 1")
    config, model, vocab, tok, data = opened
    eol = run_eol(data, vocab)
    no_prime = prime is None or (prime != "" and not prime.strip())  # None, or a newline: start a line
    text = "" if prime is None else prime.lower() if data.lower else prime
    prime_tokens = stream_tokens(text, tok, eol, last_line_ends=False) if not config.get("labels") \
        else tok.tokenize(text)
    check_known(prime_tokens, vocab, say)
    index = label_index(config, label, say)  # None: a model without labels
    lab = None
    if index is not None:
        lab = torch.full((num_samples,), index, dtype=torch.long)
        prime_ids = [vocab.bos_id, *vocab.encode(prime_tokens)]
    else:
        # a word stream reads the prime as the start of a line, after the end-of-line token; no prime (or
        # a newline that a word tokenizer drops) starts from that token, or from a newline character
        start = start_id(vocab, eol)
        context: list[int] = []
        if start is not None and ((eol and prime_tokens[:1] != [EOL]) or (no_prime and not prime_tokens)):
            context = [start]
        elif no_prime and not prime_tokens:  # no line breaks in the vocabulary: its most frequent token
            context = [next(i for i, t in enumerate(vocab.tokens) if t not in (vocab.unk, PAD, BOS, EOS))]
        if prime == "" or not (prime_tokens or context):
            raise ConfigError(say["empty_prime"].format())
        prime_ids = context + vocab.encode(prime_tokens)
    prime_t = torch.tensor(prime_ids, dtype=torch.long).expand(num_samples, -1)  # (N, P)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    step = (lambda tokens, state: model.step(tokens, state, lab)) if lab is not None else model.step
    ids = generate_ids(step, None, prime_t, length, temperature=temperature, top_k=top_k, top_p=top_p,
                       generator=gen, eos_id=vocab.eos_id if index is not None else None)  # (N, length)
    texts = []
    for row in ids.tolist():
        if index is not None and vocab.eos_id in row:
            row = row[: row.index(vocab.eos_id)]
        texts.append(_detokenize(tok, prime_tokens + vocab.decode(row), eol))
    return texts


def _detokenize(tok, tokens: list[str], eol: bool) -> str:
    """Text of a stream's tokens: end-of-line tokens become newlines."""
    if not eol:
        return tok.detokenize(tokens)
    lines, line = [], []
    for t in tokens:
        if t == EOL:
            lines.append(tok.detokenize(line))
            line = []
        else:
            line.append(t)
    return "\n".join(lines + [tok.detokenize(line)])


def run_eol(data: LMDataConfig, vocab: Vocab) -> bool:
    """Whether a trained run's lines end with the end-of-line token (a run made before ``eol`` existed
    has none in its vocabulary, whatever the default now says)."""
    return uses_eol(data) and EOL in vocab


def evaluate(run: str | Path, data_path: Optional[str] = None, encoding: Optional[str] = None,
             batch_size: int = 64, log: Callable[[str], None] = lambda message: None,
             int8: bool = False) -> dict[str, Any]:
    """Nats per token, perplexity and bits per token (``bpc`` for characters, ``bpw`` for words) of a
    trained run on a text file, all of it: one stream, the state carried across lines from the first token
    to the last, every token scored (the first after an end-of-line token; end-of-line tokens included) —
    how the word-level literature scores a test file (see ``score_stream``).  ``batch_size`` is the
    sequences per batch of a label-conditioned run."""
    config, model, vocab, tok, data = load_run(run, int8=int8)
    if config.get("labels"):
        return _evaluate_labelled(model, vocab, tok, data, config["labels"], data_path, encoding, batch_size)
    path = Path(data_path) if data_path else bundled_path("tinyshakespeare")
    text = read_text(path, encoding or data.encoding)
    eol = run_eol(data, vocab)
    tokens = stream_tokens(text.lower() if data.lower and data.tokenizer == "char" else text, tok, eol)
    ids = torch.tensor(vocab.encode(tokens), dtype=torch.long)
    start = start_id(vocab, eol)
    if ids.numel() + (start is not None) < 2:
        raise DataError(f"{path}: too short to evaluate (needs at least 2 tokens)")
    metrics = score_stream(model, ids, data.seq_len, start, _unit(data))
    metrics.update({"file": str(path), "oov_rate": vocab.oov_rate([tokens]),
                    "tokens_scored": int(metrics["tokens"]), "tokens_not_scored": len(tokens) - int(metrics["tokens"])})
    return metrics


def _evaluate_labelled(model, vocab: Vocab, tok, data: LMDataConfig, labels: list[str], data_path: Optional[str],
                       encoding: Optional[str], batch_size: int) -> dict[str, Any]:
    """Nats per token of a label-conditioned model on a folder of <label>.txt files (every line)."""
    if not data_path:
        raise ConfigError("give --data: a folder of <label>.txt files, one sequence per line")
    cfg = LMDataConfig(**{**vars(data), "encoding": encoding or data.encoding})
    raw = _read_labelled(Path(data_path), cfg, lambda s: None)
    unknown = sorted(set(raw) - set(labels))
    if unknown:
        raise DataError(f"{data_path}: labels {unknown} are not among the model's {labels}")
    seqs, labs = [], []
    for label, lines in raw.items():
        seqs += [vocab.encode(tok.tokenize(line)) for line in lines]
        labs += [labels.index(label)] * len(lines)
    batches = SequenceBatches(seqs, batch_size, labels=labs, shuffle=False,
                              make_batch=lambda s, l: lm_batch(s, vocab.pad_id, vocab.bos_id, vocab.eos_id, l))
    with torch.inference_mode():
        metrics = evaluate_batches(model, batches, _unit(data))
    metrics.update({"file": str(data_path), "sequences": len(seqs),
                    "oov_rate": vocab.oov_rate(tok.tokenize(line) for lines in raw.values() for line in lines)})
    return metrics
