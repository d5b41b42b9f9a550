"""Score several CMUdict runs decoding together: the mean of their log-probabilities at each step.

An experiment, not an rnnkit command: it answers "how much would averaging models give" for the
README's CMUdict section.  The runs must share the split and the vocabularies (the same
``--train``/``--split``/``--split-seed``).

    python scripts/g2p_ensemble.py runs/cmudict-v5 runs/cmudict-v4 --split test --beam 5
"""
from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from rnnkit.metrics import ErrorRates
from rnnkit.tasks.seq2seq import Translator, read_splits, translate_ids


class _States(tuple):
    """One decoder state per model; beam search reorders them all alike."""

    def index_select(self, index):
        return _States(s.index_select(index) for s in self)


class Ensemble(nn.Module):
    """Seq2seq models that decode as one: what ``translate_ids`` needs of a model."""

    def __init__(self, models):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.config = models[0].config

    def encode(self, src, lengths):
        return _States(m.encode(src, lengths) for m in self.models)

    def step(self, tokens, state):
        steps = [m.step(tokens, s) for m, s in zip(self.models, state)]
        log_probs = torch.stack([torch.log_softmax(logits.float(), -1) for logits, _ in steps]).mean(0)
        return log_probs, _States(s for _, s in steps)

    def max_lengths(self, *args):
        return self.models[0].max_lengths(*args)

    def start_tokens(self, *args):
        return self.models[0].start_tokens(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="CMUdict run folders")
    ap.add_argument("--split", choices=["valid", "test"], default="valid")
    ap.add_argument("--beam", type=int, default=5)
    args = ap.parse_args()
    translators = [Translator(r) for r in args.runs]
    first = translators[0]
    for t in translators[1:]:
        if t.data != first.data or t.codec.tgt_vocab.tokens != first.codec.tgt_vocab.tokens \
                or t.codec.src_vocab.tokens != first.codec.src_vocab.tokens:
            raise SystemExit(f"{t.run} has another split or other vocabularies than {first.run}")
    _, valid, test = read_splits(first.data)
    split = valid if args.split == "valid" else test
    src, _ = first.codec.encode(split)
    model = Ensemble([t.model for t in translators]).eval()
    decoded = translate_ids(model, src, first.codec.src_vocab.pad_id, beam=args.beam)
    texts = [first.codec.tgt_text(d[0][0]) for d in decoded]
    rates = ErrorRates()
    rates.update([t.split() for t in texts], [[r.split() for r in refs] for refs in split.refs])
    print(json.dumps({"runs": args.runs, "split": args.split, "beam": args.beam, **rates.compute()}))


if __name__ == "__main__":
    main()
