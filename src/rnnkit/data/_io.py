"""Files shared by every reader: reading bytes, decoding with file/line/column errors,
encoding checks, splitting into lines, and atomic writes.

Every reader goes through ``_read_decoded`` (or ``_read_bytes`` and ``_decode``)
so that a missing, empty or badly encoded file reads the same whichever format
it was meant to be.  Only stdlib here: ``import rnnkit`` must stay light.
"""
from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import IO

from rnnkit.errors import ConfigError, DataError
from rnnkit.fileio import atomic_write_text

def _check_encoding(encoding: str) -> str:
    """The codec's canonical name; ``ConfigError`` if Python knows no text codec by that name."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ConfigError(
            f"unknown encoding {encoding!r}; pass a Python codec name such as utf-8, latin-1 or cp1252"
        ) from None
    # codecs.lookup also finds bytes-to-bytes codecs (base64, zlib) that cannot decode text
    if not getattr(info, "_is_text_encoding", True):
        raise ConfigError(f"{encoding!r} is not a text encoding; pass one such as utf-8 or latin-1")
    return info.name


def _read_bytes(path: Path, *, expected: str) -> bytes:
    """The file's bytes; ``DataError`` if it is missing, a directory, unreadable or empty.

    ``expected`` says what the file should hold, for the empty-file message.
    """
    if path.is_dir():
        raise DataError(f"{path} is a directory: expected a file with {expected}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if not data:
        raise DataError(f"{path} is empty: expected {expected}")
    return data


def _decode(data: bytes, path: Path, encoding: str) -> str:
    """Decode the whole file; a bad byte becomes a ``DataError`` with line, column and byte."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(_decode_error_message(e, data, path, encoding)) from None


def _decode_error_message(e: UnicodeDecodeError, data: bytes, path: Path, encoding: str) -> str:
    line, column = _line_column(data, e.start, encoding)
    bad = data[e.start : max(e.end, e.start + 1)]
    shown = " ".join(f"0x{b:02x}" for b in bad)
    what = f"byte {shown} is" if len(bad) == 1 else f"bytes {shown} are"
    other = "latin-1" if codecs.lookup(encoding).name == "utf-8" else "utf-8"
    return (
        f"{path}, line {line}, column {column}: {what} not valid {encoding} ({e.reason}); "
        f"if the file uses another encoding, pass --encoding (e.g. --encoding {other})"
    )


def _line_column(data: bytes, offset: int, encoding: str) -> tuple[int, int]:
    """1-based line and column of byte ``offset``, the column counted in characters.

    The bytes before the first bad one decode cleanly, so decode them and count
    newlines; this also works for multi-byte encodings such as UTF-16.  Should
    that fail, fall back to counting bytes.
    """
    try:
        prefix = data[:offset].decode(encoding)
        nl = "\n"
    except UnicodeDecodeError:
        prefix, nl = data[:offset], b"\n"  # type: ignore[assignment]
    line = prefix.count(nl) + 1
    column = len(prefix) - (prefix.rfind(nl) + 1) + 1
    return line, column


def _read_decoded(path: Path, encoding: str, *, expected: str) -> str:
    """The whole file decoded, with the shared missing/empty/bad-byte errors."""
    _check_encoding(encoding)
    text = _decode(_read_bytes(path, expected=expected), path, encoding)
    return text[1:] if text.startswith("\ufeff") else text  # a BOM is not part of the first field


def _lines(text: str) -> list[str]:
    """Split on ``\\n`` only (so line numbers match the encoding errors'), dropping ``\\r``.

    ``str.splitlines`` would also split on form feeds and U+2028 inside a line.
    A final newline does not start another line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _write_text(path_or_file: str | os.PathLike[str] | IO[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to an open text file, or atomically to a path (see ``rnnkit.fileio``)."""
    if not isinstance(path_or_file, (str, os.PathLike)):
        path_or_file.write(text)
        return
    atomic_write_text(path_or_file, text, encoding)
