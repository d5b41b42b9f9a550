"""An ordered map between tokens and integer ids.

A ``Vocab`` is built once from training data (``Vocab.build``), saved as JSON in
the run folder and loaded back unchanged, so ids mean the same thing at train
and inference time.  Special tokens come first; the conventional ones are
``<pad>``, ``<unk>``, ``<bos>`` and ``<eos>`` and have id properties.

Only stdlib here: ``import rnnkit`` must stay light.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rnnkit.errors import ConfigError, DataError
from rnnkit.fileio import atomic_write_text

PAD = "<pad>"
UNK = "<unk>"
BOS = "<bos>"
EOS = "<eos>"

_FORMAT_VERSION = 1
_MAX_LISTED = 10  # unknown tokens named in an error message


class Vocab:
    """An ordered token <-> id map; the id of a token is its position in ``tokens``.

    ``unk`` is the token that unknown tokens map to in ``encode``; without it,
    encoding an unknown token is an error.  ``num_dropped_types`` and
    ``num_dropped_tokens`` say what ``build`` cut (0 for a vocabulary made
    directly).
    """

    def __init__(self, tokens: Sequence[str], unk: str | None = None) -> None:
        tokens = list(tokens)
        index: dict[str, int] = {}
        for i, tok in enumerate(tokens):
            if not isinstance(tok, str):
                raise ValueError(f"vocabulary tokens must be strings, got {tok!r} at id {i}")
            if tok in index:
                raise ValueError(f"duplicate token {tok!r} at ids {index[tok]} and {i}")
            index[tok] = i
        if unk is not None and unk not in index:
            raise ValueError(f"unk token {unk!r} is not in the vocabulary")
        self._tokens = tokens
        self._index = index
        self.unk = unk
        self.num_dropped_types = 0
        self.num_dropped_tokens = 0

    # -- building -------------------------------------------------------------

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[str]],
        *,
        specials: Sequence[str] = (),
        min_freq: int = 1,
        max_size: int | None = None,
        unk: str | None = None,
    ) -> Vocab:
        """Build a vocabulary from tokenised sequences.

        Order: ``specials`` as given (``unk`` appended to them if missing), then
        the other tokens by descending count, ties broken by the token string so
        the result never depends on input or dict order.  Tokens seen fewer than
        ``min_freq`` times are dropped, then all but the ``max_size`` most
        frequent (specials do not count towards ``max_size``).  Occurrences of
        special tokens in the data are not counted.
        """
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ConfigError(f"min_freq must be an integer >= 1, got {min_freq!r}")
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0
        ):
            raise ConfigError(f"max_size must be an integer >= 0 or None, got {max_size!r}")
        specials = list(specials)
        if len(set(specials)) != len(specials):
            raise ConfigError(f"specials contain duplicates: {specials!r}")
        if unk is not None and unk not in specials:
            specials.append(unk)

        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        special_set = set(specials)
        ranked = sorted(
            ((tok, n) for tok, n in counts.items() if tok not in special_set),
            key=lambda item: (-item[1], item[0]),
        )
        kept = [item for item in ranked if item[1] >= min_freq]
        if max_size is not None:
            kept = kept[:max_size]

        vocab = cls(specials + [tok for tok, _ in kept], unk=unk)
        vocab.num_dropped_types = len(ranked) - len(kept)
        vocab.num_dropped_tokens = sum(n for _, n in ranked) - sum(n for _, n in kept)
        return vocab

    # -- lookup ---------------------------------------------------------------

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __getitem__(self, token: str) -> int:
        """The id of ``token``; the unk id for an unknown token, or ``KeyError`` without unk."""
        i = self._index.get(token)
        if i is not None:
            return i
        if self.unk is not None:
            return self._index[self.unk]
        raise KeyError(token)

    def token(self, id: int) -> str:
        """The token with id ``id`` (``IndexError`` if out of range; negative ids are invalid)."""
        if not 0 <= id < len(self._tokens):
            raise IndexError(f"id {id} is out of range for a vocabulary of {len(self._tokens)} tokens")
        return self._tokens[id]

    def id_of(self, token: str) -> int | None:
        """The id of ``token`` if it is in the vocabulary, else None."""
        return self._index.get(token)

    @property
    def pad_id(self) -> int | None:
        return self._index.get(PAD)

    @property
    def unk_id(self) -> int | None:
        """The id of ``unk`` (the token ``encode`` falls back to), else of ``<unk>`` if present."""
        return self._index.get(self.unk if self.unk is not None else UNK)

    @property
    def bos_id(self) -> int | None:
        return self._index.get(BOS)

    @property
    def eos_id(self) -> int | None:
        return self._index.get(EOS)

    # -- encoding -------------------------------------------------------------

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids.

        Unknown tokens become the unk id if the vocabulary has an ``unk``;
        otherwise ``DataError`` names them (up to 10).
        """
        index = self._index
        if self.unk is not None:
            unk_id = index[self.unk]
            return [index.get(tok, unk_id) for tok in tokens]
        ids: list[int] = []
        unknown: dict[str, None] = {}  # ordered set, first appearance first
        for tok in tokens:
            i = index.get(tok)
            if i is None:
                unknown[tok] = None
            else:
                ids.append(i)
        if unknown:
            raise DataError(_unknown_message(list(unknown)))
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to tokens (``IndexError`` for an id out of range)."""
        return [self.token(i) for i in ids]

    def oov_rate(self, sequences: Iterable[Iterable[str]]) -> float:
        """Fraction of token occurrences in ``sequences`` not in the vocabulary (0.0 if none)."""
        total = oov = 0
        for seq in sequences:
            for tok in seq:
                total += 1
                if tok not in self._index:
                    oov += 1
        return oov / total if total else 0.0

    # -- serialisation --------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"version": 1, "tokens": [...], "unk": ...}``."""
        return {"version": _FORMAT_VERSION, "tokens": list(self._tokens), "unk": self.unk}

    @classmethod
    def from_dict(cls, data: Any) -> Vocab:
        """Rebuild a vocabulary from ``to_dict`` output (``DataError`` if malformed)."""
        if not isinstance(data, dict):
            raise DataError(f"expected a JSON object with 'tokens', got {type(data).__name__}")
        version = data.get("version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise DataError(f"unsupported vocabulary format version {version!r} (expected {_FORMAT_VERSION})")
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise DataError("expected 'tokens' to be a list of strings")
        unk = data.get("unk")
        if unk is not None and not isinstance(unk, str):
            raise DataError(f"expected 'unk' to be a string or null, got {unk!r}")
        try:
            return cls(tokens, unk=unk)
        except ValueError as e:
            raise DataError(str(e)) from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as UTF-8 JSON, atomically (temp file + ``os.replace``)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"
        try:
            atomic_write_text(path, text)
        except OSError as e:
            raise DataError(f"cannot write vocabulary to {path}: {e.strerror or e}") from e

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a vocabulary written by ``save``; ``DataError`` naming the path on any problem."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"vocabulary file not found: {path}") from None
        except IsADirectoryError:
            raise DataError(f"{path} is a directory: expected a vocabulary JSON file") from None
        except OSError as e:
            raise DataError(f"cannot read vocabulary {path}: {e.strerror or e}") from e
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: vocabulary file is not valid UTF-8 (byte offset {e.start})") from None
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}); "
                "expected a vocabulary saved by rnnkit"
            ) from None
        try:
            return cls.from_dict(data)
        except DataError as e:
            raise DataError(f"{path}: not a valid vocabulary file: {e}") from None

    # -- comparison -----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._tokens == other._tokens and self.unk == other.unk

    def __hash__(self) -> int:
        return hash((tuple(self._tokens), self.unk))

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self._tokens[:5])
        more = ", ..." if len(self._tokens) > 5 else ""
        return f"Vocab(size={len(self)}, unk={self.unk!r}, tokens=[{head}{more}])"


def _unknown_message(unknown: list[str]) -> str:
    listed = ", ".join(repr(t) for t in unknown[:_MAX_LISTED])
    more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
    noun = "token" if len(unknown) == 1 else "tokens"
    return (
        f"{len(unknown)} unknown {noun}: {listed}{more}; the vocabulary has none of them "
        "and no unk token to map them to"
    )
