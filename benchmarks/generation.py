"""Generation speed: sampling from a character LM, rnnkit vs a loop that steps ``torch.nn.LSTM``.

One process, contestants interleaved round by round, medians reported as ratios.

    python benchmarks/generation.py            # 2-layer LSTM 512, 200 tokens, batch 1 and 64
    python benchmarks/generation.py --quick    # small shapes, seconds

rnnkit samples through ``LanguageModel.step`` and ``rnnkit.decoding.generate``
(a single step runs the cells, not the sequence kernel); the baseline is what a
user writes by hand: ``torch.nn.LSTM`` called on one token at a time with the
same weights, softmax, ``torch.multinomial``.  Both draw the same text from the
same seed (checked), so the ratio is of equal work.

Writes benchmarks/results/generation[-quick].json and prints a table.
"""
from __future__ import annotations

import torch
from torch import nn

from rnnkit.decoding import generate
from rnnkit.models import LanguageModel, LanguageModelConfig
from _common import median_times, parser, write_report

VOCAB = 65


class BareLM(nn.Module):
    def __init__(self, lm: LanguageModel) -> None:
        super().__init__()
        c = lm.config
        self.emb = nn.Embedding(VOCAB, c.embedding_size)
        self.rnn = nn.LSTM(c.embedding_size, c.hidden_size, c.num_layers, batch_first=True)
        self.out = nn.Linear(c.hidden_size, VOCAB)
        self.emb.load_state_dict(lm.embedding.state_dict())
        self.rnn.load_state_dict(lm.rnn.state_dict())
        self.out.load_state_dict(lm.out.state_dict())

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


def run(hidden: int, layers: int, batch: int, length: int, rounds: int) -> dict:
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
    med = median_times({"rnnkit LanguageModel.step + generate": ours, "torch.nn.LSTM stepped one token": theirs},
                       rounds, warm_up=False)
    base = med["torch.nn.LSTM stepped one token"]
    return {"shape": dict(hidden=hidden, layers=layers, batch=batch, tokens=length), "same_text": same,
            "tokens_per_s": {k: round(batch * length / v) for k, v in med.items()},
            "ratio_vs_nn_lstm": {k: round(base / v, 2) for k, v in med.items()}, "rounds": rounds}


def main() -> None:
    args = parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        shapes = [dict(hidden=128, layers=2, batch=b, length=50, rounds=3) for b in (1, 16)]
    else:
        shapes = [dict(hidden=512, layers=2, batch=b, length=200, rounds=5) for b in (1, 64)]
    results = [run(**s) for s in shapes]
    out = write_report("generation", args, results=results)
    print(f"{'shape':24} {'contestant':40} {'tokens/s':>9} {'ratio':>6}  same text")
    for r in results:
        s = r["shape"]
        shape = f"H{s['hidden']} L{s['layers']} batch {s['batch']}"
        for k, v in r["tokens_per_s"].items():
            print(f"{shape:24} {k:40} {v:>9,} {r['ratio_vs_nn_lstm'][k]:>6.2f}  {r['same_text']}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
