"""Text classification: ``Example``s from TSV/CSV, JSON Lines, one file per class or
one folder per class (``read_classification`` picks).

What a reader skips (blank lines, empty labels) it reports, with counts and line
numbers; it never drops anything silently.  Every bad file is a ``DataError``
naming the file, the line (and column, where it helps) and what was expected.
"""
from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rnnkit.data._io import _check_encoding, _decode, _lines, _read_decoded
from rnnkit.errors import ConfigError, DataError

# -- examples and the report of what was skipped ------------------------------


@dataclass(frozen=True)
class Example:
    """One text with its label, and where it came from so later errors can cite it.

    ``label`` is None for unlabelled input (text to classify).  ``line`` is the
    1-based line where the example starts in ``source`` (1 for a one-example file).
    """

    text: str
    label: str | None
    source: str
    line: int


@dataclass
class ClassificationData:
    """What ``read_classification`` found: the examples, and one line per problem it skipped."""

    examples: list[Example]
    report: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str | None]:
        """The label of every example, in order."""
        return [ex.label for ex in self.examples]

    def class_counts(self) -> dict[str, int]:
        """Examples per label, labels sorted (unlabelled examples are not counted)."""
        counts = Counter(ex.label for ex in self.examples if ex.label is not None)
        return dict(sorted(counts.items()))


_LISTED_LINES = 5  # line numbers listed per problem in a report line


class _Skips:
    """Collects skipped lines per file and problem, for one report line each.

    ``report`` is the caller's list; None means warn (``UserWarning``) instead, so
    a reader called on its own still never drops anything silently.
    """

    def __init__(self, report: list[str] | None) -> None:
        self._report = report
        self._lines: dict[tuple[str, str], list[int]] = {}

    def add(self, source: str, problem: str, line: int) -> None:
        self._lines.setdefault((source, problem), []).append(line)

    def note(self, message: str) -> None:
        self._emit(message)

    def flush(self) -> None:
        for (source, problem), lines in self._lines.items():
            listed = ", ".join(str(n) for n in lines[:_LISTED_LINES])
            more = ", ..." if len(lines) > _LISTED_LINES else ""
            where = "line" if len(lines) == 1 else "lines"
            self._emit(f"{source}: skipped {len(lines)} {problem} ({where} {listed}{more})")
        self._lines.clear()

    def _emit(self, message: str) -> None:
        if self._report is None:
            warnings.warn(message, stacklevel=4)
        else:
            self._report.append(message)


# -- delimited (TSV / CSV) ----------------------------------------------------


def read_delimited(
    path: str | os.PathLike[str],
    *,
    text_column: int | str,
    label_column: int | str | None,
    delimiter: str | None = None,
    header: bool | None = None,
    quoting: bool | None = None,
    encoding: str = "utf-8",
    report: list[str] | None = None,
) -> list[Example]:
    """Examples from a TSV or CSV file, one row each.

    Columns are 0-based indices or header names; ``label_column=None`` reads
    unlabelled text.  ``delimiter`` None: ``","`` for a ``.csv`` file, else tab.
    ``header`` None: the first row is a header exactly when a column is given by
    name.  ``quoting`` None: ``"`` quotes fields in CSV but is an ordinary
    character in TSV (as in SST-2), where quoting would swallow lines.

    Text and label are stripped of surrounding whitespace.  Blank rows and rows
    with an empty text or label are skipped and reported in ``report`` (warned
    when ``report`` is None).  A row with too few columns, an unknown column name
    or a malformed quoted field is a ``DataError`` with file and line.
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ConfigError(f"delimiter must be one character, got {delimiter!r}")
    columns = {"text_column": text_column, "label_column": label_column}
    for name, col in columns.items():
        if col is None and name == "label_column":
            continue
        if isinstance(col, bool) or not isinstance(col, (int, str)) or (isinstance(col, int) and col < 0):
            raise ConfigError(f"{name} must be a 0-based column index or a header name, got {col!r}")
    by_name = isinstance(text_column, str) or isinstance(label_column, str)
    guessed = header is None
    if header is None:
        header = by_name
    elif by_name and not header:
        raise ConfigError("columns given by name need a header row; pass header=True or column indices")
    if quoting is None:
        quoting = delimiter != "\t"

    text = _read_decoded(path, encoding, expected="one example per row")
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
        strict=True,
    )
    source = str(path)
    skips = _Skips(report)
    examples: list[Example] = []
    text_idx: int | None = text_column if isinstance(text_column, int) else None
    label_idx: int | None = label_column if isinstance(label_column, int) else None
    need_header = header
    prev_line = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(
                f"{path}, line {prev_line + 1}: malformed row ({e}); "
                "a field that starts with a quote must end with one"
            ) from None
        line, prev_line = prev_line + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            skips.add(source, "blank lines", line)
            continue
        if need_header:
            need_header = False
            text_idx = _header_index(row, text_column, path, line)
            if label_column is not None:
                label_idx = _header_index(row, label_column, path, line)
            continue
        assert text_idx is not None
        need = max(text_idx, label_idx if label_idx is not None else -1) + 1
        if len(row) < need:
            hint = f" (is the delimiter {delimiter!r} right?)" if len(row) == 1 else ""
            raise DataError(f"{path}, line {line}: expected at least {need} columns, found {len(row)}{hint}")
        body = row[text_idx].strip()
        label = row[label_idx].strip() if label_idx is not None else None
        if not body:
            skips.add(source, "rows with an empty text", line)
        elif label == "":
            skips.add(source, "rows with an empty label", line)
        else:
            examples.append(Example(body, label, source, line))
    if need_header:
        raise DataError(f"{path}: expected a header row and examples, found only blank lines")
    skips.flush()
    if guessed and not header and len(examples) > 2 and examples[0].label is not None \
            and sum(ex.label == examples[0].label for ex in examples) == 1:
        # read as data, a header row becomes a class of its own: say so rather than guess
        first = examples[0]
        skips.note(f"{path}, line {first.line}: its label {first.label!r} occurs on no other row; if this "
                   f"line is a header, pass header=True (--header) or name the columns")
    return examples


def _header_index(row: list[str], column: int | str, path: Path, line: int) -> int:
    if isinstance(column, int):
        return column
    names = [cell.strip() for cell in row]
    if column in names:
        return names.index(column)
    shown = ", ".join(repr(n) for n in names)
    raise DataError(f"{path}, line {line}: no column named {column!r}; the header has {shown}")


# -- JSON Lines ---------------------------------------------------------------


def read_jsonl(
    path: str | os.PathLike[str],
    *,
    text_field: str = "text",
    label_field: str | None = "label",
    encoding: str = "utf-8",
    report: list[str] | None = None,
) -> list[Example]:
    """Examples from a JSON Lines file: one object per line, e.g. ``{"text": "...", "label": "pos"}``.

    A label may be a string or an integer (kept as its string, ``1`` -> ``"1"``);
    ``label_field=None`` reads unlabelled text.  Blank lines, records without the
    text or label field (or with it null or empty) are skipped and reported.  A
    line that is not a JSON object, or a field of the wrong type, is a
    ``DataError`` with file and line.
    """
    path = Path(path)
    text = _read_decoded(path, encoding, expected="one JSON object per line")
    if text.lstrip(" \t\r\n").startswith("["):
        raise DataError(f"{path} holds a JSON array; expected JSON Lines (one object per line)")
    source = str(path)
    skips = _Skips(report)
    examples: list[Example] = []
    for line, raw in enumerate(_lines(text), 1):
        if not raw.strip():
            skips.add(source, "blank lines", line)
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}, line {line}, column {e.colno}: not valid JSON ({e.msg}); "
                "expected one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {line}: expected a JSON object, found {_json_type(record)}")
        body = record.get(text_field)
        if body is None:
            skips.add(source, f"records without {text_field!r}", line)
            continue
        if not isinstance(body, str):
            raise DataError(f"{path}, line {line}: field {text_field!r} must be a string, found {_json_type(body)}")
        label: str | None = None
        if label_field is not None:
            value = record.get(label_field)
            if value is None:
                skips.add(source, f"records without {label_field!r}", line)
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise DataError(
                    f"{path}, line {line}: field {label_field!r} must be a string or an integer, "
                    f"found {_json_type(value)}"
                )
            label = str(value).strip()
        body = body.strip()
        if not body:
            skips.add(source, f"records with an empty {text_field!r}", line)
        elif label == "":
            skips.add(source, f"records with an empty {label_field!r}", line)
        else:
            examples.append(Example(body, label, source, line))
    skips.flush()
    return examples


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", float: "a number",
             int: "an integer", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# -- one file or folder per class ---------------------------------------------

_TEXT_SUFFIXES = {"txt", "text"}  # dropped from a file name before it becomes a label


def _class_labels(paths: list[Path]) -> list[str]:
    """A label per class file, from its name.

    The name's dot-separated parts lose a final ``.txt``/``.text``, then the
    parts shared by every file at the start or the end: ``names/Russian.txt`` ->
    ``Russian``; ``rt-polarity.pos``, ``rt-polarity.neg`` -> ``pos``, ``neg``;
    ``train.pos.txt``, ``train.neg.txt`` -> ``pos``, ``neg``.
    """
    parts = []
    for p in paths:
        ps = p.name.split(".")
        if len(ps) > 1 and ps[-1].lower() in _TEXT_SUFFIXES:
            ps = ps[:-1]
        parts.append(ps)
    if len(parts) > 1:
        room = min(len(ps) for ps in parts) - 1  # never strip a name bare
        head = 0
        while head < room and len({ps[head] for ps in parts}) == 1:
            head += 1
        tail = 0
        while head + tail < room and len({ps[-1 - tail] for ps in parts}) == 1:
            tail += 1
        parts = [ps[head : len(ps) - tail] for ps in parts]
    return [".".join(ps) for ps in parts]


def read_files_per_class(
    paths: Sequence[str | os.PathLike[str]],
    *,
    encoding: str = "utf-8",
    report: list[str] | None = None,
) -> list[Example]:
    """Examples from one file per class, one example per line; the label comes from the file name.

    See ``_class_labels``: ``names/Russian.txt`` -> ``"Russian"``;
    ``rt-polarity.pos`` and ``rt-polarity.neg`` -> ``"pos"`` and ``"neg"``.  Two
    files that give the same label are a ``DataError``.  Blank lines are skipped
    and reported; text is stripped of surrounding whitespace.
    """
    files_ = [Path(p) for p in paths]
    if not files_:
        raise ConfigError("give at least one class file")
    labels = _class_labels(files_)
    seen: dict[str, Path] = {}
    for p, label in zip(files_, labels):
        if label in seen:
            raise DataError(f"{seen[label]} and {p} both give the label {label!r}; expected one file per class")
        seen[label] = p
    skips = _Skips(report)
    examples: list[Example] = []
    for p, label in zip(files_, labels):
        source = str(p)
        text = _read_decoded(p, encoding, expected="one example per line")
        for line, raw in enumerate(_lines(text), 1):
            body = raw.strip()
            if body:
                examples.append(Example(body, label, source, line))
            else:
                skips.add(source, "blank lines", line)
    skips.flush()
    return examples


def read_folder_per_class(
    folder: str | os.PathLike[str],
    *,
    encoding: str = "utf-8",
    report: list[str] | None = None,
) -> list[Example]:
    """Examples from a folder, one class per entry; the layout decides how.

    * Sub-folders (IMDB's ``pos/``, ``neg/``): each sub-folder is a class named
      after it and each file in it is one example.  Loose files beside the
      sub-folders and folders nested deeper are ignored, and reported.
    * Only files (``names/Russian.txt``, ...): each file is a class, one example
      per line, as ``read_files_per_class``.

    Hidden entries (``.DS_Store``) are ignored and reported.  Entries are read in
    sorted order.  An empty folder or class sub-folder is a ``DataError``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "not found" if not folder.exists() else "not a folder"
        raise DataError(f"{folder}: {what}; expected a folder with one file or sub-folder per class")
    skips = _Skips(report)
    entries = sorted(folder.iterdir())
    hidden = [e.name for e in entries if e.name.startswith(".")]
    if hidden:
        skips.note(f"{folder}: ignored hidden entries {', '.join(hidden)}")
    entries = [e for e in entries if not e.name.startswith(".")]
    if not entries:
        raise DataError(f"{folder} is empty: expected one file or one sub-folder per class")
    subdirs = [e for e in entries if e.is_dir()]
    if not subdirs:
        return read_files_per_class(entries, encoding=encoding, report=report)

    loose = [e.name for e in entries if not e.is_dir()]
    if loose:
        shown = ", ".join(loose[:_LISTED_LINES]) + (", ..." if len(loose) > _LISTED_LINES else "")
        skips.note(f"{folder}: one sub-folder per class, so ignored {len(loose)} loose files ({shown})")
    _check_encoding(encoding)
    examples: list[Example] = []
    for sub in subdirs:
        files_ = sorted(f for f in sub.iterdir() if not f.name.startswith("."))
        nested = [f.name for f in files_ if f.is_dir()]
        if nested:
            skips.note(f"{sub}: ignored {len(nested)} nested folders ({', '.join(nested[:_LISTED_LINES])})")
        files_ = [f for f in files_ if not f.is_dir()]
        if not files_:
            raise DataError(f"{sub} has no files: expected one example per file for class {sub.name!r}")
        empty: list[str] = []
        for f in files_:
            try:
                data = f.read_bytes()
            except OSError as e:
                raise DataError(f"cannot read {f}: {e.strerror or e}") from None
            body = _decode(data, f, encoding).removeprefix("\ufeff").strip()
            if body:
                examples.append(Example(body, sub.name, str(f), 1))
            else:
                empty.append(f.name)
        if empty:
            shown = ", ".join(empty[:_LISTED_LINES]) + (", ..." if len(empty) > _LISTED_LINES else "")
            skips.note(f"{sub}: skipped {len(empty)} empty files ({shown})")
    return examples


# -- one entry point ----------------------------------------------------------

FORMATS = ("auto", "tsv", "csv", "jsonl", "files", "folder")
_SUFFIX_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def _detect_format(paths: list[Path]) -> str:
    for p in paths:
        if not p.exists():
            raise DataError(f"file not found: {p}")
    if len(paths) > 1:
        # several tables of one kind are read one after the other; other files are one per class
        kinds = {_SUFFIX_FORMATS.get(p.suffix.lower()) for p in paths if not p.is_dir()}
        if len(kinds) == 1 and None not in kinds and not any(p.is_dir() for p in paths):
            return kinds.pop()  # type: ignore[return-value]
        return "files"
    p = paths[0]
    if p.is_dir():
        return "folder"
    fmt = _SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {p} from its suffix; pass --format "
            f"({', '.join(FORMATS[1:])}; train and evaluate both take it), or several files for one file per class"
        )
    return fmt


def read_classification(
    path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str = "auto",
    text_column: int | str | None = None,
    label_column: int | str | None = None,
    header: bool | None = None,
    encoding: str = "utf-8",
    labeled: bool = True,
) -> ClassificationData:
    """Read text-classification data in any supported layout.

    ``format``: ``tsv``/``csv`` (``read_delimited``), ``jsonl``
    (``read_jsonl``), ``files`` (one file per class), ``folder`` (a folder of
    class files or class sub-folders), or ``auto``: a folder -> ``folder``,
    one file by its suffix (``.tsv``, ``.csv``, ``.jsonl``/``.json``), several
    files -> ``files``, unless all have the same one of those suffixes.  Several
    files in a tsv/csv/jsonl format are read one after the other.

    Columns: for tsv/csv an index or header name (default text 0, label 1); for
    jsonl a field name (default ``"text"``, ``"label"``; an index there means the
    default field).  ``labeled=False`` reads text to classify: every label is None.

    What was skipped (blank lines, empty texts or labels) is in ``report``, one
    line per file and problem with counts and line numbers.  No example at all
    is a ``DataError`` that quotes the report.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ConfigError("give a file, a list of class files, or a folder")
    fmt = _detect_format(paths) if format == "auto" else format

    report: list[str] = []
    examples: list[Example] = []
    if fmt in ("tsv", "csv"):
        text_col = 0 if text_column is None else text_column
        label_col = (1 if label_column is None else label_column) if labeled else None
        for p in paths:
            examples += read_delimited(
                p, text_column=text_col, label_column=label_col, delimiter="\t" if fmt == "tsv" else ",",
                header=header, encoding=encoding, report=report,
            )
    elif fmt == "jsonl":
        text_field = text_column if isinstance(text_column, str) else "text"
        label_field = (label_column if isinstance(label_column, str) else "label") if labeled else None
        for p in paths:
            examples += read_jsonl(p, text_field=text_field, label_field=label_field, encoding=encoding,
                                   report=report)
    elif fmt == "files":
        examples = read_files_per_class(paths, encoding=encoding, report=report)
    else:
        if len(paths) != 1:
            raise ConfigError(f"format 'folder' takes one folder, got {len(paths)} paths")
        examples = read_folder_per_class(paths[0], encoding=encoding, report=report)
    if not labeled and fmt in ("files", "folder"):
        examples = [replace(ex, label=None) for ex in examples]
    if not examples:
        where = ", ".join(str(p) for p in paths)
        why = "; ".join(report) if report else "nothing to read"
        raise DataError(f"{where}: no examples ({why})")
    return ClassificationData(examples, report)
