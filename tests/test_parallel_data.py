"""Parallel text readers, length filtering, CMUdict and the fixed train/valid/test split."""
from __future__ import annotations


import pytest

from rnnkit.data import (
    LengthReport,
    Pair,
    filter_by_length,
    read_cmudict,
    read_parallel,
    read_parallel_tsv,
    split_items,
)
from rnnkit import datasets
from rnnkit.errors import ConfigError, DataError

CMUDICT = datasets.data_root() / "cmudict" / "cmudict.dict"  # where `rnnkit data get cmudict` puts it


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# -- two aligned files ----------------------------------------------------------


def test_read_parallel_round_trip(tmp_path):
    de = write(tmp_path / "train.de", "Ein Hund läuft.\r\n  Zwei Katzen schlafen.  \nHallo\n")
    en = write(tmp_path / "train.en", "A dog runs.\nTwo cats sleep.\n\tHello")  # no final newline
    pairs = read_parallel(de, en)
    assert [(p.src, p.tgt, p.line) for p in pairs] == [
        ("Ein Hund läuft.", "A dog runs.", 1),
        ("Zwei Katzen schlafen.", "Two cats sleep.", 2),
        ("Hallo", "Hello", 3),
    ]
    assert all(isinstance(p, Pair) and str(de) in p.source and str(en) in p.source for p in pairs)
    with pytest.raises(AttributeError):  # frozen
        pairs[0].src = "x"  # type: ignore[misc]


def test_read_parallel_different_line_counts(tmp_path):
    de = write(tmp_path / "train.de", "eins\nzwei\ndrei\nvier\n")
    en = write(tmp_path / "train.en", "one\ntwo\nthree\n")
    with pytest.raises(DataError) as e:
        read_parallel(de, en)
    msg = str(e.value)
    assert f"{de} has 4 lines" in msg and f"{en} has 3" in msg
    assert f"{de} is longer by 1 line" in msg
    assert f"line 4 of {de} has no partner in {en}" in msg
    # the other way round names the other file as the longer one
    with pytest.raises(DataError, match=r"train\.de has 4 lines.*train\.en is longer by 2 lines.*line 5 of"):
        read_parallel(de, write(tmp_path / "train.en", "1\n2\n3\n4\n5\n6\n"))


def test_read_parallel_trailing_blank_lines_hint(tmp_path):
    de = write(tmp_path / "a.de", "eins\nzwei\n\n\n")
    en = write(tmp_path / "a.en", "one\ntwo\n")
    with pytest.raises(DataError, match="extra lines are all blank"):
        read_parallel(de, en)


def test_read_parallel_empty_side_names_file_and_line(tmp_path):
    de = write(tmp_path / "train.de", "eins\n   \ndrei\n")
    en = write(tmp_path / "train.en", "one\nA dog is running through the snow near a red barn\nthree\n")
    with pytest.raises(DataError) as e:
        read_parallel(de, en)
    msg = str(e.value)
    assert f"{de}, line 2: empty source sentence (its partner in {en} line 2 is 'A dog is running" in msg
    assert "..." in msg  # the long partner is shortened
    # an empty target names the target file
    with pytest.raises(DataError, match=rf"{en.name}, line 3: empty target sentence \(its partner in .*'drei'\)"):
        read_parallel(write(tmp_path / "train.de", "eins\nzwei\ndrei\n"), write(tmp_path / "train.en", "1\n2\n \n"))


def test_read_parallel_many_empty_lines_listed_and_counted(tmp_path):
    src = [f"s{i}" for i in range(20)]
    tgt = [f"t{i}" for i in range(20)]
    for i in (1, 3, 5, 7, 9, 11, 13):
        tgt[i] = ""
    src[0] = tgt[0] = ""
    de = write(tmp_path / "x.de", "\n".join(src) + "\n")
    en = write(tmp_path / "x.en", "\n".join(tgt) + "\n")
    with pytest.raises(DataError) as e:
        read_parallel(de, en)
    msg = str(e.value)
    assert "8 of 20 lines have an empty side" in msg
    assert "line 1: blank on both sides" in msg
    assert "line 8:" in msg and "line 10:" not in msg  # five quoted (lines 1, 2, 4, 6, 8) ...
    assert "and 3 more" in msg  # ... and the rest counted


def test_read_parallel_bad_encoding_names_line(tmp_path):
    de = write(tmp_path / "train.de", "eins\nzwei\nMädchen\n", encoding="latin-1")
    en = write(tmp_path / "train.en", "one\ntwo\ngirl\n")
    with pytest.raises(DataError, match=rf"{de.name}, line 3, column 2: byte 0xe4"):
        read_parallel(de, en)
    assert read_parallel(de, en, encoding="latin-1")[2].src == "Mädchen"
    with pytest.raises(ConfigError):
        read_parallel(de, en, encoding="no-such-codec")


def test_read_parallel_missing_file(tmp_path):
    en = write(tmp_path / "train.en", "one\n")
    with pytest.raises(DataError, match="file not found"):
        read_parallel(tmp_path / "nope.de", en)


# -- one TSV file -----------------------------------------------------------------


def test_read_parallel_tsv_round_trip_and_columns(tmp_path):
    path = write(tmp_path / "deu.tsv", "Go.\tGeh.\tCC-BY\r\n Hi. \t Hallo! \tCC-BY\n")
    pairs = read_parallel_tsv(path)
    assert [(p.src, p.tgt, p.line, p.source) for p in pairs] == [
        ("Go.", "Geh.", 1, str(path)),
        ("Hi.", "Hallo!", 2, str(path)),
    ]
    swapped = read_parallel_tsv(path, src_column=1, tgt_column=0)
    assert (swapped[0].src, swapped[0].tgt) == ("Geh.", "Go.")


def test_read_parallel_tsv_header(tmp_path):
    path = write(tmp_path / "p.tsv", "en\tfr\ncat\tchat\ndog\tchien\n")
    pairs = read_parallel_tsv(path, header=True)
    assert [(p.src, p.tgt, p.line) for p in pairs] == [("cat", "chat", 2), ("dog", "chien", 3)]
    assert len(read_parallel_tsv(path)) == 3  # without header=True the header is a pair
    with pytest.raises(DataError, match="only the header"):
        read_parallel_tsv(write(tmp_path / "h.tsv", "en\tfr\n"), header=True)


def test_read_parallel_tsv_too_few_columns(tmp_path):
    path = write(tmp_path / "p.tsv", "cat\tchat\ndog chien\nbird\toiseau\n")
    with pytest.raises(DataError, match=r"p\.tsv, line 2: expected at least 2 tab-separated columns, found 1"):
        read_parallel_tsv(path)
    with pytest.raises(DataError, match=r"line 1: expected at least 3 .* found 2"):
        read_parallel_tsv(path, tgt_column=2)


def test_read_parallel_tsv_empty_sides(tmp_path):
    path = write(tmp_path / "p.tsv", "cat\tchat\n\tchien\nbird\t \n\n")
    with pytest.raises(DataError) as e:
        read_parallel_tsv(path)
    msg = str(e.value)
    assert "3 of 4 lines have an empty side" in msg
    assert f"{path}, line 2: empty source sentence in column 0" in msg
    assert f"{path}, line 3: empty target sentence in column 1" in msg
    assert f"{path}, line 4: blank line" in msg


def test_read_parallel_tsv_bad_columns(tmp_path):
    path = write(tmp_path / "p.tsv", "a\tb\n")
    with pytest.raises(ConfigError):
        read_parallel_tsv(path, src_column=-1)
    with pytest.raises(ConfigError):
        read_parallel_tsv(path, src_column=1, tgt_column=1)


# -- filtering by length -----------------------------------------------------------


def test_filter_by_length_counts_and_describe():
    src = [3, 60, 10, 51, 50, 70, 5]
    tgt = [4, 5, 55, 6, 50, 80, 5]
    kept, report = filter_by_length(src, tgt, max_src=50, max_tgt=50)
    assert kept == [0, 4, 6]  # a length equal to the limit is kept
    assert report == LengthReport(total=7, dropped=4, src_too_long=3, tgt_too_long=2, max_src=50, max_tgt=50)
    assert report.kept == 3
    assert report.describe() == (
        "dropped 4 of 7 pairs (57.14%): 3 with a source longer than 50 tokens, "
        "2 with a target longer than 50 tokens (1 too long on both sides)"
    )


def test_filter_by_length_describe_large_and_none_dropped():
    n = 29_000
    src = [10] * n
    tgt = [10] * n
    for i in range(9):
        src[i] = 51
    for i in range(100, 103):
        tgt[i] = 60
    kept, report = filter_by_length(src, tgt, 50, 50)
    assert len(kept) == n - 12 and 0 not in kept and 100 not in kept
    assert report.describe() == (
        "dropped 12 of 29,000 pairs (0.04%): 9 with a source longer than 50 tokens, "
        "3 with a target longer than 50 tokens"
    )
    kept, report = filter_by_length(src, tgt, None, None)
    assert kept == list(range(n))
    assert report.describe() == "kept all 29,000 pairs"
    kept, report = filter_by_length(src, tgt, None, 59)
    assert report.describe() == "dropped 3 of 29,000 pairs (0.01%): 3 with a target longer than 59 tokens"


def test_filter_by_length_bad_arguments():
    with pytest.raises(ConfigError):
        filter_by_length([1], [1], 0, None)
    with pytest.raises(ValueError):
        filter_by_length([1, 2], [1], None, None)


# -- CMUdict -----------------------------------------------------------------------

SAMPLE = """\
;;; a comment line as in older editions
a AH0
a(2) EY1
aalborg AO1 L B AO0 R G # place, danish
aalborg(2) AA1 L B AO0 R G
cat K AE1 T

zebra Z IY1 B R AH0
"""


def test_read_cmudict_sample(tmp_path):
    d = read_cmudict(write(tmp_path / "cmudict.dict", SAMPLE))
    assert list(d) == ["a", "aalborg", "cat", "zebra"]  # file order; variants join their word
    assert d["a"] == [["AH0"], ["EY1"]]
    assert d["aalborg"] == [["AO1", "L", "B", "AO0", "R", "G"], ["AA1", "L", "B", "AO0", "R", "G"]]
    assert d["cat"] == [["K", "AE1", "T"]]
    assert sum(len(v) for v in d.values()) == 6


def test_read_cmudict_malformed_line(tmp_path):
    path = write(tmp_path / "bad.dict", "cat K AE1 T\ndog\nzebra Z IY1 B R AH0\n")
    with pytest.raises(DataError, match=r"bad\.dict, line 2: 'dog' has no phones"):
        read_cmudict(path)
    # phones only a comment: still no phones
    with pytest.raises(DataError, match=r"line 1: 'dog\(2\)' has no phones"):
        read_cmudict(write(tmp_path / "bad2.dict", "dog(2) # nothing\n"))
    # a comment that lost its "#" is not a phone
    with pytest.raises(DataError, match=r"line 1: 'place,' is not an ARPAbet phone"):
        read_cmudict(write(tmp_path / "bad3.dict", "aalen AE1 L AH0 N place, german\n"))


@pytest.mark.skipif(not CMUDICT.exists(), reason=f"{CMUDICT} not present")
def test_read_cmudict_full():
    d = read_cmudict(CMUDICT)
    assert len(d) == 126_052
    assert sum(len(v) for v in d.values()) == 135_166
    assert d["aalborg"][0] == ["AO1", "L", "B", "AO0", "R", "G"]


# -- split_items ---------------------------------------------------------------------


def test_split_items_sizes_disjoint_covering_deterministic():
    items = [f"item{i}" for i in range(1000)]
    train, valid, test = split_items(items, seed=3)
    assert (len(train), len(valid), len(test)) == (900, 50, 50)
    assert sorted(train + valid + test) == sorted(items)  # covering and disjoint
    assert not set(train) & set(valid) and not set(train) & set(test) and not set(valid) & set(test)
    assert split_items(items, seed=3) == (train, valid, test)
    assert split_items(items, seed=4) != (train, valid, test)
    assert items == [f"item{i}" for i in range(1000)]  # the input is not shuffled in place


def test_split_items_rounding():
    items = list(range(29))
    train, valid, test = split_items(items, (0.8, 0.1, 0.1), seed=0)
    assert (len(valid), len(test), len(train)) == (round(2.9), round(2.9), 29 - 6)
    train, valid, test = split_items(list(range(3)), (0.0, 0.5, 0.5))
    assert (len(train), len(valid), len(test)) == (0, 2, 1)  # test gets at most what is left


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.9, 0.2, 0.1), (1.1, -0.05, -0.05), (0.9, "0.05", 0.05)])
def test_split_items_bad_fractions(fractions):
    with pytest.raises(ConfigError):
        split_items(list(range(10)), fractions)
