"""The GRU and LSTM scans' time loops in C++ (``csrc/scan.cpp``), built on this machine the first time they are used.

Why compiled: ``rnnkit.nn.scan``'s ``Scan`` (GRU) and ``LSTMScan`` in Python dispatch about a dozen ATen operations per step in
forward and twenty in backward, each a few microseconds of Python and dispatch and each a pass over
memory; the products it needs are already at the matmul limit (``benchmarks/limit.py --profile``).  The
C++ loops make the same product calls (oneDNN's matmul or ``addmm``, chosen as ``rnnkit.nn.onednn.linear``
chooses) and do each step's element-wise work in one fused pass.  They round differently from the Python
loops (their sigmoid is ``1 / (1 + exp(-a))`` compiled here, not ATen's), so which loops ran is a kernel
choice that a run folder records (``rnnkit.nn.onednn.kernel_choices``).

Built with ``torch.utils.cpp_extension`` (a C++ compiler and ``ninja`` are needed; ``pip install ninja``
gives the latter) into ``$RNNKIT_BUILD_DIR`` (default ``~/.cache/rnnkit/build``), once per source,
torch version and CPU model; later processes load the built library in milliseconds.  Not at install
time: the library must match the installed torch exactly, which a pip build, in its isolated environment,
cannot guarantee.  Where the build fails, ``available()`` is False, the reason is kept in ``build_error()``,
and rnnkit runs the Python loops (or oneDNN's LSTM primitive) instead.  ``RNNKIT_COMPILED=0`` turns the
compiled loops off without trying to build them.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Optional

import torch

_SOURCE = Path(__file__).parent / "csrc" / "scan.cpp"
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-Wno-unused-function"]  # fast-math: vectorised exp
STALE_LOCK_SECONDS = 600  # a build holds its lock for seconds to a couple of minutes
_UNTRIED = object()
_LOADED: object = _UNTRIED  # True once the library is loaded, False when it cannot be
_ERROR: Optional[str] = None
USE = os.environ.get("RNNKIT_COMPILED", "1") != "0"  # see set_compiled()


def set_compiled(on: bool) -> None:
    """Run the GRU and LSTM scans' loops compiled (True, where they can be built) or in Python (False) here."""
    global USE
    USE = bool(on)


def build_dir() -> Path:
    return Path(os.environ.get("RNNKIT_BUILD_DIR") or Path(os.environ.get("XDG_CACHE_HOME")
                                                           or Path.home() / ".cache") / "rnnkit" / "build")


def _name() -> str:
    """One library per source, flags, torch version and CPU model (``-march=native`` code is the CPU's own)."""
    from rnnkit.nn.onednn import _machine_key

    key = "\n".join([_SOURCE.read_text(encoding="utf-8"), " ".join(_FLAGS), torch.__version__,
                     _machine_key().split(" | ")[0]])
    return "rnnkit_scan_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def load() -> bool:
    """Build (the first time on this machine) and load the library; False, with ``build_error()``, if it cannot."""
    global _LOADED, _ERROR
    if _LOADED is _UNTRIED:
        _LOADED = False
        try:
            from torch.utils import cpp_extension

            name = _name()
            where = build_dir() / name
            where.mkdir(parents=True, exist_ok=True)
            lock = where / "lock"  # torch's build lock: one left by a build that was killed would block forever
            if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
                lock.unlink(missing_ok=True)
            if not any(where.glob(f"{name}*.so")):
                print("rnnkit: building the recurrent layers' compiled loops for this machine (once; seconds to a minute)",
                      file=sys.stderr, flush=True)
            cpp_extension.load(name=name, sources=[str(_SOURCE)], extra_cflags=_FLAGS, extra_ldflags=["-fopenmp", "-lmvec"],
                               build_directory=str(where), is_python_module=False, verbose=False)
            _LOADED = hasattr(torch.ops.rnnkit_scan, "lstm_forward")
        except Exception as e:  # no compiler, no ninja, a torch without headers: the Python loops run instead
            _ERROR = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            print(f"rnnkit: the compiled loops could not be built ({_ERROR}); running the Python loops "
                  "(same results to rounding, slower). RNNKIT_COMPILED=0 skips the attempt.", file=sys.stderr)
    return bool(_LOADED)


def available() -> bool:
    """Whether the compiled loops are on (``USE``) and built."""
    return USE and load()


def stack_step(mode: int, first, x, wx, bx, wh, bh, h, c):
    """One inference step of a stacked RNN / LSTM / GRU on ``rnnkit.nn.fused_step.StepWeights``' layout, in one
    call: ``(h', c')`` ``(L, B, H)`` (``c'`` empty but for an LSTM).  ``mode`` 0 LSTM, 1 GRU, 2 tanh RNN, 3 ReLU
    RNN; ``first`` ``(B, G*H)``: the first layer's input product with its bias, or None to compute it from ``x``.
    The arguments are ``csrc/scan.cpp``'s ``stack_step``'s, which says what each holds.  Call only where
    ``available()``."""
    return torch.ops.rnnkit_scan.stack_step(mode, first, x, wx, bx, wh, bh, h, c)


def build_error() -> Optional[str]:
    """Why the library could not be built or loaded (None if it was, or was not tried)."""
    return _ERROR


__all__ = ["available", "load", "set_compiled", "build_error", "build_dir", "stack_step", "USE"]
