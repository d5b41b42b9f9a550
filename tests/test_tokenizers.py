"""Tokenizers: round trips, options, registry and configs."""
from __future__ import annotations

import pytest

from rnnkit.errors import ConfigError
from rnnkit.tokenizers import (
    TOKENIZERS,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    make_tokenizer,
    tokenizer_from_config,
)


def test_char_round_trip_keeps_every_character():
    text = "Hi, you!\nSecond line\r\n\ttab é 中"
    tok = CharTokenizer()
    tokens = tok.tokenize(text)
    assert tokens[:3] == ["H", "i", ","] and "\n" in tokens and "\r" in tokens
    assert len(tokens) == len(text)
    assert tok.detokenize(tokens) == text


def test_word_splits_on_whitespace_and_joins_with_spaces():
    tok = WordTokenizer()
    assert tok.tokenize("  The cat\n sat.\t") == ["The", "cat", "sat."]
    assert tok.detokenize(["The", "cat", "sat."]) == "The cat sat."
    text = "a b c"
    assert tok.detokenize(tok.tokenize(text)) == text


def test_word_lower():
    assert WordTokenizer(lower=True).tokenize("The CAT Sat") == ["the", "cat", "sat"]


def test_word_pattern():
    tok = WordTokenizer(pattern=r"\w+|[^\w\s]")
    assert tok.tokenize("Hello, world!") == ["Hello", ",", "world", "!"]


def test_word_pattern_with_group_yields_whole_matches():
    tok = WordTokenizer(pattern=r"(a)b")
    assert tok.tokenize("ab xab") == ["ab", "ab"]


def test_word_bad_pattern_is_config_error():
    with pytest.raises(ConfigError, match="pattern"):
        WordTokenizer(pattern="(")


def test_protocol_is_satisfied():
    assert isinstance(CharTokenizer(), Tokenizer)
    assert isinstance(WordTokenizer(), Tokenizer)


@pytest.mark.parametrize("tok", [CharTokenizer(), WordTokenizer(), WordTokenizer(lower=True, pattern=r"\w+")])
def test_config_round_trip(tok):
    cfg = tok.to_config()
    assert cfg["name"] in TOKENIZERS
    rebuilt = tokenizer_from_config(cfg)
    assert rebuilt == tok
    assert rebuilt.tokenize("Ab cD\nE") == tok.tokenize("Ab cD\nE")


def test_make_tokenizer_by_name():
    assert make_tokenizer("char") == CharTokenizer()
    assert make_tokenizer("word", lower=True) == WordTokenizer(lower=True)


def test_make_tokenizer_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError) as info:
        make_tokenizer("bytes")
    msg = str(info.value)
    assert "'bytes'" in msg and "char" in msg and "word" in msg


def test_make_tokenizer_unknown_option():
    with pytest.raises(ConfigError, match="lower"):
        make_tokenizer("word", lowercase=True)
    with pytest.raises(ConfigError):
        make_tokenizer("char", lower=True)


def test_tokenizer_from_config_needs_name():
    with pytest.raises(ConfigError, match="name"):
        tokenizer_from_config({"lower": True})
