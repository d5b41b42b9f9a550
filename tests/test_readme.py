"""The README's promises: its test command is what CI runs, its Python example runs, its links resolve."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_command = next(line for line in ci.splitlines() if "python -m pytest" in line)
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert ci_command.strip() in [b.strip() for b in blocks], "the README's test command differs from .ci/run's"


def test_the_front_door_is_short_and_self_contained():
    assert len(README.splitlines()) <= 300
    assert "../shared" not in README


def test_relative_links_point_at_files_that_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README) + re.findall(r'src="([^"]+)"', README)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_the_python_example_trains_and_uses_a_model(tmp_path, monkeypatch, capsys):
    code = re.search(r"## From Python.*?```python\n(.*?)```", README, re.S).group(1)
    assert "max_steps=300" in code
    small = code.replace("max_steps=300", "max_steps=4").replace('"hidden_size": 256', '"hidden_size": 32')
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(small, "README.md (From Python)", "exec"), scope)
    assert set(scope["metrics"]) >= {"loss", "perplexity", "bpc"}
    assert scope["logits"].shape[:2] == (1, 6)
    assert (tmp_path / "runs" / "api-lm" / "model.safetensors").is_file()
    assert "ROMEO:" in capsys.readouterr().out
