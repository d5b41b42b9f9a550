"""One version number: rnnkit.__version__, which pyproject.toml reads and the CHANGELOG's newest release names."""
from __future__ import annotations

import re
from pathlib import Path

import rnnkit

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_the_version_from_the_package():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M), "pyproject.toml must not state a version of its own"
    assert re.search(r'^dynamic\s*=\s*\[[^\]]*"version"', project, re.M)
    assert re.search(r'^\[tool\.setuptools\.dynamic\]\s*\nversion\s*=\s*\{\s*attr\s*=\s*"rnnkit\.__version__"\s*\}',
                     text, re.M)


def test_setuptools_resolves_the_same_version(monkeypatch):
    from setuptools.config.pyprojecttoml import read_configuration

    monkeypatch.chdir(ROOT)  # the attr is resolved against the package folders pyproject names
    config = read_configuration(ROOT / "pyproject.toml")
    assert config["project"]["version"] == rnnkit.__version__


def test_the_changelog_names_the_current_version_as_its_newest_release():
    releases = re.findall(r"^## \[?(\d+\.\d+\.\d+)\]?", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert releases, "CHANGELOG.md has no released version"
    assert releases[0] == rnnkit.__version__
