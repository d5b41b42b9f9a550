"""Generation shared by every model that predicts the next token.

A model takes part through one function, its *step*::

    step(tokens: (B, t) long, state) -> (logits: (B, t, V), state)

It reads ``t >= 1`` tokens per row and returns the scores of the token that
follows each of them, plus the new state.  ``state`` is whatever the model
carries (``None`` at the start means "fresh"); decoding never looks inside it.
A search that reorders or replicates rows (batched beam search: ``B = batch *
beams``) needs one more thing: ``state.index_select(index)`` picks batch rows,
as ``rnnkit.nn.state.State`` does.  Many samples at once are simply many rows.

Everything here works on whole batches with tensor ops; the only Python loop
is over time steps.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Protocol, Tuple

import torch
from torch import Tensor

from rnnkit.errors import ConfigError

__all__ = [
    "DecoderState", "Step", "validate_sampling", "filter_logits", "sample", "greedy", "generate",
]

# Cumulative probabilities are float32 sums; a token whose preceding mass
# falls short of top_p by less than this is treated as reaching it.
_TOP_P_TOLERANCE = 1e-6


class DecoderState(Protocol):
    """What a batched search needs from a model's state."""

    def index_select(self, index: Tensor) -> "DecoderState":
        """The state of batch rows ``index`` (a ``(B',)`` long tensor), in that order."""
        ...


Step = Callable[[Tensor, Any], Tuple[Tensor, Any]]


def validate_sampling(temperature: float, top_k: Optional[int], top_p: Optional[float]) -> None:
    """Raise ``ConfigError`` unless temperature > 0, top_k >= 1 and 0 < top_p <= 1."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not (0 < temperature < math.inf):
        raise ConfigError(
            f"temperature must be a number > 0 (use greedy decoding for 'temperature 0'), "
            f"got {temperature!r}"
        )
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1
    ):
        raise ConfigError(f"top_k must be an integer >= 1 (or None for no limit), got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not (0 < top_p <= 1)
    ):
        raise ConfigError(f"top_p must be in (0, 1] (or None for no limit), got {top_p!r}")


def filter_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
) -> Tensor:
    """Temperature-scaled ``(B, V)`` logits with the filtered-out entries set to -inf.

    ``top_k`` keeps exactly the k highest entries of each row (ties broken
    arbitrarily).  ``top_p`` (nucleus) then keeps the smallest set of most
    probable tokens whose probability sums to at least ``top_p``; the top token
    always stays.
    """
    validate_sampling(temperature, top_k, top_p)
    if logits.dim() != 2:
        raise ValueError(f"filter_logits: expected logits of shape (B, V), got {tuple(logits.shape)}")
    logits = logits / temperature  # (B, V), a new tensor: the caller's stays untouched
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        keep_idx = logits.topk(top_k, dim=-1).indices  # (B, k)
        drop = torch.ones_like(logits, dtype=torch.bool).scatter_(-1, keep_idx, False)  # (B, V)
        logits = logits.masked_fill(drop, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V) each
        probs = sorted_logits.float().softmax(dim=-1)  # (B, V)
        mass_before = probs.cumsum(dim=-1) - probs  # (B, V): mass of strictly better tokens
        drop_sorted = mass_before >= top_p - _TOP_P_TOLERANCE  # (B, V); column 0 is never dropped
        drop = torch.empty_like(drop_sorted).scatter_(-1, order, drop_sorted)  # back to vocab order
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def greedy(logits: Tensor) -> Tensor:
    """The highest-scoring id of each row: ``(B, V) -> (B,)`` long."""
    return logits.argmax(dim=-1)


def sample(
    logits: Tensor,
    generator: Optional[torch.Generator] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
) -> Tensor:
    """One id per row drawn from ``softmax(filter_logits(logits, ...))``: ``(B, V) -> (B,)`` long."""
    probs = filter_logits(logits, temperature, top_k, top_p).float().softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def generate(
    step: Step,
    state: Any,
    prime: Tensor,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    greedy: bool = False,
    eos_id: Optional[int] = None,
) -> Tensor:
    """Continue each row of ``prime`` by ``length`` tokens.

    Args:
        step: the model's step function (see the module docstring).
        state: the model's state before ``prime`` (``None`` for a fresh one).
        prime: ``(B, P)`` long, ``P >= 1``; fed in one ``step`` call, then one
            token per call.
        length: how many new tokens to produce per row.
        temperature, top_k, top_p: sampling filters (see ``filter_logits``).
        generator: the random source; a seeded one makes the output reproducible.
        greedy: take the argmax instead of sampling.
        eos_id: a row that produced it is finished and keeps producing it; the
            loop stops once every row is finished, padding the rest with it.

    Returns:
        ``(B, length)`` long: only the new tokens.
    """
    validate_sampling(temperature, top_k, top_p)
    if prime.dim() != 2 or prime.shape[1] < 1:
        raise ValueError(f"generate: expected prime of shape (B, P) with P >= 1, got {tuple(prime.shape)}")
    if prime.dtype.is_floating_point or prime.dtype == torch.bool:
        raise ValueError(f"generate: expected integer token ids in prime, got dtype {prime.dtype}")
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
        raise ConfigError(f"length must be an integer >= 0, got {length!r}")
    B = prime.shape[0]
    if length == 0:
        return prime.new_empty((B, 0), dtype=torch.long)

    def pick(scores: Tensor) -> Tensor:  # (B, V) -> (B,)
        if greedy:
            return scores.argmax(dim=-1)
        return sample(scores, generator, temperature, top_k, top_p)

    with torch.inference_mode():
        logits, state = step(prime.long(), state)  # (B, P, V)
        if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(prime.shape):
            raise ValueError(
                f"generate: step must return logits of shape (B, t, V) = {tuple(prime.shape)} + (V,), "
                f"got {tuple(logits.shape)}"
            )
        finished = torch.zeros(B, dtype=torch.bool, device=prime.device) if eos_id is not None else None
        out = []
        for i in range(length):
            token = pick(logits[:, -1])  # (B,)
            if finished is not None:
                token = token.masked_fill(finished, eos_id)  # finished rows stay finished
                finished = finished | (token == eos_id)
            out.append(token)
            if i == length - 1 or (finished is not None and bool(finished.all())):
                break
            logits, state = step(token.unsqueeze(1), state)  # (B, 1, V)
        tokens = torch.stack(out, dim=1)  # (B, n) with n <= length
        if tokens.shape[1] < length:  # stopped early: every row is finished
            tokens = torch.cat([tokens, tokens.new_full((B, length - tokens.shape[1]), eos_id)], dim=1)
    return tokens.clone()  # a normal tensor, not an inference one: callers may edit it in place
