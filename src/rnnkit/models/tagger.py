"""Sequence tagger: one tag per token (many-to-many, aligned), e.g. POS or NER.

word ids ``(B, T)`` -> word embedding, concatenated per token with a character
encoding of the word (optional) -> ``Recurrent`` (usually bidirectional) ->
linear -> emissions ``(B, T, K)``.  Trained with a per-token softmax loss
(``rnnkit.losses.sequence_nll``) or, with ``crf=True``, a linear-chain CRF's
sentence negative log-likelihood; predictions are per-token argmax or Viterbi.

The character encoder lets a word the vocabulary maps to ``<unk>`` still be
told apart by its spelling (capitals, suffixes):

* ``lstm``: a BiLSTM over the word's characters, its two final states concatenated;
* ``cnn``: a width-3 convolution over the characters, max-pooled over the real ones.

Both run on the real words of the batch only (flattened to ``(N, W)``), so pad
tokens, their ids and their characters are never read: a sentence gets the same
emissions, loss and gradients whatever batch it is in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from rnnkit.losses import sequence_nll
from rnnkit.models.language_model import LossOutput
from rnnkit.nn import CRF, Dropout, Recurrent
from rnnkit.models._inputs import INT_DTYPES as _INT_DTYPES, check_padded, check_word_model, copy_embeddings, drop_words
from rnnkit.nn.onednn import Linear

CHAR_ENCODERS = ("none", "lstm", "cnn")


@dataclass
class TaggerConfig:
    vocab_size: int                 # read from the data's word vocabulary (pads included)
    num_tags: int                   # read from the data's tag set
    embedding_size: int = 100       # size of the word embeddings
    char_vocab_size: int = 0        # read from the data's character vocabulary; 0: no character encoder
    char_encoder: str = "none"      # none | lstm (BiLSTM final states) | cnn (width-3 filters, max over chars)
    char_embedding_size: int = 25   # size of the character embeddings
    char_hidden_size: int = 25      # lstm: units per direction (2x per word); cnn: number of filters
    char_pad_id: int = 0            # the character pad id inside a word's (B, T, W) row (tag_batch's char_pad_id)
    cell: str = "lstm"              # word-level encoder: any of rnnkit.nn.CELL_NAMES (rnn, lstm, gru, mingru, ...)
    hidden_size: int = 128          # units per recurrent layer and direction
    num_layers: int = 1             # stacked recurrent layers
    bidirectional: bool = True      # read each sentence both ways; features are 2 * hidden_size
    dropout: float = 0.0            # on the word representation, between recurrent layers, on recurrent outputs
    crf: bool = False               # a linear-chain CRF on top (sentence NLL, Viterbi) instead of per-token softmax
    word_dropout: float = 0.0       # training only: replace a word by unk_id with this probability (chars stay),
                                    # so the model learns to read unseen words from their spelling
    unk_id: int = 1                 # the word vocabulary's <unk> id (used by word_dropout)
    pad_id: int = 0                 # the word pad id; its embedding row is padding_idx
    backend: str = "fused"          # fused (torch kernels) | reference (rnnkit cells, step by step)


class Tagger(nn.Module):
    """Aligned many-to-many model.

    ``forward(inputs (B, T), lengths (B,) | None, mask (B, T) | None, chars (B, T, W) | None)
    -> emissions (B, T, K)``.  Rows are right-padded; ``lengths`` or ``mask`` marks the
    real tokens (neither: all real).  ``chars`` is required with a character encoder
    and ignored without one.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        c = self.config = config
        check_word_model(c)
        if c.num_tags < 1:
            raise ValueError(f"num_tags must be >= 1; got {c.num_tags}")
        if c.char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"char_encoder must be one of {CHAR_ENCODERS}; got {c.char_encoder!r}")
        if c.char_encoder != "none":
            if c.char_vocab_size < 1 or c.char_embedding_size < 1 or c.char_hidden_size < 1:
                raise ValueError(f"char_encoder={c.char_encoder!r} needs char_vocab_size, char_embedding_size and "
                                 f"char_hidden_size >= 1; got {c.char_vocab_size}, {c.char_embedding_size}, "
                                 f"{c.char_hidden_size}")
            if not 0 <= c.char_pad_id < c.char_vocab_size:
                raise ValueError(f"char_pad_id must lie in [0, char_vocab_size={c.char_vocab_size}); "
                                 f"got {c.char_pad_id}")

        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=c.pad_id)
        char_size = 0  # per-token size of the character encoding
        if c.char_encoder != "none":
            self.char_embedding = nn.Embedding(c.char_vocab_size, c.char_embedding_size, padding_idx=c.char_pad_id)
            if c.char_encoder == "lstm":
                self.char_rnn = Recurrent("lstm", c.char_embedding_size, c.char_hidden_size, bidirectional=True,
                                          backend=c.backend)
                char_size = 2 * c.char_hidden_size
            else:
                self.char_conv = nn.Conv1d(c.char_embedding_size, c.char_hidden_size, kernel_size=3, padding=1)
                char_size = c.char_hidden_size
        self.drop = Dropout(c.dropout)
        # Recurrent warns that dropout does nothing with one layer; it only belongs between layers.
        self.rnn = Recurrent(c.cell, c.embedding_size + char_size, c.hidden_size, num_layers=c.num_layers,
                             bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0,
                             backend=c.backend)
        self.num_directions = 2 if c.bidirectional else 1
        self.out = Linear(self.num_directions * c.hidden_size, c.num_tags)  # (D*H) -> K emission scores
        self.crf = CRF(c.num_tags) if c.crf else None

    # ----------------------------------------------------------------- inputs

    def _check_inputs(self, inputs: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor],
                      chars: Optional[Tensor]) -> tuple[Optional[Tensor], Tensor]:
        """Validate; return ``(lengths (B,) | None when nothing is padded, mask (B, T))``."""
        lengths, mask = check_padded(inputs, lengths, mask, "word")
        B, T = inputs.shape
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=inputs.device)
        real = inputs[mask]
        lo, hi = int(real.min()), int(real.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"word ids must lie in [0, vocab_size={self.config.vocab_size}); got [{lo}, {hi}]")
        if self.config.char_encoder != "none":
            if chars is None:
                raise ValueError(f"char_encoder={self.config.char_encoder!r} needs chars (B, T, W)")
            if chars.dim() != 3 or tuple(chars.shape[:2]) != (B, T) or chars.dtype not in _INT_DTYPES \
                    or chars.size(2) == 0:
                raise ValueError(f"chars must be (B, T, W >= 1) integer ids with (B, T) = {(B, T)}; "
                                 f"got {chars.dtype} of shape {tuple(chars.shape)}")
            real = chars[mask]  # (N, W)
            lo, hi = int(real.min()), int(real.max())
            if lo < 0 or hi >= self.config.char_vocab_size:
                raise ValueError(f"char ids must lie in [0, char_vocab_size={self.config.char_vocab_size}); "
                                 f"got [{lo}, {hi}]")
        return lengths, mask

    # ---------------------------------------------------------------- forward

    def _encode_chars(self, chars: Tensor, mask: Tensor) -> Tensor:
        """``chars (B, T, W)`` -> one vector per token ``(B, T, F)``, zeros at pad tokens."""
        B, T, _ = chars.shape
        words = chars[mask]  # (N, W): the real words only
        is_char = words != self.config.char_pad_id  # (N, W)
        n_chars = is_char.sum(1)  # (N,)
        width = max(int(n_chars.max()), 1)
        words, is_char = words[:, :width], is_char[:, :width]  # (N, W') drop all-pad columns
        # Pad characters read as zero vectors, whatever the pad row of the embedding holds.
        emb = self.char_embedding(words).masked_fill(~is_char.unsqueeze(2), 0.0)  # (N, W', Ec)
        if self.config.char_encoder == "lstm":
            # A word without characters (empty string) reads one zero vector.
            _, state = self.char_rnn(emb, lengths=n_chars.clamp(min=1))  # state.h (2, N, Hc)
            feats = torch.cat(state.h.unbind(0), dim=1)  # (N, 2*Hc): [forward after last char; backward after first]
        else:
            conv = self.char_conv(emb.transpose(1, 2))  # (N, Hc, W'): zeros beyond the word, as at its edges
            conv = conv.masked_fill(~is_char.unsqueeze(1), float("-inf"))  # max over real characters only
            feats = conv.max(dim=2).values  # (N, Hc)
            feats = feats.masked_fill((n_chars == 0).unsqueeze(1), 0.0)  # an empty word: zeros, not -inf
        out = feats.new_zeros(B * T, feats.size(1))  # (B*T, F)
        return out.index_copy(0, mask.reshape(-1).nonzero().squeeze(1), feats).view(B, T, -1)  # (B, T, F)

    def _emissions(self, inputs: Tensor, lengths: Optional[Tensor], mask: Tensor, chars: Optional[Tensor]) -> Tensor:
        inputs = inputs.masked_fill(~mask, self.config.pad_id)  # pad ids never looked up
        if self.training and self.config.word_dropout > 0:
            inputs = drop_words(inputs, mask, self.config.word_dropout, self.config.unk_id)
        x = self.embedding(inputs)  # (B, T, E)
        if self.config.char_encoder != "none":
            x = torch.cat([x, self._encode_chars(chars, mask)], dim=2)  # (B, T, E + F)
        out, _ = self.rnn(self.drop(x), lengths=lengths, need_state=False)  # (B, T, D*H), zeros at pads
        return self.out(self.drop(out))  # (B, T, K)

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                chars: Optional[Tensor] = None) -> Tensor:
        """``inputs (B, T)`` word ids (+ ``chars (B, T, W)``) -> emissions ``(B, T, K)`` (arbitrary at pads)."""
        lengths, mask = self._check_inputs(inputs, lengths, mask, chars)
        return self._emissions(inputs, lengths, mask, chars)

    def loss(self, batch, carry=None) -> LossOutput:
        """Summed loss over the batch and its number of real tokens (a 0-d long tensor).

        Softmax: the summed per-token cross-entropy.  CRF: the summed sentence NLLs.  Either
        way the count is the real tokens, so the trainer's ``loss / count`` is per token.
        ``carry`` is accepted for the trainer's protocol and ignored: sentences are independent.
        """
        lengths, mask = self._check_inputs(batch.inputs, batch.lengths, batch.mask, batch.chars)
        targets = batch.targets
        if targets is None or tuple(targets.shape) != tuple(mask.shape) or targets.dtype not in _INT_DTYPES:
            raise ValueError(f"a tagger batch needs integer targets (B, T) = {tuple(mask.shape)}; "
                             f"got {None if targets is None else (targets.dtype, tuple(targets.shape))}")
        real = targets[mask]
        lo, hi = int(real.min()), int(real.max())
        if lo < 0 or hi >= self.config.num_tags:
            raise ValueError(f"tags must lie in [0, num_tags={self.config.num_tags}); got [{lo}, {hi}]")
        emissions = self._emissions(batch.inputs, lengths, mask, batch.chars)  # (B, T, K)
        return self._loss_from(emissions, targets, mask)

    def _loss_from(self, emissions: Tensor, targets: Tensor, mask: Tensor) -> LossOutput:
        if self.crf is None:
            total, count = sequence_nll(emissions, targets, mask)
            return LossOutput(total, count, None)
        total = self.crf.nll(emissions, targets, mask)  # 0-d, float32 at least
        return LossOutput(total, mask.sum(dtype=torch.long), None)

    def _decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        best = emissions.argmax(dim=2).tolist()  # (B, T)
        return [row[:n] for row, n in zip(best, mask.sum(1).tolist())]

    @torch.inference_mode()
    def loss_and_predict(self, batch) -> tuple[LossOutput, list[list[int]]]:
        """``loss(batch)`` and ``predict`` of the same batch from one pass of the network (evaluation)."""
        lengths, mask = self._check_inputs(batch.inputs, batch.lengths, batch.mask, batch.chars)
        emissions = self._emissions(batch.inputs, lengths, mask, batch.chars)  # (B, T, K)
        return self._loss_from(emissions, batch.targets, mask), self._decode(emissions, mask)

    @torch.inference_mode()
    def predict(self, inputs: Tensor, lengths: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                chars: Optional[Tensor] = None) -> list[list[int]]:
        """Tag ids of each sentence, trimmed to its length: per-token argmax, or Viterbi with a CRF.

        Call ``eval()`` first to turn dropout off.
        """
        lengths, mask = self._check_inputs(inputs, lengths, mask, chars)
        return self._decode(self._emissions(inputs, lengths, mask, chars), mask)

    def load_pretrained_embeddings(self, matrix: Tensor) -> None:
        """Copy ``matrix`` ``(vocab_size, embedding_size)`` into the word embedding, row i for word id i.

        The pad row is copied too; it never reaches a prediction, since pad tokens are masked.
        """
        copy_embeddings(self.embedding, matrix)
