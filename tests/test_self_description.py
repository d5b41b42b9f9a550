"""The project speaks of itself, not of how it was made.

Tracked files say what rnnkit does, with the command, hardware and date behind each figure; the
history is in CHANGELOG.md by version.  This test fails when words about the making come back:
work sessions, development periods, issue numbers, machines lent or borrowed for a while, runs
counted by ordinal ("the fourth run") instead of named by their run folder.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Texts that are data, not the project's words (Shakespeare has sessions; CMUdict spells "borrow").
SKIP_PREFIXES = ("src/rnnkit/bundled/",)
SKIP_SUFFIXES = (".png", ".jpg", ".ico", ".safetensors", ".gz", ".onnx")

PATTERNS = [
    (re.compile(r"\bsessions?\b", re.I), "a work session"),
    (re.compile(r"\bissues?\s*(#|no\.?\s*)?\d+", re.I), "an issue number"),
    (re.compile(r"(?<!\w)#\d{1,5}\b(?![\w.])"), "an issue number"),
    (re.compile(r"\bthe issue'?s\b", re.I), "the issue that asked for it"),
    (re.compile(r"\b(lent|borrowed|loaned)\b[^.\n]{0,30}\b(gpu|machine|device|h200|accelerator|box)\b", re.I),
     "a lent machine"),
    (re.compile(r"\b(gpu|machine|device|h200|accelerator)s?\b[^.\n]{0,30}\b(lent|borrowed|loaned)\b", re.I),
     "a lent machine"),
    (re.compile(r"\bdevelopment (period|session|round|phase|process|machine)s?\b", re.I), "the development process"),
    (re.compile(r"\bthe (third|fourth|fifth|sixth|seventh|eighth|ninth|tenth) (run|session|round)\b", re.I),
     "a run counted by ordinal"),
]

# Legitimate uses of the words above, matched against the line.
ALLOWED = [
    re.compile(r"InferenceSession|SessionOptions"),  # onnxruntime's classes
    re.compile(r"\bsession\((paths|path)\b|def session\("),  # a test's onnxruntime session helper
    re.compile(r"scope=\"session\"|tmp_path_factory"),  # pytest's fixture scope
]


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (git ls-files failed)")
    return [p for p in out.decode().split("\0") if p]


def offending_lines(path: str, text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if any(a.search(line) for a in ALLOWED):
            continue
        for pattern, what in PATTERNS:
            m = pattern.search(line)
            if m:
                found.append(f"{path}:{number}: {what}: {m.group(0)!r} in {line.strip()[:120]!r}")
                break
    return found


def test_tracked_files_do_not_speak_of_how_the_project_was_made():
    me = Path(__file__).resolve().relative_to(ROOT).as_posix()
    problems = []
    for path in tracked_files():
        if path == me or path.startswith(SKIP_PREFIXES) or path.endswith(SKIP_SUFFIXES):
            continue
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary, or deleted in the work tree
        problems += offending_lines(path, text)
    assert not problems, "say what it does, with command, hardware and date; history goes in CHANGELOG.md:\n" + \
        "\n".join(problems)


@pytest.mark.parametrize("line", [
    "measured in session 6 on the idle machine",
    "the target (issue 7)",
    "see issue #12",
    "a sweep on a lent H200",
    "the GPU we borrowed for a day",
    "The CMUdict figure is the fourth run.",
    "what the development period produced",
])
def test_the_patterns_catch_such_words(line):
    assert offending_lines("x.md", line)


@pytest.mark.parametrize("line", [
    "sess = ort.InferenceSession(str(path))",
    "enc, dec = session(paths[0]), session(paths[1])",
    "the first run folder",
    "Shakespeare text is public domain",
    "a GPU with 80 GB",
    "lr 0.002 with a cosine schedule",
    "colour #1f77b4",
])
def test_legitimate_uses_pass(line):
    assert not offending_lines("x.md", line)
