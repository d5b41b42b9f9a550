"""Every benchmark that means something on a GPU, in one run: training vs cuDNN, beam search, sampling, cells, resume.

    python benchmarks/gpu.py                           # CUDA, full shapes: capped at about 8 minutes
    python benchmarks/gpu.py --device cpu --quick      # tiny shapes on CPU: a smoke run of the script itself
    python benchmarks/gpu.py --sections training cells # some sections only

Sections, each a function returning a dict:

* ``training``: one training step (forward, cross-entropy, backward, fused Adam) of rnnkit's
  ``LanguageModel`` (LSTM and GRU, 2 layers, hidden 512 and 1024, batch 64 x 256 tokens) against a
  hand-written ``torch.nn.Embedding`` + ``torch.nn.LSTM``/``GRU`` + ``torch.nn.Linear`` model holding the
  same weights, both stepped by the same plain loop; fp32 and bf16 autocast.  Tokens/s (median seconds)
  and the ratio rnnkit / torch (target >= 0.95: the median of the per-round ratios, with their min and
  max); the first step's loss of each and the largest difference of their logits show that the two
  compute the same thing.
* ``beam_search``: a seq2seq model (random weights, 2-layer BiLSTM encoder, Luong attention) decoding
  random source sentences with beam 5 through ``translate_ids``, one sentence per call and 64 per call:
  sentences/s, and how often the two give the same best hypothesis.
* ``sampling``: sampling 200 tokens from a character LM at batch 1 and 64, ``LanguageModel.step`` with
  ``rnnkit.decoding.generate`` vs a loop stepping ``torch.nn.LSTM`` (as ``benchmarks/generation.py``;
  the same text from the same seed, checked).  On CUDA also the whole generation of the hand-written
  model captured once in a CUDA graph and replayed (Gumbel-max sampling, noise drawn before each replay).
* ``cells``: the training step (as ``benchmarks/modern_cells.py``: forward and backward of the outputs'
  sum) of every cell in ``rnnkit.nn.CELL_NAMES`` at lengths 512, 2048 and 8192 (batch 32, input 64,
  2 layers of 256), tokens/s and the ratio to the LSTM; on CUDA the peak memory of the step
  (``torch.cuda.max_memory_allocated``).
* ``resume``: ``python -m rnnkit train lm --deterministic --device DEVICE`` on generated text, run once
  through, and once killed with SIGKILL mid-run and resumed: are the final weights bitwise equal, and
  by how much do they differ.

A section that fails is recorded as ``{"error": ...}`` and the others still run.  Each section has a
time cap (``CAPS``): past it, it starts no new measurement and marks what is left ``skipped``.  Timed
calls end with ``torch.cuda.synchronize()`` on CUDA.  The report holds, under ``device``, the device's
name and the torch, CUDA and cuDNN versions, under ``environment`` (as every script's here) the machine,
the UTC date and the command line, and each section's wall time; it is written after every section, so
a run cut short keeps what it finished.  Writes
benchmarks/results/gpu[-quick].json (or ``--out``) and prints a summary.
"""
from __future__ import annotations

import gc
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from rnnkit import checkpoint as ckpt
from rnnkit.decoding import generate
from rnnkit.models import LanguageModel, LanguageModelConfig, Seq2Seq, Seq2SeqConfig
from rnnkit.nn import CELL_NAMES
from rnnkit.tasks.seq2seq import translate_ids
from _common import cpu_model, parser, timings, write_report
from generation import BareLM
from modern_cells import make, train_step

TARGET_RATIO = 0.95  # rnnkit's training step vs the hand-written cuDNN loop
CAPS = {"training": 110, "beam_search": 70, "sampling": 50, "cells": 140, "resume": 100}  # seconds: about 8 minutes
QUICK_CAP = 60
SHAPES = {
    "training": dict(cells=("lstm", "gru"), hiddens=(512, 1024), layers=2, embed=64, vocab=65, batch=64, seq=256,
                     steps=5, rounds=5),
    "beam_search": dict(vocab=8000, embed=256, hidden=512, layers=2, sentences=64, min_len=5, max_len=24, beam=5,
                        batches=(1, 64), rounds=2),
    "sampling": dict(hidden=512, layers=2, embed=64, vocab=65, prime=8, tokens=200, batches=(1, 64), rounds=5),
    "cells": dict(batch=32, input=64, hidden=256, layers=2, lengths=(512, 2048, 8192), rounds=3),
    "resume": dict(steps=200, save_every=5, kill_at=60, hidden=64, batch=16, seq=32),
}
QUICK = {
    "training": dict(SHAPES["training"], hiddens=(32,), embed=16, batch=8, seq=16, steps=2, rounds=2),
    "beam_search": dict(vocab=40, embed=16, hidden=32, layers=1, sentences=8, min_len=3, max_len=8, beam=5,
                        batches=(1, 8), rounds=1),
    "sampling": dict(SHAPES["sampling"], hidden=32, embed=16, prime=4, tokens=20, batches=(1, 8), rounds=2),
    "cells": dict(batch=4, input=16, hidden=32, layers=2, lengths=(16, 32, 64), rounds=1),
    "resume": dict(steps=40, save_every=2, kill_at=10, hidden=24, batch=4, seq=16),
}


@dataclass
class Run:
    """What a section needs: where to run, its shapes, how to wait for the device, when to stop."""

    device: torch.device
    shape: dict
    deadline: float  # time.perf_counter() past which no new measurement starts
    threads: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        """Wait for the device's queued work (CUDA runs asynchronously); nothing on CPU."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def past_deadline(self) -> bool:
        return time.perf_counter() > self.deadline

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)


TIME_CAP = {"skipped": "time cap"}
CUDA_ONLY = "CUDA only"


def per_s(count: float, seconds: dict[str, float], digits: int = 0) -> dict[str, float]:
    return {k: round(count / v, digits) if digits else round(count / v) for k, v in seconds.items()}


def measure(run: Run, contestants: dict[str, Callable[[], object]], rounds: int,
            warm_up: bool = True) -> tuple[dict[str, float], dict]:
    """Median seconds of each contestant and the whole :func:`timings`: interleaved rounds, each call
    waited for on the device, no round started past the section's deadline."""
    t = timings(contestants, rounds, warm_up=warm_up, sync=run.sync, deadline=run.deadline)
    return {k: v["median"] for k, v in t["contestants"].items()}, t


def ratio(t: dict, fast: str, slow: str, digits: int = 3) -> dict[str, float]:
    """How much faster ``fast`` ran than ``slow``: the median of the per-round ratios, and their min and max."""
    r = t["ratios"][fast][slow]
    return {k: round(r[k], digits) for k in ("median", "min", "max")}


def attempt(run: Run, fn: Callable[..., dict], **kw) -> dict:
    """``fn(run, **kw)``, or ``{"error": ...}`` if it raises: one failed point leaves its section's others."""
    try:
        return fn(run, **kw)
    except Exception as e:
        traceback.print_exc()
        error = {"error": f"{type(e).__name__}: {e}"}
    release(run)  # out of the except block: the error's frames, and the memory they hold, are gone
    return error


# ---------------------------------------------------------------- 1. training vs the hand-written cuDNN loop

def training(run: Run) -> dict:
    s = run.shape
    rows = []
    for hidden in s["hiddens"]:
        for cell in s["cells"]:
            for precision in ("fp32", "bf16"):
                point = dict(cell=cell, hidden=hidden, precision=precision)
                rows.append({**point, **(TIME_CAP if run.past_deadline() else attempt(run, train_point, **point))})
    return {"shape": {k: s[k] for k in ("layers", "embed", "vocab", "batch", "seq", "steps")},
            "step": "forward, cross-entropy, backward, Adam (fused), the same plain loop for both",
            "target_ratio": TARGET_RATIO, "results": rows}


def train_point(run: Run, cell: str, hidden: int, precision: str) -> dict:
    s = run.shape
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=s["vocab"], cell=cell, hidden_size=hidden,
                                           num_layers=s["layers"], embedding_size=s["embed"]))
    models = {"rnnkit": lm.to(run.device), "torch.nn": BareLM(lm).to(run.device)}  # the same weights
    ids = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1), generator=torch.Generator().manual_seed(1))
    inputs, targets = ids[:, :-1].to(run.device), ids[:, 1:].reshape(-1).to(run.device)
    with torch.no_grad():
        diff = (models["rnnkit"](inputs)[0] - models["torch.nn"](inputs)[0]).abs().max().item()

    def trainer(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

        def step() -> torch.Tensor:
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(inputs)[0].float().reshape(-1, s["vocab"]), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        def steps() -> None:
            for _ in range(s["steps"]):
                step()
        return step, steps

    calls = {k: trainer(m) for k, m in models.items()}
    first = {k: round(step().item(), 5) for k, (step, _) in calls.items()}  # from the same weights; warms up too
    med, t = measure(run, {k: steps for k, (_, steps) in calls.items()}, s["rounds"])
    r = ratio(t, "rnnkit", "torch.nn")  # torch's seconds over rnnkit's, round by round
    return {"tokens_per_s": per_s(s["batch"] * s["seq"] * s["steps"], med), "ratio_rnnkit_vs_torch": r["median"],
            "ratio_spread": r, "meets_target": r["median"] >= TARGET_RATIO, "first_step_loss": first,
            "max_abs_diff_logits": diff, "rounds": t["rounds"]}


# ---------------------------------------------------------------- 2. batched beam search

def beam_search(run: Run) -> dict:
    s = run.shape
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=s["vocab"], tgt_vocab_size=s["vocab"], embedding_size=s["embed"],
                                  hidden_size=s["hidden"], num_layers=s["layers"], attention="luong",
                                  score="general", dropout=0.0)).to(run.device).eval()
    g = torch.Generator().manual_seed(2)
    src = [torch.randint(4, s["vocab"], (int(torch.randint(s["min_len"], s["max_len"] + 1, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(s["sentences"])]
    outputs: dict[str, list] = {}

    def decode(batch: int) -> Callable[[], None]:
        def go() -> None:
            outputs[f"batch {batch}"] = translate_ids(model, src, 0, beam=s["beam"], batch_size=batch)
        return go

    med, t = measure(run, {f"batch {b}": decode(b) for b in s["batches"]}, s["rounds"])
    best = {k: [hyps[0][0] for hyps in v] for k, v in outputs.items()}
    one, many = (f"batch {b}" for b in (s["batches"][0], s["batches"][-1]))
    return {"model": f"seq2seq, random weights, {s['layers']}-layer BiLSTM encoder, hidden {s['hidden']}, Luong "
                     f"(general) attention, vocabulary {s['vocab']}",
            "data": f"{len(src)} random sentences of {s['min_len']}-{s['max_len']} tokens", "beam": s["beam"],
            "sentences_per_s": per_s(len(src), med, digits=2),
            "ratio_batched_vs_one_at_a_time": ratio(t, many, one, digits=2),
            "same_best_hypothesis": round(sum(a == b for a, b in zip(best[one], best[many])) / len(src), 3),
            "mean_output_tokens": round(sum(map(len, best[many])) / len(src), 1), "rounds": t["rounds"]}


# ---------------------------------------------------------------- 3. sampling from a character LM

STEPPED = "torch.nn.LSTM stepped one token"
GRAPHED = "torch.nn.LSTM, whole generation in one CUDA graph"


def sampling(run: Run) -> dict:
    s = run.shape
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], num_layers=s["layers"],
                                           embedding_size=s["embed"])).eval()
    bare = BareLM(lm).to(run.device).eval()
    lm.to(run.device)
    rows = []
    for batch in s["batches"]:
        row = TIME_CAP if run.past_deadline() else attempt(run, sample_point, lm=lm, bare=bare, batch=batch)
        rows.append({"batch": batch, **row})
    return {"model": f"character LM, LSTM {s['layers']}x{s['hidden']}, embedding {s['embed']}, random weights",
            "results": rows}


def sample_point(run: Run, lm: LanguageModel, bare: BareLM, batch: int) -> dict:
    s, n = run.shape, run.shape["tokens"]
    prime = torch.randint(0, s["vocab"], (batch, s["prime"]), generator=torch.Generator().manual_seed(3))
    prime = prime.to(run.device)
    contestants = {"rnnkit LanguageModel.step + generate":
                   lambda: generate(lm.step, None, prime, n, generator=run.generator(1)),
                   STEPPED: lambda: bare.sample(prime, n, run.generator(1))}
    same = torch.equal(*(fn() for fn in contestants.values()))
    graph: dict = {"skipped": f"{CUDA_ONLY} (CUDA graph capture)"}
    if run.cuda:
        try:
            contestants[GRAPHED] = graphed_sampler(bare, prime, n)
            graph = {}
        except Exception as e:  # capture is not supported everywhere: keep the rest of the row
            graph = {"error": f"{type(e).__name__}: {e}"}
    med, t = measure(run, contestants, s["rounds"])
    tokens = per_s(batch * n, med)
    ratios = {k: ratio(t, k, STEPPED, digits=2) for k in med if k != STEPPED}
    if GRAPHED in med:
        graph = {"tokens_per_s": tokens.pop(GRAPHED), "ratio_vs_stepped_torch": ratios.pop(GRAPHED),
                 "sampler": "Gumbel-max: argmax(logits - log E), E ~ Exp(1) drawn before each replay"}
    return {"tokens": n, "same_text": same, "tokens_per_s": tokens, "ratio_vs_stepped_torch": ratios,
            "cuda_graph": graph, "rounds": t["rounds"]}


def graphed_sampler(bare: BareLM, prime: torch.Tensor, length: int) -> Callable[[], torch.Tensor]:
    """The hand-written model's whole generation (the prime, then ``length`` steps) as one CUDA graph.

    ``torch.multinomial`` with a generator of its own cannot be captured, so the graph samples by the
    Gumbel-max rule: the argmax of ``logits + G`` with ``G = -log(E)``, ``E ~ Exp(1)``, one draw per
    step and row, made (outside the graph) before each replay.
    """
    B, V = prime.shape[0], bare.out.out_features
    noise = torch.empty(length, B, V, device=prime.device)
    tokens = torch.empty(B, length, dtype=torch.long, device=prime.device)

    def body() -> None:
        y, hx = bare.rnn(bare.emb(prime))
        logits = bare.out(y[:, -1])  # (B, V)
        for i in range(length):
            token = (logits.float() + noise[i]).argmax(-1, keepdim=True)  # (B, 1)
            tokens[:, i: i + 1].copy_(token)
            if i < length - 1:
                y, hx = bare.rnn(bare.emb(token), hx)
                logits = bare.out(y[:, -1])

    def draw() -> None:
        noise.exponential_().log_().neg_()

    with torch.no_grad():
        draw()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up outside the capture, on a side stream
            body()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()

    def go() -> torch.Tensor:
        draw()
        graph.replay()
        return tokens
    return go


# ---------------------------------------------------------------- 4. the cells of the table

def cells(run: Run) -> dict:
    s = run.shape
    modules = {cell: make(cell, s).to(run.device) for cell in CELL_NAMES}
    seconds: dict[str, tuple[int, float]] = {}  # a cell's last measured (length, seconds): predicts the next
    rows = []
    for length in s["lengths"]:
        x = torch.randn(s["batch"], length, s["input"], generator=torch.Generator().manual_seed(length))
        x = x.to(run.device)
        steps, planned = {}, time.perf_counter()
        for cell, module in modules.items():
            row = {"cell": cell, "length": length}
            guess = seconds[cell][1] * length / seconds[cell][0] if cell in seconds else 0.0
            if planned + 2 * guess > run.deadline or run.past_deadline():  # its warm-up and one round
                rows.append({**row, "skipped": f"time cap (about {guess:.1f} s a step predicted)" if guess
                             else "time cap"})
                continue
            planned += 2 * guess
            try:  # the warm-up, alone: a cell that fails here (out of memory, say) leaves the others measured
                train_step(module, x)()
                run.sync()
                steps[cell] = train_step(module, x)
            except Exception as e:
                rows.append({**row, "error": f"{type(e).__name__}: {e}"})
            if cell not in steps:
                release(run)
        if not steps:
            continue
        med, t = measure(run, steps, s["rounds"], warm_up=False)
        for cell, sec in med.items():
            seconds[cell] = (length, sec)
            row = {"cell": cell, "length": length, "seconds": round(sec, 5),
                   "tokens_per_s": round(s["batch"] * length / sec), "rounds": t["rounds"]}
            if "lstm" in med:  # > 1: faster than the LSTM (the median of the per-round ratios)
                row["vs_lstm"] = 1.0 if cell == "lstm" else ratio(t, cell, "lstm")["median"]
            rows.append({**row, **peak_memory(run, modules[cell], steps[cell])})
    rows.sort(key=lambda r: (r["length"], CELL_NAMES.index(r["cell"])))
    return {"shape": {k: s[k] for k in ("batch", "input", "hidden", "layers")},
            "step": "forward, then backward of outputs.sum() (benchmarks/modern_cells.py)",
            "peak_memory": ("torch.cuda.max_memory_allocated over one step, gradients cleared first: "
                            "peak_mib in all, step_mib above what was held before the step") if run.cuda
            else {"skipped": f"{CUDA_ONLY} (torch.cuda.max_memory_allocated)"},
            "results": rows}


def peak_memory(run: Run, module: torch.nn.Module, step: Callable[[], None]) -> dict:
    if not run.cuda:
        return {"peak_mib": None, "step_mib": None}
    module.zero_grad(set_to_none=True)
    run.sync()
    torch.cuda.reset_peak_memory_stats(run.device)
    before = torch.cuda.memory_allocated(run.device)
    step()
    run.sync()
    peak = torch.cuda.max_memory_allocated(run.device)
    return {"peak_mib": round(peak / 2 ** 20, 1), "step_mib": round((peak - before) / 2 ** 20, 1)}


def release(run: Run) -> None:
    """Give back what a finished or failed measurement left (an out-of-memory error leaves much)."""
    gc.collect()
    if run.cuda:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- 5. killed and resumed: the same bits?

def resume(run: Run) -> dict:
    s = run.shape
    with tempfile.TemporaryDirectory(prefix="rnnkit-gpu-bench-") as tmp:
        work = Path(tmp)
        text = work / "text.txt"
        text.write_text(generated_text(), encoding="utf-8")
        args = ["--data", str(text), "--deterministic", "--device", run.device.type, "--threads", str(run.threads),
                "--max-steps", str(s["steps"]), "--save-every", str(s["save_every"]),
                "--eval-every", str(s["steps"] // 2), "--hidden", str(s["hidden"]), "--layers", "2",
                "--embedding-size", "16", "--dropout", "0.1", "--seq-len", str(s["seq"]),
                "--batch-size", str(s["batch"]), "--seed", "7", "--no-progress", "--sample-length", "0"]
        full, cut = work / "full", work / "cut"
        whole = train_lm([*args, "--out", str(full)])  # the uninterrupted run, beside the one to be killed
        try:
            killed_at = kill_when_saved(run, train_lm([*args, "--out", str(cut)]), cut, s["kill_at"])
            finish(run, whole)
        finally:
            if whole.poll() is None:
                whole.kill()
                whole.communicate()
        finish(run, train_lm(["--out", str(cut), "--resume", "--device", run.device.type, "--deterministic",
                              "--threads", str(run.threads), "--no-progress", "--sample-length", "0"]))
        last = compare(ckpt.load_training_state(full)["model"], ckpt.load_training_state(cut)["model"])
        best = compare(ckpt.load_tensors(full / ckpt.WEIGHTS)[0], ckpt.load_tensors(cut / ckpt.WEIGHTS)[0])
        final_step = ckpt.load_training_state(cut)["step"]
    shown = ["TEXT" if a == str(text) else a for a in args]
    return {"command": shlex.join(["python", "-m", "rnnkit", "train", "lm", *shown, "--out", "RUN"]),
            "killed_at_step": killed_at, "final_step": final_step, "steps": s["steps"],
            "bitwise_equal": last["bitwise_equal"], "max_abs_diff": last["max_abs_diff"],
            "differing": last["differing"], "best_weights": best}


def generated_text(lines: int = 400) -> str:
    """Lines of made-up words from a fixed seed: text with something to learn, the same on every machine."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 6))) for _ in range(60)]
    return "".join(" ".join(rng.choice(words) for _ in range(8)) + ".\n" for _ in range(lines))


def train_lm(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnkit", "train", "lm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(run: Run, p: subprocess.Popen) -> None:
    """Wait for a training process (up to the section's cap, and at least 30 s); raise if it failed."""
    try:
        _, err = p.communicate(timeout=max(30.0, run.deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError(f"{shlex.join(p.args)} ran past the time cap") from None
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(p.args)} exited {p.returncode}:\n{err[-2000:]}")


def kill_when_saved(run: Run, p: subprocess.Popen, out: Path, step: int) -> int:
    """SIGKILL ``p`` once its checkpoint has reached ``step``; the step it had saved when it died."""
    state = out / ckpt.LAST / ckpt.STATE
    limit = time.perf_counter() + max(30.0, run.deadline - time.perf_counter())
    while p.poll() is None and time.perf_counter() < limit:
        if state.exists():
            try:
                if ckpt.load_training_state(out)["step"] >= step:
                    break
            except Exception:  # caught between writes: read it again
                pass
        time.sleep(0.01)
    if p.poll() is not None:
        _, err = p.communicate()
        raise RuntimeError(f"the run ended (exit {p.returncode}) before it could be killed at step {step}; "
                           f"make it longer\n{err[-2000:]}")
    p.send_signal(signal.SIGKILL)
    p.communicate()
    saved = ckpt.load_training_state(out)["step"]
    if not 0 < saved < run.shape["steps"]:
        raise RuntimeError(f"killed with step {saved} saved: not mid-run")
    return saved


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict:
    keys = sorted(a.keys() & b.keys())
    differing = [k for k in keys if not torch.equal(a[k], b[k])]
    diff = max(((a[k].double() - b[k].double()).abs().max().item() for k in differing), default=0.0)
    return {"bitwise_equal": a.keys() == b.keys() and not differing, "max_abs_diff": diff,
            "differing": differing[:10], "missing": sorted(a.keys() ^ b.keys())}


# ---------------------------------------------------------------- the run

SECTIONS: dict[str, Callable[[Run], dict]] = {"training": training, "beam_search": beam_search,
                                              "sampling": sampling, "cells": cells, "resume": resume}


def device_record(device: torch.device) -> dict:
    """The device and the libraries that drive it (the machine, date and command line: ``environment``)."""
    cuda = device.type == "cuda"
    return {"device": str(device),
            "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model(),
            "device_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1)
            if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}


def run_section(name: str, run: Run) -> dict:
    t0 = time.perf_counter()
    try:
        result = SECTIONS[name](run)
    except Exception as e:
        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=-4)}
    release(run)
    return {**result, "wall_s": round(time.perf_counter() - t0, 1)}


def summary(sections: dict) -> list[str]:
    """A few lines per section for the terminal; the JSON has the rest."""
    def unmeasured(r: dict) -> str:
        return r.get("skipped") or (f"ERROR {r['error']}" if "error" in r else "")

    lines = []
    for name, res in sections.items():
        lines.append(f"{name} ({res['wall_s']} s)" + (f": ERROR {res['error']}" if "error" in res else ""))
        if "error" in res:
            continue
        if name == "training":
            lines += [f"  {r['cell']} H{r['hidden']} {r['precision']:5} " + (unmeasured(r) or
                      f"tok/s {r['tokens_per_s']}  ratio {r['ratio_rnnkit_vs_torch']}") for r in res["results"]]
        elif name == "beam_search":
            lines.append(f"  sentences/s {res['sentences_per_s']}  same best {res['same_best_hypothesis']}")
        elif name == "sampling":
            lines += [f"  batch {r['batch']:<4} " + (unmeasured(r) or
                      f"tok/s {r['tokens_per_s']}  same text {r['same_text']}  graph {r['cuda_graph']}")
                      for r in res["results"]]
        elif name == "cells":
            lines += [f"  {r['cell']:8} {r['length']:>6} " + (unmeasured(r) or
                      f"tok/s {r['tokens_per_s']:>10,}  vs lstm {r.get('vs_lstm', '-')}  peak MiB {r['peak_mib']}")
                      for r in res["results"]]
        elif name == "resume":
            lines.append(f"  killed at step {res['killed_at_step']}, bitwise equal {res['bitwise_equal']}, "
                         f"max |diff| {res['max_abs_diff']:.3g}")
    return lines


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu [cuda]; cpu is for --quick smoke runs")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                    help="which sections to run [all]")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here; `--device cpu --quick` runs the script on the CPU")
    if device.type not in ("cuda", "cpu"):
        ap.error(f"--device must be cuda or cpu; got {args.device!r}")
    torch.set_num_threads(args.threads)
    caps = {name: QUICK_CAP if args.quick else CAPS[name] for name in args.sections}
    report: dict = {"device": device_record(device), "quick": args.quick, "caps_s": caps, "sections": {}}
    t0 = time.perf_counter()
    for name in args.sections:
        run = Run(device, (QUICK if args.quick else SHAPES)[name], time.perf_counter() + caps[name], args.threads)
        print(f"{name}: at most about {caps[name]} s", file=sys.stderr, flush=True)
        report["sections"][name] = run_section(name, run)
        report["wall_s"] = round(time.perf_counter() - t0, 1)
        out = write_report("gpu", args, **report)  # after every section: a run cut short keeps what it did
    print("\n".join(summary(report["sections"])))
    print(f"{report['wall_s']} s in all; written to {out}")


if __name__ == "__main__":
    main()
