"""The one recurrent state type shared by every cell kind.

A plain RNN and a GRU carry only ``h``; an LSTM carries ``h`` and ``c``.  Code
downstream (truncated BPTT, beam search, the seq2seq bridge) works on a
``State`` through its methods and never asks which cell made it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor


class State(NamedTuple):
    """Recurrent state.

    For a cell: ``h`` is ``(B, H)``.  For a layer stack (``Recurrent``): ``h`` is
    ``(num_layers * num_directions, B, H)``, the layout of ``torch.nn.LSTM``.
    ``c`` is the LSTM cell state with the shape of ``h``, or ``None``.
    """

    h: Tensor
    c: Optional[Tensor] = None

    def map(self, fn: Callable[[Tensor], Tensor]) -> "State":
        """Apply ``fn`` to every tensor of the state."""
        return State(fn(self.h), None if self.c is None else fn(self.c))

    def detach(self) -> "State":
        """Cut the graph (truncated backpropagation through time)."""
        return self.map(Tensor.detach)

    def index_select(self, index: Tensor, dim: int = -2) -> "State":
        """Pick batch rows (beam search, reordering). Batch is dim -2 of ``h``."""
        return self.map(lambda t: t.index_select(dim, index))

    def where(self, keep: Tensor, other: "State") -> "State":
        """Per batch row: ``self`` where ``keep`` (a bool ``(B,)``) else ``other``."""
        k = keep.unsqueeze(-1)  # (B, 1), broadcasts over leading layer dims
        if self.c is None:
            return State(torch.where(k, self.h, other.h))
        return State(torch.where(k, self.h, other.h), torch.where(k, self.c, other.c))

    def layer(self, index: int) -> "State":
        """The ``(B, H)`` state at ``index`` of a stacked ``(L*D, B, H)`` state (layer * D + direction)."""
        return self.map(lambda t: t[index])

    @staticmethod
    def stack(states: Sequence["State"]) -> "State":
        """Inverse of ``layer``: stack ``(B, H)`` states into one ``(len(states), B, H)`` state."""
        h = torch.stack([s.h for s in states])
        return State(h) if states[0].c is None else State(h, torch.stack([s.c for s in states]))

    @property
    def batch_size(self) -> int:
        return self.h.shape[-2]

    def as_torch(self):
        """The form ``torch.nn.RNN/GRU`` (tensor) or ``torch.nn.LSTM`` (tuple) accept."""
        return self.h if self.c is None else (self.h, self.c)

    @staticmethod
    def from_torch(hx) -> "State":
        """Inverse of ``as_torch``."""
        if isinstance(hx, tuple):
            return State(hx[0], hx[1])
        return State(hx)
