"""What the benchmark scripts share: options, interleaved timing with its spread, the JSON report.

Scripts run as ``python benchmarks/NAME.py``, so this module is imported as ``_common``.

A speed ratio from one run can move a lot from one run to the next (another process on the
cores, the clock, the memory placement), so the scripts report how far it moved within the run:
:func:`timings` keeps every round's seconds and the ratio of each round (both contestants of a
round see the same machine state), and :func:`write_report` records the machine and its load
beside the figures.  ``docs/benchmarks.md`` ("Telling a change from noise") says how to read them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

BUSY_FRACTION = 0.5  # a 1-minute load average above this share of the logical CPUs: the machine is busy
BUSY_WARNING = "machine busy: ratios may not hold"


def parser(doc: str, repeats: bool = False) -> argparse.ArgumentParser:
    """``--quick``, ``--threads`` and ``--out``; with ``repeats``, ``--repeats`` too; the script adds its own.

    Only scripts that repeat their whole measurement ask for ``--repeats``, so that elsewhere
    the option is refused rather than silently ignored.
    """
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, a smoke run")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads [2]")
    ap.add_argument("--out", type=Path, help="JSON file to write [benchmarks/results/NAME[-quick].json]")
    if repeats:
        ap.add_argument("--repeats", type=_positive_int, default=1,
                        help="run the whole measurement N times and report each run's ratio [1]")
    return ap


def _positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return n


# ---------------------------------------------------------------------------------------------- timing

def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 to 1) of ``values``, interpolated linearly between order statistics
    (numpy's default): ``quantile([1, 2, 3, 4], 0.25) == 1.75``."""
    if not values:
        raise ValueError("quantile of no values")
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def timings(contestants: dict[str, Callable[[], Any]], rounds: int, warm_up: bool = True,
            clock: Optional[Callable[[], float]] = None, sync: Optional[Callable[[], None]] = None,
            deadline: Optional[float] = None) -> dict[str, Any]:
    """Time each contestant ``rounds`` times, interleaved round by round (after one warm-up call each).

    Returns ``{"rounds", "contestants", "ratios"}``:

    * ``contestants[name]``: ``median``, ``min``, ``max``, ``q1``, ``q3``, ``iqr`` (``q3 - q1``) and
      ``seconds``, the raw seconds of each round in order;
    * ``ratios[a][b]`` for every pair: ``b``'s seconds over ``a``'s in each round, so above 1 where
      ``a`` ran faster: ``median``, ``min``, ``max`` and ``per_round``.  A ratio within one round
      compares two calls made moments apart on the same machine state, which a ratio of medians
      taken over the whole run does not.

    ``clock`` (default ``time.perf_counter``) is read before and after each call.  ``sync`` runs
    after each call, inside its time (on a GPU: wait for the kernels it queued).  Once ``clock()``
    has passed ``deadline``, no further round starts; at least one runs, and ``rounds`` in the
    result says how many did.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    clock = clock or time.perf_counter
    sync = sync or (lambda: None)
    if warm_up:
        for fn in contestants.values():
            fn()
        sync()
    seconds: dict[str, list[float]] = {k: [] for k in contestants}
    done = 0
    while done < rounds and (done == 0 or deadline is None or clock() <= deadline):
        for k, fn in contestants.items():
            t = clock()
            fn()
            sync()
            seconds[k].append(clock() - t)
        done += 1
    stats = {}
    for k, v in seconds.items():
        q1, q3 = quantile(v, 0.25), quantile(v, 0.75)
        stats[k] = {**spread(v), "q1": q1, "q3": q3, "iqr": q3 - q1, "seconds": v}
    ratios: dict[str, dict[str, Any]] = {a: {} for a in seconds}
    for a in seconds:
        for b in seconds:
            if a != b:
                per_round = [tb / ta if ta > 0 else float("inf") for ta, tb in zip(seconds[a], seconds[b])]
                ratios[a][b] = {**spread(per_round), "per_round": per_round}
    return {"rounds": done, "contestants": stats, "ratios": ratios}


def median_times(contestants: dict[str, Callable[[], Any]], rounds: int, warm_up: bool = True) -> dict[str, float]:
    """Median seconds of each contestant, run interleaved round by round (after one warm-up call each)."""
    return {k: v["median"] for k, v in timings(contestants, rounds, warm_up)["contestants"].items()}


def repeated_ratio(runs: Sequence[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """How much faster ``a`` ran than ``b`` over repeats of a measurement (each a :func:`timings` result).

    ``per_repeat``: each repeat's ratio (the median of its per-round ratios); ``median``, ``min``
    and ``max`` of those; ``per_round``: median, min and max over every round of every repeat.
    A claim "at least X" holds across the repeats where ``min`` is at least X.
    """
    per_repeat = [r["ratios"][a][b]["median"] for r in runs]
    rounds = [x for r in runs for x in r["ratios"][a][b]["per_round"]]
    return {**spread(per_repeat), "per_repeat": per_repeat, "per_round": spread(rounds)}


def pooled_median(runs: Sequence[dict[str, Any]], name: str) -> float:
    """The median seconds of ``name`` over every round of every repeat."""
    return statistics.median(x for r in runs for x in r["contestants"][name]["seconds"])


def show_spread(s: dict[str, float], digits: int = 2) -> str:
    """``median [min-max]`` of a :func:`spread`, e.g. ``1.43 [1.20-1.61]``."""
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


# ------------------------------------------------------------------------------------------- profile

OP_GROUPS = ("matmul", "elementwise", "copies", "optimizer", "other")

_ENGINE = "autograd::engine::evaluate_function:"
_OPTIMIZER = re.compile(r"optimizer\.|adam|_foreach_|clip_grad|linalg_vector_norm")
_GROUP_PATTERNS = (  # matched in full against the op's base name (see op_group)
    ("matmul", re.compile(r"mm|addmm|bmm|baddbmm|addbmm|matmul|linear|linear_pointwise|linearfunction"
                          r"|mkldnn_?rnn\w*|lstm|gru|rnn_tanh|rnn_relu")),
    ("copies", re.compile(r"copy|to_copy|copy_from\w*|to|cat|stack|contiguous|clone|repeat\w*")),
    ("elementwise", re.compile(r"sigmoid|tanh|mul|add|sub|rsub|div|exp|log|log_softmax|softmax|neg|sqrt|rsqrt"
                               r"|pow|clamp\w*|where|fill|zero|relu|threshold|bitwise_\w+|logical_\w+"
                               r"|masked_fill|sum|mean|amax|max|min|eq|ne|lt|gt|le|ge|abs|sign|\w*dropout"
                               r"|bernoulli|uniform|nll_loss\w*|cross_entropy_loss|gather|scatter\w*|lerp"
                               r"|addcmul|addcdiv|maximum|minimum|reciprocal|square|erf|gelu|silu|softplus")),
)


def op_group(name: str) -> str:
    """The group of a torch.profiler event: one of :data:`OP_GROUPS`.

    ``optimizer``: Adam and clipping (``Optimizer.step``, ``_fused_adam_``, ``_foreach_*``, the norms);
    otherwise by the op's base name, the namespace and an autograd node's ``Backward`` suffix
    dropped (``MulBackward0`` counts as ``mul``, ``aten::mkldnn_rnn_layer_backward`` as the layer):
    ``matmul`` (mm, addmm, bmm, linear, matmul, oneDNN's linear and RNN layers, which run their gate
    arithmetic inside), ``copies`` (copy_, cat, stack, contiguous, clone), ``elementwise``
    (sigmoid, tanh, mul, add, softmax, ...) and ``other`` (views, allocation, embedding lookups,
    Python autograd functions, and autograd's engine wrappers, whose self time is the engine's own).
    """
    low = name.lower()
    if _OPTIMIZER.search(low):
        return "optimizer"
    if low.startswith(_ENGINE):
        return "other"
    base = low.split("::")[-1]
    base = re.sub(r"_?backward(\d*|_data|_input)$", "", base).strip("_")
    for group, pattern in _GROUP_PATTERNS:
        if pattern.fullmatch(base):
            return group
    return "other"


def op_breakdown(fn: Callable[[], Any], per: int = 1, top: int = 15,
                 timed_s: Optional[float] = None) -> dict[str, Any]:
    """Profile one call of ``fn`` (torch.profiler, CPU) and sum each op's self CPU time by :func:`op_group`.

    Returns ``self_cpu_s`` (the total, divided by ``per``: the steps one call runs), ``groups`` (each
    group's fraction of the total; they sum to 1), ``groups_s`` (seconds per step) and ``top_ops``: the
    ``top`` ops by self CPU time, each with its group, seconds per step, fraction and calls per step.
    Given ``timed_s``, the step's seconds timed without the profiler, also ``timed_s`` and ``of_timed``:
    the profiled self time over it (below 1 by the Python between ops).
    Self times add up to the profiled time without counting any of it twice; the profiler's own cost
    per op makes many small ops weigh more than they do unprofiled.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]  # microseconds
    total = sum(t for _, t, _ in events) or 1.0
    sums = dict.fromkeys(OP_GROUPS, 0.0)
    for key, t, _ in events:
        sums[op_group(key)] += t
    events.sort(key=lambda e: -e[1])
    timed = {} if timed_s is None else {"timed_s": timed_s, "of_timed": round(total / 1e6 / per / timed_s, 3)}
    return {"self_cpu_s": total / 1e6 / per, **timed,
            "groups": {g: round(v / total, 4) for g, v in sums.items()},
            "groups_s": {g: v / 1e6 / per for g, v in sums.items()},
            "top_ops": [{"op": key, "group": op_group(key), "self_cpu_s": t / 1e6 / per,
                         "fraction": round(t / total, 4), "calls": count / per}
                        for key, t, count in events[:top]]}


def show_breakdown(b: dict[str, Any], top: int = 8, indent: str = "  ") -> list[str]:
    """Lines of text for an :func:`op_breakdown`: the groups, then the ``top`` ops."""
    covers = f" ({b['of_timed']:.2f} of the timed step)" if "of_timed" in b else ""
    lines = [f"{indent}self CPU {b['self_cpu_s'] * 1e3:.1f} ms per step{covers}: "
             + ", ".join(f"{g} {f:.2f}" for g, f in b["groups"].items())]
    for op in b["top_ops"][:top]:
        lines.append(f"{indent}  {op['fraction']:>6.1%}  {op['self_cpu_s'] * 1e3:>8.2f} ms  {op['calls']:>7g} calls  "
                     f"{op['group']:11} {op['op'][:70]}")
    return lines


# ----------------------------------------------------------------------------------------- environment

def load_average() -> Optional[list[float]]:
    """The 1-, 5- and 15-minute load averages, or None where the OS gives none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def logical_cpus() -> Optional[int]:
    return os.cpu_count()


def busy_warning(load: Optional[Sequence[float]], cpus: Optional[int]) -> Optional[str]:
    """:data:`BUSY_WARNING` with the figures where the 1-minute ``load`` exceeds
    :data:`BUSY_FRACTION` of ``cpus``, else None."""
    if not load or not cpus or load[0] <= BUSY_FRACTION * cpus:
        return None
    return f"{BUSY_WARNING} (1-minute load average {load[0]:.2f} at start, {cpus} logical CPUs)"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()`` (or the architecture)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_mhz() -> Optional[list[float]]:
    """The current clock of each logical CPU in MHz, from /proc/cpuinfo or /sys; None where neither says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            mhz = [float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz")]
        if mhz:
            return [round(x) for x in mhz]
    except (OSError, ValueError):
        pass
    found = []
    for path in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"),
                       key=lambda p: int(p.parent.parent.name[3:])):
        try:
            found.append(round(int(path.read_text()) / 1000))  # kHz
        except (OSError, ValueError):
            return None
    return found or None


def torch_libraries() -> dict[str, Any]:
    """oneDNN and MKL: whether torch has them and which versions its build reports."""
    info: dict[str, Any] = {}
    try:
        info["mkldnn_available"] = bool(torch.backends.mkldnn.is_available())
        info["mkl_available"] = bool(torch.backends.mkl.is_available())
    except AttributeError:
        pass
    try:
        shown = torch.__config__.show()
    except Exception as e:  # noqa: BLE001 - a torch build may lack or break it; the report goes on
        info["config_error"] = repr(e)
        return info
    for key, pattern in (("onednn_version", r"(?:MKL-DNN|oneDNN)\s+v?([\w.]+)"),
                         ("mkl_version", r"Math Kernel Library Version\s+([\w.]+)"),
                         ("cpu_capability", r"CPU capability usage:\s*(\S+)")):
        m = re.search(pattern, shown)
        if m:
            info[key] = m.group(1)
    return info


def kernel_choices() -> Any:
    """rnnkit's per-machine kernel choices in force (``rnnkit.nn.onednn.kernel_choices``), or why not."""
    try:
        from rnnkit.nn.onednn import kernel_choices as choices

        return choices()
    except Exception as e:  # noqa: BLE001 - rnnkit missing or broken must not lose the figures
        return {"error": repr(e)}


def _snapshot() -> dict[str, Any]:
    return {"utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average": load_average(), "cpu_mhz": cpu_mhz()}


_START: dict[str, Any] = {}


def mark_start() -> Optional[str]:
    """Record the load average and clock before the measurement (done when this module is imported;
    a script may call it again just before it starts timing).  Prints and returns the busy warning,
    if any."""
    _START.clear()
    _START.update(_snapshot())
    warning = busy_warning(_START["load_average"], logical_cpus())
    _START["warning"] = warning
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return warning


def environment() -> dict[str, Any]:
    """The machine, its load before and now, torch's build and threads, rnnkit's kernel choices,
    the RNNKIT_* variables, the date and the command line: what a ratio depends on."""
    if not _START:
        mark_start()
    env: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cpus": logical_cpus(),
        "start": {k: v for k, v in _START.items() if k != "warning"},
        "end": _snapshot(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        **torch_libraries(),
        "rnnkit_kernel_choices": kernel_choices(),
        "rnnkit_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("RNNKIT_")},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": list(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "warnings": [w for w in [_START.get("warning")] if w],
    }
    try:
        env["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return env


def write_report(name: str, args: argparse.Namespace, **payload: Any) -> Path:
    """``benchmarks/results/NAME[-quick].json`` (or ``--out``): the payload, the torch version, threads and
    machine, and under ``environment`` what :func:`environment` records."""
    env = environment()
    report = {"benchmark": name, "torch": torch.__version__, "threads": args.threads,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", **payload,
              "environment": env}
    out = args.out or Path(__file__).parent / "results" / f"{name}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out


mark_start()
