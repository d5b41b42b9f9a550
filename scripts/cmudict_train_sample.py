"""Write a seeded sample of a CMUdict run's own training (or validation) words in the test file's format.

Scoring a run on words it trained on tells whether it has fitted its training set; its validation
words, every one of them, are where decoding settings are tuned without touching the test set
(docs/results.md):

    python scripts/cmudict_train_sample.py runs/cmudict-std-a --words 3000 --out train-sample.test
    rnnkit evaluate runs/cmudict-std-a --data train-sample.test --json
    python scripts/cmudict_train_sample.py runs/cmudict-std-a --split valid --words 0 --out valid.test
    rnnkit evaluate runs/cmudict-std-a --data valid.test --length-penalty 0.5 --json
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rnnkit.tasks.seq2seq import Seq2SeqDataConfig, read_splits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a CMUdict run folder (its config.json names the data and split)")
    ap.add_argument("--split", choices=("train", "valid"), default="train", help="which of the run's splits [train]")
    ap.add_argument("--words", type=int, default=3000, help="how many words; 0: all of the split [3000]")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed [0]")
    ap.add_argument("--out", type=Path, required=True, help="the file to write")
    args = ap.parse_args()
    data = Seq2SeqDataConfig(**json.loads((args.run / "config.json").read_text())["data"])
    if args.words < 0:
        ap.error(f"--words must be 0 (all) or more, got {args.words}")
    train, valid, _ = read_splits(data)
    split = train if args.split == "train" else valid
    words = sorted(set(split.src))
    random.Random(args.seed).shuffle(words)
    pick = set(words[:args.words or None])
    lines, done = [], set()
    for w, refs in zip(split.src, split.refs):  # every pronunciation of a word is among its refs
        if w in pick and w not in done:
            done.add(w)
            lines += [f"{w.upper()}  {p}\n" for p in refs]
    args.out.write_text("".join(lines), encoding="utf-8")
    print(f"{len(pick):,} {'training' if args.split == 'train' else 'validation'} words, "
          f"{len(lines):,} pronunciations -> {args.out}")


if __name__ == "__main__":
    main()
