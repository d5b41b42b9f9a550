"""The BPE subword tokenizer: training, round trips, config round trip, registry."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("tokenizers")

from rnnkit.errors import ConfigError, DataError  # noqa: E402
from rnnkit.tokenizers import (  # noqa: E402
    TOKENIZERS,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    make_tokenizer,
    tokenizer_from_config,
)

TEXTS = [
    "The cat sat on the mat.",
    "The dog sat on the log!",
    "Cats and dogs, sitting together; the cats sat.",
    "Don't stop: the mat is flat.",
] * 5


@pytest.fixture(scope="module")
def bpe():
    tok = make_tokenizer("bpe", vocab_size=80)
    tok.train(TEXTS)
    return tok


def test_registered_and_needs_training():
    assert TOKENIZERS["bpe"] is BPETokenizer
    assert BPETokenizer.needs_training is True
    assert CharTokenizer.needs_training is False and WordTokenizer().needs_training is False
    assert isinstance(BPETokenizer(), Tokenizer)


def test_tokenize_subwords(bpe):
    tokens = bpe.tokenize("the cats sat.")
    assert all(isinstance(t, str) for t in tokens)
    assert tokens[-1] == "." and tokens[0].startswith("▁")
    assert "".join(tokens).replace("▁", " ").strip() == "the cats sat."
    assert len(set(bpe.tokenize(" ".join(TEXTS)))) <= 80


def test_round_trip_up_to_whitespace(bpe):
    for s in ["The cat sat on the mat.", "Don't  stop:\tthe dog,\nthe log!", "  cats sat  "]:
        assert bpe.detokenize(bpe.tokenize(s)) == " ".join(s.split())


def test_unseen_character_is_unk(bpe):
    assert "<unk>" in bpe.tokenize("the zebra")


def test_lower():
    tok = BPETokenizer(vocab_size=60, lower=True)
    tok.train(TEXTS)
    assert tok.detokenize(tok.tokenize("THE CAT sat")) == "the cat sat"


def test_config_round_trip(bpe):
    cfg = bpe.to_config()
    assert cfg["name"] == "bpe" and isinstance(cfg["model"], str)
    cfg = json.loads(json.dumps(cfg))  # as it would come back from a run folder
    rebuilt = tokenizer_from_config(cfg)
    assert isinstance(rebuilt, BPETokenizer) and rebuilt.trained
    for s in TEXTS[:4] + ["unseen words: zebra, quokka!"]:
        assert rebuilt.tokenize(s) == bpe.tokenize(s)
    assert rebuilt.to_config() == bpe.to_config()


def test_untrained_and_bad_config():
    tok = BPETokenizer()
    assert tok.to_config()["model"] is None
    with pytest.raises(ConfigError, match="not trained"):
        tok.tokenize("x")
    with pytest.raises(ConfigError, match="not a valid tokenizer JSON"):
        tokenizer_from_config({"name": "bpe", "model": "{not json"})
    with pytest.raises(ConfigError, match="vocab_size"):
        BPETokenizer(vocab_size=0)
    with pytest.raises(ConfigError, match="takes vocab_size, lower, min_frequency, model"):
        make_tokenizer("bpe", size=10)
    with pytest.raises(DataError, match="no training text"):
        BPETokenizer().train([])


def test_import_rnnkit_stays_light():
    code = "import sys, rnnkit, rnnkit.tokenizers, rnnkit.data; print('tokenizers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
