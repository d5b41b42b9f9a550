"""What the benchmark scripts share: options, interleaved timing, the JSON report.

Scripts run as ``python benchmarks/NAME.py``, so this module is imported as ``_common``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch


def parser(doc: str) -> argparse.ArgumentParser:
    """``--quick``, ``--threads`` and ``--out``; the script adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, a smoke run")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads [2]")
    ap.add_argument("--out", type=Path, help="JSON file to write [benchmarks/results/NAME[-quick].json]")
    return ap


def median_times(contestants: dict[str, Callable[[], Any]], rounds: int, warm_up: bool = True) -> dict[str, float]:
    """Median seconds of each contestant, run interleaved round by round (after one warm-up call each)."""
    if warm_up:
        for fn in contestants.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(rounds):
        for k, fn in contestants.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def write_report(name: str, args: argparse.Namespace, **payload: Any) -> Path:
    """``benchmarks/results/NAME[-quick].json`` (or ``--out``) with the torch version, threads and machine."""
    report = {"benchmark": name, "torch": torch.__version__, "threads": args.threads,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", **payload}
    out = args.out or Path(__file__).parent / "results" / f"{name}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out
