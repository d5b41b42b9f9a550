"""Pretrained vectors: GloVe and word2vec text formats, coverage, init, errors."""
from __future__ import annotations

import pytest
import torch

from rnnkit.embeddings import load_vectors
from rnnkit.errors import DataError

GLOVE = "the 0.1 0.2 0.3\ncat 1.0 -1.0 0.5\nParis 2.0 2.0 2.0\nzebra 9 9 9\n"
VOCAB = ["<pad>", "<unk>", "the", "cat", "paris", "dog"]


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_glove(tmp_path):
    p = write(tmp_path / "glove.txt", GLOVE)
    m, found = load_vectors(p, VOCAB, generator=gen())
    assert m.shape == (6, 3) and m.dtype == torch.float32
    assert found == 3  # the, cat, and paris through the case fallback
    assert torch.equal(m[0], torch.zeros(3))  # <pad>
    assert torch.allclose(m[2], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(m[3], torch.tensor([1.0, -1.0, 0.5]))
    assert torch.allclose(m[4], torch.tensor([2.0, 2.0, 2.0]))
    assert not torch.equal(m[5], torch.zeros(3))  # dog: random


def test_word2vec_header(tmp_path):
    p = write(tmp_path / "w2v.vec", "4 3\n" + GLOVE.replace("\n", " \n"))  # fastText leaves a trailing space
    m, found = load_vectors(p, VOCAB, generator=gen())
    assert m.shape == (6, 3) and found == 3
    assert torch.allclose(m[3], torch.tensor([1.0, -1.0, 0.5]))


def test_coverage_without_lower_fallback(tmp_path):
    p = write(tmp_path / "glove.txt", GLOVE)
    _, found = load_vectors(p, VOCAB, lower_fallback=False, generator=gen())
    assert found / len(VOCAB) == pytest.approx(2 / 6)


def test_exact_match_beats_case_match(tmp_path):
    p = write(tmp_path / "glove.txt", "The 5 5\nthe 1 1\n")
    m, found = load_vectors(p, ["the", "The", "THE"], generator=gen())
    assert found == 3
    assert m.tolist() == [[1.0, 1.0], [5.0, 5.0], [5.0, 5.0]]  # THE: first case-insensitive match


def test_random_init_seeded_and_std(tmp_path):
    p = write(tmp_path / "glove.txt", GLOVE)
    a, _ = load_vectors(p, VOCAB, generator=gen(1))
    b, _ = load_vectors(p, VOCAB, generator=gen(1))
    assert torch.equal(a, b)
    vocab = ["the"] + [f"w{i}" for i in range(2000)]
    m, found = load_vectors(p, vocab, generator=gen(), std=0.1)
    assert found == 1 and m[1:].std().item() == pytest.approx(0.1, rel=0.05)


def test_word_with_spaces(tmp_path):
    p = write(tmp_path / "glove.txt", "a 1 2\n. . . 3 4\n")
    m, found = load_vectors(p, [". . ."], generator=gen())
    assert found == 1 and m.tolist() == [[3.0, 4.0]]


def test_dimension_error(tmp_path):
    rows = [f"w{i} 1 2 3" for i in range(6)] + ["bad 1 2"]
    p = write(tmp_path / "glove.txt", "\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:
        load_vectors(p, ["w0"], generator=gen())
    assert str(info.value) == f"{p}, line 7: expected 3 values, found 2"


def test_header_dimension_and_count_errors(tmp_path):
    p = write(tmp_path / "w2v.txt", "2 4\nthe 1 2 3\n")
    with pytest.raises(DataError, match=r"line 2: expected 4 values, found 3"):
        load_vectors(p, ["the"])
    p = write(tmp_path / "short.txt", "3 2\nthe 1 2\ncat 3 4\n")
    with pytest.raises(DataError, match="declares 3 vectors, found 2"):
        load_vectors(p, ["the"])


def test_bad_number_and_encoding(tmp_path):
    p = write(tmp_path / "glove.txt", "the 1 x\n")
    with pytest.raises(DataError, match=r"line 1: value 'x' is not a number"):
        load_vectors(p, ["the"])
    p = write(tmp_path / "latin.txt", "the 1 2\ncafé 3 4\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"line 2, column 4: byte 0xe9 is not valid utf-8.*--encoding"):
        load_vectors(p, ["café"])
    m, found = load_vectors(p, ["café"], encoding="latin-1")
    assert found == 1 and m.tolist() == [[3.0, 4.0]]


def test_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_vectors(tmp_path / "nope.txt", ["a"])
    with pytest.raises(DataError, match="is empty"):
        load_vectors(write(tmp_path / "e.txt", ""), ["a"])
    with pytest.raises(DataError, match="no vectors"):
        load_vectors(write(tmp_path / "h.txt", "\n\n"), ["a"])
