"""The lecture notebook runs from top to bottom (with its small settings), so it cannot rot."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "lecture.ipynb"


def test_the_lecture_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook runner is in the test extra")
    nbclient = pytest.importorskip("nbclient", reason="the notebook runner is in the test extra")
    pytest.importorskip("ipykernel", reason="the notebook runner is in the test extra")
    monkeypatch.setenv("RNNKIT_NOTEBOOK_SMALL", "1")  # tiny settings: every cell runs, in seconds
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # figures become outputs
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "small settings: True" in text
    assert "largest difference from the hand-written RNN" in text  # the hand-written RNN matched RNNCell
    assert "rnnkit's sequence loss" in text and "attention luong" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the masked loss and the attention heatmaps were drawn


def test_the_saved_notebook_shows_a_full_run():
    """The copy in the repository (what the docs site renders) was run with the full settings."""
    nbformat = pytest.importorskip("nbformat", reason="the notebook runner is in the test extra")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code), "run the notebook and save it with its outputs"
    text = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert "small settings: False" in text
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
