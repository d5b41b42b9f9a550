"""The loss's gradient written out vs autograd through ``F.cross_entropy``, on the op and in training steps.

``rnnkit.losses.sequence_nll`` computes the per-token cross-entropy (with label smoothing) and, on
CPU, its gradient in one function: ``g * (softmax - smoothed target)`` from the saved
log-probabilities, two passes over the ``(tokens, vocabulary)`` logits. Autograd's backward of
``F.cross_entropy`` builds the target's gradient in a zeroed tensor and runs log-softmax's
backward over it. ``rnnkit.losses.USE_TORCH`` switches training back to the latter, which is
what the "autograd" contestant runs.

    python benchmarks/loss.py            # the op at four shapes, then training steps of six Keras-table rows
    python benchmarks/loss.py --ops-only # the op only, under a minute
    python benchmarks/loss.py --quick    # small shapes, seconds

The op: forward and backward of ``sequence_nll`` on float32 logits, label smoothing 0 and 0.1, each
path at every shape (``WRITTEN_OUT_MIN``, below which training keeps autograd's path, set aside).
The steps: rnnkit's ``Trainer`` on the rows of ``peer_keras.py`` whose loss is ``sequence_nll`` (the
character LMs, the tagger, the GRU seq2seq with its 8,000-word output layer), the same batches and
weights for both contestants, interleaved round by round. Writes benchmarks/results/loss[-quick].json.
"""
from __future__ import annotations

import copy

import torch

import rnnkit.losses as impl
from _common import parser, show_spread, timings, write_report
from peer_keras import make_batches, rnnkit_model, rnnkit_steps, rows


def op_times(quick: bool, rounds: int) -> list[dict]:
    shapes = [(64 * 24, 8000), (64 * 128, 65), (64 * 40, 10_000), (128 * 9, 43)]  # seq2seq, char LM, word LM, G2P
    if quick:
        shapes = [(16 * 12, 1000), (16 * 32, 65)]
    out = []
    for N, V in shapes:
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(1, N, V, generator=g)
        targets = torch.randint(0, V, (1, N), generator=g)
        for smoothing in (0.0, 0.1):
            def run(use_torch: bool, smoothing=smoothing, logits=logits, targets=targets) -> None:
                impl.USE_TORCH, threshold, impl.WRITTEN_OUT_MIN = use_torch, impl.WRITTEN_OUT_MIN, 0
                try:
                    x = logits.clone().requires_grad_(True)
                    total, _ = impl.sequence_nll(x, targets, label_smoothing=smoothing)
                    total.backward()
                finally:
                    impl.USE_TORCH, impl.WRITTEN_OUT_MIN = False, threshold
            t = timings({"autograd": lambda: run(True), "written-out": lambda: run(False)}, rounds)
            med = {k: v["median"] for k, v in t["contestants"].items()}
            out.append({"tokens": N, "vocabulary": V, "label_smoothing": smoothing,
                        "milliseconds": {k: round(v * 1e3, 3) for k, v in med.items()},
                        "ratio": t["ratios"]["written-out"]["autograd"]})
    return out


def step_times(quick: bool, rounds: int, steps: int) -> list[dict]:
    out = []
    for row in rows(quick):
        if row.kind == "classifier":
            continue  # its loss is one label a sentence, not sequence_nll
        source, _ = make_batches(row, steps)
        torch.manual_seed(0)
        model = rnnkit_model(row)
        models = {"autograd": model, "written-out": copy.deepcopy(model)}

        def run(name: str, row=row, models=models, source=source) -> None:
            impl.USE_TORCH = name == "autograd"
            try:
                rnnkit_steps(models[name], source, steps)()
            finally:
                impl.USE_TORCH = False
        t = timings({name: (lambda name=name: run(name)) for name in models}, rounds)
        med = {k: v["median"] for k, v in t["contestants"].items()}
        out.append({"row": row.name, "steps_per_round": steps,
                    "milliseconds_per_step": {k: round(v * 1e3 / steps, 2) for k, v in med.items()},
                    "ratio": t["ratios"]["written-out"]["autograd"]})
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--ops-only", action="store_true", help="time the op only (writes loss-ops[-quick].json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 15
    ops = op_times(args.quick, rounds * 2)
    steps = [] if args.ops_only else step_times(args.quick, rounds, 2 if args.quick else 5)
    path = write_report("loss-ops" if args.ops_only else "loss", args, op=ops, steps=steps)
    print(f"{'op: tokens x vocabulary, smoothing':40} {'autograd ms':>11} {'written ms':>10}  ratio [min-max]")
    for r in ops:
        t = r["milliseconds"]
        print(f"{r['tokens']:>6} x {r['vocabulary']:<6} {r['label_smoothing']:<24} {t['autograd']:>11.3f} "
              f"{t['written-out']:>10.3f}  {show_spread(r['ratio'])}")
    print(f"{'training step':40} {'autograd ms':>11} {'written ms':>10}  ratio [min-max]")
    for r in steps:
        t = r["milliseconds_per_step"]
        print(f"{r['row']:40} {t['autograd']:>11.2f} {t['written-out']:>10.2f}  {show_spread(r['ratio'])}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
