"""CMUdict on a fixed test split: the test file's format, stress removal, test words out of training,
validation by word, scoring against any pronunciation, and ensembles of runs decoding together."""
import random

import pytest
import torch

from rnnkit.batching import seq2seq_batch
from rnnkit.data import drop_stress, has_stress, read_cmudict
from rnnkit.decoding import beam_search, ensemble_step, greedy_search
from rnnkit.errors import ConfigError
from rnnkit.metrics import ErrorRates
from rnnkit.tasks.seq2seq import Seq2SeqDataConfig, Translator, evaluate, read_splits, train_seq2seq, translate_ids
from rnnkit.trainer import TrainConfig

LETTERS = {"a": "AE1", "b": "B", "c": "K", "d": "D", "e": "EH0", "o": "OW1", "t": "T"}
SMALL = {"hidden_size": 32, "embedding_size": 16, "dropout": 0.0}


def _words(n, seed):
    rng = random.Random(seed)
    return sorted({"".join(rng.choice(list(LETTERS)) for _ in range(rng.randint(2, 5))) for _ in range(n)})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A lower-case dictionary with stress and (2) variants, and a test file in the 0.7b format: upper case,
    two spaces after the word, no stress, a variant as the word repeated."""
    d = tmp_path_factory.mktemp("cmu")
    words = _words(300, 0)
    lines = []
    for w in words:
        lines.append(f"{w} {' '.join(LETTERS[c] for c in w)}")
        if w.startswith("b"):  # a variant: the same phones with another stress (merges without stress)
            lines.append(f"{w}(2) {' '.join(LETTERS[c].replace('1', '2') for c in w)}")
        if w.startswith("c"):  # a variant that stays a variant: a final schwa
            lines.append(f"{w}(2) {' '.join(LETTERS[c] for c in w)} AH0")
    (d / "cmudict.dict").write_text("\n".join(lines) + "\n", encoding="utf-8")
    test_words = [w for w in words if w.startswith(("c", "d"))][:30]
    test = []
    for w in test_words:
        bare = " ".join(LETTERS[c].rstrip("012") for c in w)
        test.append(f"{w.upper()}  {bare}")
        if w.startswith("c"):
            test.append(f"{w.upper()}  {bare} AH")
    (d / "cmudict-0.7b.test").write_text("\n".join(test) + "\n", encoding="utf-8")
    return d, words, test_words


def _cfg(d, **kw):
    return Seq2SeqDataConfig(train=str(d / "cmudict.dict"), test=str(d / "cmudict-0.7b.test"), format="cmudict",
                             beam=3, **kw)


# ---------------------------------------------------------------- reading


def test_reader_takes_both_formats_case_insensitively(tmp_path):
    (tmp_path / "a.dict").write_text("cat K AE1 T\ncat(2) K AA1 T\n;;; comment\ndog D AO1 G\n", encoding="utf-8")
    (tmp_path / "a.test").write_text("CAT  K AE T\nCAT  K AA T\nCAT  K AE T\nDOG  D AO G\n", encoding="utf-8")
    assert read_cmudict(tmp_path / "a.dict", lower=True) == {"cat": [["K", "AE1", "T"], ["K", "AA1", "T"]],
                                                             "dog": [["D", "AO1", "G"]]}
    test = read_cmudict(tmp_path / "a.test", lower=True)
    assert test == {"cat": [["K", "AE", "T"], ["K", "AA", "T"], ["K", "AE", "T"]], "dog": [["D", "AO", "G"]]}
    assert list(read_cmudict(tmp_path / "a.test")) == ["CAT", "DOG"]  # case kept unless asked
    bare, merged = drop_stress({"x": [["AH0", "B"], ["AH1", "B"], ["EY2"]], "y": [["K", "AE", "T"]] * 2})
    assert bare == {"x": [["AH", "B"], ["EY"]], "y": [["K", "AE", "T"]]} and merged == 2
    assert has_stress({"x": [["AH0"]]}) and not has_stress(bare)


def test_test_words_leave_training_and_validation_is_by_word(files):
    d, words, test_words = files
    with pytest.raises(ConfigError, match="drop-stress"):  # the dict marks stress, the test file does not
        read_splits(_cfg(d))
    said = []
    tr, va, te = read_splits(_cfg(d, drop_stress=True, split="0.8,0.1,0.1"), said.append)
    assert sorted(te.src) == sorted(test_words)  # one row per word, lower-cased like the dictionary
    n_c = sum(w.startswith("c") for w in test_words)
    assert sum(len(r) for r in te.refs) == len(test_words) + n_c
    cat = next(w for w in test_words if w.startswith("c"))
    assert te.refs[te.src.index(cat)] == [" ".join(LETTERS[c][:-1] if LETTERS[c][-1].isdigit() else LETTERS[c]
                                                   for c in cat) + s for s in ("", " AH")]
    assert not set(tr.src) & set(test_words) and not set(va.src) & set(test_words)
    assert not set(tr.src) & set(va.src)  # no variant of a training word is validated on
    rest = len(words) - len(test_words)
    assert len(va.src) == round(rest * 0.1) and len(set(tr.src)) == rest - len(va.src)
    assert all(not any(ch.isdigit() for ch in t) for t in tr.tgt)
    # b-words had two pronunciations differing only in stress: one pair left each
    b = [w for w in tr.src if w.startswith("b")]
    assert len(b) == len(set(b))
    n_removed_prons = len(test_words) + n_c  # c-words carry a second pronunciation in the dictionary
    text = "\n".join(said)
    assert f"{len(test_words)} test words with {len(test_words) + n_c} pronunciations" in text
    assert f"removed from {d / 'cmudict.dict'}: {len(test_words)} of those words with {n_removed_prons} " in text
    assert "repeat another of their word's once stress is removed" in text


# ---------------------------------------------------------------- training, evaluating, ensembles


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory):
    d, _, _ = files
    out = tmp_path_factory.mktemp("runs")
    made = []
    for seed in (0, 1):
        made.append(out / f"g{seed}")
        report = train_seq2seq(made[-1], dict(SMALL), _cfg(d, drop_stress=True),
                               TrainConfig(max_steps=200, batch_size=16, lr=0.01, seed=seed), progress=False,
                               log=lambda m: None)
        assert report["split"] == "test" and 0 < report["wer"] < 1, report  # partly learnt
    return made


def test_evaluate_on_the_test_file_repeats_the_training_report(files, runs):
    import json

    d, _, test_words = files
    report = json.loads((runs[0] / "report.json").read_text())
    again = evaluate(runs[0], data_path=str(d / "cmudict-0.7b.test"))
    assert again["sentences"] == report["words"] == len(test_words)
    assert (again["wer"], again["per"], again["phones"]) == (report["wer"], report["per"], report["phones"])
    # scoring by hand from the written outputs: right if any reference matches
    hyps = (runs[0] / "test.hyp.txt").read_text().splitlines()
    _, _, te = read_splits(_cfg(d, drop_stress=True))
    wrong = sum(h not in refs for h, refs in zip(hyps, te.refs))
    assert report["wer"] == wrong / len(test_words)


def test_a_stress_marking_run_is_scored_on_a_stress_free_file_only_with_drop_stress(files, tmp_path):
    d, _, _ = files
    run = tmp_path / "stressed"
    train_seq2seq(run, dict(SMALL), Seq2SeqDataConfig(train=str(d / "cmudict.dict"), format="cmudict", beam=1),
                  TrainConfig(max_steps=5, batch_size=16, lr=0.01), progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="drop_stress"):
        evaluate(run, data_path=str(d / "cmudict-0.7b.test"))
    scored = evaluate(run, data_path=str(d / "cmudict-0.7b.test"), drop_stress=True)
    assert scored["drop_stress"] and scored["perplexity"] is None and 0 <= scored["wer"] <= 1
    # scored again by hand: outputs with stress stripped against the test file's references
    t = Translator(run)
    test = read_cmudict(d / "cmudict-0.7b.test", lower=True)
    outs = [o[0].text for o in t.translate(list(test), beam=1)]
    m = ErrorRates()
    m.update([[ph.rstrip("012") for ph in o.split()] for o in outs], list(test.values()))
    assert (scored["wer"], scored["per"]) == (m.compute()["wer"], m.compute()["per"])


def test_a_run_twice_decodes_as_the_run_alone(files, runs):
    d, _, _ = files
    alone, twice = Translator(runs[0]), Translator([runs[0], runs[0]])
    words = [w for w in _words(80, 5)]
    for beam in (1, 3):
        a, b = alone.translate(words, beam=beam, n_best=beam), twice.translate(words, beam=beam, n_best=beam)
        assert [[h.ids for h in x] for x in a] == [[h.ids for h in x] for x in b]
        assert all(abs(p.score - q.score) < 1e-6 for x, y in zip(a, b) for p, q in zip(x, y))
    path = str(d / "cmudict-0.7b.test")
    one, two = evaluate(runs[0], data_path=path), evaluate([runs[0], runs[0]], data_path=path)
    assert (one["wer"], one["per"]) == (two["wer"], two["per"]) and abs(one["loss"] - two["loss"]) < 1e-6


def test_ensemble_beam_one_is_greedy_and_batches_do_not_change_outputs(runs):
    t = Translator(runs)
    src = [t.codec.src_ids(w) for w in _words(40, 6)]
    pad = t.codec.src_vocab.pad_id
    greedy = translate_ids(t.model, src, pad, beam=1)
    b = seq2seq_batch(src, None, pad, 0, 1, 2)
    with torch.inference_mode():
        state = t.model.encode(b.inputs, b.lengths)
        limit = t.model.max_lengths(b.lengths)
        beam1 = beam_search(t.model.step, state, t.model.start_tokens(len(src), b.inputs.device),
                            t.model.config.tgt_eos_id, beam_size=1, max_len=limit)
    assert [g[0][0] for g in greedy] == [h[0].tokens for h in beam1]
    batched = translate_ids(t.model, src, pad, beam=3, batch_size=40)
    alone = [translate_ids(t.model, [s], pad, beam=3)[0] for s in src]
    assert [x[0][0] for x in batched] == [y[0][0] for y in alone]
    assert all(abs(x[0][1] - y[0][1]) < 1e-5 for x, y in zip(batched, alone))
    # the two models disagree somewhere, and the ensemble is neither of them everywhere
    outs = [translate_ids(Translator(r).model, src, pad, beam=1) for r in runs]
    assert [o[0][0] for o in outs[0]] != [o[0][0] for o in outs[1]]


def test_ensemble_step_is_the_mean_of_log_probabilities():
    torch.manual_seed(0)
    a, b = torch.randn(2, 1, 5), torch.randn(2, 1, 5)

    def step_of(x):
        return lambda tokens, state: (x, state)

    out, _ = ensemble_step([step_of(a), step_of(b)])(torch.zeros(2, 1, dtype=torch.long), None)
    assert torch.allclose(out, (a.log_softmax(-1) + b.log_softmax(-1)) / 2)
    # greedy follows the product of the two distributions
    ids = greedy_search(ensemble_step([step_of(a), step_of(b)]), None, torch.zeros(2, dtype=torch.long),
                        eos_id=4, max_len=1)
    expected = (a.log_softmax(-1) + b.log_softmax(-1))[:, 0].argmax(-1)
    assert [r[:1] for r in ids] == [[i] if i != 4 else [] for i in expected.tolist()]


def test_runs_with_other_vocabularies_are_refused_naming_both(files, runs, tmp_path):
    d, _, _ = files
    (tmp_path / "other.dict").write_text("zzz Z Z Z\nyyy Y Y\nxxz Z Z\n" * 1, encoding="utf-8")
    other = tmp_path / "other"
    train_seq2seq(other, dict(SMALL), Seq2SeqDataConfig(train=str(tmp_path / "other.dict"), format="cmudict",
                                                       split="1,0,0", drop_stress=True),
                  TrainConfig(max_steps=1, batch_size=4), progress=False, log=lambda m: None)
    with pytest.raises(ConfigError) as e:
        Translator([runs[0], other])
    assert str(runs[0]) in str(e.value) and str(other) in str(e.value) and "vocabular" in str(e.value)


def test_evaluate_takes_a_length_penalty_and_scores_what_translate_gives(files, runs, capsys):
    """``--length-penalty`` (declared once, on ``DecodeOptions``) reaches the search; the scores equal those of
    ``Translator.translate`` with the same settings, scored by hand."""
    import json

    from rnnkit.cli import main

    d, _, _ = files
    path = str(d / "cmudict-0.7b.test")
    test = read_cmudict(path, lower=True)
    t = Translator(runs[0])
    for lp in (0.0, 2.5):
        scored = evaluate(runs[0], data_path=path, beam=3, length_penalty=lp)
        outs = [o[0].text for o in t.translate(list(test), beam=3, length_penalty=lp)]
        m = ErrorRates()
        m.update([o.split() for o in outs], list(test.values()))
        assert scored["length_penalty"] == lp and (scored["wer"], scored["per"]) == (m.compute()["wer"],
                                                                                     m.compute()["per"])
    assert evaluate(runs[0], data_path=path)["length_penalty"] == 1.0  # the run's
    assert main(["evaluate", str(runs[0]), "--data", path, "--length-penalty", "0", "--beam", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["beam"], out["length_penalty"]) == (2, 0.0)
    assert main(["evaluate", str(runs[0]), "--data", path, "--length-penalty", "-1"]) == 2
    assert "--length-penalty: -1.0 is not allowed" in capsys.readouterr().err


def test_the_sample_script_writes_a_split_with_every_pronunciation_once(files, runs, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "cmudict_train_sample.py"
    d, _, _ = files
    data = Seq2SeqDataConfig(**json.loads((runs[0] / "config.json").read_text())["data"])
    tr, va, _ = read_splits(data)
    assert len(va.src) > 0 and len(set(tr.src)) < len(tr.src)  # some training words have two pronunciations
    for split, part in (("valid", va), ("train", tr)):
        out = tmp_path / f"{split}.test"
        subprocess.run([sys.executable, str(script), str(runs[0]), "--split", split, "--words", "0", "--out",
                        str(out)], check=True, capture_output=True)
        lines = out.read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(set(lines))  # every pronunciation once
        written = read_cmudict(out, lower=True)
        expect = {w: sorted(refs) for w, refs in zip(part.src, part.refs)}
        assert {w: sorted(" ".join(p) for p in ps) for w, ps in written.items()} == expect
