"""Tokenizers: text -> list of token strings, and back.

Every tokenizer has ``tokenize``, ``detokenize`` and ``to_config``; the config
is a plain JSON-ready dict with the registry name under ``"name"``, so a run
folder can rebuild the same tokenizer with ``tokenizer_from_config``.

Only stdlib here: ``import rnnkit`` must stay light.  Tokenizers that need an
optional library (the subword one) import it inside their constructor.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rnnkit.errors import ConfigError


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer provides."""

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


# Registry by name.  A subword (BPE) tokenizer backed by the `tokenizers`
# library will register here as "bpe"; it must import that library lazily.
TOKENIZERS: dict[str, Callable[..., Tokenizer]] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
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
