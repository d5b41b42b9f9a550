"""Training step in fp32 vs bf16 autocast on CPU, the same model and batch, in one process.

``--precision bf16`` wraps the forward in ``torch.autocast("cpu", torch.bfloat16)``: matrix
products and oneDNN's LSTM kernel run in bf16, weights, optimizer state and the loss stay
float32.  Whether that pays depends on the CPU: with bf16 dot products (AVX512_BF16, AMX) the
products run several times faster; without them they are emulated and slower.

    python benchmarks/precision.py            # a character LM (LSTM 2x512) and the CMUdict seq2seq
    python benchmarks/precision.py --quick    # small shapes, seconds

A step is forward, loss, backward and Adam, as the trainer takes it.  Each model is built
twice from one seed; the contestants alternate round by round and the medians give tokens/s
and the ratio bf16 / fp32.  The first step's losses of the two are reported side by side as a
check that bf16 computes the same thing to its precision.  Writes
benchmarks/results/precision[-quick].json.
"""
from __future__ import annotations

from pathlib import Path

import torch

from rnnkit.models import LanguageModel, LanguageModelConfig, Seq2Seq, Seq2SeqConfig
from _common import median_times, parser, write_report


def _cpu_bf16_flags() -> list[str]:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({f for f in flags if "bf16" in f})


def lm_case(quick: bool):
    H, T = (256, 64) if quick else (512, 128)
    cfg = LanguageModelConfig(vocab_size=65, embedding_size=64, hidden_size=H, num_layers=2, dropout=0.3)
    B = 64
    x = torch.randint(0, 65, (B, T + 1))

    def loss(model):
        logits, _ = model(x[:, :-1])  # (B, T, V)
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, 65), x[:, 1:].reshape(-1))

    return f"character LM, LSTM 2x{H}, batch {B} x {T}", (lambda: LanguageModel(cfg)), loss, B * T


def seq2seq_case(quick: bool):
    H = 256 if quick else 512
    cfg = Seq2SeqConfig(src_vocab_size=33, tgt_vocab_size=73, src_pad_id=0, tgt_pad_id=0, tgt_bos_id=2,
                        tgt_eos_id=3, cell="lstm", embedding_size=128, hidden_size=H, num_layers=2,
                        bidirectional=True, dropout=0.2, attention="luong", score="general")
    B, S, T = 128, 9, 9  # CMUdict-sized words and pronunciations
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(4, 33, (B, S), generator=g), torch.randint(4, 73, (B, T), generator=g)
    lengths = torch.full((B,), S)

    def loss(model):
        logits, _ = model(src, lengths, tgt)  # (B, T, V)
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, 73), tgt.reshape(-1))

    return f"seq2seq, BiLSTM 2x{H} + Luong attention, batch {B}, {S}+{T} tokens", (lambda: Seq2Seq(cfg)), loss, B * T


def run(name: str, build, loss_fn, tokens: int, rounds: int) -> dict:
    models = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build()
        models[precision] = (model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True))

    def step(precision: str):
        model, opt = models[precision]

        def go():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = loss_fn(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss)
        return go

    first = {p: step(p)() for p in models}  # both from the same weights
    med = median_times({p: step(p) for p in models}, rounds)
    return {"model": name, "tokens_per_s": {p: round(tokens / t) for p, t in med.items()},
            "ratio_bf16_vs_fp32": round(med["fp32"] / med["bf16"], 3),
            "first_step_loss": {p: round(v, 5) for p, v in first.items()}, "rounds": rounds}


def main() -> None:
    args = parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 10
    results = [run(*make(args.quick), rounds=rounds) for make in (lm_case, seq2seq_case)]
    out = write_report("precision", args, cpu_bf16_flags=_cpu_bf16_flags(), results=results)
    print(f"CPU bf16 flags: {', '.join(_cpu_bf16_flags()) or 'none'}")
    print(f"{'model':58} {'fp32 tok/s':>10} {'bf16 tok/s':>10} {'ratio':>6}  first loss fp32 / bf16")
    for r in results:
        t, l = r["tokens_per_s"], r["first_step_loss"]
        print(f"{r['model']:58} {t['fp32']:>10,} {t['bf16']:>10,} {r['ratio_bf16_vs_fp32']:>6.2f}  "
              f"{l['fp32']:.4f} / {l['bf16']:.4f}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
