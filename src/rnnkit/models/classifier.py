"""Sequence classifier: one label per sequence (many-to-one).

ids ``(B, T)`` -> embedding -> ``Recurrent`` (stacked, bidirectional) -> a pooled
vector per sequence -> MLP -> logits ``(B, C)``.  Pooling only ever reads real
tokens, so a sequence gets the same logits whatever batch (and padding) it is in:

* ``last``: the top layer's final states from the returned ``State`` — the
  forward direction's at the last real token and, when bidirectional, the
  backward direction's after reading the first token (``[h_fwd; h_bwd]``);
* ``mean`` / ``max``: over the top layer's outputs at real positions;
* ``attention``: ``a_t = softmax_t(v^T tanh(W o_t + b))`` over real positions
  (pads get weight exactly 0), pooled ``sum_t a_t o_t``.

With ``ensemble = K > 1`` the model is K such classifiers from different
initialisations, trained side by side on the same batches (each on its own
loss); it predicts the mean of their class probabilities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.models.language_model import LossOutput
from rnnkit.models._inputs import check_padded, check_word_model, copy_embeddings, drop_words
from rnnkit.nn import Dropout, Recurrent

POOLINGS = ("last", "mean", "max", "attention")


@dataclass
class ClassifierConfig:
    vocab_size: int                # read from the data's vocabulary (pads included)
    num_classes: int               # read from the data's label set
    embedding_size: int = 128      # size of the token embeddings
    cell: str = "lstm"             # any of rnnkit.nn.CELL_NAMES: rnn, lstm, gru, mingru, minlstm, lru, slstm, mlstm
    hidden_size: int = 128         # units per recurrent layer and direction
    num_layers: int = 1            # stacked recurrent layers
    bidirectional: bool = False    # read each sequence both ways; pooled features are 2 * hidden_size
    dropout: float = 0.0           # on embeddings, between recurrent layers and before the MLP
    pooling: str = "last"          # last | mean | max | attention (all over real tokens only)
    mlp_hidden: int = 0            # 0: one linear output layer; > 0: a hidden layer of this size with ReLU
    freeze_embeddings: bool = False  # keep the embedding fixed (e.g. pretrained vectors)
    pad_id: int = 0                # the pad token's id; its embedding row is padding_idx
    word_dropout: float = 0.0      # training only: replace a real token by unk_id with this probability
    unk_id: int = 1                # the vocabulary's <unk> id (used by word_dropout)
    backend: str = "fused"         # fused (torch kernels) | reference (rnnkit cells, step by step)
    ensemble: int = 1              # > 1: this many classifiers, each its own initialisation; mean probabilities


class Pooled(NamedTuple):
    """What ``Classifier.encode`` returns: one vector per sequence, and attention weights if any."""

    features: Tensor  # (B, D*H)
    weights: Optional[Tensor]  # (B, T), rows sum to 1, exactly 0 at pads; None unless pooling="attention"


class Classifier(nn.Module):
    """Many-to-one model. ``forward(inputs (B, T), lengths (B,) | None, mask (B, T) | None) -> logits (B, C)``.

    Sequences are right-padded: ``lengths`` gives each row's real tokens, or
    ``mask`` marks them (True on a prefix of each row); with neither, every
    position is real.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        c = self.config = config
        check_word_model(c)
        if c.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {c.num_classes}")
        if c.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {c.pooling!r}")
        if c.mlp_hidden < 0:
            raise ValueError(f"mlp_hidden must be >= 0 (0: linear output layer); got {c.mlp_hidden}")
        if c.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 (1: a single classifier); got {c.ensemble}")
        if c.ensemble > 1:
            # the members are drawn one after another from the RNG, so each starts elsewhere
            self.members = nn.ModuleList(Classifier(replace(c, ensemble=1)) for _ in range(c.ensemble))
            return

        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=c.pad_id)
        self.embedding.weight.requires_grad_(not c.freeze_embeddings)
        self.drop = Dropout(c.dropout)
        # Recurrent warns that dropout does nothing with one layer; it only belongs between layers.
        self.rnn = Recurrent(c.cell, c.embedding_size, c.hidden_size, num_layers=c.num_layers,
                             bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0,
                             backend=c.backend)
        self.num_directions = 2 if c.bidirectional else 1
        feat = self.num_directions * c.hidden_size  # D*H, the pooled size for every pooling
        if c.pooling == "attention":
            # additive scoring: e_t = v^T tanh(W o_t + b)
            self.attn_proj = nn.Linear(feat, feat)
            self.attn_score = nn.Linear(feat, 1, bias=False)
        if c.mlp_hidden > 0:
            self.head = nn.Sequential(nn.Linear(feat, c.mlp_hidden), nn.ReLU(), nn.Linear(c.mlp_hidden, c.num_classes))
        else:
            self.head = nn.Linear(feat, c.num_classes)

    # ----------------------------------------------------------------- inputs

    def _check_inputs(self, inputs: Tensor, lengths: Optional[Tensor],
                      mask: Optional[Tensor]) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """Validate; return ``(lengths (B,) | None, mask (B, T) | None)``, both None when nothing is padded."""
        lengths, mask = check_padded(inputs, lengths, mask)
        lo, hi = int(inputs.min()), int(inputs.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, vocab_size={self.config.vocab_size}); got [{lo}, {hi}]")
        return lengths, mask

    # ---------------------------------------------------------------- forward

    def encode(self, inputs: Tensor, lengths: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> Pooled:
        """``inputs (B, T)`` -> ``Pooled(features (B, D*H), attention weights (B, T) | None)``."""
        if self.config.ensemble > 1:
            raise ValueError("an ensemble has no single pooled vector; encode with one of its members")
        lengths, mask = self._check_inputs(inputs, lengths, mask)
        if self.training and self.config.word_dropout > 0:
            inputs = drop_words(inputs, mask, self.config.word_dropout, self.config.unk_id)
        x = self.drop(self.embedding(inputs))  # (B, T, E)
        # outputs only: the fused kernel then runs once per layer and direction, pads or not
        out, _ = self.rnn(x, lengths=lengths, need_state=False)  # (B, T, D*H), zeros at pads
        pooling = self.config.pooling
        if pooling == "last":
            # the top layer's final states are outputs: forward at the last real token, backward at the first
            B, T, _ = out.shape
            H = self.config.hidden_size
            last = lengths - 1 if lengths is not None else torch.full((B,), T - 1, device=out.device)  # (B,)
            parts = [out[torch.arange(B, device=out.device), last, :H]]  # (B, H)
            if self.num_directions == 2:
                parts.append(out[:, 0, H:])  # (B, H)
            return Pooled(torch.cat(parts, dim=1), None)  # (B, D*H)
        if pooling == "mean":
            if mask is None:
                return Pooled(out.mean(1), None)  # (B, D*H)
            # pads of `out` are zeros, so the sum is over real steps only
            return Pooled(out.sum(1) / lengths.unsqueeze(1).to(out.dtype), None)  # (B, D*H)
        if pooling == "max":
            if mask is not None:
                out = out.masked_fill(~mask.unsqueeze(2), float("-inf"))  # (B, T, D*H)
            return Pooled(out.max(1).values, None)  # (B, D*H)
        scores = self.attn_score(torch.tanh(self.attn_proj(out))).squeeze(2)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: pads weigh exactly 0
        weights = torch.softmax(scores, dim=1)  # (B, T)
        return Pooled(torch.bmm(weights.unsqueeze(1), out).squeeze(1), weights)  # (B, D*H)

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> Tensor:
        """``inputs (B, T)`` token ids -> ``logits (B, C)``; an ensemble's are the log of its mean probabilities."""
        if self.config.ensemble > 1:
            logp = torch.stack([F.log_softmax(m(inputs, lengths, mask).float(), dim=-1)
                                for m in self.members])  # (K, B, C)
            return torch.logsumexp(logp, dim=0) - math.log(len(self.members))  # (B, C)
        features = self.encode(inputs, lengths, mask).features  # (B, D*H)
        return self.head(self.drop(features))  # (B, C)

    def loss(self, batch, carry=None) -> LossOutput:
        """Summed cross-entropy over the batch's sequences; the count is ``B`` (a 0-d long tensor).

        ``carry`` is accepted for the trainer's protocol and ignored: sequences are independent.
        An ensemble's loss is the mean of its members' losses, so each member learns as if alone
        (its gradient is 1/K of its own loss's), not to patch the others' errors.
        """
        labels = batch.labels
        if labels is None or labels.dim() != 1 or labels.size(0) != batch.inputs.size(0):
            raise ValueError(f"a classifier batch needs labels (B,) with B={batch.inputs.size(0)}; "
                             f"got {None if labels is None else tuple(labels.shape)}")
        if int(labels.min()) < 0 or int(labels.max()) >= self.config.num_classes:
            raise ValueError(f"labels must lie in [0, num_classes={self.config.num_classes}) "
                             f"(unlabelled rows are -1 and cannot be trained on); "
                             f"got [{int(labels.min())}, {int(labels.max())}]")
        singles = self._singles()
        total = sum(F.cross_entropy(m(batch.inputs, batch.lengths, batch.mask).float(), labels.long(),
                                    reduction="sum") for m in singles) / len(singles)  # 0-d
        return LossOutput(total, torch.tensor(labels.size(0), device=total.device), None)

    @torch.no_grad()
    def predict_proba(self, inputs: Tensor, lengths: Optional[Tensor] = None,
                      mask: Optional[Tensor] = None) -> Tensor:
        """Class probabilities ``(B, C)``, without gradients (call ``eval()`` first to turn dropout off)."""
        return torch.softmax(self(inputs, lengths, mask).float(), dim=-1)  # (B, C)

    def load_pretrained_embeddings(self, matrix: Tensor) -> None:
        """Copy ``matrix`` ``(vocab_size, embedding_size)`` into the embedding, row i for token id i.

        The pad row is copied too; it never reaches a prediction, since pooling reads real tokens only.
        Every member of an ensemble starts from the same vectors.
        """
        for m in self._singles():
            copy_embeddings(m.embedding, matrix)

    def _singles(self) -> list["Classifier"]:
        """The single classifiers this model is: its ensemble's members, or itself."""
        return list(self.members) if self.config.ensemble > 1 else [self]
