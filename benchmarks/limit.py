"""How close an LSTM training step comes to the machine's own float32 matmul throughput.

One process: first the matmul at the LSTM's own shapes — one step ``(B, I+H) x (I+H, 4H)`` repeated,
and all steps at once ``(T*B, I+H) x (I+H, 4H)``, each through ``torch.mm`` (MKL) and through
oneDNN's matmul (which the fused LSTM itself uses; on some CPUs about twice MKL's speed): the best
of the four is the limit — then
the training step (forward and backward of a 2-layer LSTM stack over ``T`` steps) through
rnnkit's ``Recurrent`` (fused backend) and through ``torch.nn.LSTM``; each reported as achieved
GFLOP/s and as a fraction of the matmul's.

    python benchmarks/limit.py             # batch 64, 128 steps, embed 64, hidden 256 and 512
    python benchmarks/limit.py --quick     # small shapes, seconds
    python benchmarks/limit.py --profile   # and where rnnkit's training step spends its time

``--profile``: one call of rnnkit's training step at each shape under ``torch.profiler``, its ops'
self CPU time grouped into matmul (oneDNN's LSTM layers count whole: their gate arithmetic runs
inside them), elementwise, copies, optimizer and other, with the top ops; and the profiled matmul
time over the limit's time for the step's products (``matmul_over_limit``): above 1 where the
products themselves run below the limit, while the other groups' share is time spent outside them.

FLOPs counted: per layer and step ``2 * B * (I + H) * 4H`` for the gate products forward, and twice
that backward (input and weight gradients); elementwise gate work is not counted, so the fraction
is a lower bound on how busy the cores are.  Writes benchmarks/results/limit[-quick].json.
"""
from __future__ import annotations

import torch

from rnnkit.nn import Recurrent
from rnnkit.nn.onednn import onednn_linear_op
from _common import median_times, op_breakdown, parser, show_breakdown, write_report


def _median_seconds(fn, rounds: int) -> float:
    return median_times({"fn": fn}, rounds)["fn"]


def run(batch: int, seq: int, embed: int, hidden: int, layers: int, rounds: int, profile: bool = False) -> dict:
    torch.manual_seed(0)
    # the matmul limit at the recurrence's own shape, repeated as often as one step of training needs it
    a, w = torch.randn(batch, embed + hidden), torch.randn(embed + hidden, 4 * hidden)
    a2 = torch.randn(batch, 2 * hidden)
    w2 = torch.randn(2 * hidden, 4 * hidden)

    big_a = torch.randn(seq * batch, embed + hidden)
    big_a2 = torch.randn(seq * batch, 2 * hidden)
    onednn = onednn_linear_op()  # x w^T with w (N, K), or None where torch has no usable oneDNN matmul
    wt, w2t = w.t().contiguous(), w2.t().contiguous()

    def products(matmul, repeat, x1, x2):
        def go():
            for _ in range(repeat):
                matmul(x1)
                for _ in range(layers - 1):
                    matmul(x2)
        return go

    def with_mm(x):
        return torch.mm(x, w if x.shape[1] == w.shape[0] else w2)

    def with_onednn(x):
        return onednn(x, wt if x.shape[1] == wt.shape[1] else w2t, None, "none", [], "")

    candidates = {"torch.mm per step": products(with_mm, seq, a, a2),
                  "torch.mm all steps at once": products(with_mm, 1, big_a, big_a2)}
    if onednn is not None:
        candidates["oneDNN per step"] = products(with_onednn, seq, a, a2)
        candidates["oneDNN all steps at once"] = products(with_onednn, 1, big_a, big_a2)
    mm_flops = seq * (2 * batch * (embed + hidden) * 4 * hidden + (layers - 1) * 2 * batch * 2 * hidden * 4 * hidden)
    matmul_s = median_times(candidates, rounds)
    per_step_s, all_steps_s = matmul_s["torch.mm per step"], matmul_s["torch.mm all steps at once"]
    mm_s = min(matmul_s.values())  # the limit: the best of them
    train_flops = 3 * mm_flops  # forward, and backward for inputs and weights
    x = torch.randn(batch, seq, embed)
    results = {}
    ours = Recurrent("lstm", embed, hidden, num_layers=layers)
    theirs = torch.nn.LSTM(embed, hidden, layers, batch_first=True)
    theirs.load_state_dict(ours.state_dict())

    def step(module):
        def go():
            out = module(x)[0]
            out.sum().backward()
        return go

    step_s = {}
    for name, module in (("rnnkit Recurrent (fused)", ours), ("torch.nn.LSTM", theirs)):
        s = step_s[name] = _median_seconds(step(module), rounds)
        results[name] = {"gflop_s": round(train_flops / s / 1e9, 1),
                         "fraction_of_matmul": round(train_flops / s / (mm_flops / mm_s), 3)}
    extra = {}
    if profile:
        limit_s = 3 * mm_s  # the step's products (forward, and backward twice) at the limit
        b = op_breakdown(step(ours), timed_s=step_s["rnnkit Recurrent (fused)"])
        extra["profile"] = {**b, "limit_s": limit_s, "matmul_over_limit": round(b["groups_s"]["matmul"] / limit_s, 3)}
    return {"shape": dict(batch=batch, seq_len=seq, embed=embed, hidden=hidden, layers=layers),
            "matmul_gflop_s": round(mm_flops / mm_s / 1e9, 1),
            "matmul_per_step_gflop_s": round(mm_flops / per_step_s / 1e9, 1),
            "matmul_all_steps_gflop_s": round(mm_flops / all_steps_s / 1e9, 1),
            "matmul_gflop_s_each": {k: round(mm_flops / v / 1e9, 1) for k, v in matmul_s.items()},
            "training_step": results, "rounds": rounds, **extra}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--profile", action="store_true",
                    help="also profile rnnkit's training step: self CPU time by op group (torch.profiler)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        shapes = [dict(batch=32, seq=32, embed=32, hidden=128, layers=2, rounds=3)]
    else:
        shapes = [dict(batch=64, seq=128, embed=64, hidden=h, layers=2, rounds=5) for h in (256, 512)]
    results = [run(**s, profile=args.profile) for s in shapes]
    out = write_report("limit", args, results=results)
    for r in results:
        s = r["shape"]
        print(f"B{s['batch']} T{s['seq_len']} E{s['embed']} H{s['hidden']} L{s['layers']}: the limit "
              f"{r['matmul_gflop_s']} GFLOP/s, the best of: "
              + ", ".join(f"{k} {v}" for k, v in r["matmul_gflop_s_each"].items()))
        for name, v in r["training_step"].items():
            print(f"  {name:28} {v['gflop_s']:>7} GFLOP/s  {v['fraction_of_matmul']:.2f} of the matmul")
        if "profile" in r:
            p = r["profile"]
            print(f"  rnnkit's step, torch.profiler: {p['timed_s'] * 1e3:.1f} ms timed, the products at the limit "
                  f"{p['limit_s'] * 1e3:.1f} ms; profiled matmul {p['groups_s']['matmul'] * 1e3:.1f} ms "
                  f"({p['matmul_over_limit']:.2f} of the limit's)")
            print("\n".join(show_breakdown(p, indent="    ")))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
