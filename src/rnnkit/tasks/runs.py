"""Creating, checking and reopening run folders (shared by every task)."""
from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence


from rnnkit import checkpoint as ckpt
from rnnkit import distributed
from rnnkit.errors import CheckpointError, ConfigError
from rnnkit.models import build_model
from rnnkit.vocab import Vocab

if TYPE_CHECKING:
    import torch


def resolve(cls, explicit: Mapping[str, Any], *layers: Mapping[str, Any]):
    """Build dataclass ``cls`` from its defaults, then ``layers`` (lowest first), then ``explicit``.

    Unknown keys in any layer raise ``ConfigError`` naming them.
    """
    known = {f.name for f in fields(cls)}
    merged: dict[str, Any] = {}
    for layer in (*layers, explicit):
        unknown = sorted(set(layer) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields {unknown}; expected some of {sorted(known)}")
        merged.update({k: v for k, v in layer.items() if v is not None or k in explicit})
    return cls(**merged)


def config_differences(saved: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(saved) | set(new)):
        a, b = saved.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name} (run has {a!r}, now {b!r})")
    return out


def main_log(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on rank 0 (or in a single process); silence on the other ranks under torchrun."""
    return log if distributed.is_main() else (lambda message: None)


def on_main(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` once (rank 0 under torchrun) and hand every rank its result."""
    return distributed.on_main(fn, *args, **kwargs)


def model_device(model) -> torch.device:
    """The device a model's parameters live on (where its inputs must go)."""
    return next(model.parameters()).device


def best_metric(train, allowed: Sequence[str]) -> tuple[str, bool]:
    """The validation metric that picks the best weights (``--best-metric``, else ``allowed[0]``) and
    whether it is maximised; ``ConfigError`` when this task's evaluation does not report it."""
    from rnnkit.trainer import LOWER_IS_BETTER

    metric = train.best_metric or allowed[0]
    if metric not in allowed:
        raise ConfigError(f"--best-metric {metric}: this run's validation reports {', '.join(allowed)}; "
                          "choose one of them")
    return metric, metric not in LOWER_IS_BETTER


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run with a completed checkpoint (what ``--resume`` continues)."""
    return (Path(run_dir) / ckpt.LAST / ckpt.STATE).is_file()


def start_run(run_dir: str | Path, resume: bool, overwrite: bool, log: Callable[[str], None]) -> bool:
    """How a train command treats ``run_dir``; returns whether it resumes.

    A folder with no completed checkpoint is not yet a run: ``--resume`` on it starts
    from the beginning (and says so), as does a plain rerun (``prepare_run_dir``
    replaces it).  Resuming removes temporary files a kill left behind mid-write.
    """
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in "
                          f"{run_dir}, --overwrite replaces it; give one")
    if not resume:
        return False
    if has_checkpoint(run_dir):
        stale = [p for d in (run_dir, run_dir / ckpt.LAST) for p in d.glob(".*.tmp")]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            log(f"removed {len(stale)} unfinished file(s) an interrupted write left in {run_dir}")
        return True
    if (run_dir / ckpt.CONFIG).exists():
        log(f"--resume: {run_dir} has no completed checkpoint (it stopped before its first); "
            "starting it from the beginning")
    else:
        log(f"--resume: {run_dir} holds no run yet; starting a new one")
    return False


def prepare_run_dir(run_dir: Path, config: dict[str, Any], resume: bool, overwrite: bool = False,
                    log: Callable[[str], None] = print) -> None:
    """Create a fresh run folder, or check that ``config`` matches the one being resumed.

    An existing run (one with a completed checkpoint) is replaced only when
    ``overwrite`` says so; a folder left by a run that stopped before its first
    checkpoint is replaced, with a word.  Under torchrun rank 0 does it and every
    rank gets its verdict.  The device is not part of a run's identity: a run may
    be resumed on another device.
    """
    distributed.on_main(_prepare_run_dir, run_dir, config, resume, overwrite, log)


def _prepare_run_dir(run_dir: Path, config: dict[str, Any], resume: bool, overwrite: bool, log) -> None:
    cfg_path = run_dir / ckpt.CONFIG
    if resume:
        if not has_checkpoint(run_dir):
            raise CheckpointError(f"cannot resume: {run_dir / ckpt.LAST / ckpt.STATE} does not exist")
        saved = ckpt.load_json(cfg_path)
        saved_train = saved.setdefault("train", {})
        saved_train.setdefault("precision", "fp32")  # runs made before these options existed
        saved_train["device"] = config.get("train", {}).get("device", saved_train.get("device"))
        diff = config_differences(saved, config)
        if diff:
            raise ConfigError(f"cannot resume {run_dir}: the configuration differs in "
                              + "; ".join(diff) + ". Resume with the same options, or start a new --out folder.")
        return
    if cfg_path.exists() and not overwrite and not has_checkpoint(run_dir):
        log(f"{run_dir} holds a run that stopped before its first checkpoint; starting it afresh")
        overwrite = True
    if cfg_path.exists() and overwrite:
        import shutil

        shutil.rmtree(run_dir)
    if cfg_path.exists():
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to replace "
                          "it, or choose another --out folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.save_json(cfg_path, config)


def run_config(task: str, model_name: str, **parts: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"task": task, "model_name": model_name}
    for k, v in parts.items():
        out[k] = asdict(v) if is_dataclass(v) else v
    return out


def open_run(run_dir: str | Path, vocab_names: tuple[str, ...] = ("vocab",), int8: bool = False):
    """Rebuild a trained model from its folder alone: (config, model in eval mode, vocabs).

    ``int8``: the model quantised for int8 inference on CPU (``rnnkit.nn.int8.quantize``).
    """
    from rnnkit.tasks import read_config

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        model = build_model(config["model_name"], config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / ckpt.CONFIG}: cannot rebuild the model ({e})") from None
    weights = run_dir / ckpt.WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} does not exist: the run has not finished an evaluation yet")
    ckpt.load_weights_into(model, weights)
    model.eval()
    if int8:
        from rnnkit.nn.int8 import quantize

        quantize(model)
    vocabs = {}
    for name in vocab_names:
        try:
            vocabs[name] = Vocab.load(run_dir / f"{name}.json")
        except Exception as e:  # DataError from Vocab.load names the file
            raise CheckpointError(str(e)) from None
    return config, model, vocabs


def load_pretrained(model, path: str, tokens: list[str], seed: int, log) -> None:
    """Copy GloVe/word2vec vectors for ``tokens`` into ``model``'s embedding and report the coverage."""
    import torch

    from rnnkit.embeddings import load_vectors

    matrix, found = load_vectors(path, tokens, generator=torch.Generator().manual_seed(seed))
    model.load_pretrained_embeddings(matrix)
    log(f"{path}: vectors for {found:,} of {len(tokens):,} vocabulary entries ({found / len(tokens):.1%})")


def fit_best(trainer, model, out: Path, resume: bool) -> Any:
    """Train; then, on rank 0 (or in a single process), load the best weights in eval mode and return
    ``{"train_seconds", "parameters"}`` to build the report on — None on the other ranks."""
    import time

    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    if not distributed.is_main():
        return None  # rank 0 scores the held-out split and writes the report
    ckpt.load_weights_into(model, out / ckpt.WEIGHTS)
    model.eval()
    return {"train_seconds": round(time.perf_counter() - t0, 1),
            "parameters": sum(p.numel() for p in model.parameters())}
