"""Seq2seq training batches bucketed by source length alone vs by (source, target) length.

One process, the two orderings interleaved round by round, medians reported as a ratio.

    python benchmarks/seq2seq_pads.py                                  # bundled CMUdict (20k words)
    python benchmarks/seq2seq_pads.py --data $(rnnkit data get cmudict)/cmudict.dict --precision bf16
    python benchmarks/seq2seq_pads.py --quick                          # small model, under a minute

The same examples (one bucketing pool: ``batch * 50`` training pairs of the CMUdict
split) are cut into batches twice: sorted by source length (what rnnkit did before)
and by source then target length (what ``Codec.batches`` does now).  Both orderings
hold the same pairs and the same source lengths per batch, so the encoder does the
same work; only the decoder's pads differ (it runs over every batch's longest target).
Two copies of the README's CMUdict model, same initial weights, each train one pass
over their batches per round.

Writes benchmarks/results/seq2seq_pads[-quick].json and prints a table.
"""
from __future__ import annotations

import contextlib

import torch

from rnnkit.data import bundled_path
from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.tasks.seq2seq import Seq2SeqDataConfig, _build_codec, read_splits
from _common import median_times, parser, write_report

POOL = 50  # SequenceBatches' default pool: batches are cut from chunks of batch * POOL examples


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--data", default=str(bundled_path("cmudict_20k")), help="a CMUdict file [bundled 20k words]")
    ap.add_argument("--batch", type=int, default=128, help="batch size [128]")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="CPU autocast [fp32]")
    ap.add_argument("--rounds", type=int, default=3, help="timed passes per ordering [3]")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hidden, embed, batch = (128, 32, 32) if args.quick else (512, 128, args.batch)

    data = Seq2SeqDataConfig(train=args.data, format="cmudict")
    train, _, _ = read_splits(data)
    codec = _build_codec(train, data, cmudict=True)
    src, tgt = codec.encode(train)
    perm = torch.randperm(len(src), generator=torch.Generator().manual_seed(0))[: batch * POOL].tolist()
    src, tgt = [src[i] for i in perm], [tgt[i] for i in perm]
    joint = codec.batches(src, tgt, batch, seed=0, shuffle=True)
    plain = codec.batches(src, tgt, batch, seed=0, shuffle=True)
    plain.sort_key = lambda i: len(src[i])  # the source length alone
    orders = {"source length": plain, "source, then target length": joint}
    batches = {k: list(b.epoch_batches()) for k, b in orders.items()}

    def padded(bs, side):
        return sum(int(getattr(b, side).numel()) for b in bs)

    tgt_real = sum(len(t) + 1 for t in tgt)  # + eos: the decoder's steps
    v, w = codec.src_vocab, codec.tgt_vocab
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab_size=len(v), tgt_vocab_size=len(w), src_pad_id=v.pad_id, tgt_pad_id=w.pad_id,
                        tgt_bos_id=w.bos_id, tgt_eos_id=w.eos_id, embedding_size=embed, hidden_size=hidden,
                        num_layers=2, bidirectional=True, dropout=0.2, attention="luong", score="general",
                        label_smoothing=0.1)
    first = Seq2Seq(cfg)
    models = {k: Seq2Seq(cfg) for k in batches}
    for m in models.values():
        m.load_state_dict(first.state_dict())

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()

    def one_pass(name):
        model, bs = models[name], batches[name]
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run():
            for b in bs:
                with autocast():
                    out = model.loss(b)
                opt.zero_grad(set_to_none=True)
                (out.loss / out.num_tokens).backward()
                opt.step()
        return run

    med = median_times({k: one_pass(k) for k in batches}, args.rounds)
    rows = {}
    for k, bs in batches.items():
        rows[k] = {"seconds_per_pass": round(med[k], 3), "target_tokens_per_s": round(tgt_real / med[k]),
                   "batches": len(bs), "decoder_pad_share": round(1 - tgt_real / padded(bs, "decoder_inputs"), 4),
                   "source_pad_share": round(1 - sum(map(len, src)) / padded(bs, "inputs"), 4)}
    ratio = med["source length"] / med["source, then target length"]
    print(f"{len(src):,} CMUdict pairs ({args.data}), batch {batch}, hidden {hidden}, {args.precision}, "
          f"{args.threads} threads")
    print(f"{'bucketed by':<28} {'s/pass':>8} {'tgt tok/s':>10} {'decoder pads':>13} {'source pads':>12}")
    for k, r in rows.items():
        print(f"{k:<28} {r['seconds_per_pass']:>8.2f} {r['target_tokens_per_s']:>10,} "
              f"{r['decoder_pad_share']:>13.1%} {r['source_pad_share']:>12.1%}")
    print(f"speed-up of (source, target) bucketing: {ratio:.2f}x")
    out = write_report("seq2seq_pads", args, data=args.data, pairs=len(src), batch=batch, hidden=hidden,
                       precision=args.precision, rounds=args.rounds, orderings=rows, speedup=round(ratio, 3))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
