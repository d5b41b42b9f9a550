"""Modern cells: training and generation speed and peak memory of every cell in the table, against LSTM and GRU.

Each cell of ``rnnkit.nn.CELL_NAMES`` as a ``Recurrent`` of the shapes of ``benchmarks/scaling.py``
(2 layers, batch 32, input 64, hidden 256; default backend: the parallel form for minGRU, minLSTM,
LRU and mLSTM, sLSTM's tight loop, torch's kernels or ``rnnkit.nn.scan`` for RNN / LSTM / GRU):

* training: tokens per second of a step (forward, then backward of ``outputs.sum()``, gradients set
  to None before) at sequence lengths 128, 512, 2048 and 8192, all cells interleaved round by round
  (``median_times``), medians; ratios to rnnkit's LSTM and GRU at the same point;
* generation: tokens per second stepping one token at a time with the state carried (what
  ``LanguageModel.step`` does) under ``torch.inference_mode()``, at batch 1 and 64;
* peak memory of the training step: in a fresh child process per (cell, length), as scaling.py
  measures it (bytes held by tensors from torch.profiler's memory events, and resident set size),
  all of them before the timing starts, so that no child runs beside a parent that holds gigabytes.

    python benchmarks/modern_cells.py            # the full sweep (long: lengths up to 8192)
    python benchmarks/modern_cells.py --quick    # tiny shapes, lengths 32 and 64: a smoke run
    python benchmarks/modern_cells.py --cells lstm gru mlstm --lengths 128 512 --no-memory   # a part

Writes benchmarks/results/modern_cells[-quick].json and prints a table.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import time

import torch

from rnnkit.nn import CELL_NAMES, Recurrent
from _common import median_times, parser, write_report
from scaling import allocated_peak, resident_peak

FULL = dict(batch=32, input=64, hidden=256, layers=2, lengths=[128, 512, 2048, 8192], gen_batches=[1, 64],
            gen_steps=200)
QUICK = dict(batch=4, input=16, hidden=32, layers=2, lengths=[32, 64], gen_batches=[1, 64], gen_steps=20)
BASELINES = ("lstm", "gru")


def make(cell: str, shape: dict) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(cell, shape["input"], shape["hidden"], num_layers=shape["layers"])


def train_step(module: Recurrent, x: torch.Tensor):
    """The measured call: forward and backward of ``outputs.sum()``, parameter gradients reset first."""
    def go():
        module.zero_grad(set_to_none=True)
        module(x)[0].sum().backward()
    return go


def generate(module: Recurrent, batch: int, steps: int, inputs: int):
    """``steps`` single-token steps of ``batch`` rows, the state carried from step to step."""
    xs = torch.randn(steps, batch, 1, inputs)

    def go():
        with torch.inference_mode():
            state = None
            for x in xs:
                _, state = module(x, state=state)
    return go


# ---------------------------------------------------------------- memory, in a child process

def measure_one(cell: str, length: int, shape: dict) -> dict:
    """The child's work: both peaks of one training step in this (fresh) process."""
    module = make(cell, shape)
    x = torch.randn(shape["batch"], length, shape["input"])
    train_step(module, x[:, :2].contiguous())()  # warm-up: library initialisation, nothing large
    resident, method = resident_peak(train_step(module, x))
    return {"resident_bytes": resident, "resident_method": method,
            "allocated_bytes": allocated_peak(train_step(module, x))}


def memory_in_child(cell: str, length: int, quick: bool, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--threads", str(threads), "--one", cell, str(length)] + (["--quick"] if quick
                                                                                                else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


# ---------------------------------------------------------------- the sweep

def release_memory() -> None:
    """Hand freed heap back to the system (glibc keeps it otherwise), so that a child measuring memory after a
    long sequence here does not find this process still holding gigabytes."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run(cells: list[str], shape: dict, rounds: int, threads: int, quick: bool, memory: bool) -> dict:
    # memory first, each (cell, length) in its own child, while this process holds nothing large
    peaks = {(cell, length): memory_in_child(cell, length, quick, threads)
             for length in shape["lengths"] for cell in cells} if memory else {}
    modules = {cell: make(cell, shape) for cell in cells}
    training = []
    for length in shape["lengths"]:
        x = torch.randn(shape["batch"], length, shape["input"])
        t0 = time.perf_counter()
        med = median_times({cell: train_step(m, x) for cell, m in modules.items()}, rounds)
        for cell in cells:
            row = {"cell": cell, "length": length, "seconds": round(med[cell], 5),
                   "tokens_per_s": round(shape["batch"] * length / med[cell])}
            for base in BASELINES:
                if base in med:
                    row[f"vs_{base}"] = round(med[base] / med[cell], 3)  # > 1: faster than the baseline
            if memory:
                mem = peaks[cell, length]
                row.update(allocated_mib=round(mem["allocated_bytes"] / 2 ** 20, 2),
                           resident_mib=round(mem["resident_bytes"] / 2 ** 20, 2),
                           resident_method=mem["resident_method"])
            training.append(row)
        del x
        release_memory()
        print(f"length {length}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    generation = []
    for batch in shape["gen_batches"]:
        med = median_times({cell: generate(m, batch, shape["gen_steps"], shape["input"])
                            for cell, m in modules.items()}, rounds)
        for cell in cells:
            row = {"cell": cell, "batch": batch, "tokens_per_s": round(batch * shape["gen_steps"] / med[cell])}
            for base in BASELINES:
                if base in med:
                    row[f"vs_{base}"] = round(med[base] / med[cell], 3)
            generation.append(row)
    return {"training": training, "generation": generation}


def print_tables(res: dict) -> None:
    print(f"{'cell':8} {'length':>6} | {'train tok/s':>11} {'vs LSTM':>8} {'vs GRU':>7} | {'MiB alloc/resident':>20}")
    for r in res["training"]:
        mem = f"{r['allocated_mib']:.1f} / {r['resident_mib']:.1f}" if "allocated_mib" in r else "-"
        print(f"{r['cell']:8} {r['length']:>6} | {r['tokens_per_s']:>11} {r.get('vs_lstm', '-'):>8} "
              f"{r.get('vs_gru', '-'):>7} | {mem:>20}")
    print(f"\n{'cell':8} {'batch':>6} | {'gen tok/s':>11} {'vs LSTM':>8} {'vs GRU':>7}")
    for r in res["generation"]:
        print(f"{r['cell']:8} {r['batch']:>6} | {r['tokens_per_s']:>11} {r.get('vs_lstm', '-'):>8} "
              f"{r.get('vs_gru', '-'):>7}")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cells", nargs="+", choices=CELL_NAMES, help="[all of rnnkit.nn.CELL_NAMES]")
    ap.add_argument("--lengths", nargs="+", type=int,
                    help="training sequence lengths [128 512 2048 8192; --quick: 32 64]")
    ap.add_argument("--rounds", type=int, help="timing rounds per point [3; --quick: 2]")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--one", nargs=2, metavar=("CELL", "LENGTH"),
                    help=argparse.SUPPRESS)  # the child process: measure one training step's memory, print JSON
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = dict(QUICK if args.quick else FULL)
    if args.lengths:
        shape["lengths"] = args.lengths
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), shape)))
        return
    cells = list(args.cells or CELL_NAMES)
    res = run(cells, shape, args.rounds or (2 if args.quick else 3), args.threads, args.quick, not args.no_memory)
    out = write_report("modern_cells", args, shape=shape, cells=cells,
                       memory_method="training step, fresh child process per (cell, length): allocated = "
                                     "torch.profiler memory events, resident = VmHWM reset via clear_refs",
                       **res)
    print_tables(res)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
