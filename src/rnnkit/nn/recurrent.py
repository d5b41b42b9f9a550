"""``Recurrent``: a stack of recurrent layers, uni- or bidirectional, batch first.

One set of parameters, named and shaped as in ``torch.nn.RNN/LSTM/GRU``
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), and two ways to run it:

* ``backend="fused"``: PyTorch's fused sequence kernel (``torch._VF.lstm`` etc.,
  which is what ``torch.nn.LSTM.forward`` calls) on our parameters.  Uneven
  lengths go through a packed sequence, so pads are never read.  On CPU a GRU or
  plain RNN runs ``rnnkit.nn.scan`` instead, a whole-sequence layer with a
  hand-written backward that trains faster than PyTorch's kernel (which has no
  oneDNN path for them); an LSTM keeps PyTorch's kernel (oneDNN's LSTM primitive,
  which the scan only matches), unless ``RNNKIT_LSTM_SCAN=1``; see
  ``Recurrent._fused_strategy``.
* ``backend="reference"``: our cell equations (``rnnkit.nn.cells``) step by step
  on the same parameters, the input projection of all steps hoisted into one
  matmul.  Uneven lengths are masked: a state only advances where ``t < length``,
  and the backward direction reverses each sequence within its own length.  It
  stays plain autograd on the cells, for every mode: the implementation the fast
  paths (and their hand-written gradients) are checked against.

Both give each sequence of a padded batch exactly what it gets alone, zeros at
pad positions of the output, and final states taken at each sequence's last
real step.  ``backend`` can be flipped after construction; checkpoints are the same.

The cells beyond RNN / LSTM / GRU (minGRU, minLSTM, LRU, sLSTM, mLSTM; the cell
table, ``rnnkit.nn.table``) are one ``SequenceCell`` module per layer and direction
(``cells.0``, ``cells.1``, ... in the order ``layer * D + direction``).  For them
``backend="fused"`` runs each cell's parallel form (a scan, the chunked parallel
mLSTM, sLSTM's tight loop) and ``backend="reference"`` its step from the paper's
equations; a single time step always steps the cells.  Lengths, directions, dropout
between layers and the returned ``State`` work as for the others.

One time step of an RNN / LSTM / GRU stack in inference on CPU (sampling, decoding) runs
``rnnkit.nn.fused_step`` instead (``Recurrent.step``, ``Recurrent.token_step``, and
``forward`` on a one-step sequence; see ``Recurrent.fuses_step``).
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit.nn.dropout as dropout_impl
import rnnkit.nn.fused_step as fused_step
import rnnkit.nn.scan as scan_module
from rnnkit.nn.cells import GATES, RECUR, RecurFn, input_projection
from rnnkit.nn.scan import SCAN_MODES, lstm_scan_layer, scan_layer
from rnnkit.nn.state import State
from rnnkit.nn.table import canonical_mode, spec

BACKENDS = ("fused", "reference")
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_FUSED = {"rnn_tanh": _VF.rnn_tanh, "rnn_relu": _VF.rnn_relu, "lstm": _VF.lstm, "gru": _VF.gru}


class Recurrent(nn.Module):
    """Stacked (bi)directional recurrent layers of any cell in the table, over batch-first sequences.

    ``forward(x (B, T, I), lengths (B,) | None, state | None)`` returns
    ``(outputs (B, T, D*H), State of (L*D, B, K_i) tensors: h (and c, ...))``, where
    ``D = 2`` if bidirectional else 1 and the state rows are ordered
    ``layer * D + direction`` as in ``torch.nn.LSTM``.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        backend: str = "fused",
        bias: bool = True,
        locked_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.mode = canonical_mode(mode)
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ValueError(
                f"input_size, hidden_size and num_layers must be > 0; got {input_size}, {hidden_size}, {num_layers}"
            )
        if isinstance(dropout, bool) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1]; got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout acts between layers only; with num_layers=1 it does nothing", stacklevel=2)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.locked_dropout = bool(locked_dropout)  # one mask per sequence between layers, shared over time
        self.bias = bias
        self.backend = backend  # validated by the property setter
        self.spec = spec(self.mode)

        # Per (layer, direction), in torch.nn.LSTM order: names of (w_ih, w_hh[, b_ih, b_hh]).
        self._weight_names: list[tuple[str, ...]] = []
        if self.spec.sequence_cell:
            self.cells = nn.ModuleList(
                self.spec.cls(input_size if layer == 0 else hidden_size * self.num_directions, hidden_size, bias=bias)
                for layer in range(num_layers) for _ in range(self.num_directions))
            return
        gh = GATES[self.mode] * hidden_size
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {f"weight_ih{sfx}": (gh, layer_in), f"weight_hh{sfx}": (gh, hidden_size)}
                if bias:
                    shapes.update({f"bias_ih{sfx}": (gh,), f"bias_hh{sfx}": (gh,)})
                for name, shape in shapes.items():
                    self.register_parameter(name, nn.Parameter(torch.empty(shape)))
                self._weight_names.append(tuple(shapes))
        self.reset_parameters()

    # ----------------------------------------------------------------- setup

    @property
    def backend(self) -> str:
        """``"fused"`` or ``"reference"``; may be changed at any time."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {value!r}")
        self._backend = value

    def reset_parameters(self) -> None:
        """Uniform in ``±1/sqrt(H)``, as ``torch.nn``; a table cell initialises itself as its paper does."""
        if self.spec.sequence_cell:
            for cell in self.cells:
                cell.reset_parameters()
            return
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _layer_weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """``(w_ih, w_hh, b_ih, b_hh)`` of one layer and direction (biases None when bias=False)."""
        ws = [getattr(self, n) for n in self._weight_names[layer * self.num_directions + direction]]
        return (ws[0], ws[1], ws[2], ws[3]) if self.bias else (ws[0], ws[1], None, None)

    def _flat_weights(self) -> list[Tensor]:
        """The parameters themselves (no copies), in the order ``_VF`` expects."""
        return [getattr(self, n) for names in self._weight_names for n in names]

    def flatten_parameters(self) -> None:
        """Lay the weights out in one cuDNN buffer (CUDA only; a no-op elsewhere).

        Without it cuDNN copies the weights on every call.  Runs after ``.to()`` /
        ``.cuda()``; call it again if you replace a parameter object.
        """
        ws = self._flat_weights()
        if not ws:  # a table cell: no torch.nn weights to lay out
            return
        if not all(w.is_cuda and w.dtype == ws[0].dtype and torch.backends.cudnn.is_acceptable(w) for w in ws):
            return
        if len({w.data_ptr() for w in ws}) != len(ws) or not torch._use_cudnn_rnn_flatten_weight():
            return
        from torch.backends.cudnn import rnn as cudnn_rnn

        with torch.cuda.device_of(ws[0]), torch.no_grad():
            torch._cudnn_rnn_flatten_weight(
                ws, 4 if self.bias else 2, self.input_size, cudnn_rnn.get_cudnn_mode(self.mode.upper()),
                self.hidden_size, 0, self.num_layers, True, self.bidirectional,
            )  # fmt: skip

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        self.flatten_parameters()
        return out

    def extra_repr(self) -> str:
        s = f"{self.mode!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}" + (" (locked)" if self.locked_dropout else "")
        if not self.bias:
            s += ", bias=False"
        return s + f", backend={self.backend!r}"

    @property
    def state_sizes(self) -> tuple[Optional[int], ...]:
        """``K`` of each place of the ``State`` ``(h, c, *extra)`` (None: empty), as the cell table lays it out."""
        if self.spec.sequence_cell:
            return self.cells[0].state_sizes
        return tuple(None if n is None else self.hidden_size for n in self.spec.state_names)

    def zero_state(self, batch_size: int, like: Tensor) -> State:
        """The zero state: ``(L*D, B, K_i)`` tensors with the dtype and device of ``like``."""
        LD = self.num_layers * self.num_directions
        return State(*(None if k is None else like.new_zeros(LD, batch_size, k) for k in self.state_sizes))

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def cell_step(self, layer: int, direction: int, x: Tensor, state: State,
                  gates: Optional[dict[str, Tensor]] = None) -> State:
        """One reference step of one layer and direction: ``x`` ``(B, I_layer)``, ``state`` of ``(B, K_i)``.

        ``gates`` (a dict) receives the step's gates by the names in the cell table's row
        (each ``(B, H)``), and the LSTM's ``cell``; ``rnnkit inspect`` draws them.
        """
        if self.spec.sequence_cell:
            return self.cells[layer * self.num_directions + direction].step(x, state, gates)
        w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer, direction)
        xw = input_projection(x, w_ih, b_ih)  # (B, G*H)
        new = RECUR[self.mode](xw, state, w_hh, b_hh)
        if gates is not None and self.mode in ("lstm", "gru"):  # the sigmoid gates, recomputed for display
            pre = xw + F.linear(state.h, w_hh, b_hh)  # (B, G*H)
            if self.mode == "lstm":
                i, f, _, o = pre.sigmoid().chunk(4, dim=-1)
                gates.update({"input gate": i, "forget gate": f, "output gate": o, "cell": new.c})
            else:
                r, z = pre[..., : 2 * self.hidden_size].sigmoid().chunk(2, dim=-1)
                gates.update({"reset gate": r, "update gate": z})
        return new

    # ------------------------------------------------------ one step, fused

    def step(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """One time step: ``x`` ``(B, I)`` -> the top layer's output ``(B, D*H)`` and the new ``State``.

        ``forward`` on a one-step sequence; where ``fuses_step`` holds, in the few operations of
        ``rnnkit.nn.fused_step`` (on weights laid out once and kept until they change).
        """
        if x.dim() == 2 and x.shape[1] == self.input_size and self._fused_state_ok(state, x.shape[0]) \
                and self.fuses_step(x.shape[0], x):
            return fused_step.step(self._step_weights(), x, self._fused_state(state, x.shape[0], x))
        out, state = self(x.unsqueeze(1), state=state)  # (B, 1, D*H)
        return out[:, 0], state

    def token_step(self, tokens: Tensor, embedding: Optional[Tensor],
                   state: Optional[State] = None) -> tuple[Tensor, State]:
        """``step`` on token ids ``tokens`` ``(B,)`` whose inputs are rows of ``embedding`` ``(V, I)``, or one-hot
        vectors when ``embedding`` is None.

        Where it fuses, the first layer's input product and bias of every id are computed once and
        kept while the weights stay (``StepWeights.table``, for a small vocabulary): a step reads one
        row of it instead.
        """
        B = tokens.shape[0] if tokens.dim() == 1 else -1
        like = self._parameters.get("weight_ih_l0")
        if (like is not None and B >= 0 and (embedding is None or embedding.shape[-1] == self.input_size)
                and self._fused_state_ok(state, B) and self.fuses_step(B, like)):
            weights = self._step_weights()
            table = weights.table(embedding, self.input_size if embedding is None else embedding.shape[0])
            if table is not None:
                return fused_step.step(weights, None, self._fused_state(state, B, like), table.index_select(1, tokens))
        if embedding is None:
            x = F.one_hot(tokens, self.input_size).to(self._dtype())
        else:
            x = F.embedding(tokens, embedding)
        return self.step(x, state)

    def fuses_step(self, batch_size: int, like: Tensor) -> bool:
        """Whether one time step of ``batch_size`` rows of ``like``'s dtype and device runs
        ``rnnkit.nn.fused_step``: the ``fused`` backend without gradients and with no dropout to draw,
        on CPU up to ``CELL_STEP_MAX_BATCH`` rows, in float32 or float64, for a unidirectional RNN, LSTM
        or GRU stack that runs this class's ``forward`` (a subclass with its own keeps it).  The
        ``reference`` backend keeps the cell equations, which the fused step is checked against.
        """
        w = self._parameters.get("weight_ih_l0")
        return (
            w is not None and batch_size <= CELL_STEP_MAX_BATCH and not torch.is_grad_enabled()
            and self._backend == "fused" and self.num_directions == 1 and like.dtype == w.dtype
            and like.dtype in (torch.float32, torch.float64) and like.device.type == "cpu"
            and not (self.training and self.dropout > 0) and type(self).forward is Recurrent.forward
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
        )

    def _fused_state_ok(self, state: Optional[State], batch_size: int) -> bool:
        """A state the fused step reads as it is: None, or ``State(h, c)`` of ``(L, B, H)`` (``c`` None but
        for an LSTM); anything else goes to ``forward``, which says what is wrong with it."""
        if state is None:
            return True
        want = (self.num_layers, batch_size, self.hidden_size)
        return (type(state) is State and len(state) == 2 and state[0].shape == want
                and (state[1] is None if self.mode != "lstm" else state[1].shape == want))

    def _fused_state(self, state: Optional[State], batch_size: int, like: Tensor) -> State:
        return self.zero_state(batch_size, like) if state is None else state

    def _step_weights(self) -> fused_step.StepWeights:
        """The layout ``fused_step`` runs on, made again whenever a parameter has changed."""
        params = self._parameters
        key = fused_step.weights_key([params[n] for names in self._weight_names for n in names])
        cache = self.__dict__.get("_step_cache")
        if cache is None or cache.key != key:
            layers = [self._layer_weights(layer, 0) for layer in range(self.num_layers)]
            cache = self._step_cache = fused_step.StepWeights(self.mode, self.hidden_size, layers, key)
        return cache

    def train(self, mode: bool = True):
        self.__dict__.pop("_step_cache", None)  # also drops what a change through ``.data`` left unseen
        return super().train(mode)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_step_cache", None)  # derived from the parameters: not saved, not copied
        return state

    # --------------------------------------------------------------- forward

    def forward(
        self, x: Tensor, lengths: Optional[Tensor] = None, state: Optional[State] = None,
        need_state: bool = True,
    ) -> tuple[Tensor, Optional[State]]:
        """Run the stack.

        x: ``(B, T, input_size)``; lengths: ``(B,)`` ints in ``[1, T]`` or None (all T);
        state: initial ``State`` of ``(L*D, B, H)`` tensors or None (zeros).
        Returns outputs ``(B, T, D*H)`` (zeros at pads) and the final ``State`` ``(L*D, B, H)``.
        With ``need_state=False`` the state is not computed (None is returned in its place),
        which lets a padded batch run the fused kernel once per layer and direction.
        """
        self._check_inputs(x, lengths, state)
        B, T, _ = x.shape
        if lengths is not None and bool((lengths == T).all()):
            lengths = None  # no pads: both backends take their exact, fastest path
        if state is None:
            state = self.zero_state(B, x)  # (L*D, B, K_i) each
        if T == 1 and lengths is None and self.fuses_step(B, x):
            h, final = fused_step.step(self._step_weights(), x[:, 0], state)  # (B, H)
            return h.unsqueeze(1), (final if need_state else None)
        if self.spec.sequence_cell:
            out, final = self._forward_cells(x, lengths, state)
            return out, (final if need_state else None)
        strategy = "reference" if self.backend == "reference" else self._fused_strategy(x, lengths)
        if strategy == "scan":
            out, final = self._forward_scan(x, lengths, state)
            return out, (final if need_state else None)
        if self.backend == "fused" and not need_state and lengths is not None:
            return self._forward_fused_padded(x, lengths, state), None
        if strategy == "direct":
            return self._forward_fused(x, None, state)
        if strategy == "groups":
            return self._forward_fused_groups(x, lengths, state)
        if strategy == "packed":
            return self._forward_fused(x, lengths, state)
        return self._forward_reference(x, lengths, state)

    def _fused_strategy(self, x: Tensor, lengths: Optional[Tensor]) -> str:
        """How the fused backend runs this input: the fastest exact path for the device.

        ``scan``: GRU and plain RNN on CPU, any lengths, training or not, wherever it
        is measured faster (``_scan_is_faster``; ``rnnkit.nn.scan``, 1.4-2x
        ``torch.nn.GRU/RNN``'s kernel at batch 64, hidden 256-512).
        ``direct``: the kernel on the whole batch (no pads).  ``groups``: one kernel
        call per distinct length (bucketed batches).  ``reference``: the masked cell
        loop — on CPU for a single step that ``fused_step`` does not take (training;
        3-7x faster than the sequence kernel, measured) and for batches of many
        lengths (packing measured slower).
        ``packed``: many lengths on GPU.
        """
        if self._scan_is_faster(x):
            return "scan"
        if self._cells_are_faster(x):
            return "reference"
        if lengths is None:
            return "direct"
        if int(torch.unique(lengths).numel()) <= MAX_LENGTH_GROUPS:
            return "groups"
        return "reference" if x.device.type == "cpu" else "packed"

    def _scan_is_faster(self, x: Tensor) -> bool:
        """Where the fused backend runs ``rnnkit.nn.scan`` instead of PyTorch's GRU / RNN kernel.

        CPU, float32 or float64, more than one step, and enough work: the scan steps in
        Python, so PyTorch's C++ loop wins on short sequences of small layers (training)
        and on small layers (inference, where it builds no graph).  Measured, 1 thread:
        training 0.7-0.9x at 4 steps and batch x hidden up to 32 x 128, break-even near
        8 steps, 1.05-1.3x from 16 steps, 1.4-2x at batch 64, hidden 256-512, 128 steps;
        inference 0.4-0.9x below ``SCAN_MIN_WORK`` multiply-adds per step
        (``B * G * H^2``), 1.2-1.9x above.  Not under autocast (the kernel handles its
        casts), nor while tracing or compiling.  LSTM: PyTorch's kernel (oneDNN's LSTM
        primitive), unless ``RNNKIT_LSTM_SCAN=1`` (``rnnkit.nn.scan.LSTM_SCAN``); then the scan in training
        from ``LSTM_SCAN_MIN_WORK`` multiply-adds per step and ``LSTM_SCAN_MIN_STEPS`` steps.
        """
        if not (
            (self.mode in SCAN_MODES or self.mode == "lstm") and x.device.type == "cpu" and x.shape[1] > 1
            and x.dtype in (torch.float32, torch.float64) and x.dtype == self.weight_ih_l0.dtype
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
        ):
            return False
        work = x.shape[0] * GATES[self.mode] * self.hidden_size**2  # multiply-adds of one step's hidden matmul
        training = torch.is_grad_enabled() and (x.requires_grad or self.weight_hh_l0.requires_grad)
        if self.mode == "lstm":  # only where asked for: measured level with oneDNN's LSTM primitive (see LSTM_SCAN)
            return (scan_module.LSTM_SCAN and training and work >= LSTM_SCAN_MIN_WORK
                    and x.shape[1] >= LSTM_SCAN_MIN_STEPS)
        return work >= SCAN_MIN_WORK or (training and x.shape[1] >= SCAN_MIN_STEPS)

    @staticmethod
    def _cells_are_faster(x: Tensor) -> bool:
        """Where the fused backend hands the work to the cell loop (same numbers, less time).

        Measured on CPU (torch 2.13, oneDNN, 1 thread): one step through the sequence
        kernel has a fixed cost (about 5 ms for 2 layers of 512, 0.15 ms for 128) that a
        cell step does not, while a cell step grows with the batch; cells win up to a
        batch of about 32-50 (18x at batch 1, hidden 512) and lose beyond (0.8x at 64).
        """
        return x.device.type == "cpu" and x.shape[1] == 1 and x.shape[0] <= CELL_STEP_MAX_BATCH

    def _check_inputs(self, x: Tensor, lengths: Optional[Tensor], state: Optional[State]) -> None:
        if x.dim() != 3 or x.size(2) != self.input_size:
            raise ValueError(f"x must be (B, T, input_size={self.input_size}); got shape {tuple(x.shape)}")
        B, T, _ = x.shape
        if T == 0:
            raise ValueError("x must have at least one time step (T >= 1)")
        if x.dtype != self._dtype() and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"x dtype {x.dtype} must match the parameters' dtype {self._dtype()}")
        if lengths is not None:
            if lengths.dim() != 1 or lengths.size(0) != B or lengths.dtype not in _INT_DTYPES:
                raise ValueError(
                    f"lengths must be a 1-D integer tensor of size B={B}; "
                    f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
                )
            lo, hi = int(lengths.min()), int(lengths.max())
            if lo < 1 or hi > T:
                raise ValueError(f"lengths must lie in [1, T={T}]; got values in [{lo}, {hi}]")
        if state is not None:
            if not isinstance(state, State):
                raise ValueError(f"state must be a rnnkit State; got {type(state).__name__}")
            LD = self.num_layers * self.num_directions
            names = self.spec.state_names
            if len(state) != len(names):
                layout = ", ".join(n or "None" for n in names)
                raise ValueError(f"a {self.mode!r} state is ({layout}); got {state!r}")
            for place, (name, t, k) in enumerate(zip(names, state, self.state_sizes)):
                label = name or ("h", "c")[place] if place < 2 else name or f"extra[{place - 2}]"
                if (t is None) != (name is None):
                    raise ValueError(f"state.{label} must be {'given' if name else 'None'} for mode {self.mode!r}")
                if t is not None and tuple(t.shape) != (LD, B, k):
                    size = "H" if k == self.hidden_size else "K"
                    raise ValueError(f"state.{label} must be (L*D, B, {size}) = {(LD, B, k)}; got {tuple(t.shape)}")

    def _forward_fused(self, x: Tensor, lengths: Optional[Tensor], state: State) -> tuple[Tensor, State]:
        by_layer = self._drops_between_layers(x)
        if lengths is None and by_layer:
            return self._forward_fused_by_layer(x, state)
        if lengths is not None and by_layer and self.locked_dropout:
            return self._forward_reference(x, lengths, state)  # a packed layer output has no time axis to lock
        fn = _FUSED[self.mode]
        args = (self._flat_weights(), self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None:
            out, *hidden = fn(x, state.as_torch(), *args, True)  # out (B, T, D*H), hidden: h[, c] (L*D, B, H)
            return out, State(*hidden)
        # Packed: each sequence runs over its own steps only, so pads are never read.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        hx = state.index_select(packed.sorted_indices, dim=1)  # batch rows in packed order
        if by_layer:
            data, final = self._forward_fused_by_layer(packed.data, hx, packed.batch_sizes)
        else:
            data, *hidden = fn(packed.data, packed.batch_sizes, hx.as_torch(), *args)  # data (sum(lengths), D*H)
            final = State(*hidden)
        out, _ = pad_packed_sequence(
            PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
            batch_first=True,
            total_length=x.size(1),
        )  # (B, T, D*H), zeros at pads
        return out, final.index_select(packed.unsorted_indices, dim=1)

    def _drops_between_layers(self, x: Tensor) -> bool:
        """Whether the fused kernel runs one layer at a time with :func:`rnnkit.nn.dropout.dropout`
        between layers instead of the stacked kernel's own dropout (training, 2+ layers, dropout > 0).

        On CPU because it is faster (the stacked kernel draws its masks with torch's slow
        ``bernoulli_``).  Elsewhere under ``torch.use_deterministic_algorithms`` (``--deterministic``)
        because cuDNN's stacked kernel draws its masks from a generator of its own, seeded once
        per process and kept out of torch's RNG state, so a run resumed from a checkpoint would
        draw different masks; ours come from torch's generator, which checkpoints save.
        """
        if not (self.training and self.dropout > 0 and self.num_layers > 1):
            return False
        if self.locked_dropout:
            return True  # the stacked kernel's dropout draws a new mask at every step
        if x.device.type == "cpu" and not dropout_impl.USE_TORCH:
            return True
        return torch.are_deterministic_algorithms_enabled()

    def _between_layers(self, x: Tensor, layer: int, time_dim: int = 1) -> Tensor:
        """Layer ``layer``'s output on its way to the next layer: dropout while training, none after the last.
        Locked dropout draws one mask per sequence, shared along ``time_dim`` (1: ``(B, T, F)``)."""
        if layer == self.num_layers - 1 or not self.training:
            return x
        if self.locked_dropout:
            return dropout_impl.locked_dropout(x, self.dropout, time_dim=time_dim)
        return dropout_impl.dropout(x, self.dropout)

    def _forward_fused_padded(self, x: Tensor, lengths: Tensor, state: State) -> Tensor:
        """Exact outputs of a padded batch with one fused call per layer and direction.

        The forward direction reads each row from its start, so pads (after the last
        real token) never reach a real output.  The backward direction reads each row
        reversed *within its own length*, so its pads also come after every real token.
        The kernel computes the pads (cheap after length bucketing) but no pad ever
        changes a real output; final states are not produced.
        """
        T = x.size(1)
        fn = _FUSED[self.mode]
        steps = torch.arange(T, device=x.device)  # (T,)
        lens = lengths.to(x.device).unsqueeze(1)  # (B, 1)
        valid = steps < lens  # (B, T)
        rev = torch.where(valid, lens - 1 - steps, steps)  # (B, T) per-row reversal within the length
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                weights = [w for w in self._layer_weights(layer, direction) if w is not None]
                seq = layer_in if direction == 0 else _reverse(layer_in, rev)
                s0 = state.layer(layer * self.num_directions + direction).map(lambda t: t.unsqueeze(0))  # (1, B, H)
                out = fn(seq, s0.as_torch(), weights, self.bias, 1, 0.0, self.training, False, True)[0]  # (B, T, H)
                outs.append(out if direction == 0 else _reverse(out, rev))
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, T, D*H)
            layer_in = self._between_layers(layer_in, layer)
        return layer_in.masked_fill(~valid.unsqueeze(2), 0.0)  # zeros at pads

    def _forward_fused_by_layer(self, x: Tensor, state: State,
                                batch_sizes: Optional[Tensor] = None) -> tuple[Tensor, State]:
        """The fused kernel one layer at a time, with :func:`rnnkit.nn.dropout.dropout` between layers
        (see ``_drops_between_layers``).  ``x`` is ``(B, T, I)``, or a packed sequence's data
        ``(sum(lengths), I)`` with its ``batch_sizes``."""
        fn, D = _FUSED[self.mode], self.num_directions
        flat = self._flat_weights()
        per = len(flat) // self.num_layers
        finals: list[State] = []
        layer_in = x
        for layer in range(self.num_layers):
            s0 = state.map(lambda t: t[layer * D: (layer + 1) * D]).as_torch()  # (D, B, H)
            weights = flat[layer * per: (layer + 1) * per]
            if batch_sizes is None:
                out, *hidden = fn(layer_in, s0, weights, self.bias, 1, 0.0, True, self.bidirectional, True)
            else:
                out, *hidden = fn(layer_in, batch_sizes, s0, weights, self.bias, 1, 0.0, True, self.bidirectional)
            finals.append(State(*hidden))
            layer_in = self._between_layers(out, layer)
        h = torch.cat([f.h for f in finals])
        return layer_in, State(h) if finals[0].c is None else State(h, torch.cat([f.c for f in finals]))

    def _forward_fused_groups(self, x: Tensor, lengths: Tensor, state: State) -> tuple[Tensor, State]:
        """Uneven lengths as one exact fused run per distinct length: no pad is read or computed.

        Length-bucketed batches hold one or two distinct lengths, so this costs one
        or two kernel calls — cheaper than packing or the masked cell loop on CPU.
        """
        B, T, _ = x.shape
        lengths = lengths.cpu()
        outs, finals, order = [], [], []
        for length in torch.unique(lengths).tolist():
            rows = (lengths == length).nonzero(as_tuple=True)[0]  # (b,)
            rows_dev = rows.to(x.device)
            o, s = self._forward_fused(x.index_select(0, rows_dev)[:, :length], None,
                                       state.index_select(rows_dev, dim=1))  # (b, length, D*H)
            outs.append(F.pad(o, (0, 0, 0, T - length)))  # (b, T, D*H), zeros at pads
            finals.append(s)
            order.append(rows)
        perm = torch.cat(order)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(B)
        inverse = inverse.to(x.device)
        out = torch.cat(outs, 0).index_select(0, inverse)  # (B, T, D*H) in the caller's row order
        h = torch.cat([f.h for f in finals], 1).index_select(1, inverse)  # (L*D, B, H)
        c = None if finals[0].c is None else torch.cat([f.c for f in finals], 1).index_select(1, inverse)
        return out, State(h, c)

    def _forward_scan(self, x: Tensor, lengths: Optional[Tensor], state: State) -> tuple[Tensor, State]:
        """GRU / plain RNN through ``rnnkit.nn.scan``: time-major, one hand-written layer per layer and direction.

        The backward direction runs the same keep mask from the last step to the first,
        which is each row reversed within its own length (see ``scan_layer``).
        """
        T = x.size(1)
        keep = None
        if lengths is not None:
            keep = torch.arange(T, device=x.device).unsqueeze(1) < lengths.to(x.device)  # (T, B)
        finals: list[Tensor] = []
        cells: list[Tensor] = []  # LSTM: each layer and direction's final c
        layer_in = x.transpose(0, 1)  # (T, B, I) then (T, B, D*H)
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                h0 = state.h[layer * self.num_directions + direction]  # (B, H)
                weights = self._layer_weights(layer, direction)
                if self.mode == "lstm":
                    c0 = state.c[layer * self.num_directions + direction]  # (B, H)
                    out, c_n = lstm_scan_layer(layer_in, h0, c0, *weights, keep=keep, reverse=direction == 1)
                    cells.append(c_n)
                else:
                    out = scan_layer(self.mode, layer_in, h0, *weights, keep=keep, reverse=direction == 1)  # (T, B, H)
                outs.append(out)
                finals.append(out[0] if direction == 1 else out[-1])  # (B, H)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (T, B, D*H)
            layer_in = self._between_layers(layer_in, layer, time_dim=0)
        if keep is not None:
            layer_in = layer_in.masked_fill(~keep.unsqueeze(2), 0.0)  # zeros at pads
        final = State(torch.stack(finals), torch.stack(cells) if cells else None)  # (L*D, B, H) each
        return layer_in.transpose(0, 1), final  # (B, T, D*H)

    def _forward_reference(self, x: Tensor, lengths: Optional[Tensor], state: State) -> tuple[Tensor, State]:
        T = x.size(1)
        recur = RECUR[self.mode]
        valid = masks = rev = None
        if lengths is not None:
            steps = torch.arange(T, device=x.device)  # (T,)
            lens = lengths.to(x.device).unsqueeze(1)  # (B, 1)
            valid = steps < lens  # (B, T) True at real steps
            masks = valid.unbind(1)  # T x (B,)
            # Per-row time index that reverses each sequence within its length; pads stay put.
            rev = torch.where(valid, lens - 1 - steps, steps)  # (B, T)

        finals: list[State] = []
        layer_in = x  # (B, T, I) then (B, T, D*H)
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer, direction)
                seq = layer_in if direction == 0 else _reverse(layer_in, rev)
                xw = input_projection(seq, w_ih, b_ih)  # (B, T, G*H): one matmul for all steps
                s0 = state.layer(layer * self.num_directions + direction)  # (B, H)
                out, final = _scan(recur, xw, s0, w_hh, b_hh, masks)
                outs.append(out if direction == 0 else _reverse(out, rev))  # (B, T, H)
                finals.append(final)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, T, D*H)
            layer_in = self._between_layers(layer_in, layer)
        out = layer_in if valid is None else layer_in.masked_fill(~valid.unsqueeze(2), 0.0)  # zeros at pads
        return out, State.stack(finals)

    def _forward_cells(self, x: Tensor, lengths: Optional[Tensor], state: State) -> tuple[Tensor, State]:
        """A table cell's layers: its parallel form (``fused``, more than one step) or its reference steps.

        The backward direction reads each row reversed within its own length, so its pads
        too come after every real step, where the cells leave the state alone.
        """
        T = x.size(1)
        valid = rev = None
        if lengths is not None:
            steps = torch.arange(T, device=x.device)  # (T,)
            lens = lengths.to(x.device).unsqueeze(1)  # (B, 1)
            valid = steps < lens  # (B, T) True at real steps
            rev = torch.where(valid, lens - 1 - steps, steps)  # (B, T) per-row reversal within the length
        parallel = self.backend == "fused" and T > 1
        finals: list[State] = []
        layer_in = x  # (B, T, I) then (B, T, D*H)
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                cell = self.cells[layer * self.num_directions + direction]
                seq = layer_in if direction == 0 else _reverse(layer_in, rev)
                s0 = state.layer(layer * self.num_directions + direction)  # (B, K_i) each
                out, final = (cell.parallel if parallel else cell.reference)(seq, s0, valid)  # (B, T, H)
                outs.append(out if direction == 0 else _reverse(out, rev))
                finals.append(final)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, T, D*H)
            layer_in = self._between_layers(layer_in, layer)
        out = layer_in if valid is None else layer_in.masked_fill(~valid.unsqueeze(2), 0.0)  # zeros at pads
        return out, State.stack(finals)


# Up to this many distinct lengths in a batch, the fused backend runs one exact kernel call per
# length; beyond it (an unbucketed batch), the masked cell loop on CPU and packing on GPU.
MAX_LENGTH_GROUPS = 4
CELL_STEP_MAX_BATCH = 32  # one time step, CPU: cells below this batch, the fused kernel above (measured)
# GRU / RNN on CPU: the scan from this many multiply-adds per step (B * G * H^2), or in training from this
# many steps; PyTorch's kernel below both (measured, 1 thread; see Recurrent._scan_is_faster).
SCAN_MIN_WORK = 1 << 21
SCAN_MIN_STEPS = 16
# LSTM training through rnnkit.nn.scan when asked for (RNNKIT_LSTM_SCAN=1), from these sizes: at them it
# measured 0.90-0.97x oneDNN's LSTM primitive over 32 steps and 1.04-1.12x over 128 (one thread, batch 64,
# ``benchmarks/gru_rnn.py --modes lstm``), and smaller batches fell further behind.
LSTM_SCAN_MIN_WORK = 1 << 22  # multiply-adds of one step's hidden product, B * 4 * H^2
LSTM_SCAN_MIN_STEPS = 16


def _scan(
    recur: RecurFn, xw: Tensor, state: State, w_hh: Tensor, b_hh: Optional[Tensor], masks: Optional[tuple[Tensor, ...]]
) -> tuple[Tensor, State]:
    """Step ``recur`` over ``xw`` ``(B, T, G*H)`` from ``state`` ``(B, H)``; a state advances only where masked in.

    Returns every step's ``h`` ``(B, T, H)`` and the final state.
    """
    hs = []
    if masks is None:
        # unbind, not xw[:, t]: indexing would make each step's backward fill a (B, T, G*H) zero tensor
        for xw_t in xw.unbind(1):
            state = recur(xw_t, state, w_hh, b_hh)
            hs.append(state.h)
    else:
        for xw_t, keep in zip(xw.unbind(1), masks):
            state = recur(xw_t, state, w_hh, b_hh).where(keep, state)
            hs.append(state.h)
    return torch.stack(hs, dim=1), state


def _reverse(seq: Tensor, rev: Optional[Tensor]) -> Tensor:
    """Reverse ``seq`` ``(B, T, F)`` in time, each row within its own length when ``rev`` ``(B, T)`` is given."""
    if rev is None:
        return seq.flip(1)
    return seq.gather(1, rev.unsqueeze(2).expand_as(seq))  # (B, T, F)
