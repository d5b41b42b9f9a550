"""``SequenceCell``: what a cell beyond RNN / LSTM / GRU implements to join ``Recurrent``.

One module is one layer in one direction, mapping ``(B, T, input_size)`` to
``(B, T, hidden_size)``.  It carries a ``State`` of ``(B, K_i)`` tensors laid out
as its ``state_sizes`` say (``None``: that place of ``(h, c, *extra)`` is empty),
and runs two ways:

* ``step(x_t, state)``: one time step written from the paper's equations, the
  reference and what generation uses;
* ``parallel(x, state, keep)``: the whole sequence at once (a scan or the
  paper's parallel form), the training path; it must give the reference's numbers.

Both take ``keep`` ``(B, T)`` bool (True at real steps, pads only after each
row's last real step): a state never changes at a pad, so the state at the last
step is each row's state after its last real step.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from rnnkit.nn.state import State


class SequenceCell(nn.Module):
    """Base of the table's sequence cells (minGRU, minLSTM, LRU, sLSTM, mLSTM)."""

    state_sizes: tuple[Optional[int], ...]  # K of each place of (h, c, *extra); None: empty

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be > 0; got {input_size}, {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size

    def zero_state(self, batch_size: int, like: Tensor) -> State:
        """Zeros of ``(B, K_i)`` with the dtype and device of ``like``."""
        return State(*(None if k is None else like.new_zeros(batch_size, k) for k in self.state_sizes))

    def forward(self, x: Tensor, state: Optional[State] = None) -> State:
        """One step, as ``RNNCell`` / ``LSTMCell``: ``x`` ``(B, I)``, ``state`` of ``(B, K_i)`` (zeros if None)."""
        if x.dim() != 2 or x.size(1) != self.input_size:
            raise ValueError(f"x must be (B, input_size={self.input_size}); got shape {tuple(x.shape)}")
        return self.step(x, self.zero_state(x.size(0), x) if state is None else state)

    def step(self, x: Tensor, state: State, gates: Optional[dict[str, Tensor]] = None) -> State:
        """One step: ``x`` ``(B, I)``, ``state`` of ``(B, K_i)`` -> the next state (``h`` is the output).

        When ``gates`` is a dict it receives the step's gates by name, each ``(B, H)``.
        """
        raise NotImplementedError

    def parallel(self, x: Tensor, state: State, keep: Optional[Tensor]) -> tuple[Tensor, State]:
        """``x`` ``(B, T, I)`` -> every step's output ``(B, T, H)`` and the final state."""
        raise NotImplementedError

    def reference(self, x: Tensor, state: State, keep: Optional[Tensor]) -> tuple[Tensor, State]:
        """``parallel``'s contract, computed by ``step`` one time step after another."""
        hs = []
        keeps = [None] * x.shape[1] if keep is None else keep.unbind(1)  # T x (B,)
        for x_t, k in zip(x.unbind(1), keeps):  # unbind, not x[:, t] (see Recurrent)
            new = self.step(x_t, state)
            state = new if k is None else new.where(k, state)
            hs.append(state.h)
        return torch.stack(hs, dim=1), state

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def pad_mask(keep: Optional[Tensor], t: Tensor, value: float) -> Tensor:
    """``t`` ``(B, T, ...)`` with ``value`` at the pad steps (where ``keep`` ``(B, T)`` is False)."""
    if keep is None:
        return t
    return t.masked_fill(~keep.view(*keep.shape, *([1] * (t.dim() - 2))), value)
