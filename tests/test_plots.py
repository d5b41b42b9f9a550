"""Run-folder plots draw headless without touching the caller's matplotlib backend."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_drawing_a_plot_keeps_the_callers_backend(tmp_path):
    # a notebook's inline backend must survive rnnkit drawing loss.png: run in a fresh process
    code = f"""
import matplotlib
matplotlib.use("svg")
from rnnkit import plots
plots.loss_curve([{{"step": 1, "train_loss": 1.0, "valid_loss": 1.2}}], {str(tmp_path / "loss.png")!r})
plots.attention_heatmap([[0.25, 0.75]], ["a", "b"], ["c"], {str(tmp_path / "att.png")!r})
print(matplotlib.get_backend())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"
    for name in ("loss.png", "att.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
