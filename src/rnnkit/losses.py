"""Masked sequence losses with explicit normalisation.

This is the one place where per-token losses become a sequence loss.  A loss
function returns the *sum* over real tokens and the *number* of real tokens,
never a mean: the caller decides how to normalise (per token, per sequence,
across data-parallel ranks, across gradient-accumulation steps), and metrics
accumulate the same two numbers, so perplexity comes from the token-weighted
mean loss.

A pad contributes exactly zero loss and zero gradient, whatever its target id
(even one outside the vocabulary) and whatever finite logits the model put
there.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sequence_nll", "token_mean"]

# Target id that ``F.cross_entropy`` skips (its default ``ignore_index``): we
# write it into every non-real position so pad ids never reach the kernel.
_SKIP = -100

# True: training takes the loss's gradient through autograd over ``F.cross_entropy`` as well
# (benchmarks/loss.py compares the two; the numbers agree to rounding)
USE_TORCH = False
# below this many logits the Python function's fixed cost outweighs what it saves (benchmarks/loss.py's
# op table times both paths at every shape)
WRITTEN_OUT_MIN = 1 << 17


def _check_shapes(logits: Tensor, targets: Tensor, mask: Optional[Tensor]) -> None:
    if logits.dim() != 3:
        raise ValueError(
            f"sequence_nll: expected logits of shape (B, T, V), got {tuple(logits.shape)}"
        )
    if targets.dim() != 2 or tuple(targets.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"sequence_nll: expected targets of shape (B, T) = {tuple(logits.shape[:2])} "
            f"to match logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.is_complex():
        raise ValueError(
            f"sequence_nll: expected integer (long) target ids, got dtype {targets.dtype}"
        )
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(
                f"sequence_nll: expected a bool mask (True = real token), got dtype {mask.dtype}"
            )
        if tuple(mask.shape) != tuple(targets.shape):
            raise ValueError(
                f"sequence_nll: expected mask of shape (B, T) = {tuple(targets.shape)}, "
                f"got {tuple(mask.shape)}"
            )


def sequence_nll(
    logits: Tensor,
    targets: Tensor,
    mask: Optional[Tensor] = None,
    ignore_index: Optional[int] = None,
    label_smoothing: float = 0.0,
) -> Tuple[Tensor, Tensor]:
    """Summed token cross-entropy over the real tokens of a padded batch.

    Args:
        logits: ``(B, T, V)`` unnormalised scores.
        targets: ``(B, T)`` integer target ids.
        mask: ``(B, T)`` bool, True at real tokens; None means every position
            is real (unless ``ignore_index`` says otherwise).
        ignore_index: a target id that marks pads; combined with ``mask``
            (a position is real only if both say so).
        label_smoothing: mix the one-hot target with a uniform distribution
            (a training regulariser; the total is then not a pure NLL).

    Returns:
        ``(total, count)``: the summed loss in nats, a 0-d float tensor (float32
        at least, differentiable), and the number of real tokens, a 0-d long
        tensor.  ``token_mean(total, count)`` gives the per-token loss.
    """
    _check_shapes(logits, targets, mask)
    B, T, V = logits.shape
    targets = targets.long()
    real = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask  # (B, T)
    if ignore_index is not None:
        real = real & (targets != ignore_index)  # (B, T)
    # Replace every non-real target, so an out-of-range pad id never reaches the
    # kernel; cross_entropy gives skipped positions loss 0 and gradient 0.
    safe_targets = targets.masked_fill(~real, _SKIP)  # (B, T)
    if logits.requires_grad and torch.is_grad_enabled() and logits.device.type == "cpu" and not USE_TORCH \
            and B * T * V >= WRITTEN_OUT_MIN:
        per_token = _SmoothedCrossEntropy.apply(logits.reshape(B * T, V), safe_targets.reshape(B * T),
                                                float(label_smoothing))  # (B*T,)
    else:
        per_token = F.cross_entropy(
            logits.reshape(B * T, V), safe_targets.reshape(B * T),
            ignore_index=_SKIP, reduction="none", label_smoothing=label_smoothing,
        )  # (B*T,)
    # Sum in float32 at least: a bf16/fp16 sum over many tokens loses digits.
    sum_dtype = torch.promote_types(per_token.dtype, torch.float32)
    total = per_token.sum(dtype=sum_dtype)  # ()
    count = real.sum(dtype=torch.long)  # ()
    return total, count


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Per-token cross-entropy with label smoothing, as ``F.cross_entropy(..., reduction="none",
    ignore_index=_SKIP, label_smoothing=eps)`` computes it, with the gradient written in one go.

    Autograd's backward of that graph builds the target's gradient (a zeroed ``(N, V)`` tensor, the
    one-hot scatter, the smoothing term added) and then runs log-softmax's backward over it; the
    gradient is simply ``g * (softmax - q)`` with ``q`` the smoothed target, so this computes it
    over the saved log-probabilities, in place, in two passes over ``(N, V)``: the exponential,
    and one multiply-add with the uniform part; the one-hot part is a scatter of N values.  So
    the backward can run once per forward: a second (``retain_graph``) is refused.  Computed in
    float32 at least (as autocast runs ``cross_entropy``); the gradient comes back in the logits'
    dtype.  Rows with target ``_SKIP`` get loss 0 and gradient 0.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, eps: float) -> Tensor:  # (N, V), (N,) -> (N,)
        work = logits.to(torch.promote_types(logits.dtype, torch.float32))
        logp = torch.log_softmax(work, dim=-1)  # (N, V)
        real = targets != _SKIP  # (N,)
        index = targets.clamp(min=0).unsqueeze(1)  # (N, 1): skipped rows read class 0, then weigh 0
        loss = -logp.gather(1, index).squeeze(1)  # (N,)
        if eps:
            loss = (1.0 - eps) * loss - eps * logp.mean(dim=-1)
        loss = torch.where(real, loss, torch.zeros_like(loss))
        ctx.save_for_backward(logp, index, real)
        ctx.eps, ctx.dtype, ctx.done = eps, logits.dtype, False
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # (N,) -> (N, V)
        if ctx.done:
            raise RuntimeError("sequence_nll: its backward ran already (retain_graph); with rnnkit.losses.USE_TORCH "
                               "= True the loss's graph may be walked twice")
        ctx.done = True
        logp, index, real = ctx.saved_tensors
        eps, V = ctx.eps, logp.shape[-1]
        weight = torch.where(real, grad.to(logp.dtype), torch.zeros((), dtype=logp.dtype)).unsqueeze(1)  # (N, 1)
        # g * softmax - g * eps / V everywhere, then - g * (1 - eps) at the target; written over the saved
        # log-probabilities (needed no more), since a fresh (N, V) tensor costs its page faults again
        out = logp.exp_()
        if eps:
            torch.addcmul(weight * (-eps / V), out, weight, out=out)
        else:
            out.mul_(weight)
        out.scatter_add_(1, index, weight * -(1.0 - eps))
        return out.to(ctx.dtype), None, None


def token_mean(total: Tensor, count: Union[Tensor, int]) -> Tensor:
    """``total / count``, and 0 (with zero gradient) when there are no tokens."""
    count = torch.as_tensor(count, device=total.device)
    mean = total / count.clamp(min=1).to(total.dtype)
    return torch.where(count > 0, mean, torch.zeros_like(mean))
