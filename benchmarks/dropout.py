"""rnnkit's CPU dropout vs torch's, on the op and in whole training steps, in one process.

On CPU ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``; rnnkit's
``rnnkit.nn.dropout.dropout`` draws uniform float32 numbers and compares them with ``p``:
the same Bernoulli(1 - p) mask, by a faster path.  ``USE_TORCH`` in that module switches every
rnnkit model back to torch's kernel (and the stacked fused kernel's own inter-layer dropout),
which is what the "torch" contestant here runs.

    python benchmarks/dropout.py            # the op, then training steps of three models
    python benchmarks/dropout.py --quick    # small shapes, seconds

Models (a step is forward, loss, backward and fused Adam, as the trainer takes it):
the CMUdict seq2seq (BiLSTM 2x512 + Luong, dropout 0.2) in bf16 autocast, as the README's
CMUdict run trains; a character LM (LSTM 2x512, dropout 0.3); the MR classifier (embedding 300,
BiLSTM 150, attention pooling, dropout 0.5).  Each contestant has its own copy of the same
weights; they alternate round by round and the medians give the ratio.  Writes
benchmarks/results/dropout[-quick].json.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import rnnkit.nn.dropout as impl
from rnnkit.models import Classifier, ClassifierConfig
from _common import median_times, parser, write_report
from precision import lm_case, seq2seq_case


def classifier_case(quick: bool):
    V, B, T = 18_000, 32, 20  # MR-sized vocabulary and sentences
    cfg = ClassifierConfig(vocab_size=V, num_classes=2, embedding_size=300, hidden_size=64 if quick else 150,
                           bidirectional=True, dropout=0.5, pooling="attention")
    g = torch.Generator().manual_seed(2)
    x, y = torch.randint(1, V, (B, T), generator=g), torch.randint(0, 2, (B,), generator=g)
    lengths = torch.full((B,), T)

    def loss(model):
        return F.cross_entropy(model(x, lengths=lengths), y)

    return f"classifier, emb 300, BiLSTM {cfg.hidden_size}, attention pooling, batch {B} x {T}", \
        (lambda: Classifier(cfg)), loss, B * T


def op_times(quick: bool, rounds: int) -> list[dict]:
    shapes = [(32, 20, 300), (128, 9, 1024)] if not quick else [(32, 20, 300)]
    rows = []
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(*shape, dtype=dtype)
            med = median_times({"torch": lambda: F.dropout(x, 0.3, training=True),
                                "rnnkit": lambda: impl.dropout(x, 0.3)}, rounds * 10)
            rows.append({"shape": list(shape), "dtype": str(dtype).removeprefix("torch."),
                         "microseconds": {k: round(v * 1e6, 1) for k, v in med.items()},
                         "ratio_rnnkit_vs_torch": round(med["torch"] / med["rnnkit"], 2)})
    return rows


def step_times(name: str, build, loss_fn, tokens: int, rounds: int, bf16: bool) -> dict:
    contestants = {}
    for which in ("torch", "rnnkit"):
        torch.manual_seed(0)
        model = build()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

        def go(model=model, opt=opt, use_torch=which == "torch"):
            impl.USE_TORCH = use_torch
            try:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = loss_fn(model)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            finally:
                impl.USE_TORCH = False
        contestants[which] = go
    med = median_times(contestants, rounds)
    return {"model": name + (", bf16" if bf16 else ""), "tokens_per_s": {k: round(tokens / t) for k, t in med.items()},
            "ratio_rnnkit_vs_torch": round(med["torch"] / med["rnnkit"], 3), "rounds": rounds}


def main() -> None:
    args = parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 10
    ops = op_times(args.quick, rounds)
    steps = [step_times(*seq2seq_case(args.quick), rounds=rounds, bf16=True),
             step_times(*lm_case(args.quick), rounds=rounds, bf16=False),
             step_times(*classifier_case(args.quick), rounds=rounds, bf16=False)]
    out = write_report("dropout", args, op=ops, steps=steps)
    print(f"{'dropout op (p 0.3)':40} {'torch us':>9} {'rnnkit us':>9} {'ratio':>6}")
    for r in ops:
        t = r["microseconds"]
        print(f"{str(tuple(r['shape'])) + ' ' + r['dtype']:40} {t['torch']:>9,.0f} {t['rnnkit']:>9,.0f} "
              f"{r['ratio_rnnkit_vs_torch']:>6.2f}")
    print(f"{'training step':70} {'torch tok/s':>11} {'rnnkit tok/s':>12} {'ratio':>6}")
    for r in steps:
        t = r["tokens_per_s"]
        print(f"{r['model']:70} {t['torch']:>11,} {t['rnnkit']:>12,} {r['ratio_rnnkit_vs_torch']:>6.3f}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
