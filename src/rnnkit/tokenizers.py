"""Tokenizers: text -> list of token strings, and back.

Every tokenizer has ``tokenize``, ``detokenize`` and ``to_config``; the config
is a plain JSON-ready dict with the registry name under ``"name"``, so a run
folder can rebuild the same tokenizer with ``tokenizer_from_config``.

Tokenizers learnt from data (``needs_training`` True: BPE) are trained on the
training split with ``train(texts)``; their config then holds the learnt model
as a JSON string, so a run folder rebuilds them with no pickle.

Only stdlib here: ``import rnnkit`` must stay light.  Tokenizers that need an
optional library (the subword one) import it inside their methods.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from rnnkit.errors import ConfigError, DataError
from rnnkit.vocab import UNK


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer provides.

    ``needs_training``: True when ``train(texts)`` must run (on the training
    split) before ``tokenize``; tokenizers with it False have no ``train``.
    """

    needs_training: bool

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens."""
        ...

    def detokenize(self, tokens: list[str]) -> str:
        """Join tokens back into text (exact inverse only where the tokenizer says so)."""
        ...

    def to_config(self) -> dict[str, Any]:
        """A JSON-ready dict ``{"name": ..., **options}`` that ``tokenizer_from_config`` accepts."""
        ...


@dataclass(frozen=True)
class CharTokenizer:
    """Every character is a token, newlines and spaces included; ``detokenize`` is an exact inverse."""

    needs_training: ClassVar[bool] = False

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def to_config(self) -> dict[str, Any]:
        return {"name": "char"}


@dataclass(frozen=True)
class WordTokenizer:
    """Words split on whitespace, or the matches of ``pattern``; optionally lower-cased.

    With ``pattern``, the tokens are the whole matches of ``re.finditer(pattern,
    text)`` (the same as ``re.findall`` for a pattern without groups; a pattern
    with groups still yields whole matches), empty matches skipped.  ``lower``
    lower-cases the text before splitting.  ``detokenize`` joins with single
    spaces, so it restores the text only up to whitespace (and case).
    """

    needs_training: ClassVar[bool] = False

    lower: bool = False
    pattern: str | None = None
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            try:
                regex = re.compile(self.pattern)
            except re.error as e:
                raise ConfigError(f"invalid word tokenizer pattern {self.pattern!r}: {e}") from None
            object.__setattr__(self, "_regex", regex)

    def tokenize(self, text: str) -> list[str]:
        if self.lower:
            text = text.lower()
        if self._regex is None:
            return text.split()
        return [m.group(0) for m in self._regex.finditer(text) if m.group(0)]

    def detokenize(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def to_config(self) -> dict[str, Any]:
        return {"name": "word", "lower": self.lower, "pattern": self.pattern}


class BPETokenizer:
    """Byte-pair-encoding subwords learnt from the training text (HuggingFace ``tokenizers``).

    Text is whitespace-normalised (every run of spaces, tabs and newlines becomes
    one space; ends stripped) and optionally lower-cased, split into words at
    spaces with each word marked by a leading ``▁`` (SentencePiece's metaspace),
    and punctuation split off as tokens of its own; BPE then merges characters
    into at most ``vocab_size`` subwords seen at least ``min_frequency`` times.
    A character never seen in training becomes ``<unk>``.

    ``tokenize("Hello, world!")`` -> ``["▁Hello", ",", "▁world", "!"]`` (once
    trained); ``detokenize`` turns ``▁`` back into spaces, so
    ``detokenize(tokenize(s))`` is ``s`` up to whitespace normalisation (and case,
    with ``lower``), except for unseen characters.

    ``model`` is the trained model as JSON (``to_config`` puts it there); leave it
    None and call ``train``.
    """

    needs_training: ClassVar[bool] = True

    def __init__(self, vocab_size: int = 8000, lower: bool = False, min_frequency: int = 2,
                 model: str | None = None) -> None:
        for name, value, least in (("vocab_size", vocab_size, 2), ("min_frequency", min_frequency, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"bpe {name} must be an integer >= {least}, got {value!r}")
        if not isinstance(lower, bool):
            raise ConfigError(f"bpe lower must be true or false, got {lower!r}")
        self.vocab_size = vocab_size
        self.lower = lower
        self.min_frequency = min_frequency
        self._tok: Any = None  # a tokenizers.Tokenizer once trained or loaded
        if model is not None:
            self._tok = _load_bpe(model)

    @property
    def trained(self) -> bool:
        return self._tok is not None

    def train(self, texts: Iterable[str]) -> None:
        """Learn the merges from ``texts`` (the training split only, never validation or test)."""
        hf = _import_tokenizers()
        tok = hf.Tokenizer(hf.models.BPE(unk_token=UNK))
        steps = [hf.normalizers.Replace(hf.Regex(r"\s+"), " "), hf.normalizers.Strip()]
        if self.lower:
            steps.append(hf.normalizers.Lowercase())
        tok.normalizer = hf.normalizers.Sequence(steps)
        tok.pre_tokenizer = hf.pre_tokenizers.Sequence(
            [hf.pre_tokenizers.Metaspace(), hf.pre_tokenizers.Punctuation()]
        )
        tok.decoder = hf.decoders.Metaspace()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=self.vocab_size, min_frequency=self.min_frequency,
            special_tokens=[UNK], show_progress=False,
        )
        seen = [0]

        def counted(items: Iterable[str]) -> Iterator[str]:
            for text in items:
                if not isinstance(text, str):
                    raise DataError(f"bpe trains on strings, got {type(text).__name__}")
                seen[0] += 1
                yield text

        tok.train_from_iterator(counted(texts), trainer=trainer)
        if seen[0] == 0:
            raise DataError("no training text for the bpe tokenizer")
        self._tok = tok

    def tokenize(self, text: str) -> list[str]:
        return self._trained().encode(text, add_special_tokens=False).tokens

    def detokenize(self, tokens: list[str]) -> str:
        return self._trained().decoder.decode(list(tokens))

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "bpe",
            "vocab_size": self.vocab_size,
            "lower": self.lower,
            "min_frequency": self.min_frequency,
            "model": None if self._tok is None else self._tok.to_str(),
        }

    def _trained(self) -> Any:
        if self._tok is None:
            raise ConfigError("the bpe tokenizer is not trained: call train(texts) on the training split first")
        return self._tok

    def __repr__(self) -> str:
        state = "trained" if self.trained else "untrained"
        return f"BPETokenizer(vocab_size={self.vocab_size}, lower={self.lower}, {state})"


def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(
            "the bpe tokenizer needs the 'tokenizers' library: pip install tokenizers"
        ) from None
    return tokenizers


def _load_bpe(model: str) -> Any:
    hf = _import_tokenizers()
    if not isinstance(model, str):
        raise ConfigError(f"bpe model must be the trained tokenizer as a JSON string, got {type(model).__name__}")
    try:
        tok = hf.Tokenizer.from_str(model)
    except Exception as e:  # the library raises its own exception types for bad JSON
        raise ConfigError(f"bpe model in the tokenizer config is not a valid tokenizer JSON: {e}") from None
    if type(tok.model).__name__ != "BPE":
        raise ConfigError(f"bpe model in the tokenizer config is a {type(tok.model).__name__} model, not BPE")
    return tok


# Registry by name.  "bpe" imports its library lazily, on first train or load.
TOKENIZERS: dict[str, Callable[..., Tokenizer]] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
    "bpe": BPETokenizer,
}


def make_tokenizer(name: str, **options: Any) -> Tokenizer:
    """Build the tokenizer registered as ``name`` with ``options``.

    Raises ``ConfigError`` for an unknown name (listing the valid ones) or an
    option the tokenizer does not take.
    """
    factory = TOKENIZERS.get(name) if isinstance(name, str) else None
    if factory is None:
        valid = ", ".join(sorted(TOKENIZERS))
        raise ConfigError(f"unknown tokenizer {name!r}; valid names: {valid}")
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        params = [p for p in inspect.signature(factory).parameters if not p.startswith("_")]
        takes = ", ".join(params) if params else "no options"
        given = ", ".join(sorted(options))
        raise ConfigError(f"tokenizer {name!r} takes {takes}; got {given}") from None
    return factory(**options)


def tokenizer_from_config(cfg: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from ``to_config`` output."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"a tokenizer config must be a dict with a 'name', got {cfg!r}")
    options = dict(cfg)
    name = options.pop("name")
    return make_tokenizer(name, **options)
