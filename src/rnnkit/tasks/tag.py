"""The tagging task (many-to-many, aligned): CoNLL files -> words + chars -> Tagger -> a tag per token.

Part-of-speech data (CoNLL-U) is scored by token accuracy; entity data (tags
with B-/I-/E-/S- prefixes, CoNLL-2003) by entity-level F1 in conlleval's
convention, with token accuracy beside it.

Development or test data may hold tags that training lacks (some treebanks'
splits do).  They are reported once per file (tag and count) and scored as
errors: the tokens count in accuracy's denominator and the model, which has
no output for such a tag, never gets them right; a gold entity of such a tag
is missed.  The loss leaves them out (``Tagger.loss_and_predict``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from rnnkit import checkpoint as ckpt
from rnnkit.batching import SequenceBatches, tag_batch
from rnnkit.data import Sentence, read_conll, read_conllu, read_tokens, write_conll, write_conllu
from rnnkit.options import column, encoding, opt, validate
from rnnkit.errors import ConfigError, DataError
from rnnkit.metrics import Accuracy, EntityF1
from rnnkit.models import Tagger, TaggerConfig
from rnnkit.tasks.runs import (best_metric, fit_best, load_pretrained, main_log, model_device, on_main, open_run, prepare_run_dir, start_run,
                               run_config)
from rnnkit.trainer import TrainConfig, Trainer
from rnnkit.vocab import Vocab

PAD, UNK = "<pad>", "<unk>"


@dataclass
class TagDataConfig:
    train: Optional[str] = opt(None, help="CoNLL-U (.conllu) or CoNLL-2003-style training file")
    valid: Optional[str] = opt(None, help="validation file (early stopping and best weights)")
    test: Optional[str] = opt(None, help="test file, scored once with the best weights")
    format: str = opt("auto", choices=("auto", "conllu", "conll"),
                      help="file format (auto: .conllu files are CoNLL-U, others CoNLL-2003 style)")
    column: Any = opt(None, parse=column, help="conllu: upos or xpos [upos]; conll: tag column index [the last]")
    scheme: Optional[str] = opt(None, choices=("bio", "bioes"), help="convert IOB1/BIO entity tags (conll)")
    encoding: str = opt("utf-8", parse=encoding, help="text encoding")
    lower: bool = opt(False, help="lower-case words for the word vocabulary (characters keep case)")
    min_freq: int = opt(1, ge=1, help="rarer training words become <unk> (characters still spell them)")
    embeddings: Optional[str] = opt(None, help="pretrained word vectors (GloVe / word2vec text format)")

    def __post_init__(self) -> None:
        validate(self)


def _format(path: str, cfg: TagDataConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    return "conllu" if path.endswith(".conllu") else "conll"


def read_sentences(path: str, cfg: TagDataConfig) -> list[Sentence]:
    fmt = _format(path, cfg)
    try:
        if fmt == "conllu":
            sents = read_conllu(path, column=cfg.column or "upos", encoding=cfg.encoding)
        else:
            sents = read_conll(path, column=-1 if cfg.column is None else int(cfg.column), encoding=cfg.encoding,
                               scheme=cfg.scheme)
    except DataError as e:
        if cfg.format != "auto":
            raise
        other = "conll" if fmt == "conllu" else "conllu"
        raise DataError(f"{e} (read as {fmt}, guessed from the file name {Path(path).name!r}; if it is "
                        f"{other}, pass --format {other})") from None
    if not sents:
        raise DataError(f"{path}: no sentences")
    return sents


def is_entity_tagset(tags: Sequence[str]) -> bool:
    """True for chunk tags (B-X, I-X, E-X, S-X, O) scored by entity F1."""
    return any(t[:2] in ("B-", "I-", "E-", "S-") for t in tags) and all(
        t == "O" or t[:2] in ("B-", "I-", "E-", "S-") for t in tags)


class Encoder:
    """Sentences -> word ids and character ids with the run's vocabularies.

    Gold tags the model does not know (absent from training) get ids from ``len(tags)`` on, in
    ``unseen`` (``add_unseen``), so they can be scored: no prediction ever equals them.
    """

    def __init__(self, words: Vocab, chars: Vocab, tags: Vocab, lower: bool) -> None:
        self.words, self.chars, self.tags, self.lower = words, chars, tags, lower
        self.unseen: dict[str, int] = {}  # tag -> id >= len(tags)

    def add_unseen(self, sents: Sequence[Sentence]) -> dict[str, int]:
        """Give the tags of ``sents`` that training lacks ids past the model's; returns each such tag's
        token count in ``sents`` (in order of first appearance)."""
        counts: dict[str, int] = {}
        for s in sents:
            for tag in s.tags or []:
                if tag not in self.tags:
                    counts[tag] = counts.get(tag, 0) + 1
                    self.unseen.setdefault(tag, len(self.tags) + len(self.unseen))
        return counts

    def tag_ids(self, tags: Sequence[str]) -> list[int]:
        return [self.tags.id_of(t) if t in self.tags else self.unseen[t] for t in tags]

    def tag_names(self, ids: Sequence[int]) -> list[str]:
        names = {i: t for t, i in self.unseen.items()}
        k = len(self.tags)
        return [self.tags.token(i) if i < k else names[i] for i in ids]

    @property
    def all_tags(self) -> list[str]:
        return self.tags.tokens + list(self.unseen)

    def word_ids(self, tokens: Sequence[str]) -> list[int]:
        return self.words.encode([t.lower() for t in tokens] if self.lower else list(tokens))

    def char_ids(self, tokens: Sequence[str]) -> list[list[int]]:
        return [self.chars.encode(list(t)) for t in tokens]

    def report_unseen(self, sents: Sequence[Sentence], path: Optional[str], log: Callable[[str], None]
                      ) -> dict[str, int]:
        """``add_unseen`` and say once what it found in file ``path``: each tag, its count, its first place."""
        counts = self.add_unseen(sents)
        if counts:
            first = {}
            for s in sents:
                for i, tag in enumerate(s.tags or []):
                    if tag in counts and tag not in first:
                        first[tag] = f"first at the sentence of line {s.line}, token {i + 1}"
            n = sum(counts.values())
            total = sum(len(s.tokens) for s in sents)
            log(f"{path}: {len(counts)} tag{'s' if len(counts) > 1 else ''} that the training data lacks, "
                f"{n:,} of {total:,} tokens, scored as errors (the model cannot predict them): "
                + "; ".join(f"{tag!r} {c:,} ({first[tag]})" for tag, c in counts.items()))
        return counts

    def batches(self, sents: Sequence[Sentence], batch_size: int, seed: int = 0,
                shuffle: bool = False) -> SequenceBatches:
        words = [self.word_ids(s.tokens) for s in sents]
        chars = [self.char_ids(s.tokens) for s in sents]
        tags = [self.tag_ids(s.tags) if s.tags is not None else None for s in sents]
        pad, cpad = self.words.pad_id, self.chars.pad_id

        def build(word_rows, rows):  # the "labels" SequenceBatches hands back are row indices
            gold = [tags[r] for r in rows]
            return tag_batch(word_rows, None if any(g is None for g in gold) else gold, pad,
                             chars=[chars[r] for r in rows], char_pad_id=cpad)

        return SequenceBatches(words, batch_size, labels=list(range(len(words))), make_batch=build, seed=seed,
                               shuffle=shuffle)


def _chunk_tag(tag: str) -> str:
    """A tag as entity F1 reads it: a gold tag outside the chunk schemes (only possible for a tag training
    lacked) is no entity, so ``O``."""
    return tag if tag == "O" or tag[:2] in ("B-", "I-", "E-", "S-") else "O"


def evaluate_model(model, batches: SequenceBatches, enc: Encoder, entity: bool) -> tuple[dict[str, Any], list]:
    """Token accuracy (and entity F1), and the predicted tag ids in batch order.

    Gold tags the model does not know (``enc.unseen``) count as errors: in accuracy's denominator, never
    predicted; for entity F1 a gold entity of such a type is missed.  ``loss`` is over the tokens whose
    gold tag the model knows (with a CRF, the sentences without an unknown one); ``unseen_tag_tokens``
    counts the others when there are any."""
    acc = Accuracy()
    k = len(enc.tags)
    f1 = EntityF1("BIOES" if any(t[:2] in ("E-", "S-") for t in enc.all_tags) else "BIO") if entity else None
    total = count = 0.0
    unseen = 0
    preds_all = []
    device = model_device(model)
    for batch in batches.epoch_batches():
        batch = batch.to(device)
        known = batch.targets < k  # (B, T)
        hidden = int((~known & batch.mask).sum()) if batch.mask is not None else int((~known).sum())
        unseen += hidden
        out, pred = model.loss_and_predict(batch, known if hidden else None)  # one pass of the network for both
        total, count = total + float(out.loss), count + int(out.num_tokens)
        flat_pred = torch.tensor([p for row in pred for p in row])
        gold_rows = [g[: len(row)] for g, row in zip(batch.targets.tolist(), pred)]  # one device-to-host copy
        acc.update(flat_pred, torch.tensor([g for row in gold_rows for g in row]))
        if f1 is not None:
            f1.update([[_chunk_tag(t) for t in enc.tag_names(g)] for g in gold_rows], [enc.tags.decode(p) for p in pred])
        preds_all.append(pred)
    metrics: dict[str, Any] = {"accuracy": acc.compute()["accuracy"], "loss": total / max(count, 1)}
    if unseen:
        metrics["unseen_tag_tokens"] = unseen
    if f1 is not None:
        metrics.update(f1.compute())
    return metrics, preds_all


def predict_sentences(model, enc: Encoder, sents: Sequence[Sentence], batch_size: int = 64) -> list[list[str]]:
    """Predicted tags per sentence, in input order."""
    order = sorted(range(len(sents)), key=lambda i: len(sents[i].tokens))
    out: list[Optional[list[str]]] = [None] * len(sents)
    device = model_device(model)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            b = tag_batch([enc.word_ids(sents[i].tokens) for i in idx], None, enc.words.pad_id,
                          chars=[enc.char_ids(sents[i].tokens) for i in idx], char_pad_id=enc.chars.pad_id).to(device)
            for i, row in zip(idx, model.predict(b.inputs, lengths=b.lengths, mask=b.mask, chars=b.chars)):
                out[i] = enc.tags.decode(row)
    return out  # type: ignore[return-value]


def _write_predictions(path: Path, sents: Sequence[Sentence], pred, cfg: TagDataConfig, fmt: str) -> None:
    if fmt == "conllu":
        write_conllu(sents, pred, path, column=cfg.column or "upos")
    else:
        write_conll(sents, path, pred)


def train_tag(out: str | Path, model_opts: dict[str, Any], data: TagDataConfig, train: TrainConfig, *,
              resume: bool = False, overwrite: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a tagger into run folder ``out``; returns the test (or validation) metrics."""
    if not data.train:
        raise ConfigError("give --train: a CoNLL-U or CoNLL-2003-style file")
    out = Path(out)
    log = main_log(log)
    resume = start_run(out, resume, overwrite, log)
    tr = read_sentences(data.train, data)
    va = read_sentences(data.valid, data) if data.valid else []
    te = read_sentences(data.test, data) if data.test else []
    if resume:
        words, chars, tags = (Vocab.load(out / f"{n}.json") for n in ("vocab", "chars", "tags"))
    else:
        norm = (lambda t: t.lower()) if data.lower else (lambda t: t)  # noqa: E731
        words = Vocab.build([[norm(t) for t in s.tokens] for s in tr], specials=[PAD], min_freq=data.min_freq,
                            unk=UNK)
        chars = Vocab.build([list(t) for s in tr for t in s.tokens], specials=[PAD], unk=UNK)
        tags = Vocab.build([s.tags for s in tr])
    enc = Encoder(words, chars, tags, data.lower)
    enc.report_unseen(va, data.valid, log)
    enc.report_unseen(te, data.test, log)
    entity = is_entity_tagset(tags.tokens)
    oov = words.oov_rate([[t.lower() if data.lower else t for t in s.tokens] for s in va]) if va else 0.0
    log(f"{len(tr):,} training, {len(va):,} validation, {len(te):,} test sentences; {len(tags)} tags "
        f"({'entities, scored by F1' if entity else 'scored by token accuracy'}); {len(words):,} words, "
        f"{len(chars)} characters; validation OOV rate {oov:.2%}")
    torch.manual_seed(train.seed)
    mcfg = TaggerConfig(vocab_size=len(words), num_tags=len(tags), pad_id=words.pad_id, unk_id=words.unk_id,
                        char_vocab_size=len(chars), char_pad_id=chars.pad_id, **model_opts)
    model = Tagger(mcfg)
    metric, maximize = best_metric(train, ("f1", "accuracy", "loss") if entity else ("accuracy", "loss"))
    config = run_config("tag", "tagger", model=mcfg, data=data, train=train, entity=entity)
    prepare_run_dir(out, config, resume, overwrite, log)
    if not resume:
        on_main(_save_vocabs, out, {"vocab": words, "chars": chars, "tags": tags})
    if data.embeddings and not resume:
        load_pretrained(model, data.embeddings, words.tokens, train.seed, log)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {mcfg.num_layers}-layer {'bi' if mcfg.bidirectional else 'uni'}directional {mcfg.cell.upper()}, "
        f"hidden {mcfg.hidden_size}, char encoder {mcfg.char_encoder}, {'CRF' if mcfg.crf else 'softmax'}, "
        f"{n_params:,} parameters")
    valid_b = enc.batches(va, 256) if va else None
    evaluate = (lambda m: evaluate_model(m, valid_b, enc, entity)[0]) if valid_b else None
    trainer = Trainer(model, train, enc.batches(tr, train.batch_size, train.seed, shuffle=True), evaluate=evaluate,
                      run_dir=out, metric=metric, maximize=maximize, progress=progress, log=log)
    result: Optional[dict[str, Any]] = fit_best(trainer, model, out, resume)
    if result is None:
        return {}  # another rank under torchrun: rank 0 reports
    split, final, path = ("test", te, data.test) if te else ("validation", va, data.valid)
    if final:
        with torch.inference_mode():
            scores, _ = evaluate_model(model, enc.batches(final, 256), enc, entity)
        fmt = _format(path, data)
        _write_predictions(out / f"{split}.predictions.{fmt}", final, predict_sentences(model, enc, final), data, fmt)
        result.update({"split": split, **scores})
        shown = f"entity F1 {scores['f1']:.4f}, " if entity else ""
        log(f"{split}: {shown}token accuracy {scores['accuracy']:.4f} ({len(final):,} sentences); "
            f"predictions in {out / f'{split}.predictions.{fmt}'}")
    ckpt.save_json(out / "report.json", result)
    return result


def _save_vocabs(out: Path, vocabs: dict[str, Vocab]) -> None:
    for name, v in vocabs.items():
        v.save(out / f"{name}.json")


def load_run(run: str | Path, *, int8: bool = False):
    """A trained tagger run, ready to use: ``(config, model, encoder, data config)`` (``int8``: see ``open_run``)."""
    config, model, v = open_run(run, ("vocab", "chars", "tags"), int8=int8)
    data = TagDataConfig(**config["data"])
    return config, model, Encoder(v["vocab"], v["chars"], v["tags"], data.lower), data


def predict_text(run: str | Path, text: str, *, fmt: str = "text", path: Optional[str] = None,
                 encoding: str = "utf-8", as_json: bool = False, warn: Callable[[str], None] = print,
                 int8: bool = False) -> str:
    """What ``rnnkit predict`` prints for a tagger run (see :func:`predict`)."""
    if as_json:
        raise ConfigError("--json applies to classifier runs; a tagger prints token<TAB>tag lines or CoNLL-U")
    return predict(run, text, fmt, encoding, path, int8=int8)


def predict(run: str | Path, text: str, fmt: str = "text", encoding: str = "utf-8",
            path: Optional[str] = None, *, int8: bool = False) -> str:
    """Tag text: whitespace-tokenised sentences (one per line) -> ``token<TAB>tag`` lines, or a
    CoNLL-U file with the run's column filled (``fmt="conllu"``, read from ``path``)."""
    config, model, enc, data = load_run(run, int8=int8)
    if fmt == "conllu":
        if path is None:
            raise ConfigError("--format conllu needs a FILE (a CoNLL-U file whose column is filled)")
        sents = read_conllu(path, column=data.column or "upos", encoding=encoding)
        buf = io.StringIO()
        write_conllu(sents, predict_sentences(model, enc, sents), buf, column=data.column or "upos")
        return buf.getvalue()
    sents = [Sentence(toks, None, "<input>", i + 1) for i, toks in enumerate(read_tokens(text))]
    lines = []
    for s, tags in zip(sents, predict_sentences(model, enc, sents)):
        lines += [f"{tok}\t{tag}" for tok, tag in zip(s.tokens, tags)] + [""]
    return "\n".join(lines) + ("\n" if lines else "")


def evaluate(run: str | Path, data_path: Optional[str] = None, encoding: Optional[str] = None,
             format: Optional[str] = None, log: Callable[[str], None] = lambda message: None,
             int8: bool = False) -> dict[str, Any]:
    """Token accuracy (and entity F1 with per-type scores) of a trained run on a labelled file.

    Tags the training data lacked are scored as errors (see ``evaluate_model``); ``unseen_tags`` maps
    each to its count, and ``log`` hears about them once."""
    if not data_path:
        raise ConfigError("give --data: a CoNLL-U or CoNLL-2003-style file to evaluate on")
    config, model, enc, data = load_run(run, int8=int8)
    data = TagDataConfig(**{**config["data"], **({"encoding": encoding} if encoding else {}),
                            **({"format": format} if format else {})})
    sents = read_sentences(data_path, data)
    unseen = enc.report_unseen(sents, data_path, log)
    with torch.inference_mode():
        scores, _ = evaluate_model(model, enc.batches(sents, 256), enc, bool(config.get("entity")))
    return {"file": data_path, "sentences": len(sents), **scores, **({"unseen_tags": unseen} if unseen else {})}
