"""The commands besides ``train``: their flags and how each is handed to its task.

Options that a command shares with the server (sampling, decoding, generation)
are declared once on dataclasses (``GenerateOptions``, ``DecodeOptions``) and
become flags here through ``rnnkit.cli.add_options``.  A command given a run of
a task that it does not take says so (``rnnkit.tasks.task_of_run``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rnnkit.errors import ConfigError


INT8_HELP = ("run the model with int8 weights on the CPU (linear and recurrent layers dynamically quantised: "
             "faster, slightly different numbers)")


def _int8_flag(parser: argparse.ArgumentParser, help: str = INT8_HELP) -> None:
    parser.add_argument("--int8", action="store_true", help=help)


def _read_input(path: Any, encoding: str) -> str:
    from rnnkit.data import read_text

    return read_text(path, encoding) if path else sys.stdin.read()


def add_parsers(sub) -> None:
    """Add every command but ``train`` to the subparsers ``sub``."""
    from rnnkit.cli import _positive_int, add_options
    from rnnkit.tasks.lm import GenerateOptions
    from rnnkit.tasks.seq2seq import DecodeOptions

    h = sub.add_parser("hello", help='the lecture\'s example: a tiny tanh RNN learns "hello"',
                       description='Train a one-hot tanh RNN on "hello" and show each step.')
    h.add_argument("--hidden", type=_positive_int, default=3, help="hidden units [3]")
    h.add_argument("--steps", type=_positive_int, default=100, help="training steps [100]")
    h.add_argument("--lr", type=float, default=0.1, help="Adam learning rate [0.1]")
    h.add_argument("--seed", type=int, default=0, help="random seed [0]")

    de = sub.add_parser("demo", help="a small model of every shape in the lecture, on bundled data",
                        description="Train a small model of every shape in the lecture on the bundled data "
                                    "(hello, character LM, one-to-many, many-to-one, tagging, seq2seq without "
                                    "and with attention), print a table of what each reached, and leave the "
                                    "run folders and plots in one folder. A few minutes on 2 CPU cores.")
    de.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder [runs/demo]")
    de.add_argument("--quick", action="store_true", help="a quarter of the training (a smoke run)")
    de.add_argument("--threads", type=_positive_int, help="CPU threads for torch [torch's choice]")
    de.add_argument("--no-progress", action="store_true", help="no progress bars")

    ge = sub.add_parser("generate", help="sample text from a trained language model",
                        description="Sample continuations of a prime text from a language-model run folder.")
    ge.add_argument("run", type=Path, help="run folder")
    add_options(ge, GenerateOptions, "generation", "gen")
    _int8_flag(ge)

    tl = sub.add_parser("translate", help="translate text with a trained seq2seq run",
                        description="One source sentence per line in (a FILE or stdin), its translation out.")
    tl.add_argument("paths", nargs="+", type=Path, metavar="RUN [RUN ...] [FILE]",
                    help="run folder(s) (several decode together, averaging their log-probabilities at each "
                         "step), then the input file [stdin]")
    add_options(tl, DecodeOptions, "decoding", "dec")
    tl.add_argument("--plot-attention", type=Path, metavar="DIR", help="write one attention heatmap PNG per sentence")
    tl.add_argument("--json", action="store_true", help="one JSON object per line")
    tl.add_argument("--encoding", default="utf-8", help="input encoding [utf-8]")
    _int8_flag(tl)

    ch = sub.add_parser("chat", help="talk to a trained seq2seq run: read a line, answer, repeat",
                        description="Reads lines from stdin until end of input and answers each one.")
    ch.add_argument("run", type=Path, help="run folder")
    add_options(ch, DecodeOptions, "decoding", "dec")
    _int8_flag(ch)

    pr = sub.add_parser("predict", help="label texts (classifier) or tag sentences (tagger)",
                        description="Classifier: one text per line in, label and class probabilities out. "
                                    "Tagger: one whitespace-tokenised sentence per line in, token<TAB>tag per "
                                    "line out, a blank line between sentences (or --format conllu FILE: the "
                                    "file back with the run's column filled).")
    pr.add_argument("run", type=Path, help="run folder")
    pr.add_argument("file", nargs="?", help="input file [stdin]")
    pr.add_argument("--json", action="store_true", help="classifier: one JSON object per line")
    pr.add_argument("--format", choices=["text", "conllu"], default="text", help="tagger input format [text]")
    pr.add_argument("--encoding", default="utf-8", help="input encoding [utf-8]")
    _int8_flag(pr)

    ev = sub.add_parser("evaluate", help="score a trained model on a data file",
                        description="Language models: nats per token, perplexity and bits per token on a whole "
                                    "text file. Classifiers: accuracy, macro-F1 and per-class scores on a "
                                    "labelled file. Taggers: token accuracy (and entity F1) on a CoNLL(-U) file. "
                                    "Seq2seq: BLEU and chrF (or WER and PER for CMUdict) on parallel files.")
    ev.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                    help="run folder (seq2seq: several decode together as an ensemble)")
    ev.add_argument("--data", help="data file (lm: text, default the bundled Tiny Shakespeare; classify: labelled "
                                   "file; tag: CoNLL(-U) file; seq2seq: TSV file)")
    ev.add_argument("--format", help="classify and tag: the file's format, as at training [the run's]")
    ev.add_argument("--encoding", help="text encoding [the run's]")
    ev.add_argument("--src", help="seq2seq: source file, line-aligned with --tgt")
    ev.add_argument("--tgt", help="seq2seq: reference file")
    ev.add_argument("--drop-stress", action="store_const", const=True,
                    help="seq2seq on CMUdict: score without stress digits (the standard test split has none)")
    ev.add_argument("--json", action="store_true", help="print one JSON object of metrics on stdout")
    add_options(ev, DecodeOptions, "seq2seq decoding", "dec", only=("beam", "length_penalty"))
    _int8_flag(ev)

    ins = sub.add_parser("inspect", help="draw hidden units and gates of a language model over a text",
                         description="Colour each character (or word) of a text by the activation of chosen "
                                     "hidden units — and the first unit's gates — and list the units most "
                                     "correlated with simple features.")
    ins.add_argument("run", type=Path, help="language-model run folder")
    ins.add_argument("--text", required=True, help="the text to read (or @FILE to read a file)")
    ins.add_argument("--units", help="comma-separated unit numbers [the units most correlated with a feature]")
    ins.add_argument("--layer", type=int, default=-1, help="layer to read [-1: the top]")
    ins.add_argument("--label", help="the label, for label-conditioned models")
    ins.add_argument("--out", type=Path, required=True, help="PNG file to write")
    ins.add_argument("--json", action="store_true", help="print the correlations as JSON")

    ex = sub.add_parser("export", help="export a trained run to ONNX (pip install 'rnnkit[export]')",
                        description="Write the run's model as ONNX: one graph for a language model, classifier "
                                    "or tagger; an encoder and a one-step decoder for seq2seq. A JSON sidecar "
                                    "names the inputs, outputs and special ids a plain onnxruntime loop needs.")
    ex.add_argument("run", type=Path, help="run folder")
    ex.add_argument("--format", choices=["onnx"], default="onnx", help="[onnx]")
    ex.add_argument("--out", type=Path, required=True, help="output file (model.onnx) or folder")
    ex.add_argument("--opset", type=int, help="ONNX opset [17]")
    _int8_flag(ex, "quantise the exported graph(s) to int8 weights (onnxruntime's quantize_dynamic)")

    da = sub.add_parser("data", help="the datasets the results use, by name: list, describe, download",
                        description="List the datasets rnnkit knows, describe one, or download one into the data "
                                    "folder ($RNNKIT_DATA, else ~/.cache/rnnkit/data), checked against its sha256.")
    dsub = da.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="name, what it is, size, licence, source, and whether it is here")
    dl.add_argument("--dir", type=Path, help="data folder [$RNNKIT_DATA or ~/.cache/rnnkit/data]")
    di = dsub.add_parser("info", help="one dataset's files, checksums and URLs")
    di.add_argument("name", help="dataset name (rnnkit data list)")
    dg = dsub.add_parser("get", help="download a dataset (verified; nothing is downloaded twice)")
    dg.add_argument("name", help="dataset name (rnnkit data list)")
    dg.add_argument("--dir", type=Path, help="data folder [$RNNKIT_DATA or ~/.cache/rnnkit/data]")
    dg.add_argument("--no-progress", action="store_true", help="no progress bar")

    sv = sub.add_parser("serve", help="HTTP JSON API and a browser playground for trained runs",
                        description="Serve run folders over HTTP: POST /api/generate, /api/classify, /api/tag, "
                                    "/api/translate (OpenAPI schema at /openapi.json) and a playground page at /.")
    sv.add_argument("runs", nargs="+", type=Path, help="run folders to load")
    sv.add_argument("--host", default="127.0.0.1", help="[127.0.0.1]")
    sv.add_argument("--port", type=_port, default=8000, help="TCP port, 1-65535 [8000]")
    sv.add_argument("--max-chars", type=_positive_int, default=2000, help="longest accepted text [2000]")
    sv.add_argument("--max-batch", type=_positive_int, default=32, help="most texts per request [32]")
    sv.add_argument("--threads", type=_positive_int, help="CPU threads for torch [torch's choice]")
    _int8_flag(sv, "serve every run with int8 weights on the CPU (see --int8 of predict)")


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected a TCP port from 1 to 65535")
    return int(text)


def _options(args: argparse.Namespace, cls: type, section: str):
    from rnnkit.cli import given

    return cls(**given(args, section))


def _generate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rnnkit.tasks import task_of_run
    from rnnkit.tasks.lm import GenerateOptions

    opts = _options(args, GenerateOptions, "gen")
    texts = task_of_run(args.run, "generate").entry("generate")(args.run, **asdict(opts), int8=args.int8)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1} ---")
        print(text)
    return 0


def _translate(args: argparse.Namespace) -> int:
    from rnnkit.tasks.seq2seq import DecodeOptions, plot_attention

    opts = _options(args, DecodeOptions, "dec")
    runs, file = _runs_and_file(args.paths)
    task = _task_of_runs(runs, "translate")
    t = task.entry("Translator")(runs if len(runs) > 1 else runs[0], int8=args.int8)
    lines = _read_input(file, args.encoding).splitlines()
    results = t.translate(lines, **t.decode_kwargs(opts, warn=lambda m: print(f"rnnkit: {m}", file=sys.stderr)))
    for line, hyps in zip(lines, results):
        if args.json:
            print(json.dumps({"source": line, "translation": hyps[0].text,
                              "n_best": [{"text": h.text, "score": round(h.score, 4)} for h in hyps]},
                             ensure_ascii=False))
        elif opts.n_best > 1:
            print("\n".join(f"{h.score:.4f}\t{h.text}" for h in hyps) + "\n")
        else:
            print(hyps[0].text)
    if args.plot_attention:
        paths = plot_attention(t, lines, [h[0] for h in results], args.plot_attention)
        print(f"{len(paths)} attention heatmaps in {args.plot_attention}", file=sys.stderr)
    return 0


def _runs_and_file(paths: list[Path]) -> tuple[list[Path], Any]:
    """Leading paths that are folders are runs; a last path that is not a folder is the input file."""
    if len(paths) > 1 and not paths[-1].is_dir():
        return paths[:-1], paths[-1]
    return paths, None


def _task_of_runs(runs: list[Path], command: str):
    """The one task of every run given, checked to take several runs when more than one is given."""
    from rnnkit.tasks import task_of_run

    tasks = {t.name: t for t in (task_of_run(r, command) for r in runs)}
    task = next(iter(tasks.values()))
    if len(tasks) > 1 or (len(runs) > 1 and not task.ensembles):
        raise ConfigError(f"`rnnkit {command}` takes several runs only as an ensemble of seq2seq runs; "
                          f"got runs of {', '.join(tasks)}")
    return task


def _chat(args: argparse.Namespace) -> int:
    from rnnkit.tasks import task_of_run
    from rnnkit.tasks.seq2seq import DecodeOptions

    opts = _options(args, DecodeOptions, "dec")
    t = task_of_run(args.run, "chat").entry("Translator")(args.run, int8=args.int8)
    kwargs = t.decode_kwargs(opts, warn=lambda m: print(f"rnnkit: {m}", file=sys.stderr))
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.rstrip("\r\n")
        if line.strip():
            print(t.translate([line], **kwargs)[0][0].text, flush=True)


def _predict(args: argparse.Namespace) -> int:
    from rnnkit.tasks import task_of_run

    task = task_of_run(args.run, "predict")
    text = "" if args.format == "conllu" else _read_input(args.file, args.encoding)
    warn = lambda m: print(f"rnnkit: {m}", file=sys.stderr)  # noqa: E731
    sys.stdout.write(task.entry("predict_text")(args.run, text, fmt=args.format, path=args.file,
                                                encoding=args.encoding, as_json=args.json, warn=warn,
                                                int8=args.int8))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from rnnkit.cli import given as cli_given

    task = _task_of_runs(args.runs, "evaluate")
    given = {k: getattr(args, k) for k in ("data", "format", "encoding", "src", "tgt", "drop_stress")
             if getattr(args, k) is not None}
    given.update(cli_given(args, "dec"))
    wrong = sorted(set(given) - set(task.evaluate_options))
    if wrong:
        raise ConfigError(f"{args.runs[0]} is a run of the {task.name} task: "
                          + ", ".join(f"--{w.replace('_', '-')}" for w in wrong) + " does not apply; evaluate takes "
                          + ", ".join("--" + o.replace("_", "-") for o in task.evaluate_options))
    run = args.runs if len(args.runs) > 1 else args.runs[0]
    metrics = task.entry("evaluate")(run, log=lambda m: print(f"rnnkit: {m}", file=sys.stderr), int8=args.int8,
                                     **{("data_path" if k == "data" else k): v for k, v in given.items()})
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False))
    else:
        for k, v in metrics.items():
            print(f"{k:18} {v:.4f}" if isinstance(v, float) else f"{k:18} {v}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from rnnkit.data import read_text
    from rnnkit.tasks import task_of_run
    from rnnkit.tasks.inspect import inspect_run

    task_of_run(args.run, "inspect")
    text = read_text(args.text[1:]) if args.text.startswith("@") else args.text.replace("\\n", "\n")
    try:
        units = [int(u) for u in args.units.split(",")] if args.units else None
    except ValueError:
        raise ConfigError(f"--units must be comma-separated integers, got {args.units!r}") from None
    result = inspect_run(args.run, text, args.out, units=units, layer=args.layer, label=args.label)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"layer {result['layer']}, {result['tokens']} tokens; drew units {result['units']} into {args.out}")
    print("units most correlated with each feature (Pearson r):")
    for name, pairs in result["correlations"].items():
        print(f"  {name:18} " + "  ".join(f"unit {u}: {r:+.2f}" for u, r in pairs))
    return 0


def _export(args: argparse.Namespace) -> int:
    from rnnkit.export import export_onnx
    from rnnkit.tasks import task_of_run

    task_of_run(args.run, "export")
    for path in export_onnx(args.run, args.out, opset=args.opset, int8=args.int8):
        print(path)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rnnkit.serve import serve
    from rnnkit.tasks import task_of_run

    for run in args.runs:
        task_of_run(run, "serve")
    serve(args.runs, host=args.host, port=args.port, max_chars=args.max_chars, max_batch=args.max_batch,
          int8=args.int8)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rnnkit.tasks.demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def _hello(args: argparse.Namespace) -> int:
    from rnnkit.tasks.hello import hello

    text = hello(hidden_size=args.hidden, steps=args.steps, lr=args.lr, seed=args.seed)
    return 0 if text == "hello" else 1


def _data(args: argparse.Namespace) -> int:
    from rnnkit import datasets

    if args.data_command == "list":
        print(datasets.format_list(args.dir))
    elif args.data_command == "info":
        print(datasets.describe(args.name))
    else:
        print(datasets.get(args.name, args.dir, progress=not args.no_progress))
    return 0


HANDLERS = {"hello": _hello, "demo": _demo, "generate": _generate, "translate": _translate, "chat": _chat,
            "predict": _predict, "evaluate": _evaluate, "inspect": _inspect, "export": _export, "serve": _serve,
            "data": _data}


def run(args: argparse.Namespace) -> int:
    return HANDLERS[args.command](args)
