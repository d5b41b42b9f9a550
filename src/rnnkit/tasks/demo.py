"""``rnnkit demo``: a small model of every shape in the lecture, on bundled data, in a few minutes.

1. "hello": the one-hot tanh RNN of the slides;
2. a character language model of Tiny Shakespeare, with a sample;
3. one-to-many: lines generated for a speaker (the label), learnt from the same plays;
4. many-to-one: which kind of text a sentence comes from (UD English-EWT genres);
5. many-to-many: part-of-speech tagging, stacked and bidirectional (UD English-EWT);
6. seq2seq without and with attention: spelling -> pronunciation (CMUdict), with heatmaps.

Everything is written under one output folder: a run folder per model (loss
curves, confusion matrix, test outputs), the derived data files, and
``attention/``; ``summary.json`` and the printed table say what each reached.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rnnkit.data import bundled_path, read_conllu, read_text
from rnnkit.trainer import TrainConfig

SPEAKER = re.compile(r"^([A-Z][A-Z ]+):$")


@dataclass
class Row:
    shape: str
    model: str
    data: str
    result: str
    seconds: float


def _speakers(text: str, top: int) -> dict[str, list[str]]:
    """Lines of each of the ``top`` speakers with the most lines in a play text (``NAME:`` headed blocks)."""
    lines: dict[str, list[str]] = {}
    who = None
    for line in text.splitlines():
        m = SPEAKER.match(line)
        if m:
            who = m.group(1).title()
        elif line.strip() and who:
            lines.setdefault(who, []).append(line.strip())
        elif not line.strip():
            who = None
    best = sorted(lines, key=lambda k: -len(lines[k]))[:top]
    return {k: lines[k] for k in best}


def _genres(conllu: Path, out: Path) -> Counter:
    """A TSV of ``sentence<TAB>genre`` from EWT sentence ids (``answers-...``, ``email-...``, ...)."""
    rows = []
    for s in read_conllu(conllu):
        sent_id = next(r for r in s.rows if r.startswith("# sent_id"))
        rows.append((" ".join(s.tokens), sent_id.split("=", 1)[1].strip().split("-", 1)[0]))
    out.write_text("".join(f"{t}\t{g}\n" for t, g in rows), encoding="utf-8")
    return Counter(g for _, g in rows)


def run_demo(out: str | Path, *, quick: bool = False, progress: bool = True,
             log: Callable[[str], None] = print) -> list[Row]:
    """Train every model into ``out``; returns the summary rows (also printed and saved)."""
    from rnnkit.tasks.classify import ClassifyDataConfig, train_classify
    from rnnkit.tasks.hello import hello
    from rnnkit.tasks.lm import LMDataConfig, generate, train_lm
    from rnnkit.tasks.runs import resolve
    from rnnkit.tasks.seq2seq import Seq2SeqDataConfig, Translator, plot_attention, train_seq2seq
    from rnnkit.tasks.tag import TagDataConfig, train_tag

    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    scale = 0.25 if quick else 1.0
    steps = lambda n: max(10, int(n * scale))  # noqa: E731
    rows: list[Row] = []

    def section(title: str) -> float:
        log(f"\n=== {title} " + "=" * max(0, 70 - len(title)))
        return time.perf_counter()

    def train_cfg(**kw: Any) -> TrainConfig:
        return resolve(TrainConfig, {"seed": 0, **kw})

    # 1. hello
    t = section('1. "hello": one-hot tanh RNN, h_t = tanh(W_hh h_(t-1) + W_xh x_t), y_t = W_hy h_t')
    text = hello(hidden_size=3, steps=100, lr=0.1, seed=0, log=log)
    rows.append(Row("one-to-one per step", "tanh RNN, 3 units, one-hot", '"hello"',
                    f"predicts {text!r}", time.perf_counter() - t))

    # 2. character language model
    t = section("2. character language model (many-to-many, one step ahead): Tiny Shakespeare")
    lm_run = out / "char-lm"
    final = train_lm(lm_run, dict(hidden_size=256, num_layers=2, embedding_size=32),
                     LMDataConfig(seq_len=64), train_cfg(max_steps=steps(400), batch_size=32, lr=0.003,
                                                         eval_every=steps(200)),
                     overwrite=True, progress=progress, sample_length=0, log=log)
    sample = generate(lm_run, prime="ROMEO:\n", length=200, temperature=0.8, seed=0)[0]
    log("sample (temperature 0.8):\n" + sample)
    rows.append(Row("one-to-one per step", "2-layer LSTM 256, char", "Tiny Shakespeare (bundled)",
                    f"{final.get('loss', float('nan')):.2f} nats/char on held-out text", time.perf_counter() - t))

    # 3. one-to-many
    t = section("3. one-to-many: a line generated for a speaker (the label)")
    folder = out / "data" / "speakers"
    folder.mkdir(exist_ok=True)
    speakers = _speakers(read_text(bundled_path("tinyshakespeare")), 4)
    for name, lines in speakers.items():
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sp_run = out / "speaker-lm"
    final = train_lm(sp_run, dict(hidden_size=192, num_layers=1, embedding_size=32),
                     LMDataConfig(path=str(folder)), train_cfg(max_steps=steps(500), batch_size=32, lr=0.003,
                                                               eval_every=steps(250)),
                     overwrite=True, progress=progress, sample_length=0, log=log)
    for name in speakers:
        log(f"{name}: " + " / ".join(generate(sp_run, length=80, temperature=0.7, seed=1, num_samples=2,
                                              label=name)))
    rows.append(Row("one-to-many", "LSTM 192 conditioned on the label", f"lines of {len(speakers)} speakers",
                    f"{final.get('loss', float('nan')):.2f} nats/char on held-out lines", time.perf_counter() - t))

    # 4. many-to-one
    t = section("4. many-to-one: which kind of text is this sentence from? (UD English-EWT genres)")
    ud = bundled_path("ud_ewt_dev")
    counts = _genres(ud, out / "data" / "genres.tsv")
    log("sentences per genre: " + ", ".join(f"{g} {n}" for g, n in sorted(counts.items())))
    res = train_classify(out / "classifier", dict(embedding_size=64, hidden_size=96, num_layers=1,
                                                  bidirectional=True, pooling="max", dropout=0.3),
                         resolve(ClassifyDataConfig, dict(train=str(out / "data" / "genres.tsv"), format="tsv",
                                                          valid_split=0.1, test_split=0.15, lower=True)),
                         train_cfg(epochs=6 * scale, batch_size=32, lr=0.003),
                         overwrite=True, progress=progress, log=log)
    majority = max(counts.values()) / sum(counts.values())
    rows.append(Row("many-to-one", "BiLSTM 96, max pooling", "EWT sentences -> 5 genres",
                    f"{res.get('accuracy', float('nan')):.1%} test accuracy (majority class {majority:.1%})",
                    time.perf_counter() - t))

    # 5. many-to-many (aligned)
    t = section("5. many-to-many: part-of-speech tags, 2 stacked bidirectional layers (UD English-EWT)")
    sents = ud.read_text(encoding="utf-8").split("\n\n")
    sents = [s for s in sents if s.strip()]
    cut = int(len(sents) * 0.85)
    for name, part in (("pos-train.conllu", sents[:cut]), ("pos-test.conllu", sents[cut:])):
        (out / "data" / name).write_text("\n\n".join(part) + "\n\n", encoding="utf-8")
    res = train_tag(out / "tagger", dict(embedding_size=64, hidden_size=96, num_layers=2, bidirectional=True,
                                         char_encoder="cnn", char_hidden_size=32, dropout=0.3),
                    resolve(TagDataConfig, dict(train=str(out / "data" / "pos-train.conllu"),
                                                valid=str(out / "data" / "pos-test.conllu"), lower=True)),
                    train_cfg(epochs=8 * scale, batch_size=16, lr=0.003),
                    overwrite=True, progress=progress, log=log)
    rows.append(Row("many-to-many", "2-layer BiLSTM 96 + char CNN", f"EWT, {cut:,} / {len(sents) - cut:,} sentences",
                    f"{res.get('accuracy', float('nan')):.1%} UPOS accuracy (held out)", time.perf_counter() - t))

    # 6. seq2seq without and with attention
    cmu = bundled_path("cmudict_20k")
    for attention in ("none", "luong"):
        title = "without attention" if attention == "none" else "with attention (Luong)"
        t = section(f"6. seq2seq {title}: spelling -> pronunciation (CMUdict, 20,000 words)")
        run = out / f"seq2seq-{attention}"
        res = train_seq2seq(run, dict(embedding_size=64, hidden_size=192, num_layers=1, attention=attention,
                                      dropout=0.1),
                            resolve(Seq2SeqDataConfig, dict(train=str(cmu), format="cmudict", beam=3)),
                            train_cfg(epochs=5 * scale, batch_size=64, lr=0.004),
                            overwrite=True, progress=progress, log=log)
        rows.append(Row("seq2seq" + (" + attention" if attention != "none" else ""),
                        f"BiLSTM 192 encoder, LSTM decoder, attention {attention}", "CMUdict words -> phonemes",
                        f"WER {res.get('wer', float('nan')):.1%}, PER {res.get('per', float('nan')):.1%} (test)",
                        time.perf_counter() - t))
    tr = Translator(out / "seq2seq-luong")
    words = ["rnnkit", "lecture", "attention", "hello"]
    outs = [h[0] for h in tr.translate(words)]
    for w, p in zip(words, outs):
        log(f"  {w:10} -> {p.text}")
    paths = plot_attention(tr, words, outs, out / "attention")
    log(f"attention heatmaps: {', '.join(str(p) for p in paths)}")

    _report(rows, out, log)
    return rows


def _report(rows: list[Row], out: Path, log: Callable[[str], None]) -> None:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("shape", "model", "data", "result")]
    heads = ("shape", "model", "data", "reached")
    log("\n" + "  ".join(h.ljust(w) for h, w in zip(heads, widths)) + "  time")
    for r in rows:
        cells = (r.shape, r.model, r.data, r.result)
        log("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + f"  {r.seconds:.0f} s")
    log(f"\nrun folders, plots and data in {out}/ (loss.png in each run, classifier/confusion.png, attention/)")
    (out / "summary.json").write_text(json.dumps([r.__dict__ for r in rows], indent=2) + "\n", encoding="utf-8")

