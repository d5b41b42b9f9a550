"""Linear-chain conditional random field over per-token tag scores.

For emissions ``e (B, T, K)`` and a tag path ``y_1..y_n`` (``n`` = the row's
real length) the path score is

    s(y) = start[y_1] + sum_t e_t[y_t] + sum_{t>1} trans[y_{t-1}, y_t] + end[y_n]

and ``log p(y) = s(y) - log Z`` with ``log Z = logsumexp over all K^n paths``,
computed by the forward algorithm in log space.  ``decode`` is Viterbi.

Rows are right-padded: ``mask (B, T)`` is True on a non-empty prefix of each
row.  Every recursion is vectorised over the batch with one Python loop over
time; at a pad the running scores are carried over unchanged, so a padded row
gets exactly the numbers it gets alone, and pad emissions/tags are never read.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["CRF"]

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class CRF(nn.Module):
    """Linear-chain CRF with start, end and transition scores.

    ``transitions[i, j]`` scores moving from tag ``i`` to tag ``j``.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags must be an int >= 1; got {num_tags!r}")
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.empty(num_tags))  # (K,) score of a path starting at each tag
        self.end = nn.Parameter(torch.empty(num_tags))  # (K,) score of a path ending at each tag
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # (K, K) from i to j
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small uniform scores in ``±0.1``: the model starts close to per-token softmax."""
        for p in (self.start, self.end, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    # ----------------------------------------------------------------- checks

    def _prepare(self, emissions: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Validate; return emissions in float32 at least, zeroed at pads, and a ``(B, T)`` bool mask."""
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(f"emissions must be (B, T, num_tags={self.num_tags}); got {tuple(emissions.shape)}")
        B, T, _ = emissions.shape
        if B == 0 or T == 0:
            raise ValueError(f"emissions need at least one row and one step; got {tuple(emissions.shape)}")
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        if mask.dtype != torch.bool or tuple(mask.shape) != (B, T):
            raise ValueError(f"mask must be bool of shape (B, T) = {(B, T)}; got {mask.dtype} {tuple(mask.shape)}")
        lengths = mask.sum(1)  # (B,)
        prefix = torch.arange(T, device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        if not bool(mask[:, 0].all()) or not torch.equal(prefix, mask):
            raise ValueError("mask must mark a non-empty prefix of each row (right padding, first position real)")
        # A reduced-precision logsumexp over many steps loses digits: run the chain in float32 at least.
        dtype = torch.promote_types(emissions.dtype, torch.float32)
        # Zero the pads so non-finite junk there cannot leak into values or gradients through `where`.
        return emissions.to(dtype).masked_fill(~mask.unsqueeze(2), 0.0), mask

    def _check_tags(self, tags: Tensor, mask: Tensor) -> Tensor:
        if tags.dtype not in _INT_DTYPES or tuple(tags.shape) != tuple(mask.shape):
            raise ValueError(f"tags must be integer ids of shape (B, T) = {tuple(mask.shape)}; "
                             f"got {tags.dtype} {tuple(tags.shape)}")
        tags = tags.long().masked_fill(~mask, 0)  # pad tags may be anything; never read
        lo, hi = int(tags.min()), int(tags.max())
        if lo < 0 or hi >= self.num_tags:
            raise ValueError(f"tags at real positions must lie in [0, num_tags={self.num_tags}); got [{lo}, {hi}]")
        return tags

    # ----------------------------------------------------------------- scores

    def _path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """``s(y)`` of each row's tag path: ``(B,)``."""
        dt = emissions.dtype
        start, end, trans = self.start.to(dt), self.end.to(dt), self.transitions.to(dt)
        maskf = mask.to(dt)  # (B, T)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        step = trans[tags[:, :-1], tags[:, 1:]]  # (B, T-1) transition into position t from t-1
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)  # (B,) tag at the last real step
        return (start[tags[:, 0]] + (emit * maskf).sum(1) + (step * maskf[:, 1:]).sum(1) + end[last])  # (B,)

    def _forward_alg(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """``log Z`` per row ``(B,)`` by the forward algorithm."""
        dt = emissions.dtype
        trans = self.transitions.to(dt).unsqueeze(0)  # (1, K, K)
        steps, keeps = emissions.unbind(1), mask.unbind(1)  # T x (B, K), T x (B,)
        alpha = self.start.to(dt) + steps[0]  # (B, K) log-sum of all paths ending in each tag
        for e_t, keep in zip(steps[1:], keeps[1:]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + e_t  # (B, K, K) -> (B, K)
            alpha = torch.where(keep.unsqueeze(1), nxt, alpha)  # pads carry the scores over
        return torch.logsumexp(alpha + self.end.to(dt), dim=1)  # (B,)

    def log_partition(self, emissions: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``log Z``: log-sum-exp of the scores of every tag path of each row. ``(B, T, K) -> (B,)``."""
        emissions, mask = self._prepare(emissions, mask)
        return self._forward_alg(emissions, mask)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``log p(tags | emissions)`` per row: ``emissions (B, T, K)``, ``tags (B, T)``, ``mask (B, T)`` -> ``(B,)``.

        Computed in float32 at least (float64 stays float64).
        """
        emissions, mask = self._prepare(emissions, mask)
        tags = self._check_tags(tags, mask)
        return self._path_score(emissions, tags, mask) - self._forward_alg(emissions, mask)  # (B,)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Summed negative log-likelihood of the batch's sentences, a 0-d tensor."""
        return -self.log_likelihood(emissions, tags, mask).sum()

    # ---------------------------------------------------------------- Viterbi

    @torch.inference_mode()
    def decode(self, emissions: Tensor, mask: Optional[Tensor] = None) -> list[list[int]]:
        """Best tag path of each row (Viterbi), each trimmed to the row's real length."""
        emissions, mask = self._prepare(emissions, mask)
        dt = emissions.dtype
        trans = self.transitions.to(dt).unsqueeze(0)  # (1, K, K)
        steps, keeps = emissions.unbind(1), mask.unbind(1)  # T x (B, K), T x (B,)
        score = self.start.to(dt) + steps[0]  # (B, K) best score of a path ending in each tag
        backpointers = []  # T-1 x (B, K): best previous tag for each tag at step t
        for e_t, keep in zip(steps[1:], keeps[1:]):
            best, prev = (score.unsqueeze(2) + trans).max(dim=1)  # (B, K, K) -> (B, K), (B, K)
            score = torch.where(keep.unsqueeze(1), best + e_t, score)
            backpointers.append(prev)
        cur = (score + self.end.to(dt)).argmax(dim=1)  # (B,) best last tag
        # Walk back; at a pad `cur` stays the row's last real tag until its real steps begin.
        path = [cur]
        for prev, keep in zip(reversed(backpointers), reversed(keeps[1:])):
            cur = torch.where(keep, prev.gather(1, cur.unsqueeze(1)).squeeze(1), cur)  # (B,)
            path.append(cur)
        tags = torch.stack(path[::-1], dim=1)  # (B, T); positions past a row's length are junk
        lengths = mask.sum(1).tolist()
        return [row[:n] for row, n in zip(tags.tolist(), lengths)]
