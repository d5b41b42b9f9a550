"""Rebuild the small datasets bundled in src/rnnkit/bundled from the full datasets (see bundled/README.md).

    python scripts/bundle_data.py [--data-root DIR]

The full datasets come from rnnkit's data cache (``rnnkit data get ud_english_ewt`` and ``cmudict``,
fetched if missing, sha256 checked), or from ``--data-root``, a folder laid out the same way.

UD English-EWT (CC BY-SA 4.0): the dev file with sentence ids and text kept and each word line reduced to
ID, FORM, UPOS and XPOS (multiword ranges and empty nodes dropped).  CMUdict (BSD-2-Clause-style): 20,000
distinct words drawn with seed 0, every pronunciation of each kept, in dictionary order.
"""
from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from rnnkit import datasets

OUT = Path(__file__).resolve().parents[1] / "src" / "rnnkit" / "bundled"


def ud(shared: Path) -> None:
    lines = []
    for line in (shared / "ud_english_ewt" / "en_ewt-ud-dev.conllu").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("# sent_id") or line.startswith("# text"):
            lines.append(line)
        elif not line.startswith("#"):
            cols = line.split("\t")
            if cols[0].isdigit():
                lines.append("\t".join([cols[0], cols[1], "_", cols[3], cols[4], "_", "_", "_", "_", "_"]))
    (OUT / "ud_ewt_dev.conllu").write_text("\n".join(lines).rstrip("\n") + "\n\n", encoding="utf-8")
    shutil.copy(shared / "ud_english_ewt" / "LICENSE.txt", OUT / "ud_ewt_LICENSE.txt")


def cmudict(shared: Path, n: int = 20000) -> None:
    lines = (shared / "cmudict" / "cmudict.dict").read_text(encoding="utf-8").splitlines()
    word = lambda line: line.split(" ", 1)[0].split("(", 1)[0]  # noqa: E731
    words = sorted({word(line) for line in lines})
    keep = set(random.Random(0).sample(words, n))
    (OUT / "cmudict_20k.dict").write_text("".join(line + "\n" for line in lines if word(line) in keep),
                                          encoding="utf-8")
    shutil.copy(shared / "cmudict" / "LICENSE", OUT / "cmudict_LICENSE")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=None,
                    help="folder holding the datasets by name [rnnkit's data cache: $RNNKIT_DATA or ~/.cache/rnnkit/data]")
    args = ap.parse_args()
    for name in ("ud_english_ewt", "cmudict"):
        datasets.get(name, args.data_root)  # fetches what is missing; every file's sha256 checked
    root = datasets.data_root(args.data_root)
    ud(root)
    cmudict(root)
