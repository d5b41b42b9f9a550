"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?").

Gates and candidate read the input alone, so the recurrence is linear in ``h`` and
a whole sequence is one parallel scan (``rnnkit.nn.parallel.log_scan``):

    minGRU:  z_t = sigmoid(W_z x_t + b_z),  h~_t = g(W_h x_t + b_h)
             h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
    minLSTM: f_t = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i),  h~_t = g(W_h x_t + b_h)
             f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
             h_t = f'_t * h_{t-1} + i'_t * h~_t

with the paper's ``g(x) = x + 1/2`` for ``x >= 0`` and ``sigmoid(x)`` below, which keeps
``h~ > 0`` so that the scan runs in log space:

    log z = -softplus(-k),  log(1 - z) = -softplus(k)
    log f' = -softplus(log i - log f),  log i' = -softplus(log f - log i)
    log g(x) = log(x + 1/2) for x >= 0, -softplus(-x) below.

The state is ``(h, None)``: ``h`` ``(B, H)`` is both the output and what the next step reads.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.base import SequenceCell, pad_mask
from rnnkit.nn.parallel import LOG_ZERO, log_scan
from rnnkit.nn.state import State


def g(x: Tensor) -> Tensor:
    """The paper's positive activation: ``x + 1/2`` for ``x >= 0``, ``sigmoid(x)`` below (continuous at 0)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """``log g(x)``, computed without forming ``g`` (stable for very negative ``x``)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class _MinCell(SequenceCell):
    """One ``Linear(I, G*H)`` for every gate and the candidate; subclasses say what the blocks mean."""

    blocks: int  # G

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.state_sizes = (hidden_size, None)
        self.weight = nn.Parameter(torch.empty(self.blocks * hidden_size, input_size))  # (G*H, I)
        self.bias = nn.Parameter(torch.empty(self.blocks * hidden_size)) if bias else None  # (G*H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``±1/sqrt(I)``, as ``torch.nn.Linear``."""
        bound = 1.0 / math.sqrt(self.input_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _project(self, x: Tensor) -> tuple[Tensor, ...]:
        return F.linear(x, self.weight, self.bias).chunk(self.blocks, dim=-1)  # G x (..., H)

    def _log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``log a`` and ``log b`` of ``h_t = a_t h_{t-1} + b_t``, each ``(B, T, H)``."""
        raise NotImplementedError

    def parallel(self, x: Tensor, state: State, keep: Optional[Tensor]) -> tuple[Tensor, State]:
        log_a, log_b = self._log_coefficients(x)  # (B, T, H) each
        # a pad leaves h alone: a = 1, b = 0
        h = log_scan(pad_mask(keep, log_a, 0.0), pad_mask(keep, log_b, LOG_ZERO), state.h)  # (B, T, H)
        return h, State(h[:, -1])


class MinGRUCell(_MinCell):
    """minGRU: ``h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t + b_h)``, ``z_t = sigmoid(W_z x_t + b_z)``.

    ``weight`` ``(2H, I)`` holds the blocks z, h~ in that order.
    """

    blocks = 2

    def step(self, x: Tensor, state: State, gates: Optional[dict[str, Tensor]] = None) -> State:
        k, cand = self._project(x)  # (B, H) each
        z = torch.sigmoid(k)  # update gate: how much of the candidate to take
        if gates is not None:
            gates["update gate"] = z
        return State((1 - z) * state.h + z * g(cand))

    def _log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, cand = self._project(x)  # (B, T, H) each
        return -F.softplus(k), -F.softplus(-k) + log_g(cand)  # log(1 - z), log z + log h~


class MinLSTMCell(_MinCell):
    """minLSTM: ``h_t = f'_t h_{t-1} + i'_t g(W_h x_t + b_h)`` with the normalised gates
    ``f' = f / (f + i)``, ``i' = i / (f + i)``.

    ``weight`` ``(3H, I)`` holds the blocks f, i, h~ in that order.
    """

    blocks = 3

    def step(self, x: Tensor, state: State, gates: Optional[dict[str, Tensor]] = None) -> State:
        kf, ki, cand = self._project(x)  # (B, H) each
        f = torch.sigmoid(kf)  # forget gate
        i = torch.sigmoid(ki)  # input gate
        f, i = f / (f + i), i / (f + i)  # normalised: f' + i' = 1
        if gates is not None:
            gates["forget gate"], gates["input gate"] = f, i
        return State(f * state.h + i * g(cand))

    def _log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        kf, ki, cand = self._project(x)  # (B, T, H) each
        diff = F.softplus(-kf) - F.softplus(-ki)  # log i - log f
        return -F.softplus(diff), -F.softplus(-diff) + log_g(cand)  # log f', log i' + log h~
