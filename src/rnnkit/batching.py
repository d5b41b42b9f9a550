"""Batches, built once: padded ids, lengths, masks, shifted targets.

Two batch sources, both deterministic functions of (seed, epoch, position) so a
run resumes exactly from a saved ``state_dict()``:

* ``StreamBatches`` — one long token stream cut into ``B`` contiguous lanes and
  read ``seq_len`` tokens at a time, for truncated backpropagation through time
  (the hidden state of lane ``b`` is carried from one batch to the next).
* ``SequenceBatches`` — separate sequences (names, sentences) grouped into
  batches of similar length (so pads cost little), shuffled per epoch.

pad/bos/eos arrive as ints; this module knows nothing of vocabularies or files.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor


@dataclass
class Batch:
    """One training or evaluation batch.

    ``inputs``/``targets`` are ``(B, T)`` long; ``lengths`` ``(B,)`` long (real
    tokens per row, ``None`` when no row is padded); ``mask`` ``(B, T)`` bool,
    True on real target positions; ``labels`` ``(B,)`` long or ``None``.
    """

    inputs: Tensor
    targets: Tensor
    lengths: Optional[Tensor] = None
    mask: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    chars: Optional[Tensor] = None      # (B, T, W) character ids of each token (taggers), 0-padded
    decoder_inputs: Optional[Tensor] = None  # (B, T) seq2seq: <bos> y, while targets hold y <eos>
    num_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.num_tokens = int(self.mask.sum()) if self.mask is not None else self.targets.numel()

    def to(self, device: torch.device | str) -> "Batch":
        """Every tensor on ``device`` (pinned and copied asynchronously on CUDA; a no-op where they are).

        ``lengths`` stays on the CPU, where packing reads it."""
        device = torch.device(device)
        cuda = device.type == "cuda"
        moved = copy.copy(self)
        for f in fields(self):
            value = getattr(self, f.name)
            if not f.init or f.name == "lengths" or not isinstance(value, Tensor):
                continue
            if cuda and value.device.type == "cpu":
                value = value.pin_memory()
            setattr(moved, f.name, value.to(device, non_blocking=cuda))
        return moved


class StreamBatches:
    """A token stream cut into ``batch_size`` contiguous lanes for TBPTT.

    ``ids`` ``(N,)`` becomes ``(B, N // B)``; batch ``i`` holds columns
    ``[i*L, (i+1)*L)`` as inputs and the same shifted by one as targets.  The
    last window of an epoch may be shorter than ``L``; only the final
    ``N mod B`` tokens (fewer than ``B``) are left out, and ``dropped_tokens``
    says how many.
    """

    def __init__(self, ids: Tensor, batch_size: int, seq_len: int) -> None:
        if ids.dim() != 1:
            raise ValueError(f"expected a 1-D stream of token ids, got shape {tuple(ids.shape)}")
        if batch_size < 1 or seq_len < 1:
            raise ValueError("batch_size and seq_len must be >= 1")
        self.batch_size, self.seq_len = batch_size, seq_len
        self.epoch, self.index = 0, 0
        self._ids = ids
        self._cut(0, 1)

    def shard(self, rank: int, world_size: int) -> None:
        """Keep this rank's lanes of a stream cut for ``world_size`` ranks (distributed training).

        The stream is re-cut into ``world_size * batch_size`` lanes, exactly as one
        process with that batch size would cut it, and rank ``r`` keeps the
        contiguous lanes ``[r * batch_size, (r + 1) * batch_size)``; ``batch_size``
        stays the lanes per rank.  Positions (``epoch``/``index``, ``state_dict``)
        are global, the same on every rank, so a carried state gathered from the
        ranks in rank order is the global ``(.., world_size * batch_size, H)`` one.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        if self.world_size != 1:
            raise ValueError("this batch source is sharded already")
        self._cut(rank, world_size)

    def _cut(self, rank: int, world_size: int) -> None:
        """Cut the stream into ``world_size * batch_size`` lanes and keep rank ``rank``'s ``batch_size``."""
        total = self.batch_size * world_size
        lane_len = self._ids.numel() // total
        if lane_len < 2:
            who = f"batch size {self.batch_size}" if world_size == 1 else \
                f"{world_size} processes of batch size {self.batch_size}"
            raise ValueError(f"a stream of {self._ids.numel()} tokens is too short for {who}: "
                             "each lane needs at least 2 tokens (an input and its target)")
        lanes = self._ids[: lane_len * total].view(total, lane_len)  # (W*B, N // (W*B))
        self.lanes = lanes[rank * self.batch_size: (rank + 1) * self.batch_size]  # (B, N // (W*B))
        self.dropped_tokens = self._ids.numel() - lane_len * total
        self.batches_per_epoch = -(-(lane_len - 1) // self.seq_len)
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, index: int) -> Batch:
        start = index * self.seq_len
        stop = min(start + self.seq_len, self.lanes.shape[1] - 1)
        return Batch(self.lanes[:, start:stop], self.lanes[:, start + 1: stop + 1])

    def __iter__(self) -> Iterator[Batch]:
        """Endless iterator; ``epoch``/``index`` advance as batches are taken."""
        while True:
            if self.index >= self.batches_per_epoch:
                self.epoch, self.index = self.epoch + 1, 0
            b = self.batch(self.index)
            self.index += 1
            yield b

    def epoch_batches(self) -> Iterator[Batch]:
        """One pass in order (evaluation)."""
        for i in range(self.batches_per_epoch):
            yield self.batch(i)

    @property
    def starts_epoch(self) -> bool:
        """True when the next batch begins an epoch (the carried state must reset)."""
        return self.index == 0 or self.index >= self.batches_per_epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into ``(B, T)`` long and return it with ``lengths (B,)``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out, lengths


def _padded(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Optional[Tensor], Tensor]:
    """``(ids (B, T), lengths (B,) or None when no row is padded, mask (B, T) of real positions)``."""
    ids, lengths = pad_sequences(seqs, pad_id)
    mask = torch.arange(ids.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    return ids, (lengths if bool((lengths != ids.shape[1]).any()) else None), mask


def lm_batch(seqs: Sequence[Sequence[int]], pad_id: int, bos_id: int, eos_id: int,
             labels: Optional[Sequence[int]] = None) -> Batch:
    """A language-model batch from whole sequences: ``<bos> x`` predicts ``x <eos>``."""
    inputs, lengths, mask = _padded([[bos_id, *s] for s in seqs], pad_id)
    targets, _ = pad_sequences([[*s, eos_id] for s in seqs], pad_id)
    lab = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
    return Batch(inputs, targets, lengths, mask, lab)


class SequenceBatches:
    """Length-bucketed, shuffled batches of separate sequences.

    Each epoch: a seeded permutation, cut into chunks of ``batch_size * pool``
    examples, each chunk sorted by length and cut into batches, and the batches
    shuffled — so a batch holds sequences of similar length (few pads) while the
    order stays random.  The order is a function of ``(seed, epoch)`` alone.

    ``sort_key(i)`` replaces the length of example ``i`` as what a chunk is sorted by:
    pairs sort by ``(source length, target length)``, so the decoder's pads shrink too
    while each batch keeps one or two source lengths.
    """

    def __init__(self, seqs: Sequence[Sequence[int]], batch_size: int, *, make_batch,
                 labels: Optional[Sequence[int]] = None, seed: int = 0, pool: int = 50,
                 shuffle: bool = True, sort_key: Optional[Callable[[int], Any]] = None) -> None:
        if not seqs:
            raise ValueError("no sequences to batch")
        self.seqs, self.labels = seqs, labels
        self.sort_key = sort_key or (lambda i: len(seqs[i]))
        self.batch_size, self.seed, self.pool, self.shuffle = batch_size, seed, pool, shuffle
        self.make_batch = make_batch  # (seqs, labels | None) -> Batch
        self.epoch, self.index = 0, 0
        self._order: Optional[list[list[int]]] = None
        self._order_epoch = -1
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> None:
        """Hand out only this rank's share of each global batch (distributed training).

        Every rank computes the same order of *global* batches of
        ``world_size * batch_size`` sequences — exactly the batches one process
        with that batch size would see — and rank ``r`` takes rows
        ``r, r + world_size, r + 2 * world_size, ...`` of each (a strided share:
        global batches are sorted by length, so every rank gets a similar mix of
        lengths).  ``batch_size`` stays the per-rank size; ``len`` counts global
        batches (optimizer steps) and ``state_dict`` is the global position.
        When a short last batch has fewer rows than ranks, a rank left without
        any builds a one-row stand-in with ``num_tokens = 0``, which the trainer
        weighs 0 (so all ranks still take part in the step).
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        if self.world_size != 1:
            raise ValueError("this batch source is sharded already")
        self.rank, self.world_size = rank, world_size
        self._order, self._order_epoch = None, -1

    def _epoch_order(self, epoch: int) -> list[list[int]]:
        n = len(self.seqs)
        size = self.batch_size * self.world_size  # the global batch
        if not self.shuffle:
            idx = sorted(range(n), key=self.sort_key)
            return [idx[i: i + size] for i in range(0, n, size)]
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=g).tolist()
        chunk = size * self.pool
        batches: list[list[int]] = []
        for c in range(0, n, chunk):
            part = sorted(perm[c: c + chunk], key=self.sort_key)
            batches += [part[i: i + size] for i in range(0, len(part), size)]
        order = torch.randperm(len(batches), generator=g).tolist()
        return [batches[i] for i in order]

    def __len__(self) -> int:
        return -(-len(self.seqs) // (self.batch_size * self.world_size))

    def _build(self, idx: list[int]) -> Batch:
        if self.world_size > 1:
            share = idx[self.rank:: self.world_size]
            if not share:  # a short last batch with fewer rows than ranks: a zero-weight stand-in
                batch = self._build_rows(idx[:1])
                batch.num_tokens = 0
                return batch
            idx = share
        return self._build_rows(idx)

    def _build_rows(self, idx: list[int]) -> Batch:
        labels = None if self.labels is None else [self.labels[i] for i in idx]
        return self.make_batch([self.seqs[i] for i in idx], labels)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            if self._order_epoch != self.epoch:
                self._order, self._order_epoch = self._epoch_order(self.epoch), self.epoch
            if self.index >= len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                continue
            idx = self._order[self.index]
            self.index += 1
            yield self._build(idx)

    def epoch_batches(self) -> Iterator[Batch]:
        for idx in self._epoch_order(0):
            yield self._build(idx)

    starts_epoch = True  # separate sequences never carry state across batches

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def classify_batch(seqs: Sequence[Sequence[int]], labels: Optional[Sequence[int]], pad_id: int) -> Batch:
    """A many-to-one batch: ``inputs (B, T)`` padded ids, ``lengths``, ``mask`` of real tokens,
    ``labels (B,)`` (``targets`` holds the labels too; -1 when unlabelled, for prediction)."""
    inputs, lengths, mask = _padded(seqs, pad_id)
    lab = torch.as_tensor(labels if labels is not None else [-1] * len(seqs), dtype=torch.long)
    batch = Batch(inputs, lab, lengths, mask, lab)
    batch.num_tokens = len(seqs)  # the loss is a mean over sequences
    return batch


def tag_batch(words: Sequence[Sequence[int]], tags: Optional[Sequence[Sequence[int]]], pad_id: int,
              chars: Optional[Sequence[Sequence[Sequence[int]]]] = None, char_pad_id: int = 0) -> Batch:
    """A many-to-many (aligned) batch: ``inputs (B, T)`` word ids, ``targets (B, T)`` tag ids
    (0 at pads, excluded by ``mask``; all 0 when ``tags`` is None), ``chars (B, T, W)``."""
    inputs, lengths, mask = _padded(words, pad_id)
    targets = pad_sequences(tags, 0)[0] if tags is not None else torch.zeros_like(inputs)
    char_t = None
    if chars is not None:
        width = max(len(w) for sent in chars for w in sent)
        char_t = torch.full((len(words), inputs.shape[1], width), char_pad_id, dtype=torch.long)
        for b, sent in enumerate(chars):
            for t, w in enumerate(sent):
                char_t[b, t, : len(w)] = torch.as_tensor(w, dtype=torch.long)
    return Batch(inputs, targets, lengths, mask, None, char_t)


def seq2seq_batch(src: Sequence[Sequence[int]], tgt: Optional[Sequence[Sequence[int]]], src_pad_id: int,
                  tgt_pad_id: int, bos_id: int, eos_id: int) -> Batch:
    """An encoder-decoder batch: ``inputs (B, S)`` source ids with ``lengths``; ``decoder_inputs``
    ``<bos> y`` and ``targets`` ``y <eos>`` ``(B, T)`` with ``mask`` on real target positions
    (a one-column ``<bos>``/``<eos>`` target when ``tgt`` is None, for decoding)."""
    inputs, lengths, _ = _padded(src, src_pad_id)
    tgt = tgt if tgt is not None else [[] for _ in src]
    dec_in, _, mask = _padded([[bos_id, *y] for y in tgt], tgt_pad_id)
    targets, _ = pad_sequences([[*y, eos_id] for y in tgt], tgt_pad_id)
    return Batch(inputs, targets, lengths, mask, decoder_inputs=dec_in)
