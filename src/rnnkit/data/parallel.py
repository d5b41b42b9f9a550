"""Parallel text for sequence-to-sequence work: sentence ``Pair``s from two
line-aligned files or one TSV file, filtering by length with a report, CMUdict
pronunciations (spelling -> phonemes), and a fixed train/valid/test split.

Readers never drop a line silently: a line with an empty side, files of
different lengths or a malformed entry is a ``DataError`` naming the file, the
line and what was expected.  Only stdlib here: ``import rnnkit`` must stay light.
"""
from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rnnkit.data._io import _lines, _read_decoded
from rnnkit.errors import ConfigError, DataError

T = TypeVar("T")

_LISTED = 5  # problems quoted in one error message
_QUOTE_CHARS = 40  # characters of a partner sentence quoted in an error


@dataclass(frozen=True)
class Pair:
    """A source sentence and its target, and where they came from so later errors can cite them.

    ``source`` describes the file(s): ``"train.de | train.en"`` for two aligned
    files, the path for a TSV file.  ``line`` is the 1-based line number.
    """

    src: str
    tgt: str
    source: str
    line: int


# -- readers ------------------------------------------------------------------


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3].rstrip() + "...")


def _raise_empty(problems: list[str], where: str, total: int) -> None:
    """One ``DataError`` quoting the first few problems and counting the rest."""
    if not problems:
        return
    shown = "; ".join(problems[:_LISTED])
    more = f"; ... and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
    head = "" if len(problems) == 1 else f"{where}: {len(problems)} of {total} lines have an empty side: "
    raise DataError(f"{head}{shown}{more}; expected a sentence on both sides of every line")


def read_parallel(
    src_path: str | os.PathLike[str],
    tgt_path: str | os.PathLike[str],
    encoding: str = "utf-8",
) -> list[Pair]:
    """Sentence pairs from two line-aligned files: line n of ``src_path`` translates line n of ``tgt_path``.

    Each sentence is stripped of surrounding whitespace; a final newline does
    not start another line.  ``DataError`` if the files have different line
    counts (naming the longer file and the first line without a partner), if
    any line has an empty side (quoting up to five such lines and counting all),
    or for a missing, empty or badly encoded file (file, line and column).
    """
    src_file, tgt_file = Path(src_path), Path(tgt_path)
    src_lines = _lines(_read_decoded(src_file, encoding, expected="one source sentence per line"))
    tgt_lines = _lines(_read_decoded(tgt_file, encoding, expected="one target sentence per line"))
    ns, nt = len(src_lines), len(tgt_lines)
    if ns != nt:
        longer, long_lines, shorter = (src_file, src_lines, tgt_file) if ns > nt else (tgt_file, tgt_lines, src_file)
        n_short, extra = min(ns, nt), abs(ns - nt)
        blank = "" if any(s.strip() for s in long_lines[n_short:]) else " (the extra lines are all blank)"
        raise DataError(
            f"{src_file} has {ns} lines but {tgt_file} has {nt}: {longer} is longer by "
            f"{extra} line{'s' if extra != 1 else ''}{blank}; line {n_short + 1} of {longer} "
            f"has no partner in {shorter}; expected line-aligned files with one sentence per line"
        )
    if ns == 0:
        raise DataError(f"{src_file} and {tgt_file} hold no lines: expected one sentence per line")
    source = f"{src_file} | {tgt_file}"
    pairs: list[Pair] = []
    problems: list[str] = []
    for line, (s_raw, t_raw) in enumerate(zip(src_lines, tgt_lines), 1):
        s, t = s_raw.strip(), t_raw.strip()
        if s and t:
            pairs.append(Pair(s, t, source, line))
        elif not s and not t:
            problems.append(f"{src_file} and {tgt_file}, line {line}: blank on both sides")
        elif not s:
            problems.append(
                f"{src_file}, line {line}: empty source sentence "
                f"(its partner in {tgt_file} line {line} is {_quote(t)})"
            )
        else:
            problems.append(
                f"{tgt_file}, line {line}: empty target sentence "
                f"(its partner in {src_file} line {line} is {_quote(s)})"
            )
    _raise_empty(problems, source, ns)
    return pairs


def read_parallel_tsv(
    path: str | os.PathLike[str],
    encoding: str = "utf-8",
    src_column: int = 0,
    tgt_column: int = 1,
    header: bool = False,
) -> list[Pair]:
    """Sentence pairs from one tab-separated file, one pair per line.

    Columns are 0-based; other columns are ignored.  ``header=True`` skips the
    first line.  Quotes are ordinary characters.  Each sentence is stripped of
    surrounding whitespace.  ``DataError`` naming file and line for a line with
    too few columns, and for lines with an empty side (up to five quoted, all
    counted); ``ConfigError`` for bad column indices.
    """
    for name, col in (("src_column", src_column), ("tgt_column", tgt_column)):
        if isinstance(col, bool) or not isinstance(col, int) or col < 0:
            raise ConfigError(f"{name} must be a 0-based column index, got {col!r}")
    if src_column == tgt_column:
        raise ConfigError(f"src_column and tgt_column are both {src_column}; expected two different columns")
    file = Path(path)
    lines = _lines(_read_decoded(file, encoding, expected="one tab-separated sentence pair per line"))
    start = 1 if header else 0
    if len(lines) <= start:
        raise DataError(f"{file}: expected a header line and sentence pairs, found only the header")
    source = str(file)
    need = max(src_column, tgt_column) + 1
    pairs: list[Pair] = []
    problems: list[str] = []
    for line, raw in enumerate(lines[start:], start + 1):
        if not raw.strip():
            problems.append(f"{file}, line {line}: blank line")
            continue
        cells = raw.split("\t")
        if len(cells) < need:
            hint = " (is the file tab-separated?)" if len(cells) == 1 else ""
            raise DataError(
                f"{file}, line {line}: expected at least {need} tab-separated columns, found {len(cells)}{hint}"
            )
        s, t = cells[src_column].strip(), cells[tgt_column].strip()
        if s and t:
            pairs.append(Pair(s, t, source, line))
        elif not s and not t:
            problems.append(f"{file}, line {line}: empty source and target (columns {src_column}, {tgt_column})")
        elif not s:
            problems.append(f"{file}, line {line}: empty source sentence in column {src_column} "
                            f"(its target is {_quote(t)})")
        else:
            problems.append(f"{file}, line {line}: empty target sentence in column {tgt_column} "
                            f"(its source is {_quote(s)})")
    _raise_empty(problems, source, len(lines) - start)
    return pairs


# -- filtering by length --------------------------------------------------------


@dataclass(frozen=True)
class LengthReport:
    """What ``filter_by_length`` dropped.

    ``src_too_long`` and ``tgt_too_long`` count pairs independently, so a pair
    too long on both sides is in both; ``dropped`` counts each dropped pair once
    (``src_too_long + tgt_too_long - dropped`` pairs were too long on both sides).
    """

    total: int
    dropped: int
    src_too_long: int
    tgt_too_long: int
    max_src: int | None
    max_tgt: int | None

    @property
    def kept(self) -> int:
        return self.total - self.dropped

    def describe(self) -> str:
        """One sentence: ``"dropped 12 of 29,000 pairs (0.04%): 9 with a source longer than 50 tokens, ..."``."""
        if self.dropped == 0:
            if self.total == 1:
                return "kept the one pair"
            return f"kept all {self.total:,} pairs"
        share = 100 * self.dropped / self.total
        pct = "<0.01%" if share < 0.01 else f"{share:.2f}%"
        reasons = []
        if self.src_too_long:
            reasons.append(f"{self.src_too_long:,} with a source longer than {self.max_src} tokens")
        if self.tgt_too_long:
            reasons.append(f"{self.tgt_too_long:,} with a target longer than {self.max_tgt} tokens")
        both = self.src_too_long + self.tgt_too_long - self.dropped
        if both:
            reasons[-1] += f" ({both:,} too long on both sides)"
        noun = "pair" if self.total == 1 else "pairs"
        return f"dropped {self.dropped:,} of {self.total:,} {noun} ({pct}): " + ", ".join(reasons)


def filter_by_length(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    max_src: int | None,
    max_tgt: int | None,
) -> tuple[list[int], LengthReport]:
    """Indices of the pairs whose lengths are within the limits, in order, and a report of the rest.

    A pair is dropped when its source is longer than ``max_src`` or its target
    longer than ``max_tgt`` (a length equal to the limit is kept; None means no
    limit).  See ``LengthReport`` for how pairs too long on both sides count.
    """
    if len(src_lens) != len(tgt_lens):
        raise ValueError(f"{len(src_lens)} source lengths but {len(tgt_lens)} target lengths")
    for name, limit in (("max_src", max_src), ("max_tgt", max_tgt)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"{name} must be a positive integer or None, got {limit!r}")
    kept: list[int] = []
    src_long = tgt_long = 0
    for i, (ls, lt) in enumerate(zip(src_lens, tgt_lens)):
        s_bad = max_src is not None and ls > max_src
        t_bad = max_tgt is not None and lt > max_tgt
        src_long += s_bad
        tgt_long += t_bad
        if not (s_bad or t_bad):
            kept.append(i)
    total = len(src_lens)
    return kept, LengthReport(total, total - len(kept), src_long, tgt_long, max_src, max_tgt)


# -- CMUdict --------------------------------------------------------------------

_VARIANT = re.compile(r"\(\d+\)$")  # word(2), word(3): further pronunciations
_PHONE = re.compile(r"[A-Z]+[012]?")  # ARPAbet, with an optional stress digit
_COMMENT = re.compile(r"\s#")  # a trailing "# comment" (a word never holds " #")


def read_cmudict(path: str | os.PathLike[str], encoding: str = "utf-8", *,
                 lower: bool = False) -> dict[str, list[list[str]]]:
    """CMUdict pronunciations: each word maps to its pronunciations, each a list of ARPAbet phones.

    One pronunciation per line, ``word PH1 PH2 ...`` (any whitespace between the
    fields: the 0.7b files put two spaces after the word); ``word(2)``,
    ``word(3)`` add further pronunciations to ``word``, and so does a word
    repeated on another line (the test split's way of listing variants).
    ``lower=True`` lower-cases the words, so ``CAT`` and ``cat`` are one word
    (the releases differ in case).  Stress digits are kept
    (``["K", "AE1", "T"]``; see :func:`drop_stress`); trailing ``# comments``,
    comment lines (``;;;`` or ``#``) and blank lines are skipped.  Words keep the
    file's order and pronunciations their order in it.  ``DataError`` naming file
    and line for a word without phones or a phone that is not capitals with an
    optional stress digit 0-2.
    """
    file = Path(path)
    text = _read_decoded(file, encoding, expected="one word and its phones per line")
    entries: dict[str, list[list[str]]] = {}
    for line, raw in enumerate(_lines(text), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith((";;;", "#")):
            continue
        fields = _COMMENT.split(stripped, maxsplit=1)[0].split()
        word, phones = _VARIANT.sub("", fields[0]), fields[1:]
        if lower:
            word = word.lower()
        if not word or not phones:
            raise DataError(
                f"{file}, line {line}: {fields[0]!r} has no phones; expected a word then its phones, "
                "e.g. 'cat K AE1 T'"
            )
        for phone in phones:
            if not _PHONE.fullmatch(phone):
                raise DataError(
                    f"{file}, line {line}: {phone!r} is not an ARPAbet phone; expected capital letters "
                    "with an optional stress digit 0-2, e.g. AE1"
                )
        entries.setdefault(word, []).append(phones)
    if not entries:
        raise DataError(f"{file}: no entries, only comments; expected one word and its phones per line")
    return entries


def has_stress(entries: dict[str, list[list[str]]]) -> bool:
    """Whether any phone of ``entries`` carries a stress digit (``AH0``, ``EY1``)."""
    return any(ph[-1:].isdigit() for prons in entries.values() for p in prons for ph in p)


def drop_stress(entries: dict[str, list[list[str]]]) -> tuple[dict[str, list[list[str]]], int]:
    """``entries`` with the stress digits removed (``AH0`` -> ``AH``), and how many pronunciations that merged.

    Two pronunciations of a word that differ only in stress become one (the
    first keeps its place); the count says how many were merged away, so a
    caller can report it.  Words keep their order.
    """
    out: dict[str, list[list[str]]] = {}
    merged = 0
    for word, prons in entries.items():
        kept: list[list[str]] = []
        for p in prons:
            bare = [ph.rstrip("012") for ph in p]
            if bare in kept:
                merged += 1
            else:
                kept.append(bare)
        out[word] = kept
    return out, merged


# -- a fixed split ----------------------------------------------------------------


def split_items(
    items: Sequence[T],
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    seed: int = 0,
) -> tuple[list[T], list[T], list[T]]:
    """A fixed random ``(train, valid, test)`` split of ``items``.

    ``fractions`` are the train, valid and test shares (non-negative, summing to
    1).  A copy of ``items`` is shuffled with ``random.Random(seed)``; the first
    ``round(n * valid)`` go to valid, the next ``round(n * test)`` (at most what
    is left) to test, and the rest to train, each in shuffled order.  The same
    items and seed give the same split.  ``ConfigError`` for bad fractions.
    """
    fr = list(fractions)
    if len(fr) != 3 or any(isinstance(f, bool) or not isinstance(f, (int, float)) for f in fr):
        raise ConfigError(f"fractions must be three numbers (train, valid, test), got {fractions!r}")
    if any(not 0 <= f <= 1 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"fractions must be in [0, 1] and sum to 1, got {fractions!r} (sum {sum(fr):g})")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    n_valid = min(round(n * fr[1]), n)
    n_test = min(round(n * fr[2]), n - n_valid)
    return shuffled[n_valid + n_test :], shuffled[:n_valid], shuffled[n_valid : n_valid + n_test]
