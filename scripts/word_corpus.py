"""A word-level corpus in three files, the shape of the word-level LM benchmarks, from a plain text.

Lines are lower-cased and split into words and punctuation marks (``"thou'rt"`` stays one word,
``"done."`` becomes ``done .``), blank lines are dropped, and the lines are cut, in order, into
train/valid/test (80/10/10 by default).  Words seen fewer than ``--min-count`` times in the
training part become ``<unk>`` in all three, as the pre-processed corpora have it.  Default input:
the bundled Tiny Shakespeare.

    python scripts/word_corpus.py --out data/shakespeare-words
    rnnkit train lm --data data/shakespeare-words/train.txt --valid data/shakespeare-words/valid.txt \
        --test data/shakespeare-words/test.txt --tokenizer word ...
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from rnnkit.data import bundled_path, read_text, split_lines

WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]")


def word_corpus(text: str, fractions=(0.8, 0.1, 0.1), min_count: int = 3) -> tuple[dict[str, str], dict[str, int]]:
    """The three texts (``{"train": ..., "valid": ..., "test": ...}``) and counts of what was done."""
    lines = [" ".join(WORD.findall(line.lower())) for line in text.splitlines()]
    kept = [line for line in lines if line]
    parts = dict(zip(("train", "valid", "test"), split_lines("\n".join(kept) + "\n", fractions)))
    counts = Counter(w for line in parts["train"].splitlines() for w in line.split())
    known = {w for w, n in counts.items() if n >= min_count}
    out = {name: "".join(" ".join(w if w in known else "<unk>" for w in line.split()) + "\n"
                         for line in part.splitlines()) for name, part in parts.items()}
    stats = {"blank_lines_dropped": len(lines) - len(kept), "vocabulary": len(known) + 1,
             "training_types_to_unk": len(counts) - len(known)}
    stats.update({f"{name}_lines": part.count("\n") for name, part in out.items()})
    return out, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", help="input text [the bundled Tiny Shakespeare]")
    ap.add_argument("--out", required=True, help="folder for train.txt, valid.txt, test.txt")
    ap.add_argument("--split", default="0.8,0.1,0.1", help="train,valid,test shares of the lines [0.8,0.1,0.1]")
    ap.add_argument("--min-count", type=int, default=3, help="rarer training words become <unk> [3]")
    args = ap.parse_args()
    text = read_text(args.text or bundled_path("tinyshakespeare"))
    parts, stats = word_corpus(text, tuple(float(f) for f in args.split.split(",")), args.min_count)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        (out / f"{name}.txt").write_text(part, encoding="utf-8")
    print(", ".join(f"{k} {v:,}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
