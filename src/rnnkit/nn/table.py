"""The cell table: every recurrent cell ``Recurrent`` (and so every task's ``--cell``) can run, by name.

One row per cell: its class, the layout of its ``State``, its reference step, its
parallel (training) form, the names of the gates it reports, and whether the ONNX
export can write it.  RNN, LSTM and GRU keep ``torch.nn``'s parameter layout and run
``torch``'s fused kernels (``rnnkit.nn.cells``, ``rnnkit.nn.recurrent``); every other
cell is a ``SequenceCell`` (``rnnkit.nn.base``), one module per layer and direction.

A new cell is one file (a ``SequenceCell`` subclass with ``step`` and ``parallel``)
and one ``CellSpec`` row below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from rnnkit.nn.base import SequenceCell
from rnnkit.nn.cells import GRUCell, LSTMCell, RECUR, RNNCell, make_cell as _make_torch_cell
from rnnkit.nn.lru import LRUCell
from rnnkit.nn.mingru import MinGRUCell, MinLSTMCell
from rnnkit.nn.xlstm import MLSTMCell, SLSTMCell


@dataclass(frozen=True)
class CellSpec:
    """One row of the cell table."""

    name: str
    cls: type                              # the cell module (one layer, one direction)
    state_names: tuple[Optional[str], ...]  # what each place of State (h, c, *extra) holds; None: empty
    bridgeable: tuple[bool, ...]           # places a learned map may replace (values, not normalisers,
                                           # stabilisers or a matrix memory): seq2seq's linear bridge
    reference: Callable                    # one time step from the paper's equations: rnn / lstm / gru
                                           # after the hoisted input projection (cells.RECUR), the others
                                           # their cell's step(x, state, gates)
    parallel: Optional[Callable]           # the whole sequence at once (training); None: torch's fused
                                           # kernel, or rnnkit.nn.scan on CPU (see Recurrent)
    gates: tuple[str, ...]                 # gate names the step reports (rnnkit inspect draws them in [0, 1])
    exportable: bool                       # the ONNX export (rnnkit.export) can write it
    paper: str                             # where its equations come from

    @property
    def sequence_cell(self) -> bool:
        """A ``SequenceCell`` (run by ``Recurrent`` per layer and direction), not a torch-layout cell."""
        return issubclass(self.cls, SequenceCell)


_XLSTM = "Beck et al. 2024, xLSTM: Extended Long Short-Term Memory"
_MIN = "Feng et al. 2024, Were RNNs All We Needed?"
_GATES = ("input gate", "forget gate", "output gate")
CELLS: dict[str, CellSpec] = {row.name: row for row in (
    # name, class, state layout, bridgeable places;
    #     reference step, parallel form, gates, exportable, paper
    CellSpec("rnn", RNNCell, ("h", None), (True, False),
             RECUR["rnn_tanh"], None, (), True, "Elman 1990"),
    CellSpec("lstm", LSTMCell, ("h", "c"), (True, True),
             RECUR["lstm"], None, _GATES, True, "Hochreiter & Schmidhuber 1997; Gers et al. 2000"),
    CellSpec("gru", GRUCell, ("h", None), (True, False),
             RECUR["gru"], None, ("reset gate", "update gate"), True, "Cho et al. 2014"),
    CellSpec("mingru", MinGRUCell, ("h", None), (True, False),
             MinGRUCell.step, MinGRUCell.parallel, ("update gate",), False, _MIN),
    CellSpec("minlstm", MinLSTMCell, ("h", None), (True, False),
             MinLSTMCell.step, MinLSTMCell.parallel, ("forget gate", "input gate"), False, _MIN),
    CellSpec("lru", LRUCell, ("h", None, "x_re", "x_im"), (True, False, True, True),
             LRUCell.step, LRUCell.parallel, (), False,
             "Orvieto et al. 2023, Resurrecting Recurrent Neural Networks for Long Sequences"),
    CellSpec("slstm", SLSTMCell, ("h", "c", "n", "m"), (True, True, False, False),
             SLSTMCell.step, SLSTMCell.parallel, _GATES, False, _XLSTM),
    CellSpec("mlstm", MLSTMCell, ("h", "C", "n", "m"), (True, False, False, False),
             MLSTMCell.step, MLSTMCell.parallel, _GATES, False, _XLSTM),
)}
CELL_NAMES: tuple[str, ...] = tuple(CELLS)  # rnn, lstm, gru, mingru, minlstm, lru, slstm, mlstm

# Recurrent's modes: the table's names, plus torch's two plain-RNN spellings.
MODES = ("rnn", "rnn_tanh", "rnn_relu") + CELL_NAMES[1:]
_ALIASES = {"rnn": "rnn_tanh"}


def canonical_mode(mode: str) -> str:
    """``"rnn"`` -> ``"rnn_tanh"``; other valid modes lower-cased; ValueError otherwise."""
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    mode = mode.lower()
    return _ALIASES.get(mode, mode)


def spec(mode: str) -> CellSpec:
    """The table row of ``mode`` (``rnn_tanh`` / ``rnn_relu`` are the ``rnn`` row)."""
    mode = canonical_mode(mode)
    return CELLS["rnn" if mode.startswith("rnn_") else mode]


def is_sequence_cell(mode: str) -> bool:
    """Whether ``mode`` is a ``SequenceCell`` (not RNN / LSTM / GRU)."""
    return spec(mode).sequence_cell


def make_cell(mode: str, input_size: int, hidden_size: int, bias: bool = True):
    """A cell by name: any of ``CELL_NAMES`` (or ``rnn_tanh`` / ``rnn_relu``)."""
    row = spec(mode)
    if row.sequence_cell:
        return row.cls(input_size, hidden_size, bias=bias)
    return _make_torch_cell(mode, input_size, hidden_size, bias)
