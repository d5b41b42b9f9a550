"""Sampling at batch 1: what a token costs, against the floor of its arithmetic.

    python benchmarks/sampling_floor.py            # 2-layer LSTM 512, embedding 64, vocabulary 65, 200 tokens
    python benchmarks/sampling_floor.py --quick    # small shapes, seconds
    python benchmarks/sampling_floor.py --batch-sweep   # also compiled vs Python step at batches 1 to 32

Four contestants, interleaved round by round in one process, medians per token:

* rnnkit: ``rnnkit.decoding.generate(lm.step, ...)`` on a ``LanguageModel`` (where ``rnnkit.nn.compiled``
  is built, a step of the stack is one call of its ``stack_step``);
* rnnkit, Python step: the same with the compiled loops off (``rnnkit.nn.fused_step`` in Python);
* baseline: ``torch.nn.LSTM`` with the same weights stepped one token at a time, softmax,
  ``torch.multinomial`` (``generation.py``'s ``BareLM``); both draw the same text (checked);
* floor: only the matrix-vector products of a step on the same weights, in a tight loop:
  per layer ``[W_ih W_hh] [x; h] + b_ih + b_hh``, then the output layer, three ways
  (``FLOORS``): ``torch.addmv`` on the weights as stored; ``torch.addmm`` on them transposed
  and contiguous (the layout ``rnnkit.nn.fused_step`` keeps); and each product as two column
  halves in one ``torch.baddbmm``, which two threads can share (MKL runs a one-row product on
  one thread).  Each is also timed alone at 1 and at 2 threads.

One run of rnnkit and of the baseline is profiled (``torch.profiler``): the operations per
token called from Python (and all, counting those they call), and each operation's count
and self CPU time per token, the largest first.

Writes benchmarks/results/sampling_floor[-quick].json and prints a summary.
"""
from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from rnnkit.decoding import generate
from rnnkit.nn import compiled
from rnnkit.models import LanguageModel, LanguageModelConfig
from _common import median_times, parser, write_report
from generation import VOCAB, BareLM

TOP_OPS = 12  # operations listed per contestant


FLOORS = {  # layout -> what the floor loop runs per product
    "addmv": "torch.addmv(b, W, x) on W = [W_ih W_hh] as stored",
    "transposed": "torch.addmm(b, x, W^T) with W^T contiguous",
    "halves": "torch.baddbmm over two column halves of W^T: two threads can share each product",
}


def floor_loop(lm: LanguageModel, length: int, layout: str):
    """``length`` steps of the bare products of ``lm``'s stack and output layer (inputs held fixed), laid out
    as ``FLOORS[layout]`` says."""
    rnn, out = lm.rnn, lm.out
    mats = []
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            w_ih, w_hh, b_ih, b_hh = rnn._layer_weights(layer, 0)
            mats.append((torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh))  # (G*H, I + H), (G*H,)
        mats.append((out.weight.detach(), out.bias.detach()))
    if layout == "addmv":
        args = [(b, w.contiguous(), torch.randn(w.shape[1])) for w, b in mats]
        product = torch.addmv
    elif layout == "transposed":
        args = [(b, torch.randn(1, w.shape[1]), w.t().contiguous()) for w, b in mats]
        product = torch.addmm
    else:
        args = []
        for w, b in mats:
            n = w.shape[0] // 2 * 2  # an odd row is left out: the floor is the products' time, not their values
            halves = w[:n].view(2, n // 2, -1).transpose(1, 2).contiguous()  # (2, I + H, n / 2)
            args.append((b[:n].view(2, 1, n // 2), torch.randn(1, 1, w.shape[1]).expand(2, 1, -1), halves))
        product = torch.baddbmm

    def run():
        for _ in range(length):
            for a in args:
                product(*a)
    return run


def profile_ops(fn, tokens: int) -> dict:
    """Operations per token of one call of ``fn``: from Python (no profiled parent), in all, and by name."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.events() if e.device_type.name == "CPU"]
    top_level = sum(1 for e in events if e.cpu_parent is None)
    by_name = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "ops_per_token": round(top_level / tokens, 1),
        "all_ops_per_token": round(len(events) / tokens, 1),
        "top_ops": [{"op": e.key, "calls_per_token": round(e.count / tokens, 2),
                     "self_us_per_token": round(e.self_cpu_time_total / tokens, 1)} for e in by_name[:TOP_OPS]],
    }


def run(hidden: int, layers: int, embedding: int, length: int, rounds: int, threads: int) -> dict:
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers,
                                           embedding_size=embedding)).eval()
    bare = BareLM(lm).eval()
    prime = torch.randint(0, VOCAB, (1, 8))

    def ours():
        return generate(lm.step, None, prime, length, generator=torch.Generator().manual_seed(1))

    ours_python = with_compiled(False, ours)  # the step in Python (rnnkit.nn.fused_step without stack_step)

    def theirs():
        return bare.sample(prime, length, torch.Generator().manual_seed(1))

    same = torch.equal(ours(), theirs())  # also the warm-up
    close = torch.equal(ours_python(), ours())  # rounding apart, the same draws (not promised: checked)
    ops = {"rnnkit": profile_ops(ours, length), "rnnkit, Python step": profile_ops(ours_python, length),
           "baseline": profile_ops(theirs, length)}
    floors = {f"floor, {k}": floor_loop(lm, length, k) for k in FLOORS}
    med = median_times({"rnnkit": ours, "rnnkit, Python step": ours_python, "baseline": theirs, **floors}, rounds)
    us = {k: round(v / length * 1e6, 1) for k, v in med.items()}
    for n in (1, 2):  # the floors alone at each thread count
        torch.set_num_threads(n)
        f = median_times(floors, rounds)
        us.update({f"{k}, {n} thread{'s' if n > 1 else ''}": round(v / length * 1e6, 1) for k, v in f.items()})
    torch.set_num_threads(threads)
    best_floor = min(med[k] for k in floors)
    return {"shape": dict(hidden=hidden, layers=layers, embedding=embedding, vocab=VOCAB, batch=1, tokens=length),
            "same_text": same, "same_text_python_step": close, "compiled_step": compiled.available(), "us_per_token": us,
            "rnnkit_vs_baseline": round(med["baseline"] / med["rnnkit"], 2),
            "rnnkit_vs_python_step": round(med["rnnkit, Python step"] / med["rnnkit"], 2),
            "rnnkit_vs_floor": round(med["rnnkit"] / best_floor, 2), "floors": FLOORS,
            "ops": ops, "rounds": rounds}


def with_compiled(on: bool, fn):
    """``fn`` run with ``rnnkit.nn.compiled`` switched on or off, the setting restored after."""
    def go():
        was = compiled.USE
        compiled.set_compiled(on)
        try:
            return fn()
        finally:
            compiled.set_compiled(was)
    return go


def batch_sweep(hidden: int, layers: int, embedding: int, length: int, rounds: int) -> list[dict]:
    """The compiled step against the Python step at a few batch sizes (``fused_step.COMPILED_MAX_BATCH`` is
    lifted for the measurement): µs per step of ``generate`` at each batch, and the ratio."""
    import rnnkit.nn.fused_step as fused_step

    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers,
                                           embedding_size=embedding)).eval()
    limit = fused_step.COMPILED_MAX_BATCH
    fused_step.COMPILED_MAX_BATCH = 1 << 30
    rows = []
    try:
        for batch in SWEEP_BATCHES:
            prime = torch.randint(0, VOCAB, (batch, 8))

            def sample(prime=prime):
                return generate(lm.step, None, prime, length, generator=torch.Generator().manual_seed(1))

            med = median_times({"compiled": with_compiled(True, sample), "python": with_compiled(False, sample)},
                               rounds)
            rows.append({"batch": batch, "us_per_step": {k: round(v / length * 1e6, 1) for k, v in med.items()},
                         "compiled_vs_python": round(med["python"] / med["compiled"], 2)})
    finally:
        fused_step.COMPILED_MAX_BATCH = limit
    return rows


SWEEP_BATCHES = (1, 2, 4, 8, 16, 32)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--batch-sweep", action="store_true",
                    help="also time the compiled step against the Python step at batches " +
                         ", ".join(map(str, SWEEP_BATCHES)))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = (dict(hidden=128, layers=2, embedding=16, length=50, rounds=3) if args.quick
             else dict(hidden=512, layers=2, embedding=64, length=200, rounds=7))
    r = run(**shape, threads=args.threads)
    if args.batch_sweep:
        r["batch_sweep"] = batch_sweep(**shape)
    out = write_report("sampling_floor", args, results=[r])
    s = r["shape"]
    print(f"H{s['hidden']} L{s['layers']} E{s['embedding']} V{s['vocab']}, batch 1, {s['tokens']} tokens, "
          f"{args.threads} threads; same text: {r['same_text']}")
    for who in r["ops"]:
        o = r["ops"][who]
        print(f"  {who:9} {o['ops_per_token']:6.1f} ops/token from Python, {o['all_ops_per_token']:6.1f} in all")
    for k, v in r["us_per_token"].items():
        print(f"  {k:32} {v:9.1f} us/token")
    print(f"  rnnkit: {r['rnnkit_vs_baseline']:.2f}x the baseline's speed, {r['rnnkit_vs_floor']:.2f}x the time of "
          f"the fastest floor, all at {args.threads} thread{'s' if args.threads > 1 else ''}; "
          f"{r['rnnkit_vs_python_step']:.2f}x its Python step's speed (compiled step: {r['compiled_step']})")
    for row in r.get("batch_sweep", []):
        print(f"  batch {row['batch']:3}: compiled {row['us_per_step']['compiled']:8.1f} us a step, Python "
              f"{row['us_per_step']['python']:8.1f}: {row['compiled_vs_python']:.2f}x")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
