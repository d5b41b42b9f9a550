"""Write a seeded sample of a CMUdict run's own training words in the test file's format.

Scoring a run on words it trained on tells whether it has fitted its training set (docs/results.md):

    python scripts/cmudict_train_sample.py runs/cmudict-std-a --words 3000 --out train-sample.test
    rnnkit evaluate runs/cmudict-std-a --data train-sample.test --json
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
    ap.add_argument("--words", type=int, default=3000, help="how many training words [3000]")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed [0]")
    ap.add_argument("--out", type=Path, required=True, help="the file to write")
    args = ap.parse_args()
    data = Seq2SeqDataConfig(**json.loads((args.run / "config.json").read_text())["data"])
    train, _, _ = read_splits(data)
    words = sorted(set(train.src))
    random.Random(args.seed).shuffle(words)
    pick = set(words[:args.words])
    lines = [f"{w.upper()}  {p}\n" for w, p in zip(train.src, train.tgt) if w in pick]  # every pronunciation
    args.out.write_text("".join(lines), encoding="utf-8")
    print(f"{len(pick):,} training words, {len(lines):,} pronunciations -> {args.out}")


if __name__ == "__main__":
    main()
