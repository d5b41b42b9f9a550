"""The documentation site builds with ``mkdocs build --strict``: a broken link, a missing page or an
API object that no longer exists fails here, not on the published site."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _needs_mkdocs():
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
        pytest.importorskip(module, reason="the docs toolchain is in the test and docs extras")


def test_the_site_builds_strict(tmp_path):
    _needs_mkdocs()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    api = (site / "api" / "nn" / "index.html").read_text(encoding="utf-8")
    assert "Recurrent" in api and "LSTMCell" in api  # the reference was generated from the docstrings
    assert (site / "lecture-notebook" / "index.html").is_file()
    for page in ("results", "gpu-results", "benchmarks", "design", "reproducibility", "datasets", "changelog"):
        assert (site / page / "index.html").is_file(), page


def test_no_page_reads_data_from_outside_the_repository():
    pages = [p for p in DOCS.rglob("*.md")] + [ROOT / "README.md"]
    offenders = [str(p.relative_to(ROOT)) for p in pages if "../shared" in p.read_text(encoding="utf-8")]
    assert not offenders, f"use `rnnkit data get NAME` instead of ../shared paths: {offenders}"


def test_the_datasets_page_lists_every_dataset():
    from rnnkit import datasets

    page = (DOCS / "datasets.md").read_text(encoding="utf-8")
    for ds in datasets.catalog():
        assert f"`{ds.name}`" in page, ds.name
