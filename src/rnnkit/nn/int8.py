"""int8 inference on CPU: dynamically quantised linear and recurrent layers.

``quantize(model)`` turns a trained model, in place, into one that runs its large
products on int8 weights: each weight matrix is rounded once to int8 (symmetric,
one scale per output row), and each call quantises its float input on the fly
(one scale per call) before an int8 x int8 product that accumulates in int32 and
comes back as float32.  Everything else stays float: embeddings, biases, the cell
nonlinearities and states, attention's softmax and weighted sums, a CRF, the
tagger's character CNN.

What changes, by module:

* ``nn.Linear`` (and rnnkit's ``Linear``): output layers, attention projections, the
  classifier's MLP, the seq2seq bridge -> ``Int8Linear``.
* ``Recurrent`` of cell ``lstm`` or ``gru`` -> ``Int8Recurrent`` running torch's
  dynamically quantised sequence kernels (``torch.quantized_lstm`` /
  ``torch.quantized_gru``): the input projection of every step is one int8 product,
  then one int8 product per step for the recurrence, the loop in C++.  Uneven
  lengths go through a packed sequence, so pads are never read; a sequence's
  numbers still move slightly with the rest of its batch, since an input's scale
  is chosen per call.
* ``Recurrent`` of cell ``rnn`` (``rnn_tanh``) or ``rnn_relu``: torch has no
  quantised sequence kernel for them, so ``Int8Recurrent`` steps them in Python,
  the input projection of all steps again one int8 product.
* The cell table's other cells (minGRU, minLSTM, LRU, sLSTM, mLSTM: ``SequenceCell``
  modules inside ``Recurrent``, not ``torch.nn``-layout weights) are left float, with
  every module inside them: torch has no quantised kernel for them, and they hold
  their maps as plain parameters that their steps and parallel forms use through
  ``F.linear`` or ``einsum``, so an int8 form would be one per cell.

The products run on fbgemm's kernels through ``torch.ops.quantized`` (not
``torch.ao.quantization``, which torch 2.13 marks deprecated); creating the int8
weight tensors warns the same way, and that warning is silenced around that one
call.  On a CPU without AVX-512 VNNI the inputs are quantised to 7 bits instead of 8
(``reduce_range``), since the AVX2 kernels would otherwise saturate their 16-bit
sums; on one with it, to the full 8 bits.

The float parameters stay in the model (shared, not copied), so a quantised model
still reports its sizes and dtypes, and ``rnnkit inspect`` reads float weights.
A quantised model is for inference only: ``train()`` on it raises ``ConfigError``.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.errors import ConfigError
from rnnkit.nn.recurrent import Recurrent, _reverse
from rnnkit.nn.state import State

KERNEL_MODES = ("lstm", "gru")            # Recurrent modes with a quantised sequence kernel in torch
LOOP_MODES = ("rnn_tanh", "rnn_relu")     # quantised by our own step loop
MODES = KERNEL_MODES + LOOP_MODES         # every Recurrent mode quantize() converts

_TRAINING = ("an int8 model is for inference only (--int8: predict, translate, chat, generate, evaluate, "
             "serve, export): train the float model and quantise it when you load it")
_REDUCE_RANGE: Optional[bool] = None


def reduce_range() -> bool:
    """Whether inputs are quantised to 7 bits (CPUs without AVX-512 VNNI) rather than 8; read once per process."""
    global _REDUCE_RANGE
    if _REDUCE_RANGE is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                flags = next((ln for ln in f if ln.startswith("flags")), "").split()
            _REDUCE_RANGE = "avx512_vnni" not in flags
        except OSError:
            _REDUCE_RANGE = True  # unknown CPU: the range that cannot saturate
    return _REDUCE_RANGE


def pack_weight(weight: Tensor, bias: Optional[Tensor]):
    """``weight (N, K)`` rounded to int8, one symmetric scale per row (``max |w_row| / 127``), packed
    with ``bias (N,)`` for ``torch.ops.quantized.linear_dynamic``."""
    w = weight.detach().float().contiguous()
    scales = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()  # (N,)
    zeros = torch.zeros(w.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*deprecated", category=UserWarning)
        q = torch.quantize_per_channel(w, scales, zeros, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float().contiguous())


def _check_cpu(module: nn.Module) -> None:
    for p in module.parameters(recurse=False):
        if p.device.type != "cpu" or p.dtype != torch.float32:
            raise ConfigError(f"--int8 runs float32 models on the CPU; this model has {p.dtype} parameters on "
                              f"{p.device.type}")


class _InferenceOnly:
    """``train(True)`` refused: the int8 products have no gradient."""

    def train(self, mode: bool = True):
        if mode:
            raise ConfigError(_TRAINING)
        return super().train(False)  # type: ignore[misc]


class Int8Linear(_InferenceOnly, nn.Module):
    """``y = x W^T + b`` with ``W`` in int8 and ``x`` quantised per call: ``(..., in) -> (..., out)`` float32.

    Keeps the float ``weight`` and ``bias`` it was made from (the same parameters, so a
    weight tied to an embedding stays tied) beside their packed int8 form.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        _check_cpu(linear)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        for p in self.parameters():
            p.requires_grad_(False)
        self._packed = pack_weight(self.weight, self.bias)
        self.training = False

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        if x.numel() == 0:
            return x.new_zeros(*lead, self.out_features)
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, self.in_features), self._packed,
                                               reduce_range())  # (M, out)
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Recurrent(_InferenceOnly, Recurrent):
    """A ``Recurrent`` (cell ``lstm``, ``gru``, ``rnn_tanh`` or ``rnn_relu``) with int8 weights.

    Same ``forward`` contract as ``Recurrent``: ``x (B, T, I)``, ``lengths (B,) | None``,
    ``state | None`` -> outputs ``(B, T, D*H)`` (zeros at pads) and the final ``State``
    ``(L*D, B, H)`` taken at each sequence's last real step.  Built by ``from_float``,
    which shares the float module's parameters.
    """

    @classmethod
    def from_float(cls, rnn: Recurrent) -> "Int8Recurrent":
        if rnn.mode not in MODES:
            raise ValueError(f"int8 covers the {', '.join(MODES)} cells; got {rnn.mode!r}")
        _check_cpu(rnn)
        q = cls.__new__(cls)
        q.__dict__.update(rnn.__dict__)  # the same parameters, sizes and settings (shallow: nothing is copied)
        q._parameters, q._buffers, q._modules = dict(rnn._parameters), dict(rnn._buffers), dict(rnn._modules)
        for p in q.parameters():
            p.requires_grad_(False)
        q.training = False
        rr = reduce_range()
        q._packed = []  # per (layer, direction): (packed W_ih + b_ih, packed W_hh + b_hh)
        q._cell_params = []  # the same, as torch's quantised kernels take them (lstm, gru)
        for layer in range(rnn.num_layers):
            for direction in range(rnn.num_directions):
                w_ih, w_hh, b_ih, b_hh = rnn._layer_weights(layer, direction)
                p_ih, p_hh = pack_weight(w_ih, b_ih), pack_weight(w_hh, b_hh)
                q._packed.append((p_ih, p_hh))
                if rnn.mode in KERNEL_MODES:
                    zero = w_ih.new_zeros(w_ih.shape[0]).detach()
                    q._cell_params.append(torch.ops.quantized.make_quantized_cell_params_dynamic(
                        p_ih, p_hh, zero if b_ih is None else b_ih.detach(),
                        zero if b_hh is None else b_hh.detach(), rr))
        return q

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None, state: Optional[State] = None,
                need_state: bool = True) -> tuple[Tensor, Optional[State]]:
        self._check_inputs(x, lengths, state)
        B, T, _ = x.shape
        if lengths is not None and bool((lengths == T).all()):
            lengths = None  # no pads
        if state is None:
            state = self.zero_state(B, x)  # (L*D, B, H) each
        if self.mode in KERNEL_MODES:
            out, final = self._forward_kernel(x, lengths, state)
        else:
            out, final = self._forward_loop(x, lengths, state)
        return out, (final if need_state else None)

    def _kernel(self, x: Tensor, hx, batch_sizes: Optional[Tensor] = None) -> tuple[Tensor, ...]:
        """torch's quantised LSTM / GRU on this stack: batch-first ``x (B, T, I)``, or a packed sequence's data
        ``(sum(lengths), I)`` with its ``batch_sizes``; ``hx`` as ``torch.nn.LSTM`` / ``GRU`` take it."""
        rest = (self._cell_params, True, self.num_layers, 0.0, False, self.bidirectional)
        args = (x, hx, *rest, True) if batch_sizes is None else (x, batch_sizes, hx, *rest)
        if self.mode == "lstm":
            return torch.quantized_lstm(*args, dtype=torch.qint8, use_dynamic=True)  # out, h, c
        return torch.quantized_gru(*args)  # out, h

    def _forward_kernel(self, x: Tensor, lengths: Optional[Tensor], state: State) -> tuple[Tensor, State]:
        if lengths is None:
            out, *hidden = self._kernel(x.contiguous(), state.as_torch())  # (B, T, D*H), (L*D, B, H) each
            return out, State(*hidden)
        # Packed: each sequence runs over its own steps only, so pads are never read.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        hx = state.index_select(packed.sorted_indices, dim=1)  # batch rows in packed order
        data, *hidden = self._kernel(packed.data, hx.as_torch(), packed.batch_sizes)  # (sum(lengths), D*H)
        out, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                                                    packed.unsorted_indices),
                                     batch_first=True, total_length=x.size(1))  # (B, T, D*H), zeros at pads
        return out, State(*hidden).index_select(packed.unsorted_indices, dim=1)

    def _forward_loop(self, x: Tensor, lengths: Optional[Tensor], state: State) -> tuple[Tensor, State]:
        """Plain RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, the input products of all steps
        at once; a state advances only at real steps, and the backward direction reads each row reversed
        within its own length (as ``Recurrent``'s reference path)."""
        B, T, _ = x.shape
        act = torch.tanh if self.mode == "rnn_tanh" else torch.relu
        rr = reduce_range()
        linear = torch.ops.quantized.linear_dynamic
        valid = masks = rev = None
        if lengths is not None:
            steps = torch.arange(T, device=x.device)  # (T,)
            lens = lengths.to(x.device).unsqueeze(1)  # (B, 1)
            valid = steps < lens  # (B, T) True at real steps
            masks = valid.unsqueeze(2).unbind(1)  # T x (B, 1)
            rev = torch.where(valid, lens - 1 - steps, steps)  # (B, T) per-row reversal within the length
        finals: list[Tensor] = []
        layer_in = x  # (B, T, I) then (B, T, D*H)
        for layer in range(self.num_layers):
            if valid is not None:  # zeros at pads, so that they leave the per-call input scale alone
                layer_in = layer_in.masked_fill(~valid.unsqueeze(2), 0.0)
            outs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                p_ih, p_hh = self._packed[index]
                seq = layer_in if direction == 0 else _reverse(layer_in, rev)
                xw = linear(seq.reshape(B * T, -1), p_ih, rr).view(B, T, -1)  # (B, T, H): one product
                h, hs = state.h[index], []  # (B, H)
                for t, xw_t in enumerate(xw.unbind(1)):
                    new = act(xw_t + linear(h, p_hh, rr))  # (B, H)
                    h = new if masks is None else torch.where(masks[t], new, h)
                    hs.append(h)
                out = torch.stack(hs, dim=1)  # (B, T, H)
                outs.append(out if direction == 0 else _reverse(out, rev))
                finals.append(h)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, T, D*H)
        out = layer_in if valid is None else layer_in.masked_fill(~valid.unsqueeze(2), 0.0)  # zeros at pads
        return out, State(torch.stack(finals))  # (L*D, B, H)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", int8"


def quantize(model: nn.Module) -> nn.Module:
    """Quantise ``model`` in place for int8 inference on CPU and return it (in eval mode).

    Every ``nn.Linear`` becomes an ``Int8Linear``; every ``Recurrent`` of cell ``lstm``,
    ``gru``, ``rnn_tanh`` or ``rnn_relu`` becomes an ``Int8Recurrent``.  Embeddings,
    convolutions, a CRF and any other recurrent cell stay float (see the module's notes).
    Every parameter stops requiring gradients.  ``ConfigError`` if the model is not
    float32 on the CPU; a model already quantised is returned as it is.
    """
    if torch.backends.quantized.engine == "none":
        raise ConfigError("--int8 needs a torch built with a quantised CPU engine (x86, fbgemm, onednn or "
                          "qnnpack); this one has none")
    model.eval()
    _swap(model)
    model.requires_grad_(False)  # nothing here is trained: no gradient anywhere
    return model


def _swap(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, (Int8Linear, Int8Recurrent)):
            continue
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
        elif isinstance(child, Recurrent):
            if child.mode in MODES and hasattr(child, "weight_ih_l0"):
                setattr(module, name, Int8Recurrent.from_float(child))
            # another cell: left float, its own modules included
        else:
            _swap(child)


def is_quantized(model: nn.Module) -> bool:
    """Whether ``quantize`` has converted any layer of ``model``."""
    return any(isinstance(m, (Int8Linear, Int8Recurrent)) for m in model.modules())


__all__ = ["quantize", "is_quantized", "Int8Linear", "Int8Recurrent", "pack_weight", "reduce_range", "MODES"]
