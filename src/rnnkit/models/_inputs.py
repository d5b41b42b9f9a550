"""Checks at the edge of the padded-batch models (classifier, tagger): one place, one set of messages."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_padded(inputs: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor],
                 what: str = "token") -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Validate right-padded ``inputs (B, T)`` ids with optional ``lengths (B,)`` and ``mask (B, T)``.

    Returns ``(lengths, mask)`` on the inputs' device, both None when no row is padded.
    """
    if inputs.dim() != 2 or inputs.dtype not in INT_DTYPES:
        raise ValueError(f"inputs must be (B, T) integer {what} ids; got {inputs.dtype} of shape {tuple(inputs.shape)}")
    B, T = inputs.shape
    if B == 0 or T == 0:
        raise ValueError(f"inputs must have at least one sequence and one step; got shape {tuple(inputs.shape)}")
    if lengths is not None:
        if lengths.dim() != 1 or lengths.size(0) != B or lengths.dtype not in INT_DTYPES:
            raise ValueError(f"lengths must be a 1-D integer tensor of size B={B}; "
                             f"got {lengths.dtype} of shape {tuple(lengths.shape)}")
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > T:
            raise ValueError(f"lengths must lie in [1, T={T}]; got values in [{lo}, {hi}]")
    if mask is not None:
        if mask.dtype != torch.bool or tuple(mask.shape) != (B, T):
            raise ValueError(f"mask must be bool of shape (B, T) = {(B, T)}; got {mask.dtype} {tuple(mask.shape)}")
        from_mask = mask.sum(1)  # (B,)
        prefix = torch.arange(T, device=mask.device).unsqueeze(0) < from_mask.unsqueeze(1)  # (B, T)
        if not torch.equal(prefix, mask) or int(from_mask.min()) < 1:
            raise ValueError("mask must mark a non-empty prefix of each row (right padding)")
        if lengths is not None and not torch.equal(from_mask.cpu(), lengths.cpu().long()):
            raise ValueError("lengths and mask disagree on the number of real tokens per row")
        lengths = from_mask
    if lengths is None or bool((lengths == T).all()):
        return None, None  # nothing padded
    lengths = lengths.to(inputs.device)
    return lengths, torch.arange(T, device=inputs.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def drop_words(inputs: Tensor, mask: Optional[Tensor], p: float, unk_id: int) -> Tensor:
    """Training-time word dropout: each real token becomes ``unk_id`` with probability ``p``.

    A regulariser for small data sets: the model cannot lean on any single word,
    and it learns what to do with words it has not seen.
    """
    drop = torch.rand(inputs.shape, device=inputs.device) < p  # (B, T)
    if mask is not None:
        drop &= mask
    return inputs.masked_fill(drop, unk_id)


def check_word_model(c) -> None:
    """Checks shared by the padded-batch word models' configs (classifier, tagger)."""
    if c.vocab_size < 1 or c.embedding_size < 1 or c.hidden_size < 1 or c.num_layers < 1:
        raise ValueError("vocab_size, embedding_size, hidden_size and num_layers must be >= 1; got "
                         f"{c.vocab_size}, {c.embedding_size}, {c.hidden_size}, {c.num_layers}")
    if isinstance(c.dropout, bool) or not 0.0 <= c.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {c.dropout!r}")
    if not 0 <= c.pad_id < c.vocab_size:
        raise ValueError(f"pad_id must be a token id in [0, vocab_size={c.vocab_size}); got {c.pad_id}")


def copy_embeddings(embedding: torch.nn.Embedding, matrix: Tensor) -> None:
    """Copy pretrained vectors ``(num_embeddings, embedding_dim)`` into ``embedding``, shape- and value-checked."""
    want = (embedding.num_embeddings, embedding.embedding_dim)
    if not isinstance(matrix, Tensor) or matrix.dim() != 2 or tuple(matrix.shape) != want:
        shape = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
        raise ValueError(f"pretrained embeddings must be a (vocab_size, embedding_size) = {want} tensor; got {shape}")
    if not matrix.is_floating_point() or not bool(torch.isfinite(matrix).all()):
        raise ValueError("pretrained embeddings must be finite floating-point values")
    with torch.no_grad():
        embedding.weight.copy_(matrix)
