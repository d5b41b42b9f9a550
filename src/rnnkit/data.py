"""Readers: files on disk -> text and examples.

Every reader reports a bad file as ``DataError`` naming the file, the line (and
column, where it helps) and what was expected.  The sections below:

* files: reading bytes and decoding them, shared by every reader;
* plain text (language modelling);
* bundled datasets shipped in ``rnnkit/bundled``.

Later readers (CSV/TSV, JSONL, CoNLL) go in sections of their own and read
through ``_read_bytes`` and ``_decode`` so their errors look the same.

Only stdlib here: ``import rnnkit`` must stay light.
"""
from __future__ import annotations

import codecs
import os
from importlib.resources import files
from pathlib import Path

from rnnkit.errors import ConfigError, DataError

# -- files: shared by every reader -------------------------------------------


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


# -- plain text ---------------------------------------------------------------


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """Read a whole text file exactly as it is (``\\r\\n`` stays ``\\r\\n``; a BOM stays too).

    Raises ``DataError`` for a missing file, a directory, an empty file or bytes
    not valid in ``encoding`` (with file, line, column and byte value), and
    ``ConfigError`` for an unknown encoding name.  Pass ``encoding="utf-8-sig"``
    to drop a UTF-8 byte-order mark.
    """
    _check_encoding(encoding)
    path = Path(path)
    return _decode(_read_bytes(path, expected="text"), path, encoding)


def split_text(text: str, valid_fraction: float) -> tuple[str, str]:
    """Split ``text`` into ``(train, valid)``: the last ``valid_fraction`` of characters is validation.

    ``valid_fraction`` must be in [0, 1); 0 gives an empty validation text.  A
    fraction that would leave either part empty is a ``ConfigError``.
    """
    if (
        isinstance(valid_fraction, bool)
        or not isinstance(valid_fraction, (int, float))
        or not 0 <= valid_fraction < 1
    ):
        raise ConfigError(f"valid_fraction must be a number in [0, 1), got {valid_fraction!r}")
    if valid_fraction == 0:
        return text, ""
    n_valid = round(len(text) * valid_fraction)
    if n_valid == 0:
        raise ConfigError(
            f"valid_fraction {valid_fraction} of a {len(text)}-character text leaves no validation text"
        )
    if n_valid >= len(text):
        raise ConfigError(
            f"valid_fraction {valid_fraction} of a {len(text)}-character text leaves no training text"
        )
    cut = len(text) - n_valid
    return text[:cut], text[cut:]


# -- bundled datasets ---------------------------------------------------------

# name -> file in rnnkit/bundled (see its README.md for sources and licences)
BUNDLED: dict[str, str] = {
    "tinyshakespeare": "tinyshakespeare.txt",
}


def bundled_path(name: str) -> Path:
    """Path of the bundled dataset ``name``; ``ConfigError`` listing the known names if unknown."""
    filename = BUNDLED.get(name) if isinstance(name, str) else None
    if filename is None:
        known = ", ".join(sorted(BUNDLED))
        raise ConfigError(f"unknown bundled dataset {name!r}; known: {known}")
    resource = files("rnnkit") / "bundled" / filename
    if not isinstance(resource, Path):
        # e.g. rnnkit imported from a zip archive: there is no file path to hand out
        raise DataError(
            f"bundled dataset {name!r} is not on the file system ({resource}); install rnnkit unzipped"
        )
    if not resource.is_file():
        raise DataError(f"bundled dataset {name!r} is missing: {resource}; reinstall rnnkit")
    return resource
