"""``rnnkit <command>``: parse, check, dispatch.

Every ``train`` flag, its help, bounds and YAML key come from the option
declarations (``rnnkit.options``) of the task's config dataclasses, found
through the task registry (``rnnkit.tasks.TASKS``); inference commands look the
run's task up there too.  Nothing here knows a task by name.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

from rnnkit import options
from rnnkit.errors import ConfigError, RnnkitError


class Parser(argparse.ArgumentParser):
    """No abbreviated flags, and a bad command line is one line on stderr (exit 2), not the usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"rnnkit: error: {message} (see {self.prog} --help)\n")


def _shown(value: Any) -> str:
    return {True: "yes", False: "no", None: "none"}.get(value, str(value)) if isinstance(value, (bool, type(None))) \
        else str(value)


def add_options(parser: argparse.ArgumentParser, cls: type, title: str, section: str,
                defaults: Optional[dict[str, str]] = None, only: Optional[Sequence[str]] = None) -> None:
    """One flag per user option declared on dataclass ``cls`` (or the fields named in ``only``); values land
    as ``SECTION.FIELD`` only when given."""
    group = parser.add_argument_group(title)
    for o in options.user_options(cls):
        if only is not None and o.name not in only:
            continue
        default = (defaults or {}).get(o.name, _shown(0 if o.spec.zero_is_none and o.default is None else o.default))
        kw: dict[str, Any] = {"dest": f"{section}.{o.name}", "default": argparse.SUPPRESS,
                              "help": f"{o.spec.help} [{default}]".replace("%", "%%")}
        if o.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _typed(o)
            kw["metavar"] = o.spec.metavar or ("{" + ",".join(map(str, o.spec.choices)) + "}" if o.spec.choices
                                               else o.key.upper())
        group.add_argument(o.flag, **kw)


def _typed(o: options.Option):
    def parse(text: str) -> Any:
        try:
            return options.coerce(o, text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
    parse.__name__ = o.name
    return parse


def given(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The options of ``section`` given on the command line."""
    prefix = section + "."
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def _train_sections(task) -> dict[str, type]:
    from rnnkit.trainer import TrainConfig

    return {k: v for k, v in (("data", task.data_cls), ("model", task.model_cls), ("train", TrainConfig),
                              ("run", task.run_cls)) if v is not None}


def build_parser() -> argparse.ArgumentParser:
    from rnnkit import commands
    from rnnkit.tasks import TASKS

    p = Parser(prog="rnnkit", description="Recurrent neural networks: learn, train and use them.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tr = sub.add_parser("train", help="train a model into a run folder")
    tsub = tr.add_subparsers(dest="task", required=True, metavar="TASK")
    for task in TASKS.values():
        tp = tsub.add_parser(task.name, help=task.help, description=task.description)
        titles = {"data": "data", "model": "model", "train": "training (shared by every `train` command)",
                  "run": "after training"}
        for section, cls in _train_sections(task).items():
            add_options(tp, cls, titles[section], section,
                        {"epochs": f"{task.default_epochs:g} without --max-steps"} if section == "train" else None)
        g = tp.add_argument_group("run folder")
        g.add_argument("--out", required=True, type=Path, help="run folder to create (or resume)")
        g.add_argument("--resume", action="store_true",
                       help="continue the run in --out exactly where its last checkpoint left it")
        g.add_argument("--overwrite", action="store_true",
                       help="replace the run already in --out instead of refusing to touch it")
        g.add_argument("--config", type=Path, help="YAML file of option values (keys as the flags, e.g. hidden: 512); "
                                                   "flags given on the command line win")
        g.add_argument("--threads", type=_positive_int, help="CPU threads for torch [torch's choice]")
        g.add_argument("--no-progress", action="store_true", help="no progress bar")
    commands.add_parsers(sub)
    return p


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected an integer >= 1")
    return int(text)


def _load_yaml(path: Optional[Path], sections: dict[str, type]) -> dict[str, dict[str, Any]]:
    """``--config`` values by section, each checked against its declaration (errors name the file and key)."""
    out: dict[str, dict[str, Any]] = {s: {} for s in sections}
    if path is None:
        return out
    import yaml

    if not path.is_file():
        raise ConfigError(f"--config {path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values")
    by_key = {o.key: (s, o) for s, cls in sections.items() for o in options.user_options(cls)}
    unknown = sorted(str(k) for k in data if str(k).replace("-", "_") not in by_key)
    if unknown:
        raise ConfigError(f"--config {path}: unknown options {', '.join(unknown)}; the options are the flags "
                          f"of this command, e.g. {', '.join(sorted(by_key)[:6])}")
    for key, value in data.items():
        section, o = by_key[str(key).replace("-", "_")]
        out[section][o.name] = options.coerce(o, value, source=str(path))
    return out


def _train(args: argparse.Namespace) -> int:
    from rnnkit import checkpoint as ckpt
    from rnnkit import distributed
    from rnnkit.tasks import TASKS
    from rnnkit.tasks.runs import has_checkpoint

    task = TASKS[args.task]
    sections = _train_sections(task)
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                          "--overwrite replaces it; give one")
    values = _load_yaml(args.config, sections)
    for section in sections:
        values[section].update(given(args, section))
    if args.resume and has_checkpoint(args.out):  # options not given now come from the run being resumed
        saved = ckpt.load_json(args.out / ckpt.CONFIG)
        for section, cls in sections.items():
            kept = saved.get(section, {}) if section != "run" else {}
            for o in options.user_options(cls):
                if o.name in kept and o.name not in values[section]:
                    values[section][o.name] = kept[o.name]
    elif values["train"].get("max_steps") is None and values["train"].get("epochs") is None:
        values["train"]["epochs"] = task.default_epochs
    configs = {s: cls(**values[s]) for s, cls in sections.items() if s != "model"}
    options.check_user_values(sections["model"], values["model"])
    _preflight(configs["train"])
    distributed.init_from_env(configs["train"].device)  # a no-op unless launched by torchrun
    run = asdict(configs["run"]) if "run" in configs else {}
    try:
        task.train(args.out, values["model"], configs["data"], configs["train"], resume=args.resume,
                            overwrite=args.overwrite, progress=not args.no_progress and distributed.is_main(), **run)
    finally:
        distributed.cleanup()
    return 0


def _preflight(train) -> None:
    """What the trainer would refuse about the device, checked before anything is written."""
    from rnnkit.distributed import resolve_device

    device = resolve_device(train.device)
    if train.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"--precision fp16 needs a CUDA GPU; training would run on {device.type}. "
                          "Use bf16 (CPUs and recent GPUs) or fp32")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rnnkit import commands

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad command line (2, already reported in one line)
        return e.code if isinstance(e.code, int) else 0
    try:
        if getattr(args, "threads", None):
            import torch
            torch.set_num_threads(args.threads)
        if args.command == "train":
            return _train(args)
        return commands.run(args)
    except RnnkitError as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
