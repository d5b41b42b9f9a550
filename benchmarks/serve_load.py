"""Load test of ``rnnkit serve``: N concurrent clients on loopback for a bounded time.

Starts the server (``rnnkit.serve.serve``) in a child process on a free loopback port with the given run
folders, warms it up, then lets ``--clients`` threads, each with its own keep-alive HTTP connection, send
requests to one model's endpoint back to back for ``--seconds``.  Reports requests per second, latency
percentiles (p50, p90, p99, max) and the error count (any non-200 answer or failed request); exits 1 if
there was an error.  ``--quick`` trains a tiny classifier when no run is given (a smoke run of ~30 s).

    python benchmarks/serve_load.py runs/mrx-base --clients 8 --seconds 20
    python benchmarks/serve_load.py --quick
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

DEFAULT_TEXT = {
    "classify": "a warm and lovely story, with great acting",
    "tag": "John Smith lives in Paris .",
    "seq2seq": "cat dog bird",
    "lm": "the ",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_classifier(root: Path) -> Path:
    """Train a small sentiment classifier in a few seconds (for --quick without runs)."""
    from rnnkit.cli import main

    pos = ["good great fine film", "a lovely warm story", "great acting and fun", "fun and lovely"]
    neg = ["bad dull boring film", "a terrible cold story", "boring acting and dull", "dull and terrible"]
    rng = random.Random(0)
    (root / "train.tsv").write_text("text\tlabel\n" + "".join(
        f"{rng.choice(pos)}\tpos\n{rng.choice(neg)}\tneg\n" for _ in range(60)), encoding="utf-8")
    run = root / "tiny-classify"
    assert main(["train", "classify", "--train", str(root / "train.tsv"), "--text-column", "text",
                 "--label-column", "label", "--out", str(run), "--epochs", "4", "--hidden", "32",
                 "--embedding-size", "32", "--no-progress", "--threads", "1"]) == 0
    return run


def start_server(runs: list[str], port: int, threads: int | None, max_batch: int, log: Path) -> subprocess.Popen:
    code = ("import sys, torch\n"
            f"if {threads!r}: torch.set_num_threads({threads!r})\n"
            "from rnnkit.serve import serve\n"
            f"serve({runs!r}, host='127.0.0.1', port={port}, max_batch={max_batch}, log_level='warning')\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            r = httpx.get(url + "/api/models", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"the server did not answer within {timeout:.0f} s:\n{log.read_text()}")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def load(url: str, endpoint: str, body: dict, clients: int, seconds: float) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[list[str]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            start.wait()
            while time.perf_counter() < stop_at[0]:
                t = time.perf_counter()
                try:
                    r = c.post(endpoint, json=body)
                    if r.status_code != 200:
                        errors[i].append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                except httpx.HTTPError as e:
                    errors[i].append(f"{type(e).__name__}: {e}")
                    continue
                latencies[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    lat = sorted(x for per in latencies for x in per)
    errs = [e for per in errors for e in per]
    ms = lambda v: round(1000 * v, 2)  # noqa: E731
    return {"requests": len(lat), "errors": len(errs), "first_errors": errs[:5], "elapsed_s": round(elapsed, 2),
            "requests_per_s": round(len(lat) / elapsed, 1),
            "latency_ms": {"p50": ms(percentile(lat, 50)), "p90": ms(percentile(lat, 90)),
                           "p99": ms(percentile(lat, 99)), "mean": ms(sum(lat) / max(len(lat), 1)),
                           "max": ms(lat[-1]) if lat else None},
            "per_client_requests": [len(per) for per in latencies]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="run folders to serve (with --quick: optional)")
    ap.add_argument("--model", help="the model to load-test (default: the first run)")
    ap.add_argument("--text", help="the request text (default: one per task)")
    ap.add_argument("--batch", type=int, default=1, help="texts per request (1: a plain string) [1]")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients [8]")
    ap.add_argument("--seconds", type=float, default=20, help="how long the clients send requests [20]")
    ap.add_argument("--server-threads", type=int, help="torch threads in the server (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="5 s, 4 clients; trains a tiny classifier if no run")
    ap.add_argument("--out", type=Path, help="JSON file [benchmarks/results/serve_load[-quick].json]")
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 5)
        args.clients = min(args.clients, 4)
    tmp = tempfile.TemporaryDirectory(prefix="serve_load-")
    runs = list(args.runs)
    if not runs:
        if not args.quick:
            ap.error("give run folders to serve, or --quick to train a tiny classifier")
        runs = [str(tiny_classifier(Path(tmp.name)))]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tmp.name) / "server.log"
    proc = start_server([str(Path(r).resolve()) for r in runs], port, args.server_threads,
                        max(args.batch, 32), log)
    try:
        models = wait_ready(url, proc, log)["models"]
        info = next((m for m in models if m["name"] == args.model), None) if args.model else models[0]
        if info is None:
            sys.exit(f"no model {args.model!r}; loaded: {[m['name'] for m in models]}")
        text = args.text or DEFAULT_TEXT[info["task"]]
        body: dict = {"model": info["name"], "text": text if args.batch == 1 else [text] * args.batch}
        if info["task"] == "lm":
            body.update(length=50, temperature=0.8, **({"label": info["labels"][0]} if info.get("labels") else {}))
        warm = httpx.post(url + info["endpoint"], json=body, timeout=60)
        if warm.status_code != 200:
            sys.exit(f"the warm-up request failed: HTTP {warm.status_code} {warm.text}")
        for _ in range(5):
            httpx.post(url + info["endpoint"], json=body, timeout=60)
        load_avg = os.getloadavg()
        print(f"{info['name']} ({info['task']}) at {url}{info['endpoint']}: {args.clients} clients for "
              f"{args.seconds:g} s, {args.batch} text(s) per request; load average {load_avg[0]:.2f}", flush=True)
        result = load(url, info["endpoint"], body, args.clients, args.seconds)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    import torch

    report = {"benchmark": "serve_load", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "model": info["name"], "task": info["task"], "endpoint": info["endpoint"], "request": body,
              "clients": args.clients, "seconds": args.seconds, "server_threads": args.server_threads,
              "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "load_average_before": [round(x, 2) for x in load_avg], **result}
    lat = result["latency_ms"]
    print(f"{'requests':>10} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{result['requests']:>10} {result['errors']:>7} {result['requests_per_s']:>8} {lat['p50']:>8} "
          f"{lat['p90']:>8} {lat['p99']:>8} {lat['max']:>8}")
    for e in result["first_errors"]:
        print("error:", e)
    out = args.out or Path(__file__).parent / "results" / f"serve_load{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    tmp.cleanup()
    sys.exit(1 if result["errors"] else 0)


if __name__ == "__main__":
    main()
