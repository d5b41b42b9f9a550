"""float32 matmuls through oneDNN on CPU, and a ``Linear`` layer that uses them.

On this project's CPU (AMD EPYC, AVX-512) ``torch.mm`` / ``nn.Linear`` run MKL's
sgemm, which takes its AVX2 code there, while oneDNN's matmul reaches about 1.8x
its throughput (measured: 301 vs 165 GFLOP/s at 1536 x 512 x 8000 on 2 threads).
``linear`` sends a large float32 product to oneDNN and everything else to
``addmm``; ``Linear`` is ``nn.Linear`` (same parameters, same checkpoints) whose
forward and backward use ``linear`` on CPU.  Output layers over a vocabulary are
where it counts: in a seq2seq model with 8,000 target words they were more than
half of a training step.

oneDNN's matmul is reached through ``torch.ops.mkldnn._linear_pointwise``, an op
internal to torch (there for its compiler's CPU backend); it is used only after a
check, once per process, that it exists and computes what it should, and only where it is
faster than ``torch.mm`` on this machine, a choice made once per machine (``onednn_is_faster``).
"""
from __future__ import annotations

import os
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

ONEDNN_MIN_MACS = 1 << 20  # smaller products go to addmm: oneDNN's 10 us more per call outweigh its speed (measured)

_UNCHECKED = object()
_ONEDNN_LINEAR: object = _UNCHECKED  # see onednn_linear_op()


def onednn_linear_op():
    """oneDNN's matmul with an optional bias and an optional added tensor, or None (then: addmm).

    Checked once per process on a small product (``x w^T + b`` and ``x w^T + b + a``):
    a torch without oneDNN, or one where the op is gone or changed, gets None.
    """
    global _ONEDNN_LINEAR
    if _ONEDNN_LINEAR is _UNCHECKED:
        _ONEDNN_LINEAR = None
        op = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
        if op is not None:
            g = torch.Generator().manual_seed(0)
            x, w, b, a = (torch.randn(shape, generator=g) for shape in ((3, 4), (5, 4), (5,), (3, 5)))
            want = torch.addmm(b, x, w.t())
            try:
                works = (torch.allclose(op(x, w, b, "none", [], ""), want, atol=1e-5)
                         and torch.allclose(op.binary(x, a, w, b, "add"), want + a, atol=1e-5))
            except (RuntimeError, TypeError, AttributeError):
                works = False
            _ONEDNN_LINEAR = op if works else None
    return _ONEDNN_LINEAR


_FASTER: Optional[bool] = None  # see onednn_is_faster()
CACHE_ENV = "RNNKIT_KERNEL_CACHE"  # file of the kernel choices timed on this machine (default: the user's cache)


def onednn_is_faster() -> bool:
    """Whether float32 CPU matmuls go to oneDNN (True) or to ``torch.mm``/MKL (False) in this process.

    Which library is faster depends on the CPU (here, an AMD EPYC: MKL's sgemm takes its
    AVX2 code and oneDNN runs about 1.8x faster; on other CPUs MKL may win), and the two
    round differently, so the choice changes a model's numbers in the last bits.  It is
    therefore made once per machine, not per process: in order,

    * :func:`set_onednn_matmul` (a resumed run re-applies the choice it recorded),
    * ``RNNKIT_ONEDNN_MATMUL=1`` or ``=0``,
    * the choice recorded for this machine (CPU model, torch version, thread count) in
      ``$RNNKIT_KERNEL_CACHE`` (default ``~/.cache/rnnkit/kernels.json``), timed and
      written there the first time, under a file lock, so that two processes started
      together agree.  A timing on a busy machine may pick the slower library, but every
      later run on the machine picks the same one; delete the file to time again.
    """
    global _FASTER
    if _FASTER is None:
        forced = os.environ.get("RNNKIT_ONEDNN_MATMUL")
        if onednn_linear_op() is None or forced == "0":
            _FASTER = False
        elif forced == "1":
            _FASTER = True
        else:
            _FASTER = _machine_choice()
    return _FASTER


def set_onednn_matmul(use: Optional[bool]) -> None:
    """Send large float32 CPU matmuls to oneDNN (True) or MKL (False) in this process; None: this
    machine's recorded choice again.  True is ignored where oneDNN's matmul is unavailable."""
    global _FASTER
    _FASTER = None if use is None else bool(use) and onednn_linear_op() is not None


def kernel_choices() -> dict[str, bool]:
    """The kernel choices in force that change numbers, as a run folder records them."""
    from rnnkit.nn import compiled, scan

    return {"onednn_matmul": onednn_is_faster(), "lstm_scan": scan.LSTM_SCAN, "compiled_loops": compiled.USE}


def apply_kernel_choices(choices: dict) -> None:
    """Re-apply choices recorded by :func:`kernel_choices` (unknown keys are ignored; a missing
    ``lstm_scan`` or ``compiled_loops``, from a run folder older than the LSTM scan or its compiled
    loops, means off)."""
    from rnnkit.nn import compiled, scan

    if "onednn_matmul" in choices:
        set_onednn_matmul(choices["onednn_matmul"])
    scan.set_lstm_scan(bool(choices.get("lstm_scan", False)))
    compiled.set_compiled(bool(choices.get("compiled_loops", False)))


def _machine_key() -> str:
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _cache_path() -> str:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rnnkit",
                           "kernels.json")
    return os.environ.get(CACHE_ENV) or default


def _machine_choice() -> bool:
    """This machine's recorded choice, timed and recorded the first time (see ``onednn_is_faster``)."""
    import json

    path = _cache_path()
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        lock = open(path + ".lock", "a+")
    except OSError:
        return _time_choice()  # nowhere to record it: this process times alone
    with lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        try:
            with open(path, encoding="utf-8") as f:
                recorded = json.load(f)
            if not isinstance(recorded, dict):
                recorded = {}
        except (OSError, ValueError):
            recorded = {}
        key = _machine_key()
        entry = recorded.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("onednn_matmul"), bool):
            return entry["onednn_matmul"]
        choice = _time_choice()
        recorded[key] = {"onednn_matmul": choice}
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(recorded, f, indent=1)
            os.replace(tmp, path)
        except OSError:
            pass
        return choice


def _time_choice() -> bool:
    """Time oneDNN's matmul against ``torch.mm`` on a product the size of an output layer's (a few ms)."""
    op = onednn_linear_op()
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(256, 512, generator=g), torch.randn(2048, 512, generator=g)
    wt = w.t()

    def best(fn) -> float:
        fn()  # warm up
        times = []
        for _ in range(7):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return sorted(times)[1]  # the second best: one lucky call does not decide

    return best(lambda: op(x, w, None, "none", [], "")) < 0.9 * best(lambda: torch.mm(x, wt))


def uses_onednn(x: Tensor, macs: int) -> bool:
    """Whether a product of ``macs`` multiply-adds on ``x`` goes to oneDNN."""
    return (macs >= ONEDNN_MIN_MACS and x.dtype == torch.float32 and x.device.type == "cpu"
            and torch.backends.mkldnn.enabled and onednn_is_faster())


def linear(x: Tensor, w: Tensor, bias: Optional[Tensor] = None, add: Optional[Tensor] = None) -> Tensor:
    """``x w^T (+ bias) (+ add)`` as a new tensor: ``x`` ``(M, K)``, ``w`` ``(N, K)``, both contiguous, ``add`` ``(M, N)``.

    float32 on CPU from ``ONEDNN_MIN_MACS`` multiply-adds goes to oneDNN (about 10 us
    more per call than ``addmm``, so not below); anything else goes to ``addmm``.
    """
    if uses_onednn(x, x.shape[0] * x.shape[1] * w.shape[0]):
        op = onednn_linear_op()
        return op(x, w, bias, "none", [], "") if add is None else op.binary(x, add, w, bias, "add")
    if add is None:
        return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())
    y = torch.addmm(add, x, w.t())
    return y if bias is None else y.add_(bias)


class _LinearFunction(torch.autograd.Function):
    """``y = x W^T + b`` with every product through ``linear``: ``dx = dy W``, ``dW = dy^T x``, ``db = sum dy``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1]).contiguous()  # (M, K)
        w = weight.contiguous()  # (N, K)
        ctx.save_for_backward(x2, w)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        return linear(x2, w, bias).view(*x.shape[:-1], w.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        x2, w = ctx.saved_tensors
        dy2 = dy.reshape(-1, w.shape[0]).contiguous()  # (M, N)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = linear(dy2, w.t().contiguous()).view(ctx.x_shape)  # (M, K)
        if ctx.needs_input_grad[1]:
            # oneDNN wants the summed dimension contiguous in both factors: the copies cost far less than the product
            dw = linear(dy2.t().contiguous(), x2.t().contiguous())  # (N, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dx, dw, db


class Linear(nn.Linear):
    """``nn.Linear`` whose product runs on oneDNN for large float32 inputs on CPU (forward and backward).

    Same parameters, names and initialisation as ``nn.Linear`` (checkpoints are
    interchangeable; a weight may be tied to an embedding).  Falls back to
    ``F.linear`` on other devices and dtypes, under autocast, while tracing or
    compiling (ONNX export), and for small products.  No double backward.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self._fast(x):
            return _LinearFunction.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    def _fast(self, x: Tensor) -> bool:
        if x.numel() * self.out_features < ONEDNN_MIN_MACS:  # first: a small product (one step) asks nothing else
            return False
        if x.dim() == 0 or x.dtype != self.weight.dtype or torch.is_autocast_enabled(x.device.type):
            return False
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return False
        return uses_onednn(x, x.numel() * self.out_features)


__all__ = ["Linear", "linear", "onednn_linear_op", "onednn_is_faster", "set_onednn_matmul", "kernel_choices",
           "apply_kernel_choices", "uses_onednn", "ONEDNN_MIN_MACS"]
