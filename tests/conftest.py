import os

import pytest
import torch

torch.set_num_threads(1)  # tests are small; one thread avoids oversubscription on 2 cores


@pytest.fixture
def tiny_text(tmp_path):
    """A small deterministic text file with a learnable pattern."""
    lines = [f"the {w} sat on the mat.\n" for w in ("cat", "dog", "rat", "bat", "hat")] * 40
    path = tmp_path / "tiny.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def names_dir(tmp_path):
    """One file per label, one name per line (a tiny stand-in for names-by-language)."""
    d = tmp_path / "names"
    d.mkdir()
    (d / "Russian.txt").write_text("\n".join(["Ivanov", "Petrov", "Sidorov", "Smirnov", "Popov"] * 6) + "\n",
                                   encoding="utf-8")
    (d / "Japanese.txt").write_text("\n".join(["Tanaka", "Suzuki", "Sato", "Takahashi", "Kato"] * 6) + "\n",
                                    encoding="utf-8")
    return d


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory):
    """Per-machine kernel choices go to a file of the test run's, not the user's cache."""
    os.environ.setdefault("RNNKIT_KERNEL_CACHE", str(tmp_path_factory.mktemp("kernels") / "kernels.json"))


@pytest.fixture
def need_compiled():
    """Skip where rnnkit.nn.compiled is off or did not build here; fail instead under RNNKIT_REQUIRE_COMPILED=1
    (CI sets it where a compiler and ninja exist)."""
    from rnnkit.nn import compiled

    if os.environ.get("RNNKIT_COMPILED") == "0":
        pytest.skip("RNNKIT_COMPILED=0")
    if not compiled.load():
        if os.environ.get("RNNKIT_REQUIRE_COMPILED") == "1":
            pytest.fail(f"the compiled loops did not build: {compiled.build_error()}")
        pytest.skip(f"the compiled loops did not build here: {compiled.build_error()}")


@pytest.fixture
def step_loops(monkeypatch, request):
    """``step_loops(True)``: single steps run ``rnnkit.nn.compiled.stack_step`` (skipped where it is not built);
    ``step_loops(False)``: the Python step.  Returns the list the compiled step's calls are counted in."""
    from rnnkit.nn import compiled

    calls = []
    real = compiled.stack_step
    monkeypatch.setattr(compiled, "stack_step", lambda *a: calls.append(1) or real(*a))

    def use(on: bool):
        if on:
            request.getfixturevalue("need_compiled")
        monkeypatch.setattr(compiled, "USE", on)
        return calls
    return use
