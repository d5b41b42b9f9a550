"""GRU and plain-RNN training step on CPU: rnnkit's ``Recurrent`` vs ``torch.nn.GRU`` / ``torch.nn.RNN``.

One process, the same weights, contestants interleaved round by round, medians reported
as tokens/s and as the ratio rnnkit / torch.  The training step is forward and backward of
a sum of the outputs (no optimizer, the same for both); inference is the forward alone
under ``torch.no_grad()``.  rnnkit's fused backend runs GRU and RNN on CPU through
``rnnkit.nn.scan`` (a whole-sequence layer with a hand-written backward); torch runs its
own sequence kernel (no oneDNN path for GRU and RNN, unlike LSTM).

    python benchmarks/gru_rnn.py            # batch 64, 128 steps, input 64, 2 layers, hidden 256 and 512
    python benchmarks/gru_rnn.py --quick    # 32 steps, hidden 128 and 256, seconds

Each shape runs unidirectional and bidirectional.  Writes benchmarks/results/gru_rnn[-quick].json.
"""
from __future__ import annotations

import torch

from rnnkit.nn import Recurrent
from _common import median_times, parser, write_report

TWINS = {"gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN}


def run(mode: str, batch: int, seq: int, embed: int, hidden: int, layers: int, bidirectional: bool,
        rounds: int) -> dict:
    torch.manual_seed(0)
    ours = Recurrent(mode, embed, hidden, num_layers=layers, bidirectional=bidirectional)
    kw = {"nonlinearity": mode[len("rnn_"):]} if mode.startswith("rnn_") else {}
    theirs = TWINS[mode](embed, hidden, layers, batch_first=True, bidirectional=bidirectional, **kw)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(batch, seq, embed)
    with torch.no_grad():
        max_diff = (ours(x)[0] - theirs(x)[0]).abs().max().item()

    def train(module):
        def go():
            module(x)[0].sum().backward()
        return go

    def infer(module):
        def go():
            with torch.no_grad():
                module(x)
        return go

    names = {"rnnkit": ours, "torch": theirs}
    results = {}
    for kind, make in (("train", train), ("inference", infer)):
        med = median_times({k: make(m) for k, m in names.items()}, rounds)
        results[kind] = {"tokens_per_s": {k: round(batch * seq / v) for k, v in med.items()},
                         "ratio_rnnkit_vs_torch": round(med["torch"] / med["rnnkit"], 3)}
    return {"mode": mode, "shape": dict(batch=batch, seq_len=seq, embed=embed, hidden=hidden, layers=layers,
                                        bidirectional=bidirectional),
            "max_abs_diff_outputs": max_diff, **results, "rounds": rounds}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--modes", nargs="+", default=["gru", "rnn_tanh"], choices=sorted(TWINS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        base, hiddens = dict(batch=64, seq=32, embed=64, layers=2, rounds=3), (128, 256)
    else:
        base, hiddens = dict(batch=64, seq=128, embed=64, layers=2, rounds=5), (256, 512)
    results = [run(mode, hidden=h, bidirectional=bi, **base)
               for mode in args.modes for h in hiddens for bi in (False, True)]
    out = write_report("gru_rnn", args, results=results)
    print(f"{'mode':9} {'shape':22} {'train tok/s rnnkit':>18} {'torch':>8} {'ratio':>6}   "
          f"{'infer tok/s rnnkit':>18} {'torch':>8} {'ratio':>6}  max|diff|")
    for r in results:
        s, tr, inf = r["shape"], r["train"], r["inference"]
        shape = f"H{s['hidden']} L{s['layers']} {'bi' if s['bidirectional'] else 'uni'} B{s['batch']} T{s['seq_len']}"
        print(f"{r['mode']:9} {shape:22} {tr['tokens_per_s']['rnnkit']:>18,} {tr['tokens_per_s']['torch']:>8,} "
              f"{tr['ratio_rnnkit_vs_torch']:>6.2f}   {inf['tokens_per_s']['rnnkit']:>18,} "
              f"{inf['tokens_per_s']['torch']:>8,} {inf['ratio_rnnkit_vs_torch']:>6.2f}  "
              f"{r['max_abs_diff_outputs']:.1e}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
