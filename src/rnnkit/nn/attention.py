"""Attention over a memory of encoder states: ``(query, keys, memory, mask) -> (context, weights)``.

Three scores, one interface:

* ``bahdanau`` (additive): ``e_s = v . tanh(W_q q + W_k m_s)``;
* ``dot`` (Luong): ``e_s = q . m_s`` (query and memory of the same size);
* ``general`` (Luong): ``e_s = q . (W m_s)``.

Everything that depends only on the memory (``W_k m`` or ``W m``) is computed
once per source by ``keys(memory)``; a decoder step then costs one small
product.  A query may be one step ``(B, Q)`` or every step at once ``(B, T, Q)``
(Luong attention without input feeding scores all target steps in one batched
product).  Source pads get a score of -inf, so their weight is exactly 0.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from rnnkit.nn.onednn import Linear

SCORES = ("bahdanau", "dot", "general")


class Attention(nn.Module):
    """Score a query against each memory position; return the weighted memory and the weights."""

    def __init__(self, score: str, query_size: int, memory_size: int, attention_size: Optional[int] = None) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"attention score must be one of {SCORES}, got {score!r}")
        self.score, self.query_size, self.memory_size = score, query_size, memory_size
        if score == "dot" and query_size != memory_size:
            raise ValueError(f"dot attention needs query_size == memory_size, got {query_size} and {memory_size}; "
                             "use 'general' to learn a map between them")
        if score == "bahdanau":
            a = attention_size or query_size
            self.query_proj = Linear(query_size, a, bias=False)
            self.key_proj = Linear(memory_size, a, bias=True)
            self.v = nn.Linear(a, 1, bias=False)
        elif score == "general":
            self.key_proj = Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """The memory-only part of the score, computed once: ``(B, S, M) -> (B, S, A)``."""
        return memory if self.score == "dot" else self.key_proj(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor,
                mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``query (B, Q)`` or ``(B, T, Q)``; ``keys`` from ``keys(memory)``; ``memory (B, S, M)``;
        ``mask (B, S)`` bool, True on real positions (None: all real).

        Returns ``context`` ``(B, [T,] M)`` and ``weights`` ``(B, [T,] S)`` (rows sum to 1, 0 on pads).
        """
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query  # (B, T, Q)
        if self.score == "bahdanau":
            # (B, T, 1, A) + (B, 1, S, A) -> (B, T, S)
            scores = self.v(torch.tanh(self.query_proj(q).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.bmm(q, keys.transpose(1, 2))  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S); exp(-inf) is exactly 0
        context = torch.bmm(weights, memory)  # (B, T, M)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    def extra_repr(self) -> str:
        return f"score={self.score!r}, query_size={self.query_size}, memory_size={self.memory_size}"
