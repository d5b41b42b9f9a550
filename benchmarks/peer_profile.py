"""Where the training step's time goes, rnnkit and Keras 3, on the char-LM and seq2seq rows of peer_keras.py.

The rows (``--rows``, default all): ``lm-lstm-256``, ``lm-gru-256``, ``lm-lstm-512``, ``lm-gru-512`` (the
char LMs) and ``seq2seq-gru-luong``, each the model and batch of ``peer_keras.py`` (its builders and
batches, imported from it). Each side is timed whole and in three parts, every contestant of a row interleaved
round by round (``_common.timings``), all in seconds per training step:

* ``whole``: the training step as ``peer_keras.py`` times it: rnnkit through its ``Trainer`` (a new
  one for each round's steps); Keras through ``train_on_batch`` and through a ``tf.function`` step,
  the faster of the two;
* ``recurrent``: the recurrent stack alone, forward and backward of the sum of its outputs on fixed
  inputs (the model's own embedded batch): the LM's stacked layers with the carried state (rnnkit's
  ``Recurrent``; Keras' stateful ``LSTM``/``GRU`` layers); for seq2seq the bidirectional encoder, the
  copy bridge and the decoder;
* ``output``: the output side alone on fixed hidden states, forward and backward: the output
  ``Linear``/``Dense`` and the token-mean softmax cross-entropy; for seq2seq also what lies between
  the decoder and it: the attention keys, Luong scores, context and ``tanh(W_c [c; h])``;
* ``optimizer``: the update alone: global-norm clipping at 5 and Adam on a copy of the model's
  parameters, with the gradients of one real step (rnnkit: the ``Trainer``'s own optimizer; Keras:
  ``Adam(global_clipnorm=5).apply_gradients`` in a ``tf.function``, sparse embedding gradients as
  TensorFlow computes them);
* ``rest``: the whole less the three parts: embedding lookups, the loss glue, the training loop's
  own work (rnnkit's: the ``Trainer``'s, its construction included).  Each part timed alone pays
  its own call (a ``tf.function`` call each on the Keras side), so the parts need not add up to the
  whole and ``rest`` can come out negative.

Each part is reported in seconds, as a fraction of its side's whole, and as rnnkit's speed over
Keras' (Keras' seconds over rnnkit's in each round: the median and range of the per-round ratios;
``rest``: the ratio of medians). ``excess_s``: how many seconds per step rnnkit spends on that part
beyond Keras' time divided by the row's target ratio (a negative Keras ``rest`` counted as 0);
positive where the part is short of the target, and ``shortest`` names the part with the most.

For rnnkit alone, one call of the whole step is profiled (``torch.profiler``): self CPU time by op,
grouped into matmul, elementwise, copies, optimizer and other (see ``_common.op_group``), with the
top ops, and the share of the timed step that the ops' self time covers (``of_timed``: below 1 by
the Python between ops; the profiler's own cost per op pushes it up).

Without TensorFlow and Keras 3 it says so and measures the rnnkit side alone.

    python benchmarks/peer_profile.py            # full shapes (the peer venv: see docs/benchmarks.md)
    python benchmarks/peer_profile.py --quick    # small shapes, under a minute

Writes benchmarks/results/peer_profile[-quick].json and prints a table per row.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Optional

import torch
from torch import nn

import peer_keras as pk
from _common import op_breakdown, parser, show_breakdown, show_spread, timings, write_report
from rnnkit.losses import sequence_nll
from rnnkit.models._inputs import check_padded
from rnnkit.models.seq2seq import Seq2SeqState
from rnnkit.trainer import OPTIMIZERS, TrainConfig

PROFILED = {"lm-lstm-256": "char LM, LSTM 256", "lm-gru-256": "char LM, GRU 256",
            "lm-lstm-512": "char LM, LSTM 512", "lm-gru-512": "char LM, GRU 512",
            "seq2seq-gru-luong": "GRU seq2seq, Luong attention"}
PARTS = ("whole", "recurrent", "output", "optimizer")
KERAS_WHOLE = ("keras train_on_batch", "keras tf.function")


def repeat(fn: Callable[[], Any], times: int) -> Callable[[], None]:
    """``fn`` called ``times`` times: a part timed over as many calls as the whole has steps."""
    def go() -> None:
        for _ in range(times):
            fn()
    return go


# ------------------------------------------------------------------ rnnkit


def rnnkit_parts(row: pk.Row, model: nn.Module, batch) -> dict[str, Callable[[], Any]]:
    """One call each of the recurrent stack, the output side and the optimizer update, on fixed inputs
    taken from ``model`` on ``batch`` (gradients set to None first, as the ``Trainer`` does)."""
    torch.manual_seed(0)
    if row.kind == "lm":
        x = model.recurrent_inputs(batch.inputs).detach().requires_grad_()  # (B, T, E)
        with torch.no_grad():
            hidden, carry = model.rnn(x)
        inputs, h = [x], hidden.detach().requires_grad_()  # (B, T, H)
        features = [h]

        def recurrent() -> None:
            out, _ = model.rnn(x, state=carry)
            out.sum().backward()

        def head():
            return model.out(h)
    else:
        lengths, mask = check_padded(batch.inputs, batch.lengths, None, what="source token")
        mask = mask if mask is not None else torch.ones_like(batch.inputs, dtype=torch.bool)
        xs = model.src_embed(batch.inputs).detach().requires_grad_()  # (B, S, E)
        xt = model.tgt_embed(batch.decoder_inputs).detach().requires_grad_()  # (B, T, E)

        def run_stack():
            memory, final = model.encoder(xs, lengths=lengths)  # (B, S, H)
            dec, _ = model.decoder(xt, state=model._bridge(final))  # (B, T, H)
            return memory, dec

        with torch.no_grad():
            memory, dec = run_stack()
        inputs = [xs, xt]
        memory, dec = memory.detach().requires_grad_(), dec.detach().requires_grad_()
        features = [memory, dec]

        def recurrent() -> None:
            m, d = run_stack()
            (m.sum() + d.sum()).backward()

        def head():
            state = Seq2SeqState(None, None, memory, model.attention.keys(memory), mask)  # type: ignore[arg-type]
            context, _ = model._attend(dec, state)  # (B, T, H)
            return model.out(torch.tanh(model.combine(torch.cat([context, dec], dim=-1))))  # (B, T, V)

    def clear(tensors) -> None:
        model.zero_grad(set_to_none=True)
        for t in tensors:
            t.grad = None

    def recurrent_step() -> None:
        clear(inputs)
        recurrent()

    def output_step() -> None:
        clear(features)
        total, count = sequence_nll(head(), batch.targets, mask=batch.mask)
        (total / count.clamp(min=1)).backward()

    return {"recurrent": recurrent_step, "output": output_step, "optimizer": rnnkit_update(row, model, batch)}


def rnnkit_update(row: pk.Row, model: nn.Module, batch) -> Callable[[], None]:
    """Clipping and the ``Trainer``'s Adam on a fresh copy of the model, its gradients those of ``batch``."""
    copy = pk.rnnkit_model(row)
    copy.load_state_dict(model.state_dict())
    out = copy.loss(batch)
    (out.loss / out.num_tokens).backward()
    params = [p for p in copy.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS["adam"](params, TrainConfig(max_steps=1, lr=pk.LR, clip_norm=pk.CLIP, device="cpu"))

    def update() -> None:
        nn.utils.clip_grad_norm_(params, pk.CLIP)
        optimizer.step()
    return update


# ------------------------------------------------------------------ Keras


def keras_parts(tf, keras, row: pk.Row, model, x, y) -> dict[str, Callable[[], Any]]:
    """The same three parts through the layers of ``model`` (the ``tf.function`` contestant's), each a
    ``tf.function`` (no XLA) returning its gradients; inputs from the model on the batch ``(x, y)``."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    layer = model.get_layer

    def watched(fn, names, *fixed):
        """A ``tf.function`` of the gradients of ``fn(*fixed)`` for its inputs and the named layers' weights."""
        variables = [v for name in names for v in layer(name).trainable_variables]

        @tf.function(jit_compile=False)
        def step(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                loss = fn(*args)
            return tape.gradient(loss, [*args, *variables])
        return lambda: step(*fixed)

    if row.kind == "lm":
        stack = [f"recurrent_{i}" for i in range(row.layers)]

        def run_stack(h):
            for name in stack:
                h = layer(name)(h, training=True)
            return h

        emb = layer("embedding")(x)
        hidden = run_stack(emb)
        recurrent = watched(lambda e: tf.reduce_sum(run_stack(e)), stack, emb)
        output = watched(lambda h: loss_fn(y, layer("output")(h)), ["output"], hidden)
    else:
        src, tgt = x

        def run_stack(es, et):
            memory, h_fwd, h_bwd = layer("encoder")(es, training=True)
            dec = layer("decoder")(et, initial_state=[tf.concat([h_fwd, h_bwd], -1)], training=True)
            return memory, dec

        def head(memory, dec):
            keys = layer("keys")(memory)
            context = layer("attention")([dec, memory, keys], training=True)
            return layer("output")(layer("combine")(tf.concat([context, dec], -1)))

        es, et = layer("source_embedding")(src), layer("target_embedding")(tgt)
        memory, dec = run_stack(es, et)
        recurrent = watched(lambda a, b: sum(tf.reduce_sum(t) for t in run_stack(a, b)), ["encoder", "decoder"],
                            es, et)
        output = watched(lambda m, d: loss_fn(y, head(m, d)), ["keys", "attention", "combine", "output"],
                         memory, dec)
    return {"recurrent": recurrent, "output": output, "optimizer": keras_update(tf, keras, row, model, x, y)}


def keras_update(tf, keras, row: pk.Row, model, x, y) -> Callable[[], Any]:
    """``apply_gradients`` of a fresh Adam (global-norm clipping) on a copy of the model's weights,
    with the gradients ``model`` has on ``(x, y)``."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    copy = pk.keras_model(keras, row)
    copy.set_weights(model.get_weights())
    opt = keras.optimizers.Adam(pk.LR, global_clipnorm=pk.CLIP)

    @tf.function(jit_compile=False)
    def update(grads):
        opt.apply_gradients(zip(grads, copy.trainable_variables))

    return lambda: update(grads)


# ------------------------------------------------------------------ a row


def part_report(med: dict[str, float], t: dict[str, Any], part: str, keras_whole: Optional[str],
                steps: int, target: float) -> dict[str, Any]:
    """Seconds per step of one part on each side, its fraction of the side's whole, rnnkit's speed
    ratio over Keras, and the excess over Keras' seconds at the target ratio."""
    ours = med[f"rnnkit {part}"] / steps
    out: dict[str, Any] = {"rnnkit_s": ours, "rnnkit_fraction": round(ours / (med["rnnkit whole"] / steps), 4)}
    if keras_whole is None:
        return out
    theirs_key = keras_whole if part == "whole" else f"keras {part}"
    theirs = med[theirs_key] / steps
    out.update(keras_s=theirs, keras_fraction=round(theirs / (med[keras_whole] / steps), 4),
               ratio=dict(t["ratios"][f"rnnkit {part}"][theirs_key]), excess_s=ours - theirs / target)
    out["ratio"].pop("per_round")
    out["ratio"] = {k: round(v, 3) for k, v in out["ratio"].items()}
    return out


def run_row(key: str, row: pk.Row, steps: int, rounds: int, peer: Optional[tuple[Any, Any]]) -> dict[str, Any]:
    torch.manual_seed(0)
    source, batches = pk.make_batches(row, steps)
    model = pk.rnnkit_model(row)
    contestants: dict[str, Callable[[], Any]] = {"rnnkit whole": pk.rnnkit_steps(model, source, steps)}
    contestants.update({f"rnnkit {k}": repeat(fn, steps) for k, fn in rnnkit_parts(row, model, batches[0]).items()})
    versions = {}
    if peer is not None:
        tf, keras = peer
        keras.utils.set_random_seed(0)
        data = pk.keras_data(tf, row, batches)
        keras_fn, keras_fn_model = pk.keras_function_steps(tf, keras, row, data)
        contestants["keras train_on_batch"] = pk.keras_fit_steps(keras, row, data)
        contestants["keras tf.function"] = keras_fn
        parts = keras_parts(tf, keras, row, keras_fn_model, *data[0])
        contestants.update({f"keras {k}": repeat(fn, steps) for k, fn in parts.items()})
        versions["parameters"] = pk.parameter_counts(model, keras_fn_model)
    t = timings(contestants, rounds)
    med = {k: v["median"] for k, v in t["contestants"].items()}
    keras_whole = min(KERAS_WHOLE, key=med.__getitem__) if peer is not None else None
    report = {p: part_report(med, t, p, keras_whole, steps, row.target) for p in PARTS}
    rest = {"rnnkit_s": report["whole"]["rnnkit_s"] - sum(report[p]["rnnkit_s"] for p in PARTS[1:])}
    rest["rnnkit_fraction"] = round(rest["rnnkit_s"] / report["whole"]["rnnkit_s"], 4)
    if keras_whole is not None:
        rest["keras_s"] = report["whole"]["keras_s"] - sum(report[p]["keras_s"] for p in PARTS[1:])
        rest["keras_fraction"] = round(rest["keras_s"] / report["whole"]["keras_s"], 4)
        both = rest["rnnkit_s"] > 0 and rest["keras_s"] > 0  # a ratio means nothing where either is negative
        rest["ratio_of_medians"] = round(rest["keras_s"] / rest["rnnkit_s"], 3) if both else None
        # parts timed alone each pay their own call (a tf.function each on the Keras side), so Keras'
        # rest can come out below 0: counted as 0 here
        rest["excess_s"] = rest["rnnkit_s"] - max(rest["keras_s"], 0.0) / row.target
    report["rest"] = rest
    out: dict[str, Any] = {"row": key, "name": row.name, "shape": asdict(row), "target": row.target,
                           "steps_per_round": steps, "rounds": rounds, "parts": report, **versions}
    if keras_whole is not None:
        out["keras_whole"] = {"best": keras_whole, **{k: med[k] / steps for k in KERAS_WHOLE}}
        out["shortest"] = max(report, key=lambda p: -1e9 if p == "whole" else report[p]["excess_s"])
    out["rnnkit_profile"] = op_breakdown(contestants["rnnkit whole"], per=steps, timed_s=report["whole"]["rnnkit_s"])
    out["timings"] = t
    return out


# ------------------------------------------------------------------ main


def show(r: dict[str, Any]) -> list[str]:
    s, keras = r["shape"], "keras_whole" in r
    seq = "x".join(map(str, s["seq"])) if isinstance(s["seq"], (list, tuple)) else s["seq"]
    lines = [f"{r['row']} ({r['name']}: B{s['batch']} T{seq} H{s['hidden']} E{s['embed']}), target "
             f"{r['target']:.1f}x; ms per step" + (f", Keras whole: {r['keras_whole']['best']}" if keras else "")]
    head = f"  {'part':10} {'rnnkit':>9} {'share':>6}"
    if keras:
        head += f" {'Keras':>9} {'share':>6}  {'rnnkit/Keras [min-max]':24} {'excess':>8}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for part, v in r["parts"].items():
        line = f"  {part:10} {v['rnnkit_s'] * 1e3:>9.2f} {v['rnnkit_fraction']:>6.2f}"
        if keras:
            ratio = show_spread(v["ratio"]) if "ratio" in v else \
                ("-" if v["ratio_of_medians"] is None else f"{v['ratio_of_medians']:.2f} (of medians)")
            excess = "" if part == "whole" else f"{v['excess_s'] * 1e3:>8.2f}"
            line += f" {v['keras_s'] * 1e3:>9.2f} {v['keras_fraction']:>6.2f}  {ratio:24} {excess:>8}"
        lines.append(line)
    if keras:
        lines.append(f"  shortest part: {r['shortest']} (excess: rnnkit's ms beyond Keras' at the target ratio)")
    lines.append("  rnnkit's whole step, torch.profiler:")
    lines += show_breakdown(r["rnnkit_profile"], indent="    ")
    return lines


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--rows", default=",".join(PROFILED),
                    help=f"comma-separated rows to profile [{','.join(PROFILED)}]")
    args = ap.parse_args()
    chosen = [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in PROFILED]
    if unknown:
        ap.error(f"unknown rows {unknown}; choose from {list(PROFILED)}")
    torch.set_num_threads(args.threads)
    peer = pk.import_tensorflow(args.threads, prefix="peer_profile: Keras is missing, the Keras side is skipped")
    steps, rounds = (2, 3) if args.quick else (4, 5)
    by_name = {r.name: r for r in pk.rows(args.quick)}
    results = [run_row(k, by_name[PROFILED[k]], steps, rounds, peer) for k in chosen]
    extra: dict[str, Any] = {"keras_missing": peer is None}
    if peer is not None:
        tf, keras = peer
        extra.update(tensorflow=tf.__version__, keras=keras.__version__,
                     tf_threads={"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                 "inter_op": tf.config.threading.get_inter_op_parallelism_threads()})
    out = write_report("peer_profile", args, parts=list(PARTS) + ["rest"], **extra, results=results)
    who = "rnnkit only (Keras is missing)" if peer is None else \
        f"rnnkit (torch {torch.__version__}) vs Keras {peer[1].__version__} / TensorFlow {peer[0].__version__}"
    print(f"{who}, {args.threads} thread(s); share: of the side's whole step")
    if args.quick:
        print("--quick: shapes shrunk (rows keep their full-size names and targets)")
    for r in results:
        print()
        print("\n".join(show(r)))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
