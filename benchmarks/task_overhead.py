"""Task-model training speed: each rnnkit task model through the Trainer vs a bare PyTorch loop of the same shapes.

``lm_overhead.py`` does this for the language model; here the other three task models:

* classifier: embedding -> 2-layer BiLSTM -> final states of both directions -> MLP (one hidden ReLU layer);
* tagger: embedding -> 2-layer BiLSTM -> linear per token, masked per-token softmax loss (no CRF:
  the CRF has no ``torch.nn`` counterpart to compare with);
* seq2seq: embedding -> 2-layer BiLSTM encoder (H/2 per direction, final states copied into the
  decoder) -> 2-layer LSTM decoder, Luong ``general`` attention without input feeding, teacher forcing.

rnnkit: the task model and its own ``loss`` trained through ``Trainer`` (Adam, clip norm 5), as
``rnnkit train classify|tag|seq2seq`` runs it, without evaluation or files.  Bare: a hand-written
``torch.nn`` module of the same shapes and parameter count (asserted), ``torch.nn.LSTM`` inside,
the same computation (the same masks; a masked loss), the same Adam, clipping and batches.

Every batch has equal lengths (rnnkit's own ``classify_batch`` / ``tag_batch`` / ``seq2seq_batch``,
built once before timing and shared), so the ratio is the overhead of the model and the trainer,
not of batching.  Dropout is 0 on both sides.  A round is a fresh short training run for both
contestants: rnnkit builds its ``Trainer`` (and so its Adam) per ``fit``, so the bare loop builds its
Adam per round too.  Contestants interleaved round by round; medians.  Tokens are the tokens the
model reads: ``B * T`` for the classifier and tagger, ``B * (S + T)`` (source + decoder steps) for seq2seq.

    python benchmarks/task_overhead.py            # batch 64, 40 tokens (seq2seq 24 + 24), hidden 256, 10k words
    python benchmarks/task_overhead.py --quick    # small shapes, under a minute

Writes benchmarks/results/task_overhead[-quick].json and prints a table.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.batching import classify_batch, seq2seq_batch, tag_batch
from rnnkit.models import Classifier, ClassifierConfig, Seq2Seq, Seq2SeqConfig, Tagger, TaggerConfig
from rnnkit.trainer import TrainConfig, Trainer
from _common import median_times, parser, write_report

PAD, BOS, EOS = 0, 1, 2  # special ids; random tokens are drawn from [4, vocab)
LR, CLIP = 2e-3, 5.0
TARGET = 0.95  # the goal: rnnkit tokens/s over bare tokens/s


# ---------------------------------------------------------------- bare models (what a user writes by hand)

class BareClassifier(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, mlp: int, classes: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * hidden, mlp), nn.ReLU(), nn.Linear(mlp, classes))

    def loss(self, b):
        _, (h, _) = self.rnn(self.emb(b.inputs))  # h (L*2, B, H)
        logits = self.head(torch.cat([h[-2], h[-1]], dim=1))  # top layer: [forward; backward] (B, C)
        return F.cross_entropy(logits, b.labels)


class BareTagger(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, tags: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, tags)

    def loss(self, b):
        y, _ = self.rnn(self.emb(b.inputs))  # (B, T, 2H)
        logits = self.out(y)  # (B, T, K)
        targets = b.targets.masked_fill(~b.mask, -100)  # pads (none here) are skipped
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class BareSeq2Seq(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.src_emb = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.encoder = nn.LSTM(embed, hidden // 2, layers, batch_first=True, bidirectional=True)
        self.key = nn.Linear(hidden, hidden, bias=False)  # Luong "general": score = h . (W m)
        self.combine = nn.Linear(2 * hidden, hidden, bias=False)
        self.decoder = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)
        self.layers = layers

    def loss(self, b):
        memory, (h, c) = self.encoder(self.src_emb(b.inputs))  # (B, S, H), (L*2, B, H/2)
        B = memory.shape[0]

        def join(t):  # (L*2, B, H/2) -> (L, B, H): both directions' final states side by side
            return t.view(self.layers, 2, B, -1).permute(0, 2, 1, 3).reshape(self.layers, B, -1)

        out, _ = self.decoder(self.tgt_emb(b.decoder_inputs), (join(h), join(c)))  # (B, T, H)
        src_mask = b.inputs != PAD  # (B, S)
        scores = torch.bmm(out, self.key(memory).transpose(1, 2)).masked_fill(~src_mask.unsqueeze(1), float("-inf"))
        context = torch.bmm(torch.softmax(scores, dim=-1), memory)  # (B, T, H)
        logits = self.out(torch.tanh(self.combine(torch.cat([context, out], dim=-1))))  # (B, T, V)
        targets = b.targets.masked_fill(~b.mask, -100)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# ---------------------------------------------------------------- the two training loops

class Cycle:
    """The trainer's batch-source protocol over a fixed list of batches (built once, outside the timing)."""

    starts_epoch = True  # separate sequences: no state is carried between batches

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        while True:
            yield from self.batches

    def state_dict(self) -> dict:
        return {}


def rnnkit_run(model: nn.Module, batches: list):
    """One short training run through rnnkit's Trainer (its Adam, its clipping), no evaluation, no files."""
    def go():
        cfg = TrainConfig(max_steps=len(batches), lr=LR, clip_norm=CLIP, eval_every=10 ** 9, device="cpu")
        Trainer(model, cfg, Cycle(batches), progress=False, log=lambda s: None).fit()
    return go


def bare_run(model: nn.Module, batches: list):
    """The same run written by hand: Adam (torch's fused kernel, as the trainer uses), mean loss, clipping."""
    def go():
        opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
        model.train()
        for b in batches:
            loss = model.loss(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
    return go


# ---------------------------------------------------------------- the three tasks

def _ids(g: torch.Generator, vocab: int, batch: int, length: int) -> list[list[int]]:
    return torch.randint(4, vocab, (batch, length), generator=g).tolist()


def build(task: str, vocab: int, embed: int, hidden: int, layers: int, batch: int, length: int,
          tgt_length: int, steps: int, classes: int, tags: int):
    """``(rnnkit model, bare model, batches, tokens read per batch)`` for one task."""
    g = torch.Generator().manual_seed(1)
    if task == "classify":
        ours = Classifier(ClassifierConfig(vocab_size=vocab, num_classes=classes, embedding_size=embed,
                                           hidden_size=hidden, num_layers=layers, bidirectional=True,
                                           pooling="last", mlp_hidden=hidden, pad_id=PAD))
        bare = BareClassifier(vocab, embed, hidden, layers, hidden, classes)
        batches = [classify_batch(_ids(g, vocab, batch, length),
                                  torch.randint(0, classes, (batch,), generator=g).tolist(), PAD)
                   for _ in range(steps)]
        per_batch = batch * length
    elif task == "tag":
        ours = Tagger(TaggerConfig(vocab_size=vocab, num_tags=tags, embedding_size=embed, hidden_size=hidden,
                                   num_layers=layers, bidirectional=True, crf=False, pad_id=PAD))
        bare = BareTagger(vocab, embed, hidden, layers, tags)
        batches = [tag_batch(_ids(g, vocab, batch, length),
                             torch.randint(0, tags, (batch, length), generator=g).tolist(), PAD)
                   for _ in range(steps)]
        per_batch = batch * length
    else:  # seq2seq: targets of tgt_length - 1 tokens make tgt_length decoder steps (<bos> y / y <eos>)
        ours = Seq2Seq(Seq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, src_pad_id=PAD, tgt_pad_id=PAD,
                                     tgt_bos_id=BOS, tgt_eos_id=EOS, cell="lstm", embedding_size=embed,
                                     hidden_size=hidden, num_layers=layers, bidirectional=True, dropout=0.0,
                                     attention="luong", score="general", bridge="copy"))
        bare = BareSeq2Seq(vocab, embed, hidden, layers)
        batches = [seq2seq_batch(_ids(g, vocab, batch, length), _ids(g, vocab, batch, tgt_length - 1),
                                 PAD, PAD, BOS, EOS) for _ in range(steps)]
        assert batches[0].decoder_inputs.shape == (batch, tgt_length)
        per_batch = batch * (length + tgt_length)
    n_ours, n_bare = (sum(p.numel() for p in m.parameters()) for m in (ours, bare))
    assert n_ours == n_bare, f"{task}: rnnkit has {n_ours:,} parameters, the bare model {n_bare:,}"
    same_computation(ours, bare, batches[0])
    return ours, bare, batches, per_batch


def same_computation(ours: nn.Module, bare: nn.Module, batch) -> None:
    """Give the bare model rnnkit's weights (both list their parameters in the same order and shapes)
    and check that it computes the same loss: the two contestants then train the same numbers."""
    with torch.no_grad():
        for (name, p), q in zip(ours.named_parameters(), bare.parameters(), strict=True):
            assert p.shape == q.shape, f"{name}: rnnkit {tuple(p.shape)}, bare {tuple(q.shape)}"
            q.copy_(p)
        out = ours.loss(batch)
        theirs = bare.loss(batch)
    torch.testing.assert_close(out.loss / out.num_tokens, theirs, rtol=1e-5, atol=1e-6)


def run(task: str, rounds: int, **shape) -> dict:
    torch.manual_seed(0)
    ours, bare, batches, per_batch = build(task, **shape)
    med = median_times({"bare torch.nn": bare_run(bare, batches), "rnnkit": rnnkit_run(ours, batches)}, rounds)
    tokens = per_batch * len(batches)
    base = med["bare torch.nn"]
    return {"task": task, "shape": shape, "parameters": sum(p.numel() for p in ours.parameters()),
            "tokens_per_s": {k: round(tokens / v) for k, v in med.items()},
            "ratio_vs_bare": round(base / med["rnnkit"], 3), "target": TARGET, "rounds": rounds,
            "steps_per_round": len(batches)}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--tasks", nargs="+", choices=["classify", "tag", "seq2seq"],
                    default=["classify", "tag", "seq2seq"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        shape = dict(vocab=2000, embed=64, hidden=128, layers=2, batch=32, steps=8, classes=5, tags=17)
        lengths, rounds = {"classify": (20, 0), "tag": (20, 0), "seq2seq": (12, 12)}, 9
    else:
        shape = dict(vocab=10_000, embed=128, hidden=256, layers=2, batch=64, steps=8, classes=5, tags=17)
        lengths, rounds = {"classify": (40, 0), "tag": (40, 0), "seq2seq": (24, 24)}, 5
    results = [run(t, rounds, **shape, length=lengths[t][0], tgt_length=lengths[t][1]) for t in args.tasks]
    out = write_report("task_overhead", args, results=results)
    print(f"{'task':9} {'shape':34} {'params':>10} {'bare tok/s':>11} {'rnnkit tok/s':>13} {'rnnkit/bare':>12}"
          f"  target {TARGET}")
    for r in results:
        s = r["shape"]
        steps = f"T{s['length']}" + (f"+{s['tgt_length']}" if r["task"] == "seq2seq" else "")
        desc = f"B{s['batch']} {steps} H{s['hidden']} L{s['layers']} E{s['embed']} V{s['vocab']}"
        tps = r["tokens_per_s"]
        print(f"{r['task']:9} {desc:34} {r['parameters']:>10,} {tps['bare torch.nn']:>11,} "
              f"{tps['rnnkit']:>13,} {r['ratio_vs_bare']:>12.3f}  {'met' if r['ratio_vs_bare'] >= TARGET else 'below'}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
