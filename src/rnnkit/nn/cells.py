"""Recurrent cells written from the equations: one time step each.

Every cell kind splits its step in two, so that a layer can hoist the input
projection out of its time loop (one matmul for all steps):

    xw_t  = input_projection(x_t)   = W_ih x_t + b_ih           (B, G*H)
    state = recur(xw_t, state)      = the rest of the step

The equations live in plain functions of the weights (``rnn_tanh_recur``,
``lstm_recur``, ...), so ``Recurrent`` runs them on its own ``torch.nn.LSTM``-named
parameters, and the cell modules run them on theirs.  Parameter names, shapes,
gate order and initialisation are those of ``torch.nn.RNNCell/LSTMCell/GRUCell``,
so their ``state_dict`` loads either way.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.state import State

# A step's recurrence, given the hoisted input projection and the hidden weights.
RecurFn = Callable[[Tensor, State, Tensor, Optional[Tensor]], State]

MODES = ("rnn", "rnn_tanh", "rnn_relu", "lstm", "gru")
_ALIASES = {"rnn": "rnn_tanh"}
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}  # G: gate blocks in W_ih / W_hh


def canonical_mode(mode: str) -> str:
    """``"rnn"`` -> ``"rnn_tanh"``; other valid modes unchanged; ValueError otherwise."""
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    mode = mode.lower()
    return _ALIASES.get(mode, mode)


def input_projection(x: Tensor, weight_ih: Tensor, bias_ih: Optional[Tensor]) -> Tensor:
    """``x W_ih^T + b_ih``: ``(..., I) -> (..., G*H)``, for any number of leading dims."""
    return F.linear(x, weight_ih, bias_ih)


def rnn_tanh_recur(xw: Tensor, state: State, weight_hh: Tensor, bias_hh: Optional[Tensor]) -> State:
    """``h_t = tanh(xw_t + W_hh h_{t-1} + b_hh)``; ``xw`` and ``h`` are ``(B, H)``."""
    return State(torch.tanh(xw + F.linear(state.h, weight_hh, bias_hh)))


def rnn_relu_recur(xw: Tensor, state: State, weight_hh: Tensor, bias_hh: Optional[Tensor]) -> State:
    """``h_t = relu(xw_t + W_hh h_{t-1} + b_hh)``; ``xw`` and ``h`` are ``(B, H)``."""
    return State(torch.relu(xw + F.linear(state.h, weight_hh, bias_hh)))


def lstm_recur(xw: Tensor, state: State, weight_hh: Tensor, bias_hh: Optional[Tensor]) -> State:
    """One LSTM step after the input projection; ``xw`` is ``(B, 4H)``, gates ordered i, f, g, o.

    ``[i; f; g; o] = xw_t + W_hh h_{t-1} + b_hh``, then
    ``c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)`` and ``h_t = sigmoid(o) * tanh(c_t)``.
    """
    gates = xw + F.linear(state.h, weight_hh, bias_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
    i = torch.sigmoid(i)  # input gate: how much of the candidate to write
    f = torch.sigmoid(f)  # forget gate: how much of the old cell to keep
    g = torch.tanh(g)  # candidate cell content
    o = torch.sigmoid(o)  # output gate: how much of the cell to expose
    c = f * state.c + i * g
    return State(o * torch.tanh(c), c)


def gru_recur(xw: Tensor, state: State, weight_hh: Tensor, bias_hh: Optional[Tensor]) -> State:
    """One GRU step after the input projection; ``xw`` is ``(B, 3H)``, gates ordered r, z, n.

    ``r = sigmoid(xw_r + W_hr h + b_hr)``, ``z = sigmoid(xw_z + W_hz h + b_hz)``,
    ``n = tanh(xw_n + r * (W_hn h + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``.
    ``b_hn`` stays inside the reset gate's product, as in ``torch.nn.GRUCell``.
    """
    h = state.h
    x_r, x_z, x_n = xw.chunk(3, dim=1)  # 3 x (B, H)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=1)  # 3 x (B, H)
    r = torch.sigmoid(x_r + h_r)  # reset gate: how much of h feeds the candidate
    z = torch.sigmoid(x_z + h_z)  # update gate: how much of h to keep
    n = torch.tanh(x_n + r * h_n)  # candidate state
    return State(n + z * (h - n))  # = (1 - z) * n + z * h


RECUR: dict[str, RecurFn] = {
    "rnn_tanh": rnn_tanh_recur,
    "rnn_relu": rnn_relu_recur,
    "lstm": lstm_recur,
    "gru": gru_recur,
}


class _Cell(nn.Module):
    """Parameters and the two-part step shared by every cell kind."""

    mode: str  # a key of RECUR

    def __init__(self, input_size: int, hidden_size: int, bias: bool, mode: str) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be > 0; got {input_size}, {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.mode = mode
        gh = GATES[mode] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size))  # (G*H, I)
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size))  # (G*H, H)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gh))  # (G*H,)
            self.bias_hh = nn.Parameter(torch.empty(gh))  # (G*H,)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``±1/sqrt(H)``, as ``torch.nn``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def zero_state(self, batch_size: int, like: Tensor) -> State:
        """A zero state of ``(B, H)`` tensors with the dtype and device of ``like``."""
        h = like.new_zeros(batch_size, self.hidden_size)
        return State(h, torch.zeros_like(h) if self.mode == "lstm" else None)

    def input_projection(self, x: Tensor) -> Tensor:
        """``x W_ih^T + b_ih``: ``(..., I) -> (..., G*H)``."""
        return input_projection(x, self.weight_ih, self.bias_ih)

    def recur(self, xw_t: Tensor, state: State) -> State:
        """The rest of the step from the projected input ``xw_t`` ``(B, G*H)``; ``h`` is ``(B, H)``."""
        return RECUR[self.mode](xw_t, state, self.weight_hh, self.bias_hh)

    def forward(self, x: Tensor, state: Optional[State] = None) -> State:
        """One step: ``x`` ``(B, I)``, ``state`` of ``(B, H)`` tensors (zeros if None) -> new state."""
        if x.dim() != 2 or x.size(1) != self.input_size:
            raise ValueError(f"x must be (B, input_size={self.input_size}); got shape {tuple(x.shape)}")
        if state is None:
            state = self.zero_state(x.size(0), x)
        else:
            self._check_state(state, x.size(0))
        return self.recur(self.input_projection(x), state)

    def _check_state(self, state: State, batch_size: int) -> None:
        want = (batch_size, self.hidden_size)
        if not isinstance(state, State):
            raise ValueError(f"state must be a rnnkit State; got {type(state).__name__}")
        if tuple(state.h.shape) != want:
            raise ValueError(f"state.h must be (B, H) = {want}; got {tuple(state.h.shape)}")
        if (state.c is not None) != (self.mode == "lstm"):
            raise ValueError(f"state.c must be {'given' if self.mode == 'lstm' else 'None'} for a {self.mode} cell")
        if state.c is not None and tuple(state.c.shape) != want:
            raise ValueError(f"state.c must be (B, H) = {want}; got {tuple(state.c.shape)}")

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class RNNCell(_Cell):
    """Elman cell: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, "rnn_" + nonlinearity)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class LSTMCell(_Cell):
    """LSTM cell, gates i, f, g, o (see ``lstm_recur``); the state carries ``h`` and ``c``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias, "lstm")


class GRUCell(_Cell):
    """GRU cell, gates r, z, n (see ``gru_recur``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias, "gru")


def make_cell(mode: str, input_size: int, hidden_size: int, bias: bool = True) -> _Cell:
    """A cell by name: ``"rnn"`` (= ``"rnn_tanh"``), ``"rnn_relu"``, ``"lstm"`` or ``"gru"``."""
    mode = canonical_mode(mode)
    if mode == "lstm":
        return LSTMCell(input_size, hidden_size, bias)
    if mode == "gru":
        return GRUCell(input_size, hidden_size, bias)
    return RNNCell(input_size, hidden_size, bias, nonlinearity=mode[len("rnn_"):])
