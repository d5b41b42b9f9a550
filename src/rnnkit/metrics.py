"""Metric accumulators: ``reset() / update(...) / compute() -> dict``.

Each metric sums totals and counts over batches and divides only in
``compute``, so feeding a data set in batches gives the same numbers as
feeding it all at once, and every average is weighted by tokens (or items),
never a mean of per-batch means.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Union

import torch
from torch import Tensor

__all__ = ["Metric", "TokenNLL", "Accuracy"]

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
    (``exp(loss)``), ``bpc`` (``loss / ln 2``: bits per token, which is bits per
    character for a character model) and ``tokens``.
    """

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
            "bpc": loss / math.log(2),
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
