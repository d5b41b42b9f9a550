"""One GRU / plain-RNN / LSTM layer over a whole sequence, with a hand-written backward (for CPU training).

``scan_layer`` (GRU, plain RNN) and ``lstm_scan_layer`` run one layer in one direction
over a time-major sequence as one ``torch.autograd.Function`` (``Scan``, ``LSTMScan``):

* forward: the input projection hoisted out of the loop (a few large matmuls, each
  over a block of steps), then per step one matmul for ``W_hh h`` and a few
  elementwise ops; the gate activations of every step are kept for backward;
* backward: the time loop in reverse writes each step's gate gradients into one
  stacked buffer (fused ``*_backward`` kernels) and carries ``dh`` back with one
  matmul per step; then every weight gradient is ONE matmul over all ``T*B`` rows
  (``dW_hh = dG^T H_prev``, ``dW_ih = dG^T X``, ``dX = dG W_ih``) and every bias
  gradient one sum, where autograd runs a small matmul and a dozen graph nodes
  per step.

Where the time goes on CPU, and what this module does about it (measured, 1 thread,
torch 2.13, AVX-512 AMD CPU; see ``benchmarks/gru_rnn.py``):

* matmuls: float32 products go to oneDNN (``rnnkit.nn.onednn.linear``), about 2x the throughput
  of the MKL sgemm that ``torch.mm`` and ``torch.nn.GRU`` use on this CPU;
* ``tanh``: torch's CPU tanh costs 5x a sigmoid, so ``tanh(a) = 2 sigmoid(2a) - 1``,
  with the factor 2 folded into the weights (doubling is exact);
* fresh memory: a new buffer costs a page fault per 4 KiB, as much as the step's
  elementwise work, so the input projection is computed a few steps at a time
  (``_Projection``) and backward's scratch buffers are kept from one backward to
  the next (``_Spare``; ``free_spares()`` lets them go).

* Python dispatch: where ``rnnkit.nn.compiled`` is built, the GRU and LSTM time loops (forward and
  backward) run in C++ with the same product calls and one fused element-wise pass a step; the
  Python loops below remain the reference and the fallback.

The equations are PyTorch's (``torch.nn.GRU``, gates r, z, n):

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h = n + z * (h - n)

and ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (or relu) for the plain RNN; the LSTM's
are ``torch.nn.LSTM``'s (see ``LSTMScan``).  With
a keep mask the state advances only where ``keep[t]`` (``t < length``) and is carried
unchanged elsewhere, as in ``Recurrent``'s masked cell loop.  With ``reverse=True``
the loop runs from the last step to the first; since pads come after each row's
last real step, the state stays at ``h0`` until the row's own last step: the
backward direction of a padded batch, each row reversed within its length, with
no gather.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.nn.onednn import linear as _linear, uses_onednn as _onednn

SCAN_MODES = ("gru", "rnn_tanh", "rnn_relu")

# Whether ``Recurrent`` trains an LSTM through ``lstm_scan_layer`` (True) or oneDNN's LSTM primitive, which
# ``torch.nn.LSTM`` runs on CPU (False, the default).  The scan measured no faster than the primitive on two
# threads (0.90-1.04x in two runs at batch 64 x 128 steps, hidden 256 and 512, ``benchmarks/gru_rnn.py
# --modes lstm``) and 1.04-1.12x on one, so it is there to be tried, not the default.
# ``RNNKIT_LSTM_SCAN=1`` turns it on; a run folder records it with the other kernel choices
# (``rnnkit.nn.onednn.kernel_choices``), and the two paths round differently.
LSTM_SCAN = os.environ.get("RNNKIT_LSTM_SCAN") == "1"


def set_lstm_scan(on: bool) -> None:
    """Train LSTMs through the scan (True) or oneDNN's LSTM primitive (False) in this process."""
    global LSTM_SCAN
    LSTM_SCAN = bool(on)


_aten = torch.ops.aten
PROJECTION_BLOCK_BYTES = 4 << 20  # the input projection is computed this much at a time (see _Projection)


def scan_layer(
    mode: str, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
    keep: Optional[Tensor] = None, reverse: bool = False,
) -> Tensor:
    """One layer, one direction: ``x`` ``(T, B, I)`` from ``h0`` ``(B, H)`` -> every step's ``h`` ``(T, B, H)``.

    Weights as ``torch.nn.GRU/RNN``'s ``weight_ih_l0`` ... (``w_ih`` ``(G*H, I)``,
    ``w_hh`` ``(G*H, H)``, biases ``(G*H,)``, both or neither).  ``keep``: ``(T, B)``
    bool, the state advances only where True (None: everywhere).  ``reverse``: run
    from step ``T-1`` down to 0.  The final state is ``out[-1]`` (``out[0]`` when
    ``reverse``); with ``keep``, pads hold the final state (forward) or ``h0`` (reverse).
    ``out`` is saved for backward: changed in place, backward raises (as for cuDNN's RNN).
    """
    if mode not in SCAN_MODES:
        raise ValueError(f"scan_layer runs {SCAN_MODES}; got {mode!r}")
    if (b_ih is None) != (b_hh is None):
        raise ValueError("scan_layer takes both biases or neither")
    if keep is not None:
        keep = keep.unsqueeze(2)  # (T, B, 1), broadcasts over H
    x, h0, w_ih, w_hh, b_ih, b_hh = _for_grad_mode(x, h0, w_ih, w_hh, b_ih, b_hh)
    return Scan.apply(x, h0, w_ih, w_hh, b_ih, b_hh, keep, mode, reverse)


def _for_grad_mode(*tensors: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    """The tensors as they are, or detached where gradients are off (``no_grad``, ``inference_mode``):
    an autograd function sees ``needs_input_grad`` from ``requires_grad`` alone, and would keep every
    step's gates for a backward that cannot come."""
    if torch.is_grad_enabled():
        return tensors
    return tuple(None if t is None else t.detach() for t in tensors)


class Scan(torch.autograd.Function):
    """``apply(x (T, B, I), h0 (B, H), w_ih, w_hh, b_ih, b_hh, keep (T, B, 1) | None, mode, reverse)`` -> ``(T, B, H)``.

    Saved for backward, GRU: per step ``[r | z | 2 (W_hn h + b_hn)]`` ``(B, 3H)`` (the
    hidden matmul's own output, gated in place) and ``n`` ``(T, B, H)``; plain RNN:
    the outputs only.  Every step's ``h`` is the output itself.
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, keep, mode, reverse):
        T, B, I = x.shape
        H = w_hh.shape[1]
        train = any(ctx.needs_input_grad[:6])
        x2 = x.reshape(T * B, I)  # (T*B, I)
        h0 = h0.contiguous()
        ctx.mode, ctx.reverse, ctx.has_bias = mode, reverse, b_ih is not None
        ctx.compiled = mode == "gru" and T > 0 and _compiled(x, T * B * 3 * H if train else 0)
        if mode == "gru":
            # the n block doubled (exact), so that n = tanh(a) = 2 sigmoid(2a) - 1 takes a sigmoid
            w_ih2, w_hh2 = _double_n(w_ih, H), _double_n(w_hh, H)
            b_ih2 = None if b_ih is None else _double_n(b_ih, H)
            b_hh2 = None if b_hh is None else _double_n(b_hh, H)
        if ctx.compiled:  # the loop in C++ (rnnkit.nn.compiled): one fused element-wise pass a step
            steps = max(1, PROJECTION_BLOCK_BYTES // (B * 3 * H * x.element_size()))
            x2 = x2.contiguous()
            out, gates_all, ns = torch.ops.rnnkit_scan.gru_forward(
                x2, h0, w_ih2, w_hh2, b_ih2, b_hh2, None if keep is None else keep.squeeze(2), reverse,
                train, _onednn(x2, steps * B * I * 3 * H), _onednn(h0, B * H * 3 * H), steps)
            if train:
                ctx.save_for_backward(x2, h0, w_ih, w_hh, keep, out, ns, gates_all)
            return out
        order = range(T - 1, -1, -1) if reverse else range(T)
        out = x.new_empty(T, B, H)
        outs = out.unbind(0)  # T x (B, H)
        keeps = None if keep is None else keep.unbind(0)  # T x (B, 1)
        minus_one = x.new_full((), -1.0)
        h = h0
        if mode == "gru":
            proj = _Projection(x2, w_ih2, b_ih2, B, (2 * H, H))  # per step [x_r | x_z], 2 x_n
            ns = x.new_empty(T if train else 1, B, H)  # n of every step
            ns_ = ns.unbind(0)
            gates: list[Tensor] = [None] * T if train else []  # type: ignore[list-item]
            for t in order:
                (p_rz, p_n), o, n = proj[t], outs[t], ns_[t if train else 0]
                g = _linear(h, w_hh2, b_hh2)  # (B, 3H): [W_hr h + b_hr | W_hz h + b_hz | 2 hn]
                rz, hn2 = g.split((2 * H, H), 1)
                r, z = rz.split(H, 1)
                rz.add_(p_rz).sigmoid_()  # [r | z] in place
                torch.addcmul(p_n, r, hn2, out=n).sigmoid_()  # sigmoid(2 (x_n + r * hn))
                torch.add(minus_one, n, alpha=2, out=n)  # n = 2 sigmoid(2a) - 1 = tanh(a)
                torch.lerp(n, h, z, out=o)  # h' = n + z * (h - n)
                if keeps is not None:
                    torch.where(keeps[t], o, h, out=o)
                if train:
                    gates[t] = g
                h = o
            if train:
                ctx.save_for_backward(x2, h0, w_ih, w_hh, keep, out, ns, *gates)
        else:
            tanh = mode == "rnn_tanh"
            w_ih2, w_hh2 = (2 * w_ih, 2 * w_hh) if tanh else (w_ih, w_hh)  # tanh(a) = 2 sigmoid(2a) - 1
            bias = None if b_ih is None else (2 * (b_ih + b_hh) if tanh else b_ih + b_hh)
            proj = _Projection(x2, w_ih2, bias, B, (H,))  # per step (B, H)
            for t in order:
                o = outs[t]
                a = _linear(h, w_hh2, add=proj[t][0])  # (B, H): the pre-activation (doubled for tanh)
                if tanh:
                    torch.add(minus_one, a.sigmoid_(), alpha=2, out=o)
                else:
                    torch.clamp_min(a, 0, out=o)
                if keeps is not None:
                    torch.where(keeps[t], o, h, out=o)
                h = o
            if train:
                ctx.save_for_backward(x2, h0, w_ih, w_hh, keep, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out):  # d_out (T, B, H)
        x2, h0, w_ih, w_hh, keep, out, *rest = ctx.saved_tensors
        mode, reverse = ctx.mode, ctx.reverse
        T, B, H = out.shape
        order = range(T - 1, -1, -1) if reverse else range(T)  # the forward's step order
        outs, d_outs = out.unbind(0), d_out.unbind(0)
        keeps = None if keep is None else keep.unbind(0)
        dh = d_out[order[-1]]  # d loss / d h after the last step
        if mode == "gru":
            ns, gates = rest[0], rest[1:]
            # per step and row: [d hn | d x_r | d x_z | d x_n] (4H), so d of the projection is the
            # block H:4H and d of the hidden matmul the block 0:3H, its gates in the order n, r, z
            grads = _SPARE.take((T, B, 4 * H), out)
            w_nrz_t = _nrz(w_hh, H).t().contiguous()  # (H, 3H)
            if ctx.compiled:
                dh = torch.ops.rnnkit_scan.gru_backward(
                    d_out.contiguous(), gates[0], ns, out, h0, w_nrz_t, None if keep is None else keep.squeeze(2),
                    grads, reverse, _onednn(out, B * 3 * H * H))
            else:
                d_hns, d_rs, d_zs, d_ns = (b.unbind(0) for b in grads.split(H, 2))  # 4 x T x (B, H)
                d_hiddens, ns_ = grads[..., : 3 * H].unbind(0), ns.unbind(0)
                direct, dz, dn = (out.new_empty(B, H) for _ in range(3))
                # the hidden matmul's input, contiguous: a step's block of `grads` is strided (4H a row),
                # and the matmul would otherwise copy it into fresh memory every step
                d_hidden_t = out.new_empty(B, 3 * H)
                zero = out.new_zeros(())
                for i in range(T - 1, -1, -1):
                    t = order[i]
                    n, d_hn, d_r, d_z, d_n = ns_[t], d_hns[t], d_rs[t], d_zs[t], d_ns[t]
                    hp = h0 if i == 0 else outs[order[i - 1]]  # the state step t started from
                    r, z, hn2 = gates[t].split(H, 1)
                    dhk = dh if keeps is None else dh * keeps[t]  # no gradient where the state froze
                    torch.mul(dhk, z, out=direct)  # dh * z: the direct path to h_prev
                    torch.sub(hp, n, out=dz).mul_(dhk)  # d z = dh * (h - n)
                    torch.sub(dhk, direct, out=dn)  # d n = dh * (1 - z)
                    _aten.tanh_backward.grad_input(dn, n, grad_input=d_n)  # d x_n = d n * (1 - n^2)
                    torch.addcmul(zero, d_n, hn2, value=0.5, out=dn)  # d r = d x_n * hn
                    torch.mul(d_n, r, out=d_hn)  # d hn = d x_n * r
                    _aten.sigmoid_backward.grad_input(dn, r, grad_input=d_r)  # d x_r = d r * r * (1 - r)
                    _aten.sigmoid_backward.grad_input(dz, z, grad_input=d_z)  # d x_z = d z * z * (1 - z)
                    if keeps is not None:  # where the state froze, all of dh goes straight back
                        direct.add_(dh).sub_(dhk)
                    # d h_prev = direct + [d hn | d x_r | d x_z] W_hh[n, r, z] (+ the output's own gradient there)
                    into = direct if i == 0 else torch.add(d_outs[order[i - 1]], direct)
                    dh = _linear(d_hidden_t.copy_(d_hiddens[t]), w_nrz_t, add=into)
            d_hidden = grads[..., : 3 * H]  # (T, B, 3H): d (W_hh h + b_hh), gates n, r, z
            d_proj = grads[..., H:]  # (T, B, 3H): d (W_ih x + b_ih), gates r, z, n
        else:
            grads = _SPARE.take((T, B, H), out)  # d of the pre-activation
            w_t = w_hh.t().contiguous()  # (H, H)
            grads_ = grads.unbind(0)
            for i in range(T - 1, -1, -1):
                t = order[i]
                d = grads_[t]
                if mode == "rnn_tanh":
                    _aten.tanh_backward.grad_input(dh, outs[t], grad_input=d)  # dh * (1 - h^2)
                else:
                    _aten.threshold_backward.grad_input(dh, outs[t], 0, grad_input=d)  # dh where h > 0
                into = None if i == 0 else d_outs[order[i - 1]]
                if keeps is not None:  # where the state froze: no gradient inside, all of dh straight back
                    d.mul_(keeps[t])
                    frozen = dh.masked_fill(keeps[t], 0)
                    into = frozen if into is None else frozen.add_(into)
                dh = _linear(d, w_t, add=into)
            d_hidden = d_proj = grads
        d_h0 = dh

        # Every weight gradient as one matmul over all T*B rows; every bias gradient as one sum.
        need = ctx.needs_input_grad
        d_b_ih = d_b_hh = None
        d_x, d_w_ih, d_w_hh = _input_and_weight_grads(d_proj, grads, x2, w_ih, out, h0, reverse,
                                                      need[0], need[2], need[3])
        if d_w_hh is not None and mode == "gru":
            d_w_hh = _nrz(d_w_hh, H, inverse=True)
        if ctx.has_bias and (need[4] or need[5]):
            d_b_ih = d_proj.reshape(T * B, -1).sum(0)  # (G*H,)
            if mode == "gru":  # b_hr and b_hz add up with b_ir and b_iz; b_hn sits inside r * (...)
                d_b_hh = torch.cat([d_b_ih[: 2 * H], d_hidden[..., :H].sum((0, 1))])
            else:
                d_b_hh = d_b_ih.clone()  # its own tensor: autograd may keep it as the .grad
        _SPARE.give(grads)  # nothing returned refers to it
        return d_x, (d_h0 if need[1] else None), d_w_ih, d_w_hh, d_b_ih, d_b_hh, None, None, None


def lstm_scan_layer(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
    keep: Optional[Tensor] = None, reverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """One LSTM layer, one direction: ``x`` ``(T, B, I)`` from ``(h0, c0)`` -> every step's ``h`` and the final ``c``.

    Weights as ``torch.nn.LSTM``'s (gates i, f, g, o: ``w_ih`` ``(4H, I)``, ``w_hh``
    ``(4H, H)``, biases ``(4H,)``, both or neither); ``keep`` and ``reverse`` as in
    ``scan_layer``.  Returns ``out`` ``(T, B, H)`` and ``c_n`` ``(B, H)``, the cell state
    after the last step run (with ``keep``: each row's last real step; ``reverse``: step 0).
    """
    if (b_ih is None) != (b_hh is None):
        raise ValueError("lstm_scan_layer takes both biases or neither")
    if keep is not None:
        keep = keep.unsqueeze(2)  # (T, B, 1)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _for_grad_mode(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return LSTMScan.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep, reverse)


class LSTMScan(torch.autograd.Function):
    """``apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep (T, B, 1) | None, reverse)`` -> ``(out (T, B, H), c_n (B, H))``.

    PyTorch's equations: ``[i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](W_ih x + b_ih
    + W_hh h + b_hh)``, ``c' = f * c + i * g``, ``h' = o * tanh(c')``.  Forward: per step one
    oneDNN product that also adds the step's input projection and the bias, one sigmoid
    over all four gates (the g block's weights doubled, so ``tanh(a) = 2 sigmoid(2a) - 1``),
    and five element-wise ops.  Saved for backward: every step's gates ``(T, B, 4H)``
    (activated), its ``c`` and its ``tanh(c)`` ``(T, B, H)``, and the outputs.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep, reverse):
        T, B, I = x.shape
        H = w_hh.shape[1]
        train = any(ctx.needs_input_grad[:7])
        x2 = x.reshape(T * B, I).contiguous()
        h0, c0 = h0.contiguous(), c0.contiguous()
        order = range(T - 1, -1, -1) if reverse else range(T)
        w_ih2, w_hh2 = _double_g(w_ih, H), _double_g(w_hh, H)
        b_ih2 = None if b_ih is None else _double_g(b_ih, H)
        b_hh2 = None if b_hh is None else _double_g(b_hh, H)
        ctx.reverse, ctx.has_bias = reverse, b_ih is not None
        ctx.compiled = T > 0 and _compiled(x, T * B * 4 * H if train else 0)
        if ctx.compiled:  # the same loop in C++ (rnnkit.nn.compiled): one fused element-wise pass a step
            steps = max(1, PROJECTION_BLOCK_BYTES // (B * 4 * H * x.element_size()))
            out, c_n, gates, cs, tcs = torch.ops.rnnkit_scan.lstm_forward(
                x2, h0, c0, w_ih2, w_hh2, b_ih2, b_hh2, None if keep is None else keep.squeeze(2), reverse, train,
                _onednn(x2, steps * B * I * 4 * H), _onednn(h0, B * H * 4 * H), steps)
            if train:
                ctx.save_for_backward(x2, h0, c0, w_ih, w_hh, keep, out, cs, tcs, gates)
            return out, c_n
        proj = _Projection(x2, w_ih2, b_ih2, B, (4 * H,))
        out = x.new_empty(T, B, H)
        outs = out.unbind(0)
        keeps = None if keep is None else keep.unbind(0)
        kept = T if train else 2  # inference: two c buffers in turn
        cs, tcs = x.new_empty(kept, B, H), x.new_empty(T if train else 1, B, H)
        cs_, tcs_ = cs.unbind(0), tcs.unbind(0)
        gates = x.new_empty(T if train else 1, B, 4 * H)  # every step's activated gates
        gates_ = gates.unbind(0)
        minus_one = x.new_full((), -1.0)
        h, c = h0, c0
        for k, t in enumerate(order):
            c_new = cs_[t] if train else cs_[k % 2]
            tc = tcs_[t if train else 0]
            a = torch.sigmoid(_linear(h, w_hh2, b_hh2, add=proj[t][0]), out=gates_[t if train else 0])
            i, f, g, o = a.split(H, 1)  # (B, H) each: [i | f | sigmoid(2 a_g) | o], then g = tanh(a_g)
            torch.add(minus_one, g, alpha=2, out=g)  # g = tanh(a_g)
            torch.mul(f, c, out=c_new).addcmul_(i, g)  # c' = f c + i g
            torch.tanh(c_new, out=tc)
            torch.mul(o, tc, out=outs[t])  # h' = o tanh(c')
            if keeps is not None:
                torch.where(keeps[t], outs[t], h, out=outs[t])
                torch.where(keeps[t], c_new, c, out=c_new)
            h, c = outs[t], c_new
        c_n = c.clone()
        if train:
            ctx.save_for_backward(x2, h0, c0, w_ih, w_hh, keep, out, cs, tcs, gates)
        return out, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_cn):  # (T, B, H), (B, H)
        x2, h0, c0, w_ih, w_hh, keep, out, cs, tcs, gates = ctx.saved_tensors
        reverse = ctx.reverse
        T, B, H = out.shape
        grads = _SPARE.take((T, B, 4 * H), out)  # d of each step's pre-activations, gates i, f, g, o
        w_t = w_hh.t().contiguous()  # (H, 4H)
        if ctx.compiled:
            dh, dc = torch.ops.rnnkit_scan.lstm_backward(
                d_out.contiguous(), d_cn, gates, cs, tcs, c0, w_t, None if keep is None else keep.squeeze(2),
                grads, reverse, _onednn(out, B * 4 * H * H))
        else:
            dh, dc = _lstm_backward_loop(d_out, d_cn, gates, cs, tcs, c0, w_t, keep, grads, reverse)
        need = ctx.needs_input_grad
        d_b_ih = d_b_hh = None
        d_x, d_w_ih, d_w_hh = _input_and_weight_grads(grads, grads, x2, w_ih, out, h0, reverse,
                                                      need[0], need[3], need[4])
        if ctx.has_bias and (need[5] or need[6]):
            d_b_ih = grads.view(T * B, 4 * H).sum(0)  # (4H,)
            d_b_hh = d_b_ih.clone()  # its own tensor: autograd may keep it as the .grad
        _SPARE.give(grads)
        return (d_x, (dh if need[1] else None), (dc if need[2] else None),
                d_w_ih, d_w_hh, d_b_ih, d_b_hh, None, None)


def _lstm_backward_loop(d_out: Tensor, d_cn: Tensor, gates: Tensor, cs: Tensor, tcs: Tensor, c0: Tensor, w_t: Tensor,
                        keep: Optional[Tensor], grads: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
    """``LSTMScan``'s backward time loop in Python: fills ``grads`` ``(T, B, 4H)``, returns ``(d h0, d c0)``."""
    T, B, H = d_out.shape
    order = range(T - 1, -1, -1) if reverse else range(T)
    d_outs, cs_, tcs_, gates = d_out.unbind(0), cs.unbind(0), tcs.unbind(0), gates.unbind(0)
    keeps = None if keep is None else keep.unbind(0)
    grads_ = grads.unbind(0)
    dh = d_outs[order[-1]]
    dc = d_cn.contiguous()  # autograd passes zeros for an output that was not used
    tmp, dc_all = d_out.new_empty(B, H), d_out.new_empty(B, H)
    for k in range(T - 1, -1, -1):
        t = order[k]
        i, f, g, o = gates[t].split(H, 1)
        d_i, d_f, d_g, d_o = grads_[t].split(H, 1)
        c_prev = c0 if k == 0 else cs_[order[k - 1]]
        tc = tcs_[t]
        dhk, dck = (dh, dc) if keeps is None else (dh * keeps[t], dc * keeps[t])
        torch.mul(dhk, tc, out=tmp)
        _aten.sigmoid_backward.grad_input(tmp, o, grad_input=d_o)  # d a_o = dh tanh(c) o (1 - o)
        torch.mul(dhk, o, out=tmp)
        _aten.tanh_backward.grad_input(tmp, tc, grad_input=dc_all)  # dh o (1 - tanh(c)^2)
        dc_all.add_(dck)  # d c' in all
        torch.mul(dc_all, g, out=tmp)
        _aten.sigmoid_backward.grad_input(tmp, i, grad_input=d_i)  # d a_i = dc g i (1 - i)
        torch.mul(dc_all, i, out=tmp)
        _aten.tanh_backward.grad_input(tmp, g, grad_input=d_g)  # d a_g = dc i (1 - g^2)
        torch.mul(dc_all, c_prev, out=tmp)
        _aten.sigmoid_backward.grad_input(tmp, f, grad_input=d_f)  # d a_f = dc c f (1 - f)
        dc_new = dc_all.mul(f)  # d c = dc' f
        into = None if k == 0 else d_outs[order[k - 1]]
        if keeps is not None:  # where the state froze, all of dh and dc go straight back
            dc_new.add_(dc).sub_(dck)
            frozen = dh - dhk
            into = frozen if into is None else frozen.add_(into)
        dh = _linear(grads_[t], w_t, add=into)  # d h = [d a_i | d a_f | d a_g | d a_o] W_hh
        dc = dc_new
    return dh, dc


# The compiled loops keep every step's gates in one buffer; above this size it is fresh memory from the
# OS on every call (glibc's heap reuses blocks up to 32 MiB), likely why they measured slower there
# (GRU training at hidden 512, bidirectional, batch 64 x 128: 0.71-1.01x the Python loops in 15 rounds,
# whose per-step blocks the heap reuses).  Above it, the Python loops run.
COMPILED_MAX_SAVED_BYTES = 32 << 20


def _compiled(x: Tensor, saved: int = 0) -> bool:
    """Whether a scan of ``x`` that keeps ``saved`` gate values runs its loops compiled (``rnnkit.nn.compiled``):
    float32/64 on CPU, the gates' buffer under ``COMPILED_MAX_SAVED_BYTES``."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if saved * x.element_size() > COMPILED_MAX_SAVED_BYTES:
        return False
    from rnnkit.nn import compiled

    return compiled.available()


class _Projection:
    """``x2 w^T + b`` one step at a time, split in column blocks: ``proj[t]`` is a tuple of ``(B, n)`` views.

    Computed a block of about 4 MiB of steps at once: one matmul over all ``T*B`` rows
    would write a fresh buffer of ``T*B*N`` floats, and fresh memory costs a page fault
    per 4 KiB; a block of a few hundred rows keeps the matmul as fast and lets the
    allocator reuse the last block's memory (measured: 25 -> 6 ms for the first layer
    of a GRU of 512).
    """

    def __init__(self, x2: Tensor, w: Tensor, b: Optional[Tensor], B: int, split: tuple[int, ...]) -> None:
        self.x2, self.w, self.b, self.B, self.split = x2, w, b, B, split
        self.steps = max(1, PROJECTION_BLOCK_BYTES // (B * w.shape[0] * x2.element_size()))  # steps per block
        self.block_index, self.block = -1, []

    def __getitem__(self, t: int) -> tuple[Tensor, ...]:
        k = t // self.steps
        if k != self.block_index:
            rows = slice(k * self.steps * self.B, (k + 1) * self.steps * self.B)
            block = _linear(self.x2[rows], self.w, self.b).view(-1, self.B, self.w.shape[0])  # (steps, B, N)
            self.block_index, self.block = k, list(zip(*(c.unbind(0) for c in block.split(self.split, 2))))
        return self.block[t - k * self.steps]


def _input_and_weight_grads(
    d_proj: Tensor, grads: Tensor, x2: Tensor, w_ih: Tensor, out: Tensor, h0: Tensor, reverse: bool,
    want_x: bool, want_ih: bool, want_hh: bool,
) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """``d_x = dG_ih W_ih`` ``(T, B, I)`` and ``_weight_grads``' two products, each where wanted (else None).

    ``d_proj`` ``(T, B, G*H)``: d of the input projection, a view into ``grads`` (see ``_weight_grads``).
    """
    T, B, width = d_proj.shape
    d_x = d_w_ih = d_w_hh = None
    if want_x:
        d_x = _linear(d_proj.reshape(T * B, width), w_ih.t().contiguous()).view(T, B, -1)  # (T, B, I)
    if want_ih or want_hh:
        d_w_ih, d_w_hh = _weight_grads(grads, width, x2, out, h0, reverse, want_ih, want_hh)
    return d_x, d_w_ih, d_w_hh


def _weight_grads(
    grads: Tensor, width: int, x2: Tensor, out: Tensor, h0: Tensor, reverse: bool, want_ih: bool, want_hh: bool,
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``dW_ih = dG_ih^T X`` and ``dW_hh = dG_hh^T H_prev``, each one matmul over all ``T*B`` rows.

    ``grads`` ``(T, B, C)``: its last ``width`` columns are ``dG_ih``, its first ``width``
    ones ``dG_hh``; ``x2`` ``(T*B, I)``; ``H_prev`` is every step's starting state
    (``out`` shifted by one step, ``h0`` first).  For oneDNN, whose matmul wants the
    summed dimension contiguous in both factors, everything is transposed first into
    spare buffers (the copies cost far less than the matmul they speed up).
    """
    T, B, C = grads.shape
    H = out.shape[2]
    # rows of the states each step started from: forward, step t from t-1; reverse, from t+1
    rest, prev = (slice(0, T - 1), slice(1, T)) if reverse else (slice(1, T), slice(0, T - 1))
    first = T - 1 if reverse else 0  # the step that started from h0
    d_w_ih = d_w_hh = None
    if not _onednn(out, T * B * width * H):
        if want_ih:
            d_w_ih = torch.mm(grads[..., C - width :].flatten(0, 1).t(), x2)  # (G*H, I)
        if want_hh:
            d_hid = grads[..., :width]
            d_w_hh = torch.mm(d_hid[rest].flatten(0, 1).t(), out[prev].flatten(0, 1))  # (G*H, H)
            d_w_hh.addmm_(d_hid[first].t(), h0)
        return d_w_ih, d_w_hh
    grads_t = _SPARE.take((C, T * B), out, "grads_t")
    grads_t.copy_(grads.view(T * B, C).t())  # (C, T*B)
    if want_ih:
        x_t = _SPARE.take((x2.shape[1], T * B), out, "x_t")
        x_t.copy_(x2.t())  # (I, T*B)
        d_w_ih = _linear(grads_t[C - width :], x_t)  # (G*H, I)
        _SPARE.give(x_t, "x_t")
    if want_hh:
        prev_t = _SPARE.take((H, T, B), out, "prev_t")  # (H, T, B): the starting state of every step
        prev_t[:, rest].view(H, -1).copy_(out[prev].flatten(0, 1).t())
        prev_t[:, first].copy_(h0.t())
        d_w_hh = _linear(grads_t[:width], prev_t.view(H, T * B))  # (G*H, H)
        _SPARE.give(prev_t, "prev_t")
    _SPARE.give(grads_t, "grads_t")
    return d_w_ih, d_w_hh


def _double_n(w: Tensor, H: int) -> Tensor:
    """A GRU weight or bias with its n block (rows ``2H:3H``) doubled."""
    return torch.cat([w[: 2 * H], 2 * w[2 * H :]])


def _double_g(w: Tensor, H: int) -> Tensor:
    """An LSTM weight or bias with its g block (rows ``2H:3H``) doubled."""
    return torch.cat([w[: 2 * H], 2 * w[2 * H : 3 * H], w[3 * H :]])


def _nrz(w: Tensor, H: int, inverse: bool = False) -> Tensor:
    """GRU gate blocks (rows) from the order r, z, n to n, r, z (``inverse``: back)."""
    return torch.cat([w[H:], w[:H]]) if inverse else torch.cat([w[2 * H :], w[: 2 * H]])


class _Spare:
    """Scratch buffers of the last finished backward, handed to the next one, one per use.

    A fresh buffer of ``T*B*4H`` floats costs a page fault per 4 KiB the first time it
    is written (tens of ms per layer, measured); backward passes run one after another,
    so one spare buffer per use, dtype and device serves a whole stack.  The spares
    stay allocated between training steps (the size of one layer's gradients).
    """

    def __init__(self) -> None:
        self._free: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}

    def take(self, shape: tuple[int, ...], like: Tensor, use: str = "grads") -> Tensor:
        """An uninitialised contiguous tensor of ``shape`` with ``like``'s dtype and device."""
        numel = 1
        for s in shape:
            numel *= s
        spare = self._free.pop((use, like.dtype, like.device), None)
        if spare is not None and spare.numel() >= numel:
            return spare[:numel].view(shape)
        return like.new_empty(shape)

    def clear(self) -> None:
        self._free.clear()

    def give(self, buf: Tensor, use: str = "grads") -> None:
        """Keep ``buf``, which nothing else may use any more, unless a larger spare is held."""
        base = (buf if buf._base is None else buf._base).view(-1)  # the whole buffer a taken view came from
        key = (use, base.dtype, base.device)
        held = self._free.get(key)
        if held is None or held.numel() < base.numel():
            self._free[key] = base


_SPARE = _Spare()


def free_spares() -> None:
    """Let go of the scratch buffers backward keeps for the next backward (about two layers' gradients)."""
    _SPARE.clear()
