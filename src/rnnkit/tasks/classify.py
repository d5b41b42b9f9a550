"""The classification task (many-to-one): labelled texts -> tokens -> Classifier -> label.

Readers report every skipped line; labels unseen in training are an error
that names file and line.  Splits: a given validation file, a stratified
``valid_split`` (and ``test_split``), or stratified k-fold cross-validation
with one run folder per fold and the mean and standard deviation reported.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from rnnkit import checkpoint as ckpt
from rnnkit.batching import SequenceBatches, classify_batch
from rnnkit.data import Example, read_classification, stratified_kfold, stratified_split
from rnnkit.errors import ConfigError, DataError
from rnnkit.options import column, encoding, opt, regex, validate
from rnnkit.metrics import ClassificationMetrics
from rnnkit.models import Classifier, ClassifierConfig
from rnnkit.tasks.runs import best_metric, load_pretrained, main_log, model_device, on_main, open_run, prepare_run_dir, run_config, \
    start_run
from rnnkit.tokenizers import make_tokenizer, tokenizer_from_config
from rnnkit.trainer import TrainConfig, Trainer
from rnnkit.vocab import Vocab

PAD, UNK = "<pad>", "<unk>"


@dataclass
class ClassifyDataConfig:
    train: Optional[str] = opt(None, help="labelled TSV/CSV/JSONL file, class files joined by commas, or a folder "
                                          "(one file or sub-folder per class)")
    valid: Optional[str] = opt(None, help="validation file (else --valid-split of --train)")
    test: Optional[str] = opt(None, help="test file, scored once with the best weights")
    valid_split: float = opt(0.1, ge=0, lt=1, help="stratified fraction of --train for validation; 0: none, "
                                                   "train every epoch and keep the last weights")
    test_split: float = opt(0.0, ge=0, lt=1, help="stratified fraction of --train held out as test")
    folds: int = opt(0, ge=0, help="k-fold cross-validation on --train (k >= 2, e.g. 10); 0: none")
    format: str = opt("auto", choices=("auto", "tsv", "csv", "jsonl", "files", "folder"),
                      help="how --train and the other files are laid out (auto: by suffix)")
    text_column: Any = opt(None, parse=column, help="text column: index or header name, or JSONL field "
                                                    "[0 or text]")
    label_column: Any = opt(None, parse=column, help="label column: index or header name, or JSONL field "
                                                     "[1 or label]")
    header: Optional[bool] = opt(None, help="the file has a header row [detect]")
    encoding: str = opt("utf-8", parse=encoding, help="text encoding")
    tokenizer: str = opt("word", choices=("char", "word", "bpe"), help="token kind")
    lower: bool = opt(False, help="lower-case the text")
    pattern: Optional[str] = opt(None, parse=regex, help="regex whose matches are the word tokens")
    bpe_vocab_size: int = opt(8000, ge=1, help="BPE vocabulary size")
    min_freq: int = opt(1, ge=1, help="rarer training tokens become <unk>")
    max_vocab: Optional[int] = opt(None, ge=1, help="keep only the most frequent tokens")
    embeddings: Optional[str] = opt(None, help="pretrained vectors (GloVe / word2vec text format)")

    def __post_init__(self) -> None:
        validate(self)

    def check(self) -> None:
        if self.folds == 1:
            raise ConfigError("--folds: 1 is not allowed; expected 0 (no cross-validation) or k >= 2 folds")
        if self.folds and (self.valid or self.test):
            raise ConfigError("--folds splits --train into its own validation folds: drop --valid and --test, "
                              "or drop --folds")
        if self.valid_split + self.test_split >= 1:
            raise ConfigError(f"--valid-split {self.valid_split} and --test-split {self.test_split} leave no "
                              "training data; their sum must be below 1")


def _read(path: str, cfg: ClassifyDataConfig, log) -> list[Example]:
    fields = dict(text_column=cfg.text_column, label_column=cfg.label_column, header=cfg.header)
    paths = path.split(",") if "," in path else path
    data = read_classification(paths, format=cfg.format, encoding=cfg.encoding, **fields)
    for line in data.report:
        log(line)
    if not data.examples:
        raise DataError(f"{path}: no examples")
    return data.examples


def _make_tokenizer(cfg: ClassifyDataConfig):
    if cfg.tokenizer == "char":
        return make_tokenizer("char")
    if cfg.tokenizer == "word":
        return make_tokenizer("word", lower=cfg.lower, pattern=cfg.pattern)
    return make_tokenizer("bpe", vocab_size=cfg.bpe_vocab_size, lower=cfg.lower)


def _check_labels(examples: Iterable[Example], labels: Sequence[str]) -> None:
    known = set(labels)
    for ex in examples:
        if ex.label is None:
            raise DataError(f"{ex.source}, line {ex.line}: no label")
        if ex.label not in known:
            raise DataError(f"{ex.source}, line {ex.line}: label {ex.label!r} does not occur in the "
                            f"training data (known labels: {', '.join(labels)})")


class Encoder:
    """Texts -> id sequences with the run's tokenizer and vocabulary (empty texts become one <unk>)."""

    def __init__(self, tokenizer, vocab: Vocab) -> None:
        self.tokenizer, self.vocab = tokenizer, vocab

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text) or [UNK]

    def __call__(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.vocab.encode(self.tokens(t)) for t in texts]


def _batches(seqs, labels, pad_id: int, batch_size: int, seed: int, shuffle: bool) -> SequenceBatches:
    return SequenceBatches(seqs, batch_size, labels=labels, seed=seed, shuffle=shuffle,
                           make_batch=lambda s, l: classify_batch(s, l, pad_id))


def evaluate_model(model, batches: SequenceBatches, num_classes: int, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and confusion matrix, plus the mean loss."""
    metrics = ClassificationMetrics(num_classes, list(labels))
    total = count = 0.0
    device = model_device(model)
    for batch in batches.epoch_batches():
        batch = batch.to(device)
        logits = model(batch.inputs, lengths=batch.lengths, mask=batch.mask)  # (B, C)
        total += float(torch.nn.functional.cross_entropy(logits, batch.labels, reduction="sum"))
        count += len(batch.labels)
        metrics.update(logits.argmax(-1), batch.labels)
    out = metrics.compute()
    out["loss"] = total / max(count, 1)
    return out


def _train_one(out: Path, model_opts: dict, data: ClassifyDataConfig, train: TrainConfig,
               tr: list[Example], va: list[Example], te: list[Example], *, resume: bool, overwrite: bool,
               progress: bool, log, extra_config: Optional[dict] = None) -> dict[str, Any]:
    """Train one classifier on the given splits into ``out``; returns the test (or validation) metrics."""
    resume = start_run(out, resume, overwrite, log)
    metric, maximize = best_metric(train, ("accuracy", "macro_f1", "loss"))
    tokenizer = _make_tokenizer(data)
    if resume:
        tokenizer = tokenizer_from_config(ckpt.load_json(out / "tokenizer.json"))
    elif getattr(tokenizer, "needs_training", False):  # trained once (rank 0 under torchrun), shared
        def trained_config() -> dict:
            tokenizer.train(ex.text for ex in tr)
            return tokenizer.to_config()

        tokenizer = tokenizer_from_config(on_main(trained_config))
    labels = sorted({ex.label for ex in tr if ex.label is not None})
    _check_labels(tr, labels)
    _check_labels(va, labels)
    _check_labels(te, labels)
    tr_tok = [tokenizer.tokenize(ex.text) for ex in tr]
    empty = sum(1 for t in tr_tok if not t)
    if empty:
        log(f"{empty} training texts have no tokens after tokenisation; each is read as one <unk>")
    vocab = Vocab.load(out / "vocab.json") if resume else \
        Vocab.build(tr_tok, specials=[PAD], min_freq=data.min_freq, max_size=data.max_vocab, unk=UNK)
    enc = Encoder(tokenizer, vocab)
    va_tok = [enc.tokens(ex.text) for ex in va]
    log(f"{len(tr)} training, {len(va)} validation, {len(te)} test examples; {len(labels)} classes; "
        f"vocabulary {len(vocab):,}" + (f"; validation OOV rate {vocab.oov_rate(va_tok):.2%}" if va else ""))
    lab_id = {l: i for i, l in enumerate(labels)}
    torch.manual_seed(train.seed)
    mcfg = ClassifierConfig(vocab_size=len(vocab), num_classes=len(labels), pad_id=vocab.pad_id,
                            unk_id=vocab.unk_id, **model_opts)
    model = Classifier(mcfg)
    config = run_config("classify", "classifier", model=mcfg, data=data, train=train, labels=labels,
                        **(extra_config or {}))
    prepare_run_dir(out, config, resume, overwrite, log)
    if not resume:
        on_main(_save_vocab_and_tokenizer, out, vocab, tokenizer.to_config())
    if data.embeddings and not resume:
        load_pretrained(model, data.embeddings, vocab.tokens, train.seed, log)
    log(f"model: {f'an ensemble of {mcfg.ensemble} classifiers, each ' if mcfg.ensemble > 1 else ''}"
        f"{mcfg.num_layers}-layer {'bi' if mcfg.bidirectional else 'uni'}directional "
        f"{mcfg.cell.upper()}, hidden {mcfg.hidden_size}, {mcfg.pooling} pooling, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters")
    train_b = _batches(enc(ex.text for ex in tr), [lab_id[ex.label] for ex in tr], vocab.pad_id,
                       train.batch_size, train.seed, True)
    valid_b = _batches(enc(ex.text for ex in va), [lab_id[ex.label] for ex in va], vocab.pad_id,
                       256, 0, False) if va else None
    evaluate = (lambda m: evaluate_model(m, valid_b, len(labels), labels)) if valid_b else None
    trainer = Trainer(model, train, train_b, evaluate=evaluate, run_dir=out, metric=metric, maximize=maximize,
                      progress=progress, log=log, unit="sent")
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    seconds = time.perf_counter() - t0
    return on_main(_finish, model, out, enc, vocab, labels, lab_id, va, te, seconds, log)


def _finish(model, out: Path, enc, vocab: Vocab, labels: list[str], lab_id: dict[str, int], va, te,
            seconds: float, log) -> dict[str, Any]:
    """Score the best weights on the test (or validation) split and write the report (rank 0 only)."""
    ckpt.load_weights_into(model, out / ckpt.WEIGHTS)
    model.eval()
    final_split, final = ("test", te) if te else ("validation", va)
    result: dict[str, Any] = {"train_seconds": round(seconds, 1),
                              "parameters": sum(p.numel() for p in model.parameters())}
    if final:
        with torch.inference_mode():
            scores = evaluate_model(model, _batches(enc(ex.text for ex in final),
                                                    [lab_id[ex.label] for ex in final], vocab.pad_id,
                                                    256, 0, False), len(labels), labels)
        result.update({"split": final_split, **scores})
        from rnnkit.plots import confusion_matrix

        confusion_matrix(scores["confusion"], labels, out / "confusion.png", title=f"{final_split} confusion")
        log(f"{final_split}: accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f} "
            f"({len(final)} examples); confusion matrix: {out / 'confusion.png'}")
    ckpt.save_json(out / "report.json", result)
    return result


def train_classify(out: str | Path, model_opts: dict[str, Any], data: ClassifyDataConfig, train: TrainConfig,
                   *, resume: bool = False, overwrite: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a classifier (or one per fold) into ``out``; returns the final metrics."""
    if not data.train:
        raise ConfigError("give --train: a labelled file, a list of class files, or a folder")
    out = Path(out)
    log = main_log(log)
    examples = _read(data.train, data, log)
    labels = [ex.label for ex in examples]
    if data.valid_split == 0 and not data.valid:
        if train.patience:
            raise ConfigError("--patience stops early on validation scores, and --valid-split 0 holds out none: "
                              "drop one of them")
        log("--valid-split 0: no validation; training runs every epoch and keeps its last weights")
    if data.folds and data.folds > 1:
        if data.valid or data.test:
            raise ConfigError("--folds splits --train itself; drop --valid/--test")
        return _cross_validate(out, model_opts, data, train, examples, resume=resume, overwrite=overwrite,
                               progress=progress, log=log)
    rest = list(range(len(examples)))
    te: list[Example] = []
    if data.test:
        te = _read(data.test, data, log)
    elif data.test_split > 0:
        rest, test_idx = stratified_split(labels, data.test_split, train.seed)
        te = [examples[i] for i in test_idx]
    if data.valid:
        va = _read(data.valid, data, log)
        tr = [examples[i] for i in rest]
    else:
        sub_tr, sub_va = _validation_split([labels[i] for i in rest], data.valid_split, train.seed + 1)
        tr, va = [examples[rest[i]] for i in sub_tr], [examples[rest[i]] for i in sub_va]
    return _train_one(out, model_opts, data, train, tr, va, te, resume=resume, overwrite=overwrite,
                      progress=progress, log=log)


def _validation_split(labels: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, valid)`` of a stratified validation slice; ``fraction`` 0 holds nothing out,
    so training runs its full length and keeps its last weights (no early stopping)."""
    if fraction == 0:
        return list(range(len(labels))), []
    if not 0 < fraction < 1:
        raise ConfigError(f"--valid-split must be in [0, 1), got {fraction}")
    return stratified_split(labels, fraction, seed)


def _cross_validate(out: Path, model_opts, data, train, examples, *, resume, overwrite, progress, log):
    labels = [ex.label for ex in examples]
    folds = stratified_kfold(labels, data.folds, train.seed)
    results = []
    out.mkdir(parents=True, exist_ok=True)
    for k, (train_idx, test_idx) in enumerate(folds, 1):
        fold_dir = out / f"fold-{k:02d}"
        if resume and (fold_dir / "report.json").is_file():  # this fold finished before
            results.append(ckpt.load_json(fold_dir / "report.json"))
            continue
        # early stopping uses a stratified slice of the training folds, never the test fold
        sub_tr, sub_va = _validation_split([labels[i] for i in train_idx], data.valid_split, train.seed + k)
        tr = [examples[train_idx[i]] for i in sub_tr]
        va = [examples[train_idx[i]] for i in sub_va]
        te = [examples[i] for i in test_idx]
        log(f"fold {k}/{len(folds)}")
        fold_resume = resume and (fold_dir / ckpt.LAST / ckpt.STATE).is_file()
        results.append(_train_one(fold_dir, model_opts, data, train, tr, va, te, resume=fold_resume,
                                  overwrite=overwrite, progress=progress, log=log, extra_config={"fold": k}))
    accs = [r["accuracy"] for r in results]
    f1s = [r["macro_f1"] for r in results]
    summary = {"folds": len(results), "accuracy_mean": statistics.mean(accs),
               "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "macro_f1_mean": statistics.mean(f1s), "macro_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0,
               "per_fold_accuracy": accs, "train_seconds": sum(r["train_seconds"] for r in results),
               "parameters": results[0]["parameters"]}
    on_main(ckpt.save_json, out / "cv.json", summary)
    log(f"{len(results)}-fold cross-validation: accuracy {summary['accuracy_mean']:.4f} "
        f"± {summary['accuracy_std']:.4f}, macro-F1 {summary['macro_f1_mean']:.4f}")
    return summary


def _save_vocab_and_tokenizer(out: Path, vocab: Vocab, tokenizer_config: dict) -> None:
    vocab.save(out / "vocab.json")
    ckpt.save_json(out / "tokenizer.json", tokenizer_config)


def load_run(run: str | Path, *, int8: bool = False):
    """A trained classifier run, ready to use: ``(config, model, encoder)`` (``int8``: quantised, see ``open_run``)."""
    config, model, vocabs = open_run(run, int8=int8)
    tokenizer = tokenizer_from_config(ckpt.load_json(Path(run) / "tokenizer.json"))
    return config, model, Encoder(tokenizer, vocabs["vocab"])


def predict(run: str | Path, texts: Sequence[str], batch_size: int = 64, *,
            int8: bool = False) -> list[dict[str, Any]]:
    """Label and class probabilities for each text, in input order."""
    config, model, enc = load_run(run, int8=int8)
    return predict_with(model, enc, config["labels"], texts, batch_size)


def predict_with(model: Classifier, encoder: Encoder, labels: Sequence[str], texts: Sequence[str],
                 batch_size: int = 64) -> list[dict[str, Any]]:
    """:func:`predict` on a model already opened (``load_run(run)``): per text, in input order,
    ``{"text", "label", "probs": {label: probability rounded to 6 places}}``."""
    seqs = encoder(texts)
    out: list[Optional[dict[str, Any]]] = [None] * len(texts)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths together: few pads
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            b = classify_batch([seqs[i] for i in idx], None, encoder.vocab.pad_id)
            probs = model.predict_proba(b.inputs, lengths=b.lengths, mask=b.mask)  # (B, C)
            for row, i in zip(probs.tolist(), idx):
                best = max(range(len(row)), key=row.__getitem__)
                out[i] = {"text": texts[i], "label": labels[best],
                          "probs": {l: round(p, 6) for l, p in zip(labels, row)}}
    return out  # type: ignore[return-value]


def predict_text(run: str | Path, text: str, *, fmt: str = "text", path: Optional[str] = None,
                 encoding: str = "utf-8", as_json: bool = False, warn: Callable[[str], None] = print,
                 int8: bool = False) -> str:
    """What ``rnnkit predict`` prints for a classifier run: per line of ``text``, its label and class
    probabilities (or one JSON object).  An empty line still gets a label (the model's answer to no
    words), and ``warn`` says which lines were empty."""
    if fmt != "text":
        raise ConfigError("--format conllu applies to tagger runs; a classifier reads one text per line")
    lines = text.splitlines()
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if empty:
        warn(f"{len(empty)} empty input line(s) (first: line {empty[0]}) were labelled from no words")
    out = []
    for row in predict(run, lines, int8=int8):
        if as_json:
            out.append(json.dumps(row, ensure_ascii=False))
        else:
            out.append(f"{row['label']}\t" + " ".join(f"{k}={v:.3f}" for k, v in row["probs"].items()))
    return "".join(line + "\n" for line in out)


def evaluate(run: str | Path, data_path: Optional[str] = None, encoding: Optional[str] = None,
             format: Optional[str] = None, log: Callable[[str], None] = lambda message: None,
             int8: bool = False) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class scores of a trained run on a labelled file (``log`` hears what the
    reader skipped)."""
    if not data_path:
        raise ConfigError("give --data: a labelled file to evaluate on")
    config, model, enc = load_run(run, int8=int8)
    data = ClassifyDataConfig(**{**config["data"], **({"encoding": encoding} if encoding else {}),
                                 **({"format": format} if format else {})})
    examples = _read(data_path, data, log)
    labels = config["labels"]
    _check_labels(examples, labels)
    lab_id = {l: i for i, l in enumerate(labels)}
    batches = _batches(enc(ex.text for ex in examples), [lab_id[ex.label] for ex in examples],
                       enc.vocab.pad_id, 256, 0, False)
    with torch.inference_mode():
        scores = evaluate_model(model, batches, len(labels), labels)
    return {"file": data_path, "examples": len(examples), **scores}
