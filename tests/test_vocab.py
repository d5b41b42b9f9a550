"""Vocab: build order and cuts, encode/decode, errors, JSON round trip."""
from __future__ import annotations

import json

import pytest

from rnnkit.errors import ConfigError, DataError
from rnnkit.vocab import Vocab

SEQS = [["b", "a", "c", "a"], ["c", "d", "a"], ["e"]]  # a:3 c:2 b:1 d:1 e:1


def test_build_orders_specials_then_count_then_token():
    v = Vocab.build(SEQS, specials=["<pad>", "<unk>"])
    assert v.tokens == ["<pad>", "<unk>", "a", "c", "b", "d", "e"]
    assert v.num_dropped_types == 0 and v.num_dropped_tokens == 0


def test_build_ties_do_not_depend_on_input_order():
    forward = Vocab.build([["z", "y", "x"]])
    backward = Vocab.build([["x", "y", "z"]])
    assert forward.tokens == backward.tokens == ["x", "y", "z"]


def test_build_min_freq_reports_cut():
    v = Vocab.build(SEQS, min_freq=2)
    assert v.tokens == ["a", "c"]
    assert v.num_dropped_types == 3  # b, d, e
    assert v.num_dropped_tokens == 3


def test_build_max_size_counts_non_specials_only():
    v = Vocab.build(SEQS, specials=["<pad>"], max_size=3)
    assert v.tokens == ["<pad>", "a", "c", "b"]
    assert v.num_dropped_types == 2 and v.num_dropped_tokens == 2


def test_build_specials_in_data_are_not_duplicated_and_unk_is_added():
    v = Vocab.build([["<pad>", "a", "<pad>"]], specials=["<pad>"], unk="<unk>")
    assert v.tokens == ["<pad>", "<unk>", "a"]
    assert v.unk == "<unk>" and v.unk_id == 1 and v.pad_id == 0


@pytest.mark.parametrize("kwargs", [{"min_freq": 0}, {"max_size": -1}, {"specials": ["x", "x"]}])
def test_build_rejects_bad_options(kwargs):
    with pytest.raises(ConfigError):
        Vocab.build(SEQS, **kwargs)


def test_lookup_and_special_ids():
    v = Vocab(["<pad>", "<bos>", "<eos>", "a", "b"])
    assert len(v) == 5 and "a" in v and "z" not in v
    assert v["b"] == 4 and v.token(3) == "a"
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, None, 1, 2)
    assert v.id_of("<eos>") == 2 and v.id_of("nope") is None
    with pytest.raises(KeyError):
        v["z"]
    with pytest.raises(IndexError):
        v.token(5)
    with pytest.raises(IndexError):
        v.token(-1)


def test_constructor_rejects_duplicates_and_missing_unk():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab(["a", "a"])
    with pytest.raises(ValueError, match="unk"):
        Vocab(["a"], unk="<unk>")


def test_encode_decode_round_trip():
    v = Vocab.build(SEQS)
    for seq in SEQS:
        assert v.decode(v.encode(seq)) == seq


def test_encode_maps_unknown_to_unk():
    v = Vocab(["<unk>", "a"], unk="<unk>")
    assert v.encode(["a", "zz", "a"]) == [1, 0, 1]
    assert v["zz"] == 0


def test_encode_without_unk_names_unknown_tokens():
    v = Vocab(["a", "b"])
    with pytest.raises(DataError) as info:
        v.encode(["a", "x", "y", "x"])
    msg = str(info.value)
    assert "'x'" in msg and "'y'" in msg and "none of them" in msg


def test_encode_without_unk_lists_at_most_ten():
    v = Vocab(["a"])
    unknown = [f"t{i:02d}" for i in range(12)]
    with pytest.raises(DataError) as info:
        v.encode(unknown)
    msg = str(info.value)
    assert "'t09'" in msg and "'t10'" not in msg and "2 more" in msg


def test_oov_rate_hand_case():
    v = Vocab(["a", "b"])
    assert v.oov_rate([["a", "x"], ["b", "b", "y", "z"]]) == pytest.approx(3 / 6)
    assert v.oov_rate([]) == 0.0


def test_save_load_equal_and_json_content(tmp_path):
    v = Vocab.build([["é", "中", "a", "a"]], specials=["<pad>"], unk="<unk>")
    path = tmp_path / "vocab.json"
    v.save(path)
    loaded = Vocab.load(path)
    assert loaded == v and loaded.unk == "<unk>"
    raw = path.read_text(encoding="utf-8")
    assert "é" in raw and "中" in raw  # ensure_ascii=False
    assert json.loads(raw) == {"version": 1, "tokens": ["<pad>", "<unk>", "a", "é", "中"], "unk": "<unk>"}
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temp file left behind


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "vocab.json"
    Vocab(["a"]).save(path)
    Vocab(["b", "c"]).save(path)
    assert Vocab.load(path) == Vocab(["b", "c"])


def test_equality_considers_tokens_and_unk():
    assert Vocab(["a", "b"]) == Vocab(["a", "b"])
    assert Vocab(["a", "b"]) != Vocab(["b", "a"])
    assert Vocab(["<unk>"], unk="<unk>") != Vocab(["<unk>"])


def test_to_dict_from_dict_round_trip():
    v = Vocab(["<unk>", "x"], unk="<unk>")
    assert Vocab.from_dict(v.to_dict()) == v


def test_load_malformed_json_names_path(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"tokens": ["a", ', encoding="utf-8")
    with pytest.raises(DataError, match="bad.json"):
        Vocab.load(path)


@pytest.mark.parametrize("content", ['["a"]', '{"tokens": "ab"}', '{"tokens": ["a", "a"]}'])
def test_load_wrong_structure_names_path(tmp_path, content):
    path = tmp_path / "odd.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="odd.json"):
        Vocab.load(path)


def test_load_missing_file_names_path(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(DataError, match="not found.*absent.json"):
        Vocab.load(path)
