"""GRU and plain-RNN (and LSTM) training step on CPU: rnnkit's ``Recurrent`` vs ``torch.nn.GRU`` / ``RNN`` / ``LSTM``.

One process, the same weights, contestants interleaved round by round, reported as tokens/s
(median seconds) and as the ratio rnnkit / torch: the median of the per-round ratios, with
their min and max in the run.  The training step is forward and backward of
a sum of the outputs (no optimizer, the same for both); inference is the forward alone
under ``torch.no_grad()``.  rnnkit's fused backend runs GRU and RNN on CPU through
``rnnkit.nn.scan`` (a whole-sequence layer with a hand-written backward); torch runs its
own sequence kernel (no oneDNN path for GRU and RNN, unlike LSTM).  ``--modes lstm`` compares
the LSTM's scan with oneDNN's LSTM primitive when run with ``RNNKIT_LSTM_SCAN=1`` (without it
both sides run the primitive).

    python benchmarks/gru_rnn.py              # batch 64, 128 steps, input 64, 2 layers, hidden 256 and 512
    python benchmarks/gru_rnn.py --quick      # 32 steps, hidden 128 and 256, seconds
    python benchmarks/gru_rnn.py --repeats 3  # the whole measurement three times, each repeat's ratio kept
    RNNKIT_LSTM_SCAN=1 python benchmarks/gru_rnn.py --modes lstm --repeats 2 --out benchmarks/results/gru_rnn-lstm.json
    python benchmarks/gru_rnn.py --python-loops   # a third contestant: rnnkit with the scan's loops in Python

``--python-loops`` times rnnkit a second time with ``rnnkit.nn.compiled`` off (the scan's time loops in
Python instead of C++), interleaved with the other two, and reports the compiled loops' speed over it.

Each shape runs unidirectional and bidirectional.  With ``--repeats N`` every shape's ratio is
also given per repeat and as the least of them (``ratio.min``); ``summary`` holds, for training
and inference, the least ratio over all shapes and repeats.  Writes
benchmarks/results/gru_rnn[-quick].json.
"""
from __future__ import annotations

import torch

from rnnkit.nn import Recurrent
from _common import parser, pooled_median, repeated_ratio, show_spread, timings, write_report

TWINS = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN}
KINDS = ("train", "inference")


def python_loops(go):
    """``go`` with the scan's time loops in Python (``rnnkit.nn.compiled`` off)."""
    from rnnkit.nn import compiled

    def run():
        was = compiled.USE
        compiled.set_compiled(False)
        try:
            go()
        finally:
            compiled.set_compiled(was)
    return run


def measure(mode: str, batch: int, seq: int, embed: int, hidden: int, layers: int, bidirectional: bool,
            rounds: int, with_python: bool = False) -> dict:
    """One measurement of one shape: the outputs' largest difference and a :func:`timings` per kind."""
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
    result = {"max_abs_diff_outputs": max_diff}
    for kind, make in zip(KINDS, (train, infer)):
        fns = {k: make(m) for k, m in names.items()}
        if with_python:
            fns["python_loops"] = python_loops(make(ours))
        result[kind] = timings(fns, rounds)
    return result


def summarize(mode: str, shape: dict, runs: list[dict]) -> dict:
    """One shape over its repeats: tokens/s from the median seconds of all rounds, and the ratio's spread."""
    tokens = shape["batch"] * shape["seq_len"]
    row = {"mode": mode, "shape": shape, "max_abs_diff_outputs": max(r["max_abs_diff_outputs"] for r in runs),
           "rounds": runs[0]["train"]["rounds"], "repeats": len(runs)}
    for kind in KINDS:
        t = [r[kind] for r in runs]
        ratio = repeated_ratio(t, "rnnkit", "torch")
        names = [k for k in ("rnnkit", "torch", "python_loops") if k in t[0]["contestants"]]
        row[kind] = {"tokens_per_s": {k: round(tokens / pooled_median(t, k)) for k in names},
                     "ratio_rnnkit_vs_torch": round(ratio["median"], 3), "ratio": ratio, "timings": t}
        if "python_loops" in names:
            loops = repeated_ratio(t, "rnnkit", "python_loops")
            row[kind]["ratio_compiled_vs_python_loops"] = round(loops["median"], 3)
            row[kind]["ratio_loops"] = loops
    return row


def least(results: list[dict], kind: str) -> dict:
    """The least ratio over every shape: of the repeats' ratios and of single rounds, and where."""
    worst = min(results, key=lambda r: r[kind]["ratio"]["min"])
    return {"min_ratio_of_repeats": worst[kind]["ratio"]["min"], "at": {"mode": worst["mode"], **worst["shape"]},
            "min_ratio_of_rounds": min(r[kind]["ratio"]["per_round"]["min"] for r in results)}


def label(r: dict) -> str:
    s = r["shape"]
    return f"H{s['hidden']} L{s['layers']} {'bi' if s['bidirectional'] else 'uni'} B{s['batch']} T{s['seq_len']}"


def main() -> None:
    ap = parser(__doc__, repeats=True)
    ap.add_argument("--modes", nargs="+", default=["gru", "rnn_tanh"], choices=sorted(TWINS))
    ap.add_argument("--python-loops", action="store_true",
                    help="also time rnnkit with the scan's loops in Python (rnnkit.nn.compiled off)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        base, hiddens = dict(batch=64, seq=32, embed=64, layers=2, rounds=3), (128, 256)
    else:
        base, hiddens = dict(batch=64, seq=128, embed=64, layers=2, rounds=5), (256, 512)
    points = [(mode, dict(base, hidden=h, bidirectional=bi)) for mode in args.modes for h in hiddens
              for bi in (False, True)]
    runs: list[list[dict]] = [[] for _ in points]
    for _ in range(args.repeats):  # the whole sweep again, so that repeats of a shape lie minutes apart
        for i, (mode, p) in enumerate(points):
            runs[i].append(measure(mode, **p, with_python=args.python_loops))
    results = [summarize(mode, dict(batch=p["batch"], seq_len=p["seq"], embed=p["embed"], hidden=p["hidden"],
                                    layers=p["layers"], bidirectional=p["bidirectional"]), r)
               for (mode, p), r in zip(points, runs)]
    summary = {kind: least(results, kind) for kind in KINDS}
    out = write_report("gru_rnn", args, repeats=args.repeats, results=results, summary=summary)
    print("ratio: rnnkit's speed over torch's, median of the per-round ratios [their min-max]")
    print(f"{'mode':9} {'shape':22} {'train tok/s rnnkit':>18} {'torch':>8} {'ratio':>17}   "
          f"{'infer tok/s rnnkit':>18} {'torch':>8} {'ratio':>17}  max|diff|")
    for r in results:
        tr, inf = r["train"], r["inference"]
        print(f"{r['mode']:9} {label(r):22} {tr['tokens_per_s']['rnnkit']:>18,} {tr['tokens_per_s']['torch']:>8,} "
              f"{show_spread(tr['ratio']['per_round']):>17}   {inf['tokens_per_s']['rnnkit']:>18,} "
              f"{inf['tokens_per_s']['torch']:>8,} {show_spread(inf['ratio']['per_round']):>17}  "
              f"{r['max_abs_diff_outputs']:.1e}")
    if args.python_loops:
        print("\nthe compiled loops' speed over the Python loops, median of the per-round ratios [min-max]")
        for r in results:
            print(f"{r['mode']:9} {label(r):22} train {show_spread(r['train']['ratio_loops']['per_round']):>17}   "
                  f"inference {show_spread(r['inference']['ratio_loops']['per_round']):>17}")
    if args.repeats > 1:
        print("\neach repeat's ratio (median of its rounds), and the least of them")
        for r in results:
            cells = [" ".join(f"{x:.2f}" for x in r[k]["ratio"]["per_repeat"]) + f"  min {r[k]['ratio']['min']:.2f}"
                     for k in KINDS]
            print(f"{r['mode']:9} {label(r):22} train {cells[0]}   inference {cells[1]}")
    for kind in KINDS:
        s = summary[kind]
        print(f"least {kind} ratio: {s['min_ratio_of_repeats']:.2f} over {args.repeats} repeat(s) "
              f"({s['at']['mode']} H{s['at']['hidden']} {'bi' if s['at']['bidirectional'] else 'uni'}); "
              f"least single round {s['min_ratio_of_rounds']:.2f}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
