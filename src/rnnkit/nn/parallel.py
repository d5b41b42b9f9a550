"""Parallel scans of the diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t`` over time.

Two forms, both chunked: the sequence is cut into chunks of ``CHUNK`` steps, every
chunk is scanned in parallel from a zero state, and the chunks are then joined
one after another by their carried state (``T / CHUNK`` cheap steps).  Within a
chunk the decay products span at most ``CHUNK`` steps, which keeps the numbers
where float32 is accurate however long the sequence; across chunks the start
state enters linearly, so it may have any sign.

* ``log_scan`` (minGRU, minLSTM): ``a_t > 0`` and ``b_t > 0`` given by their logs,
  the log-space (Heinsen) scan ``log h_t = A_t + logcumsumexp_s(log b_s - A_s)``
  with ``A_t = sum_{s<=t} log a_s``;
* ``invariant_scan`` (LRU, complex): one ``a`` for every step, any ``b_t``; a
  Hillis-Steele scan within each chunk: ``log2 CHUNK`` rounds, round r adding
  ``a^d`` times the partial sum ``d = 2^r`` steps back, with ``a^d = exp(d log a)``
  (no division, no product of many factors).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK = 64  # steps per chunk
LOG_ZERO = -1e4  # log b at pad steps: exp of it is 0, and unlike -inf it keeps logcumsumexp's gradient finite


def _chunks(t: Tensor, chunk: int, fill: float) -> Tensor:
    """``(B, T, K)`` -> ``(B, n, chunk, K)``, the last chunk padded with ``fill``."""
    B, T, K = t.shape
    n = math.ceil(T / chunk)
    if n * chunk != T:
        t = F.pad(t, (0, 0, 0, n * chunk - T), value=fill)
    return t.view(B, n, chunk, K)


def _join(local: Tensor, decay: Tensor, h0: Tensor, T: int) -> Tensor:
    """Chunk-local states ``(B, n, C, K)`` (from zero) and the decay products since each chunk's start
    (``(B, n, C, K)``, or ``(C, K)`` for all chunks alike) plus the start ``h0`` ``(B, K)`` -> every step's
    state ``(B, T, K)``: ``h = local + decay * (the state before the chunk)``."""
    n = local.shape[1]
    ends = decay[..., -1, :].expand(local.shape[0], n, -1) if decay.dim() == 2 else decay[:, :, -1]  # (B, n, K)
    # one view per chunk, taken once: indexing ``local[:, k, -1]`` inside the loop would give each
    # of the n slices a backward that writes a zero tensor the size of ``local`` (n^2 work in all)
    lasts, ends_ = local[:, :, -1].unbind(1), ends.unbind(1)  # n x (B, K) each
    starts = [h0]
    for k in range(n - 1):  # the state each chunk starts from
        starts.append(lasts[k] + ends_[k] * starts[-1])
    h = local + decay * torch.stack(starts, 1).unsqueeze(2)  # (B, n, C, K)
    return h.flatten(1, 2)[:, :T]


def log_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, chunk: Optional[int] = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for ``log_a``, ``log_b`` ``(B, T, K)`` from ``h0`` ``(B, K)`` -> ``(B, T, K)``."""
    T = log_a.shape[1]
    chunk = min(chunk or CHUNK, T)
    la = _chunks(log_a, chunk, 0.0)  # (B, n, C, K)
    lb = _chunks(log_b, chunk, LOG_ZERO)
    A = la.cumsum(2)  # log of the decay product since the chunk's start
    local = torch.exp(A + torch.logcumsumexp(lb - A, dim=2))  # (B, n, C, K) from a zero start
    return _join(local, torch.exp(A), h0, T)


def invariant_scan(log_a: Tensor, b: Tensor, h0: Tensor, chunk: Optional[int] = None) -> Tensor:
    """``h_t = a h_{t-1} + b_t`` with one ``a = exp(log_a)`` ``(K,)`` for every step (LRU's lambda, complex):
    ``b`` ``(B, T, K)`` from ``h0`` ``(B, K)`` -> ``(B, T, K)``.  Hillis-Steele within chunks with the
    powers ``a^(2^r) = exp(2^r log a)``, exact for any ``|a| <= 1``."""
    T = b.shape[1]
    chunk = min(chunk or CHUNK, T)
    b = _chunks(b, chunk, 0.0)  # (B, n, C, K)
    d = 1
    while d < chunk:
        b = b + torch.exp(d * log_a) * F.pad(b[:, :, :-d], (0, 0, d, 0))
        d *= 2
    steps = torch.arange(1, chunk + 1, device=b.device, dtype=log_a.real.dtype).unsqueeze(1)  # (C, 1)
    return _join(b, torch.exp(steps * log_a), h0, T)  # decay a^(j+1) at step j of a chunk: (C, K)
