"""Recurrent building blocks: cells written from the equations, the cell table and the layer stack."""
from rnnkit.nn.state import State
from rnnkit.nn.cells import RNNCell, LSTMCell, GRUCell
from rnnkit.nn.mingru import MinGRUCell, MinLSTMCell
from rnnkit.nn.lru import LRUCell
from rnnkit.nn.xlstm import SLSTMCell, MLSTMCell
from rnnkit.nn.table import CELLS, CELL_NAMES, CellSpec, make_cell
from rnnkit.nn.recurrent import Recurrent
from rnnkit.nn.crf import CRF
from rnnkit.nn.attention import Attention
from rnnkit.nn.dropout import Dropout

__all__ = ["State", "RNNCell", "LSTMCell", "GRUCell", "MinGRUCell", "MinLSTMCell", "LRUCell", "SLSTMCell",
           "MLSTMCell", "CELLS", "CELL_NAMES", "CellSpec", "make_cell", "Recurrent", "CRF", "Attention", "Dropout"]
