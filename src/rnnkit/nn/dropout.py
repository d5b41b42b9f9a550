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


class Dropout(nn.Module):
    """:func:`dropout` as a module (active in training mode only), like ``torch.nn.Dropout``."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
