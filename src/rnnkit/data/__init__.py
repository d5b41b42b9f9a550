"""Readers: files on disk -> text, examples and tagged sentences.

Every reader reports a bad file as ``DataError`` naming the file, the line (and
column, where it helps) and what was expected.  The modules:

* ``_io``: reading bytes and decoding them, shared by every reader, and atomic writes;
* ``text``: plain text (language modelling) and the datasets bundled in ``rnnkit/bundled``;
* ``classification``: ``Example``s from TSV/CSV, JSON Lines, one file per class
  or one folder per class (``read_classification`` picks), with a report of
  what was skipped;
* ``splits``: stratified train/validation splits and k-fold;
* ``conll``: ``Sentence``s from CoNLL-U and CoNLL-2003-style files, tag
  scheme conversion, and writers for predictions;
* ``parallel``: sentence ``Pair``s from two aligned files or a TSV file,
  length filtering with a report, CMUdict pronunciations, and a fixed
  train/valid/test split.

A new reader reads through ``_io._read_decoded`` (or ``_read_bytes`` and
``_decode``) so its errors look the same.  Only stdlib here: ``import rnnkit``
must stay light.  Everything public is importable from ``rnnkit.data``.
"""
from __future__ import annotations

from rnnkit.data._io import _check_encoding, _decode, _lines, _read_bytes, _read_decoded  # noqa: F401
from rnnkit.data.classification import (
    FORMATS,
    ClassificationData,
    Example,
    read_classification,
    read_delimited,
    read_files_per_class,
    read_folder_per_class,
    read_jsonl,
)
from rnnkit.data.conll import (
    CONLLU_COLUMNS,
    SCHEMES,
    Sentence,
    bio_to_bioes,
    bioes_to_bio,
    iob1_to_bio,
    read_conll,
    read_conllu,
    read_tokens,
    write_conll,
    write_conllu,
)
from rnnkit.data.parallel import (
    LengthReport,
    Pair,
    drop_stress,
    filter_by_length,
    has_stress,
    read_cmudict,
    read_parallel,
    read_parallel_tsv,
    split_items,
)
from rnnkit.data.splits import stratified_kfold, stratified_split
from rnnkit.data.text import BUNDLED, bundled_path, read_text, split_lines, split_text

__all__ = [
    "BUNDLED",
    "CONLLU_COLUMNS",
    "FORMATS",
    "SCHEMES",
    "ClassificationData",
    "Example",
    "LengthReport",
    "Pair",
    "Sentence",
    "bio_to_bioes",
    "bioes_to_bio",
    "bundled_path",
    "drop_stress",
    "filter_by_length",
    "has_stress",
    "iob1_to_bio",
    "read_classification",
    "read_cmudict",
    "read_conll",
    "read_conllu",
    "read_delimited",
    "read_files_per_class",
    "read_folder_per_class",
    "read_jsonl",
    "read_parallel",
    "read_parallel_tsv",
    "read_text",
    "read_tokens",
    "split_items",
    "split_lines",
    "split_text",
    "stratified_kfold",
    "stratified_split",
    "write_conll",
    "write_conllu",
]
