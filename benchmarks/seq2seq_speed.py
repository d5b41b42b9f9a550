"""Seq2seq speed: the fused Luong training path vs the step loop, and batched beam search vs one sentence at a time.

One process, contestants interleaved round by round, medians reported as ratios.

    python benchmarks/seq2seq_speed.py                       # random weights, Multi30k-like shapes
    python benchmarks/seq2seq_speed.py --run runs/m30k-luong --src $(rnnkit data get multi30k)/test_2016_flickr.de
    python benchmarks/seq2seq_speed.py --quick               # small shapes, under a minute

Training: the same model (Luong ``general`` attention, no input feeding) trained
with the decoder recurrence fused over all target steps and one batched
attention product, vs the same weights stepping the decoder one token at a
time (what input feeding or Bahdanau attention needs).  Decoding: beam search
over a batch of sentences at once vs one sentence per call, same beam, same
limits; with ``--run`` a trained model translates real sentences.

Writes benchmarks/results/seq2seq_speed[-quick].json and prints a table.
"""
from __future__ import annotations

from pathlib import Path

import torch

from rnnkit.batching import seq2seq_batch
from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.tasks.seq2seq import Translator, translate_ids
from _common import median_times, parser, write_report


class SteppedSeq2Seq(Seq2Seq):
    """The same model, forced through the step loop."""

    fuses_decoder = False


def training(vocab: int, embed: int, hidden: int, batch: int, length: int, steps: int, rounds: int) -> dict:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, embedding_size=embed, hidden_size=hidden,
                        attention="luong", score="general", dropout=0.0)
    fused = Seq2Seq(cfg)
    stepped = SteppedSeq2Seq(cfg)
    stepped.load_state_dict(fused.state_dict())
    g = torch.Generator().manual_seed(1)
    batches = [seq2seq_batch(torch.randint(4, vocab, (batch, length), generator=g).tolist(),
                             torch.randint(4, vocab, (batch, length), generator=g).tolist(), 0, 0, 1, 2)
               for _ in range(steps)]

    def train(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run():
            for b in batches:
                out = model.loss(b)
                opt.zero_grad(set_to_none=True)
                (out.loss / out.num_tokens).backward()
                opt.step()
        return run

    med = median_times({"fused decoder (Luong, no input feeding)": train(fused),
                         "step loop (same weights)": train(stepped)}, rounds)
    tokens = batch * (length + 1) * steps
    base = med["step loop (same weights)"]
    return {"shape": dict(vocab=vocab, embed=embed, hidden=hidden, batch=batch, tgt_len=length + 1),
            "target_tokens_per_s": {k: round(tokens / v) for k, v in med.items()},
            "ratio_vs_step_loop": {k: round(base / v, 3) for k, v in med.items()}, "rounds": rounds}


def decoding(model: Seq2Seq, src: list[list[int]], pad_id: int, beam: int, batch: int, rounds: int) -> dict:
    model.eval()
    med = median_times({
        f"batched beam search (batch {batch})": lambda: translate_ids(model, src, pad_id, beam=beam,
                                                                      batch_size=batch),
        "one sentence at a time": lambda: translate_ids(model, src, pad_id, beam=beam, batch_size=1),
    }, rounds)
    base = med["one sentence at a time"]
    return {"beam": beam, "sentences": len(src),
            "sentences_per_s": {k: round(len(src) / v, 1) for k, v in med.items()},
            "ratio_vs_one_at_a_time": {k: round(base / v, 2) for k, v in med.items()}, "rounds": rounds}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--run", type=Path, help="a trained seq2seq run folder for the decoding benchmark")
    ap.add_argument("--src", type=Path, help="source sentences (one per line) for --run")
    ap.add_argument("--sentences", type=int, default=200, help="sentences to decode [200]")
    ap.add_argument("--beam", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        train_shape = dict(vocab=1000, embed=64, hidden=128, batch=32, length=12, steps=3, rounds=3)
        n, rounds = 32, 2
    else:
        train_shape = dict(vocab=8000, embed=256, hidden=512, batch=64, length=16, steps=4, rounds=5)
        n, rounds = args.sentences, 3
    train_result = training(**train_shape)
    if args.run:
        t = Translator(args.run)
        lines = args.src.read_text(encoding="utf-8").splitlines()[:n]
        model, pad = t.model, t.codec.src_vocab.pad_id
        src = [t.codec.src_ids(line) for line in lines]
        what = f"trained run {args.run}, first {len(src)} lines of {args.src}"
    else:
        torch.manual_seed(0)
        model = Seq2Seq(Seq2SeqConfig(src_vocab_size=train_shape["vocab"], tgt_vocab_size=train_shape["vocab"],
                                      embedding_size=train_shape["embed"], hidden_size=train_shape["hidden"]))
        pad = 0
        g = torch.Generator().manual_seed(2)
        src = [torch.randint(4, train_shape["vocab"], (int(torch.randint(5, 25, (1,), generator=g)),),
                             generator=g).tolist() for _ in range(n)]
        what = f"random weights, {n} random sentences of 5-24 tokens"
    decode_result = decoding(model, src, pad, args.beam, 64, rounds)
    decode_result["data"] = what
    out = write_report("seq2seq_speed", args, training=train_result, decoding=decode_result)
    print(f"training, {train_result['shape']}")
    for k, v in train_result["target_tokens_per_s"].items():
        print(f"  {k:44} {v:>9,} target tokens/s  {train_result['ratio_vs_step_loop'][k]:>6.2f}x")
    print(f"decoding, beam {args.beam}, {what}")
    for k, v in decode_result["sentences_per_s"].items():
        print(f"  {k:44} {v:>9} sentences/s  {decode_result['ratio_vs_one_at_a_time'][k]:>6.2f}x")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
