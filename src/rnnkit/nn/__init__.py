"""Recurrent building blocks: cells written from the equations and the layer stack."""
from rnnkit.nn.state import State
from rnnkit.nn.cells import RNNCell, LSTMCell, GRUCell, make_cell
from rnnkit.nn.recurrent import Recurrent
from rnnkit.nn.crf import CRF
from rnnkit.nn.attention import Attention
from rnnkit.nn.dropout import Dropout

CELL_NAMES = ("rnn", "lstm", "gru")  # the cells a model config may name (``--cell``)

__all__ = ["State", "RNNCell", "LSTMCell", "GRUCell", "make_cell", "Recurrent", "CRF", "Attention", "Dropout", "CELL_NAMES"]
