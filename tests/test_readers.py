"""Classification readers (TSV/CSV, JSONL, files and folders per class) and stratified splits."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from rnnkit.data import (
    ClassificationData,
    Example,
    read_classification,
    read_delimited,
    read_files_per_class,
    read_folder_per_class,
    read_jsonl,
    stratified_kfold,
    stratified_split,
)
from rnnkit.errors import ConfigError, DataError


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# -- delimited ----------------------------------------------------------------


def test_tsv_by_index(tmp_path):
    p = write(tmp_path / "d.tsv", "a fine film\tpos\nawful\tneg\n")
    assert read_delimited(p, text_column=0, label_column=1) == [
        Example("a fine film", "pos", str(p), 1),
        Example("awful", "neg", str(p), 2),
    ]


def test_tsv_header_by_name_detected(tmp_path):
    p = write(tmp_path / "sst.tsv", "sentence\tlabel\nit 's \"great\"\t1\n\nbad\t0\n")
    report: list[str] = []
    ex = read_delimited(p, text_column="sentence", label_column="label", report=report)
    # a quote is an ordinary character in TSV
    assert [(e.text, e.label, e.line) for e in ex] == [('it \'s "great"', "1", 2), ("bad", "0", 4)]
    assert report == [f"{p}: skipped 1 blank lines (line 3)"]


def test_tsv_header_with_indices(tmp_path):
    p = write(tmp_path / "d.tsv", "label\ttext\npos\tgood\n")
    ex = read_delimited(p, text_column=1, label_column=0, header=True)
    assert [(e.text, e.label, e.line) for e in ex] == [("good", "pos", 2)]


def test_an_unnamed_header_row_is_read_as_data_and_reported(tmp_path):
    p = write(tmp_path / "d.tsv", "text\tlabel\ngood\tpos\nbad\tneg\nfine\tpos\n")
    report: list[str] = []
    ex = read_delimited(p, text_column=0, label_column=1, report=report)
    assert [e.label for e in ex] == ["label", "pos", "neg", "pos"]  # nothing guessed away
    assert report == [f"{p}, line 1: its label 'label' occurs on no other row; if this line is a header, "
                      "pass header=True (--header) or name the columns"]
    # said once the header is known either way, or when the first label recurs
    assert read_delimited(p, text_column=0, label_column=1, header=True, report=(quiet := [])) and quiet == []
    q = write(tmp_path / "e.tsv", "good\tpos\nbad\tneg\nfine\tpos\n")
    assert read_delimited(q, text_column=0, label_column=1, report=(quiet := [])) and quiet == []


def test_csv_quoted_multiline(tmp_path):
    p = write(tmp_path / "d.csv", 'text,label\n"one, two\nthree",a\nfour,b\n')
    ex = read_delimited(p, text_column="text", label_column="label")
    assert [(e.text, e.label, e.line) for e in ex] == [("one, two\nthree", "a", 2), ("four", "b", 4)]


def test_csv_unclosed_quote(tmp_path):
    p = write(tmp_path / "d.csv", 'a,b\n"never closed,b\n')
    with pytest.raises(DataError, match=r"d\.csv, line 2: malformed row"):
        read_delimited(p, text_column=0, label_column=1)


def test_too_few_columns(tmp_path):
    p = write(tmp_path / "d.tsv", "good\tpos\nno label here\n")
    with pytest.raises(DataError) as info:
        read_delimited(p, text_column=0, label_column=1)
    msg = str(info.value)
    assert msg.startswith(f"{p}, line 2: expected at least 2 columns, found 1")
    assert "delimiter" in msg


def test_unknown_header_name(tmp_path):
    p = write(tmp_path / "d.tsv", "sentence\tlabel\nx\ty\n")
    with pytest.raises(DataError, match=r"line 1: no column named 'text'; the header has 'sentence', 'label'"):
        read_delimited(p, text_column="text", label_column="label")


def test_names_need_header(tmp_path):
    p = write(tmp_path / "d.tsv", "x\ty\n")
    with pytest.raises(ConfigError, match="header"):
        read_delimited(p, text_column="text", label_column=1, header=False)


def test_empty_text_and_label_reported(tmp_path):
    p = write(tmp_path / "d.tsv", "ok\tpos\n\tneg\nno label\t \nfine\tneg\n \t \n")
    report: list[str] = []
    ex = read_delimited(p, text_column=0, label_column=1, report=report)
    assert [e.line for e in ex] == [1, 4]
    assert report == [
        f"{p}: skipped 1 rows with an empty text (line 2)",
        f"{p}: skipped 1 rows with an empty label (line 3)",
        f"{p}: skipped 1 blank lines (line 5)",
    ]


def test_reader_without_report_warns(tmp_path):
    p = write(tmp_path / "d.tsv", "ok\tpos\n\n")
    with pytest.warns(UserWarning, match="skipped 1 blank lines"):
        read_delimited(p, text_column=0, label_column=1)


def test_unlabelled(tmp_path):
    p = write(tmp_path / "d.tsv", "just text\n")
    assert read_delimited(p, text_column=0, label_column=None)[0].label is None


def test_latin1_tsv(tmp_path):
    p = write(tmp_path / "d.tsv", "café crème\tpos\n", encoding="latin-1")
    with pytest.raises(DataError) as info:
        read_delimited(p, text_column=0, label_column=1)
    msg = str(info.value)
    assert f"{p}, line 1, column 4: byte 0xe9 is not valid utf-8" in msg and "--encoding" in msg
    ex = read_delimited(p, text_column=0, label_column=1, encoding="latin-1")
    assert ex[0].text == "café crème"


def test_bom_does_not_hide_header_name(tmp_path):
    p = write(tmp_path / "d.csv", "\ufefftext,label\nx,y\n")
    assert read_delimited(p, text_column="text", label_column="label")[0].text == "x"


# -- jsonl --------------------------------------------------------------------


def test_jsonl(tmp_path):
    lines = [{"text": "good", "label": "pos"}, {"text": "bad", "label": 0}]
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    assert [(e.text, e.label, e.line) for e in read_jsonl(p)] == [("good", "pos", 1), ("bad", "0", 2)]


def test_jsonl_other_fields(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"review": "ok", "stars": 5}\n')
    ex = read_jsonl(p, text_field="review", label_field="stars")
    assert (ex[0].text, ex[0].label) == ("ok", "5")


def test_jsonl_bad_line(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label: 1}\n')
    with pytest.raises(DataError) as info:
        read_jsonl(p)
    assert str(info.value).startswith(f"{p}, line 2, column 15: not valid JSON")


def test_jsonl_not_an_object(tmp_path):
    p = write(tmp_path / "d.jsonl", '["a", "b"]\n')
    with pytest.raises(DataError, match="JSON array"):
        read_jsonl(p)
    p = write(tmp_path / "e.jsonl", '{"text": "a", "label": "x"}\n"just a string"\n')
    with pytest.raises(DataError, match=r"line 2: expected a JSON object, found a string"):
        read_jsonl(p)


def test_jsonl_wrong_types(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": 3, "label": "x"}\n')
    with pytest.raises(DataError, match=r"line 1: field 'text' must be a string, found an integer"):
        read_jsonl(p)
    p = write(tmp_path / "e.jsonl", '{"text": "a", "label": 0.5}\n')
    with pytest.raises(DataError, match=r"line 1: field 'label' must be a string or an integer, found a number"):
        read_jsonl(p)


def test_jsonl_missing_fields_reported(tmp_path):
    p = write(
        tmp_path / "d.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b"}\n\n{"label": "y"}\n{"text": "c", "label": null}\n'
        '{"text": "  ", "label": "y"}\n',
    )
    report: list[str] = []
    ex = read_jsonl(p, report=report)
    assert [e.line for e in ex] == [1]
    assert report == [
        f"{p}: skipped 2 records without 'label' (lines 2, 5)",
        f"{p}: skipped 1 blank lines (line 3)",
        f"{p}: skipped 1 records without 'text' (line 4)",
        f"{p}: skipped 1 records with an empty 'text' (line 6)",
    ]


# -- one file / folder per class ----------------------------------------------


def test_files_per_class_suffix_labels(tmp_path):
    pos = write(tmp_path / "rt-polarity.pos", "good\n\nfine\n\n\n")
    neg = write(tmp_path / "rt-polarity.neg", "bad\n")
    report: list[str] = []
    ex = read_files_per_class([pos, neg], report=report)
    assert [(e.text, e.label, e.line) for e in ex] == [("good", "pos", 1), ("fine", "pos", 3), ("bad", "neg", 1)]
    assert report == [f"{pos}: skipped 3 blank lines (lines 2, 4, 5)"]


def test_files_per_class_stem_labels(names_dir):
    files = sorted(names_dir.iterdir())
    ex = read_files_per_class(files)
    assert Counter(e.label for e in ex) == {"Japanese": 30, "Russian": 30}
    assert ex[0].source == str(names_dir / "Japanese.txt")


def test_files_per_class_single_file_and_shared_parts(tmp_path):
    one = write(tmp_path / "Russian.TXT", "Ivanov\n")
    assert read_files_per_class([one])[0].label == "Russian"
    a = write(tmp_path / "train.pos.txt", "x\n")
    b = write(tmp_path / "train.neg.txt", "y\n")
    assert [e.label for e in read_files_per_class([a, b])] == ["pos", "neg"]


def test_files_per_class_duplicate_label(tmp_path):
    a = write(tmp_path / "a" / "pos.txt", "x\n")
    b = write(tmp_path / "b" / "pos.txt", "y\n")
    with pytest.raises(DataError, match="both give the label 'pos'"):
        read_files_per_class([a, b])


def test_files_per_class_latin1(tmp_path):
    p = write(tmp_path / "French.txt", "Bézier\nLefèvre\n", encoding="latin-1")
    q = write(tmp_path / "German.txt", "Müller\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"French\.txt, line 1, column 2: byte 0xe9 .*--encoding"):
        read_files_per_class([p, q])
    ex = read_files_per_class([p, q], encoding="latin-1")
    assert [e.text for e in ex] == ["Bézier", "Lefèvre", "Müller"]


def test_folder_of_files(names_dir):
    write(names_dir / ".DS_Store", "junk")
    report: list[str] = []
    ex = read_folder_per_class(names_dir, report=report)
    assert sorted({e.label for e in ex}) == ["Japanese", "Russian"]
    assert report == [f"{names_dir}: ignored hidden entries .DS_Store"]


def test_folder_of_folders(tmp_path):
    root = tmp_path / "imdb"
    write(root / "pos" / "0_9.txt", "A great film.\nLoved it.")
    write(root / "pos" / "1_8.txt", "Fine.")
    write(root / "neg" / "0_2.txt", "Dull.")
    write(root / "neg" / "1_1.txt", "  \n")
    write(root / "urls.txt", "http://x")
    report: list[str] = []
    ex = read_folder_per_class(root, report=report)
    assert [(e.text, e.label, e.line) for e in ex] == [
        ("Dull.", "neg", 1),
        ("A great film.\nLoved it.", "pos", 1),
        ("Fine.", "pos", 1),
    ]
    assert ex[0].source == str(root / "neg" / "0_2.txt")
    assert report == [
        f"{root}: one sub-folder per class, so ignored 1 loose files (urls.txt)",
        f"{root / 'neg'}: skipped 1 empty files (1_1.txt)",
    ]


def test_folder_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        read_folder_per_class(tmp_path / "empty")
    (tmp_path / "x" / "pos").mkdir(parents=True)
    with pytest.raises(DataError, match="has no files"):
        read_folder_per_class(tmp_path / "x")


# -- read_classification ------------------------------------------------------


def test_auto_format(tmp_path, names_dir):
    tsv = write(tmp_path / "a.tsv", "x\tp\n")
    csv_ = write(tmp_path / "a.csv", "x,p\n")
    jsonl = write(tmp_path / "a.jsonl", '{"text": "x", "label": "p"}\n')
    for p in (tsv, csv_, jsonl):
        data = read_classification(p)
        assert isinstance(data, ClassificationData)
        assert [(e.text, e.label) for e in data.examples] == [("x", "p")]
    assert data.labels == ["p"]
    # the task passes column indices; jsonl then uses its default fields
    assert read_classification(jsonl, text_column=0, label_column=1).examples[0].text == "x"
    assert read_classification(names_dir).class_counts() == {"Japanese": 30, "Russian": 30}
    files = sorted(str(p) for p in names_dir.iterdir())
    assert read_classification(files).class_counts() == {"Japanese": 30, "Russian": 30}


def test_auto_format_unknown_suffix_and_missing(tmp_path):
    p = write(tmp_path / "a.txt", "x\n")
    with pytest.raises(ConfigError, match="cannot tell the format"):
        read_classification(p)
    assert read_classification(p, format="tsv", labeled=False).examples[0].label is None
    with pytest.raises(DataError, match="file not found"):
        read_classification(tmp_path / "nope.tsv")
    with pytest.raises(ConfigError, match="unknown format"):
        read_classification(p, format="xml")


def test_read_classification_report_and_no_examples(tmp_path):
    p = write(tmp_path / "d.tsv", "a\tpos\n\n\nb\tneg\n")
    data = read_classification(p)
    assert len(data.examples) == 2
    assert data.report == [f"{p}: skipped 2 blank lines (lines 2, 3)"]
    q = write(tmp_path / "e.tsv", "a\t\n")
    with pytest.raises(DataError, match=r"no examples \(.*skipped 1 rows with an empty label"):
        read_classification(q)


def test_report_lists_first_five_lines(tmp_path):
    p = write(tmp_path / "d.tsv", "a\tp\n" + "\n" * 7 + "b\tq\n")
    assert read_classification(p).report == [f"{p}: skipped 7 blank lines (lines 2, 3, 4, 5, 6, ...)"]


# -- stratified splits --------------------------------------------------------

LABELS = ["a"] * 50 + ["b"] * 30 + ["c"] * 20


def test_stratified_split_proportions():
    train, valid = stratified_split(LABELS, 0.2, seed=0)
    assert sorted(train + valid) == list(range(100)) and not set(train) & set(valid)
    assert Counter(LABELS[i] for i in valid) == {"a": 10, "b": 6, "c": 4}
    assert train == sorted(train) and valid == sorted(valid)


def test_stratified_split_deterministic():
    assert stratified_split(LABELS, 0.3, seed=7) == stratified_split(LABELS, 0.3, seed=7)
    assert stratified_split(LABELS, 0.3, seed=7) != stratified_split(LABELS, 0.3, seed=8)


def test_stratified_split_total_and_tiny_classes():
    labels = ["a"] * 7 + ["b"] * 7 + ["c"]
    train, valid = stratified_split(labels, 0.2, seed=1)
    assert len(valid) == round(15 * 0.2)
    assert "c" in {labels[i] for i in train}  # a class of one stays in train
    with pytest.raises(ConfigError):
        stratified_split(labels, 1.0, seed=0)
    with pytest.raises(ConfigError, match="no validation"):
        stratified_split(["a", "b"], 0.1, seed=0)


def test_kfold_partition():
    folds = stratified_kfold(LABELS, 5, seed=3)
    assert len(folds) == 5
    tests = [i for _, test in folds for i in test]
    assert sorted(tests) == list(range(100))  # every example in exactly one test fold
    for train, test in folds:
        assert sorted(train + test) == list(range(100))
        assert Counter(LABELS[i] for i in test) == {"a": 10, "b": 6, "c": 4}
    assert folds == stratified_kfold(LABELS, 5, seed=3)


def test_kfold_uneven_spread():
    labels = ["a"] * 7 + ["b"] * 4
    folds = stratified_kfold(labels, 3, seed=0)
    sizes = [len(t) for _, t in folds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 11
    for cls in "ab":
        counts = [sum(labels[i] == cls for i in t) for _, t in folds]
        assert max(counts) - min(counts) <= 1


def test_kfold_bad_k():
    with pytest.raises(ConfigError):
        stratified_kfold(LABELS, 1, seed=0)
    with pytest.raises(ConfigError, match="cannot make 5 folds from 3 examples"):
        stratified_kfold(["a", "b", "a"], 5, seed=0)


def test_auto_format_several_tables(tmp_path):
    a = write(tmp_path / "a.tsv", "x\tp\n")
    b = write(tmp_path / "b.tsv", "y\tq\n")
    data = read_classification([a, b])
    assert [(e.text, e.label, e.source) for e in data.examples] == [("x", "p", str(a)), ("y", "q", str(b))]
