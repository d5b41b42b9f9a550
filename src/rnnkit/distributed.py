"""Several processes, one training run: ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node=N -m rnnkit train ...`` starts N processes and
tells each its place through environment variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``).  ``init_from_env`` reads
them and joins the process group (gloo for CPU training, nccl for CUDA); in a
plain ``python`` process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) every function
here is a cheap no-op, so single-process code needs no branches.

``torch.distributed`` is imported lazily: importing rnnkit never touches it.

Device choice lives here too: ``resolve_device("auto")`` is the local GPU
(``cuda:LOCAL_RANK`` under torchrun) when CUDA is present, else the CPU.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional, Sequence

import torch

from rnnkit.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None   # "gloo" | "nccl"; None in a single process

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_SINGLE = DistInfo()
_info: Optional[DistInfo] = None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def env_info() -> DistInfo:
    """This process's place as the launcher's environment variables tell it (joins nothing)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return _SINGLE
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world - 1}")
    return DistInfo(rank, world, local, None)


def _dist():
    import torch.distributed as dist

    return dist


def _active() -> bool:
    return _info is not None and _info.enabled


def info() -> DistInfo:
    """The process group this process has joined (``init_from_env``), or a single process."""
    return _info if _info is not None else _SINGLE


def resolve_device(name: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``mps`` -> a ``torch.device``.

    ``auto`` is ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU (MPS
    is used only when asked for: some recurrent kernels are missing or slow there).
    ``cuda`` is ``cuda:LOCAL_RANK`` (``LOCAL_RANK`` from torchrun, 0 otherwise).
    """
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if local_rank is None:
        local_rank = _env_int("LOCAL_RANK", 0) if _env_int("WORLD_SIZE", 1) > 1 else 0
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device mps was asked for, but this PyTorch has no usable MPS (Apple GPU) backend")
        return torch.device("mps")
    if not torch.cuda.is_available():
        if name == "auto":
            return torch.device("cpu")
        raise ConfigError("device cuda was asked for, but PyTorch sees no CUDA GPU "
                          "(check the driver, CUDA_VISIBLE_DEVICES and that torch was built with CUDA)")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"this process has LOCAL_RANK {local_rank} but the machine shows only {count} CUDA "
                          "device(s): start at most one process per GPU (torchrun --nproc_per_node)")
    return torch.device("cuda", local_rank)


def init_from_env(device: str = "auto", timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group torchrun describes; a no-op in a single process.

    The backend is nccl when ``device`` resolves to a CUDA GPU (each process
    then uses ``cuda:LOCAL_RANK``), gloo otherwise.  Calling it again returns the
    same ``DistInfo``; a group set up by the caller beforehand is adopted.
    """
    global _info
    if _info is not None:
        return _info
    env = env_info()
    if not env.enabled:
        _info = _SINGLE
        return _info
    dist = _dist()
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={env.world_size} asks for distributed training, "
                          "but this PyTorch build has no torch.distributed")
    if dist.is_initialized():
        _info = DistInfo(dist.get_rank(), dist.get_world_size(), env.local_rank, dist.get_backend())
        return _info
    dev = resolve_device(device, env.local_rank)
    if dev.type == "mps":
        raise ConfigError("distributed training (torchrun) runs on CPUs (gloo) or CUDA GPUs (nccl), not on mps")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=timeout_minutes)}
    if dev.type == "cuda":
        kwargs["device_id"] = dev  # binds the communicator to this GPU; no guessing in barrier()
    try:
        dist.init_process_group(**kwargs)
    except TypeError:  # an older torch without device_id
        kwargs.pop("device_id", None)
        dist.init_process_group(**kwargs)
    _info = DistInfo(dist.get_rank(), dist.get_world_size(), env.local_rank, backend)
    atexit.register(cleanup)
    return _info


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process that writes files and logs."""
    return info().is_main if _info is not None else env_info().is_main


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if _active():
        _dist().barrier()


def _comm_device() -> torch.device:
    if info().backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64); the values themselves in one process."""
    if not _active():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    _dist().all_reduce(t)
    return t.tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled in memory only; no-op in a single process)."""
    if not _active():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on rank 0 only (e.g. creating the run folder); every rank returns its result or
    raises its exception, so a refusal on rank 0 stops all ranks alike instead of leaving them waiting.
    The result and exception must be picklable.  In a single process: just ``fn(*args, **kwargs)``."""
    if not _active():
        return fn(*args, **kwargs)
    outcome: Any = None
    if info().is_main:
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except Exception as e:  # handed to every rank, then raised on each
            outcome = ("error", e)
    kind, value = broadcast_object(outcome)
    if kind == "error":
        raise value
    return value


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * info().world_size
    _dist().all_gather_object(out, obj)
    return out


def all_gather_cat(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Concatenate every rank's ``t`` (same shape on all ranks) along ``dim``, in rank order."""
    if not _active():
        return t
    t = t.contiguous()
    parts = [torch.empty_like(t) for _ in range(info().world_size)]
    _dist().all_gather(parts, t)
    return torch.cat(parts, dim=dim)


def cleanup() -> None:
    """Leave the process group (idempotent; also registered to run at exit)."""
    global _info
    if _info is not None and _info.enabled:
        dist = _dist()
        if dist.is_available() and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # at interpreter exit the group may already be half torn down
                pass
    _info = None
