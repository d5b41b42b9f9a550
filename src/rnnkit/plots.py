"""Plots written into run folders (matplotlib, headless, imported only when drawing)."""
from __future__ import annotations

import io
import os
from typing import Sequence

from rnnkit.checkpoint import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(history: Sequence[dict], path: str | os.PathLike, title: str = "loss") -> None:
    """Training and validation loss against step, from the trainer's metric history."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    steps = [r["step"] for r in history if r.get("train_loss") is not None]
    ax.plot(steps, [r["train_loss"] for r in history if r.get("train_loss") is not None], label="train")
    valid = [r for r in history if r.get("valid_loss") is not None]
    if valid:
        ax.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
