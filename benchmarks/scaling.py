"""Scaling: how time and peak memory grow with sequence length and hidden size, training and inference.

rnnkit's ``Recurrent`` (default backend, whichever path it picks on the device; 2 layers, batch 32,
input 64), LSTM and GRU, with ``torch.nn.LSTM`` / ``torch.nn.GRU`` of the same shapes and weights as
the reference line.  Two sweeps: sequence length 64, 128, 256, 512, 1024 at hidden 256, and hidden
128, 256, 512, 1024 at length 128.  At each point:

* training step: forward, then backward of ``outputs.sum()`` (parameter gradients set to None before);
* inference: forward under ``torch.no_grad()``.

Time: in this process, rnnkit and ``torch.nn`` interleaved round by round (``median_times``), medians.

Peak memory: every (cell, implementation, mode, point) in a fresh child process
(``scaling.py --one ...``), which builds the module, warms it up on a 2-step input (library
initialisation is not counted, and nothing large has been allocated and freed yet) and then
measures the call twice:

* resident: the call's peak resident set size above the RSS right before it.  Linux's high-water
  mark ``VmHWM`` is reset to the current RSS through ``/proc/self/clear_refs`` just before the call,
  so the peak of the imports cannot hide it (elsewhere: ``ru_maxrss``, valid only when the call
  raises it, which is recorded).  This is what the OS charges, and what runs out;
* allocated: the peak of bytes held by tensors during the call above what they held before it,
  from ``torch.profiler``'s memory events (``profile_memory=True``; the running sum of every
  allocation and free of the CPU allocator, oneDNN's buffers included).  Exact, deterministic and
  independent of how malloc caches freed memory — the CPU counterpart of
  ``torch.cuda.max_memory_allocated``.

For the LSTM, resident is about half of allocated (training and inference, measured at hidden 128-256):
oneDNN's LSTM takes scratch buffers (and in training a workspace) from the allocator at their
worst-case size and writes only part of them, and pages never written never become resident.  The
plot shows both for rnnkit and the allocated peak for ``torch.nn``.

    python benchmarks/scaling.py            # both sweeps, LSTM and GRU
    python benchmarks/scaling.py --quick    # lengths 64, 128; hidden 128, 256; LSTM; under a minute

Writes benchmarks/results/scaling[-quick].json and a 2x2 plot next to it,
benchmarks/results/scaling[-quick].png (time and memory against length and hidden size, log-log),
and prints a table.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from rnnkit.nn import Recurrent
from _common import median_times, parser, write_report

BATCH, INPUT, LAYERS = 32, 64, 2
IMPLS = ("rnnkit", "torch.nn")
MODES = ("train", "infer")
TORCH_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def make(cell: str, impl: str, hidden: int) -> torch.nn.Module:
    if impl == "rnnkit":
        return Recurrent(cell, INPUT, hidden, num_layers=LAYERS)
    return TORCH_CLASSES[cell](INPUT, hidden, LAYERS, batch_first=True)


def call(module: torch.nn.Module, mode: str, x: torch.Tensor):
    """The measured call: a training step (forward and backward) or a no-grad forward."""
    if mode == "train":
        def go():
            module(x)[0].sum().backward()
    else:
        def go():
            with torch.no_grad():
                module(x)
    return go


# ---------------------------------------------------------------- memory, in a child process

def _proc_status(key: str) -> int:
    """A ``kB`` line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def resident_peak(fn) -> tuple[int, str]:
    """Peak RSS of ``fn()`` above the RSS right before it: ``(bytes, method)``."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale  # no current RSS to start from
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        return after - before, "ru_maxrss" if after > before else "ru_maxrss (not raised: a lower bound)"
    base = _proc_status("VmRSS")
    fn()
    return _proc_status("VmHWM") - base, "VmHWM"


def allocated_peak(fn) -> int:
    """Peak bytes held by CPU tensors during ``fn()`` above those held before it (torch.profiler)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        stack.extend(e.children)
        if e.typed[0] == _EventType.Allocation and e.typed[1].device.type == "cpu":
            events.append((e.start_time_ns, e.typed[1].alloc_size))  # > 0 allocation, < 0 free
    held = peak = 0
    for _, size in sorted(events):
        held += size
        peak = max(peak, held)
    return peak


def measure_one(cell: str, impl: str, mode: str, length: int, hidden: int) -> dict:
    """The child's work: both peaks of one call in this (fresh) process."""
    torch.manual_seed(0)
    module = make(cell, impl, hidden)
    x = torch.randn(BATCH, length, INPUT)
    call(module, mode, x[:, :2].contiguous())()  # warm-up: library initialisation, nothing large
    module.zero_grad(set_to_none=True)
    resident, method = resident_peak(call(module, mode, x))
    module.zero_grad(set_to_none=True)
    return {"resident_bytes": resident, "resident_method": method,
            "allocated_bytes": allocated_peak(call(module, mode, x))}


def memory_in_child(cell: str, impl: str, mode: str, length: int, hidden: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--threads", str(threads), "--one", cell, impl, mode, str(length), str(hidden)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


# ---------------------------------------------------------------- time, in this process

def time_point(cell: str, length: int, hidden: int, rounds: int) -> dict[str, float]:
    """Median seconds of ``"IMPL MODE"`` (every implementation and mode) at one point; rnnkit's weights in both."""
    torch.manual_seed(0)
    modules = {impl: make(cell, impl, hidden) for impl in IMPLS}
    modules["torch.nn"].load_state_dict(modules["rnnkit"].state_dict())
    x = torch.randn(BATCH, length, INPUT)

    def timed(impl: str, mode: str):
        go = call(modules[impl], mode, x)
        if mode == "infer":
            return go

        def step():
            modules[impl].zero_grad(set_to_none=True)
            go()
        return step

    return median_times({f"{impl} {mode}": timed(impl, mode) for mode in MODES for impl in IMPLS}, rounds)


def run(cells: list[str], lengths: list[int], hiddens: list[int], fixed_hidden: int, fixed_length: int,
        rounds: int, threads: int) -> list[dict]:
    """One row per (cell, implementation, point): time here, memory in child processes."""
    points = sorted({(n, fixed_hidden) for n in lengths} | {(fixed_length, h) for h in hiddens})
    rows = []
    for cell in cells:
        for length, hidden in points:
            med = time_point(cell, length, hidden, rounds)
            for impl in IMPLS:
                row = {"cell": cell, "impl": impl, "length": length, "hidden": hidden}
                for mode in MODES:
                    mem = memory_in_child(cell, impl, mode, length, hidden, threads)
                    seconds = med[f"{impl} {mode}"]
                    row[mode] = {"seconds": round(seconds, 5), "tokens_per_s": round(BATCH * length / seconds),
                                 "allocated_mib": round(mem["allocated_bytes"] / 2 ** 20, 2),
                                 "resident_mib": round(mem["resident_bytes"] / 2 ** 20, 2),
                                 "resident_method": mem["resident_method"]}
                rows.append(row)
    return rows


# ---------------------------------------------------------------- report

def plot(rows: list[dict], fixed_hidden: int, fixed_length: int, path: Path) -> None:
    """2x2, log-log: time (top) and memory (bottom) against length (left) and hidden size (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {("lstm", "train"): "tab:blue", ("lstm", "infer"): "tab:cyan",
               ("gru", "train"): "tab:red", ("gru", "infer"): "tab:orange"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    sweeps = [("length", "hidden", fixed_hidden, f"sequence length (hidden {fixed_hidden})"),
              ("hidden", "length", fixed_length, f"hidden size (length {fixed_length})")]
    for col, (x_key, fixed_key, fixed, xlabel) in enumerate(sweeps):
        ticks = sorted({r[x_key] for r in rows if r[fixed_key] == fixed})
        for row_i, metric in enumerate(("seconds", "memory")):
            ax = axes[row_i, col]
            for cell in dict.fromkeys(r["cell"] for r in rows):
                for mode in MODES:
                    for impl in IMPLS:
                        sel = sorted((r for r in rows if r["cell"] == cell and r["impl"] == impl
                                      and r[fixed_key] == fixed), key=lambda r: r[x_key])
                        xs = [r[x_key] for r in sel]
                        style = dict(color=colours[(cell, mode)], linestyle="-" if impl == "rnnkit" else "--",
                                     marker="o" if impl == "rnnkit" else "x", markersize=4)
                        name = f"{'rnnkit' if impl == 'rnnkit' else 'torch.nn'} {cell.upper()} {mode}"
                        if metric == "seconds":
                            ax.plot(xs, [r[mode]["seconds"] for r in sel], label=name, **style)
                            continue
                        ax.plot(xs, [r[mode]["allocated_mib"] for r in sel], label=f"{name}, allocated", **style)
                        if impl == "rnnkit":
                            ax.plot(xs, [r[mode]["resident_mib"] for r in sel], label=f"{name}, resident",
                                    color=colours[(cell, mode)], linestyle=":", marker=".", alpha=0.8)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(ticks, [str(v) for v in ticks])
            ax.minorticks_off()
            ax.set_xlabel(xlabel)
            ax.set_ylabel("seconds per call" if metric == "seconds" else "peak MiB above the inputs")
            ax.grid(True, which="both", alpha=0.3)
            if col == 1:  # one legend per row, outside the panels
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    threads = torch.get_num_threads()
    fig.suptitle(f"{LAYERS}-layer RNN, batch {BATCH}, input {INPUT}: training step (forward + backward) "
                 f"and no-grad inference, {threads} CPU thread{'s' if threads != 1 else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def print_tables(rows: list[dict]) -> None:
    print(f"{'cell':5} {'impl':9} {'length':>6} {'hidden':>6} | {'train ms':>9} {'infer ms':>9} | "
          f"{'train MiB alloc/resident':>25} | {'infer MiB alloc/resident':>25}")
    for r in rows:
        t, i = r["train"], r["infer"]
        print(f"{r['cell']:5} {r['impl']:9} {r['length']:>6} {r['hidden']:>6} | {t['seconds'] * 1e3:>9.1f} "
              f"{i['seconds'] * 1e3:>9.1f} | {t['allocated_mib']:>12.1f} / {t['resident_mib']:<10.1f} | "
              f"{i['allocated_mib']:>12.1f} / {i['resident_mib']:<10.1f}")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cells", nargs="+", choices=sorted(TORCH_CLASSES), help="[lstm gru; --quick: lstm]")
    ap.add_argument("--rounds", type=int, help="timing rounds per point [3]")
    ap.add_argument("--one", nargs=5, metavar=("CELL", "IMPL", "MODE", "LENGTH", "HIDDEN"),
                    help=argparse.SUPPRESS)  # the child process: measure one call's memory, print JSON
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        cell, impl, mode, length, hidden = args.one
        print(json.dumps(measure_one(cell, impl, mode, int(length), int(hidden))))
        return
    if args.quick:
        sweep = dict(cells=args.cells or ["lstm"], lengths=[64, 128], hiddens=[128, 256])
    else:
        sweep = dict(cells=args.cells or ["lstm", "gru"], lengths=[64, 128, 256, 512, 1024],
                     hiddens=[128, 256, 512, 1024])
    fixed = dict(fixed_hidden=256, fixed_length=128)
    rows = run(**sweep, **fixed, rounds=args.rounds or 3, threads=args.threads)
    out = write_report("scaling", args, shape=dict(batch=BATCH, input=INPUT, layers=LAYERS), **sweep, **fixed,
                       memory_method="peak above the call's start, fresh child process per call: allocated = "
                                     "torch.profiler memory events, resident = VmHWM reset via clear_refs",
                       results=rows)
    png = out.with_suffix(".png")
    plot(rows, fixed["fixed_hidden"], fixed["fixed_length"], png)
    print_tables(rows)
    print(f"written to {out} and {png}")


if __name__ == "__main__":
    main()
