"""Readers: plain text errors and decoding, splitting, bundled data."""
from __future__ import annotations

import pytest

from rnnkit.data import BUNDLED, bundled_path, read_text, split_text
from rnnkit.errors import ConfigError, DataError


def test_read_text_utf8(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("héllo\nwörld\n".encode())
    assert read_text(path) == "héllo\nwörld\n"
    assert read_text(str(path)) == "héllo\nwörld\n"


def test_read_text_keeps_crlf(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"one\r\ntwo\r\n")
    assert read_text(path) == "one\r\ntwo\r\n"


def test_read_text_missing(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(DataError) as info:
        read_text(path)
    assert str(info.value) == f"file not found: {path}"


def test_read_text_empty(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(DataError) as info:
        read_text(path)
    assert str(info.value) == f"{path} is empty: expected text"


def test_read_text_directory(tmp_path):
    with pytest.raises(DataError, match="directory"):
        read_text(tmp_path)


def test_read_text_latin1_as_utf8_names_line_column_byte(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\nsecond\nab café x\n".encode("latin-1"))  # é = 0xe9, line 3 col 7
    with pytest.raises(DataError) as info:
        read_text(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}, line 3, column 7: byte 0xe9 is not valid utf-8")
    assert "--encoding" in msg and "latin-1" in msg
    assert read_text(path, encoding="latin-1") == "first line\nsecond\nab café x\n"


def test_read_text_column_counts_characters_not_bytes(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes("x\r\néé".encode() + b"\xff")  # two 2-byte characters before the bad byte
    with pytest.raises(DataError, match=r"line 2, column 3: byte 0xff"):
        read_text(path)


def test_read_text_truncated_sequence_names_bytes(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes("ok €".encode()[:-1])  # € is 0xe2 0x82 0xac, last byte cut off
    with pytest.raises(DataError, match=r"line 1, column 4: bytes 0xe2 0x82 are not valid utf-8"):
        read_text(path)


@pytest.mark.parametrize("encoding", ["no-such-codec", "base64"])
def test_read_text_unknown_encoding(tmp_path, encoding):
    path = tmp_path / "a.txt"
    path.write_text("a", encoding="utf-8")
    with pytest.raises(ConfigError, match=encoding):
        read_text(path, encoding=encoding)


def test_split_text_sizes():
    text = "abcdefghij" * 10
    train, valid = split_text(text, 0.1)
    assert (len(train), len(valid)) == (90, 10)
    assert train + valid == text and valid == text[-10:]
    assert split_text(text, 0) == (text, "")
    train, valid = split_text(text, 0.25)
    assert (len(train), len(valid)) == (75, 25)


@pytest.mark.parametrize("fraction", [-0.1, 1, 1.5, float("nan"), "0.1", True])
def test_split_text_rejects_bad_fraction(fraction):
    with pytest.raises(ConfigError):
        split_text("abcdefghij", fraction)


def test_split_text_rejects_empty_part():
    with pytest.raises(ConfigError, match="no validation"):
        split_text("abc", 0.1)


def test_bundled_path_exists():
    path = bundled_path("tinyshakespeare")
    assert path.is_file() and path.name == "tinyshakespeare.txt"
    assert read_text(path).startswith("First Citizen:")


def test_bundled_path_unknown_lists_names():
    with pytest.raises(ConfigError) as info:
        bundled_path("imdb")
    assert "'imdb'" in str(info.value)
    for name in BUNDLED:
        assert name in str(info.value)
