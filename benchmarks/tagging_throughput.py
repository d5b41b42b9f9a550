"""Tagging throughput: rnnkit's bucketed batches vs padding vs packing, training and inference.

Real sentence lengths (UD English EWT training file), one BiLSTM tagger shape
(word embeddings, no character encoder, softmax), one process, contestants
interleaved; real (non-pad) tokens per second.

* rnnkit: length-bucketed batches and ``Tagger`` (one exact fused call per length);
* padded: shuffled batches padded to their longest sentence through ``torch.nn.LSTM``;
* packed: the same shuffled batches through ``pack_padded_sequence``.

    python benchmarks/tagging_throughput.py [--data en_ewt-ud-train.conllu] [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit import datasets
from rnnkit.batching import SequenceBatches, pad_sequences, tag_batch
from rnnkit.data import read_conllu
from rnnkit.models import Tagger, TaggerConfig
from rnnkit.vocab import Vocab
from _common import environment


class Bare(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, tags: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, embed, padding_idx=0)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, tags)

    def forward(self, x, lengths=None):
        e = self.emb(x)
        if lengths is None:
            y, _ = self.rnn(e)
        else:
            packed = pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
            y, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.out(y)


def run_pass(batches, step) -> float:
    t = time.perf_counter()
    for b in batches:
        step(*b)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None,
                    help="a CoNLL-U file [UD English-EWT train from rnnkit's data cache, fetched if missing]")
    ap.add_argument("--quick", action="store_true", help="1,000 sentences, 2 rounds")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.data is None:  # UD English-EWT train from rnnkit's data cache (downloaded once, sha256 checked)
        args.data = str(datasets.get("ud_english_ewt") / "en_ewt-ud-train.conllu")
    sents = read_conllu(args.data)
    if args.quick:
        sents, args.rounds = sents[:1000], 2
    words = Vocab.build([s.tokens for s in sents], specials=["<pad>"], unk="<unk>")
    tags = Vocab.build([s.tags for s in sents])
    W = [words.encode(s.tokens) for s in sents]
    G = [tags.encode(s.tags) for s in sents]
    real = sum(len(w) for w in W)
    B = args.batch_size
    sb = SequenceBatches(W, B, labels=list(range(len(W))), seed=0,
                         make_batch=lambda ws, rows: tag_batch(ws, [G[r] for r in rows], 0))
    bucketed = list(sb.epoch_batches())  # epoch 0's bucketed, shuffled order
    perm = torch.randperm(len(W), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = []
    for i in range(0, len(perm), B):
        idx = perm[i: i + B]
        x, lengths = pad_sequences([W[j] for j in idx], 0)
        y, _ = pad_sequences([G[j] for j in idx], -100)
        shuffled.append((x, lengths, y))

    torch.manual_seed(0)
    ours = Tagger(TaggerConfig(vocab_size=len(words), num_tags=len(tags), embedding_size=args.embed,
                               hidden_size=args.hidden, bidirectional=True))
    bare = Bare(len(words), args.embed, args.hidden, len(tags))
    opt_o, opt_b = torch.optim.Adam(ours.parameters(), 1e-3), torch.optim.Adam(bare.parameters(), 1e-3)

    def train_ours(b):
        out = ours.loss(b)
        opt_o.zero_grad(set_to_none=True)
        (out.loss / out.num_tokens).backward()
        opt_o.step()

    def train_bare(x, lengths, y, packed):
        logits = bare(x, lengths if packed else None)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        opt_b.step()

    def infer_ours(b):
        with torch.inference_mode():
            ours.predict(b.inputs, lengths=b.lengths, mask=b.mask)

    def infer_bare(x, lengths, y, packed):
        with torch.inference_mode():
            bare(x, lengths if packed else None).argmax(-1)

    contestants = {
        "train: rnnkit (bucketed, exact)": ([(b,) for b in bucketed], train_ours),
        "train: padded shuffled batch": ([(*b, False) for b in shuffled], train_bare),
        "train: packed shuffled batch": ([(*b, True) for b in shuffled], train_bare),
        "infer: rnnkit (bucketed, exact)": ([(b,) for b in bucketed], infer_ours),
        "infer: padded shuffled batch": ([(*b, False) for b in shuffled], infer_bare),
        "infer: packed shuffled batch": ([(*b, True) for b in shuffled], infer_bare),
    }
    for batches, step in contestants.values():
        run_pass(batches[:5], step)
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(args.rounds):
        for k, (batches, step) in contestants.items():
            times[k].append(run_pass(batches, step))
    tps = {k: real / statistics.median(v) for k, v in times.items()}
    ratios = {}
    for phase in ("train", "infer"):
        best = max(v for k, v in tps.items() if k.startswith(phase) and "rnnkit" not in k)
        ratios[phase] = round(tps[f"{phase}: rnnkit (bucketed, exact)"] / best, 3)
    report = {"benchmark": "tagging_throughput", "data": args.data, "sentences": len(W), "real_tokens": real,
              "pads_per_real_token": {"bucketed": round(sum(b.inputs.numel() for b in bucketed) / real - 1, 3),
                                      "shuffled": round(sum(b[0].numel() for b in shuffled) / real - 1, 3)},
              "shape": dict(batch=B, embed=args.embed, hidden=args.hidden, bidirectional=True),
              "real_tokens_per_s": {k: round(v) for k, v in tps.items()},
              "rnnkit_vs_best_baseline": ratios, "rounds": args.rounds, "torch": torch.__version__,
              "threads": args.threads, "environment": environment()}
    out = args.out or Path(__file__).parent / "results" / f"tagging_throughput{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(W)} sentences, {real:,} real tokens; pads per real token: {report['pads_per_real_token']}")
    for k, v in tps.items():
        print(f"{k:36} {v:>10,.0f} real tokens/s")
    print(f"rnnkit vs the better baseline: train {ratios['train']:.2f}x, inference {ratios['infer']:.2f}x "
          f"(written to {out})")


if __name__ == "__main__":
    main()
