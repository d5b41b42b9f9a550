"""Tasks: for each task name, which reader, vocabulary, model and metrics belong together.

``TASKS`` is the one registry: each entry names the task's module, its option
declarations (a data config, a model config, run options), its entry points and
the commands that take its run folders.  The CLI, the server and export look a
task up here; none of them keeps a table or a branch of its own per task.
Task modules are imported only when an entry is used, so ``import rnnkit.tasks``
stays light.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional, Union

from rnnkit.errors import CheckpointError, ConfigError

# what each inference command is, in the words a message about the wrong run uses
COMMANDS = {
    "generate": "sample text", "inspect": "draw hidden units and gates", "predict": "label or tag texts",
    "translate": "translate texts", "chat": "answer lines", "evaluate": "score a data file",
    "serve": "serve over HTTP", "export": "export to ONNX",
}


@dataclass(frozen=True)
class Task:
    """One task: where its code lives and what the front ends may do with its runs."""

    name: str
    help: str                       # one line for ``rnnkit train --help``
    description: str                # the paragraph of ``rnnkit train NAME --help``
    module: str                     # the module holding the entry points and the data config
    data_config: str                # dataclass in ``module``: the data options
    model_name: str                 # key of ``rnnkit.models.MODELS``: the model and its config dataclass
    default_epochs: float           # when neither --epochs nor --max-steps is given
    commands: tuple[str, ...]       # inference commands that take this task's runs
    evaluate_options: tuple[str, ...] = ("data", "encoding")  # ``rnnkit evaluate`` options that apply
    ensembles: bool = False         # whether translate/evaluate take several runs of this task at once
    run_options: Optional[str] = None  # dataclass in ``module``: train-command options kept out of config.json
    endpoint: str = ""              # the server's POST /api/ENDPOINT for this task's runs
    vocabs: tuple[str, ...] = ("vocab",)  # the run folder's vocabulary files (NAME.json)

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def entry(self, name: str) -> Callable[..., Any]:
        """The task module's function ``name`` (``train``, ``evaluate``, ``predict_text``, ...)."""
        return getattr(self.load(), name)

    @property
    def train(self) -> Callable[..., Any]:
        """``train_NAME(out, model_opts, data, train, *, resume, overwrite, progress, **run_options)``."""
        return self.entry(f"train_{self.name}")

    @property
    def data_cls(self) -> type:
        return getattr(self.load(), self.data_config)

    @property
    def model_cls(self) -> type:
        from rnnkit.models import MODELS

        return MODELS[self.model_name][1]

    @property
    def run_cls(self) -> Optional[type]:
        return getattr(self.load(), self.run_options) if self.run_options else None


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("lm", "character- or word-level language model",
         "Train a language model on a text file (one stream, truncated BPTT) or on a folder of <label>.txt "
         "files (one sequence per line, conditioned on the label). Without --data: the bundled Tiny Shakespeare.",
         "rnnkit.tasks.lm", "LMDataConfig", "language_model", 1.0,
         ("generate", "inspect", "evaluate", "serve", "export"), run_options="LMRunOptions", endpoint="generate"),
    Task("classify", "text classification (many-to-one)",
         "Train a classifier: tokens -> embedding -> recurrent encoder -> pooling -> softmax over the classes.",
         "rnnkit.tasks.classify", "ClassifyDataConfig", "classifier", 10.0,
         ("predict", "evaluate", "serve", "export"), evaluate_options=("data", "encoding", "format"),
         endpoint="classify"),
    Task("tag", "sequence tagging (part of speech, named entities)",
         "Train a tagger: word embeddings (+ a character encoder) -> recurrent encoder -> a tag per token, "
         "by softmax or a CRF.",
         "rnnkit.tasks.tag", "TagDataConfig", "tagger", 10.0,
         ("predict", "evaluate", "serve", "export"), evaluate_options=("data", "encoding", "format"),
         endpoint="tag", vocabs=("vocab", "chars", "tags")),
    Task("seq2seq", "encoder-decoder: translation, chat, spelling -> phonemes",
         "Train an encoder-decoder on parallel text (two line-aligned files or one TSV) or on CMUdict "
         "(--format cmudict), with or without attention.",
         "rnnkit.tasks.seq2seq", "Seq2SeqDataConfig", "seq2seq", 10.0,
         ("translate", "chat", "evaluate", "serve", "export"),
         evaluate_options=("data", "encoding", "src", "tgt", "beam", "length_penalty", "drop_stress"), endpoint="translate",
         vocabs=("src_vocab", "tgt_vocab"), ensembles=True),
)}


def read_config(run: Union[str, Path]) -> dict[str, Any]:
    """A run folder's ``config.json``, checked to be a run's: ``CheckpointError`` naming what is wrong."""
    from rnnkit import checkpoint as ckpt

    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder")
    path = run / ckpt.CONFIG
    if not path.is_file():
        folds = sorted(p.name for p in run.glob("fold-*") if (p / ckpt.CONFIG).is_file())
        if folds:
            raise ConfigError(f"{run} holds a {len(folds)}-fold cross-validation, one model per fold: "
                              f"give one fold's folder, e.g. {run / folds[0]}")
        raise CheckpointError(f"{run}: not a run folder (no {ckpt.CONFIG})")
    config = ckpt.load_json(path)
    if not isinstance(config, dict) or not isinstance(config.get("task", "lm"), str) \
            or not all(isinstance(config.get(k, {}), dict) for k in ("model", "data", "train")):
        raise CheckpointError(f"{path}: not an rnnkit run configuration (expected a JSON object with task, "
                              "model, data and train)")
    return config


def task_of_run(run: Union[str, Path], command: str) -> Task:
    """The task of the run in folder ``run``, checked to be one ``rnnkit COMMAND`` takes."""
    name = read_config(run).get("task", "lm")
    task = TASKS.get(name)
    if task is None:
        raise CheckpointError(f"{run}: unknown task {name!r} in config.json; rnnkit knows {', '.join(TASKS)}")
    if command not in task.commands:
        takers = [t.name for t in TASKS.values() if command in t.commands]
        raise ConfigError(f"{run} is a run of the {name} task; `rnnkit {command}` ({COMMANDS[command]}) takes "
                          f"{' and '.join(takers)} runs. A {name} run works with: "
                          + ", ".join(f"rnnkit {c}" for c in task.commands))
    return task


__all__ = ["TASKS", "Task", "COMMANDS", "read_config", "task_of_run"]
