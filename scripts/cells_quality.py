"""Every cell on every task at the same training-time budget: the quality table of docs/cells.md.

For each task below and each cell of ``rnnkit.nn.CELL_NAMES`` this runs ``rnnkit train TASK ... --cell
CELL --max-time BUDGET --threads 1`` into ``OUT/TASK-CELL`` (``--jobs`` runs side by side, one thread
each), then reads each run folder's scores and writes ``OUT/cells_quality.json`` and a Markdown table.
A run whose folder already has its scores is not run again, so a stopped sweep continues where it
stopped. Every run gets the same budget per task whatever its cell, a constant learning rate (so that
no schedule depends on how far a run got) and one validation at the end; the figure is the test split
where the task has one (Tiny Shakespeare has none: the last tenth of the text, which the LM holds out).

    python scripts/cells_quality.py --data ../shared/data --out runs/cellsq               # the full sweep
    python scripts/cells_quality.py --data ../shared/data --out runs/cellsq --tasks names --cells lstm mingru
    python scripts/cells_quality.py --out runs/cellsq --table                              # the table only

Budgets are minutes of training (``--max-time``) per run; ``--scale`` multiplies all of them.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CELLS = ("lstm", "gru", "rnn", "mingru", "minlstm", "lru", "slstm", "mlstm")

# task -> (minutes of training, the score's name, higher is better, the command after `rnnkit train`)
TASKS: dict[str, tuple[float, str, bool, str]] = {
    "shakespeare": (2.5, "valid nats/char", False,
                    "lm --data {D}/tinyshakespeare/input.txt --hidden 256 --layers 2 --embedding-size 64 "
                    "--seq-len 128 --batch-size 32 --lr 0.002 --max-steps 1000000 --eval-every 1000000 "
                    "--sample-length 0"),
    "names": (1.0, "test accuracy %", True,
              "classify --train {D}/names --tokenizer char --valid-split 0.1 --test-split 0.1 --seed 0 "
              "--embedding-size 32 --hidden 128 --layers 1 --bidirectional --pooling last --dropout 0.2 "
              "--batch-size 32 --lr 0.002 --epochs 1000 --eval-every 1000000"),
    "upos": (2.0, "test UPOS accuracy %", True,
             "tag --train {D}/ud_english_ewt/en_ewt-ud-train.conllu --valid {D}/ud_english_ewt/en_ewt-ud-dev.conllu "
             "--test {D}/ud_english_ewt/en_ewt-ud-test.conllu --lower --char-encoder lstm --char-hidden 50 "
             "--embedding-size 100 --hidden 200 --dropout 0.33 --word-dropout 0.05 --batch-size 32 --lr 0.002 "
             "--epochs 1000 --eval-every 1000000"),
    "cmudict": (2.5, "test WER % (greedy)", False,
                "seq2seq --format cmudict --train {D}/cmudict/cmudict.dict "
                "--test {D}/cmudict_standard/cmudict-0.7b.test --drop-stress --split 0.95,0.05,0 "
                "--embedding-size 128 --hidden 256 --layers 1 --attention luong --dropout 0.2 "
                "--label-smoothing 0.1 --batch-size 128 --lr 0.002 --epochs 1000 --eval-every 1000000 --beam 1"),
    "multi30k": (2.5, "test BLEU (greedy)", True,
                 "seq2seq --train-src {D}/multi30k/train.de --train-tgt {D}/multi30k/train.en "
                 "--valid-src {D}/multi30k/val.de --valid-tgt {D}/multi30k/val.en "
                 "--test-src {D}/multi30k/test_2016_flickr.de --test-tgt {D}/multi30k/test_2016_flickr.en "
                 "--tokenizer bpe --bpe-vocab-size 8000 --embedding-size 256 --hidden 256 --attention luong "
                 "--dropout 0.3 --label-smoothing 0.1 --batch-size 64 --lr 0.002 --epochs 1000 "
                 "--eval-every 1000000 --beam 1"),
}


def command(task: str, cell: str, data: Path, out: Path, scale: float) -> list[str]:
    minutes, _, _, args = TASKS[task]
    return ([sys.executable, "-m", "rnnkit", "train"] + args.format(D=data).split()
            + ["--cell", cell, "--max-time", f"{minutes * scale:g}", "--threads", "1", "--seed", "0",
               "--no-progress", "--out", str(out / f"{task}-{cell}")])


def score(task: str, run: Path) -> dict | None:
    """The run's figure, steps and parameters, or None when the run has not finished."""
    log = run.parent / f"{run.name}.log"
    text = log.read_text() if log.is_file() else ""
    if "run folder:" not in text and not (run / "report.json").is_file():
        return None
    params = re.search(r"([\d,]+) parameters", text)
    rows = list(csv.DictReader((run / "metrics.csv").open())) if (run / "metrics.csv").is_file() else []
    out = {"parameters": int(params.group(1).replace(",", "")) if params else None,
           "steps": int(rows[-1]["step"]) if rows else None,
           "epochs": round(float(rows[-1]["epoch"]), 2) if rows and rows[-1].get("epoch") else None}
    if task == "shakespeare":
        if not rows:
            return None
        out["score"] = round(float(rows[-1]["valid_loss"]), 4)
        return out
    report_file = run / "report.json"
    if not report_file.is_file():
        return None
    report = json.loads(report_file.read_text())
    out["train_seconds"] = report.get("train_seconds")
    if task in ("names", "upos"):
        out["score"] = round(100 * report["accuracy"], 2)
    elif task == "cmudict":
        out["score"] = round(100 * report["wer"], 2)
        out["per"] = round(100 * report["per"], 2)
    else:
        out["score"] = round(report["bleu"], 2)
    return out


def run_one(task: str, cell: str, data: Path, out: Path, scale: float) -> tuple[str, str, float]:
    run = out / f"{task}-{cell}"
    if score(task, run) is not None:
        return task, cell, 0.0
    t0 = time.perf_counter()
    with (out / f"{task}-{cell}.log").open("w") as log:
        subprocess.run(command(task, cell, data, out, scale) + (["--resume"] if run.exists() else []),
                       stdout=log, stderr=subprocess.STDOUT, check=False)
    return task, cell, time.perf_counter() - t0


def table(out: Path, tasks: list[str], cells: list[str], scale: float) -> str:
    results = {t: {c: score(t, out / f"{t}-{c}") for c in cells} for t in tasks}
    (out / "cells_quality.json").write_text(json.dumps(
        {"budget_minutes": {t: TASKS[t][0] * scale for t in tasks}, "metric": {t: TASKS[t][1] for t in tasks},
         "results": results}, indent=2) + "\n")
    lines = ["| task (minutes per run) | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells)]
    for t in tasks:
        _, metric, higher, _ = TASKS[t]
        got = {c: r["score"] for c, r in results[t].items() if r}
        best = (max if higher else min)(got.values()) if got else None
        cellsrow = [("**{}**" if got.get(c) == best else "{}").format(got[c]) if c in got else "–" for c in cells]
        lines.append(f"| {t}: {metric} ({TASKS[t][0] * scale:g}) | " + " | ".join(cellsrow) + " |")
    lines.append("| parameters (Shakespeare LM) | " + " | ".join(
        f"{(results['shakespeare'][c] or {}).get('parameters') or '–':,}" if "shakespeare" in results
        and results["shakespeare"].get(c) else "–" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="the datasets' folder [../shared/data]")
    ap.add_argument("--out", type=Path, default=Path("runs/cellsq"), help="run folders and results [runs/cellsq]")
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    ap.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each [2]")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every budget by this [1]")
    ap.add_argument("--table", action="store_true", help="only read the finished runs and print the table")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        jobs = [(t, c) for c in args.cells for t in args.tasks]
        with ThreadPoolExecutor(args.jobs) as pool:
            for task, cell, seconds in pool.map(lambda j: run_one(*j, args.data, args.out, args.scale), jobs):
                print(f"{task}-{cell}: {seconds:.0f} s", flush=True)
    print(table(args.out, args.tasks, args.cells, args.scale))


if __name__ == "__main__":
    main()
