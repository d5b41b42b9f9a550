"""The lecture's first example: a character RNN learns "hello".

Vocabulary ``h, e, l, o``; one-hot input; a plain tanh RNN
``h_t = tanh(W_hh h_{t-1} + W_xh x_t)``, ``y_t = W_hy h_t`` (no biases, as on
the slide), softmax.  Inputs ``h e l l`` must predict ``e l l o`` — the two
``l`` inputs need different answers, so the hidden state has to remember.
"""
from __future__ import annotations

from typing import Callable

import torch

from rnnkit.losses import sequence_nll
from rnnkit.models import LanguageModel, LanguageModelConfig

VOCAB = ["h", "e", "l", "o"]


def _table(model: LanguageModel, ids: torch.Tensor) -> list[str]:
    """One line per step: input char, predicted distribution, predicted char."""
    with torch.no_grad():
        logits, _ = model(ids.unsqueeze(0))
    probs = logits.softmax(-1)[0]  # (T, V)
    lines = ["  in  | " + "  ".join(f"p({c})" for c in VOCAB) + " | out"]
    for t, row in enumerate(probs.tolist()):
        best = VOCAB[max(range(len(row)), key=row.__getitem__)]
        lines.append(f"  {VOCAB[int(ids[t])]!r:3} | " + "  ".join(f"{p:.2f}" for p in row) + f" | {best!r}")
    return lines


def hello(word: str = "hello", hidden_size: int = 3, steps: int = 100, lr: float = 0.1, seed: int = 0,
          log: Callable[[str], None] = print) -> str:
    """Train on ``word`` and return what the model writes from its first character (greedy)."""
    vocab = sorted(set(word), key=word.index) if word != "hello" else VOCAB
    if len(word) < 2:
        raise ValueError("the word needs at least two characters")
    torch.manual_seed(seed)
    model = LanguageModel(LanguageModelConfig(
        vocab_size=len(vocab), cell="rnn", hidden_size=hidden_size, num_layers=1,
        embedding_size=None, bias=False, backend="reference"))
    ids = torch.tensor([vocab.index(c) for c in word])
    x, y = ids[:-1], ids[1:]  # "hell" -> "ello"
    log(f"vocabulary {vocab}; one-hot inputs {list(word[:-1])} -> targets {list(word[1:])}")
    log(f"h_t = tanh(W_hh h_(t-1) + W_xh x_t), y_t = W_hy h_t; hidden size {hidden_size}, "
        f"{sum(p.numel() for p in model.parameters())} weights")
    log("before training:")
    for line in _table(model, x):
        log(line)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(1, steps + 1):
        logits, _ = model(x.unsqueeze(0))  # (1, T, V)
        total, count = sequence_nll(logits, y.unsqueeze(0))
        loss = total / count
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1 or step % max(1, steps // 10) == 0:
            pred = "".join(vocab[i] for i in logits.argmax(-1)[0].tolist())
            log(f"step {step:4d}  loss {loss.item():.4f}  predicts {pred!r}")
    log("after training:")
    for line in _table(model, x):
        log(line)
    # generate greedily from the first character, stepping the cell one token at a time
    out, state, tok = [int(ids[0])], None, ids[:1].unsqueeze(0)  # (1, 1)
    with torch.no_grad():
        for _ in range(len(word) - 1):
            logits, state = model.step(tok, state)
            tok = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
            out.append(int(tok))
    text = "".join(vocab[i] for i in out)
    log(f"generated from {word[0]!r}: {text!r}")
    return text
