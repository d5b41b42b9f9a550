"""One time step of a stacked RNN / LSTM / GRU for inference, in few operations.

Sampling from a language model runs the stack one token at a time, usually for one
row.  The arithmetic of such a step is a few matrix-vector products; written as the
cell equations (``rnnkit.nn.cells``) it also costs some twenty small tensor
operations per layer, each dispatched from Python, which took longer than the
products.  Here a step of an L-layer LSTM is about ten operations per layer, on
weights laid out for the purpose once (``StepWeights``):

* the hidden products of all layers, ``W_hh h_{t-1}``, in one batched product
  (``torch.baddbmm``): they need nothing computed at this step, and with more than
  one thread MKL may run the layers' products side by side;
* ``W_ih`` and ``W_hh`` transposed and contiguous, ``(I, G*H)`` and ``(H, G*H)``: a
  one-row product reads them faster in that layout than through ``W.t()`` (about 5 %
  less time, measured with MKL's sgemm on one thread);
* ``b_ih + b_hh`` as one bias, which the batched product starts from;
* every ``tanh`` as ``1 - 2 sigmoid(-2 x)``, the factor ``-2`` folded into the
  weight columns of the blocks that feed a ``tanh`` (the candidate of the LSTM and
  GRU, every unit of a tanh RNN; an exact scaling).  All gates of an LSTM then take
  one ``sigmoid``, and the ``1 - 2 s`` goes into the ``addcmul`` that uses it.
  This also keeps the elementwise work of a step at batch 1 on the calling thread:
  with MKL, torch's ``tanh`` of a few hundred values opens a parallel region, which on
  a machine with other work costs milliseconds (measured: 2 us on one thread, 1.7 to
  7.8 ms on two threads while another process ran).

Given the rows of an input embedding, the first layer's input product for every
token id is computed once (``StepWeights.table``): a step reads one row of it
instead of computing a product, when the table is small (a character vocabulary).

The results equal the cell equations to float32 rounding (the tests compare them to
``1e-6``), not bit for bit: the sums run in another order.

Where ``rnnkit.nn.compiled`` is built, a step of up to ``COMPILED_MAX_BATCH`` rows is one call of its
``stack_step`` on the same layout instead (the arithmetic above, in C++, the units of a layer shared
among torch's threads): it equals the Python step to rounding and gives the same bits on any number of
threads.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from rnnkit.nn import compiled
from rnnkit.nn.state import State

# Smallest input product (I x G*H weights) computed in two halves when torch has more than one thread: a
# second thread is worth its start from about 1 MiB of float32 weights (the product alone takes over 10 us).
SPLIT_MIN_ENTRIES = 1 << 18
# Largest token table (layers x vocabulary x G*H entries) kept for token inputs: 16 MiB of float32.
TABLE_MAX_ENTRIES = 1 << 22

# Most rows a step runs compiled (``compiled.stack_step``).  Measured against the Python step on a 2-layer LSTM 512
# (``benchmarks/sampling_floor.py --batch-sweep``): 1.26, 1.91, 2.51, 2.18, 1.72 and 1.31x at 1, 2, 4, 8, 16 and 32
# rows on two threads, 1.29-2.14x on one; above 32 rows a step runs the sequence kernel anyway.
COMPILED_MAX_BATCH = 32
_MODES = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}

LayerWeights = tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]  # w_ih, w_hh, b_ih, b_hh as in torch.nn


def _column_scale(mode: str, hidden_size: int, like: Tensor) -> Tensor:
    """``(G*H,)``: -2 on the gate blocks that feed a tanh (see the module docstring), 1 elsewhere."""
    blocks = {"lstm": (1, 1, -2, 1), "gru": (1, 1, -2), "rnn_tanh": (-2,), "rnn_relu": (1,)}[mode]
    return torch.tensor(blocks, dtype=like.dtype, device=like.device).repeat_interleave(hidden_size)


def weights_key(tensors: Sequence[Tensor]) -> list:
    """What identifies the contents of ``tensors`` cheaply: each one's storage address and version counter,
    which every in-place change through the tensor advances (an optimizer step, ``load_state_dict``,
    ``nn.init``).  A change made through ``tensor.data`` advances no counter and goes unseen."""
    return [(t.data_ptr(), t._version) for t in tensors]


class StepWeights:
    """The weights of a unidirectional stack laid out for ``step``, with what they were made from.

    ``wx``: per layer ``(I_l, G*H)``.  ``wh``: ``(L, H, G*H)``.  ``base``: ``(L, 1, G*H)``, what the
    batched hidden product starts from: ``b_ih + b_hh`` (RNN, LSTM) or, for a GRU, ``b_hn`` alone
    (it stays inside the reset gate's product), whose other biases are in ``bx``, per layer
    ``(G*H,)``, the bias of the input product.  Columns scaled as the module docstring says.
    """

    def __init__(self, mode: str, hidden_size: int, layers: Sequence[LayerWeights], key: list) -> None:
        self.mode = mode
        self.key = key  # weights_key() of the parameters the layers were made from
        H = hidden_size
        like = layers[0][0]
        # constants as tensors: a Python number costs a conversion in every operation that takes it
        self.one, self.minus_two = (torch.tensor(v, dtype=like.dtype, device=like.device) for v in (1.0, -2.0))
        self._table: Optional[tuple[Optional[list], Tensor]] = None  # (embedding's key, table)
        wx, wh, bx, base = [], [], [], []
        with torch.no_grad():
            for w_ih, w_hh, b_ih, b_hh in layers:
                scale = _column_scale(mode, H, w_ih)  # (G*H,)
                wx.append((w_ih.t() * scale).contiguous())  # (I_l, G*H)
                wh.append(w_hh.t() * scale)  # (H, G*H)
                zeros = w_ih.new_zeros(w_ih.shape[0])
                b_ih = zeros if b_ih is None else b_ih.detach()
                b_hh = zeros if b_hh is None else b_hh.detach()
                if mode == "gru":
                    bx.append(torch.cat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H:]]) * scale)
                    base.append(torch.cat([zeros[: 2 * H], b_hh[2 * H:]]) * scale)
                else:
                    bx.append(None)
                    base.append((b_ih + b_hh) * scale)
            self.wx, self.bx = wx, bx
            # wx's two halves of columns as a batch (views: the product reads them in place, row stride G*H)
            self.halves = [w.view(w.shape[0], 2, -1).transpose(0, 1) if w.shape[1] % 2 == 0 else None for w in wx]
            self.wh = torch.stack(wh)  # (L, H, G*H)
            self.base = torch.stack(base).unsqueeze(1)  # (L, 1, G*H)
            # the compiled step's biases: on the input side per layer, and a GRU's inside its reset gate
            self.bias_x = bx if mode == "gru" else list(self.base[:, 0])
            self.bias_h = self.base[:, 0] if mode == "gru" else None

    def table(self, embedding: Optional[Tensor], vocab_size: int) -> Optional[Tensor]:
        """What ``step`` takes as ``rows`` for a token id ``v`` at ``[:, v]``: with the first layer's input
        product and bias for row ``v`` of ``embedding`` ``(V, I)`` (one-hot inputs when None) at ``[0]``,
        and for an RNN or LSTM the biases of the other layers at ``[1:]``: ``(L, V, G*H)`` (``(1, V, G*H)``
        for a GRU).  None when larger than ``TABLE_MAX_ENTRIES``; kept until the embedding changes."""
        wx = self.wx[0]
        L = 1 if self.mode == "gru" else self.base.shape[0]
        if L * vocab_size * wx.shape[1] > TABLE_MAX_ENTRIES:
            return None
        key = None if embedding is None else weights_key([embedding])
        if self._table is None or self._table[0] != key:
            if embedding is not None and (embedding.dim() != 2 or embedding.dtype != wx.dtype
                                          or embedding.device != wx.device):
                return None
            with torch.no_grad():
                b0 = self.bx[0] if self.mode == "gru" else self.base[0, 0]  # (G*H,)
                # one-hot rows pick rows of W_ih^T: the first layer's part is that matrix plus the bias, exactly
                first = wx + b0 if embedding is None else torch.addmm(b0, embedding.detach(), wx)  # (V, G*H)
                rows = torch.cat([first.unsqueeze(0), self.base[1:L].expand(-1, first.shape[0], -1)])
            self._table = (key, rows.contiguous())
        return self._table[1]


    def input_product(self, layer: int, base: Tensor, x: Tensor, split: bool) -> Tensor:
        """``base + x @ wx[layer]``, ``(B, G*H)``: into ``base`` when it is ``(B, G*H)``, a new tensor when it
        is a bias ``(G*H,)``.  With ``split``, one row is computed as two halves of columns in one batched
        product, which a second thread may compute beside the first (the same numbers, bit for bit:
        each half is the same one-row product)."""
        wx, halves = self.wx[layer], self.halves[layer]
        if not split or x.shape[0] != 1 or halves is None or wx.numel() < SPLIT_MIN_ENTRIES:
            return base.addmm_(x, wx) if base.dim() == 2 else torch.addmm(base, x, wx)
        N = wx.shape[1]
        return torch.baddbmm(base.view(2, 1, N // 2), x.expand(2, 1, -1), halves).view(1, N)


def step(weights: StepWeights, x: Optional[Tensor], state: State, rows: Optional[Tensor] = None) -> tuple[Tensor, State]:
    """One step of the stack from ``state`` (``(L, B, H)`` tensors) on the input ``x`` ``(B, I)``, or on the
    token rows ``rows`` of ``StepWeights.table`` (its ``[:, ids]``): the top layer's ``h`` ``(B, H)`` and the
    new ``State``.  Up to ``COMPILED_MAX_BATCH`` rows, where ``rnnkit.nn.compiled`` is available, the whole step
    is one call of its ``stack_step``."""
    mode, wx, bx = weights.mode, weights.wx, weights.bx
    if state.h.shape[1] <= COMPILED_MAX_BATCH and compiled.available():
        h, c = compiled.stack_step(_MODES[mode], None if rows is None else rows[0], x, wx, weights.bias_x, weights.wh,
                                   weights.bias_h, state.h, state.c)
        return h[-1], State(h, c if mode == "lstm" else None)
    split = torch.get_num_threads() > 1
    if mode == "gru":
        hidden = torch.baddbmm(weights.base, state.h, weights.wh).unbind(0)  # L x (B, 3H)
        inputs = None
    else:
        base = weights.base if rows is None else rows  # (L, 1 or B, G*H)
        inputs = torch.baddbmm(base, state.h, weights.wh).unbind(0)  # L x (B, G*H), input products to add
        hidden = None
    cs = state.c.unbind(0) if mode == "lstm" else None
    new_h, new_c = [], []
    for layer in range(len(wx)):
        if inputs is not None:
            gates = inputs[layer]
            if layer > 0 or rows is None:
                gates = weights.input_product(layer, gates, x, split)
        if mode == "lstm":
            i, f, s, o = gates.sigmoid_().chunk(4, 1)  # s = sigmoid(-2 g): tanh(g) = 1 - 2 s
            c = torch.addcmul(i, f, cs[layer]).addcmul_(i, s, value=-2)  # f c + i tanh(g)
            t = torch.mul(c, weights.minus_two).sigmoid_()  # tanh(c) = 1 - 2 t
            x = torch.addcmul(o, o, t, value=-2)  # o tanh(c)
            new_c.append(c)
        elif mode == "gru":
            h = state.h[layer]
            H = h.shape[1]
            if layer == 0 and rows is not None:
                gx = rows[0]  # (B, 3H)
            else:
                gx = weights.input_product(layer, bx[layer], x, split)  # (B, 3H)
            hrz, hn = hidden[layer].split([2 * H, H], 1)
            r, z = torch.add(gx[:, : 2 * H], hrz).sigmoid_().chunk(2, 1)
            s = torch.addcmul(gx[:, 2 * H:], r, hn).sigmoid_()  # tanh(x_n + r (W_hn h + b_hn)) = 1 - 2 s
            x = torch.lerp(torch.add(weights.one, s, alpha=-2), h, z)  # (1 - z) n + z h
        elif mode == "rnn_tanh":
            x = torch.add(weights.one, gates.sigmoid_(), alpha=-2)
        else:  # rnn_relu
            x = gates.relu_()
        new_h.append(x)
    return x, State(torch.stack(new_h), torch.stack(new_c) if new_c else None)


__all__ = ["StepWeights", "step", "weights_key", "TABLE_MAX_ENTRIES", "SPLIT_MIN_ENTRIES", "COMPILED_MAX_BATCH"]
