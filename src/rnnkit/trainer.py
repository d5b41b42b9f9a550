"""Fit any rnnkit model through its ``loss(batch, carry)``.

The trainer owns the optimizer, clipping, learning-rate schedule, evaluation,
early stopping, best/last checkpoints, progress bar and metric log.  It knows
no concrete model: a model returns ``(summed loss, token count, carry)`` and
the trainer minimises the token mean.  ``carry`` is the recurrent state handed
from one batch to the next (truncated BPTT); it is saved with the rest so a
resumed run continues bitwise as if never stopped.
"""
from __future__ import annotations

import csv
import io
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from rnnkit import checkpoint as ckpt
from rnnkit.errors import ConfigError, RnnkitError


@dataclass
class TrainConfig:
    max_steps: Optional[int] = None     # stop after this many optimizer steps ...
    epochs: Optional[float] = None      # ... or after this many passes over the training data
    batch_size: int = 64                # sequences (or stream lanes) per batch
    lr: float = 2e-3                    # peak learning rate
    optimizer: str = "adam"             # adam | adamw | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9               # sgd only
    clip_norm: Optional[float] = 5.0    # clip the global gradient norm; None: no clipping
    schedule: str = "constant"          # constant | linear | cosine (decay to min_lr_ratio * lr)
    warmup_steps: int = 0               # linear warm-up from 0
    min_lr_ratio: float = 0.0
    eval_every: Optional[int] = None    # evaluate (and checkpoint) every N steps and at the end; None: each epoch
    save_every: Optional[int] = None    # save last/ every N steps (default: eval_every)
    patience: Optional[int] = None      # early stop after N evaluations without improvement
    max_time: Optional[float] = None    # stop (evaluating and saving first) after this many minutes of training
    seed: int = 0

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in ("constant", "linear", "cosine"):
            raise ConfigError(f"schedule must be constant, linear or cosine, got {self.schedule!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if (self.eval_every is not None and self.eval_every < 1) or (self.save_every is not None and self.save_every < 1):
            raise ConfigError("eval_every and save_every must be >= 1")


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
}


class TrainingError(RnnkitError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


def lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based): a pure function, so resume is exact."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    lo = config.min_lr_ratio
    if config.schedule == "linear":
        return lo + (1 - lo) * (1 - progress)
    return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """``Trainer(model, config, train, evaluate, run_dir).fit(resume=False)``.

    ``train`` is a batch source (``StreamBatches`` / ``SequenceBatches``): an
    endless iterator with ``len`` (batches per epoch), ``starts_epoch`` and
    ``state_dict``.  ``evaluate(model) -> dict`` returns validation metrics;
    ``metric`` (minimised, or maximised with ``maximize=True``) picks the best
    weights.  With ``run_dir`` None nothing is written.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train, *,
                 evaluate: Optional[Callable[[nn.Module], dict[str, float]]] = None,
                 run_dir: Optional[str | Path] = None, metric: str = "loss", maximize: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print) -> None:
        config.validate()
        if config.max_steps is None and config.epochs is None:
            raise ConfigError("give max_steps or epochs")
        self.model, self.config, self.train = model, config, train
        self.evaluate_fn, self.metric, self.maximize = evaluate, metric, maximize
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress, self.log = progress, log
        self.total_steps = config.max_steps if config.max_steps is not None else \
            max(1, math.ceil(config.epochs * len(train)))
        self.optimizer = OPTIMIZERS[config.optimizer](
            [p for p in model.parameters() if p.requires_grad], config)
        self.step, self.best, self.bad_evals = 0, None, 0
        self.history: list[dict[str, Any]] = []
        self.carry = None
        self._bar = None

    # -- checkpoints ---------------------------------------------------------
    def _training_state(self) -> dict[str, Any]:
        return {"step": self.step, "best": self.best, "bad_evals": self.bad_evals,
                "history": self.history, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "data": self.train.state_dict(),
                "rng": ckpt.rng_state(),
                "carry": None if self.carry is None else list(self.carry)}

    def _save_last(self) -> None:
        if self.run_dir is not None:
            ckpt.save_training_state(self.run_dir, self._training_state())

    def _restore(self) -> None:
        state = ckpt.load_training_state(self.run_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train.load_state_dict(state["data"])
        ckpt.set_rng_state(state["rng"])
        self.step, self.best, self.bad_evals = state["step"], state["best"], state["bad_evals"]
        self.history = state["history"]
        carry = state["carry"]
        if carry is not None:
            from rnnkit.nn.state import State
            self.carry = State(*carry)

    def _write_metrics(self) -> None:
        if self.run_dir is None or not self.history:
            return
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.history)
        ckpt.atomic_write_text(self.run_dir / ckpt.METRICS, buf.getvalue())
        from rnnkit.plots import loss_curve
        loss_curve(self.history, self.run_dir / "loss.png")

    # -- the loop ------------------------------------------------------------
    def _evaluate(self, row: dict[str, Any]) -> bool:
        """Evaluate, log, keep the best weights; True when early stopping says stop."""
        if self.evaluate_fn is None:
            return False
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            metrics = self.evaluate_fn(self.model)
        self.model.train(was_training)
        # numbers go to metrics.csv; tables (per class, per type, confusion) are the task's to report
        row.update({f"valid_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        value = metrics[self.metric]
        improved = self.best is None or (value > self.best if self.maximize else value < self.best)
        if improved:
            self.best, self.bad_evals = value, 0
            if self.run_dir is not None:
                ckpt.save_tensors(self.run_dir / ckpt.WEIGHTS, self.model.state_dict())
        else:
            self.bad_evals += 1
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        message = f"step {self.step}: valid {shown}{' (best)' if improved else ''}"
        if self._bar is not None and not self._bar.disable:
            self._bar.write(message)  # above the progress bar, not glued to it
        else:
            self.log(message)
        return self.config.patience is not None and self.bad_evals >= self.config.patience

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train to ``total_steps`` (or early stop); returns the metric history."""
        from tqdm import tqdm

        cfg = self.config
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        if resume:
            self._restore()
            self.log(f"resumed at step {self.step} of {self.total_steps}")
        eval_every = cfg.eval_every or len(self.train)
        save_every = cfg.save_every or eval_every
        batches = iter(self.train)
        bar = self._bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress,
                               dynamic_ncols=True, mininterval=0.5, unit="step")
        run_loss, run_tokens, t0, window_tokens = 0.0, 0, time.perf_counter(), 0
        stop = timed_out = False
        deadline = None if cfg.max_time is None else time.monotonic() + 60 * cfg.max_time
        self.model.train()
        try:
            while self.step < self.total_steps and not stop:
                if self.train.starts_epoch:
                    self.carry = None
                batch = next(batches)
                factor = lr_factor(cfg, self.step, self.total_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * factor
                out = self.model.loss(batch, self.carry)
                count = int(out.num_tokens)
                loss = out.loss / max(count, 1)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {loss.item()} at step {self.step + 1}; stopped without saving "
                        "it, the last good checkpoint is kept. Try a lower --lr or --clip-norm.")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_norm:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
                self.optimizer.step()
                self.carry = out.carry
                self.step += 1
                run_loss += float(out.loss.detach())
                run_tokens += count
                window_tokens += count
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{run_loss / max(run_tokens, 1):.3f}",
                                tok_s=f"{window_tokens / max(elapsed, 1e-9):,.0f}", refresh=False)
                timed_out = deadline is not None and time.monotonic() > deadline
                last = self.step == self.total_steps or timed_out
                if self.step % eval_every == 0 or last:
                    row = {"step": self.step, "epoch": round(self.step / len(self.train), 3),
                           "lr": cfg.lr * factor, "train_loss": run_loss / max(run_tokens, 1),
                           "tokens_per_s": round(window_tokens / max(elapsed, 1e-9), 1)}
                    stop = self._evaluate(row) or timed_out
                    self.history.append(row)
                    self._write_metrics()
                    run_loss, run_tokens, window_tokens, t0 = 0.0, 0, 0, time.perf_counter()
                if self.step % save_every == 0 or last or stop:
                    self._save_last()
        finally:
            bar.close()
        if timed_out:
            self.log(f"stopped at step {self.step}: --max-time of {cfg.max_time} minutes reached")
        elif stop:
            self.log(f"early stop at step {self.step}: no improvement in {cfg.patience} evaluations")
        if self.evaluate_fn is None and self.run_dir is not None:
            ckpt.save_tensors(self.run_dir / ckpt.WEIGHTS, self.model.state_dict())
        return self.history


def config_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
