"""The same command gives the same bits: at default settings, on a busy machine, killed and resumed or not.

No ``--deterministic`` and no ``--threads`` here: the promise is about the
command a user types.  A process that keeps one core busy with matrix products
runs beside each test, so a choice made by timing (which matmul library is
faster) would come out differently from run to run if it were made per process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from rnnkit import checkpoint as ckpt
from rnnkit.data import bundled_path

ARGS = ["--max-steps", "60", "--hidden", "48", "--layers", "2", "--seq-len", "32", "--batch-size", "16",
        "--dropout", "0.1", "--seed", "7", "--eval-every", "30", "--sample-length", "0", "--no-progress"]


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "shakespeare-60k.txt"
    path.write_text(bundled_path("tinyshakespeare").read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    return path


@contextmanager
def busy_core():
    """A process that keeps one core busy with float32 products until the block ends."""
    p = subprocess.Popen([sys.executable, "-c", "import torch\ntorch.set_num_threads(1)\n"
                          "a = torch.randn(512, 512)\nwhile True: a = torch.mm(a, a).tanh_()"])
    try:
        yield
    finally:
        p.kill()
        p.wait()


def _train(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnkit", "train", "lm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RNNKIT_ONEDNN_MATMUL", None)
    env["RNNKIT_KERNEL_CACHE"] = str(tmp_path / "kernels.json")  # empty: the first process times the kernels
    return env


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with the value after ``flag`` replaced."""
    i = args.index(flag)
    return [*args[:i + 1], value, *args[i + 2:]]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_tensors(path)[0]


def _assert_same_bits(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_runs_of_one_command_are_bitwise_equal_on_a_busy_machine(tmp_path, text):
    env = _env(tmp_path)
    with busy_core():
        runs = [_train(["--data", str(text), "--out", str(tmp_path / f"run{i}"), *ARGS], env) for i in range(2)]
        for p in runs:  # started together: both find no recorded kernel choice
            assert p.wait(timeout=300) == 0, p.stderr.read()
    _assert_same_bits(_weights(tmp_path / "run0" / ckpt.WEIGHTS), _weights(tmp_path / "run1" / ckpt.WEIGHTS))
    choices = [ckpt.load_json(tmp_path / f"run{i}" / ckpt.KERNELS) for i in range(2)]
    assert choices[0] == choices[1] and isinstance(choices[0]["onednn_matmul"], bool)


def test_killed_twice_and_resumed_at_defaults_ends_bitwise_equal(tmp_path, text):
    env = _env(tmp_path)
    total = 150  # steps: room for two kills wherever the machine's speed puts the checkpoints
    args = ["--data", str(text), *_replace(ARGS, "--max-steps", str(total)), "--save-every", "3"]
    with busy_core():
        p = _train([*args, "--out", str(tmp_path / "full")], env)
        assert p.wait(timeout=300) == 0, p.stderr.read()
        cut = tmp_path / "cut"
        state = cut / ckpt.LAST / ckpt.STATE
        p = _train([*args, "--out", str(cut)], env)
        steps = []
        for wait in (0.13, 0.07):
            # a kill after at least 15 more steps have been saved, whatever the speed of this machine
            target = (steps[-1] if steps else 0) + 15
            deadline = time.time() + 120
            while (not state.exists() or ckpt.load_training_state(cut)["step"] < target) and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(wait)  # then kill at an arbitrary moment, perhaps in the middle of a checkpoint write
            p.send_signal(signal.SIGKILL)
            p.wait()
            steps.append(ckpt.load_training_state(cut)["step"])
            assert steps[-1] < total, "the kill should land mid-run; make the run longer if this fails"
            p = _train(["--out", str(cut), "--resume", "--no-progress", "--sample-length", "0"], env)
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert 0 < steps[0] < steps[1] < total
    _assert_same_bits(_weights(tmp_path / "full" / ckpt.WEIGHTS), _weights(cut / ckpt.WEIGHTS))
    _assert_same_bits(ckpt.load_training_state(tmp_path / "full")["model"], ckpt.load_training_state(cut)["model"])
    assert not list(cut.glob("**/*.tmp"))
