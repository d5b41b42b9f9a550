"""Plain text for language modelling, and the small datasets bundled in ``rnnkit/bundled``."""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from rnnkit.data._io import _check_encoding, _decode, _read_bytes
from rnnkit.errors import ConfigError, DataError


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


def split_text(text: str, valid_fraction: float, at_line: bool = False) -> tuple[str, str]:
    """Split ``text`` into ``(train, valid)``: the last ``valid_fraction`` of characters is validation.

    ``valid_fraction`` must be in [0, 1); 0 gives an empty validation text.  A
    fraction that would leave either part empty is a ``ConfigError``.  With
    ``at_line`` the cut moves forward to the start of the next line (when there
    is one), so no word or line is cut in two.
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
    if at_line and cut > 0 and text[cut - 1] != "\n":
        newline = text.find("\n", cut)
        if 0 <= newline < len(text) - 1:
            cut = newline + 1
    return text[:cut], text[cut:]


def split_lines(text: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[str, str, str]:
    """Cut ``text`` into contiguous ``(train, valid, test)`` texts by whole lines, in order.

    ``fractions`` are the shares of the lines (non-negative, summing to 1): the
    first ``round(n * train)`` lines are train, the next ``round(n * valid)``
    valid, the rest test.  Every line keeps its newline (a last line without one
    gets one), so the three texts joined give ``text`` back up to that newline.
    ``ConfigError`` for bad fractions or a part left empty.
    """
    fr = list(fractions)
    if len(fr) != 3 or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f < 0 for f in fr) \
            or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"fractions must be three shares >= 0 summing to 1, got {fractions!r}")
    lines = [line + "\n" for line in text.splitlines()]
    n = len(lines)
    a = round(n * fr[0])
    b = a + round(n * fr[1])
    parts = ("".join(lines[:a]), "".join(lines[a:b]), "".join(lines[b:]))
    for name, part, f in zip(("train", "valid", "test"), parts, fr):
        if f > 0 and not part:
            raise ConfigError(f"a {name} share of {f} of {n} lines leaves no {name} lines")
    return parts


# -- bundled datasets ---------------------------------------------------------

# name -> file in rnnkit/bundled (see its README.md for sources and licences)
BUNDLED: dict[str, str] = {
    "tinyshakespeare": "tinyshakespeare.txt",
    "ud_ewt_dev": "ud_ewt_dev.conllu",
    "cmudict_20k": "cmudict_20k.dict",
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
