"""Run folders: JSON + safetensors, atomic writes, nothing pickled.

A run folder holds ``config.json``, vocabularies as JSON, ``model.safetensors``
(best weights), ``last/state.safetensors`` (everything needed to resume
exactly: weights, optimizer, RNG, data position, carried state — tensors in
the file, the rest as JSON in its metadata), ``metrics.csv`` and plots.

Every write goes to a temporary file in the same folder, is flushed to disk and
then renamed over the target, so a kill at any moment leaves the previous good
file.  Loading never unpickles: safetensors holds only tensors and JSON.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from rnnkit.errors import CheckpointError
from rnnkit.fileio import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LAST = "last"
STATE = "state.safetensors"
METRICS = "metrics.csv"
KERNELS = "kernels.json"  # per-machine kernel choices that change numbers, re-applied on resume


def save_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def _plain(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Cloning breaks shared storage (tied weights), which safetensors refuses.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Tensor],
                 metadata: Mapping[str, Any] | None = None) -> None:
    """Atomically save tensors, with optional JSON-able metadata, as safetensors."""
    from safetensors.torch import save

    meta = None if metadata is None else {"json": json.dumps(metadata)}
    atomic_write_bytes(path, save(_plain(tensors), metadata=meta))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load a safetensors file written by ``save_tensors``: (tensors, metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return tensors, (json.loads(meta["json"]) if "json" in meta else {})
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(
            f"{path}: the weights file is truncated or corrupt ({type(e).__name__}: {e})") from None


def load_weights_into(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load ``model.safetensors`` into ``model``, naming missing or unexpected keys."""
    tensors, _ = load_tensors(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    bad = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if extra:
            parts.append(f"unexpected {extra[:5]}")
        if bad:
            parts.append("wrong shape " + ", ".join(
                f"{k} {tuple(tensors[k].shape)} (expected {tuple(own[k].shape)})" for k in bad[:5]))
        raise CheckpointError(f"{path} does not match the model in config.json: " + "; ".join(parts))
    model.load_state_dict(tensors)


# -- flattening nested state (optimizer) into tensors + JSON -------------------

def flatten_state(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """Move every tensor of a nested dict/list into ``tensors`` under a dotted key.

    Returns the JSON-able skeleton, where each tensor is replaced by
    ``{"__tensor__": key}``; ``unflatten_state`` reverses it.
    """
    if isinstance(obj, Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, Mapping):
        # JSON keys are strings; remember int keys (optimizer state is keyed by int)
        return {"__dict__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def unflatten_state(skel: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(skel, dict) and "__tensor__" in skel:
        return tensors[skel["__tensor__"]]
    if isinstance(skel, dict) and "__dict__" in skel:
        return {k: unflatten_state(v, tensors) for k, v in skel["__dict__"]}
    if isinstance(skel, list):
        return [unflatten_state(v, tensors) for v in skel]
    return skel


def rng_state(cuda_device: Optional[torch.device] = None) -> dict[str, Any]:
    """Every random generator the training step may touch: CPU, Python, and every GPU's, or only
    ``cuda_device``'s (a torchrun rank's own)."""
    import random

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if cuda_device is not None:
        state["cuda_device"] = torch.cuda.get_rng_state(cuda_device)
    elif torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], cuda_device: Optional[torch.device] = None) -> None:
    """Restore what ``rng_state(cuda_device)`` saved."""
    import random

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda_device" in state and cuda_device is not None:
        torch.cuda.set_rng_state(state["cuda_device"], cuda_device)
    elif "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_training_state(run_dir: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomically save a nested training state (tensors anywhere) to ``last/state.safetensors``."""
    tensors: dict[str, Tensor] = {}
    skeleton = flatten_state(state, "s", tensors)
    save_tensors(Path(run_dir) / LAST / STATE, tensors, {"skeleton": skeleton})


def load_training_state(run_dir: str | os.PathLike) -> dict[str, Any]:
    tensors, meta = load_tensors(Path(run_dir) / LAST / STATE)
    if "skeleton" not in meta:
        raise CheckpointError(f"{Path(run_dir) / LAST / STATE}: no training state metadata")
    return unflatten_state(meta["skeleton"], tensors)
