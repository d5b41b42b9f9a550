"""int8 inference: float32 vs ``--int8`` (``rnnkit.nn.int8``) on the four tasks, speed and quality.

One process: each task's run folder is opened twice, float32 and quantised, and the two
are timed interleaved round by round (medians, ratio = float time / int8 time).  Then
each task's test set is scored both ways through the same entry points as
``rnnkit evaluate [--int8]``.

    python benchmarks/int8.py            # models of the README's sizes, trained here first (long)
    python benchmarks/int8.py --quick    # small models, short training: a smoke run
    python benchmarks/int8.py --sweep    # one LSTM / GRU / RNN stack alone over hidden sizes: where int8 gains

Data: bundled with rnnkit, so nothing needs downloading.  The classifier learns the
genre of an UD English-EWT sentence (5 classes) and the tagger its UPOS tags, each
from 85 % of the bundled EWT dev file, tested on the other 15 %; the seq2seq model
spells CMUdict words as phonemes (first pronunciation, words split 90/10), beam 5;
the language model is Tiny Shakespeare's first 90 %, tested on the last 10 %.
Runs are trained once into ``--work`` (default ``runs/bench-int8[-quick][-stepsN]``, which
git ignores) and reused by later invocations: delete the folder to train again.

What is timed, at batch 1 (and 64 where a batch is the natural workload): the model's
inference call on ids already encoded (tokenising costs the same either way):
``predict_proba`` (classifier), ``predict`` (tagger), ``translate_ids(beam=5)``
(seq2seq, one word at a time) and 200 sampled tokens through ``LanguageModel.step``.

Writes benchmarks/results/int8[-steps N][-quick].json and prints a table.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from _common import median_times, parser, write_report

HERE = Path(__file__).parent

# per task: (train flags at full size, at --quick size)
MODELS = {
    "classify": (["--embedding-size", "128", "--hidden", "256", "--bidirectional", "--pooling", "max",
                  "--dropout", "0.3", "--epochs", "8", "--batch-size", "32", "--lr", "0.003"],
                 ["--embedding-size", "32", "--hidden", "64", "--bidirectional", "--pooling", "max",
                  "--max-steps", "120", "--batch-size", "32", "--lr", "0.005"]),
    "tag": (["--embedding-size", "100", "--hidden", "256", "--layers", "2", "--bidirectional",
             "--char-encoder", "cnn", "--char-hidden", "32", "--dropout", "0.3", "--epochs", "10",
             "--batch-size", "16", "--lr", "0.003"],
            ["--embedding-size", "32", "--hidden", "64", "--bidirectional", "--max-steps", "120",
             "--batch-size", "16", "--lr", "0.005"]),
    "seq2seq": (["--src-tokenizer", "char", "--tgt-tokenizer", "word", "--embedding-size", "64",
                 "--hidden", "512", "--attention", "luong", "--dropout", "0.1", "--beam", "5", "--epochs", "10",
                 "--batch-size", "64", "--lr", "0.003"],
                ["--src-tokenizer", "char", "--tgt-tokenizer", "word", "--embedding-size", "32",
                 "--hidden", "128", "--attention", "luong", "--dropout", "0", "--beam", "5", "--max-steps", "150",
                 "--batch-size", "64", "--lr", "0.005"]),
    "lm": (["--hidden", "512", "--layers", "2", "--embedding-size", "64", "--seq-len", "128", "--max-steps", "3000",
            "--batch-size", "32", "--lr", "0.002", "--sample-length", "0"],
           ["--hidden", "128", "--layers", "2", "--embedding-size", "32", "--seq-len", "64", "--max-steps", "150",
            "--batch-size", "16", "--lr", "0.005", "--sample-length", "0"]),
}


# ---------------------------------------------------------------------------- data and runs


def prepare_data(work: Path) -> dict[str, dict[str, Path]]:
    """Train and test files of each task, written from rnnkit's bundled data into ``work/data``."""
    from rnnkit.data import bundled_path, read_conllu, read_text

    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    files = {"classify": {"train": d / "genres-train.tsv", "test": d / "genres-test.tsv"},
             "tag": {"train": d / "pos-train.conllu", "test": d / "pos-test.conllu"},
             "seq2seq": {"train": d / "g2p-train.tsv", "test": d / "g2p-test.tsv"},
             "lm": {"train": d / "shakespeare-train.txt", "test": d / "shakespeare-test.txt"}}
    if all(p.exists() for f in files.values() for p in f.values()):
        return files
    ud = bundled_path("ud_ewt_dev")
    blocks = [b for b in ud.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    cut = int(len(blocks) * 0.85)
    files["tag"]["train"].write_text("\n\n".join(blocks[:cut]) + "\n\n", encoding="utf-8")
    files["tag"]["test"].write_text("\n\n".join(blocks[cut:]) + "\n\n", encoding="utf-8")
    for part in ("train", "test"):  # the genre is the prefix of the sentence id: answers, email, newsgroup, ...
        rows = []
        for s in read_conllu(files["tag"][part]):
            sent_id = next(r for r in s.rows if r.startswith("# sent_id"))
            rows.append(f"{' '.join(s.tokens)}\t{sent_id.split('=', 1)[1].strip().split('-', 1)[0]}\n")
        files["classify"][part].write_text("".join(rows), encoding="utf-8")
    words: dict[str, str] = {}
    for line in bundled_path("cmudict_20k").read_text(encoding="utf-8").splitlines():
        parts = line.split("#")[0].split()
        if len(parts) > 1 and "(" not in parts[0]:
            words.setdefault(parts[0], " ".join(parts[1:]))
    order = sorted(words)
    random.Random(0).shuffle(order)
    cut = int(len(order) * 0.9)
    for part, chosen in (("train", order[:cut]), ("test", order[cut:])):
        files["seq2seq"][part].write_text("".join(f"{w}\t{words[w]}\n" for w in chosen), encoding="utf-8")
    text = read_text(bundled_path("tinyshakespeare"))
    cut = text.index("\n", int(len(text) * 0.9)) + 1
    files["lm"]["train"].write_text(text[:cut], encoding="utf-8")
    files["lm"]["test"].write_text(text[cut:], encoding="utf-8")
    return files


def train_runs(work: Path, files: dict, quick: bool, threads: int, max_steps: int = 0,
               tasks: Sequence[str] = tuple(MODELS)) -> dict[str, Path]:
    """A run folder for each of ``tasks`` under ``work`` (trained here unless it already holds a finished
    run); ``max_steps`` > 0 replaces each task's training length."""
    from rnnkit.cli import main
    from rnnkit.tasks.runs import has_checkpoint

    runs = {}
    for task in tasks:
        sizes = MODELS[task]
        run = work / task
        runs[task] = run
        if has_checkpoint(run):
            continue
        data = (["--data", str(files[task]["train"])] if task == "lm"
                else ["--train", str(files[task]["train"])])
        if task == "classify":
            data += ["--format", "tsv", "--valid-split", "0.1", "--test-split", "0", "--lower"]
        if task == "tag":
            data += ["--lower"]
        print(f"training the {task} run into {run} ...", file=sys.stderr, flush=True)
        size = list(sizes[1 if quick else 0])
        if max_steps:
            at = next(i for i, f in enumerate(size) if f in ("--epochs", "--max-steps"))
            size[at: at + 2] = ["--max-steps", str(max_steps)]
        argv = ["train", task, *data, *size, "--out", str(run), "--overwrite", "--seed", "0",
                "--threads", str(threads), "--no-progress"]
        if main(argv) != 0:
            raise SystemExit(f"training failed: rnnkit {' '.join(argv)}")
    return runs


# ---------------------------------------------------------------------------- speed


def _take(items: list, start: int, count: int) -> list:
    """``count`` items from ``start`` on, going round ``items`` as often as needed."""
    return [items[(start + k) % len(items)] for k in range(count)]


Bench = Callable[[str, str, Callable[[bool], Callable[[], Any]]], None]


def speed_classify(run: Path, test: Path, n: int, bench: Bench) -> None:
    from rnnkit.batching import classify_batch
    from rnnkit.tasks import classify

    opened = {q: classify.load_run(run, int8=q) for q in (False, True)}
    enc = opened[False][2]
    ids = enc([ln.split("\t")[0] for ln in test.read_text(encoding="utf-8").splitlines()])

    def batches(batch: int) -> Callable[[bool], Callable[[], Any]]:
        chunks = [classify_batch(_take(ids, i, batch), None, enc.vocab.pad_id) for i in range(0, n * batch, batch)]

        def make(q: bool) -> Callable[[], Any]:
            model = opened[q][1]
            return lambda: [model.predict_proba(b.inputs, b.lengths, b.mask) for b in chunks]
        return make

    bench("classify", f"predict_proba, {n} x batch 1", batches(1))
    bench("classify", f"predict_proba, {n} x batch 64", batches(64))


def speed_tag(run: Path, test: Path, n: int, bench: Bench) -> None:
    from rnnkit.batching import tag_batch
    from rnnkit.tasks import tag
    from rnnkit.tasks.tag import read_sentences

    opened = {q: tag.load_run(run, int8=q) for q in (False, True)}
    enc, data = opened[False][2], opened[False][3]
    sents = read_sentences(str(test), data)

    def batches(batch: int) -> Callable[[bool], Callable[[], Any]]:
        chunks = []
        for i in range(0, n * batch, batch):
            part = _take(sents, i, batch)
            chunks.append(tag_batch([enc.word_ids(s.tokens) for s in part], None, enc.words.pad_id,
                                    chars=[enc.char_ids(s.tokens) for s in part], char_pad_id=enc.chars.pad_id))

        def make(q: bool) -> Callable[[], Any]:
            model = opened[q][1]
            return lambda: [model.predict(b.inputs, lengths=b.lengths, mask=b.mask, chars=b.chars) for b in chunks]
        return make

    bench("tag", f"predict, {n} x batch 1", batches(1))
    bench("tag", f"predict, {n} x batch 64", batches(64))


def speed_seq2seq(run: Path, test: Path, n: int, bench: Bench) -> None:
    from rnnkit.tasks.seq2seq import Translator, translate_ids

    translators = {q: Translator(run, int8=q) for q in (False, True)}
    codec = translators[False].codec
    lines = [ln for ln in test.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith(";;;")]
    # a TSV's source column, or a pronouncing dictionary's word
    src = [codec.src_ids(ln.split("\t")[0] if "\t" in ln else ln.split()[0]) for ln in lines[:n]]

    def make(q: bool) -> Callable[[], Any]:
        model = translators[q].model
        return lambda: [translate_ids(model, [s], codec.src_vocab.pad_id, beam=5) for s in src]

    bench("seq2seq", f"translate_ids beam 5, {len(src)} x batch 1", make)


def speed_lm(run: Path, test: Path, n: int, bench: Bench) -> None:
    from rnnkit.decoding import generate as generate_ids
    from rnnkit.tasks import lm

    opened = {q: lm.load_run(run, int8=q) for q in (False, True)}
    _, _, vocab, tok, _ = opened[False]
    prime = torch.tensor([vocab.encode(tok.tokenize(test.read_text(encoding="utf-8")[:400])[:8])])  # (1, 8)
    length = 100 if n < 32 else 200

    def make(q: bool) -> Callable[[], Any]:
        model = opened[q][1]
        return lambda: generate_ids(model.step, None, prime, length, temperature=0.8,
                                    generator=torch.Generator().manual_seed(0))

    bench("lm", f"sample {length} tokens, batch 1", make)


SPEED = {"classify": speed_classify, "tag": speed_tag, "seq2seq": speed_seq2seq, "lm": speed_lm}


def speed_rows(runs: dict[str, Path], tests: dict[str, Path], rounds: int, quick: bool) -> list[dict[str, Any]]:
    """Median seconds per call, float32 and int8 interleaved, for each task's inference call."""
    rows = []

    def bench(task: str, what: str, make: Callable[[bool], Callable[[], Any]]) -> None:
        times = median_times({"float32": make(False), "int8": make(True)}, rounds)
        rows.append({"task": task, "call": what, "float32_ms": round(times["float32"] * 1e3, 3),
                     "int8_ms": round(times["int8"] * 1e3, 3), "speedup": round(times["float32"] / times["int8"], 2)})
        print(f"  {task:9} {what:42} {rows[-1]['float32_ms']:9.2f} ms {rows[-1]['int8_ms']:9.2f} ms "
              f"{rows[-1]['speedup']:5.2f}x", flush=True)

    for task, run in runs.items():
        SPEED[task](run, tests[task], 8 if quick else 32, bench)
    return rows


def sweep_rows(rounds: int, quick: bool) -> list[dict[str, Any]]:
    """One recurrent stack alone (2 layers, input = hidden), ``Recurrent`` vs ``Int8Recurrent`` of the same
    shapes: a whole sequence (20 steps, bidirectional, as an encoder reads) and one step (as decoding runs)."""
    from rnnkit.nn import Recurrent, State
    from rnnkit.nn.int8 import Int8Recurrent

    rows = []
    hiddens = (64, 256) if quick else (32, 64, 128, 256, 512)
    for mode in ("lstm", "gru", "rnn_tanh"):
        for hidden in hiddens:
            for batch in (1, 64):
                for steps, bidirectional in ((20, True), (1, False)):
                    torch.manual_seed(0)
                    rnn = Recurrent(mode, hidden, hidden, num_layers=2, bidirectional=bidirectional).eval()
                    q = Int8Recurrent.from_float(Recurrent(mode, hidden, hidden, num_layers=2,
                                                           bidirectional=bidirectional).eval())
                    x = torch.randn(batch, steps, hidden)
                    h = torch.zeros(2 * (2 if bidirectional else 1), batch, hidden)
                    state = State(h, h if mode == "lstm" else None)
                    with torch.inference_mode():
                        t = median_times({"float32": lambda: rnn(x, state=state),
                                          "int8": lambda: q(x, state=state)}, rounds)
                    rows.append({"cell": mode, "hidden": hidden, "batch": batch, "steps": steps,
                                 "bidirectional": bidirectional, "float32_ms": round(t["float32"] * 1e3, 4),
                                 "int8_ms": round(t["int8"] * 1e3, 4), "speedup": round(t["float32"] / t["int8"], 2)})
                    print(f"  {mode:8} hidden {hidden:4} batch {batch:3} {steps:2} step(s)"
                          f"{' bidirectional' if bidirectional else '              '} "
                          f"{rows[-1]['float32_ms']:9.3f} ms {rows[-1]['int8_ms']:9.3f} ms {rows[-1]['speedup']:5.2f}x",
                          flush=True)
    return rows


# ---------------------------------------------------------------------------- quality


def quality_rows(runs: dict[str, Path], tests: dict[str, Path], ours: set[str]) -> list[dict[str, Any]]:
    """Each task's test metric, float32 and int8, through the task's ``evaluate`` (as ``rnnkit evaluate``);
    ``ours``: the tasks whose test file this script wrote (a classifier's is a TSV then)."""
    from rnnkit.tasks import TASKS

    rows = []
    for task, run in runs.items():
        kwargs: dict[str, Any] = {"data_path": str(tests[task])}
        if task == "classify" and task in ours:
            kwargs["format"] = "tsv"
        if task == "seq2seq":
            kwargs["beam"] = 5
        evaluate = TASKS[task].entry("evaluate")
        with torch.inference_mode():
            base, q = evaluate(run, **kwargs), evaluate(run, **kwargs, int8=True)
        m = {"classify": "accuracy", "tag": "accuracy", "lm": "bpc"}.get(task) or ("wer" if "wer" in base else "bleu")
        s = 100.0 if m in ("accuracy", "wer", "per") else 1.0  # fractions in points (percent)
        rows.append({"task": task, "metric": m + (" (points)" if s == 100.0 else ""),
                     "float32": round(base[m] * s, 3), "int8": round(q[m] * s, 3),
                     "change": round((q[m] - base[m]) * s, 3)})
        for extra in ("chrf", "per"):
            if extra in base:
                k = 100.0 if extra == "per" else 1.0
                rows[-1][f"{extra}_float32"] = round(base[extra] * k, 3)
                rows[-1][f"{extra}_int8"] = round(q[extra] * k, 3)
        print(f"  {task:9} {rows[-1]['metric']:18} {rows[-1]['float32']:9.3f} {rows[-1]['int8']:9.3f} "
              f"{rows[-1]['change']:+8.3f}", flush=True)
    return rows


def _pairs(items: list[str], what: str) -> dict[str, Path]:
    out = {}
    for item in items:
        task, _, path = item.partition("=")
        if task not in MODELS or not path:
            raise SystemExit(f"--{what} {item!r}: expected TASK=PATH with TASK one of {', '.join(MODELS)}")
        out[task] = Path(path)
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--work", type=Path, help="folder of the data and run folders [runs/bench-int8[-quick][-stepsN]]; "
                                              "runs found there are reused")
    ap.add_argument("--rounds", type=int, help="timing rounds [20, --quick 5]")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="train every model for this many steps instead (e.g. 1: time the sizes without training "
                         "them; the quality rows then mean nothing) [each task's own]")
    ap.add_argument("--tasks", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)} [all]")
    ap.add_argument("--run", action="append", default=[], metavar="TASK=DIR",
                    help="use this trained run folder for TASK instead of training one (repeatable)")
    ap.add_argument("--test", action="append", default=[], metavar="TASK=FILE",
                    help="TASK's test file (what `rnnkit evaluate --data` takes) instead of the bundled split")
    ap.add_argument("--sweep", action="store_true",
                    help="time one LSTM / GRU / RNN stack alone over hidden sizes, batch 1 and 64, a whole sequence "
                         "and one step (no training, no tasks); writes int8-sweep[-quick].json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweep:
        print("recurrent stacks alone (2 layers), median per call, float32 vs int8:")
        rows = sweep_rows(args.rounds or (5 if args.quick else 20), args.quick)
        print(f"wrote {write_report('int8-sweep', args, sweep=rows)}")
        return
    tasks = [t for t in args.tasks.split(",") if t]
    if not tasks or set(tasks) - set(MODELS):
        raise SystemExit(f"--tasks {args.tasks!r}: choose from {', '.join(MODELS)}")
    given_runs, given_tests = _pairs(args.run, "run"), _pairs(args.test, "test")
    name = "bench-int8" + ("-quick" if args.quick else "") + (f"-steps{args.max_steps}" if args.max_steps else "")
    work = args.work or HERE.parent / "runs" / name
    files = prepare_data(work)
    runs = train_runs(work, files, args.quick, args.threads, args.max_steps,
                      [t for t in tasks if t not in given_runs])
    runs = {t: given_runs.get(t) or runs[t] for t in tasks}
    tests = {t: given_tests.get(t) or files[t]["test"] for t in tasks}
    from rnnkit.nn.int8 import reduce_range

    print(f"speed (median per call, {args.threads} threads; inputs quantised to {7 if reduce_range() else 8} bits):")
    print(f"  {'task':9} {'call':42} {'float32':>12} {'int8':>12} {'ratio':>6}")
    speed = speed_rows(runs, tests, args.rounds or (5 if args.quick else 20), args.quick)
    print("quality on each test set:")
    print(f"  {'task':9} {'metric':18} {'float32':>9} {'int8':>9} {'change':>8}")
    quality = quality_rows(runs, tests, {t for t in tasks if t not in given_tests})
    out = write_report("int8" + (f"-steps{args.max_steps}" if args.max_steps else ""), args, runs={t: str(r) for t, r in runs.items()},
                       tests={t: str(p) for t, p in tests.items()}, speed=speed, quality=quality,
                       reduce_range=reduce_range(),
                       sizes={t: MODELS[t][1 if args.quick else 0] for t in tasks if t not in given_runs})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
