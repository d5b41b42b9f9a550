"""Sequence-tagging data: CoNLL-U and CoNLL-2003 readers, tag schemes, writers."""
from __future__ import annotations

import io

import pytest

from rnnkit.data import (
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
from rnnkit import datasets
from rnnkit.errors import ConfigError, DataError

SHARED = datasets.data_root()  # the full datasets, where `rnnkit data get` puts them (nothing is fetched here)
EWT_DEV = SHARED / "ud_english_ewt" / "en_ewt-ud-dev.conllu"
CONLL_TESTA = SHARED / "conll2003" / "eng.testa"


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def row(i, form, upos="X", xpos="_"):
    return "\t".join([str(i), form, form.lower(), upos, xpos, "_", "0", "root", "_", "_"])


# A sentence with comments, a multi-word range and an empty node, then a plain one.
CONLLU = "\n".join([
    "# sent_id = 1",
    "# text = I can't go",
    row(1, "I", "PRON", "PRP"),
    row(2, "ca", "AUX", "MD"),
    "3-4\tcan't\t_\t_\t_\t_\t_\t_\t_\t_",
    row(3, "n't", "PART", "RB"),
    row(4, "go", "VERB", "VB"),
    "4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t2:conj\t_",
    "",
    "# sent_id = 2",
    row(1, "Yes", "INTJ", "UH"),
    "",
    "",
])


# -- CoNLL-U ------------------------------------------------------------------


def test_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    p = write(tmp_path / "a.conllu", CONLLU)
    first, second = read_conllu(p)
    assert first.tokens == ["I", "ca", "n't", "go"]
    assert first.tags == ["PRON", "AUX", "PART", "VERB"]
    assert (first.source, first.line) == (str(p), 3)
    assert first.comments == ["# sent_id = 1", "# text = I can't go"]
    assert len(first.rows) == 8 and first.word_rows == (2, 3, 5, 6)
    assert second == Sentence(["Yes"], ["INTJ"], str(p), 11, ("# sent_id = 2", row(1, "Yes", "INTJ", "UH")), (1,))


def test_conllu_xpos_column(tmp_path):
    p = write(tmp_path / "a.conllu", CONLLU)
    assert [s.tags for s in read_conllu(p, column="xpos")] == [["PRP", "MD", "RB", "VB"], ["UH"]]
    with pytest.raises(ConfigError, match="upos, xpos"):
        read_conllu(p, column="deprel")


def test_conllu_without_final_blank_line(tmp_path):
    p = write(tmp_path / "a.conllu", CONLLU.rstrip("\n"))
    assert [s.tokens for s in read_conllu(p)] == [["I", "ca", "n't", "go"], ["Yes"]]


@pytest.mark.parametrize(
    "lines, line, message",
    [
        ([row(1, "a"), "2\tb\tb\tX"], 2, "expected 10 tab-separated columns, found 4"),
        ([row(1, "a"), row(2, "b").replace("\t", " ")], 2, "found 1 (are the columns separated by spaces?)"),
        ([row(1, "a"), row("two", "b")], 2, "ID 'two' is not an integer"),
        ([row(1, "a"), row(1, "b")], 2, "expected word ID 2, found 1 (is a blank line missing"),
        ([row(1, "a"), "", "# sent_id = 2", "1-2\tab\t_\t_\t_\t_\t_\t_\t_\t_", ""], 3, "sentence has no tokens"),
        ([row(1, "a"), "", "# a comment at the end"], 3, "sentence has no tokens"),
    ],
)
def test_conllu_errors_name_file_and_line(tmp_path, lines, line, message):
    p = write(tmp_path / "bad.conllu", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        read_conllu(p)
    assert f"{p}, line {line}: " in str(e.value)
    assert message in str(e.value)


def test_conllu_no_sentences(tmp_path):
    with pytest.raises(DataError, match="no sentences"):
        read_conllu(write(tmp_path / "blank.conllu", "\n\n"))
    with pytest.raises(DataError, match="is empty"):
        read_conllu(write(tmp_path / "empty.conllu", ""))


def test_write_conllu_round_trip_is_byte_identical(tmp_path):
    p = write(tmp_path / "a.conllu", CONLLU.rstrip("\n") + "\n\n")
    sents = read_conllu(p)
    out = tmp_path / "out.conllu"
    write_conllu(sents, [s.tags for s in sents], out)
    assert out.read_bytes() == p.read_bytes()
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_write_conllu_replaces_only_the_column(tmp_path):
    sents = read_conllu(write(tmp_path / "a.conllu", CONLLU))
    buf = io.StringIO()
    write_conllu(sents, [["A", "B", "C", "D"], ["E"]], buf, column="xpos")
    lines = buf.getvalue().split("\n")
    assert lines[:3] == ["# sent_id = 1", "# text = I can't go", row(1, "I", "PRON", "A")]
    assert lines[4] == "3-4\tcan't\t_\t_\t_\t_\t_\t_\t_\t_"  # range row untouched
    assert lines[7] == "4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t2:conj\t_"  # empty node untouched
    p2 = write(tmp_path / "b.conllu", buf.getvalue())
    assert [s.tags for s in read_conllu(p2, column="xpos")] == [["A", "B", "C", "D"], ["E"]]
    assert [s.tags for s in read_conllu(p2)] == [s.tags for s in sents]


def test_write_conllu_rejects_bad_predictions(tmp_path):
    sents = read_conllu(write(tmp_path / "a.conllu", CONLLU))
    with pytest.raises(ValueError, match="sentence 1 has 1 tokens but 2 predicted tags"):
        write_conllu(sents, [["A"] * 4, ["E", "F"]], io.StringIO())
    with pytest.raises(ValueError, match="predictions for 1 sentences, expected 2"):
        write_conllu(sents, [["A"] * 4], io.StringIO())
    with pytest.raises(ValueError, match="cannot go in a CoNLL-U column"):
        write_conllu(sents, [["A", "B", "C\tD", "E"], ["F"]], io.StringIO())
    plain = [Sentence(["a"], ["O"], "x", 1)]
    with pytest.raises(ValueError, match="not read from CoNLL-U"):
        write_conllu(plain, [["O"]], io.StringIO())


# -- CoNLL-2003 style ---------------------------------------------------------

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC

Peter NNP B-NP I-PER
Blackburn NNP B-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP I-LOC
"""


def test_conll_reads_last_column_and_skips_docstart(tmp_path):
    p = write(tmp_path / "eng.train", CONLL)
    sents = read_conll(p)
    assert [s.tokens for s in sents] == [["EU", "rejects", "German"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert [s.tags for s in sents] == [["I-ORG", "O", "I-MISC"], ["I-PER", "I-PER"], ["I-LOC"]]
    assert [s.line for s in sents] == [3, 7, 12]
    assert read_conll(p, column=1)[0].tags == ["NNP", "VBZ", "JJ"]
    assert read_conll(p, column=None)[0].tags is None


def test_conll_docstart_kept_as_token_when_asked(tmp_path):
    sents = read_conll(write(tmp_path / "a.txt", CONLL), docstart=False)
    assert sents[0].tokens == ["-DOCSTART-"]
    assert len(sents) == 5


def test_conll_tabs_and_no_final_newline(tmp_path):
    p = write(tmp_path / "a.tsv", "EU\tI-ORG\nrejects\tO\n\n\n\nit\tO")
    assert [(s.tokens, s.tags, s.line) for s in read_conll(p)] == [
        (["EU", "rejects"], ["I-ORG", "O"], 1),
        (["it"], ["O"], 6),
    ]


def test_conll_scheme_conversion(tmp_path):
    p = write(tmp_path / "a.txt", "a I-PER\nb I-PER\nc B-PER\nd O\ne I-LOC\n")
    assert read_conll(p)[0].tags == ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]
    assert read_conll(p, scheme="bio")[0].tags == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert read_conll(p, scheme="bioes")[0].tags == ["B-PER", "E-PER", "S-PER", "O", "S-LOC"]
    with pytest.raises(ConfigError, match="unknown tag scheme 'iob'"):
        read_conll(p, scheme="iob")


@pytest.mark.parametrize(
    "text, kwargs, line, message",
    [
        ("EU NNP I-ORG\nrejects O\n", {}, 2, "expected 3 columns as on line 1, found 2"),
        ("a O\n\nb O\nc S-PER\n", {"scheme": "bio"}, 4, "tag 'S-PER' is not IOB1 or BIO"),
        ("EU\nrejects\n", {}, 1, "expected a token and a tag column, found 1 column"),
    ],
)
def test_conll_errors_name_file_and_line(tmp_path, text, kwargs, line, message):
    p = write(tmp_path / "bad.txt", text)
    with pytest.raises(DataError) as e:
        read_conll(p, **kwargs)
    assert f"{p}, line {line}: " in str(e.value)
    assert message in str(e.value)


def test_conll_bad_column_and_empty_files(tmp_path):
    p = write(tmp_path / "a.txt", "EU NNP I-ORG\n")
    with pytest.raises(ConfigError, match="tag column 3 does not exist"):
        read_conll(p, column=3)
    with pytest.raises(ConfigError, match="is the token column"):
        read_conll(p, column=-3)
    assert read_conll(write(tmp_path / "t.txt", "EU\nrejects\n"), column=None)[0].tokens == ["EU", "rejects"]
    with pytest.raises(DataError, match="no sentences"):
        read_conll(write(tmp_path / "d.txt", "-DOCSTART- O\n\n"))


def test_write_conll_for_conlleval(tmp_path):
    sents = read_conll(write(tmp_path / "a.txt", CONLL), scheme="bio")
    pred = [["B-ORG", "O", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    out = tmp_path / "pred.txt"
    write_conll(sents, out, pred)
    assert out.read_text().split("\n")[:5] == ["EU B-ORG B-ORG", "rejects O O", "German B-MISC O", "", "Peter B-PER B-PER"]
    assert out.read_text().endswith("BRUSSELS B-LOC B-LOC\n\n")
    # gold and predicted columns read back
    assert [s.tags for s in read_conll(out, column=1)] == [s.tags for s in sents]
    assert [s.tags for s in read_conll(out)] == pred


def test_write_conll_tab_unlabelled_and_bad_input(tmp_path):
    sents = [Sentence(["New York", "is"], None, "x", 1)]
    buf = io.StringIO()
    write_conll(sents, buf, [["B-LOC", "O"]], delimiter="\t")
    assert buf.getvalue() == "New_York\tB-LOC\nis\tO\n\n"
    with pytest.raises(ValueError, match="2 tokens but 1 predicted"):
        write_conll(sents, io.StringIO(), [["O"]])
    with pytest.raises(ValueError, match="empty or holds whitespace"):
        write_conll(sents, io.StringIO(), [["B LOC", "O"]])


def test_read_tokens():
    assert read_tokens("The cat  sat .\n\n  \nDogs\tbark\r\n") == [["The", "cat", "sat", "."], ["Dogs", "bark"]]
    assert read_tokens("") == []


# -- tag schemes --------------------------------------------------------------


def test_iob1_to_bio_and_bioes_by_hand():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]
    bio = ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    bioes = ["B-PER", "E-PER", "S-PER", "O", "S-LOC"]
    assert iob1_to_bio(iob1) == bio
    assert bio_to_bioes(bio) == bioes
    assert bioes_to_bio(bioes) == bio


def test_iob1_to_bio_is_idempotent_on_bio():
    bio = ["B-ORG", "I-ORG", "I-ORG", "B-ORG", "O", "B-MISC", "B-PER", "I-PER", "O"]
    assert iob1_to_bio(bio) == bio
    assert iob1_to_bio(iob1_to_bio(["I-A", "I-B", "O", "I-B", "I-B"])) == ["B-A", "B-B", "O", "B-B", "I-B"]
    assert iob1_to_bio([]) == []


def test_bioes_round_trip():
    bio = ["B-A", "I-A", "I-A", "B-A", "B-B", "O", "B-C", "I-C", "O", "B-A"]
    bioes = bio_to_bioes(bio)
    assert bioes == ["B-A", "I-A", "E-A", "S-A", "S-B", "O", "B-C", "E-C", "O", "S-A"]
    assert bioes_to_bio(bioes) == bio
    assert bio_to_bioes(bioes_to_bio(bioes)) == bioes
    assert bio_to_bioes(["I-X", "I-X", "I-Y"]) == ["B-X", "E-X", "S-Y"]  # IOB1 starts read as B-


def test_scheme_functions_reject_bad_tags():
    with pytest.raises(ValueError, match=r"tag 1 \('PER'\)"):
        iob1_to_bio(["O", "PER"])
    with pytest.raises(ValueError, match=r"tag 0 \('S-PER'\)"):
        bio_to_bioes(["S-PER"])
    with pytest.raises(ValueError, match=r"tag 0 \('X-PER'\)"):
        bioes_to_bio(["X-PER"])


# -- the real files, when present ---------------------------------------------


def test_ud_english_ewt_dev():
    if not EWT_DEV.is_file():
        pytest.skip(f"{EWT_DEV} not present")
    sents = read_conllu(EWT_DEV)
    assert sents[0].tokens == ["From", "the", "AP", "comes", "this", "story", ":"]
    assert sents[0].tags == ["ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT"]
    assert sents[0].line == 5
    assert read_conllu(EWT_DEV, column="xpos")[0].tags == ["IN", "DT", "NNP", "VBZ", "DT", "NN", ":"]
    buf = io.StringIO()
    write_conllu(sents, [s.tags for s in sents], buf)
    assert buf.getvalue() == EWT_DEV.read_text(encoding="utf-8")


def test_conll2003_testa():
    if not CONLL_TESTA.is_file():
        pytest.skip(f"{CONLL_TESTA} not present")
    raw = read_conll(CONLL_TESTA)
    sents = read_conll(CONLL_TESTA, scheme="bioes")
    assert len(sents) == 3250  # the standard count for the development set
    assert sents[0].tokens[:4] == ["CRICKET", "-", "LEICESTERSHIRE", "TAKE"]
    assert raw[0].tags[:4] == ["O", "O", "I-ORG", "O"]
    assert sents[0].tags[:4] == ["O", "O", "S-ORG", "O"]
    assert (sents[0].line, sents[1].tokens, sents[1].line) == (3, ["LONDON", "1996-08-30"], 15)
    assert all(bioes_to_bio(s.tags) == iob1_to_bio(r.tags) for s, r in zip(sents, raw))
