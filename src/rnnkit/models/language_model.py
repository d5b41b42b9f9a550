"""Language model: predict the next token at every step (one-to-one per step).

The lecture's character model is the smallest case: one-hot input,
``h_t = tanh(W_hh h_{t-1} + W_xh x_t)``, ``y_t = W_hy h_t``, softmax over the
vocabulary.  The same class scales to embeddings, LSTM/GRU cells, stacked
layers, dropout and tied input/output weights, and — given ``num_labels`` — to
one-to-many generation conditioned on a class label (a name from a language).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.losses import sequence_nll
from rnnkit.nn import Dropout, Recurrent, State
from rnnkit.nn.onednn import Linear


@dataclass
class LanguageModelConfig:
    vocab_size: int                   # read from the data's vocabulary
    cell: str = "lstm"                # any of rnnkit.nn.CELL_NAMES: rnn, lstm, gru, mingru, minlstm, lru, slstm, mlstm
    hidden_size: int = 256            # units per recurrent layer
    num_layers: int = 2               # stacked recurrent layers
    embedding_size: Optional[int] = 64  # None: one-hot input (the lecture's form)
    dropout: float = 0.0              # on embeddings, between layers and before the output layer
    tie_weights: bool = False         # share the input embedding with the output layer
    bias: bool = True                 # biases in the cell and the output layer (the lecture has none)
    num_labels: int = 0               # > 0: condition every step on a class label (one-to-many)
    label_size: int = 16              # size of the label embedding when num_labels > 0
    backend: str = "fused"            # fused (torch kernels) | reference (rnnkit cells, step by step)


class LossOutput(NamedTuple):
    """Summed loss over real tokens, their count, and the state to carry to the next batch."""

    loss: Tensor
    num_tokens: Tensor
    carry: Optional[State]


class LanguageModel(nn.Module):
    """Next-token model. ``forward(inputs (B, T)) -> (logits (B, T, V), State)``."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.vocab_size < 1:
            raise ValueError("vocab_size must be >= 1")
        if c.embedding_size is None:
            self.embedding = None
            in_size = c.vocab_size  # one-hot
        else:
            self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
            in_size = c.embedding_size
        self.label_embedding = nn.Embedding(c.num_labels, c.label_size) if c.num_labels > 0 else None
        if self.label_embedding is not None:
            in_size += c.label_size
        self.rnn = Recurrent(c.cell, in_size, c.hidden_size, num_layers=c.num_layers,
                             dropout=c.dropout if c.num_layers > 1 else 0.0,  # between layers only
                             backend=c.backend, bias=c.bias)
        self.drop = Dropout(c.dropout)
        self.out = Linear(c.hidden_size, c.vocab_size, bias=c.bias)
        if c.tie_weights:
            if self.embedding is None or c.embedding_size != c.hidden_size:
                raise ValueError("tie_weights needs an embedding with embedding_size == hidden_size "
                                 f"(got embedding_size={c.embedding_size}, hidden_size={c.hidden_size})")
            self.out.weight = self.embedding.weight

    def recurrent_inputs(self, tokens: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """What the recurrent stack reads for ``tokens (B, T)``: embeddings (or one-hot vectors),
        with the label's embedding beside each step's when the model is conditioned on a label."""
        if self.embedding is None:
            x = F.one_hot(tokens, self.config.vocab_size).to(self.out.weight.dtype)  # (B, T, V)
        else:
            x = self.drop(self.embedding(tokens))  # (B, T, E)
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("this model is conditioned on a label: pass labels (B,)")
            lab = self.label_embedding(labels)  # (B, Lsz)
            x = torch.cat([x, lab.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)  # (B, T, E+Lsz)
        return x

    def forward(self, tokens: Tensor, state: Optional[State] = None, *,
                lengths: Optional[Tensor] = None, labels: Optional[Tensor] = None) -> tuple[Tensor, State]:
        """``tokens (B, T)`` -> ``logits (B, T, V)`` and the state after the last real token."""
        if tokens.dim() != 2:
            raise ValueError(f"expected token ids of shape (B, T), got {tuple(tokens.shape)}")
        out, state = self.rnn(self.recurrent_inputs(tokens, labels), lengths=lengths, state=state)  # (B, T, H)
        return self.out(self.drop(out)), state  # (B, T, V)

    def loss(self, batch, carry: Optional[State] = None) -> LossOutput:
        """Summed next-token NLL (nats) over the batch's real tokens."""
        logits, state = self(batch.inputs, carry, lengths=batch.lengths, labels=batch.labels)
        total, count = sequence_nll(logits, batch.targets, mask=batch.mask)
        return LossOutput(total, count, state.detach() if batch.mask is None else None)

    def step(self, tokens: Tensor, state: Optional[State], labels: Optional[Tensor] = None) -> tuple[Tensor, State]:
        """Decoding step protocol: ``tokens (B, t)`` -> ``(logits (B, t, V), state)``.

        A single token steps the cells directly: on CPU that is ~10x faster than
        calling the sequence kernel for one step, with identical numbers.
        """
        return self(tokens, state, labels=labels)
