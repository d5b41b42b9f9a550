"""Fit any rnnkit model through its ``loss(batch, carry)``.

The trainer owns the optimizer, clipping, learning-rate schedule, evaluation,
early stopping, best/last checkpoints, progress bar and metric log.  It knows
no concrete model: a model returns ``(summed loss, token count, carry)`` and
the trainer minimises the token mean.  ``carry`` is the recurrent state handed
from one batch to the next (truncated BPTT); it is saved with the rest so a
resumed run continues bitwise as if never stopped.

Device and precision: ``TrainConfig.device`` (auto | cpu | cuda | mps; auto is
the GPU when CUDA is present) places the model and each training batch (pinned
memory and non-blocking copies on CUDA); ``precision`` bf16/fp16 runs the
forward pass under ``torch.autocast`` (fp16 with a ``GradScaler``, CUDA only).

Several processes (``torchrun``, see ``rnnkit.distributed``): the model is
wrapped in ``DistributedDataParallel``, the batch source is sharded so that
``W`` ranks of batch ``B`` see exactly the global batches one process of batch
``W * B`` would, and the loss is normalised by the token count of the global
batch, so the gradients are those of that one process.  Train metrics are summed
over ranks; evaluation, checkpoints, metrics.csv, plots, logs and the progress
bar are rank 0's alone.  ``last/`` holds the global data position, every rank's
RNG state and the global carried state, so a resumed run (same number of
processes) continues exactly.
"""
from __future__ import annotations

import contextlib
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
from rnnkit import distributed
from rnnkit.distributed import DEVICES, resolve_device  # noqa: F401  (resolve_device re-exported)
from rnnkit.errors import CheckpointError, ConfigError, RnnkitError
from rnnkit.options import opt, validate

PRECISIONS = ("fp32", "bf16", "fp16")
BEST_METRICS = ("loss", "accuracy", "macro_f1", "f1", "bleu", "chrf", "wer", "per")
LOWER_IS_BETTER = ("loss", "wer", "per", "perplexity")


@dataclass
class TrainConfig:
    """How to train: every field is an option of every ``rnnkit train`` command (see ``rnnkit.options``)."""

    max_steps: Optional[int] = opt(None, ge=1, help="optimizer steps to train for (instead of --epochs)")
    epochs: Optional[float] = opt(None, gt=0, help="passes over the training data (instead of --max-steps)")
    batch_size: int = opt(64, ge=1, help="sequences (or stream lanes) per batch")
    lr: float = opt(2e-3, gt=0, help="peak learning rate")
    optimizer: str = opt("adam", choices=("adam", "adamw", "sgd"), help="optimizer")
    weight_decay: float = opt(0.0, ge=0, help="L2 penalty (decoupled with adamw)")
    momentum: float = opt(0.9, ge=0, lt=1, help="sgd momentum")
    clip_norm: Optional[float] = opt(5.0, ge=0, zero_is_none=True,
                                     help="clip the global gradient norm to this; 0 disables")
    ema: Optional[float] = opt(None, gt=0, lt=1, zero_is_none=True, metavar="DECAY",
                               help="keep an exponential moving average of the weights, this decay a step "
                                    "(0.999: about the last 1,000 steps; early steps use (1+t)/(10+t) when "
                                    "smaller); validation, the best weights and model.safetensors use the "
                                    "average, last/ keeps both; 0 disables")
    schedule: str = opt("constant", choices=("constant", "linear", "cosine"),
                        help="learning-rate schedule (linear and cosine decay to --min-lr-ratio x --lr)")
    warmup_steps: int = opt(0, ge=0, help="linear warm-up steps from 0")
    min_lr_ratio: float = opt(0.0, ge=0, le=1, help="linear/cosine schedules decay to this fraction of --lr")
    eval_every: Optional[int] = opt(None, ge=1, help="evaluate and checkpoint every N steps [once per epoch]")
    save_every: Optional[int] = opt(None, ge=1, help="save last/ every N steps [= --eval-every]")
    patience: Optional[int] = opt(None, ge=1, help="early stop after N evaluations without improvement")
    max_time: Optional[float] = opt(None, gt=0, help="stop after this many minutes (evaluating and saving first)")
    seed: int = opt(0, ge=0, le=2**63 - 1, help="random seed")
    device: str = opt("auto", choices=DEVICES,
                      help="where to train: auto is the GPU (CUDA) when present, else the CPU")
    precision: str = opt("fp32", choices=PRECISIONS,
                         help="autocast precision; fp16 (CUDA only) adds gradient scaling")
    best_metric: Optional[str] = opt(None, choices=BEST_METRICS,
                                     help="validation metric whose best value picks model.safetensors: lm: loss; "
                                          "classify: accuracy, macro_f1 or loss; tag: accuracy, f1 (entity "
                                          "tags) or loss; seq2seq: bleu, chrf or loss (cmudict: wer, per or loss) "
                                          "[accuracy; tag with entity tags: f1; seq2seq: bleu, cmudict: wer; "
                                          "lm: loss]")
    deterministic: bool = opt(False, help="deterministic kernels only (torch.use_deterministic_algorithms, "
                                          "cuDNN's deterministic mode): slower on CUDA; CPU training is "
                                          "deterministic already")

    def __post_init__(self) -> None:
        validate(self)

    def check(self) -> None:
        """Rules between fields (each field's own bounds are declared above)."""
        if self.max_steps is not None and self.epochs is not None:
            raise ConfigError("--max-steps and --epochs both given; give one: the run stops at --max-steps "
                              "optimizer steps or after --epochs passes over the data")
        if self.precision == "fp16" and self.device in ("cpu", "mps"):
            raise ConfigError(f"--precision fp16 needs a CUDA GPU (--device {self.device} given); "
                              "use bf16 on CPUs, or fp32")

    def validate(self) -> None:
        validate(self)


@contextlib.contextmanager
def deterministic_kernels(enabled: bool):
    """Within the block, only kernels that give the same bits on every run (when ``enabled``).

    CPU training is deterministic already. On CUDA some kernels add with atomics in
    whatever order the threads arrive, so two runs drift apart in the last bits; this
    switches torch and cuDNN to their deterministic kernels (and cuBLAS to a fixed
    workspace), at some cost in speed, and makes torch raise on an operation that has no
    deterministic kernel.  ``Recurrent`` also reads the setting: it then runs stacked
    layers one at a time with its own dropout between them, because cuDNN's stacked
    kernel draws its masks from a generator no checkpoint saves (see
    ``Recurrent._drops_between_layers``).  The previous settings come back on exit.
    """
    if not enabled:
        yield
        return
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: before the first step
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]


def _fused(params: list[torch.Tensor]) -> bool:
    """Whether torch has a fused Adam kernel for ``params``: float tensors on CPU or CUDA.

    It is the same update as the default one, in one pass per tensor instead of one
    per operation: about 3x faster on CPU, where a classifier's embedding made
    Adam 44% of the training step.
    """
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() and not p.is_sparse
                                for p in params)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay, fused=_fused(p)),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay, fused=_fused(p)),
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


class _LossModule(nn.Module):
    """``forward`` is the model's ``loss``: DistributedDataParallel syncs gradients only for
    calls through its own ``forward``, and rnnkit models are trained through ``loss``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch, carry):
        return self.model.loss(batch, carry)


class Trainer:
    """``Trainer(model, config, train, evaluate, run_dir).fit(resume=False)``.

    ``train`` is a batch source (``StreamBatches`` / ``SequenceBatches``): an
    endless iterator with ``len`` (batches per epoch), ``starts_epoch`` and
    ``state_dict``.  ``evaluate(model) -> dict`` returns validation metrics;
    ``metric`` (minimised, or maximised with ``maximize=True``) picks the best
    weights.  With ``run_dir`` None nothing is written.

    The model is moved to ``config.device`` (``self.device``) and stays there
    after ``fit``; ``evaluate`` receives it there, so it must move its batches to
    the model's device.  Under torchrun (``WORLD_SIZE > 1``) the trainer joins
    the process group, shards ``train`` (``train.shard(rank, world_size)``) and
    wraps the model in DistributedDataParallel; ``self.model`` stays the plain
    module.  Only rank 0 evaluates and writes; every rank returns the same history.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train, *,
                 evaluate: Optional[Callable[[nn.Module], dict[str, float]]] = None,
                 run_dir: Optional[str | Path] = None, metric: str = "loss", maximize: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print, unit: str = "tok") -> None:
        config.validate()
        self.unit = unit  # what the loss counts, for the progress bar: tokens, or sentences (a classifier)
        if config.max_steps is None and config.epochs is None:
            raise ConfigError("give max_steps or epochs")
        self.dist = distributed.init_from_env(config.device)
        self.device = resolve_device(config.device, self.dist.local_rank)
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"precision fp16 needs a CUDA GPU; training runs on {self.device.type}. "
                              "Use bf16 (CPUs and recent GPUs) or fp32")
        if config.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use fp16 or fp32")
        self.is_main = self.dist.is_main
        if self.dist.enabled:
            if not hasattr(train, "shard"):
                raise ConfigError(f"distributed training needs a batch source with shard(rank, world_size); "
                                  f"{type(train).__name__} has none")
            train.shard(self.dist.rank, self.dist.world_size)
        if self.device.type != "cpu":
            model.to(self.device)
        self.model, self.config, self.train = model, config, train
        self.evaluate_fn, self.metric, self.maximize = evaluate, metric, maximize
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress, self.log = progress and self.is_main, log if self.is_main else (lambda message: None)
        self.total_steps = config.max_steps if config.max_steps is not None else \
            max(1, math.ceil(config.epochs * len(train)))
        self.optimizer = OPTIMIZERS[config.optimizer](
            [p for p in model.parameters() if p.requires_grad], config)
        self.ddp = None
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                _LossModule(model), device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        # fp16's gradient scaler (None otherwise); the step runs through _scaling, which when
        # disabled passes the loss, the unscale and the optimizer step straight through
        self._scaling = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
        self.scaler = self._scaling if self._scaling.is_enabled() else None
        self.step, self.best, self.bad_evals = 0, None, 0
        # the weights' moving average (--ema): one tensor per trained parameter, by name
        self.ema: Optional[dict[str, torch.Tensor]] = None if config.ema is None else \
            {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        self.history: list[dict[str, Any]] = []
        self.carry = None
        self._bar = None

    # -- device and precision --------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- checkpoints ---------------------------------------------------------
    def _training_state(self) -> dict[str, Any]:
        state = {"step": self.step, "best": self.best, "bad_evals": self.bad_evals,
                 "history": self.history, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "data": self.train.state_dict(),
                 "rng": ckpt.rng_state() if not self.dist.enabled else None,
                 "carry": None if self.carry is None else list(self.carry)}
        if self.ema is not None:
            state["ema"] = self.ema
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def _rank_device(self) -> Optional[torch.device]:
        """Under torchrun, the one GPU whose generator is this rank's (touching every GPU would cost each memory)."""
        return self.device if self.dist.enabled and self.device.type == "cuda" else None

    def _save_last(self) -> None:
        if not self.dist.enabled:
            if self.run_dir is not None:
                ckpt.save_training_state(self.run_dir, self._training_state())
            return
        # collective on every rank (the same call sites on all): RNG states and the global carry
        rngs = distributed.all_gather_object(ckpt.rng_state(self._rank_device()))
        carry = None if self.carry is None else \
            [None if t is None else distributed.all_gather_cat(t, dim=-2) for t in self.carry]
        if self.is_main and self.run_dir is not None:
            state = self._training_state()
            state.update(rng=rngs[0], rng_ranks=rngs, carry=carry, world_size=self.dist.world_size)
            ckpt.save_training_state(self.run_dir, state)

    def _restore(self) -> None:
        state = ckpt.load_training_state(self.run_dir)
        saved_world, world = int(state.get("world_size", 1)), self.dist.world_size
        if saved_world != world:
            raise ConfigError(
                f"cannot resume {self.run_dir}: it was trained by {saved_world} process(es) and this run has "
                f"{world}; resume with the same total number of processes (torchrun --nnodes x --nproc_per_node)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train.load_state_dict(state["data"])
        ckpt.set_rng_state(state["rng_ranks"][self.dist.rank] if self.dist.enabled else state["rng"],
                           self._rank_device())
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise CheckpointError(f"cannot resume {self.run_dir} with --ema: its checkpoint holds no average")
            for name, tensor in self.ema.items():
                tensor.copy_(state["ema"][name])
        self.step, self.best, self.bad_evals = state["step"], state["best"], state["bad_evals"]
        self.history = state["history"]
        carry = state["carry"]
        if carry is not None:
            from rnnkit.nn.state import State

            if self.dist.enabled:  # the global carry: keep this rank's lanes
                carry = [None if t is None else t.narrow(-2, self.dist.rank * (t.shape[-2] // world),
                                                         t.shape[-2] // world) for t in carry]
            if self.device.type != "cpu":
                carry = [None if t is None else t.to(self.device) for t in carry]
            self.carry = State(*carry)

    def _write_metrics(self) -> None:
        if self.run_dir is None or not self.history or not self.is_main:
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

    # -- the weights' moving average ---------------------------------------------
    def _update_average(self) -> None:
        """After an optimizer step: average <- average + (1 - decay) (weights - average), the decay
        held at (1 + t) / (10 + t) while that is smaller, so early steps do not keep the initial weights."""
        decay = min(self.config.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in self.ema:
                    self.ema[name].lerp_(p.detach(), 1.0 - decay)

    @contextlib.contextmanager
    def _averaged_weights(self):
        """Within the block the model holds the moving average (when --ema is on); the trained weights,
        bit for bit, afterwards."""
        if self.ema is None:
            yield
            return
        params = dict(self.model.named_parameters())
        kept = {name: params[name].detach().clone() for name in self.ema}
        try:
            with torch.no_grad():
                for name, tensor in self.ema.items():
                    params[name].copy_(tensor)
            yield
        finally:
            with torch.no_grad():
                for name, tensor in kept.items():
                    params[name].copy_(tensor)

    # -- the loop ------------------------------------------------------------
    def _evaluate(self, row: dict[str, Any]) -> bool:
        """Evaluate, log, keep the best weights; True when early stopping says stop."""
        if self.evaluate_fn is None:
            return False
        was_training = self.model.training
        self.model.eval()
        with self._averaged_weights():
            with torch.inference_mode(), self._autocast():
                metrics = self.evaluate_fn(self.model)
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
        self.model.train(was_training)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        message = f"step {self.step}: valid {shown}{' (best)' if improved else ''}"
        if self._bar is not None and not self._bar.disable:
            self._bar.write(message)  # above the progress bar, not glued to it
        else:
            self.log(message)
        return self.config.patience is not None and self.bad_evals >= self.config.patience

    def _evaluate_all_ranks(self, row: dict[str, Any]) -> bool:
        """Rank 0 evaluates (the others wait); every rank gets its row, best and stop decision."""
        if not self.dist.enabled:
            return self._evaluate(row)
        stop = self._evaluate(row) if self.is_main else False
        shared = distributed.broadcast_object((row, self.best, self.bad_evals, stop) if self.is_main else None)
        new_row, self.best, self.bad_evals, stop = shared
        if new_row is not row:  # rank 0 gets its own objects back
            row.clear()
            row.update(new_row)
        return stop

    def _step_totals(self, out, batch, deadline: Optional[float]) -> tuple[float, float, float, bool]:
        """This rank's loss weight, and the step's summed loss, token count and time-out decision over
        all ranks: under torchrun one all-reduce, so every rank normalises by the global count and
        stops alike; a single process's own values otherwise."""
        late = deadline is not None and time.monotonic() > deadline
        count = int(out.num_tokens)
        if not self.dist.enabled:
            return 1.0, float(out.loss.detach()), float(count), late
        weight = 0.0 if batch.num_tokens == 0 else 1.0  # a zero-weight stand-in row (see shard)
        g_loss, g_count, g_late = distributed.all_reduce_sum(
            [float(out.loss.detach()) * weight, count * weight, float(late)])
        return weight, g_loss, g_count, g_late > 0

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train to ``total_steps`` (or early stop); returns the metric history."""
        with deterministic_kernels(self.config.deterministic):
            return self._fit(resume)

    def _kernel_choices(self, resume: bool) -> None:
        """Record the per-machine kernel choices that change numbers (``kernels.json``), or on resume
        re-apply the recorded ones, so a resumed run computes with the kernels it started with."""
        from rnnkit.nn import onednn

        if self.run_dir is None:
            return
        path = self.run_dir / ckpt.KERNELS
        if resume and path.is_file():
            onednn.apply_kernel_choices(ckpt.load_json(path))
        elif self.is_main:
            ckpt.save_json(path, onednn.kernel_choices())

    def _fit(self, resume: bool) -> list[dict[str, Any]]:
        from tqdm import tqdm

        cfg = self.config
        world = self.dist.world_size
        self._kernel_choices(resume)
        torch.manual_seed(cfg.seed + self.dist.rank)  # ranks draw their own dropout masks
        random.seed(cfg.seed + self.dist.rank)
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
        loss_fn = self.ddp if self.ddp is not None else self.model.loss
        self.model.train()
        try:
            while self.step < self.total_steps and not stop:
                if self.train.starts_epoch:
                    self.carry = None
                batch = next(batches).to(self.device)
                factor = lr_factor(cfg, self.step, self.total_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * factor
                with self._autocast():
                    out = loss_fn(batch, self.carry)
                weight, g_loss, g_count, timed_out = self._step_totals(out, batch, deadline)
                if not math.isfinite(g_loss):
                    raise TrainingError(
                        f"the loss became {g_loss / max(g_count, 1)} at step {self.step + 1}; stopped "
                        "without saving it, the last good checkpoint is kept. Try a lower --lr or --clip-norm.")
                # the token mean of the (global) batch; under DDP, which averages gradients over ranks, times
                # the world size, so the average is the gradient one process of the global batch would compute
                loss = out.loss * (weight * world) / max(g_count, 1)
                self.optimizer.zero_grad(set_to_none=True)
                self._scaling.scale(loss).backward()
                if cfg.clip_norm:
                    self._scaling.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
                self._scaling.step(self.optimizer)
                self._scaling.update()
                if self.ema is not None:
                    self._update_average()
                self.carry = out.carry
                self.step += 1
                run_loss += g_loss
                run_tokens += int(g_count)
                window_tokens += int(g_count)
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{run_loss / max(run_tokens, 1):.3f}",
                                **{f"{self.unit}_s": f"{window_tokens / max(elapsed, 1e-9):,.0f}"}, refresh=False)
                last = self.step == self.total_steps or timed_out
                if self.step % eval_every == 0 or last:
                    row = {"step": self.step, "epoch": round(self.step / len(self.train), 3),
                           "lr": cfg.lr * factor, "train_loss": run_loss / max(run_tokens, 1),
                           "tokens_per_s": round(window_tokens / max(elapsed, 1e-9), 1)}
                    stop = self._evaluate_all_ranks(row) or timed_out
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
        if self.evaluate_fn is None and self.run_dir is not None and self.is_main:
            with self._averaged_weights():
                ckpt.save_tensors(self.run_dir / ckpt.WEIGHTS, self.model.state_dict())
        distributed.barrier()  # the other ranks read rank 0's files only once they are written
        return self.history


def config_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
