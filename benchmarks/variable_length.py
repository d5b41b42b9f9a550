"""Variable-length training throughput: rnnkit's bucketed batches vs padding vs packing.

Real sentence lengths, one BiLSTM encoder + classifier head, one process,
contestants interleaved round by round; real (non-pad) tokens per second.  Only
the length distribution matters here, so the three datasets share the model:

* ``mr``: sentence polarity (word tokens; its own positive/negative labels);
* ``ud``: UD English-EWT train sentences (their tokens; labels random);
* ``multi30k``: Multi30k train, German side (word tokens; labels random).

Contestants:

* rnnkit: length-bucketed batches (``SequenceBatches``) and ``Classifier``, which
  runs one exact fused call per distinct length;
* padded: shuffled batches padded to their longest sentence, ``torch.nn.LSTM``
  over the pads (what most hand-written loops do; pads are computed);
* packed: the same shuffled batches through ``pack_padded_sequence`` (exact).

    python benchmarks/variable_length.py [--datasets mr,ud,multi30k] [--data-root DIR] [--quick]
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from _common import parser, write_report
from rnnkit import datasets
from rnnkit.batching import SequenceBatches, classify_batch, pad_sequences
from rnnkit.data import read_classification, read_conllu
from rnnkit.models import Classifier, ClassifierConfig
from rnnkit.tokenizers import make_tokenizer
from rnnkit.vocab import Vocab

DATASETS = ("mr", "ud", "multi30k")
CATALOG_NAME = {"mr": "mr_polarity", "ud": "ud_english_ewt", "multi30k": "multi30k"}  # rnnkit.datasets names


def load(name: str, root: Path) -> tuple[list[list[str]], list[int]]:
    """Token lists and integer labels of one dataset's training sentences."""
    word = make_tokenizer("word")
    if name == "mr":
        data = read_classification(root / "mr_polarity", encoding="latin-1")
        names = sorted({ex.label for ex in data.examples})
        return ([word.tokenize(ex.text) or ["<unk>"] for ex in data.examples],
                [names.index(ex.label) for ex in data.examples])
    if name == "ud":
        texts = [s.tokens for s in read_conllu(root / "ud_english_ewt" / "en_ewt-ud-train.conllu")]
    else:
        lines = (root / "multi30k" / "train.de").read_text(encoding="utf-8").splitlines()
        texts = [word.tokenize(line) or ["<unk>"] for line in lines]
    g = torch.Generator().manual_seed(1)
    return texts, torch.randint(0, 2, (len(texts),), generator=g).tolist()


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


def measure(texts: list[list[str]], labels: list[int], args) -> dict:
    """Tokens/s of the three contestants on one dataset's sentences."""
    if args.quick:
        keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:1280].tolist()
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    vocab = Vocab.build(texts, specials=["<pad>"], unk="<unk>")
    seqs = [vocab.encode(t) for t in texts]
    real_tokens = sum(len(s) for s in seqs)
    B = args.batch_size

    bucketed = SequenceBatches(seqs, B, labels=labels, seed=0,
                               make_batch=lambda s, l: classify_batch(s, l, vocab.pad_id))
    rnnkit_batches = [(b.inputs, b.lengths, b.labels) for b in bucketed.epoch_batches()]
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
    for _ in range(2 if args.quick else args.rounds):
        for k, (m, batches, fwd) in contestants.items():
            times[k].append(train_pass(m, opts[id(m)], batches, fwd))
    tps = {k: real_tokens / statistics.median(v) for k, v in times.items()}
    best_baseline = max(v for k, v in tps.items() if not k.startswith("rnnkit"))
    return {"sentences": len(seqs), "real_tokens": real_tokens,
            "pad_fraction": {k: round(v, 3) for k, v in pads.items()},
            "real_tokens_per_s": {k: round(v) for k, v in tps.items()},
            "rnnkit_vs_best_baseline": round(tps["rnnkit (bucketed, exact)"] / best_baseline, 3)}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--data-root", type=Path, default=None,
                    help="folder holding the datasets by name [rnnkit's data cache: $RNNKIT_DATA or ~/.cache/rnnkit/data]")
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {DATASETS}")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        ap.error(f"unknown dataset(s) {unknown}; choose from {DATASETS}")
    results = {}
    for name in names:
        datasets.get(CATALOG_NAME[name], args.data_root)  # downloads what is missing, checks sha256
        r = results[name] = measure(*load(name, datasets.data_root(args.data_root)), args)
        print(f"{name}: {r['sentences']:,} sentences, {r['real_tokens']:,} real tokens; pads per real token: "
              f"bucketed {r['pad_fraction']['bucketed']:.1%}, shuffled {r['pad_fraction']['shuffled']:.1%}")
        for k, v in r["real_tokens_per_s"].items():
            print(f"  {k:40} {v:>10,} real tokens/s")
        print(f"  rnnkit vs the better baseline: {r['rnnkit_vs_best_baseline']:.2f}x")
    out = write_report("variable_length", args, data_root=str(datasets.data_root(args.data_root)), rounds=args.rounds,
                       shape=dict(batch=args.batch_size, embed=args.embed, hidden=args.hidden, layers=1,
                                  bidirectional=True),
                       datasets=results)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
