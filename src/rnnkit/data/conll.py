"""Sequence tagging: CoNLL-U (UD part-of-speech) and CoNLL-2003-style (NER) files.

Readers give ``Sentence``s (tokens, one tag per token, where they came from);
writers give back a CoNLL-U file with one column replaced by predictions, or
``token gold pred`` lines for the ``conlleval`` script.  Tag schemes: IOB1 (the
original CoNLL-2003 files), BIO (IOB2) and BIOES, with pure converters.

Every bad file is a ``DataError`` naming the file and line and what was
expected.  Only stdlib here: ``import rnnkit`` must stay light.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rnnkit.data._io import _lines, _read_decoded, _write_text
from rnnkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class Sentence:
    """One tokenised sentence with a tag per token (``tags`` None when unlabelled).

    ``line`` is the 1-based line of the first token in ``source``.  For CoNLL-U,
    ``rows`` holds every original line of the sentence (comments, multi-word
    ranges, empty nodes and words, without the newline) and ``word_rows`` the
    index in ``rows`` of each token's line, so ``write_conllu`` can rebuild the
    file; both are empty for other formats.
    """

    tokens: list[str]
    tags: list[str] | None
    source: str
    line: int
    rows: tuple[str, ...] = ()
    word_rows: tuple[int, ...] = ()

    @property
    def comments(self) -> list[str]:
        """The sentence's CoNLL-U comment lines (``# sent_id = ...``, ``# text = ...``)."""
        return [r for r in self.rows if r.startswith("#")]


# -- CoNLL-U ------------------------------------------------------------------

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
_CONLLU_TAG_COLUMNS = {"upos": 3, "xpos": 4}
_WORD_ID = re.compile(r"[0-9]+", re.ASCII)
_RANGE_ID = re.compile(r"[0-9]+-[0-9]+", re.ASCII)
_EMPTY_ID = re.compile(r"[0-9]+\.[0-9]+", re.ASCII)


def _conllu_column(column: str) -> int:
    index = _CONLLU_TAG_COLUMNS.get(column) if isinstance(column, str) else None
    if index is None:
        raise ConfigError(f"unknown CoNLL-U tag column {column!r}; expected one of {', '.join(_CONLLU_TAG_COLUMNS)}")
    return index


def read_conllu(path: str | os.PathLike[str], *, column: str = "upos", encoding: str = "utf-8") -> list[Sentence]:
    """Sentences from a CoNLL-U file, tagged with its ``column`` (``"upos"`` or ``"xpos"``).

    Ten tab-separated columns per word line; ``#`` comments, multi-word token
    ranges (``3-4``) and empty nodes (``8.1``) are not tokens but are kept in
    ``Sentence.rows`` for ``write_conllu``.  Blank lines end sentences; the last
    one may be missing.  ``DataError`` with file and line for a row without 10
    columns, an ID that is not an integer, a range or an empty node, word IDs not
    counting 1, 2, 3, ... (e.g. a missing blank line), or a sentence without words.
    """
    col = _conllu_column(column)
    path = Path(path)
    text = _read_decoded(path, encoding, expected="CoNLL-U sentences")
    source = str(path)
    sentences: list[Sentence] = []
    rows: list[str] = []
    word_rows: list[int] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = first_word = 0  # line of the block's first row, of its first word

    def flush() -> None:
        if not rows:
            return
        if not tokens:
            raise DataError(
                f"{path}, line {start}: sentence has no tokens; expected at least one word line "
                "(an integer ID) before the blank line or the end of the file"
            )
        sentences.append(Sentence(list(tokens), list(tags), source, first_word, tuple(rows), tuple(word_rows)))
        for part in (rows, word_rows, tokens, tags):
            part.clear()

    for n, raw in enumerate(_lines(text), 1):
        if not raw.strip():
            flush()
            continue
        if not rows:
            start = n
        if raw.startswith("#"):
            rows.append(raw)
            continue
        fields = raw.split("\t")
        if len(fields) != 10:
            hint = " (are the columns separated by spaces?)" if len(raw.split()) >= 10 else ""
            raise DataError(f"{path}, line {n}: expected 10 tab-separated columns, found {len(fields)}{hint}")
        word_id = fields[0]
        if _WORD_ID.fullmatch(word_id):
            if int(word_id) != len(tokens) + 1:
                raise DataError(
                    f"{path}, line {n}: expected word ID {len(tokens) + 1}, found {word_id} "
                    "(is a blank line missing between two sentences?)"
                )
            if not tokens:
                first_word = n
            word_rows.append(len(rows))
            tokens.append(fields[1])
            tags.append(fields[col])
        elif not (_RANGE_ID.fullmatch(word_id) or _EMPTY_ID.fullmatch(word_id)):
            raise DataError(
                f"{path}, line {n}: ID {word_id!r} is not an integer; expected a word ID such as 3, "
                "a multi-word range such as 3-4 or an empty node such as 8.1"
            )
        rows.append(raw)
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentences; expected CoNLL-U word lines")
    return sentences


def write_conllu(
    sentences: Sequence[Sentence],
    predicted: Sequence[Sequence[str]],
    path_or_file: str | os.PathLike[str] | IO[str],
    column: str = "upos",
) -> None:
    """Write the sentences' original CoNLL-U rows with ``column`` replaced by ``predicted``.

    Comments, ranges and empty nodes are kept, each sentence is followed by one
    blank line, lines end in ``\\n``: a file read by ``read_conllu`` and written
    with its own tags comes back byte for byte (unless it had a BOM, ``\\r\\n``
    or several blank lines in a row).  A path is written atomically as UTF-8.
    ``ValueError`` for sentences not read from CoNLL-U, a tag count that differs
    from the token count, or a tag that is empty or holds a tab or newline.
    """
    col = _conllu_column(column)
    _check_predicted(sentences, predicted)
    out: list[str] = []
    for i, (sent, tags) in enumerate(zip(sentences, predicted)):
        if not sent.rows:
            raise ValueError(f"sentence {i} ({sent.source}, line {sent.line}) was not read from CoNLL-U: no rows")
        rows = list(sent.rows)
        for r, tag in zip(sent.word_rows, tags):
            if not tag or any(c in tag for c in "\t\r\n"):
                raise ValueError(f"sentence {i}: tag {tag!r} cannot go in a CoNLL-U column")
            fields = rows[r].split("\t")
            fields[col] = tag
            rows[r] = "\t".join(fields)
        out.extend(row + "\n" for row in rows)
        out.append("\n")
    _write_text(path_or_file, "".join(out))


def _check_predicted(sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    if len(predicted) != len(sentences):
        raise ValueError(f"got predictions for {len(predicted)} sentences, expected {len(sentences)}")
    for i, (sent, tags) in enumerate(zip(sentences, predicted)):
        if len(tags) != len(sent.tokens):
            raise ValueError(f"sentence {i} has {len(sent.tokens)} tokens but {len(tags)} predicted tags")


# -- CoNLL-2003 style ---------------------------------------------------------

SCHEMES = ("bio", "bioes")
_SEPARATOR = re.compile(r"[ \t]+")  # not str.split(): a token may hold a no-break space


def read_conll(
    path: str | os.PathLike[str],
    *,
    column: int | None = -1,
    encoding: str = "utf-8",
    scheme: str | None = None,
    docstart: bool = True,
) -> list[Sentence]:
    """Sentences from a CoNLL-2003-style file: one token per line, columns split by spaces or tabs.

    The token is column 0 and the tag column ``column`` (default the last;
    None reads tokens only, tags None).  Blank lines separate sentences.  With
    ``docstart`` (the default), ``-DOCSTART-`` lines end a sentence and are
    skipped; otherwise they are ordinary tokens.  ``scheme`` ``"bio"`` or
    ``"bioes"`` converts the tags, read as IOB1 (the original CoNLL-2003 files)
    or BIO; None keeps them as they are.  ``DataError`` with file and line for a
    line whose column count differs from the file's first, a file with no tag
    column, or (with ``scheme``) a tag that is not ``O``, ``B-X`` or ``I-X``.
    """
    if scheme is not None and scheme not in SCHEMES:
        raise ConfigError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)} or None")
    if column is not None and (isinstance(column, bool) or not isinstance(column, int)):
        raise ConfigError(f"column must be a column index (negative counts from the end) or None, got {column!r}")
    path = Path(path)
    text = _read_decoded(path, encoding, expected="one token per line")
    source = str(path)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []  # line of each token, for tag errors
    width = width_line = 0  # the file's column count, and where it was first seen
    tag_col = 0

    def flush() -> None:
        if not tokens:
            return
        sent_tags: list[str] | None = None
        if column is not None:
            sent_tags = list(tags)
            if scheme is not None:
                sent_tags = _convert(sent_tags, scheme, path, lines)
        sentences.append(Sentence(list(tokens), sent_tags, source, lines[0]))
        for part in (tokens, tags, lines):
            part.clear()

    for n, raw in enumerate(_lines(text), 1):
        line = raw.strip(" \t")
        if not line:
            flush()
            continue
        fields = _SEPARATOR.split(line)
        if docstart and fields[0] == "-DOCSTART-":
            flush()
            continue
        if not width:
            width, width_line = len(fields), n
            if column is not None:
                if width == 1:
                    raise DataError(
                        f"{path}, line {n}: expected a token and a tag column, found 1 column; "
                        "pass column=None to read tokens only"
                    )
                if not -width <= column < width:
                    raise ConfigError(f"tag column {column} does not exist: {path} has {width} columns")
                tag_col = column % width
                if tag_col == 0:
                    raise ConfigError(f"tag column {column} of {path} is the token column")
        elif len(fields) != width:
            raise DataError(
                f"{path}, line {n}: expected {width} columns as on line {width_line}, found {len(fields)}"
            )
        tokens.append(fields[0])
        tags.append(fields[tag_col])
        lines.append(n)
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentences; expected one token per line, sentences separated by blank lines")
    return sentences


_BIO_TAG = re.compile(r"O|[BI]-.+")


def _convert(tags: list[str], scheme: str, path: Path, lines: list[int]) -> list[str]:
    for tag, n in zip(tags, lines):
        if not _BIO_TAG.fullmatch(tag):
            raise DataError(
                f"{path}, line {n}: tag {tag!r} is not IOB1 or BIO (expected O, B-TYPE or I-TYPE), "
                f"so it cannot be converted to {scheme}"
            )
    bio = iob1_to_bio(tags)
    return bio if scheme == "bio" else bio_to_bioes(bio)


def write_conll(
    sentences: Sequence[Sentence],
    path_or_file: str | os.PathLike[str] | IO[str],
    predicted: Sequence[Sequence[str]],
    *,
    delimiter: str = " ",
) -> None:
    """Write ``token gold pred`` lines (``token pred`` for unlabelled sentences), a blank line after each sentence.

    This is what the ``conlleval`` script reads (the last two fields are gold and
    predicted; pass ``-d '\\t'`` to it for ``delimiter="\\t"``).  Whitespace
    inside a token becomes ``_`` so every line has the same number of fields.
    A path is written atomically as UTF-8.  ``ValueError`` for a tag count that
    differs from the token count or a tag that is empty or holds whitespace.
    """
    if delimiter not in (" ", "\t"):
        raise ConfigError(f"delimiter must be a space or a tab, got {delimiter!r}")
    _check_predicted(sentences, predicted)
    out: list[str] = []
    for i, (sent, pred) in enumerate(zip(sentences, predicted)):
        gold = sent.tags if sent.tags is not None else [None] * len(sent.tokens)
        for token, g, p in zip(sent.tokens, gold, pred):
            for tag in (g, p):
                if tag is not None and (not tag or any(c.isspace() for c in tag)):
                    raise ValueError(f"sentence {i}: tag {tag!r} is empty or holds whitespace")
            fields = [re.sub(r"\s+", "_", token) or "_"] + ([g] if g is not None else []) + [p]
            out.append(delimiter.join(fields) + "\n")
        out.append("\n")
    _write_text(path_or_file, "".join(out))


def read_tokens(text: str) -> list[list[str]]:
    """Input to tag: one sentence per non-empty line, split on whitespace."""
    return [line.split() for line in text.splitlines() if line.strip()]


# -- tag schemes --------------------------------------------------------------


def _split_tag(tag: str, i: int, prefixes: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``; ``ValueError`` naming tag ``i`` otherwise."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if not dash or not kind or len(prefix) != 1 or prefix not in prefixes:
        allowed = ", ".join(f"{p}-TYPE" for p in prefixes)
        raise ValueError(f"tag {i} ({tag!r}) is not O, {allowed}")
    return prefix, kind


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1 (``B-`` only between two entities of one type) -> BIO: every entity starts with ``B-``.

    An ``I-X`` after ``O``, at the start or after another type becomes ``B-X``,
    so BIO input comes back unchanged.
    """
    out: list[str] = []
    prev = ""
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag, i, "BI")
        if prefix == "I" and kind != prev:
            prefix = "B"
        out.append("O" if prefix == "O" else f"{prefix}-{kind}")
        prev = kind
    return out


def bio_to_bioes(tags: Sequence[str]) -> list[str]:
    """BIO -> BIOES: a one-token entity is ``S-``, a longer one ends with ``E-``.

    An ``I-X`` that starts an entity (IOB1) is read as ``B-X``.
    """
    parsed = [_split_tag(tag, i, "BI") for i, tag in enumerate(tags)]
    out: list[str] = []
    for i, (prefix, kind) in enumerate(parsed):
        if prefix == "O":
            out.append("O")
            continue
        starts = prefix == "B" or i == 0 or parsed[i - 1][1] != kind
        nxt = parsed[i + 1] if i + 1 < len(parsed) else ("O", "")
        ends = nxt[0] != "I" or nxt[1] != kind
        new = "S" if starts and ends else "B" if starts else "E" if ends else "I"
        out.append(f"{new}-{kind}")
    return out


def bioes_to_bio(tags: Sequence[str]) -> list[str]:
    """BIOES -> BIO: ``S-`` becomes ``B-`` and ``E-`` becomes ``I-``."""
    to_bio = {"B": "B", "I": "I", "E": "I", "S": "B"}
    out: list[str] = []
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag, i, "BIES")
        out.append("O" if prefix == "O" else f"{to_bio[prefix]}-{kind}")
    return out
