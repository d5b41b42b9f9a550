"""The one recurrent state type shared by every cell kind.

A state is a tuple of tensors ``(h, c, *extra)``: ``h`` is always the layer's
output at its last step; ``c`` is the LSTM / sLSTM cell or mLSTM's matrix memory,
or None; ``extra`` holds whatever else a cell carries (sLSTM's normaliser and
stabiliser, LRU's complex state as real and imaginary parts, ...).  Which tensor
means what is the cell table's ``state_names`` (``rnnkit.nn.table``).

Every tensor has the batch at dim -2 and one flat feature dim last: ``(B, K_i)``
for a cell, ``(L*D, B, K_i)`` for a layer stack (a matrix memory is flattened),
so truncated BPTT, beam search, the seq2seq bridge and checkpoints work on a
``State`` through its methods and never ask which cell made it.  A plain RNN,
GRU or minGRU carries ``(h, None)``; an LSTM ``(h, c)``, as before.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.utils._pytree as pytree
from torch import Tensor


class State(tuple):
    """Recurrent state ``(h, c, *extra)``; ``State(h)``, ``State(h, c)`` and ``State(*tensors)`` build one.

    For a cell: ``h`` is ``(B, H)``.  For a layer stack (``Recurrent``): ``h`` is
    ``(num_layers * num_directions, B, H)``, the layout of ``torch.nn.LSTM``, and every
    other tensor ``(L*D, B, K)`` with its own ``K``.  ``None`` entries stay ``None``
    through every method.
    """

    __slots__ = ()

    def __new__(cls, h: Tensor, c: Optional[Tensor] = None, *extra: Optional[Tensor]) -> "State":
        return tuple.__new__(cls, (h, c, *extra))

    def __getnewargs__(self):  # copy / pickle rebuild through __new__(*entries)
        return tuple(self)

    def __repr__(self) -> str:
        shapes = ", ".join("None" if t is None else f"{tuple(t.shape)}" for t in self)
        return f"State({shapes})"

    @property
    def h(self) -> Tensor:
        """The output at the last step: ``(B, H)`` or ``(L*D, B, H)``."""
        return self[0]

    @property
    def c(self) -> Optional[Tensor]:
        """The cell state (LSTM, sLSTM) or flattened matrix memory (mLSTM), or None."""
        return self[1]

    @property
    def extra(self) -> tuple[Optional[Tensor], ...]:
        """Tensors after ``c`` (empty for RNN, LSTM and GRU)."""
        return tuple(self[2:])

    def map(self, fn: Callable[[Tensor], Tensor]) -> "State":
        """Apply ``fn`` to every tensor of the state."""
        return State(*(None if t is None else fn(t) for t in self))

    def zip_map(self, other: "State", fn: Callable[[Tensor, Tensor], Tensor]) -> "State":
        """``fn(mine, theirs)`` for each pair of tensors; both states must have the same layout."""
        if len(self) != len(other) or any((a is None) != (b is None) for a, b in zip(self, other)):
            raise ValueError(f"states of different layouts: {self!r} and {other!r}")
        return State(*(None if a is None else fn(a, b) for a, b in zip(self, other)))

    def detach(self) -> "State":
        """Cut the graph (truncated backpropagation through time)."""
        return self.map(Tensor.detach)

    def index_select(self, index: Tensor, dim: int = -2) -> "State":
        """Pick batch rows (beam search, reordering). Batch is dim -2 of every tensor."""
        return self.map(lambda t: t.index_select(dim, index))

    def where(self, keep: Tensor, other: "State") -> "State":
        """Per batch row: ``self`` where ``keep`` (a bool ``(B,)``) else ``other``."""
        k = keep.unsqueeze(-1)  # (B, 1), broadcasts over leading layer dims and each tensor's K
        return self.zip_map(other, lambda a, b: torch.where(k, a, b))

    def layer(self, index: int) -> "State":
        """The ``(B, K)`` state at ``index`` of a stacked ``(L*D, B, K)`` state (layer * D + direction)."""
        return self.map(lambda t: t[index])

    @staticmethod
    def stack(states: Sequence["State"]) -> "State":
        """Inverse of ``layer``: stack ``(B, K)`` states into one ``(len(states), B, K)`` state."""
        return State.cat(states, stack=True)

    @staticmethod
    def cat(states: Sequence["State"], dim: int = 0, stack: bool = False) -> "State":
        """Concatenate (or ``stack``) each tensor of ``states`` along ``dim``; all of one layout."""
        join = torch.stack if stack else torch.cat
        first = states[0]
        return State(*(None if t is None else join([s[i] for s in states], dim) for i, t in enumerate(first)))

    @property
    def batch_size(self) -> int:
        return self.h.shape[-2]

    def as_torch(self):
        """The form ``torch.nn.RNN/GRU`` (tensor) or ``torch.nn.LSTM`` (tuple) accept.

        Only for states of those layouts; a cell with more state has no ``torch.nn`` form.
        """
        if any(t is not None for t in self.extra):
            raise ValueError(f"a state with more than h and c has no torch.nn form: {self!r}")
        return self.h if self.c is None else (self.h, self.c)

    @staticmethod
    def from_torch(hx) -> "State":
        """Inverse of ``as_torch``."""
        if isinstance(hx, tuple):
            return State(hx[0], hx[1])
        return State(hx)


# A node of torch's pytrees (as the NamedTuple it used to be): DDP, torch.compile and torch.export
# find the tensors inside a State and rebuild it.
pytree.register_pytree_node(State, lambda s: (list(s), None), lambda values, _: State(*values),
                            serialized_type_name="rnnkit.nn.state.State")
