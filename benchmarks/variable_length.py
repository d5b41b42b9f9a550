"""Variable-length training throughput: rnnkit's bucketed batches vs padding vs packing.

Real sentence lengths (sentence polarity, word tokens), one BiLSTM classifier
shape, one process, contestants interleaved; real (non-pad) tokens per second.

* rnnkit: length-bucketed batches (``SequenceBatches``) and ``Classifier``, which
  runs one exact fused call per distinct length;
* padded: shuffled batches padded to their longest sentence, ``torch.nn.LSTM``
  over the pads (what most hand-written loops do; pads are computed);
* packed: the same shuffled batches through ``pack_padded_sequence`` (exact).

    python benchmarks/variable_length.py [--data ../shared/data/mr_polarity] [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit.batching import SequenceBatches, classify_batch, pad_sequences
from rnnkit.data import read_classification
from rnnkit.models import Classifier, ClassifierConfig
from rnnkit.tokenizers import make_tokenizer
from rnnkit.vocab import Vocab


class Bare(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, embed, padding_idx=0)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, classes)

    def forward(self, x, lengths=None):
        e = self.emb(x)
        if lengths is None:
            _, (h, _) = self.rnn(e)  # pads are read like tokens
        else:
            _, (h, _) = self.rnn(pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False))
        return self.out(torch.cat([h[-2], h[-1]], 1))


def train_pass(model, opt, batches, forward) -> float:
    t = time.perf_counter()
    for inputs, lengths, labels in batches:
        loss = nn.functional.cross_entropy(forward(model, inputs, lengths), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/mr_polarity"))
    ap.add_argument("--quick", action="store_true", help="1,280 sentences, 2 rounds")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = read_classification(args.data, encoding="latin-1")
    tok = make_tokenizer("word")
    texts = [tok.tokenize(ex.text) or ["<unk>"] for ex in data.examples]
    labels_all = sorted({ex.label for ex in data.examples})
    labels = [labels_all.index(ex.label) for ex in data.examples]
    if args.quick:
        g = torch.Generator().manual_seed(0)
        keep = torch.randperm(len(texts), generator=g)[:1280].tolist()
        texts, labels, args.rounds = [texts[i] for i in keep], [labels[i] for i in keep], 2
    vocab = Vocab.build(texts, specials=["<pad>"], unk="<unk>")
    seqs = [vocab.encode(t) for t in texts]
    real_tokens = sum(len(s) for s in seqs)
    B = args.batch_size

    bucketed = SequenceBatches(seqs, B, labels=labels, seed=0,
                               make_batch=lambda s, l: classify_batch(s, l, vocab.pad_id))
    rnnkit_batches = [(b.inputs, b.lengths, b.labels) for b in
                      bucketed.epoch_batches()]
    perm = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = []
    for i in range(0, len(perm), B):
        idx = perm[i: i + B]
        x, lengths = pad_sequences([seqs[j] for j in idx], vocab.pad_id)
        shuffled.append((x, lengths, torch.tensor([labels[j] for j in idx])))
    pads = {"bucketed": sum(b[0].numel() for b in rnnkit_batches) / real_tokens - 1,
            "shuffled": sum(b[0].numel() for b in shuffled) / real_tokens - 1}

    torch.manual_seed(0)
    ours = Classifier(ClassifierConfig(vocab_size=len(vocab), num_classes=2, embedding_size=args.embed,
                                       hidden_size=args.hidden, bidirectional=True, pad_id=vocab.pad_id))
    bare = Bare(len(vocab), args.embed, args.hidden, 2)
    contestants = {
        "rnnkit (bucketed, exact)": (ours, rnnkit_batches, lambda m, x, l: m(x, lengths=l)),
        "padded shuffled batch (pads computed)": (bare, shuffled, lambda m, x, l: m(x)),
        "packed shuffled batch (exact)": (bare, shuffled, lambda m, x, l: m(x, l)),
    }
    opts = {id(m): torch.optim.Adam(m.parameters(), 1e-3) for m in (ours, bare)}
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for k, (m, batches, fwd) in contestants.items():  # warm-up on a few batches
        train_pass(m, opts[id(m)], batches[:5], fwd)
    for _ in range(args.rounds):
        for k, (m, batches, fwd) in contestants.items():
            times[k].append(train_pass(m, opts[id(m)], batches, fwd))
    tps = {k: real_tokens / statistics.median(v) for k, v in times.items()}
    best_baseline = max(v for k, v in tps.items() if not k.startswith("rnnkit"))
    report = {"benchmark": "variable_length", "data": args.data, "sentences": len(seqs),
              "real_tokens": real_tokens, "pad_fraction": {k: round(v, 3) for k, v in pads.items()},
              "shape": dict(batch=B, embed=args.embed, hidden=args.hidden, layers=1, bidirectional=True),
              "real_tokens_per_s": {k: round(v) for k, v in tps.items()},
              "rnnkit_vs_best_baseline": round(tps["rnnkit (bucketed, exact)"] / best_baseline, 3),
              "rounds": args.rounds, "torch": torch.__version__, "threads": args.threads}
    out = args.out or Path(__file__).parent / "results" / f"variable_length{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(seqs)} sentences, {real_tokens:,} real tokens; pads per real token: "
          f"bucketed {pads['bucketed']:.1%}, shuffled {pads['shuffled']:.1%}")
    for k, v in tps.items():
        print(f"{k:40} {v:>10,.0f} real tokens/s")
    print(f"rnnkit vs the better baseline: {report['rnnkit_vs_best_baseline']:.2f}x  (written to {out})")


if __name__ == "__main__":
    main()
