"""Dropout that is cheap on CPUs.

``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, which on CPU runs
a slow per-element path: on this project's 2-core machine, one thread, it took 1.8-3.3x
as long as drawing uniform numbers and comparing them with ``p``, and whole training
steps ran 1-7% faster with the latter (``benchmarks/dropout.py``).  :func:`dropout` draws
the same Bernoulli(1 - p) mask that way on CPU and defers to torch's kernel elsewhere.
The masks are different draws from the same distribution, so a run's numbers change
but not what it learns on average.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

USE_TORCH = False  # benchmarks flip this to time torch's own kernel against ours


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or USE_TORCH or p >= 1.0:
        return F.dropout(x, p, training=True)
    keep = torch.rand(x.shape, device=x.device).ge_(p)  # float32 draws: the exact p, whatever x's dtype
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def locked_dropout(x: Tensor, p: float, training: bool = True, time_dim: int = 1) -> Tensor:
    """Variational ("locked") dropout: one mask per sequence, the same at every time step.

    The mask has ``x``'s shape with size 1 along ``time_dim`` (``(B, 1, F)`` for a batch-first
    ``(B, T, F)``), so a unit dropped for a sequence stays dropped over all its steps (Gal &
    Ghahramani 2016; the AWD-LSTM's input, output and between-layer dropout).  Kept units are
    scaled by ``1 / (1 - p)``; identity when not training or ``p == 0``.
    """
    if not training or p == 0.0:
        return x
    shape = list(x.shape)
    shape[time_dim] = 1
    if p >= 1.0:
        return x * 0.0
    keep = torch.rand(shape, device=x.device).ge_(p)  # (B, 1, F) for batch-first input
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Module):
    """:func:`dropout` as a module (active in training mode only), like ``torch.nn.Dropout``;
    with ``locked=True``, :func:`locked_dropout` over batch-first ``(B, T, ...)`` input."""

    def __init__(self, p: float = 0.5, locked: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.locked = locked

    def forward(self, x: Tensor) -> Tensor:
        if self.locked:
            return locked_dropout(x, self.p, self.training, time_dim=1)
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", locked" if self.locked else "")
