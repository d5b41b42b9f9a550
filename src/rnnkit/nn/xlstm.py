"""sLSTM and mLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"), as recurrent layers.

Both gate with an exponential input gate ``i = exp(i~)`` and a sigmoid forget gate
(``log f = logsigmoid(f~)``), keep a normaliser ``n`` and a stabiliser ``m`` and store
``c``, ``n`` scaled by ``exp(-m)``, so no exponential overflows:

    m_t  = max(log f_t + m_{t-1}, i~_t)
    i'_t = exp(i~_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)     (both in (0, 1])

sLSTM (scalar memory, hidden-to-hidden recurrence, block-diagonal over heads)::

    [z~; i~; f~; o~] = W x_t + R h_{t-1} + b          R block-diagonal: one (4d, d) block per head
    c_t = f' c_{t-1} + i' tanh(z~),  n_t = f' n_{t-1} + i',  h_t = sigmoid(o~) * c_t / n_t

    state (h, c, n, m), each (B, H).  No parallel form: ``parallel`` is a tight loop with the
    input projection of all steps hoisted into one matmul.

mLSTM (matrix memory per head, no hidden-to-hidden recurrence)::

    q_t, k_t / sqrt(d), v_t = W_q x_t, W_k x_t, W_v x_t  (per head, size d);  i~_t, f~_t scalars per head
    C_t = f' C_{t-1} + i' v_t k_t^T,  n_t = f' n_{t-1} + i' k_t
    h_t = sigmoid(W_o x_t + b_o) ⊙ C_t q_t / max(|n_t^T q_t|, exp(-m_t))

    state (h, C, n, m): h (B, H), C (B, heads*d*d) flattened, n (B, heads*d), m (B, heads).

    Parallel (training) form, per chunk of ``CHUNK`` steps from the carried (C0, n0, m0), with
    F_t = sum_{s<=t} log f_s and the log-gate matrix D_ts = F_t - F_s + i~_s (s <= t):
    m_t = max(F_t + m0, max_s D_ts), h~_t = (sum_s e^{D_ts-m_t} (q_t.k_s) v_s + e^{F_t+m0-m_t} C0 q_t)
    / max(|sum_s e^{D_ts-m_t} q_t.k_s + e^{F_t+m0-m_t} n0.q_t|, e^{-m_t}) — the same m, C, n as
    the recurrence, so both give the same numbers.

Heads have ``head_size(H)`` = gcd(H, 16) units: the state sizes are then linear in H
(a bidirectional encoder's two halves join into a decoder of twice the width).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.base import SequenceCell, pad_mask
from rnnkit.nn.state import State

HEAD_SIZE = 16
CHUNK = 64  # mLSTM: steps per chunk of the parallel form (its (T, T) log-gate matrix is per chunk)


def head_size(hidden_size: int) -> int:
    """Units per head: gcd(hidden_size, 16)."""
    return math.gcd(hidden_size, HEAD_SIZE)


class SLSTMCell(SequenceCell):
    """sLSTM layer; ``weight_ih`` ``(4H, I)`` and ``bias`` ``(4H,)`` hold the gate blocks z, i, f, o;
    ``weight_hh`` ``(heads, 4d, d)`` holds each head's recurrent block (rows z, i, f, o)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.head_dim = head_size(H)
        self.num_heads = H // self.head_dim
        self.state_sizes = (H, H, H, H)
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))  # (4H, I)
        self.weight_hh = nn.Parameter(torch.empty(self.num_heads, 4 * self.head_dim, self.head_dim))
        self.bias = nn.Parameter(torch.empty(4 * H)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        with torch.no_grad():
            nn.init.uniform_(self.weight_ih, -1 / math.sqrt(self.input_size), 1 / math.sqrt(self.input_size))
            nn.init.uniform_(self.weight_hh, -1 / math.sqrt(self.head_dim), 1 / math.sqrt(self.head_dim))
            if self.bias is not None:
                self.bias.zero_()
                self.bias[2 * H: 3 * H].fill_(1.0)  # forget gate open at the start

    def _recur(self, h: Tensor) -> Tensor:
        """``R h`` in the gate layout: ``(B, H)`` -> ``(B, 4H)``."""
        B = h.shape[0]
        r = torch.einsum("bnd,ngd->bng", h.view(B, self.num_heads, self.head_dim), self.weight_hh)  # (B, heads, 4d)
        return r.view(B, self.num_heads, 4, self.head_dim).transpose(1, 2).reshape(B, 4 * self.hidden_size)

    def _step(self, xw: Tensor, state: State, gates: Optional[dict[str, Tensor]] = None) -> State:
        """The step after the input projection ``xw = W x_t + b`` ``(B, 4H)``."""
        h, c, n, m = state
        z, i, f, o = (xw + self._recur(h)).chunk(4, dim=1)  # 4 x (B, H) pre-activations
        log_f = F.logsigmoid(f)
        m_new = torch.maximum(log_f + m, i)  # stabiliser
        i_ = torch.exp(i - m_new)  # stabilised input gate
        f_ = torch.exp(log_f + m - m_new)  # stabilised forget gate
        o = torch.sigmoid(o)  # output gate
        c = f_ * c + i_ * torch.tanh(z)
        n = f_ * n + i_
        if gates is not None:
            gates.update({"input gate": i_, "forget gate": f_, "output gate": o, "cell": c / n})
        return State(o * c / n, c, n, m_new)

    def step(self, x: Tensor, state: State, gates: Optional[dict[str, Tensor]] = None) -> State:
        return self._step(F.linear(x, self.weight_ih, self.bias), state, gates)

    def parallel(self, x: Tensor, state: State, keep: Optional[Tensor]) -> tuple[Tensor, State]:
        xw = F.linear(x, self.weight_ih, self.bias)  # (B, T, 4H): one matmul for all steps
        hs = []
        keeps = [None] * x.shape[1] if keep is None else keep.unbind(1)
        for xw_t, k in zip(xw.unbind(1), keeps):
            new = self._step(xw_t, state)
            state = new if k is None else new.where(k, state)
            hs.append(state.h)
        return torch.stack(hs, dim=1), state


class MLSTMCell(SequenceCell):
    """mLSTM layer; ``weight`` ``(4H, I)`` and ``bias`` hold q, k, v, o; ``weight_gates``
    ``(2 heads, I)`` and ``bias_gates`` the input and forget pre-activations of each head."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.head_dim = d = head_size(H)
        self.num_heads = NH = H // d
        self.state_sizes = (H, NH * d * d, NH * d, NH)
        self.weight = nn.Parameter(torch.empty(4 * H, input_size))  # (4H, I)
        self.bias = nn.Parameter(torch.empty(4 * H)) if bias else None
        self.weight_gates = nn.Parameter(torch.empty(2 * NH, input_size))  # (2 heads, I): i~, f~
        self.bias_gates = nn.Parameter(torch.empty(2 * NH))  # gates keep their bias: the forget gate starts open
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.input_size)
        with torch.no_grad():
            nn.init.uniform_(self.weight, -bound, bound)
            nn.init.uniform_(self.weight_gates, -bound, bound)
            if self.bias is not None:
                self.bias.zero_()
            self.bias_gates[: self.num_heads].zero_()
            self.bias_gates[self.num_heads:].fill_(3.0)  # forget gate sigmoid(3) = 0.95

    def _project(self, x: Tensor):
        """``x`` ``(..., I)`` -> q, k (scaled), v ``(..., heads, d)``, o ``(..., H)``, i~, log f ``(..., heads)``."""
        lead = x.shape[:-1]
        q, k, v, o = F.linear(x, self.weight, self.bias).chunk(4, dim=-1)  # 4 x (..., H)
        i, f = F.linear(x, self.weight_gates, self.bias_gates).chunk(2, dim=-1)  # 2 x (..., heads)
        shape = (*lead, self.num_heads, self.head_dim)
        return (q.reshape(shape), k.reshape(shape) / math.sqrt(self.head_dim), v.reshape(shape),
                torch.sigmoid(o), i, F.logsigmoid(f))

    def step(self, x: Tensor, state: State, gates: Optional[dict[str, Tensor]] = None) -> State:
        B, NH, d = x.shape[0], self.num_heads, self.head_dim
        h, C, n, m = state
        C, n = C.view(B, NH, d, d), n.view(B, NH, d)  # C (B, heads, d_v, d_k)
        q, k, v, o, i, log_f = self._project(x)  # (B, heads, d) x 3, (B, H), (B, heads) x 2
        m_new = torch.maximum(log_f + m, i)  # (B, heads)
        i_ = torch.exp(i - m_new).unsqueeze(-1)  # (B, heads, 1)
        f_ = torch.exp(log_f + m - m_new).unsqueeze(-1)
        C = f_.unsqueeze(-1) * C + i_.unsqueeze(-1) * (v.unsqueeze(-1) * k.unsqueeze(-2))  # + i' v k^T
        n = f_ * n + i_ * k  # (B, heads, d)
        num = (C @ q.unsqueeze(-1)).squeeze(-1)  # (B, heads, d): C q
        den = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m_new)).unsqueeze(-1)  # (B, heads, 1)
        if gates is not None:  # per head, shown on each of its units
            gates.update({"input gate": i_.expand(B, NH, d).reshape(B, -1),
                          "forget gate": f_.expand(B, NH, d).reshape(B, -1), "output gate": o})
        return State(o * (num / den).reshape(B, -1), C.reshape(B, -1), n.reshape(B, -1), m_new)

    def parallel(self, x: Tensor, state: State, keep: Optional[Tensor]) -> tuple[Tensor, State]:
        B, T, _ = x.shape
        NH, d = self.num_heads, self.head_dim
        q, k, v, o, i, log_f = self._project(x)  # (B, T, heads, d) x 3, (B, T, H), (B, T, heads) x 2
        # a pad leaves the state alone: f = 1 (log f = 0), i = 0 (i~ = -inf)
        log_f = pad_mask(keep, log_f, 0.0)
        i = pad_mask(keep, i, float("-inf"))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, T, d)
        i, log_f = i.transpose(1, 2), log_f.transpose(1, 2)  # (B, heads, T)
        _, C, n, m = state
        C, n = C.view(B, NH, d, d), n.view(B, NH, d)
        outs = []
        # the chunks split once (a slice per chunk would cost each a full-size zero tensor in backward)
        for qc, kc, vc, ic, fc in zip(*(t.split(CHUNK, dim=2) for t in (q, k, v, i, log_f))):
            h, C, n, m = _mlstm_chunk(qc, kc, vc, ic, fc, C, n, m)
            outs.append(h)
        h = torch.cat(outs, 2).transpose(1, 2).reshape(B, T, -1) * o  # (B, T, H)
        last = h[:, -1] if keep is None else h.gather(
            1, (keep.sum(1) - 1).view(-1, 1, 1).expand(-1, 1, h.shape[2])).squeeze(1)
        return h, State(last, C.reshape(B, -1), n.reshape(B, -1), m)


def _mlstm_chunk(q: Tensor, k: Tensor, v: Tensor, i: Tensor, log_f: Tensor, C0: Tensor, n0: Tensor, m0: Tensor):
    """The stabilised parallel mLSTM over one chunk from ``(C0, n0, m0)``.

    q, k, v ``(B, heads, L, d)``; i, log_f ``(B, heads, L)``; C0 ``(B, heads, d, d)``, n0 ``(B, heads, d)``,
    m0 ``(B, heads)``.  Returns h~ ``(B, heads, L, d)`` (before the output gate) and the state after the chunk.
    """
    L = q.shape[2]
    Fc = log_f.cumsum(-1)  # (B, heads, L): log of the forget products since the chunk's start
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    log_D = (Fc.unsqueeze(-1) - Fc.unsqueeze(-2) + i.unsqueeze(-2)).masked_fill(~causal, float("-inf"))  # (B,h,L,L)
    log_0 = Fc + m0.unsqueeze(-1)  # (B, heads, L): the start state's weight
    m = torch.maximum(log_D.max(-1).values, log_0)  # (B, heads, L): the recurrence's stabiliser, step by step
    Dn = torch.exp(log_D - m.unsqueeze(-1))  # (B, heads, L, L)
    w0 = torch.exp(log_0 - m).unsqueeze(-1)  # (B, heads, L, 1)
    S = (q @ k.transpose(-1, -2)) * Dn  # (B, heads, L, L): weight of v_s in step t
    num = S @ v + w0 * (q @ C0.transpose(-1, -2))  # (B, heads, L, d): sum_s ... v_s + w0 C0 q_t
    den = S.sum(-1, keepdim=True) + w0 * (q * n0.unsqueeze(-2)).sum(-1, keepdim=True)  # n_t^T q_t, scaled
    h = num / torch.maximum(den.abs(), torch.exp(-m).unsqueeze(-1))
    # the state after the chunk: the last row of the log-gate matrix
    m_end = m[..., -1]  # (B, heads)
    w = torch.exp(log_D[..., -1, :] - m_end.unsqueeze(-1)).unsqueeze(-1)  # (B, heads, L, 1)
    g0 = torch.exp(log_0[..., -1] - m_end)  # (B, heads)
    C = g0[..., None, None] * C0 + (v * w).transpose(-1, -2) @ k  # (B, heads, d_v, d_k)
    n = g0.unsqueeze(-1) * n0 + (k * w).sum(-2)  # (B, heads, d)
    return h, C, n, m_end
