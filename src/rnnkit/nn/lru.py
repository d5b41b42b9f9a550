"""LRU, the linear recurrent unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks
for Long Sequences"), as one recurrent layer.

A complex diagonal linear recurrence over a state of N = hidden_size units, read out
to H real features and passed through the paper's per-step nonlinearity (GELU,
then a gated linear unit):

    lambda_j = exp(-exp(nu_log_j) + i exp(theta_log_j))          (|lambda_j| < 1 always)
    x_k = lambda ⊙ x_{k-1} + exp(gamma_log) ⊙ (B u_k)             B = B_re + i B_im  (N, I)
    y_k = Re(C x_k) + D u_k                                      C = C_re + i C_im  (H, N), D (H, I)
    out_k = GLU(W_o GELU(y_k) + b_o)                             W_o (2H, H)

Initialisation as in the paper: ``|lambda|`` uniform on the ring ``[r_min, r_max]``
(through ``nu_log = log(-log r)``), phase uniform in ``[0, max_phase]``, and the
normalisation ``gamma = sqrt(1 - |lambda|^2)`` (trained from there, as ``gamma_log``)
so that a white-noise input keeps the state's variance.
D is a full ``(H, I)`` matrix here (the paper's is diagonal with ``I = H``) so that
a layer may change the width.

The state is ``(h, None, x_re, x_im)``: ``h`` ``(B, H)`` the last output, ``x`` ``(B, N)``
complex as its real and imaginary parts.  Training runs ``invariant_scan`` (chunked
Hillis-Steele, complex) over the whole sequence.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.base import SequenceCell
from rnnkit.nn.parallel import invariant_scan
from rnnkit.nn.state import State


class LRUCell(SequenceCell):
    """One LRU layer, ``(B, T, I) -> (B, T, H)``, with a complex diagonal state of ``N = H`` units."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 r_min: float = 0.4, r_max: float = 0.99, max_phase: float = math.pi) -> None:
        super().__init__(input_size, hidden_size)
        if not 0.0 <= r_min < r_max < 1.0:
            raise ValueError(f"need 0 <= r_min < r_max < 1; got {r_min}, {r_max}")
        N, H, I = hidden_size, hidden_size, input_size
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.state_sizes = (H, None, N, N)
        self.nu_log = nn.Parameter(torch.empty(N))
        self.theta_log = nn.Parameter(torch.empty(N))
        self.gamma_log = nn.Parameter(torch.empty(N))
        self.B_re = nn.Parameter(torch.empty(N, I))
        self.B_im = nn.Parameter(torch.empty(N, I))
        self.C_re = nn.Parameter(torch.empty(H, N))
        self.C_im = nn.Parameter(torch.empty(H, N))
        self.D = nn.Parameter(torch.empty(H, I))
        self.weight_out = nn.Parameter(torch.empty(2 * H, H))
        self.bias_out = nn.Parameter(torch.empty(2 * H)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        N, I = self.nu_log.shape[0], self.input_size
        with torch.no_grad():
            u1, u2 = torch.rand(N), torch.rand(N)
            r = torch.sqrt(u1 * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2)  # uniform on the ring
            self.nu_log.copy_(torch.log(-torch.log(r)))
            self.theta_log.copy_(torch.log(self.max_phase * u2.clamp_min(1e-4)))
            self.gamma_log.copy_(0.5 * torch.log1p(-r ** 2))  # log sqrt(1 - |lambda|^2)
            nn.init.normal_(self.B_re, std=1 / math.sqrt(2 * I))
            nn.init.normal_(self.B_im, std=1 / math.sqrt(2 * I))
            nn.init.normal_(self.C_re, std=1 / math.sqrt(N))
            nn.init.normal_(self.C_im, std=1 / math.sqrt(N))
            nn.init.normal_(self.D, std=1 / math.sqrt(I))
            bound = 1 / math.sqrt(self.hidden_size)
            nn.init.uniform_(self.weight_out, -bound, bound)
            if self.bias_out is not None:
                nn.init.uniform_(self.bias_out, -bound, bound)

    def log_lam(self) -> Tensor:
        """``log lambda = -exp(nu_log) + i exp(theta_log)`` ``(N,)`` complex."""
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))

    def lam(self) -> Tensor:
        """The diagonal ``lambda`` ``(N,)`` complex, ``|lambda| = exp(-exp(nu_log)) < 1``."""
        return torch.polar(torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log))

    def _drive(self, u: Tensor) -> Tensor:
        """``gamma ⊙ B u``: ``(..., I)`` -> ``(..., N)`` complex."""
        gamma = torch.exp(self.gamma_log)  # (N,)
        return torch.complex(F.linear(u, self.B_re), F.linear(u, self.B_im)) * gamma

    def _read(self, x_re: Tensor, x_im: Tensor, u: Tensor) -> Tensor:
        """``GLU(W_o GELU(Re(C x) + D u) + b_o)``: ``(..., N)`` states -> ``(..., H)`` outputs."""
        y = F.linear(x_re, self.C_re) - F.linear(x_im, self.C_im) + F.linear(u, self.D)  # Re(C x) + D u
        return F.glu(F.linear(F.gelu(y), self.weight_out, self.bias_out), dim=-1)

    def step(self, u: Tensor, state: State, gates: Optional[dict[str, Tensor]] = None) -> State:
        x_re, x_im = state.extra  # (B, N) each
        x = self.lam() * torch.complex(x_re, x_im) + self._drive(u)  # (B, N) complex
        return State(self._read(x.real, x.imag, u), None, x.real, x.imag)

    def parallel(self, u: Tensor, state: State, keep: Optional[Tensor]) -> tuple[Tensor, State]:
        # Pads come after each row's last real step, so they never reach a real step's state: the
        # scan runs over them with the one lambda of every step, and the final state is each row's
        # state at its last real step.
        x0 = torch.complex(*state.extra)  # (B, N)
        x = invariant_scan(self.log_lam(), self._drive(u), x0)  # (B, T, N) complex
        out = self._read(x.real, x.imag, u)  # (B, T, H)
        if keep is None:
            return out, State(out[:, -1], None, x.real[:, -1], x.imag[:, -1])
        last = keep.sum(1) - 1  # (B,)
        return out, State(*(None if t is None else _at(t, last) for t in (out, None, x.real, x.imag)))


def _at(t: Tensor, index: Tensor) -> Tensor:
    """Row ``b`` of ``t`` ``(B, T, K)`` at step ``index[b]``: ``(B, K)``."""
    return t.gather(1, index.view(-1, 1, 1).expand(-1, 1, t.shape[2])).squeeze(1)
