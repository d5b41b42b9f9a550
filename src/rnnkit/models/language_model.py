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
from rnnkit.errors import ConfigError
from rnnkit.nn import CELL_NAMES, Dropout, Recurrent, State
from rnnkit.nn.recurrent import BACKENDS
from rnnkit.options import opt, validate
from rnnkit.nn.onednn import Linear


@dataclass
class LanguageModelConfig:
    vocab_size: int = opt(derived=True, ge=1, help="read from the data's vocabulary")
    cell: str = opt("lstm", choices=CELL_NAMES, help="recurrent cell")
    hidden_size: int = opt(256, flag="hidden", ge=1, help="hidden units per layer")
    num_layers: int = opt(2, flag="layers", ge=1, help="stacked recurrent layers")
    embedding_size: Optional[int] = opt(64, ge=1, zero_is_none=True,
                                        help="input embedding size; 0 for one-hot input (the lecture's form)")
    dropout: float = opt(0.0, ge=0, lt=1, help="dropout on embeddings, between layers and before the output layer")
    tie_weights: bool = opt(False, help="share the input embedding with the output layer "
                                        "(needs --embedding-size equal to --hidden)")
    bias: bool = opt(True, cli=False, help="biases in the cell and the output layer (the lecture has none)")
    num_labels: int = opt(0, derived=True, ge=0, help="> 0: condition every step on a class label (one-to-many)")
    label_size: int = opt(16, cli=False, ge=1, help="size of the label embedding when num_labels > 0")
    backend: str = opt("fused", choices=BACKENDS, help="fused torch kernels or rnnkit's cells step by step")
    locked_dropout: bool = opt(False, help="variational dropout: one mask per sequence, shared over time, on "
                                           "the embeddings, between layers and before the output layer")

    def __post_init__(self) -> None:
        validate(self)

    def check(self) -> None:
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ConfigError("--tie-weights needs an input embedding as large as the hidden state: "
                              f"--embedding-size {self.embedding_size or 0} and --hidden {self.hidden_size} given; "
                              "make them equal")


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
                             backend=c.backend, bias=c.bias, locked_dropout=c.locked_dropout)
        self.drop = Dropout(c.dropout, locked=c.locked_dropout)  # (B, T, F) inputs: locked over T
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

        Tokens of an unconditioned model in eval mode go through ``Recurrent.token_step``, one at a
        time: on CPU at small batches (see ``Recurrent.fuses_step``) the first layer's input product
        of each token id is computed once and the stack steps in a few operations
        (``rnnkit.nn.fused_step``), equal to ``forward`` to float rounding.  So does a prime of up to
        ``STEP_PRIME_MAX`` tokens, which costs less that way than one call of the sequence kernel.
        Anything else runs ``forward``.
        """
        if tokens.dim() == 2 and self.label_embedding is None and not self.training:
            B, t = tokens.shape
            emb = None if self.embedding is None else self.embedding.weight
            if t == 1:
                h, state = self.rnn.token_step(tokens[:, 0], emb, state)  # (B, H)
                return self.out(h).unsqueeze(1), state  # (B, 1, V)
            if t <= STEP_PRIME_MAX and self.rnn.fuses_step(B, self.out.weight):
                hs = []
                for token in tokens.unbind(1):
                    h, state = self.rnn.token_step(token, emb, state)  # (B, H)
                    hs.append(h)
                return self.out(torch.stack(hs, dim=1)), state  # (B, t, V)
        return self(tokens, state, labels=labels)


# Up to this many tokens in one call (a prime), LanguageModel.step runs the fused step token by token: on CPU
# the sequence kernel's fixed cost per call outweighs that up to 32 tokens (2-layer LSTM 512, batch 1, idle:
# 8 tokens 1.8 vs 4.6 ms on 2 threads, 3.1 vs 7.4 ms on 1; 32 tokens 5.4 vs 6.8 ms; 64 tokens 10.0 vs 5.5 ms).
STEP_PRIME_MAX = 32
