"""Generation speed: sampling from a character LM, rnnkit vs a loop that steps ``torch.nn.LSTM``.

One process, contestants interleaved round by round, reported as tokens/s (median seconds)
and as the ratio to the ``torch.nn.LSTM`` loop: the median of the per-round ratios, with their
min and max in the run.

    python benchmarks/generation.py              # 2-layer LSTM 512, 200 tokens, batch 1 and 64
    python benchmarks/generation.py --quick      # small shapes, seconds
    python benchmarks/generation.py --repeats 3  # the whole measurement three times, each repeat's ratio kept

rnnkit samples through ``LanguageModel.step`` and ``rnnkit.decoding.generate``
(a single step runs the cells, not the sequence kernel); the baseline is what a
user writes by hand: ``torch.nn.LSTM`` called on one token at a time with the
same weights, softmax, ``torch.multinomial``.  Both draw the same text from the
same seed (checked), so the ratio is of equal work.

At batch 1 a token costs well under a millisecond, so the ratio moves with whatever else the
machine does; ``ratio`` in the JSON holds its spread (per round, and per repeat with
``--repeats N``).  Writes benchmarks/results/generation[-quick].json and prints a table.
"""
from __future__ import annotations

import torch
from torch import nn

from rnnkit.decoding import generate
from rnnkit.models import LanguageModel, LanguageModelConfig
from _common import parser, pooled_median, repeated_ratio, show_spread, timings, write_report

VOCAB = 65
OURS, BASE = "rnnkit LanguageModel.step + generate", "torch.nn.LSTM stepped one token"


class BareLM(nn.Module):
    """What a user writes by hand for a ``LanguageModel`` of LSTM or GRU cells: ``torch.nn`` modules, its weights."""

    def __init__(self, lm: LanguageModel) -> None:
        super().__init__()
        c = lm.config
        self.emb = nn.Embedding(c.vocab_size, c.embedding_size)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[c.cell](c.embedding_size, c.hidden_size, c.num_layers,
                                                             batch_first=True)
        self.out = nn.Linear(c.hidden_size, c.vocab_size)
        self.emb.load_state_dict(lm.embedding.state_dict())
        self.rnn.load_state_dict(lm.rnn.state_dict())
        self.out.load_state_dict(lm.out.state_dict())

    def forward(self, tokens: torch.Tensor, hx=None):
        """``tokens (B, T)`` -> ``logits (B, T, V)`` and the state, as ``LanguageModel.forward``."""
        y, hx = self.rnn(self.emb(tokens), hx)
        return self.out(y), hx

    @torch.inference_mode()
    def sample(self, prime: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
        y, hx = self.rnn(self.emb(prime))
        logits = self.out(y[:, -1])
        out = []
        for _ in range(length):
            token = torch.multinomial(logits.float().softmax(-1), 1, generator=generator)  # (B, 1)
            out.append(token)
            y, hx = self.rnn(self.emb(token), hx)  # one step through the sequence kernel
            logits = self.out(y[:, -1])
        return torch.cat(out, dim=1)


def measure(hidden: int, layers: int, batch: int, length: int, rounds: int) -> dict:
    """One measurement of one shape: whether both drew the same text, and a :func:`timings`."""
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers,
                                           embedding_size=64)).eval()
    bare = BareLM(lm).eval()
    prime = torch.randint(0, VOCAB, (batch, 8))

    def ours():
        return generate(lm.step, None, prime, length, generator=torch.Generator().manual_seed(1))

    def theirs():
        return bare.sample(prime, length, torch.Generator().manual_seed(1))

    same = torch.equal(ours(), theirs())  # also the warm-up
    return {"same_text": same, "timings": timings({OURS: ours, BASE: theirs}, rounds, warm_up=False)}


def summarize(shape: dict, runs: list[dict]) -> dict:
    """One shape over its repeats: tokens/s from the median seconds of all rounds, and the ratio's spread."""
    t = [r["timings"] for r in runs]
    ratio = repeated_ratio(t, OURS, BASE)
    return {"shape": shape, "same_text": all(r["same_text"] for r in runs),
            "tokens_per_s": {k: round(shape["batch"] * shape["tokens"] / pooled_median(t, k)) for k in (OURS, BASE)},
            "ratio_vs_nn_lstm": {OURS: round(ratio["median"], 2), BASE: 1.0}, "ratio": ratio,
            "rounds": runs[0]["timings"]["rounds"], "repeats": len(runs), "timings": t}


def main() -> None:
    args = parser(__doc__, repeats=True).parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        shapes = [dict(hidden=128, layers=2, batch=b, length=50, rounds=3) for b in (1, 16)]
    else:
        shapes = [dict(hidden=512, layers=2, batch=b, length=200, rounds=5) for b in (1, 64)]
    runs: list[list[dict]] = [[] for _ in shapes]
    for _ in range(args.repeats):  # the whole measurement again, so that repeats of a shape lie apart
        for i, s in enumerate(shapes):
            runs[i].append(measure(**s))
    results = [summarize(dict(hidden=s["hidden"], layers=s["layers"], batch=s["batch"], tokens=s["length"]), r)
               for s, r in zip(shapes, runs)]
    out = write_report("generation", args, repeats=args.repeats, results=results)
    print("ratio: rnnkit's speed over the torch.nn.LSTM loop's, median of the per-round ratios [their min-max]")
    print(f"{'shape':24} {'tokens/s rnnkit':>15} {'torch.nn.LSTM':>13} {'ratio':>17}  same text")
    for r in results:
        s = r["shape"]
        print(f"{'H%d L%d batch %d' % (s['hidden'], s['layers'], s['batch']):24} {r['tokens_per_s'][OURS]:>15,} "
              f"{r['tokens_per_s'][BASE]:>13,} {show_spread(r['ratio']['per_round']):>17}  {r['same_text']}")
        if args.repeats > 1:
            print(f"{'':24} each repeat's ratio {' '.join(f'{x:.2f}' for x in r['ratio']['per_repeat'])}, "
                  f"least {r['ratio']['min']:.2f}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
