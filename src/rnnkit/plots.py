"""Plots written into run folders (matplotlib, headless, imported only when drawing)."""
from __future__ import annotations

import io
import os
from typing import Sequence

from rnnkit.checkpoint import atomic_write_bytes


class _Headless:
    """The few pyplot calls the plots make, on ``matplotlib.figure.Figure`` objects that no backend
    owns: drawing a run folder's PNG neither needs a display nor switches the backend of the
    process that asked for it (a notebook keeps showing its own figures inline)."""

    @staticmethod
    def figure(**kwargs):
        from matplotlib.figure import Figure

        return Figure(**kwargs)

    def subplots(self, nrows: int = 1, ncols: int = 1, **kwargs):
        fig = self.figure(**kwargs)
        return fig, fig.subplots(nrows, ncols)

    @staticmethod
    def get_cmap(name: str):
        import matplotlib

        return matplotlib.colormaps[name]

    @staticmethod
    def close(fig) -> None:
        """Nothing to do: no pyplot registry holds the figure; it is freed with its last reference."""


def _pyplot() -> _Headless:
    return _Headless()


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


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | os.PathLike,
                     normalize: bool = True, title: str = "confusion matrix") -> None:
    """Heatmap of a confusion matrix (rows gold, columns predicted), as ``ClassificationMetrics`` keeps it.

    ``normalize``: colour and print each row as fractions of its gold count (recall on the
    diagonal); otherwise raw counts.  Values are printed in the cells while there are at most
    20 classes.
    """
    n = len(labels)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"confusion_matrix: expected a {n} x {n} matrix for {n} labels")
    values = [[float(v) for v in row] for row in matrix]
    if normalize:
        values = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in values]
    plt = _pyplot()
    side = min(4 + 0.45 * n, 16)
    fig, ax = plt.subplots(figsize=(side + 1, side), dpi=100)
    top = 1.0 if normalize else max((v for row in values for v in row), default=0.0) or 1.0
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=top)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title + (" (row-normalised)" if normalize else ""))
    if n <= 20:
        for i in range(n):
            for j in range(n):
                v = values[i][j]
                text = f"{v:.2f}" if normalize else str(int(matrix[i][j]))
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * top else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def attention_heatmap(weights: Sequence[Sequence[float]], source: Sequence[str], output: Sequence[str],
                      path: str | os.PathLike, title: str = "attention") -> None:
    """Attention weights ``(len(output), len(source))``: output tokens down, source tokens across."""
    if len(weights) != len(output) or any(len(row) != len(source) for row in weights):
        raise ValueError(f"attention_heatmap: expected a {len(output)} x {len(source)} matrix of weights")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(2 + 0.4 * len(source), 20), min(1.5 + 0.35 * len(output), 20)), dpi=100)
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(source)))
    ax.set_yticks(range(len(output)))
    ax.set_xticklabels(source, rotation=60, ha="right")
    ax.set_yticklabels(output)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
