"""Pretrained word vectors (GloVe, word2vec, fastText text format) -> an embedding matrix.

``load_vectors`` streams the file once, keeping only the rows for words in the
vocabulary, so a multi-gigabyte file costs memory for the vocabulary only.
Errors name the file and line.  Only torch and stdlib.
"""
from __future__ import annotations

import codecs
import math
import os
from pathlib import Path

import torch

from rnnkit.errors import ConfigError, DataError

PAD = "<pad>"  # the vocabulary's padding token: its row is all zeros
DEFAULT_STD = 0.1  # init std for words not found when no vector was found to measure


def load_vectors(
    path: str | os.PathLike[str],
    vocab_tokens: list[str],
    *,
    encoding: str = "utf-8",
    lower_fallback: bool = True,
    generator: torch.Generator | None = None,
    std: float | None = None,
) -> tuple[torch.Tensor, int]:
    """An embedding matrix for ``vocab_tokens`` from a text file of word vectors.

    Formats, told apart by the first line: GloVe (every line ``word v1 ... vD``)
    and word2vec / fastText ``.vec`` (a first line ``N D``, then the same rows;
    fewer or more than ``N`` rows is an error, as a truncated download would be).
    A word that contains spaces (a few in glove.840B) is read as everything
    before the last ``D`` values.  The encoding must be ASCII-compatible.

    Row ``i`` of the result belongs to ``vocab_tokens[i]``:

    * the file's vector for that exact token (its first occurrence);
    * else, with ``lower_fallback``, the first vector whose word equals the token
      ignoring case (``Paris`` <- ``paris``, or ``paris`` <- ``Paris`` for cased
      vectors and a lower-casing tokenizer);
    * else random normal values, from ``generator``, with standard deviation
      ``std``; ``std=None`` uses the standard deviation of the vectors found
      (new words on the same scale as the pretrained ones), or 0.1 if none;
    * zeros for ``<pad>``, found or not.

    Returns ``(matrix, found)``: a float32 tensor of shape ``(V, D)``, and how
    many vocabulary entries got a vector from the file (``<pad>`` never counts);
    coverage is ``found / V``.

    ``DataError`` for a missing or empty file, a row with a different number of
    values (``line 7: expected 50 values, found 49``), a value that is not a
    number, or a word not decodable in ``encoding``; ``ConfigError`` for an
    unknown encoding or a negative ``std``.
    """
    path = Path(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}; pass a Python codec name such as utf-8 or latin-1") from None
    if std is not None and (isinstance(std, bool) or not isinstance(std, (int, float)) or std < 0):
        raise ConfigError(f"std must be a number >= 0 or None, got {std!r}")

    exact: dict[str, list[int]] = {}  # token -> vocabulary rows
    folded: dict[str, list[int]] = {}  # lower-cased token -> vocabulary rows
    for i, tok in enumerate(vocab_tokens):
        if tok == PAD:
            continue
        exact.setdefault(tok, []).append(i)
        if lower_fallback:
            folded.setdefault(tok.lower(), []).append(i)
    vectors: dict[int, list[float]] = {}  # vocabulary row -> values
    by_exact: set[int] = set()  # rows filled by an exact match (a case match may not replace them)

    dim: int | None = None
    declared: int | None = None  # N from a word2vec header
    rows = 0
    for lineno, raw in _numbered_lines(path):
        fields = raw.split()
        if not fields:
            continue  # a blank line (often the last) holds no vector
        if lineno == 1 and len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            declared, dim = int(fields[0]), int(fields[1])
            if dim < 1:
                raise DataError(f"{path}, line 1: the header declares {dim} dimensions; expected at least 1")
            continue
        if dim is None:
            dim = len(fields) - 1
            if dim < 1:
                raise DataError(f"{path}, line {lineno}: expected a word and its vector values, found one field")
        if len(fields) - 1 < dim:
            raise DataError(f"{path}, line {lineno}: expected {dim} values, found {len(fields) - 1}")
        rows += 1
        word = _decode_word(b" ".join(fields[: len(fields) - dim]), raw, path, lineno, encoding)
        targets = [i for i in exact.get(word, ()) if i not in by_exact]
        case_targets = [i for i in folded.get(word.lower(), ()) if i not in vectors] if folded else []
        if not targets and not case_targets:
            continue
        values = _parse_values(fields[len(fields) - dim :], path, lineno)
        for i in targets:
            vectors[i] = values
            by_exact.add(i)
        for i in case_targets:
            vectors[i] = values

    if dim is None:
        raise DataError(f"{path}: no vectors found; expected lines of a word and its values")
    if declared is not None and rows != declared:
        raise DataError(f"{path}: the header declares {declared} vectors, found {rows} (truncated file?)")

    found_rows = sorted(vectors)
    found_values = torch.tensor([vectors[i] for i in found_rows], dtype=torch.float32).reshape(-1, dim)
    if std is None:  # (found, D) pooled over every value; one value has no spread
        std = float(found_values.std()) if found_values.numel() > 1 else DEFAULT_STD
    matrix = torch.randn(len(vocab_tokens), dim, generator=generator) * std  # (V, D)
    matrix[torch.tensor(found_rows, dtype=torch.long)] = found_values
    for i, tok in enumerate(vocab_tokens):
        if tok == PAD:
            matrix[i] = 0.0
    return matrix, len(found_rows)


def _numbered_lines(path: Path):
    """``(line number, bytes)`` for each line, streamed."""
    if path.is_dir():
        raise DataError(f"{path} is a directory: expected a file of word vectors")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        empty = True
        for lineno, raw in enumerate(f, 1):
            empty = False
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            yield lineno, raw
        if empty:
            raise DataError(f"{path} is empty: expected word vectors")


def _decode_word(word: bytes, raw: bytes, path: Path, lineno: int, encoding: str) -> str:
    try:
        return word.decode(encoding)
    except UnicodeDecodeError as e:
        # column in characters within the line: decode what precedes the bad byte
        start = len(raw) - len(raw.lstrip()) + e.start
        column = len(raw[:start].decode(encoding, errors="replace")) + 1
        bad = " ".join(f"0x{b:02x}" for b in e.object[e.start : max(e.end, e.start + 1)])
        other = "latin-1" if codecs.lookup(encoding).name == "utf-8" else "utf-8"
        raise DataError(
            f"{path}, line {lineno}, column {column}: byte {bad} is not valid {encoding} ({e.reason}); "
            f"if the file uses another encoding, pass --encoding (e.g. --encoding {other})"
        ) from None


def _parse_values(fields: list[bytes], path: Path, lineno: int) -> list[float]:
    try:
        values = [float(x) for x in fields]
    except ValueError:
        bad = next(x for x in fields if not _is_float(x))
        raise DataError(
            f"{path}, line {lineno}: value {bad.decode('ascii', 'replace')!r} is not a number"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{path}, line {lineno}: the vector holds inf or nan")
    return values


def _is_float(x: bytes) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True
