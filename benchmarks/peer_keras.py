"""Peer comparison: rnnkit vs Keras 3 (TensorFlow backend), the same models trained in the same process.

Seven rows, each one model built twice with the same layers and shapes and
trained on the same batches (Adam, lr 2e-3, global gradient-norm clipping at 5,
token-mean cross-entropy, no dropout):

* char LM (LSTM and GRU, hidden 256 and 512): embedding 64, 2 layers, a linear
  output layer; batch 64 x 128 steps, the recurrent state carried from batch to
  batch (rnnkit's truncated BPTT; ``stateful=True`` layers in Keras);
* BiLSTM classifier: vocabulary 10k, embedding 128, hidden 256 per direction,
  2 layers, the top layer's final states of both directions -> linear (rnnkit's
  ``pooling="last"``; a last ``Bidirectional(LSTM)`` without sequences in Keras);
  batch 64 x 40 tokens;
* BiLSTM tagger: the same encoder, every output -> linear over 17 tags (softmax);
* GRU seq2seq with Luong ``general`` attention and no input feeding: vocabulary
  8k, embedding 256, a bidirectional GRU encoder of 256 per direction whose two
  final states start a GRU decoder of 512 (rnnkit's ``copy`` bridge), scores
  ``h_t . (W m_s)``, ``h~_t = tanh(W_c [c_t; h_t])`` -> linear; batch 64, 24
  source tokens and 24 decoder steps (23 target tokens plus ``<bos>``/``<eos>``).
  Luong attention is the one both sides build from stock parts: Keras'
  ``Attention`` layer (dot score, no scale) over keys ``Dense(memory)``.

rnnkit trains as a user trains it: the task model, its own ``loss`` and the
``Trainer`` (Adam, clipping). Keras runs twice, each on its own copy of the model:
``train_on_batch`` after ``compile(jit_compile=False)``, and a hand-written
``tf.function`` step (GradientTape, ``jit_compile=False``); the ratio is taken
against the faster of the two. Contestants are interleaved round by round after
a warm-up step each (which also traces the TensorFlow graphs), medians compared.
Tokens/s counts input tokens (LM, classifier, tagger) or decoder steps (seq2seq).

Targets: rnnkit >= 1.5x Keras on every row, >= 2x on the rows of hidden 512.

TensorFlow and Keras 3 are an optional dependency of this script and peer_profile.py only
(``pip install -e '.[peer]'``, best in a separate venv: see benchmarks/README.md);
without them it prints why and exits 0. TensorFlow gets ``--threads`` intra-op and
inter-op threads, torch ``--threads`` threads.

    python benchmarks/peer_keras.py            # full shapes, about 3.5 minutes on 2 cores
    python benchmarks/peer_keras.py --quick    # small shapes, under a minute

Writes benchmarks/results/peer_keras[-quick].json and prints a table.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from rnnkit.batching import Batch, StreamBatches, classify_batch, seq2seq_batch, tag_batch
from rnnkit.models import (Classifier, ClassifierConfig, LanguageModel, LanguageModelConfig, Seq2Seq,
                           Seq2SeqConfig, Tagger, TaggerConfig)
from rnnkit.nn import Recurrent
from rnnkit.trainer import TrainConfig, Trainer
from _common import median_times, parser, write_report

LR, CLIP = 2e-3, 5.0


@dataclass
class Row:
    """One model and its batch shape; ``seq`` is the LM's / classifier's / tagger's length, or (src, tgt)."""

    name: str
    kind: str               # lm | classifier | tagger | seq2seq
    cell: str               # lstm | gru
    vocab: int
    embed: int
    hidden: int             # units per layer and direction (seq2seq: the decoder's; the encoder has half per direction)
    layers: int
    batch: int
    seq: Any                # int, or (src_len, tgt_len) for seq2seq
    labels: int = 0         # classes (classifier) or tags (tagger)
    target: float = 1.5     # rnnkit / Keras tokens per second wanted


def rows(quick: bool) -> list[Row]:
    """The rows compared; ``--quick`` keeps their names and targets but shrinks every shape."""
    lm = dict(vocab=65, embed=32 if quick else 64, layers=2, batch=16 if quick else 64, seq=32 if quick else 128)
    word = dict(vocab=1000 if quick else 10_000, embed=32 if quick else 128, hidden=64 if quick else 256, layers=2,
                batch=16 if quick else 64, seq=20 if quick else 40)
    small = {256: 64, 512: 128}  # quick: the hidden size standing in for each full one
    out = [Row(f"char LM, {cell.upper()} {h}", "lm", cell, hidden=small[h] if quick else h,
               target=2.0 if h == 512 else 1.5, **lm)
           for cell in ("lstm", "gru") for h in (256, 512)]
    out.append(Row("BiLSTM classifier", "classifier", "lstm", labels=2, **word))
    out.append(Row("BiLSTM tagger", "tagger", "lstm", labels=17, **word))
    out.append(Row("GRU seq2seq, Luong attention", "seq2seq", "gru", vocab=1000 if quick else 8000,
                   embed=32 if quick else 256, hidden=128 if quick else 512, layers=1,
                   batch=16 if quick else 64, seq=(12, 12) if quick else (24, 24), target=2.0))
    return out


# ------------------------------------------------------------------ data


def make_batches(row: Row, steps: int) -> tuple[Callable[[], Any], list[Batch]]:
    """``(a fresh rnnkit batch source, the first `steps` batches it yields)``: random ids, no padding.

    Ids start at 4 so that pad, unk, bos and eos never occur in the data.
    """
    g = torch.Generator().manual_seed(1)
    B = row.batch
    if row.kind == "lm":
        ids = torch.randint(0, row.vocab, (B * row.seq * (steps + 2) + B,), generator=g)
        first = StreamBatches(ids, B, row.seq)
        return (lambda: StreamBatches(ids, B, row.seq)), [first.batch(i) for i in range(steps)]

    def ids(length: int) -> list[list[int]]:
        return torch.randint(4, row.vocab, (B, length), generator=g).tolist()

    if row.kind == "classifier":
        batches = [classify_batch(ids(row.seq), torch.randint(0, row.labels, (B,), generator=g).tolist(), 0)
                   for _ in range(steps)]
    elif row.kind == "tagger":
        batches = [tag_batch(ids(row.seq), torch.randint(0, row.labels, (B, row.seq), generator=g).tolist(), 0)
                   for _ in range(steps)]
    else:
        src_len, tgt_len = row.seq
        # <bos> y is the decoder's input and y <eos> its target: tgt_len steps from tgt_len - 1 tokens
        batches = [seq2seq_batch(ids(src_len), ids(tgt_len - 1), 0, 0, 1, 2) for _ in range(steps)]
    return (lambda: Prebuilt(batches)), batches


class Prebuilt:
    """A ``Trainer`` batch source over fixed batches in order: both sides train on the same tensors,
    and neither pays for building them inside the timed loop."""

    starts_epoch = True  # separate sequences: no state is carried between batches

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return itertools.cycle(self.batches)

    def state_dict(self) -> dict:
        return {}


def keras_data(tf, row: Row, batches: list[Batch]) -> list[tuple[Any, Any]]:
    """The same batches as TensorFlow int32 tensors: ``(x, y)`` per step (seq2seq: x = (source, decoder inputs))."""
    def t(x: torch.Tensor):
        return tf.constant(x.numpy().astype(np.int32))
    if row.kind == "seq2seq":
        return [((t(b.inputs), t(b.decoder_inputs)), t(b.targets)) for b in batches]
    return [(t(b.inputs), t(b.targets)) for b in batches]


# ------------------------------------------------------------------ models


def rnnkit_model(row: Row) -> nn.Module:
    if row.kind == "lm":
        return LanguageModel(LanguageModelConfig(vocab_size=row.vocab, cell=row.cell, hidden_size=row.hidden,
                                                 num_layers=row.layers, embedding_size=row.embed))
    if row.kind == "classifier":
        return Classifier(ClassifierConfig(vocab_size=row.vocab, num_classes=row.labels, embedding_size=row.embed,
                                           cell=row.cell, hidden_size=row.hidden, num_layers=row.layers,
                                           bidirectional=True, pooling="last"))
    if row.kind == "tagger":
        return Tagger(TaggerConfig(vocab_size=row.vocab, num_tags=row.labels, embedding_size=row.embed,
                                   cell=row.cell, hidden_size=row.hidden, num_layers=row.layers, bidirectional=True))
    return Seq2Seq(Seq2SeqConfig(src_vocab_size=row.vocab, tgt_vocab_size=row.vocab, cell=row.cell,
                                 embedding_size=row.embed, hidden_size=row.hidden, num_layers=row.layers,
                                 bidirectional=True, dropout=0.0, attention="luong", score="general"))


def keras_model(keras, row: Row):
    """The Keras functional model of the same layers and shapes (Keras' default initialisers).

    Layers are named so that ``peer_profile.py`` can time parts of the model alone: ``embedding``,
    ``recurrent_0`` ... and ``output`` (LM); ``source_embedding``, ``target_embedding``, ``encoder``,
    ``decoder``, ``keys``, ``attention``, ``combine`` and ``output`` (seq2seq).
    """
    L = keras.layers
    cell = {"lstm": L.LSTM, "gru": L.GRU}[row.cell]  # GRU: reset_after=True, torch's equations and biases
    if row.kind == "lm":
        x = keras.Input(batch_shape=(row.batch, row.seq), dtype="int32")  # stateful layers need a fixed batch
        h = L.Embedding(row.vocab, row.embed, name="embedding")(x)
        for i in range(row.layers):
            h = cell(row.hidden, return_sequences=True, stateful=True, name=f"recurrent_{i}")(h)
        return keras.Model(x, L.Dense(row.vocab, name="output")(h))
    if row.kind in ("classifier", "tagger"):
        x = keras.Input(shape=(row.seq,), dtype="int32")
        h = L.Embedding(row.vocab, row.embed)(x)
        for i in range(row.layers):
            sequences = row.kind == "tagger" or i < row.layers - 1  # the classifier's top layer: final states
            h = L.Bidirectional(cell(row.hidden, return_sequences=sequences))(h)
        return keras.Model(x, L.Dense(row.labels, name="output")(h))
    src_len, tgt_len = row.seq
    H = row.hidden
    src = keras.Input(shape=(src_len,), dtype="int32")
    tgt = keras.Input(shape=(tgt_len,), dtype="int32")
    memory, h_fwd, h_bwd = L.Bidirectional(cell(H // 2, return_sequences=True, return_state=True), name="encoder")(
        L.Embedding(row.vocab, row.embed, name="source_embedding")(src))  # (B, S, H), (B, H/2), (B, H/2)
    start = L.Concatenate()([h_fwd, h_bwd])  # (B, H): the copy bridge
    dec = cell(H, return_sequences=True, name="decoder")(
        L.Embedding(row.vocab, row.embed, name="target_embedding")(tgt), initial_state=[start])  # (B, T, H)
    keys = L.Dense(H, use_bias=False, name="keys")(memory)  # W m_s, once per source
    context = L.Attention(use_scale=False, score_mode="dot", name="attention")([dec, memory, keys])  # q, v, k
    feat = L.Dense(H, activation="tanh", use_bias=False, name="combine")(
        L.Concatenate()([context, dec]))  # tanh(W_c [c; h])
    return keras.Model([src, tgt], L.Dense(row.vocab, name="output")(feat))


def parameter_counts(torch_model: nn.Module, keras_model_) -> dict[str, Any]:
    """Both counts, checked: they differ only by torch's second LSTM bias (``b_hh``, 4H per layer and
    direction), which Keras folds into its one bias. Keras' GRU (``reset_after=True``) keeps both, as torch."""
    ours = sum(p.numel() for p in torch_model.parameters())
    theirs = int(sum(np.prod(v.shape) for v in keras_model_.trainable_weights))
    extra = sum(m.num_layers * m.num_directions * 4 * m.hidden_size
                for m in torch_model.modules() if isinstance(m, Recurrent) and m.mode == "lstm")
    if ours - theirs != extra:
        raise AssertionError(f"the two models differ: rnnkit has {ours:,} parameters, Keras {theirs:,}; "
                             f"expected a difference of {extra:,} (LSTM b_hh)")
    return {"rnnkit": ours, "keras": theirs, "difference": ours - theirs,
            "explained": "torch's LSTM has two bias vectors, Keras one (4H per layer and direction)" if extra
            else "equal"}


# ------------------------------------------------------------------ training


def rnnkit_steps(model: nn.Module, source: Callable[[], Any], steps: int) -> Callable[[], None]:
    """``steps`` training steps through rnnkit's Trainer (no evaluation, no files)."""
    cfg = TrainConfig(max_steps=steps, lr=LR, clip_norm=CLIP, eval_every=10 ** 9, device="cpu")
    return lambda: Trainer(model, cfg, source(), progress=False, log=lambda s: None).fit()


def keras_fit_steps(keras, row: Row, data: list) -> Callable[[], None]:
    """``train_on_batch`` on a compiled model, one call per batch."""
    model = keras_model(keras, row)
    model.compile(optimizer=keras.optimizers.Adam(LR, global_clipnorm=CLIP),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)

    def run() -> None:
        for x, y in data:
            model.train_on_batch(x, y)
    return run


def keras_function_steps(tf, keras, row: Row, data: list) -> tuple[Callable[[], None], Any]:
    """A hand-written ``tf.function`` training step (GradientTape, no XLA); also returns the model."""
    model = keras_model(keras, row)
    opt = keras.optimizers.Adam(LR, global_clipnorm=CLIP)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def run() -> None:
        for x, y in data:
            step(x, y)
    return run, model


def run_row(tf, keras, row: Row, steps: int, rounds: int) -> dict[str, Any]:
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    source, batches = make_batches(row, steps)
    data = keras_data(tf, row, batches)
    model = rnnkit_model(row)
    keras_fn, keras_fn_model = keras_function_steps(tf, keras, row, data)
    params = parameter_counts(model, keras_fn_model)
    contestants = {"rnnkit": rnnkit_steps(model, source, steps),
                   "keras train_on_batch": keras_fit_steps(keras, row, data),
                   "keras tf.function": keras_fn}
    med = median_times(contestants, rounds)
    seq = row.seq[1] if row.kind == "seq2seq" else row.seq
    tokens = row.batch * seq * steps
    speed = {k: round(tokens / v) for k, v in med.items()}
    best_keras = max(("keras train_on_batch", "keras tf.function"), key=lambda k: speed[k])
    ratio = speed["rnnkit"] / speed[best_keras]
    return {"row": row.name, "shape": asdict(row), "parameters": params, "tokens_per_s": speed,
            "keras_best": best_keras, "ratio": round(ratio, 3), "target": row.target,
            "met": ratio >= row.target, "steps_per_round": steps, "rounds": rounds}


# ------------------------------------------------------------------ setup


def import_tensorflow(threads: int, prefix: str = "peer_keras: skipped") -> Optional[tuple[Any, Any]]:
    """``(tensorflow, keras)`` set to ``threads`` intra- and inter-op threads; None when unavailable,
    after printing why (after ``prefix``)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"  # before keras is imported: this compares the TF backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices
    try:
        import tensorflow as tf
        import keras
    except ImportError as e:
        print(f"{prefix}: TensorFlow and Keras 3 are not installed here ({e}).\n"
              "They are an optional dependency of the Keras comparisons only: pip install -e '.[peer]', "
              "preferably in a separate venv (see benchmarks/README.md).")
        return None
    if int(keras.__version__.split(".")[0]) < 3:
        print(f"{prefix}: Keras {keras.__version__} is installed; this benchmark needs Keras 3 "
              "(pip install 'keras>=3').")
        return None
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf, keras


def main() -> None:
    args = parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    imported = import_tensorflow(args.threads)
    if imported is None:
        return
    tf, keras = imported
    steps, rounds = (2, 3) if args.quick else (4, 5)
    results = [run_row(tf, keras, row, steps, rounds) for row in rows(args.quick)]
    out = write_report("peer_keras", args, tensorflow=tf.__version__, keras=keras.__version__,
                       tf_threads={"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                   "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
                       results=results)
    print(f"rnnkit (torch {torch.__version__}) vs Keras {keras.__version__} / TensorFlow {tf.__version__}, "
          f"{args.threads} thread(s); tokens/s, ratio against the faster Keras")
    if args.quick:
        print("--quick: shapes shrunk (rows keep their full-size names and targets)")
    head = f"{'row':30} {'shape':24} {'rnnkit':>8} {'Keras fit':>10} {'Keras fn':>9} {'ratio':>6} {'target':>6}  met"
    print(head)
    print("-" * len(head))
    for r in results:
        s, v = r["shape"], r["tokens_per_s"]
        seq = "x".join(map(str, s["seq"])) if isinstance(s["seq"], (list, tuple)) else s["seq"]
        shape = f"B{s['batch']} T{seq} H{s['hidden']} E{s['embed']}"
        print(f"{r['row']:30} {shape:24} {v['rnnkit']:>8,} {v['keras train_on_batch']:>10,} "
              f"{v['keras tf.function']:>9,} {r['ratio']:>6.2f} {r['target']:>6.1f}  {'yes' if r['met'] else 'NO'}")
    print("parameters (rnnkit / Keras):")
    for r in results:
        p = r["parameters"]
        print(f"  {r['row']:30} {p['rnnkit']:>11,} / {p['keras']:>11,}  {p['explained']}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
