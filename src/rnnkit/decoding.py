"""Generation shared by every model that predicts the next token.

A model takes part through one function, its *step*::

    step(tokens: (B, t) long, state) -> (logits: (B, t, V), state)

It reads ``t >= 1`` tokens per row and returns the scores of the token that
follows each of them, plus the new state.  ``state`` is whatever the model
carries (``None`` at the start means "fresh"); decoding never looks inside it.
A search that reorders or replicates rows (batched beam search: ``B = batch *
beams``) needs one more thing: ``state.index_select(index)`` picks batch rows,
as ``rnnkit.nn.state.State`` does; a state that can replicate rows more cheaply
than copying them (a seq2seq state shares the source memory among the beams of a
sentence) may also offer ``state.repeat_interleave(k)``.  Many samples at once are simply many rows.

What it offers:

* ``filter_logits``, ``sample``, ``greedy``: pick the next id from ``(B, V)`` logits;
* ``generate``: continue a prime by sampling (or argmax), e.g. a language model;
* ``greedy_search``: argmax decoding from a start token to eos / a per-row length
  limit, e.g. a seq2seq model;
* ``beam_search``: batched beam search with a GNMT length penalty and n-best
  lists (``Hypothesis``);
* ``ensemble_step``: several models' steps as one step (the mean of their
  log-probabilities), for every search above.

Everything here works on whole batches with tensor ops; the only Python loop
is over time steps.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, List, NamedTuple, Optional, Protocol, Tuple, Union

import torch
from torch import Tensor

from rnnkit.errors import ConfigError
from rnnkit.options import opt, validate

__all__ = [
    "MAX_BEAM", "Sampling", "DecoderState", "Step", "validate_sampling", "filter_logits", "sample", "greedy", "generate",
    "Hypothesis", "greedy_search", "beam_search", "EnsembleState", "ensemble_step",
]

# Cumulative probabilities are float32 sums; a token whose preceding mass
# falls short of top_p by less than this is treated as reaching it.
_TOP_P_TOLERANCE = 1e-6
MAX_BEAM = 64  # the widest beam any front end accepts


@dataclass
class Sampling:
    """How a token is sampled; shared by ``rnnkit generate``, ``translate --sample``, ``chat`` and the
    server's requests, which take their options and bounds from these declarations."""

    temperature: float = opt(1.0, gt=0, le=100, help="> 0; lower is more conservative")
    top_k: Optional[int] = opt(None, ge=1, help="sample among the k most likely tokens")
    top_p: Optional[float] = opt(None, gt=0, le=1,
                                 help="nucleus sampling: the smallest set of tokens with this probability")
    seed: Optional[int] = opt(None, ge=0, le=2**63 - 1, help="random seed: the same seed gives the same samples")

    def __post_init__(self) -> None:
        validate(self)


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
    """One id per row drawn from ``softmax(filter_logits(logits, ...))``: ``(B, V) -> (B,)`` long.

    The draw is ``torch.multinomial``'s: the same ids from the same generator state.
    """
    score, token = _scored_sample(logits, generator, temperature, top_k, top_p)  # (B,) each
    _check_draws(score)
    return token


def _scored_sample(logits: Tensor, generator: Optional[torch.Generator], temperature: float,
                   top_k: Optional[int], top_p: Optional[float]) -> Tuple[Tensor, Tensor]:
    """``sample``'s draw and the winning score (``_draw``), unchecked: ``(B, V) -> ((B,), (B,))``.  The filter
    is skipped where it would change nothing (temperature 1, no top-k or top-p), the same values either way."""
    if temperature != 1 or top_k is not None or top_p is not None:
        logits = filter_logits(logits, temperature, top_k, top_p)
    return _draw(logits.float().softmax(dim=-1), generator)


_UNCHECKED = object()
_RACE_IS_MULTINOMIAL: object = _UNCHECKED  # see _race_is_multinomial()
_BAD_PROBS = "probability tensor contains either `inf`, `nan` or element < 0"  # torch.multinomial's words


def _race_is_multinomial() -> bool:
    """Whether ``_draw``'s race gives ``torch.multinomial``'s draws in this torch: checked once per process on
    a few distributions and seeds, the ids and the generator state afterwards."""
    global _RACE_IS_MULTINOMIAL
    if _RACE_IS_MULTINOMIAL is _UNCHECKED:
        probs = torch.rand(3, 50, generator=torch.Generator().manual_seed(0)).pow(4)  # (3, 50), uneven
        probs = probs / probs.sum(-1, keepdim=True)
        same = True
        for seed in range(4):
            ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            for _ in range(3):
                same &= torch.equal(_race(probs, ours)[1], torch.multinomial(probs, 1, generator=theirs)[:, 0])
            same &= torch.equal(ours.get_state(), theirs.get_state())
        _RACE_IS_MULTINOMIAL = bool(same)
    return bool(_RACE_IS_MULTINOMIAL)


def _draw(probs: Tensor, generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
    """One draw per row of ``probs`` ``(..., V)`` (softmax output): ``(score, id)``, each ``probs.shape[:-1]``.

    ``torch.multinomial`` draws one sample as a race, ``argmax(p / q)`` with ``q ~ Exp(1)``, after checking
    the probabilities (their minimum, maximum and row sums, each read back), which at batch 1 costs more
    than the draw (measured on one row of 65: 14 us a call against 5 us for the race alone).  Here the
    race runs alone, with the same random numbers, so the ids are ``multinomial``'s;
    the check is left to the caller, on the winning scores (``_check_draws``): one is NaN exactly when
    its row held a NaN, which is what softmax makes of the invalid logits (NaN, +inf, or every one -inf).
    Where the race is not ``multinomial``'s (``_race_is_multinomial``), ``multinomial`` itself draws.
    """
    if probs.device.type != "cpu" or not _race_is_multinomial():
        flat = probs.reshape(-1, probs.shape[-1])
        token = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
        return probs.new_zeros(token.shape), token  # multinomial has checked them
    return _race(probs, generator)


def _race(probs: Tensor, generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
    """``max(p / q)`` over the last dim with ``q ~ Exp(1)``: the winning scores and ids."""
    q = torch.empty_like(probs).exponential_(1, generator=generator)
    return torch.div(probs, q, out=q).max(dim=-1)


def _check_draws(scores: Tensor) -> None:
    """Raise as ``torch.multinomial`` does if any drawn score is NaN (see ``_draw``)."""
    if bool(scores.isnan().any()):
        raise RuntimeError(_BAD_PROBS)


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
    scores: List[Tensor] = []  # the winning score of each draw, checked once at the end (see _draw)

    def pick(logits: Tensor) -> Tensor:  # (B, 1, V) -> (B, 1)
        if greedy:
            return logits.argmax(dim=-1)
        score, token = _scored_sample(logits[:, -1], generator, temperature, top_k, top_p)  # (B,) each
        scores.append(score.unsqueeze(1))
        return token.unsqueeze(1)

    with torch.inference_mode():
        logits, state = step(prime.long(), state)  # (B, P, V)
        if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(prime.shape):
            raise ValueError(
                f"generate: step must return logits of shape (B, t, V) = {tuple(prime.shape)} + (V,), "
                f"got {tuple(logits.shape)}"
            )
        logits = logits[:, -1:]  # (B, 1, V)
        finished = torch.zeros((B, 1), dtype=torch.bool, device=prime.device) if eos_id is not None else None
        out = []
        for i in range(length):
            token = pick(logits)  # (B, 1)
            if finished is not None:
                token = token.masked_fill(finished, eos_id)  # finished rows stay finished
                finished = finished | (token == eos_id)
            out.append(token)
            if i == length - 1 or (finished is not None and bool(finished.all())):
                break
            logits, state = step(token, state)  # (B, 1, V)
        if scores:
            _check_draws(torch.cat(scores, dim=1))
        tokens = torch.cat(out, dim=1)  # (B, n) with n <= length
        if tokens.shape[1] < length:  # stopped early: every row is finished
            tokens = torch.cat([tokens, tokens.new_full((B, length - tokens.shape[1]), eos_id)], dim=1)
    return tokens.clone()  # a normal tensor, not an inference one: callers may edit it in place


# ---- search from a start token to eos (seq2seq) --------------------------------------------------

class Hypothesis(NamedTuple):
    """One finished output of ``beam_search``."""

    tokens: List[int]  # output ids, without bos and eos
    score: float  # what hypotheses are ranked by: log_prob / lp(len(tokens) + 1)
    log_prob: float  # summed log-probability of tokens + eos


def _check_start(bos: Tensor, eos_id: int, max_len: Union[int, Tensor], fn: str) -> Tensor:
    """Validate the common arguments; return ``max_len`` as a ``(B,)`` long tensor on ``bos.device``."""
    if not isinstance(bos, Tensor) or bos.dim() != 1 or bos.dtype.is_floating_point \
            or bos.dtype == torch.bool:
        raise ValueError(f"{fn}: expected bos as a (B,) tensor of integer ids, got "
                         f"{tuple(bos.shape) if isinstance(bos, Tensor) else type(bos).__name__}")
    if isinstance(eos_id, bool) or not isinstance(eos_id, numbers.Integral) or eos_id < 0:
        raise ConfigError(f"eos_id must be an integer >= 0, got {eos_id!r}")
    B = bos.shape[0]
    if isinstance(max_len, Tensor):
        if max_len.shape != (B,) or max_len.dtype.is_floating_point or max_len.dtype == torch.bool:
            raise ConfigError(f"max_len must be an int or a (B,) = ({B},) integer tensor, "
                              f"got a tensor of shape {tuple(max_len.shape)} and dtype {max_len.dtype}")
        if B and int(max_len.min()) < 0:
            raise ConfigError(f"max_len must be >= 0, got {max_len.tolist()}")
        return max_len.to(device=bos.device, dtype=torch.long)
    if isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral) or max_len < 0:
        raise ConfigError(f"max_len must be an integer >= 0 or a (B,) integer tensor, got {max_len!r}")
    return torch.full((B,), int(max_len), dtype=torch.long, device=bos.device)


def _next_logits(step: Step, tokens: Tensor, state: Any, eos_id: int, fn: str) -> Tuple[Tensor, Any]:
    """One step on ``(N,)`` tokens: ``(N, V)`` logits of the next token and the new state."""
    logits, state = step(tokens.unsqueeze(1), state)  # (N, 1, V)
    if logits.dim() != 3 or tuple(logits.shape[:2]) != (tokens.shape[0], 1):
        raise ValueError(f"{fn}: step must return logits of shape (N, 1, V) with N = {tokens.shape[0]}, "
                         f"got {tuple(logits.shape)}")
    if eos_id >= logits.shape[-1]:
        raise ConfigError(f"eos_id {eos_id} is outside the model's vocabulary of {logits.shape[-1]} ids")
    return logits[:, -1], state


def greedy_search(
    step: Step, state: Any, bos: Tensor, eos_id: int, max_len: Union[int, Tensor] = 100,
) -> List[List[int]]:
    """The argmax output of each row, without bos and eos.

    ``bos`` is ``(B,)`` long, the first decoder input of each row; ``state`` the
    model's state for those B rows.  A row stops at eos or after ``max_len``
    tokens (an int, or a ``(B,)`` long tensor of per-row limits); finished rows
    keep feeding eos until every row is finished (one ``step`` call per time
    step for the whole batch).
    """
    max_len = _check_start(bos, eos_id, max_len, "greedy_search")  # (B,)
    B = bos.shape[0]
    out = []
    with torch.inference_mode():
        finished = max_len == 0  # (B,)
        token = bos.long()  # (B,)
        for t in range(int(max_len.max()) if B else 0):
            if bool(finished.all()):
                break
            logits, state = _next_logits(step, token, state, eos_id, "greedy_search")  # (B, V)
            token = greedy(logits).masked_fill(finished, eos_id)  # (B,): finished rows feed eos
            out.append(token)
            finished = finished | (token == eos_id) | (max_len <= t + 1)
        tokens = torch.stack(out, dim=1) if out else bos.new_empty((B, 0), dtype=torch.long)  # (B, T)
        is_eos = torch.cat([tokens == eos_id, tokens.new_ones((B, 1), dtype=torch.bool)], dim=1)
        lengths = is_eos.int().argmax(dim=1)  # (B,): tokens before the first eos (or the row's limit)
    return [row[:n] for row, n in zip(tokens.tolist(), lengths.tolist())]


def beam_search(
    step: Step,
    state: Any,
    bos: Tensor,
    eos_id: int,
    *,
    beam_size: int = 5,
    max_len: Union[int, Tensor] = 100,
    length_penalty: float = 1.0,
    n_best: int = 1,
) -> List[List[Hypothesis]]:
    """Batched beam search: the ``n_best`` best hypotheses of each sentence, best first.

    ``bos`` is ``(B,)`` long, the first decoder input of each sentence, and
    ``state`` the model's state for those B rows; it is replicated once to
    ``B * beam_size`` rows (row ``b * beam_size + k`` is beam k of sentence b)
    and afterwards only reordered with ``state.index_select``.

    Scores: ``log_prob / lp(len)`` with the GNMT penalty
    ``lp(len) = ((5 + len) / 6) ** length_penalty``, where ``len`` counts the
    output tokens plus eos; ``length_penalty=0`` ranks by raw log-probability.

    The rule (as fairseq's): at each time step, of the ``beam_size * V``
    extensions of a sentence's live hypotheses, those among the
    ``beam_size`` best (by log-probability, which at equal length is also the
    score order) that end in eos become finished; the ``beam_size`` best that
    do not end in eos stay live.  A sentence is done once it has
    ``beam_size`` finished hypotheses (then it is frozen), or at its
    ``max_len`` (an int, or a ``(B,)`` long tensor of per-sentence limits on
    the tokens before eos): there eos is forced, so every returned hypothesis
    ends in eos and its ``log_prob`` includes eos.  Of all finished
    hypotheses, the best ``beam_size`` by score are kept.  This is not exact
    search (with a length penalty a longer hypothesis dropped at the stop
    could have scored better), but ``beam_size=1`` is exactly greedy search.
    Fewer than ``n_best`` hypotheses come back only when the model gives
    fewer finite-probability outputs within ``max_len``.
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, numbers.Integral) or beam_size < 1:
        raise ConfigError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    if isinstance(n_best, bool) or not isinstance(n_best, numbers.Integral) or not 1 <= n_best <= beam_size:
        raise ConfigError(f"n_best must be an integer in [1, beam_size={beam_size}], got {n_best!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, numbers.Real) \
            or not 0 <= length_penalty < math.inf:
        raise ConfigError(f"length_penalty must be a number >= 0 (0: raw log-probability), "
                          f"got {length_penalty!r}")
    max_len = _check_start(bos, eos_id, max_len, "beam_search")  # (B,)
    B, K, device = bos.shape[0], int(beam_size), bos.device
    if B == 0:
        return []
    M = int(max_len.max())  # the longest output, eos excluded
    ninf = -math.inf
    with torch.inference_mode():
        if hasattr(state, "repeat_interleave"):
            state = state.repeat_interleave(K)  # B*K rows
        else:
            state = state.index_select(torch.arange(B, device=device).repeat_interleave(K))
        token = bos.long().repeat_interleave(K)  # (B*K,)
        live_lp = torch.full((B, K), ninf, device=device)  # (B, K): log-prob of each live prefix
        live_lp[:, 0] = 0.0  # one live beam at first: the others would duplicate it
        live_tok = torch.empty((B, K, 0), dtype=torch.long, device=device)  # (B, K, t)
        fin_score = torch.full((B, K), ninf, device=device)  # (B, K), best first
        fin_lp = torch.full((B, K), ninf, device=device)  # (B, K)
        fin_tok = torch.full((B, K, M), eos_id, dtype=torch.long, device=device)  # (B, K, M), padded
        fin_len = torch.zeros((B, K), dtype=torch.long, device=device)  # (B, K)
        act = torch.arange(B, device=device)  # (A,): the sentences still being searched
        for t in range(M + 1):  # t: tokens before the one chosen now
            logits, state = _next_logits(step, token, state, eos_id, "beam_search")  # (A*K, V)
            A, V = act.shape[0], logits.shape[-1]
            limit = max_len[act]  # (A,)
            cand = live_lp.unsqueeze(-1) + logits.float().log_softmax(-1).view(A, K, V)  # (A, K, V)
            at_limit = limit <= t  # (A,)
            if bool(at_limit.any()):  # eos forced at max_len
                eos_col = torch.arange(V, device=device) == eos_id  # (V,)
                cand = cand.masked_fill(at_limit.view(A, 1, 1) & ~eos_col, ninf)

            # Finish: eos extensions among the K best candidates.
            top_lp, top_idx = cand.view(A, K * V).topk(K, dim=1)  # (A, K) each
            new_lp = top_lp.masked_fill(top_idx % V != eos_id, ninf)  # (A, K)
            new_tok = live_tok.gather(1, (top_idx // V).unsqueeze(-1).expand(-1, -1, t))  # (A, K, t)
            penalty = ((5 + t + 1) / 6) ** length_penalty  # lp(len) with len = t tokens + eos
            score, keep = torch.cat([fin_score[act], new_lp / penalty], dim=1).topk(K, dim=1)  # (A, K)
            fin_score[act] = score
            fin_lp[act] = torch.cat([fin_lp[act], new_lp], dim=1).gather(1, keep)
            fin_len[act] = torch.cat([fin_len[act], fin_len.new_full((A, K), t)], dim=1).gather(1, keep)
            new_tok = torch.nn.functional.pad(new_tok, (0, M - t), value=eos_id)  # (A, K, M)
            fin_tok[act] = torch.cat([fin_tok[act], new_tok], dim=1).gather(1, keep.unsqueeze(-1).expand(-1, -1, M))

            done = score[:, -1].isfinite() | at_limit  # (A,)
            if bool(done.all()):
                break
            # Continue: the K best candidates that do not end in eos, for the sentences not done.
            # Done sentences leave the batch, so they cost nothing from here on.
            cand[..., eos_id] = ninf  # cand is not read again: no copy
            live_lp, idx = cand.view(A, K * V).topk(K, dim=1)  # (A, K) each
            going = (~done).nonzero().squeeze(1)  # (A',)
            live_lp, idx = live_lp[going], idx[going]
            beam, token = idx // V, idx % V  # (A', K) each
            live_tok = torch.cat([live_tok[going].gather(1, beam.unsqueeze(-1).expand(-1, -1, t)),
                                  token.unsqueeze(-1)], dim=2)  # (A', K, t + 1)
            state = state.index_select((going.unsqueeze(1) * K + beam).view(-1))
            token = token.reshape(-1)  # (A'*K,)
            act = act[going]
        scores, lps, lens, toks = fin_score.tolist(), fin_lp.tolist(), fin_len.tolist(), fin_tok.tolist()
    return [
        [Hypothesis(toks[b][k][:lens[b][k]], scores[b][k], lps[b][k])
         for k in range(n_best) if lps[b][k] > ninf]
        for b in range(B)
    ]


# ---- several models as one -------------------------------------------------------------------------

class EnsembleState(tuple):
    """One state per model of an ensemble (``None`` entries for fresh states); a search reorders or
    replicates them all alike."""

    def index_select(self, index: Tensor) -> "EnsembleState":
        return EnsembleState(s.index_select(index) for s in self)

    def repeat_interleave(self, repeats: int) -> "EnsembleState":
        """Each row ``repeats`` times in a row, through each state's own ``repeat_interleave`` (a seq2seq
        state shares its source memory among beams); only offered when every state has one."""
        return EnsembleState(s.repeat_interleave(repeats) for s in self)

    def __getattribute__(self, name: str) -> Any:
        if name == "repeat_interleave" and not all(hasattr(s, "repeat_interleave") for s in self):
            raise AttributeError(name)  # so that beam_search falls back to index_select
        return super().__getattribute__(name)


def ensemble_step(steps: List[Step]) -> Step:
    """The step of an ensemble: every model reads the same tokens, and the scores of the next token are
    the mean of the models' log-probabilities, ``mean_m log_softmax(logits_m)`` ``(B, t, V)`` float32.

    That mean is a log-linear (geometric-mean) combination; the searches normalise scores themselves
    (``beam_search`` takes ``log_softmax`` of them, ``sample`` a softmax, greedy the argmax), so they
    decode from the renormalised product of the models' distributions.  The state is an
    ``EnsembleState`` of the models' states (``None`` for all-fresh).  One model given twice decodes
    as that model alone.
    """
    steps = list(steps)
    if not steps:
        raise ConfigError("an ensemble needs at least one model")

    def step(tokens: Tensor, state: Any) -> Tuple[Tensor, EnsembleState]:
        states = [None] * len(steps) if state is None else list(state)
        if len(states) != len(steps):
            raise ValueError(f"ensemble_step: {len(steps)} models but a state of {len(states)}")
        log_probs, new = None, []
        for fn, s in zip(steps, states):
            logits, s = fn(tokens, s)  # (B, t, V)
            lp = logits.float().log_softmax(-1)
            if log_probs is not None and lp.shape != log_probs.shape:
                raise ValueError(f"ensemble_step: the models score {tuple(log_probs.shape)} and "
                                 f"{tuple(lp.shape)}: they must share a vocabulary")
            log_probs = lp if log_probs is None else log_probs + lp
            new.append(s)
        return log_probs / len(steps), EnsembleState(new)  # (B, t, V)

    return step
