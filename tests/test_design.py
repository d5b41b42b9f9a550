"""The one-way import rule of docs/design.md, checked on the source: a module imports only to its left."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"

# module (or package) -> rnnkit modules it must never import
FORBIDDEN = {
    "nn": ["models", "data", "vocab", "tokenizers", "batching", "trainer", "tasks", "cli", "checkpoint", "metrics"],
    "models": ["data", "vocab", "tokenizers", "batching", "trainer", "tasks", "cli", "checkpoint"],
    "data": ["nn", "models", "batching", "trainer", "tasks", "cli", "checkpoint"],
    "vocab": ["nn", "models", "data", "batching", "trainer", "tasks", "cli"],
    "tokenizers": ["nn", "models", "data", "batching", "trainer", "tasks", "cli"],
    "batching": ["models", "data", "vocab", "trainer", "tasks", "cli"],
    "decoding": ["models", "data", "vocab", "trainer", "tasks", "cli"],
    "trainer": ["models", "data", "vocab", "tokenizers", "tasks", "cli"],
    "checkpoint": ["models", "data", "trainer", "tasks", "cli"],
    "tasks": ["cli", "serve", "export"],
    "distributed": ["nn", "models", "data", "vocab", "tokenizers", "batching", "trainer", "tasks", "cli"],
    "export": ["cli", "serve", "trainer"],
    "serve": ["cli", "trainer"],
    "datasets": ["nn", "models", "data", "vocab", "tokenizers", "batching", "trainer", "tasks", "cli", "checkpoint",
                 "serve", "export", "distributed"],
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnkit."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("rnnkit.")}
    return found


def _files(name: str) -> list[Path]:
    return sorted((SRC / name).rglob("*.py")) if (SRC / name).is_dir() else [SRC / f"{name}.py"]


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_imports_flow_one_way(module):
    for f in _files(module):
        bad = _imports(f) & set(FORBIDDEN[module])
        assert not bad, f"{f.relative_to(SRC)} imports {sorted(bad)}: against the one-way flow of DESIGN.md"


def test_import_rnnkit_is_light():
    import subprocess
    import sys

    code = "import sys, rnnkit, rnnkit.data, rnnkit.vocab, rnnkit.tokenizers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
