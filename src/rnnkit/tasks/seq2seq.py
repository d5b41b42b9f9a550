"""The seq2seq task: parallel text (or a pronouncing dictionary) -> Seq2Seq -> translations.

Data comes as two line-aligned files, one TSV file, or CMUdict (``--format
cmudict``: spelling -> phonemes, split 90/5/5 over distinct words with a seed;
a word's every pronunciation is an acceptable answer).  CMUdict can also be
scored on a fixed test split (``--test``, e.g. the 0.7b test split the G2P
literature reports on): its words leave training, and validation is held out
of the rest by word; ``--drop-stress`` removes stress digits on both sides.
Each side is tokenised (char, word or BPE) with its own vocabulary, or one
shared vocabulary.  Several runs decode as one ensemble (``Translator([run,
run, ...])``, ``evaluate([...])``): the mean of their log-probabilities.

Translations are scored with sacreBLEU's BLEU and chrF on detokenised text;
pronunciations by word and phoneme error rates.  Validation scores are
computed with greedy decoding during training (early stopping and the best
weights follow BLEU or WER); the test set is decoded once at the end with the
configured beam.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch

from rnnkit import checkpoint as ckpt
from rnnkit.batching import SequenceBatches, seq2seq_batch
from rnnkit.data import (Pair, drop_stress, filter_by_length, has_stress, read_cmudict, read_parallel,
                         read_parallel_tsv, split_items)
from rnnkit.decoding import MAX_BEAM, EnsembleState, Sampling, beam_search, ensemble_step, greedy_search, generate
from rnnkit.options import encoding, fractions, opt, validate
from rnnkit.errors import ConfigError, DataError
from rnnkit.losses import sequence_nll
from rnnkit.metrics import ErrorRates, TokenNLL, TranslationMetrics
from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.models.language_model import LossOutput
from rnnkit.tasks.runs import (best_metric, fit_best, main_log, model_device, on_main, open_run, prepare_run_dir,
                               run_config, start_run)
from rnnkit.tokenizers import make_tokenizer, tokenizer_from_config
from rnnkit.trainer import TrainConfig, Trainer
from rnnkit.vocab import Vocab

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


TOKENIZERS = ("char", "word", "bpe")


@dataclass
class Seq2SeqDataConfig:
    train: Optional[str] = opt(None, help="a TSV file (source<TAB>target), or the cmudict.dict file "
                                          "(instead of --train-src/--train-tgt)")
    valid: Optional[str] = opt(None, help="TSV validation file")
    test: Optional[str] = opt(None, help="TSV test file; with --format cmudict, a pronouncing dictionary whose "
                                         "words leave training (e.g. the standard cmudict-0.7b.test)")
    train_src: Optional[str] = opt(None, help="training source file (one sentence per line)")
    train_tgt: Optional[str] = opt(None, help="training target file, line-aligned with --train-src")
    valid_src: Optional[str] = opt(None, help="validation source file (early stopping on BLEU / WER)")
    valid_tgt: Optional[str] = opt(None, help="validation target file")
    test_src: Optional[str] = opt(None, help="test source file, decoded once with the best weights and --beam")
    test_tgt: Optional[str] = opt(None, help="test target file")
    format: str = opt("auto", choices=("auto", "parallel", "tsv", "cmudict"), help="how the data is laid out")
    split: str = opt("0.9,0.05,0.05", parse=fractions,
                     help="cmudict: train,valid,test fractions of the distinct words")
    split_seed: int = opt(0, ge=0, help="cmudict: seed of the split")
    encoding: str = opt("utf-8", parse=encoding, help="text encoding")
    tokenizer: str = opt("word", choices=TOKENIZERS, help="both sides [cmudict: char -> phones]")
    src_tokenizer: Optional[str] = opt(None, choices=TOKENIZERS, help="source side only")
    tgt_tokenizer: Optional[str] = opt(None, choices=TOKENIZERS, help="target side only")
    lower: bool = opt(False, help="lower-case both sides")
    bpe_vocab_size: int = opt(8000, ge=1, help="BPE merges per side (or shared)")
    shared_vocab: bool = opt(False, help="one vocabulary (and one BPE model) for both sides")
    min_freq: int = opt(1, ge=1, help="rarer training tokens become <unk>")
    max_src_len: Optional[int] = opt(250, ge=1, zero_is_none=True,
                                     help="drop training pairs with longer sources, in tokens (counted and "
                                          "reported); 0: no limit")
    max_tgt_len: Optional[int] = opt(250, ge=1, zero_is_none=True,
                                     help="drop training pairs with longer targets (reported); 0: no limit")
    beam: int = opt(5, ge=1, le=MAX_BEAM, help="beam size for the test set, translate and evaluate; 1 is greedy")
    length_penalty: float = opt(1.0, ge=0, le=10, help="GNMT length penalty alpha; 0 for raw log-probability")
    max_len_ratio: float = opt(2.0, gt=0, le=100, help="output limit: ratio x source length + --max-len-extra")
    max_len_extra: int = opt(10, ge=0, le=10_000, help="output limit: tokens beyond the ratio")
    drop_stress: bool = opt(False, help="cmudict: remove the stress digits from the phonemes of every file "
                                        "(AH0 -> AH), as the standard test split has none")

    def __post_init__(self) -> None:
        validate(self)

    def check(self) -> None:
        if self.train and (self.train_src or self.train_tgt):
            raise ConfigError("give either --train (one TSV or cmudict file) or --train-src and --train-tgt, "
                              "not both")
        for name in ("train", "valid", "test"):
            if bool(getattr(self, f"{name}_src")) != bool(getattr(self, f"{name}_tgt")):
                raise ConfigError(f"give both --{name}-src and --{name}-tgt (line-aligned files)")


@dataclass
class DecodeOptions(Sampling):
    """How ``rnnkit translate``, ``chat`` and ``POST /api/translate`` decode (besides the run)."""

    beam: Optional[int] = opt(None, ge=1, le=MAX_BEAM, help="beam size; 1 is greedy [the run's]")
    length_penalty: Optional[float] = opt(None, ge=0, le=10, help="GNMT length penalty alpha [the run's]")
    sample: bool = opt(False, help="sample instead of searching (with --temperature, --top-k, --top-p)")
    n_best: int = opt(1, ge=1, le=MAX_BEAM, help="the N best hypotheses, with scores (<= --beam)")
    max_src_tokens: int = opt(1000, ge=1, le=1_000_000,
                              help="cut longer source texts to this many tokens (each cut is reported)")

    def check(self) -> None:
        if self.sample and self.beam is not None and self.beam > 1:
            raise ConfigError(f"--sample and --beam {self.beam} both given: sampling draws one token at a time "
                              "and has no beam; drop one of them")
        if self.sample and self.n_best > 1:
            raise ConfigError("--n-best needs a beam search; with --sample draw several times with other --seed")
        if self.beam is not None and self.n_best > self.beam:
            raise ConfigError(f"--n-best {self.n_best} exceeds --beam {self.beam}: a beam keeps that many "
                              "hypotheses at most")


@dataclass
class Split:
    """One data split: raw texts and, for CMUdict, every acceptable answer of each source."""

    src: list[str]
    tgt: list[str]
    refs: Optional[list[list[str]]] = None  # cmudict: all pronunciations (as "PH PH ...") per word


def _format(cfg: Seq2SeqDataConfig) -> str:
    if cfg.format != "auto":
        if cfg.format not in ("parallel", "tsv", "cmudict"):
            raise ConfigError(f"--format must be auto, parallel, tsv or cmudict, got {cfg.format!r}")
        return cfg.format
    if cfg.train_src or cfg.train_tgt:
        return "parallel"
    if cfg.train and Path(cfg.train).name.startswith("cmudict"):
        return "cmudict"
    return "tsv"


def _pairs_split(pairs: Sequence[Pair]) -> Split:
    return Split([p.src for p in pairs], [p.tgt for p in pairs])


def _split_fractions(cfg: Seq2SeqDataConfig) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(f) for f in cfg.split.split(","))
    except ValueError:
        fractions = ()
    if len(fractions) != 3:
        raise ConfigError(f"--split must be three fractions like 0.9,0.05,0.05, got {cfg.split!r}")
    return fractions  # type: ignore[return-value]


def read_pronunciations(path: str, cfg: Seq2SeqDataConfig) -> tuple[dict[str, list[list[str]]], int]:
    """A pronouncing dictionary as a run reads it: words lower-cased (the releases differ in case), stress
    digits removed with ``cfg.drop_stress``; and how many pronunciations that removal merged."""
    entries = read_cmudict(path, cfg.encoding, lower=True)
    if not cfg.drop_stress:
        return entries, 0
    return drop_stress(entries)


def _check_stress(train: dict, train_path: str, other: dict, other_path: str) -> None:
    """``ConfigError`` when one file marks stress and the other does not (without --drop-stress)."""
    a, b = has_stress(train), has_stress(other)
    if a != b:
        marked, bare = (train_path, other_path) if a else (other_path, train_path)
        raise ConfigError(f"{marked} marks stress (phonemes like AH0, EY1) but {bare} does not: the two cannot "
                          "be scored against each other; pass --drop-stress to remove the stress digits from both")


def _cmudict_split(entries: dict[str, list[list[str]]], words: list[str], expand: bool) -> Split:
    """The pairs of ``words``: one per pronunciation (``expand``, training) or one per word, every
    pronunciation of a word among its references."""
    src, tgt, refs = [], [], []
    for w in words:
        prons = [" ".join(p) for p in entries[w]]
        for p in (prons if expand else prons[:1]):
            src.append(w)
            tgt.append(p)
            refs.append(prons)
    return Split(src, tgt, refs)


def _read_cmudict_splits(cfg: Seq2SeqDataConfig, log: Callable[[str], None]
                         ) -> tuple[Split, Optional[Split], Optional[Split]]:
    """CMUdict's splits: by word, a seeded ``--split`` of one dictionary; or with ``--test FILE`` (e.g.
    the CMUdict 0.7b test split), that file as the test set, every test word (all its pronunciations) out of
    training, and the validation share of ``--split`` held out of the other words (by word: no variant of
    a training word is ever validated on)."""
    if not cfg.train:
        raise ConfigError("--format cmudict needs --train: the cmudict.dict file")
    fractions = _split_fractions(cfg)
    entries, merged = read_pronunciations(cfg.train, cfg)
    if merged:
        log(f"{cfg.train}: {merged:,} pronunciations repeat another of their word's once stress is removed; "
            "kept once")
    if not cfg.test:
        parts = split_items(list(entries), fractions, cfg.split_seed)
        return _cmudict_split(entries, parts[0], True), \
            (_cmudict_split(entries, parts[1], False) if parts[1] else None), \
            (_cmudict_split(entries, parts[2], False) if parts[2] else None)
    test, test_merged = read_pronunciations(cfg.test, cfg)
    if not cfg.drop_stress:
        _check_stress(entries, cfg.train, test, cfg.test)
    n_lines = sum(map(len, test.values())) + test_merged
    removed = [w for w in test if w in entries]
    removed_prons = sum(len(entries[w]) for w in removed)
    log(f"{cfg.test}: {len(test):,} test words with {n_lines:,} pronunciations"
        + (f" ({test_merged:,} repeat another of their word's without stress, kept once)" if test_merged else "")
        + f"; removed from {cfg.train}: {len(removed):,} of those words with {removed_prons:,} pronunciations"
        + (f" ({len(test) - len(removed):,} test words are not in it)" if len(removed) < len(test) else ""))
    rest = [w for w in entries if w not in test]
    if not rest:
        raise DataError(f"every word of {cfg.train} is in the test file {cfg.test}: nothing is left to train on")
    # the validation share of --split, held out of the words left (the test share is the test file)
    train_words, valid_words, _ = split_items(rest, (1 - fractions[1], fractions[1], 0.0), cfg.split_seed)
    tr = _cmudict_split(entries, train_words, True)
    log(f"{len(train_words):,} training words ({len(tr.src):,} pronunciations), {len(valid_words):,} "
        f"validation words (the {fractions[1]:g} share of --split, held out by word)")
    return tr, (_cmudict_split(entries, valid_words, False) if valid_words else None), \
        _cmudict_split(test, list(test), False)


def read_splits(cfg: Seq2SeqDataConfig, log: Callable[[str], None] = lambda message: None
                ) -> tuple[Split, Optional[Split], Optional[Split]]:
    """Train, validation and test splits as configured (validation/test may be None); ``log`` hears what
    was removed or merged on the way."""
    fmt = _format(cfg)
    if fmt == "cmudict":
        return _read_cmudict_splits(cfg, log)
    if fmt == "parallel":
        if not (cfg.train_src and cfg.train_tgt):
            raise ConfigError("give --train-src and --train-tgt (line-aligned files), or --train FILE.tsv")

        def read(src: Optional[str], tgt: Optional[str], name: str) -> Optional[Split]:
            if not src and not tgt:
                return None
            if not (src and tgt):
                raise ConfigError(f"give both --{name}-src and --{name}-tgt")
            return _pairs_split(read_parallel(src, tgt, cfg.encoding))

        return read(cfg.train_src, cfg.train_tgt, "train"), read(cfg.valid_src, cfg.valid_tgt, "valid"), \
            read(cfg.test_src, cfg.test_tgt, "test")
    if not cfg.train:
        raise ConfigError("give --train FILE.tsv (source<TAB>target), or --train-src and --train-tgt")
    return tuple(_pairs_split(read_parallel_tsv(p, cfg.encoding)) if p else None  # type: ignore[return-value]
                 for p in (cfg.train, cfg.valid, cfg.test))


class Codec:
    """Texts <-> ids for both sides with the run's tokenizers and vocabularies."""

    def __init__(self, src_tok, tgt_tok, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
        self.src_tok, self.tgt_tok, self.src_vocab, self.tgt_vocab = src_tok, tgt_tok, src_vocab, tgt_vocab
        self.lower_src = False  # CMUdict runs: words are read lower-cased, so inputs are too

    def src_tokens(self, text: str) -> list[str]:
        return self.src_tok.tokenize(text.lower() if self.lower_src else text) or [UNK]

    def src_ids(self, text: str) -> list[int]:
        return self.src_vocab.encode(self.src_tokens(text))

    def tgt_ids(self, text: str) -> list[int]:
        return self.tgt_vocab.encode(self.tgt_tok.tokenize(text))

    def tgt_text(self, ids: Sequence[int]) -> str:
        return self.tgt_tok.detokenize(self.tgt_vocab.decode(ids))

    def encode(self, split: Split) -> tuple[list[list[int]], list[list[int]]]:
        """Source and target ids of every pair of ``split``: tokenised once, batched as often as needed."""
        return [self.src_ids(s) for s in split.src], [self.tgt_ids(t) for t in split.tgt]

    def batches(self, src: Sequence[list[int]], tgt: Sequence[list[int]], batch_size: int, seed: int = 0,
                shuffle: bool = False) -> SequenceBatches:
        v, w = self.src_vocab, self.tgt_vocab

        def build(src_rows, rows):
            return seq2seq_batch(src_rows, [tgt[r] for r in rows], v.pad_id, w.pad_id, w.bos_id, w.eos_id)

        return SequenceBatches(src, batch_size, labels=list(range(len(src))), make_batch=build, seed=seed,
                               shuffle=shuffle, sort_key=lambda i: (len(src[i]), len(tgt[i])))


def _tokenizer(name: str, cfg: Seq2SeqDataConfig):
    if name == "char":
        return make_tokenizer("char")
    if name == "word":
        return make_tokenizer("word", lower=cfg.lower)
    if name == "bpe":
        return make_tokenizer("bpe", vocab_size=cfg.bpe_vocab_size, lower=cfg.lower)
    raise ConfigError(f"tokenizer must be char, word or bpe, got {name!r}")


def _build_codec(tr: Split, cfg: Seq2SeqDataConfig, cmudict: bool) -> Codec:
    default = ("char", "word") if cmudict else (cfg.tokenizer, cfg.tokenizer)
    src_name, tgt_name = cfg.src_tokenizer or default[0], cfg.tgt_tokenizer or default[1]
    if cfg.shared_vocab and src_name != tgt_name:
        raise ConfigError("--shared-vocab needs the same tokenizer on both sides")
    src_tok = _tokenizer(src_name, cfg)
    tgt_tok = src_tok if cfg.shared_vocab else _tokenizer(tgt_name, cfg)
    if src_tok.needs_training:
        src_tok.train(tr.src + tr.tgt if cfg.shared_vocab else tr.src)
    if tgt_tok.needs_training and tgt_tok is not src_tok:
        tgt_tok.train(tr.tgt)
    src_seqs = [src_tok.tokenize(s) for s in tr.src]
    tgt_seqs = [tgt_tok.tokenize(t) for t in tr.tgt]
    specials = [PAD, UNK, BOS, EOS]
    if cfg.shared_vocab:
        vocab = Vocab.build(src_seqs + tgt_seqs, specials=specials, min_freq=cfg.min_freq, unk=UNK)
        return Codec(src_tok, tgt_tok, vocab, vocab)
    return Codec(src_tok, tgt_tok, Vocab.build(src_seqs, specials=specials, min_freq=cfg.min_freq, unk=UNK),
                 Vocab.build(tgt_seqs, specials=specials, min_freq=cfg.min_freq, unk=UNK))


# ------------------------------------------------------------------ decoding


def translate_ids(model: Seq2Seq, src: Sequence[Sequence[int]], pad_id: int, *, beam: int = 1, n_best: int = 1,
                  length_penalty: float = 1.0, max_len_ratio: float = 2.0, max_len_extra: int = 10,
                  batch_size: int = 64, sample: bool = False, temperature: float = 1.0,
                  top_k: Optional[int] = None, top_p: Optional[float] = None,
                  generator: Optional[torch.Generator] = None) -> list[list[tuple[list[int], float]]]:
    """Decode every source (in input order): ``n_best`` ``(ids, score)`` per sentence.

    Sentences are batched by length; each one's output does not depend on the others.
    """
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out: list[Any] = [None] * len(src)
    eos = model.config.tgt_eos_id
    device = model_device(model)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            b = seq2seq_batch([src[i] for i in idx], None, pad_id, model.config.tgt_pad_id,
                              model.config.tgt_bos_id, eos).to(device)
            state = model.encode(b.inputs, b.lengths)
            lengths = torch.tensor([len(src[i]) for i in idx], device=device)
            limit = model.max_lengths(lengths, max_len_ratio, max_len_extra)
            bos = model.start_tokens(len(idx), b.inputs.device)
            if sample:
                rows = generate(model.step, state, bos.unsqueeze(1), int(limit.max()), temperature=temperature,
                                top_k=top_k, top_p=top_p, generator=generator, eos_id=eos).tolist()
                results = [[(_cut(r, eos, int(n)), 0.0)] for r, n in zip(rows, limit)]
            elif beam == 1 and n_best == 1:
                results = [[(ids, 0.0)] for ids in greedy_search(model.step, state, bos, eos, limit)]
            else:
                hyps = beam_search(model.step, state, bos, eos, beam_size=beam, max_len=limit,
                                   length_penalty=length_penalty, n_best=n_best)
                results = [[(h.tokens, h.score) for h in sent] for sent in hyps]
            for i, r in zip(idx, results):
                out[i] = r
    return out


def _cut(ids: list[int], eos: int, limit: int) -> list[int]:
    ids = ids[:limit]
    return ids[: ids.index(eos)] if eos in ids else ids


def _score(model: Seq2Seq, codec: Codec, split: Split, cmudict: bool, beam: int = 1,
           length_penalty: float = 1.0, max_len_ratio: float = 2.0, max_len_extra: int = 10,
           encoded: Optional[tuple[list[list[int]], list[list[int]]]] = None) -> tuple[dict[str, Any], list[str]]:
    """Metrics of ``split`` and the output texts (in input order); ``encoded`` is ``codec.encode(split)``
    when the caller scores the same split again and again (validation)."""
    src, tgt = encoded or codec.encode(split)
    was_training = model.training
    model.eval()
    nll = TokenNLL()
    with torch.inference_mode():
        device = model_device(model)
        for batch in codec.batches(src, tgt, 128).epoch_batches():
            out = model.loss(batch.to(device))
            nll.update(float(out.loss), int(out.num_tokens))
    decoded = translate_ids(model, src, codec.src_vocab.pad_id, beam=beam, length_penalty=length_penalty,
                            max_len_ratio=max_len_ratio, max_len_extra=max_len_extra)
    texts = [codec.tgt_text(d[0][0]) for d in decoded]
    model.train(was_training)
    loss = nll.compute()
    metrics: dict[str, Any] = {"loss": loss["loss"], "perplexity": loss["perplexity"]}
    if cmudict:
        rates = ErrorRates()
        rates.update([t.split() for t in texts], [[r.split() for r in refs] for refs in split.refs or []])
        metrics.update(rates.compute())
    else:
        tm = TranslationMetrics()
        tm.update(texts, split.tgt)
        metrics.update(tm.compute())
    return metrics, texts


# ------------------------------------------------------------------ training


def train_seq2seq(out: str | Path, model_opts: dict[str, Any], data: Seq2SeqDataConfig, train: TrainConfig, *,
                  resume: bool = False, overwrite: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a seq2seq model into run folder ``out``; returns the test (or validation) metrics."""
    out = Path(out)
    log = main_log(log)
    resume = start_run(out, resume, overwrite, log)
    cmudict = _format(data) == "cmudict"
    tr, va, te = read_splits(data, log)
    if resume:
        codec = _open_codec(out)
    else:  # built once (BPE is trained on rank 0 under torchrun) and handed to every rank
        codec = _codec_from_dict(on_main(lambda: _codec_dict(_build_codec(tr, data, cmudict))))
    codec.lower_src = cmudict
    src_ids, tgt_ids = codec.encode(tr)
    keep, report = filter_by_length([len(s) for s in src_ids], [len(t) for t in tgt_ids],
                                    data.max_src_len, data.max_tgt_len)
    log(f"training pairs: {report.describe()}")
    empty = [i for i in keep if not tgt_ids[i]]
    if empty:
        raise DataError(f"{len(empty)} training targets tokenise to nothing (first: line {empty[0] + 1}, "
                        f"{tr.tgt[empty[0]]!r})")
    if not keep:
        raise DataError(f"no training pair is within --max-src-len {data.max_src_len} and --max-tgt-len "
                        f"{data.max_tgt_len} tokens ({report.describe()}); raise the limits (0: none) or "
                        "split the data into sentence pairs")
    src_ids, tgt_ids = [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]
    oov = codec.src_vocab.oov_rate([codec.src_tokens(s) for s in va.src]) if va else 0.0
    log(f"{len(src_ids):,} training, {len(va.src) if va else 0:,} validation, {len(te.src) if te else 0:,} test "
        f"pairs; vocabularies: {len(codec.src_vocab):,} source, {len(codec.tgt_vocab):,} target tokens"
        f"{' (shared)' if codec.src_vocab is codec.tgt_vocab else ''}; validation source OOV rate {oov:.2%}")
    torch.manual_seed(train.seed)
    v, w = codec.src_vocab, codec.tgt_vocab
    mcfg = Seq2SeqConfig(src_vocab_size=len(v), tgt_vocab_size=len(w), src_pad_id=v.pad_id, tgt_pad_id=w.pad_id,
                         tgt_bos_id=w.bos_id, tgt_eos_id=w.eos_id, **model_opts)
    model = Seq2Seq(mcfg)
    metric, maximize = best_metric(train, ("wer", "per", "loss") if cmudict else ("bleu", "chrf", "loss"))
    config = run_config("seq2seq", "seq2seq", model=mcfg, data=data, train=train, cmudict=cmudict,
                        lower_words=cmudict)
    prepare_run_dir(out, config, resume, overwrite, log)
    if not resume:
        on_main(_save_codec, out, codec)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {mcfg.num_layers}-layer {'bi' if mcfg.bidirectional else 'uni'}directional {mcfg.cell.upper()} "
        f"encoder, hidden {mcfg.hidden_size}, attention {mcfg.attention}"
        f"{' (' + mcfg.score + ')' if mcfg.attention == 'luong' else ''}"
        f"{', input feeding' if mcfg.input_feeding else ''}; {n_params:,} parameters")
    evaluate = None
    if va:
        va_ids = codec.encode(va)
        evaluate = lambda m: _score(m, codec, va, cmudict, 1, data.length_penalty, data.max_len_ratio,  # noqa: E731
                                    data.max_len_extra, va_ids)[0]
    trainer = Trainer(model, train, codec.batches(src_ids, tgt_ids, train.batch_size, train.seed, shuffle=True),
                      evaluate=evaluate, run_dir=out, metric=metric, maximize=maximize, progress=progress,
                      log=log)
    result: Optional[dict[str, Any]] = fit_best(trainer, model, out, resume)
    if result is None:
        return {}  # another rank under torchrun: rank 0 reports
    split_name, final = ("test", te) if te else ("validation", va)
    if final:
        t1 = time.perf_counter()
        scores, texts = _score(model, codec, final, cmudict, data.beam, data.length_penalty, data.max_len_ratio,
                               data.max_len_extra)
        scores["decode_seconds"] = round(time.perf_counter() - t1, 1)
        scores["beam"] = data.beam
        (out / f"{split_name}.hyp.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        result.update({"split": split_name, **scores})
        log(f"{split_name} ({len(final.src):,} sentences, beam {data.beam}): " + _describe(scores, cmudict)
            + f"; outputs in {out / f'{split_name}.hyp.txt'}")
    ckpt.save_json(out / "report.json", result)
    return result


def _describe(scores: dict[str, Any], cmudict: bool) -> str:
    if cmudict:
        return f"WER {scores['wer']:.2%}, PER {scores['per']:.2%}"
    return (f"BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f}, perplexity {scores['perplexity']:.2f} "
            f"(sacreBLEU {scores['bleu_signature']})")


def _save_codec(out: Path, codec: Codec) -> None:
    codec.src_vocab.save(out / "src_vocab.json")
    codec.tgt_vocab.save(out / "tgt_vocab.json")
    ckpt.save_json(out / "tokenizers.json", {"src": codec.src_tok.to_config(), "tgt": codec.tgt_tok.to_config()})


def _codec_dict(codec: Codec) -> dict[str, Any]:
    return {"src": codec.src_tok.to_config(), "tgt": codec.tgt_tok.to_config(),
            "src_vocab": codec.src_vocab.to_dict(), "tgt_vocab": codec.tgt_vocab.to_dict(),
            "shared": codec.src_vocab is codec.tgt_vocab}


def _codec_from_dict(d: dict[str, Any]) -> Codec:
    src_vocab = Vocab.from_dict(d["src_vocab"])
    tgt_vocab = src_vocab if d["shared"] else Vocab.from_dict(d["tgt_vocab"])
    return Codec(tokenizer_from_config(d["src"]), tokenizer_from_config(d["tgt"]), src_vocab, tgt_vocab)


def _open_codec(out: Path) -> Codec:
    toks = ckpt.load_json(out / "tokenizers.json")
    return Codec(tokenizer_from_config(toks["src"]), tokenizer_from_config(toks["tgt"]),
                 Vocab.load(out / "src_vocab.json"), Vocab.load(out / "tgt_vocab.json"))


# ------------------------------------------------------------------ using a run


class Translation(NamedTuple):
    """One output of ``Translator.translate``: its text, its score and the token ids it was decoded as."""

    text: str
    score: float
    ids: list[int]  # output tokens, eos excluded


class Seq2SeqEnsemble(torch.nn.Module):
    """Seq2seq models that decode as one: at every step the mean of their log-probabilities
    (``rnnkit.decoding.ensemble_step``), in greedy search, beam search and sampling alike.

    It offers what decoding and scoring need of a ``Seq2Seq``: ``encode`` (an ``EnsembleState`` of
    the models' states), ``step``, ``loss`` (the NLL of the same combined distribution, teacher-forced),
    ``max_lengths``, ``start_tokens`` and ``config`` (the first model's: the models share their
    vocabularies, so their ids).
    """

    def __init__(self, models: Sequence[Seq2Seq]) -> None:
        super().__init__()
        if not models:
            raise ConfigError("an ensemble needs at least one model")
        self.models = torch.nn.ModuleList(models)
        self.config = models[0].config
        self._step = ensemble_step([m.step for m in models])

    def encode(self, src: torch.Tensor, src_lengths: Optional[torch.Tensor] = None) -> EnsembleState:
        return EnsembleState(m.encode(src, src_lengths) for m in self.models)

    def step(self, tokens: torch.Tensor, state: EnsembleState) -> tuple[torch.Tensor, EnsembleState]:
        """``tokens (B, t)`` -> ``(mean log-probabilities (B, t, V), state)``."""
        return self._step(tokens, state)

    def loss(self, batch, carry=None) -> Any:
        """Summed target-token NLL of the renormalised mean of the models' log-probabilities."""
        mean = torch.stack([m(batch.inputs, batch.lengths, batch.decoder_inputs)[0].float().log_softmax(-1)
                            for m in self.models]).mean(0)  # (B, T, V)
        total, count = sequence_nll(mean, batch.targets, mask=batch.mask)
        return LossOutput(total, count, None)

    def max_lengths(self, src_lengths: torch.Tensor, ratio: float = 2.0, extra: int = 10) -> torch.Tensor:
        return self.models[0].max_lengths(src_lengths, ratio, extra)

    def start_tokens(self, batch_size: int, device: torch.device) -> torch.Tensor:
        return self.models[0].start_tokens(batch_size, device)


def _same_codec(a: Codec, b: Codec) -> list[str]:
    """What differs between two runs' codecs (empty: they map text to the same ids)."""
    out = []
    if a.src_vocab.tokens != b.src_vocab.tokens:
        out.append("source vocabulary")
    if a.tgt_vocab.tokens != b.tgt_vocab.tokens:
        out.append("target vocabulary")
    if a.src_tok.to_config() != b.src_tok.to_config() or a.tgt_tok.to_config() != b.tgt_tok.to_config():
        out.append("tokenizers")
    if a.lower_src != b.lower_src:
        out.append("case folding of the source")
    return out


class Translator:
    """A trained run (or several, decoding as an ensemble), ready to translate texts.

    ``Translator(run)`` or ``Translator([run1, run2, ...])``: several runs decode together, the mean of
    their log-probabilities at each step (see ``Seq2SeqEnsemble``).  They must share vocabularies and
    tokenizers (``ConfigError`` naming the runs otherwise); decoding settings (beam, length penalty and
    limits) come from the first run.  ``int8``: every model quantised (see ``open_run``).
    """

    def __init__(self, run: str | Path | Sequence[str | Path], *, int8: bool = False) -> None:
        runs = [Path(r) for r in ([run] if isinstance(run, (str, Path)) else run)]
        if not runs:
            raise ConfigError("give at least one run folder")
        self.runs = runs
        self.run = runs[0]
        configs, models, codecs = [], [], []
        for r in runs:
            config, model, _ = open_run(r, (), int8=int8)
            if config.get("task") != "seq2seq":
                raise ConfigError(f"{r} holds a {config.get('task')!r} model, not a seq2seq one")
            codec = _open_codec(r)
            codec.lower_src = bool(config.get("lower_words"))
            configs.append(config)
            models.append(model)
            codecs.append(codec)
        for r, config, codec in zip(runs[1:], configs[1:], codecs[1:]):
            diff = _same_codec(codecs[0], codec)
            if bool(config.get("cmudict")) != bool(configs[0].get("cmudict")) or \
                    config["data"].get("drop_stress", False) != configs[0]["data"].get("drop_stress", False):
                diff.append("data format or stress marking")
            if diff:
                raise ConfigError(f"runs {runs[0]} and {r} cannot decode together: their {', '.join(diff)} "
                                  "differ; an ensemble needs runs trained on the same data with the same "
                                  "vocabularies")
        self.config, self.codec = configs[0], codecs[0]
        self.model = models[0] if len(models) == 1 else Seq2SeqEnsemble(models).eval()
        self.data = Seq2SeqDataConfig(**self.config["data"])

    def decode_kwargs(self, opts: DecodeOptions, warn: Callable[[str], None]) -> dict[str, Any]:
        """``translate``'s keyword arguments from declared decoding options (unset ones: the run's)."""
        return dict(beam=opts.beam, n_best=opts.n_best, length_penalty=opts.length_penalty, sample=opts.sample,
                    temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p, seed=opts.seed,
                    max_src_tokens=opts.max_src_tokens, warn=warn)

    def translate(self, texts: Sequence[str], *, beam: Optional[int] = None, n_best: int = 1,
                  length_penalty: Optional[float] = None, sample: bool = False, temperature: float = 1.0,
                  top_k: Optional[int] = None, top_p: Optional[float] = None,
                  seed: Optional[int] = None, max_src_tokens: Optional[int] = None,
                  warn: Optional[Callable[[str], None]] = None) -> list[list[Translation]]:
        """``n_best`` ``Translation``s per input text, best first.  Sources longer than ``max_src_tokens``
        are cut to that length, and ``warn`` (if given) hears how many were cut."""
        d = self.data
        DecodeOptions(beam=beam, n_best=n_best, length_penalty=length_penalty, sample=sample,
                      temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)  # checks them
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        src = [self.codec.src_ids(t) for t in texts]
        if max_src_tokens is not None:
            cut = [i for i, s in enumerate(src) if len(s) > max_src_tokens]
            if cut and warn is not None:
                warn(f"{len(cut)} source text(s) longer than {max_src_tokens} tokens were cut to that length "
                     f"(first: line {cut[0] + 1}, {len(src[cut[0]]):,} tokens); raise --max-src-tokens to keep more")
            src = [s[:max_src_tokens] for s in src]
        decoded = translate_ids(self.model, src, self.codec.src_vocab.pad_id, beam=beam or d.beam, n_best=n_best,
                                length_penalty=d.length_penalty if length_penalty is None else length_penalty,
                                max_len_ratio=d.max_len_ratio, max_len_extra=d.max_len_extra, sample=sample,
                                temperature=temperature, top_k=top_k, top_p=top_p, generator=gen)
        return [[Translation(self.codec.tgt_text(ids), score, list(ids)) for ids, score in hyps] for hyps in decoded]

    def attention(self, text: str, output: Translation | Sequence[int]) -> tuple[list[str], list[str],
                                                                              Optional[torch.Tensor]]:
        """Source tokens, output tokens (+ <eos>) and the attention weights ``(T, S)`` of ``output``.

        ``output`` is a ``Translation`` of ``text`` (or its token ids): the weights are those of the
        tokens the model wrote, not of a re-tokenisation of its detokenised text (which can differ,
        e.g. under BPE).
        """
        if len(self.runs) > 1:
            raise ConfigError("attention weights belong to one model: show them for one run, not an ensemble")
        c = self.codec
        src_tokens = c.src_tokens(text)
        out_ids = list(output.ids if isinstance(output, Translation) else output)
        b = seq2seq_batch([c.src_vocab.encode(src_tokens)], [out_ids], c.src_vocab.pad_id, c.tgt_vocab.pad_id,
                          c.tgt_vocab.bos_id, c.tgt_vocab.eos_id)
        with torch.inference_mode():
            _, weights = self.model(b.inputs, b.lengths, b.decoder_inputs)
        return src_tokens, c.tgt_vocab.decode(out_ids) + [EOS], None if weights is None else weights[0].clone()


def plot_attention(translator: Translator, texts: Sequence[str], outputs: Sequence[Translation],
                   out_dir: str | Path) -> list[Path]:
    """One heatmap PNG per sentence (``outputs[i]`` a translation of ``texts[i]``) in ``out_dir``; returns the paths."""
    from rnnkit.plots import attention_heatmap

    if len(translator.runs) > 1:
        raise ConfigError("attention weights belong to one model: plot them for one run, not an ensemble")
    if translator.model.config.attention == "none":
        raise ConfigError(f"{translator.run} was trained without attention: there are no weights to plot")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (text, output) in enumerate(zip(texts, outputs)):
        src, tgt, weights = translator.attention(text, output)
        path = out_dir / f"attention-{i + 1:03d}.png"
        attention_heatmap(weights.tolist(), src, tgt, path, title=text[:80])
        paths.append(path)
    return paths


def _looks_like_tsv(path: str, encoding: str) -> bool:
    """Whether the first line of a file that is not a comment holds a tab (a TSV file, not a dictionary)."""
    try:
        with open(path, encoding=encoding, errors="replace") as f:
            for line in f:
                if line.strip() and not line.startswith((";;;", "#")):
                    return "\t" in line
    except (OSError, LookupError):
        pass  # the reader says what is wrong with the file or the encoding
    return False


def _strip(texts: Sequence[str]) -> list[list[str]]:
    return [[ph.rstrip("012") for ph in t.split()] for t in texts]


def evaluate(run: str | Path | Sequence[str | Path], src: Optional[str] = None, tgt: Optional[str] = None,
             data_path: Optional[str] = None, beam: Optional[int] = None, encoding: Optional[str] = None,
             drop_stress: Optional[bool] = None, log: Callable[[str], None] = lambda message: None,
             int8: bool = False, length_penalty: Optional[float] = None) -> dict[str, Any]:
    """Score a trained run (or an ensemble: several runs, see ``Translator``) on line-aligned ``src``/``tgt``
    files or a TSV file ``data_path``; a CMUdict run also reads ``data_path`` as a pronouncing dictionary
    (``cmudict.dict`` with ``word(2)`` variants, or the 0.7b test split with repeated words; any case):
    every word once, right when the output equals any of its pronunciations (see ``ErrorRates``).

    ``beam`` and ``length_penalty``: None decodes with the run's.  ``drop_stress``: None scores as the run
    was trained; True scores a run that writes stress digits
    without them (outputs and references stripped: ``AH0`` = ``AH``), e.g. on the stress-free standard
    test split.  ``ConfigError`` when the references and the run disagree about stress marking.
    """
    t = Translator(run, int8=int8)
    enc = encoding or t.data.encoding
    cmudict = bool(t.config.get("cmudict"))
    d = t.data
    if drop_stress is False and d.drop_stress:
        raise ConfigError(f"{t.run} was trained with --drop-stress: its outputs have no stress to score")
    strip = bool(drop_stress) or d.drop_stress
    if src or tgt:
        if not (src and tgt):
            raise ConfigError("give both --src and --tgt")
        split = _pairs_split(read_parallel(src, tgt, enc))
        if cmudict:
            split.refs = [[p] for p in split.tgt]
    elif data_path and cmudict and not _looks_like_tsv(data_path, enc):
        entries = read_cmudict(data_path, enc, lower=True)
        split = _cmudict_split(entries, list(entries), False)
    elif data_path:
        split = _pairs_split(read_parallel_tsv(data_path, enc))
        if cmudict:
            split.refs = [[p] for p in split.tgt]
    else:
        raise ConfigError("give --src and --tgt (line-aligned files), or --data FILE.tsv"
                          + (" or a pronouncing dictionary" if cmudict else ""))
    b = beam or d.beam
    lp = d.length_penalty if length_penalty is None else length_penalty
    marked = False
    if cmudict:
        marked = any(ph[-1:].isdigit() for refs in split.refs or [] for r in refs for ph in r.split())
        trained_marked = not d.drop_stress and any(tok[-1:].isdigit() for tok in t.codec.tgt_vocab.tokens)
        if not strip and marked != trained_marked:
            raise ConfigError(f"{data_path or tgt} {'marks' if marked else 'does not mark'} stress but {t.run} "
                              f"{'writes' if trained_marked else 'does not write'} stress digits; pass "
                              "drop_stress (--drop-stress) to score without them")
        if d.drop_stress and marked:  # the run writes none: its references lose theirs
            split.refs = [[" ".join(p) for p in _dedup(_strip(refs))] for refs in split.refs or []]
            split.tgt = [refs[0] for refs in split.refs]
    scores, texts = _score(t.model, t.codec, split, cmudict, b, lp, d.max_len_ratio, d.max_len_extra)
    if cmudict and strip and not d.drop_stress:  # a stress-marking run scored without stress
        rates = ErrorRates()
        rates.update(_strip(texts), [_strip(refs) for refs in split.refs or []])
        scores.update(rates.compute())
        if not marked:  # the references have no stress: the model's NLL of them means nothing
            scores.update(loss=None, perplexity=None)
    return {"file": src or data_path, "runs": [str(r) for r in t.runs], "sentences": len(split.src), "beam": b,
            "length_penalty": lp, "drop_stress": strip, **scores}


def _dedup(prons: list[list[str]]) -> list[list[str]]:
    out: list[list[str]] = []
    for p in prons:
        if p not in out:
            out.append(p)
    return out
