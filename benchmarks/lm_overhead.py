"""Language-model training speed: rnnkit vs a bare PyTorch loop, and reference vs fused backend.

One process, contestants interleaved round by round, medians reported as ratios.

    python benchmarks/lm_overhead.py            # full: hidden 256 and 512, batch 64, 128 steps
    python benchmarks/lm_overhead.py --quick    # small shapes, under a minute
    python benchmarks/lm_overhead.py --device cuda [--precision bf16]   # on a GPU: vs cuDNN's LSTM

On a GPU the bare loop's ``torch.nn.LSTM`` runs cuDNN, and so does rnnkit's fused backend.

Writes benchmarks/results/lm_overhead[-quick].json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from rnnkit.batching import StreamBatches
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.trainer import TrainConfig, Trainer
from _common import environment

VOCAB = 65


class BareLM(nn.Module):
    """What a user would write by hand: embedding, torch.nn.LSTM, linear."""

    def __init__(self, hidden: int, layers: int, embed: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, embed)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, VOCAB)

    def forward(self, x, hx):
        y, hx = self.rnn(self.emb(x), hx)
        return self.out(y), hx


def bare_steps(model, opt, data, n, device="cpu", dtype=None):
    """n training steps of the hand-written loop (TBPTT, clipping, Adam)."""
    it, hx = iter(data), None
    for _ in range(n):
        b = next(it)
        inputs, targets = b.inputs.to(device, non_blocking=True), b.targets.to(device, non_blocking=True)
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            logits, hx = model(inputs, hx)
            loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB).float(), targets.reshape(-1))
        hx = tuple(h.detach() for h in hx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()


def rnnkit_steps(model, data, n, device="cpu", precision="fp32"):
    """n steps through rnnkit's Trainer, exactly as `rnnkit train lm` runs them (no eval, no files)."""
    cfg = TrainConfig(max_steps=n, lr=2e-3, clip_norm=5.0, eval_every=10 ** 9, device=str(device),
                      precision=precision)
    Trainer(model, cfg, data, progress=False, log=lambda s: None).fit()


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()  # GPU work is asynchronous: count it before stopping the clock
    return time.perf_counter() - t


def run(hidden: int, layers: int, embed: int, batch: int, seq: int, steps: int, rounds: int,
        device: str = "cpu", precision: str = "fp32") -> dict:
    torch.manual_seed(0)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    ids = torch.randint(0, VOCAB, (batch * seq * (steps + 2) + batch,))
    data = lambda: StreamBatches(ids, batch, seq)  # noqa: E731
    bare = BareLM(hidden, layers, embed).to(device)
    bare_opt = torch.optim.Adam(bare.parameters(), lr=2e-3, fused=True)  # the trainer's Adam kernel too
    cfg = dict(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, embedding_size=embed)
    fused = LanguageModel(LanguageModelConfig(**cfg))
    ref = LanguageModel(LanguageModelConfig(**cfg, backend="reference"))
    contestants = {
        "bare torch.nn.LSTM loop": lambda: bare_steps(bare, bare_opt, data(), steps, device, dtype),
        "rnnkit (fused)": lambda: rnnkit_steps(fused, data(), steps, device, precision),
        "rnnkit (reference cells)": lambda: rnnkit_steps(ref, data(), steps, device, precision),
    }
    if torch.device(device).type != "cpu":  # the step-by-step cells are for teaching, not for GPUs
        del contestants["rnnkit (reference cells)"]
    for fn in contestants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(rounds):
        for k, fn in contestants.items():
            times[k].append(timed(fn))
    tokens = batch * seq * steps
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["bare torch.nn.LSTM loop"]
    return {
        "shape": dict(hidden=hidden, layers=layers, embed=embed, batch=batch, seq_len=seq),
        "tokens_per_s": {k: round(tokens / v) for k, v in med.items()},
        "ratio_vs_bare": {k: round(base / v, 3) for k, v in med.items()},
        "rounds": rounds, "steps_per_round": steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | mps [cpu]")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        shapes = [dict(hidden=128, layers=2, embed=32, batch=32, seq=32, steps=5, rounds=3)]
    else:
        shapes = [dict(hidden=h, layers=2, embed=64, batch=64, seq=128, steps=8, rounds=5) for h in (256, 512)]
    results = [run(**s, device=args.device, precision=args.precision) for s in shapes]
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads"
    if torch.device(args.device).type == "cuda":
        machine = torch.cuda.get_device_name() + f", {args.precision}"
    report = {"benchmark": "lm_overhead", "torch": torch.__version__, "threads": args.threads,
              "device": args.device, "precision": args.precision, "machine": machine, "results": results,
              "environment": environment()}
    suffix = ("-quick" if args.quick else "") + ("" if args.device == "cpu" else f"-{args.device}-{args.precision}")
    out = args.out or Path(__file__).parent / "results" / f"lm_overhead{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'shape':32} {'contestant':26} {'tokens/s':>10} {'vs bare':>8}")
    for r in results:
        s = r["shape"]
        shape = f"B{s['batch']} T{s['seq_len']} H{s['hidden']} L{s['layers']} E{s['embed']}"
        for k, v in r["tokens_per_s"].items():
            print(f"{shape:32} {k:26} {v:>10,} {r['ratio_vs_bare'][k]:>8.3f}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
