"""Word-level language models on corpora that come as three files: end-of-line tokens, the corpus's own
<unk>, the test file scored once at the end (and again by evaluate), the validation OOV rate per word,
bits named for the token, sampling from a word run, and locked (variational) dropout."""
import json
import math
import random

import pytest
import torch

from rnnkit.data import split_lines, split_text
from rnnkit.errors import ConfigError
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.nn import Recurrent
from rnnkit.nn.dropout import locked_dropout
from rnnkit.tasks.lm import (EOL, LMDataConfig, _Prepared, evaluate, generate, score_stream, stream_tokens,
                             train_lm)
from rnnkit.tokenizers import make_tokenizer
from rnnkit.trainer import TrainConfig

WORDS = "the cat dog sat on mat a rat ran to".split()
SMALL = {"hidden_size": 32, "embedding_size": 16, "num_layers": 1}


def _corpus(d, unk="<unk>", seed=0):
    rng = random.Random(seed)
    for name, n in (("train", 300), ("valid", 30), ("test", 30)):
        lines = [" ".join(rng.choice(WORDS + [unk]) for _ in range(rng.randint(3, 8))) for _ in range(n)]
        (d / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def _data(d, **kw):
    return LMDataConfig(path=str(d / "train.txt"), valid=str(d / "valid.txt"), test=str(d / "test.txt"),
                        tokenizer="word", seq_len=16, **kw)


def test_stream_tokens_end_every_line():
    tok = make_tokenizer("word")
    assert stream_tokens("a b\nc\n", tok, True) == ["a", "b", EOL, "c", EOL]
    assert stream_tokens("a b\nc", tok, True) == ["a", "b", EOL, "c", EOL]  # a last line without newline too
    assert stream_tokens("a b\nc", tok, True, last_line_ends=False) == ["a", "b", EOL, "c"]
    assert stream_tokens("a b\nc\n", tok, False) == ["a", "b", "c"]
    assert split_lines("1\n2\n3\n4\n5\n6\n7\n8\n9\n10", (0.8, 0.1, 0.1)) == (
        "1\n2\n3\n4\n5\n6\n7\n8\n", "9\n", "10\n")
    assert split_text("ab cd\nef gh\nij\n", 0.5) == ("ab cd\ne", "f gh\nij\n")  # characters: 8 of 15
    assert split_text("ab cd\nef gh\nij\n", 0.5, at_line=True) == ("ab cd\nef gh\n", "ij\n")  # a word stream's


def test_vocabulary_keeps_the_corpus_unk_and_oov_is_per_word(tmp_path):
    d = _corpus(tmp_path, unk="<UNK>")
    (d / "valid.txt").write_text("the cat zebra\nthe <UNK> dog\n", encoding="utf-8")
    prep = _Prepared(_data(d, unk_token="<UNK>"), TrainConfig(max_steps=1, batch_size=2), print)
    v = prep.vocab
    assert v.unk == "<UNK>" and "<unk>" not in v and v.tokens[0] == EOL
    assert len(v) == len(WORDS) + 2  # every training word kept (min_freq 1), <eos>, <UNK>
    # 8 validation tokens (6 words, 2 <eos>), one unseen word: 1/8, not a rate over characters
    assert "validation OOV rate 12.50%, 12.50% the corpus's own <UNK>" in prep.summary
    prep2 = _Prepared(_data(d, unk_token="<UNK>", min_freq=10 ** 6), TrainConfig(max_steps=1, batch_size=2),
                      print)
    assert len(prep2.vocab) == 2 and "seen fewer than --min-freq" in prep2.summary


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    d = _corpus(tmp_path_factory.mktemp("words"))
    said = []
    result = train_lm(d / "run", dict(SMALL), _data(d), TrainConfig(max_steps=40, batch_size=8, lr=0.01),
                      progress=False, sample_length=12, log=said.append)
    return d, result, "\n".join(said)


def test_test_file_is_scored_at_the_end_and_evaluate_gives_the_same(word_run):
    d, result, said = word_run
    lines = (d / "test.txt").read_text().splitlines()
    n_tokens = sum(len(line.split()) for line in lines) + len(lines)  # every word and every <eos>
    test = result["test"]
    assert test["tokens"] == n_tokens and test["tokens_not_scored"] == 0 and "bpw" in test and "bpc" not in test
    assert abs(test["bpw"] - test["loss"] / math.log(2)) < 1e-12
    assert json.loads((d / "run" / "report.json").read_text())["perplexity"] == test["perplexity"]
    again = evaluate(d / "run", str(d / "test.txt"))
    assert again["perplexity"] == test["perplexity"] and again["tokens"] == n_tokens
    assert f"perplexity {test['perplexity']:.2f}" in said and "bits/word" in said and "bpw" in said
    assert "sample:" in said  # the final sample of a word run (it used to fail on a newline prime)


def test_score_stream_equals_stepping_token_by_token(word_run):
    d, _, _ = word_run
    from rnnkit.tasks.lm import load_run, start_id

    _, model, vocab, tok, data = load_run(d / "run")
    tokens = stream_tokens((d / "test.txt").read_text(), tok, True)
    ids = torch.tensor(vocab.encode(tokens))
    start = start_id(vocab, True)
    assert start == vocab[EOL]
    scored = score_stream(model, ids, seq_len=7, start=start, unit="word")
    total, state, prev = 0.0, None, start  # one token at a time, the state carried throughout
    with torch.inference_mode():
        for t in ids.tolist():
            logits, state = model.step(torch.tensor([[prev]]), state)
            total -= float(logits[0, -1].double().log_softmax(-1)[t])
            prev = t
    assert scored["tokens"] == len(tokens)
    assert abs(scored["loss"] - total / len(tokens)) < 1e-5
    assert abs(scored["perplexity"] - math.exp(total / len(tokens))) < 1e-3


def test_generate_from_a_word_run_with_no_prime(word_run):
    d, _, _ = word_run
    for prime in (None, "\n"):  # none, or the newline the CLI passes by default: a new line
        (text,) = generate(d / "run", prime=prime, length=15, seed=0)
        assert text.strip() and set(text.split()) <= set(WORDS) | {"<unk>"}
    assert generate(d / "run", length=15, seed=0) == [text.lstrip("\n")]
    with pytest.raises(ConfigError, match="non-empty"):  # an empty text asks to continue nothing
        generate(d / "run", prime="", length=5)
    (text,) = generate(d / "run", prime="the cat", length=5, seed=0)
    assert text.startswith("the cat")
    with pytest.raises(ConfigError, match="lacks"):
        generate(d / "run", prime="zebra", length=5)


# ---------------------------------------------------------------- locked dropout


def test_locked_dropout_mask_is_constant_over_time_and_off_in_eval():
    torch.manual_seed(0)
    x = torch.ones(4, 9, 50)
    y = locked_dropout(x, 0.5, time_dim=1)
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same mask at every step
    assert set(y.unique().tolist()) == {0.0, 2.0} and 0.3 < float((y == 0).float().mean()) < 0.7
    assert not torch.equal(y[0], y[1])  # one mask per sequence
    t = locked_dropout(x.transpose(0, 1), 0.5, time_dim=0)  # time-major
    assert torch.equal(t, t[:1].expand_as(t))
    assert locked_dropout(x, 0.5, training=False) is x


def test_language_model_locked_dropout_on_inputs_between_layers_and_in_eval(monkeypatch):
    torch.manual_seed(0)
    cfg = LanguageModelConfig(vocab_size=7, hidden_size=16, embedding_size=16, num_layers=2, dropout=0.5,
                              locked_dropout=True)
    m = LanguageModel(cfg).train()
    x = m.recurrent_inputs(torch.full((3, 6), 2))  # one token repeated: its embedding's mask must not move
    assert torch.equal(x, x[:, :1].expand_as(x)) and bool((x == 0).any())
    import rnnkit.nn.dropout as impl

    shapes = []
    real = impl.locked_dropout
    monkeypatch.setattr(impl, "locked_dropout", lambda t, p, training=True, time_dim=1:
                        (shapes.append((tuple(t.shape), time_dim)), real(t, p, training, time_dim))[1])
    tokens = torch.randint(0, 7, (3, 6))
    for backend in ("fused", "reference"):
        m.rnn.backend = backend
        shapes.clear()
        m(tokens)
        assert shapes == [((3, 6, 16), 1)] * 3  # embeddings, between the layers, outputs: (B, 1, F) masks
        m(tokens, lengths=torch.tensor([6, 4, 2]))
    g = Recurrent("gru", 16, 16, num_layers=2, dropout=0.5, locked_dropout=True).train()
    shapes.clear()
    g(torch.randn(3, 40, 16))  # GRU on CPU runs the scan, time-major
    assert shapes in ([((40, 3, 16), 0)], [((3, 40, 16), 1)])
    # eval: no dropout anywhere, the same outputs as the model without it
    m.eval()
    m.rnn.backend = "fused"
    plain = LanguageModel(LanguageModelConfig(vocab_size=7, hidden_size=16, embedding_size=16, num_layers=2))
    plain.load_state_dict(m.state_dict())
    plain.eval()
    assert torch.equal(m(tokens)[0], plain(tokens)[0])
