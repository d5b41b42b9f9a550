"""Encoder-decoder (seq2seq), with or without attention: translation, chat, spelling -> phonemes.

source ids ``(B, S)`` -> embedding -> ``Recurrent`` encoder (stacked,
bidirectional) -> memory ``(B, S, H)`` and final states -> a *bridge* that
starts the decoder from them -> decoder (same cell kind, embedding, fully
connected output layer) -> logits ``(B, T, V)`` for every target step.

``hidden_size`` H is the size of the memory and of the decoder: a
bidirectional encoder has H/2 units per direction and its two final states are
concatenated per layer, so the ``copy`` bridge needs no parameters.

Attention (``rnnkit.nn.attention``) lets each decoder step weigh every source
position:

* ``luong`` (``dot`` or ``general`` score): the decoder state ``h_t`` queries the
  memory; ``h~_t = tanh(W_c [c_t; h_t])`` feeds the output layer.  Without input
  feeding no step depends on an earlier step's attention, so training runs the
  decoder recurrence fused over all target steps and scores every step in one
  batched product.  With ``input_feeding`` ``h~_{t-1}`` joins the next input and
  the decoder steps.
* ``bahdanau`` (additive): the previous decoder state queries the memory before
  the step; the context joins the step's input.  Always a step loop, with the
  memory's projection computed once per batch.

Decoding (greedy, beam, sampling) lives in ``rnnkit.decoding`` and drives the
model through ``step(tokens, state)``; the state is a ``Seq2SeqState`` whose
``index_select`` picks rows of everything it carries.  The beams of one sentence
share its encoder memory (``repeat_interleave``): beam search reorders the
decoder states every step but copies the memory only when sentences leave.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from rnnkit.losses import sequence_nll
from rnnkit.models._inputs import check_padded
from rnnkit.models.language_model import LossOutput
from rnnkit.errors import ConfigError
from rnnkit.nn import CELL_NAMES, Dropout, Recurrent, State
from rnnkit.nn.recurrent import BACKENDS
from rnnkit.options import opt, validate
from rnnkit.nn.attention import Attention
from rnnkit.nn.onednn import Linear

ATTENTIONS = ("none", "bahdanau", "luong")
LUONG_SCORES = ("dot", "general")
BRIDGES = ("copy", "linear", "zero")


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int = opt(derived=True, ge=1, help="read from the source vocabulary")
    tgt_vocab_size: int = opt(derived=True, ge=1, help="read from the target vocabulary")
    src_pad_id: int = opt(0, derived=True, ge=0)
    tgt_pad_id: int = opt(0, derived=True, ge=0)
    tgt_bos_id: int = opt(1, derived=True, ge=0, help="the decoder's first input")
    tgt_eos_id: int = opt(2, derived=True, ge=0, help="ends an output")
    cell: str = opt("lstm", choices=CELL_NAMES, help="encoder and decoder cell")
    embedding_size: int = opt(256, ge=1, help="source and target embedding size")
    hidden_size: int = opt(512, flag="hidden", ge=1,
                           help="decoder size = encoder output size (split over directions: even if bidirectional)")
    num_layers: int = opt(1, flag="layers", ge=1, help="encoder layers = decoder layers")
    bidirectional: bool = opt(True, help="bidirectional encoder")
    dropout: float = opt(0.2, ge=0, lt=1, help="dropout on embeddings, between layers, before the output layer")
    attention: str = opt("luong", choices=ATTENTIONS, help="attention over the encoder states")
    score: str = opt("general", choices=LUONG_SCORES, help="luong attention score")
    input_feeding: bool = opt(False, help="luong: feed the last attentional vector into the next step "
                                          "(forces the step loop)")
    bridge: str = opt("copy", choices=BRIDGES, help="decoder start from the encoder's final states: copy, "
                                                    "linear (tanh(W s)) or zero")
    teacher_forcing: float = opt(1.0, ge=0, le=1, help="training: probability of feeding the gold previous token")
    label_smoothing: float = opt(0.0, ge=0, lt=1, help="training loss label smoothing")
    tie_embeddings: bool = opt(False, help="output layer = target embedding (needs --embedding-size = --hidden)")
    share_embeddings: bool = opt(False, help="one embedding for both sides (with --shared-vocab)")
    backend: str = opt("fused", choices=BACKENDS, help="fused torch kernels or rnnkit's cells step by step")

    def __post_init__(self) -> None:
        validate(self)

    def check(self) -> None:
        if self.input_feeding and self.attention != "luong":
            raise ConfigError("--input-feeding needs --attention luong (bahdanau feeds its context already)")
        if self.bidirectional and self.hidden_size % 2:
            raise ConfigError(f"--hidden {self.hidden_size}: a bidirectional encoder splits it between its "
                              "two directions, so it must be even (or pass --no-bidirectional)")
        if self.tie_embeddings and self.embedding_size != self.hidden_size:
            raise ConfigError(f"--tie-embeddings needs --embedding-size equal to --hidden; got "
                              f"{self.embedding_size} and {self.hidden_size}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError("--share-embeddings needs one shared vocabulary: pass --shared-vocab")
        for name in ("tgt_pad_id", "tgt_bos_id", "tgt_eos_id"):
            if getattr(self, name) >= self.tgt_vocab_size:
                raise ConfigError(f"{name} must be a target id below {self.tgt_vocab_size}, got {getattr(self, name)}")


class Seq2SeqState(NamedTuple):
    """Everything a decoder step needs; rows are sentences (or sentence x beam).

    The memory, its keys and its mask have one row per ``group`` consecutive
    decoder rows: decoder row ``i`` reads memory row ``i // group`` (``group`` is 1
    except while beams of a sentence share its memory).
    """

    rnn: State                 # decoder state (L, N, H)
    feed: Optional[Tensor]     # (N, H) last attentional vector (input feeding) or None
    memory: Tensor             # (N / group, S, H) encoder outputs (0 at pads)
    keys: Optional[Tensor]     # (N / group, S, A) the memory's part of the attention score, or None
    mask: Tensor               # (N / group, S) bool, True on real source positions
    group: int = 1             # decoder rows per memory row

    def index_select(self, index: Tensor) -> "Seq2SeqState":
        """Decoder rows ``index`` (``(N',)`` long).  When each block of ``group`` new rows
        still reads one memory row (beams reordered within their sentence), the memory
        stays shared and only the sentences that remain are picked; otherwise every
        new row gets its own copy."""
        rnn, feed = self.rnn.index_select(index), None if self.feed is None else self.feed.index_select(0, index)
        g = self.group
        reads = index // g  # (N',) the memory row each new row reads
        if g > 1 and index.numel() % g == 0:
            blocks = reads.view(-1, g)  # (N'/g, g)
            if bool((blocks == blocks[:, :1]).all()):
                return self._with_memory(rnn, feed, blocks[:, 0], g)
        return self._with_memory(rnn, feed, reads, 1)

    def repeat_interleave(self, repeats: int) -> "Seq2SeqState":
        """Each decoder row ``repeats`` times in a row (the beams of a sentence); the memory is shared, not copied."""
        index = torch.arange(self.rnn.h.shape[1], device=self.rnn.h.device).repeat_interleave(repeats)
        feed = None if self.feed is None else self.feed.index_select(0, index)
        return self._replace(rnn=self.rnn.index_select(index), feed=feed, group=self.group * repeats)

    def _with_memory(self, rnn: State, feed: Optional[Tensor], rows: Tensor, group: int) -> "Seq2SeqState":
        """This state's memory rows ``rows`` (no copy when that is all of them in order)."""
        if rows.numel() == self.memory.shape[0] and torch.equal(rows, torch.arange(rows.numel(), device=rows.device)):
            return Seq2SeqState(rnn, feed, self.memory, self.keys, self.mask, group)

        def pick(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.index_select(0, rows)
        return Seq2SeqState(rnn, feed, pick(self.memory), pick(self.keys), pick(self.mask), group)  # type: ignore[arg-type]


class Seq2Seq(nn.Module):
    """``forward(src, src_lengths, tgt_in) -> (logits (B, T, V), attention weights (B, T, S) or None)``."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = self.config = config
        self._check(c)
        D = 2 if c.bidirectional else 1
        H, E = c.hidden_size, c.embedding_size
        self.src_embed = nn.Embedding(c.src_vocab_size, E, padding_idx=c.src_pad_id)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab_size, E,
                                                                                padding_idx=c.tgt_pad_id)
        self.encoder = Recurrent(c.cell, E, H // D, num_layers=c.num_layers, bidirectional=c.bidirectional,
                                 dropout=c.dropout if c.num_layers > 1 else 0.0, backend=c.backend)
        if c.bridge == "linear":  # one map per place of the state the cell table marks bridgeable
            spec = self.encoder.spec
            for name, size, free in zip(spec.state_names, self.encoder.state_sizes, spec.bridgeable):
                if free:
                    self.add_module(f"bridge_{name}", nn.Linear(D * size, D * size))  # bridge_h, bridge_c, ...
        self.attention = None
        if c.attention != "none":
            self.attention = Attention("bahdanau" if c.attention == "bahdanau" else c.score, H, H)
            self.combine = Linear(2 * H, H, bias=False)  # h~ = tanh(W_c [context; h])
        feeds = c.attention == "bahdanau" or c.input_feeding
        self.decoder = Recurrent(c.cell, E + (H if feeds else 0), H, num_layers=c.num_layers,
                                 dropout=c.dropout if c.num_layers > 1 else 0.0, backend=c.backend)
        self.drop = Dropout(c.dropout)
        self.out = Linear(H, c.tgt_vocab_size)
        self._check_bridge()
        if c.tie_embeddings:
            self.out.weight = self.tgt_embed.weight

    @staticmethod
    def _check(c: Seq2SeqConfig) -> None:
        if c.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {c.attention!r}")
        if c.attention == "luong" and c.score not in LUONG_SCORES:
            raise ValueError(f"luong attention score must be one of {LUONG_SCORES}, got {c.score!r}")
        if c.input_feeding and c.attention != "luong":
            raise ValueError("input_feeding needs attention='luong' (bahdanau feeds its context already)")
        if c.bridge not in BRIDGES:
            raise ValueError(f"bridge must be one of {BRIDGES}, got {c.bridge!r}")
        if c.bidirectional and c.hidden_size % 2:
            raise ValueError(f"a bidirectional encoder splits hidden_size between its directions: "
                             f"it must be even, got {c.hidden_size}")
        if min(c.src_vocab_size, c.tgt_vocab_size, c.embedding_size, c.hidden_size, c.num_layers) < 1:
            raise ValueError("vocabulary sizes, embedding_size, hidden_size and num_layers must be >= 1")
        if not 0.0 <= c.dropout < 1.0 or not 0.0 <= c.label_smoothing < 1.0 or not 0.0 <= c.teacher_forcing <= 1.0:
            raise ValueError("dropout and label_smoothing must be in [0, 1), teacher_forcing in [0, 1]")
        for name in ("tgt_pad_id", "tgt_bos_id", "tgt_eos_id"):
            if not 0 <= getattr(c, name) < c.tgt_vocab_size:
                raise ValueError(f"{name} must be a target id in [0, {c.tgt_vocab_size}), got {getattr(c, name)}")
        if c.tie_embeddings and c.embedding_size != c.hidden_size:
            raise ValueError(f"tie_embeddings needs embedding_size == hidden_size, got {c.embedding_size} "
                             f"and {c.hidden_size}")
        if c.share_embeddings and c.src_vocab_size != c.tgt_vocab_size:
            raise ValueError("share_embeddings needs one shared vocabulary (equal vocabulary sizes)")

    # ---------------------------------------------------------------- encoder

    def encode(self, src: Tensor, src_lengths: Optional[Tensor] = None) -> Seq2SeqState:
        """Read the source; the decoder's starting state."""
        lengths, mask = check_padded(src, src_lengths, None, what="source token")
        B, S = src.shape
        if mask is None:
            mask = torch.ones(B, S, dtype=torch.bool, device=src.device)
        memory, final = self.encoder(self.drop(self.src_embed(src)), lengths=lengths)  # (B, S, H), (L*D, B, H/D)
        rnn = self._bridge(final)
        keys = self.attention.keys(memory) if self.attention is not None else None
        feed = memory.new_zeros(B, self.config.hidden_size) if self.config.input_feeding else None
        return Seq2SeqState(rnn, feed, memory, keys, mask)

    def _check_bridge(self) -> None:
        """The encoder's final state, directions joined, must have the decoder's shape (``copy`` and ``linear``).

        Every tensor of a state is ``(L*D, B, K)``; a bidirectional encoder's two directions
        join side by side along ``K``, which fits the decoder of twice the width whenever a
        cell's state sizes grow linearly with its width (true of every cell in the table;
        for mLSTM, whose heads have gcd(width, 16) units, when 32 divides hidden_size).
        """
        c = self.config
        if c.bridge == "zero":
            return
        D = 2 if c.bidirectional else 1
        joined = tuple(None if k is None else D * k for k in self.encoder.state_sizes)
        if joined != self.decoder.state_sizes:
            raise ValueError(f"the {c.cell} encoder's final state (sizes {joined}, directions joined) does not fit "
                             f"the decoder's (sizes {self.decoder.state_sizes}); use bridge='zero' or another "
                             "hidden_size (mlstm, bidirectional: a multiple of 32)")

    def _bridge(self, final: State) -> State:
        """The decoder's starting state from the encoder's final one: ``copy`` (directions joined),
        ``linear`` (each bridgeable tensor through its own map, ``h`` through ``tanh``; the rest
        copied) or ``zero``."""
        c = self.config
        L, D = c.num_layers, 2 if c.bidirectional else 1
        if c.bridge == "zero":
            return self.decoder.zero_state(final.batch_size, final.h)

        def join(t: Tensor) -> Tensor:  # (L*D, B, K/D) -> (L, B, K): directions side by side
            return t.view(L, D, t.shape[1], t.shape[2]).permute(0, 2, 1, 3).reshape(L, t.shape[1], -1)

        state = final.map(join)
        if c.bridge == "linear":
            spec = self.decoder.spec
            state = State(*(
                t if t is None or not free else
                (torch.tanh(self.bridge_h(t)) if place == 0 else getattr(self, f"bridge_{name}")(t))
                for place, (t, name, free) in enumerate(zip(state, spec.state_names, spec.bridgeable))))
        return state

    # ---------------------------------------------------------------- decoder

    @property
    def fuses_decoder(self) -> bool:
        """True when no decoder step depends on an earlier step's attention (one fused call)."""
        return self.config.attention == "none" or (self.config.attention == "luong" and not self.config.input_feeding)

    def decode(self, tgt_in: Tensor, state: Seq2SeqState,
               teacher_forcing: float = 1.0) -> tuple[Tensor, Optional[Tensor], Seq2SeqState]:
        """Decoder inputs ``(B, T)`` from ``state`` -> logits ``(B, T, V)``, weights ``(B, T, S)`` or None,
        and the state after the last step.

        ``teacher_forcing < 1`` (training only): each row's input at step t > 0 is the
        gold token with that probability, else the model's own previous argmax.
        """
        if tgt_in.dim() != 2 or tgt_in.shape[1] < 1:
            raise ValueError(f"decoder inputs must be (B, T) ids with T >= 1; got {tuple(tgt_in.shape)}")
        if self.fuses_decoder and teacher_forcing >= 1.0:
            return self._decode_fused(tgt_in, state)
        logits, weights = [], []
        prev_logits = None
        for t, gold in enumerate(tgt_in.unbind(1)):  # gold (B,)
            token = gold
            if teacher_forcing < 1.0 and prev_logits is not None:
                own = prev_logits.argmax(-1)  # (B,)
                keep = torch.rand(gold.shape, device=gold.device) < teacher_forcing
                token = torch.where(keep, gold, own)
            feat, w, state = self._step_features(self.drop(self.tgt_embed(token)), state)  # (B, H)
            prev_logits = self.out(self.drop(feat))  # (B, V)
            logits.append(prev_logits)
            weights.append(w)
        stacked = None if weights[0] is None else torch.stack(weights, dim=1)  # (B, T, S)
        return torch.stack(logits, dim=1), stacked, state

    def _decode_fused(self, tgt_in: Tensor, state: Seq2SeqState) -> tuple[Tensor, Optional[Tensor], Seq2SeqState]:
        out, rnn = self.decoder(self.drop(self.tgt_embed(tgt_in)), state=state.rnn)  # (B, T, H)
        weights = None
        if self.attention is not None:
            context, weights = self._attend(out, state)  # (B, T, H), (B, T, S)
            out = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))  # (B, T, H)
        return self.out(self.drop(out)), weights, state._replace(rnn=rnn)

    def _attend(self, query: Tensor, state: Seq2SeqState) -> tuple[Tensor, Tensor]:
        """Attention of ``query`` ``(N, Q)`` or ``(N, T, Q)`` over each row's memory: context
        ``(N, [T,] H)``, weights ``(N, [T,] S)``.  Rows that share a memory row (``state.group``)
        are scored as that memory row's extra query steps, so the memory is never copied."""
        g = state.group
        if g == 1:
            return self.attention(query, state.keys, state.memory, state.mask)
        lead = query.shape[:-1]  # (N,) or (N, T)
        q = query.reshape(query.shape[0] // g, -1, query.shape[-1])  # (N/g, g*T, Q)
        context, weights = self.attention(q, state.keys, state.memory, state.mask)  # (N/g, g*T, H), (N/g, g*T, S)
        return context.reshape(*lead, context.shape[-1]), weights.reshape(*lead, weights.shape[-1])

    def _step_features(self, emb: Tensor, state: Seq2SeqState) -> tuple[Tensor, Optional[Tensor], Seq2SeqState]:
        """One decoder step from an embedded input ``(B, E)``: output features ``(B, H)``, weights ``(B, S)``."""
        weights = None
        if self.config.attention == "bahdanau":
            context, weights = self._attend(state.rnn.h[-1], state)  # query: top layer, t-1
            out, rnn = self.decoder(torch.cat([emb, context], dim=-1).unsqueeze(1), state=state.rnn)
            h = out[:, 0]  # (B, H)
            return torch.tanh(self.combine(torch.cat([context, h], dim=-1))), weights, state._replace(rnn=rnn)
        x = emb if state.feed is None else torch.cat([emb, state.feed], dim=-1)
        out, rnn = self.decoder(x.unsqueeze(1), state=state.rnn)
        h = out[:, 0]  # (B, H)
        if self.attention is None:
            return h, None, state._replace(rnn=rnn)
        context, weights = self._attend(h, state)
        feat = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))  # (B, H)
        return feat, weights, state._replace(rnn=rnn, feed=feat if state.feed is not None else None)

    # ---------------------------------------------------------------- task API

    def forward(self, src: Tensor, src_lengths: Optional[Tensor], tgt_in: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Teacher-forced: logits ``(B, T, V)`` and attention weights ``(B, T, S)`` (None without attention)."""
        logits, weights, _ = self.decode(tgt_in, self.encode(src, src_lengths))
        return logits, weights

    def loss(self, batch, carry=None) -> LossOutput:
        """Summed target-token NLL (label-smoothed when configured, in training)."""
        tf = self.config.teacher_forcing if self.training else 1.0
        logits, _, _ = self.decode(batch.decoder_inputs, self.encode(batch.inputs, batch.lengths), tf)
        smoothing = self.config.label_smoothing if self.training else 0.0
        total, count = sequence_nll(logits, batch.targets, mask=batch.mask, label_smoothing=smoothing)
        return LossOutput(total, count, None)

    def step(self, tokens: Tensor, state: Seq2SeqState) -> tuple[Tensor, Seq2SeqState]:
        """Decoding step protocol (``rnnkit.decoding``): ``tokens (B, t)`` -> ``(logits (B, t, V), state)``."""
        logits, _, state = self.decode(tokens, state)
        return logits, state

    def max_lengths(self, src_lengths: Tensor, ratio: float = 2.0, extra: int = 10) -> Tensor:
        """Per-sentence output limit ``ceil(ratio * source length) + extra``: ``(B,)`` long."""
        return (src_lengths.float() * ratio).ceil().long() + extra

    def start_tokens(self, batch_size: int, device: torch.device) -> Tensor:
        return torch.full((batch_size,), self.config.tgt_bos_id, dtype=torch.long, device=device)


__all__ = ["Seq2Seq", "Seq2SeqConfig", "Seq2SeqState", "ATTENTIONS", "LUONG_SCORES", "BRIDGES"]
