"""Metric accumulators: ``reset() / update(...) / compute() -> dict``.

Each metric sums totals and counts over batches and divides only in
``compute``, so feeding a data set in batches gives the same numbers as
feeding it all at once, and every average is weighted by tokens (or items),
never a mean of per-batch means.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = [
    "Metric",
    "TokenNLL",
    "Accuracy",
    "ClassificationMetrics",
    "EntityF1",
    "TranslationMetrics",
    "edit_distance",
    "ErrorRates",
]

Number = Union[int, float, Tensor]


def _scalar(x: Number, name: str) -> float:
    """A Python number from a number or a one-element tensor."""
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"expected {name} to be a scalar, got a tensor of shape {tuple(x.shape)}")
        return x.detach().item()
    return x


class Metric:
    """Base class: ``__init__`` calls ``reset``; subclasses sum in ``update``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, *args, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> Dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError


class TokenNLL(Metric):
    """Negative log-likelihood per token, perplexity and bits per token.

    ``update(total_nats, num_tokens)`` takes the pair ``losses.sequence_nll``
    returns.  ``compute()`` gives ``loss`` (nats per token), ``perplexity``
    (``exp(loss)``), bits per token (``loss / ln 2``) and ``tokens``.  The bits are
    named for the token: ``bpc`` (bits per character, the default) or, with
    ``unit="word"``, ``bpw`` (bits per word); ``unit="token"`` gives ``bpt``.
    """

    BITS = {"char": "bpc", "word": "bpw", "token": "bpt"}

    def __init__(self, unit: str = "char") -> None:
        if unit not in self.BITS:
            raise ValueError(f"unit must be one of {sorted(self.BITS)}; got {unit!r}")
        self.bits_key = self.BITS[unit]
        super().__init__()

    def reset(self) -> None:
        self.total = 0.0  # summed nats (a Python float: double precision)
        self.count = 0  # tokens

    def update(self, total_nats: Number, num_tokens: Number) -> None:
        total = float(_scalar(total_nats, "total_nats"))
        count = _scalar(num_tokens, "num_tokens")
        if count != int(count) or count < 0:
            raise ValueError(f"expected num_tokens to be a count >= 0, got {count}")
        self.total += total
        self.count += int(count)

    def compute(self) -> Dict[str, float]:
        if self.count == 0:
            raise ValueError("TokenNLL.compute(): no tokens seen since reset()")
        loss = self.total / self.count
        try:
            perplexity = math.exp(loss)
        except OverflowError:
            perplexity = math.inf
        return {
            "loss": loss,
            "perplexity": perplexity,
            self.bits_key: loss / math.log(2),
            "tokens": self.count,
        }


class Accuracy(Metric):
    """Fraction of (unmasked) positions where the prediction equals the gold id.

    ``update(pred, gold, mask=None)``: ``gold`` is integer ids of any shape;
    ``pred`` is ids of the same shape, or scores with one extra last dimension
    (then its argmax is the prediction); ``mask`` is bool of ``gold``'s shape,
    True where a position counts.
    """

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, pred: Tensor, gold: Tensor, mask: Optional[Tensor] = None) -> None:
        if pred.dim() == gold.dim() + 1 and pred.shape[:-1] == gold.shape:
            pred = pred.argmax(-1)  # scores (..., C) -> ids (...)
        if pred.shape != gold.shape:
            raise ValueError(
                f"Accuracy: expected pred of gold's shape {tuple(gold.shape)} (ids) or "
                f"{tuple(gold.shape)} + (C,) (scores), got {tuple(pred.shape)}"
            )
        hit = pred == gold
        if mask is None:
            correct, total = int(hit.sum()), hit.numel()
        else:
            if mask.dtype != torch.bool or mask.shape != gold.shape:
                raise ValueError(
                    f"Accuracy: expected a bool mask of shape {tuple(gold.shape)}, "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
            correct, total = int((hit & mask).sum()), int(mask.sum())
        self.correct += correct
        self.total += total

    def compute(self) -> Dict[str, float]:
        if self.total == 0:
            raise ValueError("Accuracy.compute(): no positions seen since reset()")
        return {"accuracy": self.correct / self.total, "correct": self.correct, "total": self.total}


def _ratio(num: int, den: int) -> float:
    """``num / den``, and 0.0 when ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    return num / den if den else 0.0


class ClassificationMetrics(Metric):
    """Single-label classification: a confusion matrix and what follows from it.

    ``update(pred, gold)``: ``gold`` is ``(N,)`` class ids in ``[0, num_classes)``;
    ``pred`` is ``(N,)`` ids or ``(N, C)`` scores (then its argmax).  The state is
    the confusion matrix ``confusion[gold][pred]`` (rows gold, columns predicted),
    so batched updates sum to exactly one update with everything.

    ``compute()`` returns ``accuracy``, ``macro_precision``, ``macro_recall``,
    ``macro_f1``, ``total`` (items seen), ``per_class`` (``{label: {precision,
    recall, f1, support}}``, support = gold count) and ``confusion`` (list of lists).

    Zero division follows scikit-learn's default (``zero_division=0``): a class
    never predicted has precision 0, a class with no gold items has recall 0, and
    F1 is 0 when precision + recall is 0 (i.e. when it has no true positives).  Macro averages are unweighted means
    over the classes that occur in gold or in predictions — the classes
    scikit-learn's ``f1_score(gold, pred, average="macro")`` sees without a
    ``labels`` argument; a class absent from both would add only an arbitrary 0.
    """

    def __init__(self, num_classes: int, labels: Optional[Sequence[str]] = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1; got {num_classes!r}")
        if labels is not None:
            labels = [str(x) for x in labels]
            if len(labels) != num_classes or len(set(labels)) != num_classes:
                raise ValueError(f"labels must be {num_classes} distinct names; got {labels}")
        self.num_classes = num_classes
        self.labels: List[str] = labels if labels is not None else [str(i) for i in range(num_classes)]
        super().__init__()

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)  # (C gold, C pred)

    def update(self, pred: Tensor, gold: Tensor) -> None:
        C = self.num_classes
        if gold.dim() != 1 or gold.is_floating_point():
            raise ValueError(f"ClassificationMetrics: gold must be (N,) integer class ids; "
                             f"got {gold.dtype} of shape {tuple(gold.shape)}")
        if pred.dim() == 2 and pred.shape == (gold.shape[0], C):
            pred = pred.argmax(-1)  # scores (N, C) -> ids (N,)
        if pred.shape != gold.shape or pred.is_floating_point():
            raise ValueError(f"ClassificationMetrics: pred must be ids {tuple(gold.shape)} or scores "
                             f"{(gold.shape[0], C)}; got {pred.dtype} of shape {tuple(pred.shape)}")
        if gold.numel() == 0:
            return
        pred, gold = pred.detach().long().cpu(), gold.detach().long().cpu()
        for name, ids in (("pred", pred), ("gold", gold)):
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= C:
                raise ValueError(f"ClassificationMetrics: {name} ids must lie in [0, {C}); got [{lo}, {hi}]")
        self.matrix += torch.bincount(gold * C + pred, minlength=C * C).view(C, C)  # (C, C)

    def compute(self) -> Dict[str, Any]:
        m = self.matrix
        total = int(m.sum())
        if total == 0:
            raise ValueError("ClassificationMetrics.compute(): nothing seen since reset()")
        tp = m.diagonal().tolist()
        support = m.sum(1).tolist()  # gold count per class (row sums)
        predicted = m.sum(0).tolist()  # predicted count per class (column sums)
        per_class: Dict[str, Dict[str, float]] = {}
        present: List[Dict[str, float]] = []
        for k, name in enumerate(self.labels):
            p, r = _ratio(tp[k], predicted[k]), _ratio(tp[k], support[k])
            # 2PR / (P + R) written as 2 TP / (2 TP + FP + FN): exact in integers, 0 when TP = 0
            row = {"precision": p, "recall": r, "f1": _ratio(2 * tp[k], support[k] + predicted[k]),
                   "support": support[k]}
            per_class[name] = row
            if support[k] or predicted[k]:
                present.append(row)
        return {
            "accuracy": sum(tp) / total,
            "macro_precision": sum(r["precision"] for r in present) / len(present),
            "macro_recall": sum(r["recall"] for r in present) / len(present),
            "macro_f1": sum(r["f1"] for r in present) / len(present),
            "total": total,
            "per_class": per_class,
            "confusion": m.tolist(),
        }


class EntityF1(Metric):
    """Entity-level (chunk) precision, recall and F1 for BIO or BIOES tagging, via ``seqeval``.

    ``update(gold, pred)`` takes tag-string sentences (``[["B-PER", "I-PER", "O"], ...]``),
    one predicted sentence per gold sentence, of equal lengths.  An entity counts as
    found only if its type and both boundaries match exactly.  ``compute()`` returns the
    micro-averaged ``precision``, ``recall``, ``f1`` (over all entities, as CoNLL reports
    them), ``macro_f1`` (unweighted over entity types), ``support`` (gold entities),
    ``sentences`` and ``per_type`` (``{type: {precision, recall, f1, support}}``).

    Mode: seqeval's default, which chunks like the CoNLL-2000 ``conlleval`` script, so the
    numbers are comparable with published CoNLL results.  It is lenient with ill-formed
    sequences, as conlleval is: an ``I-X`` after ``O`` or after another type starts a new
    ``X`` entity rather than being dropped (seqeval's ``mode="strict"`` would drop it), and
    it understands ``E-``/``S-`` too, so the same chunking serves both schemes.  ``scheme``
    only says which prefixes are legal (BIO: B, I; BIOES: B, I, E, S; plus ``O``), and a tag
    outside it raises ``ValueError``.  A type never predicted (or never in gold) scores 0
    (``zero_division=0``); with no entity anywhere every score is 0.

    The sentences are kept until ``compute`` (chunks cannot straddle sentences, so this
    equals any batching of the same sentences).
    """

    SCHEMES = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}

    def __init__(self, scheme: str = "BIO") -> None:
        if scheme not in self.SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(self.SCHEMES)}; got {scheme!r}")
        self.scheme = scheme
        super().__init__()

    def reset(self) -> None:
        self.gold: List[List[str]] = []
        self.pred: List[List[str]] = []

    def _check(self, sent: Sequence[str], which: str, index: int) -> List[str]:
        prefixes = self.SCHEMES[self.scheme]
        sent = list(sent)
        for tag in sent:
            if not isinstance(tag, str) or not (tag == "O" or (
                    len(tag) > 2 and tag[1] == "-" and tag[0] in prefixes)):
                raise ValueError(f"EntityF1({self.scheme!r}): {which} sentence {index} has tag {tag!r}; "
                                 f"expected 'O' or one of {[p + '-TYPE' for p in prefixes]}")
        return sent

    def update(self, gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
        if isinstance(gold, str) or isinstance(pred, str) or len(gold) != len(pred):
            raise ValueError("EntityF1: expected gold and pred as equally many sentences (lists of tag strings); "
                             f"got {len(gold)} and {len(pred)}")
        for i, (g, p) in enumerate(zip(gold, pred)):
            if isinstance(g, str) or isinstance(p, str) or len(g) != len(p):
                raise ValueError(f"EntityF1: sentence {i}: gold and pred must be lists of tags of one length; "
                                 f"got {len(g)} and {len(p)}")
            self.gold.append(self._check(g, "gold", i))
            self.pred.append(self._check(p, "pred", i))

    def compute(self) -> Dict[str, Any]:
        if not self.gold:
            raise ValueError("EntityF1.compute(): no sentences seen since reset()")
        result: Dict[str, Any] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "macro_f1": 0.0, "support": 0,
                                  "sentences": len(self.gold), "per_type": {}}
        if all(t == "O" for sents in (self.gold, self.pred) for s in sents for t in s):
            return result  # no entity anywhere (seqeval would average over no types)
        from seqeval.metrics import classification_report  # lazy: an optional, heavy import

        report = classification_report(self.gold, self.pred, output_dict=True, zero_division=0)
        micro, macro = report.pop("micro avg"), report.pop("macro avg")
        report.pop("weighted avg", None)
        result.update(precision=float(micro["precision"]), recall=float(micro["recall"]),
                      f1=float(micro["f1-score"]), macro_f1=float(macro["f1-score"]), support=int(micro["support"]))
        result["per_type"] = {
            name: {"precision": float(r["precision"]), "recall": float(r["recall"]), "f1": float(r["f1-score"]),
                   "support": int(r["support"])}
            for name, r in sorted(report.items())
        }
        return result


def _count(x: Any) -> str:
    """``len(x)`` for messages, or a description when ``x`` is a lone string."""
    return "a single string" if isinstance(x, str) else str(len(x))


class TranslationMetrics(Metric):
    """Corpus BLEU and chrF for translation, via ``sacrebleu``.

    ``update(hypotheses, references)`` takes detokenised strings, one reference per
    hypothesis (equally many; a mismatch raises ``ValueError``).  The strings are kept
    until ``compute``, because BLEU and chrF are corpus statistics (n-gram counts summed
    over all sentences before the precisions are taken), not means of per-batch scores:
    any batching of the same sentences gives the same numbers as one ``update``.

    ``compute()`` returns ``bleu`` and ``chrf`` (0-100, as sacrebleu reports them),
    ``bleu_signature`` and ``chrf_signature`` (sacrebleu's ``get_signature()`` strings,
    e.g. ``"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"``, to quote next
    to the score) and ``sentences``.  Settings are sacrebleu's defaults: ``BLEU()``
    (13a tokenisation, mixed case, exponential smoothing) and ``CHRF()`` (chrF2,
    character 6-grams, no word n-grams), so the scores equal ``sacrebleu.corpus_bleu`` /
    ``sacrebleu.corpus_chrf`` and the ``sacrebleu`` command line on the same text.
    With no sentences seen ``compute`` raises ``ValueError`` (as the other metrics do)
    rather than reporting a meaningless 0.
    """

    def reset(self) -> None:
        self.hypotheses: List[str] = []
        self.references: List[str] = []

    def update(self, hypotheses: Sequence[str], references: Sequence[str]) -> None:
        if isinstance(hypotheses, str) or isinstance(references, str) or len(hypotheses) != len(references):
            raise ValueError("TranslationMetrics: expected hypotheses and references as equally many strings "
                             f"(one reference per hypothesis); got {_count(hypotheses)} and {_count(references)}")
        for which, texts in (("hypothesis", hypotheses), ("reference", references)):
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise ValueError(f"TranslationMetrics: {which} {i} must be a detokenised string; "
                                     f"got {type(t).__name__}")
        self.hypotheses.extend(hypotheses)
        self.references.extend(references)

    def compute(self) -> Dict[str, Any]:
        if not self.hypotheses:
            raise ValueError("TranslationMetrics.compute(): no sentences seen since reset()")
        from sacrebleu.metrics import BLEU, CHRF  # lazy: keeps `import rnnkit` light

        bleu, chrf = BLEU(), CHRF()
        refs = [self.references]  # sacrebleu takes reference streams: one stream, one reference per sentence
        return {
            "bleu": float(bleu.corpus_score(self.hypotheses, refs).score),
            "chrf": float(chrf.corpus_score(self.hypotheses, refs).score),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
            "sentences": len(self.hypotheses),
        }


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (of tokens, phones or characters).

    The least number of insertions, deletions and substitutions (each costing 1) that
    turn ``a`` into ``b``; items are compared with ``==``.  Dynamic programming in
    ``O(len(a) * len(b))`` time and two rows of ``O(min(len(a), len(b)))`` memory.
    """
    a, b = list(a), list(b)
    if len(a) < len(b):
        a, b = b, a  # the distance is symmetric; keep the rows as short as the shorter sequence
    prev = list(range(len(b) + 1))  # distance from a[:0] to b[:j]
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)  # distance from a[:i] to b[:0] is i deletions
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1,  # delete x
                         cur[j - 1] + 1,  # insert y
                         prev[j - 1] + (x != y))  # substitute (or match)
        prev = cur
    return prev[-1]


class ErrorRates(Metric):
    """Word and phone error rates for spelling-to-pronunciation (grapheme-to-phoneme).

    ``update(hypotheses, references)``: each hypothesis is one word's predicted phone list
    (``["K", "AE1", "T"]``); each reference is that word's list of acceptable
    pronunciations, each a phone list (``[["T", "AH0", "M", "EY1", "T", "OW2"],
    ["T", "AH0", "M", "AA1", "T", "OW2"]]``), so a word with several pronunciations is
    right if the hypothesis matches any of them.  Equally many hypotheses and references
    are required, and every word needs at least one non-empty pronunciation.

    Scoring follows Yao & Zweig (2015): for each word the reference closest to the
    hypothesis (least ``edit_distance``) is used; ties go to the shorter reference (the
    larger denominator would flatter PER), then to the one listed first.

    In formulas, over words ``w`` with hypothesis ``h_w`` and references ``R_w``, the chosen
    reference ``r_w = argmin_{r in R_w} (ED(h_w, r), len(r))``:
    ``WER = #{w : ED(h_w, r_w) > 0} / #words`` and ``PER = sum_w ED(h_w, r_w) / sum_w len(r_w)``.

    * ``wer``: fraction of words whose hypothesis equals no reference exactly (closest
      distance > 0);
    * ``per``: summed closest edit distances over summed phones of the chosen references
      (a corpus ratio, not a mean of per-word rates; it can exceed 1 when hypotheses are
      much longer than the references);
    * ``words`` and ``phones``: the counts the two rates divide by.

    Only integer counts are kept, so batched updates equal one update with everything.
    """

    def reset(self) -> None:
        self.words = 0
        self.word_errors = 0
        self.phones = 0  # reference phones of the chosen (closest) pronunciations
        self.phone_errors = 0  # summed edit distances to them

    @staticmethod
    def _phones(x: Any, what: str) -> List[str]:
        if isinstance(x, str) or not all(isinstance(p, str) for p in x):
            raise ValueError(f"ErrorRates: {what} must be a list of phone strings (e.g. ['K', 'AE1', 'T']); "
                             f"got {x!r}")
        return list(x)

    def update(self, hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> None:
        if isinstance(hypotheses, str) or isinstance(references, str) or len(hypotheses) != len(references):
            raise ValueError("ErrorRates: expected hypotheses and references for equally many words; "
                             f"got {_count(hypotheses)} and {_count(references)}")
        scored = []  # check every word before changing any total
        for i, (hyp, prons) in enumerate(zip(hypotheses, references)):
            hyp = self._phones(hyp, f"hypothesis {i}")
            if isinstance(prons, str) or len(prons) == 0:
                raise ValueError(f"ErrorRates: reference {i} must be a non-empty list of pronunciations "
                                 f"(each a list of phones); got {prons!r}")
            best = None  # (distance, reference length)
            for k, pron in enumerate(prons):
                pron = self._phones(pron, f"reference {i} pronunciation {k} (a word's references are a "
                                          "list of pronunciations, each a list of phones)")
                if not pron:
                    raise ValueError(f"ErrorRates: reference {i} pronunciation {k} is empty")
                key = (edit_distance(hyp, pron), len(pron))
                if best is None or key < best:  # least distance, then shorter, then first listed
                    best = key
            scored.append(best)
        for dist, length in scored:
            self.words += 1
            self.word_errors += int(dist > 0)
            self.phone_errors += dist
            self.phones += length

    def compute(self) -> Dict[str, Any]:
        if self.words == 0:
            raise ValueError("ErrorRates.compute(): no words seen since reset()")
        return {
            "wer": self.word_errors / self.words,
            "per": self.phone_errors / self.phones,
            "words": self.words,
            "phones": self.phones,
        }
