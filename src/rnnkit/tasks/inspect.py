"""``rnnkit inspect``: what the recurrence carries, drawn over the text it reads.

A trained language model reads a text one token at a time; ``trace`` records,
for every layer, the hidden state after each token and the gates its cell
reports by name (an LSTM its input, forget and output gates and its cell, a GRU
its reset and update gates, minGRU its update gate, sLSTM and mLSTM their
stabilised input and forget gates and output gate; see ``rnnkit.nn.CELLS``).
``unit_features`` correlates each hidden unit with simple properties of the
position (inside quotes or brackets, position in the line, start of a word, a
capital, a vowel, ...), and ``draw`` colours each token of the text by
the activation of chosen units, one block per unit and gate — the view that
shows a unit that counts the line, or one that switches on inside quotes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from rnnkit.errors import ConfigError
from rnnkit.nn import CELLS

# mode -> the gates inspect draws (names as each cell's step reports them), from the cell table
GATE_NAMES = {**{name: row.gates for name, row in CELLS.items()}, "rnn_tanh": (), "rnn_relu": ()}


def trace(rnn, x: Tensor) -> list[dict[str, Tensor]]:
    """Run a unidirectional ``Recurrent`` over ``x (T, input_size)`` one reference step at a time; per
    layer a dict of ``(T, H)`` traces: ``hidden`` and the gates the cell reports (``GATE_NAMES``;
    for an LSTM also its ``cell``)."""
    if rnn.bidirectional:
        raise ConfigError("inspect reads unidirectional models (a language model)")
    layers = []
    inp = x.unsqueeze(1)  # (T, 1, I): one row of a batch of one
    for layer in range(rnn.num_layers):
        state = rnn.zero_state(1, x).layer(layer)  # (1, K_i) each
        rec: dict[str, list[Tensor]] = {"hidden": []}
        for x_t in inp.unbind(0):  # (1, I)
            gates: dict[str, Tensor] = {}
            state = rnn.cell_step(layer, 0, x_t, state, gates)
            rec["hidden"].append(state.h[0])
            for name, v in gates.items():
                rec.setdefault(name, []).append(v[0])
        traced = {k: torch.stack(v) for k, v in rec.items()}  # (T, H) each
        layers.append(traced)
        inp = traced["hidden"].unsqueeze(1)
    return layers


def features(tokens: Sequence[str], chars: bool) -> dict[str, list[float]]:
    """Simple per-position properties of a token sequence, as 0/1 (or scaled position) lists."""
    out: dict[str, list[float]] = {k: [] for k in (
        "inside quotes", "inside brackets", "position in line", "start of line", "start of word",
        "space or newline", "capital letter", "vowel", "punctuation")}
    quote = bracket = 0
    col = 0
    prev = "\n"
    for tok in tokens:
        if tok in ('"', "“", "”"):
            quote ^= 1
        if tok in "([{":
            bracket += 1
        out["inside quotes"].append(float(quote))
        out["inside brackets"].append(float(bracket > 0))
        if tok in ")]}" and bracket:
            bracket -= 1
        out["position in line"].append(float(col))
        out["start of line"].append(float(prev == "\n"))
        out["start of word"].append(float(prev.isspace() and not tok.isspace()) if chars else 1.0)
        out["space or newline"].append(float(tok.isspace()))
        out["capital letter"].append(float(tok[:1].isupper()))
        out["vowel"].append(float(tok.lower() in "aeiou" and len(tok) == 1))
        out["punctuation"].append(float(all(not ch.isalnum() and not ch.isspace() for ch in tok) and bool(tok)))
        col = 0 if tok == "\n" else col + (len(tok) if chars else 1)
        prev = tok
    return {k: v for k, v in out.items() if len(set(v)) > 1}  # a constant feature correlates with nothing


def unit_features(hidden: Tensor, feats: dict[str, list[float]], top: int = 3) -> dict[str, list[tuple[int, float]]]:
    """For each feature, the ``top`` units whose activation (``hidden (T, H)``) correlates most with it:
    ``(unit, Pearson r)`` sorted by ``|r|``."""
    h = hidden - hidden.mean(0)  # (T, H)
    out = {}
    for name, values in feats.items():
        f = torch.tensor(values, dtype=hidden.dtype)
        f = f - f.mean()
        r = (h * f.unsqueeze(1)).sum(0) / (h.norm(dim=0) * f.norm()).clamp_min(1e-12)  # (H,)
        order = r.abs().argsort(descending=True)[:top]
        out[name] = [(int(u), round(float(r[u]), 3)) for u in order]
    return out


def draw(tokens: Sequence[str], rows: list[tuple[str, Tensor, tuple[float, float]]], path: str | Path,
         width: int = 80, title: str = "") -> None:
    """Colour each token by a value, one block per row ``(label, values (T,), (vmin, vmax))``."""
    import io

    from rnnkit.checkpoint import atomic_write_bytes
    from rnnkit.plots import _pyplot

    plt = _pyplot()
    # lay the tokens out in lines of at most `width` characters; a newline token starts a new line
    places, x, y = [], 0, 0
    for tok in tokens:
        shown = "↵" if tok == "\n" else tok
        if x + len(shown) > width:
            x, y = 0, y + 1
        places.append((x, y, shown))
        x += len(shown)
        if tok == "\n":
            x, y = 0, y + 1
    lines = y + 1
    block = lines + 1.6
    fig = plt.figure(figsize=(0.11 * width + 0.4, 0.2 * block * len(rows) + 0.5), dpi=110)
    ax = fig.add_axes([0.01, 0.01, 0.98, 0.98 - 0.3 / fig.get_figheight()])
    ax.set_xlim(0, width)
    ax.set_ylim(block * len(rows), 0)
    ax.axis("off")
    cmap = plt.get_cmap("coolwarm")
    from matplotlib.patches import Rectangle

    for r, (label, values, (lo, hi)) in enumerate(rows):
        top = r * block
        ax.text(0, top + 0.8, label, fontsize=8, weight="bold", va="bottom")
        for (px, py, shown), v in zip(places, values.tolist()):
            frac = (v - lo) / (hi - lo) if hi > lo else 0.5
            ax.add_patch(Rectangle((px, top + 1 + py), len(shown), 1, color=cmap(min(max(frac, 0.0), 1.0)), lw=0))
            ax.text(px + 0.05, top + 1.8 + py, shown, fontsize=7, family="monospace")
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class Reading:
    """A language model's traces over a text: what ``rnnkit inspect`` draws and ``/api/inspect`` returns."""

    tokens: list[str]
    truncated: bool          # the text had more than max_tokens tokens
    layer: int               # the layer read, counted from 0
    traced: dict[str, Tensor]  # (T, H) traces of that layer: "hidden" and the gates
    correlations: dict[str, list[tuple[int, float]]]
    units: list[int]         # the units to show: given, or the best unit of each feature (up to 4)


# the JSON API's and the command line's wording of bad input (options by their API names)
WORDING = {
    "unknown_tokens": "the text has {count} token(s) the model's vocabulary lacks: {tokens}",
    "label_needed": "this model reads text for a label: give label, one of {labels}",
    "unknown_label": "this model reads text for a label: give label, one of {labels} (not {label!r})",
    "no_label": "this model is not conditioned on a label: leave label out",
}


def read_text(opened, text: str, *, units: Optional[Sequence[int]] = None, layer: int = -1,
              label: Optional[str] = None, max_tokens: int = 400) -> Reading:
    """Trace an opened language-model run (``rnnkit.tasks.lm.load_run``) over ``text``.

    ``ConfigError`` (with the option's name as in the JSON API and ``--option`` on the command
    line) for fewer than two tokens, tokens the vocabulary lacks, a label missing or not wanted,
    a layer or unit out of range.
    """
    from rnnkit.tasks.lm import check_known, label_index

    config, model, vocab, tok, data = opened
    all_tokens = tok.tokenize(text.lower() if data.lower else text)
    tokens = all_tokens[:max_tokens]
    if len(tokens) < 2:
        raise ConfigError("text: give at least two tokens to inspect")
    check_known(tokens, vocab, WORDING)
    index = label_index(config, label, WORDING)
    lab = None if index is None else torch.tensor([index])
    n_layers, H = model.rnn.num_layers, model.rnn.hidden_size
    if not -n_layers <= layer < n_layers:
        raise ConfigError(f"layer: must be in [0, {n_layers}) (or negative from the top), got {layer}")
    if units is not None:
        if not units:
            raise ConfigError("units: give at least one unit (or leave units out)")
        bad = [u for u in units if not 0 <= u < H]
        if bad:
            raise ConfigError(f"units: must be in [0, {H}), got {bad}")
        units = list(dict.fromkeys(units))  # in order, each once
    ids = torch.tensor(vocab.encode(tokens)).unsqueeze(0)  # (1, T)
    with torch.inference_mode():
        traced = trace(model.rnn, model.recurrent_inputs(ids, lab)[0])[layer]  # (T, H) each
    corr = unit_features(traced["hidden"], features(tokens, data.tokenizer == "char"))
    if units is None:  # the best unit of each feature, first seen first
        seen: list[int] = []
        for pairs in corr.values():
            if pairs and pairs[0][0] not in seen:
                seen.append(pairs[0][0])
        units = seen[:4] or [0]
    return Reading(tokens, len(all_tokens) > max_tokens, layer % n_layers, traced, corr, list(units))


def inspect_run(run: str | Path, text: str, out: str | Path, units: Optional[Sequence[int]] = None,
                layer: int = -1, label: Optional[str] = None, max_tokens: int = 400) -> dict[str, Any]:
    """Trace a language-model run over ``text``, draw the chosen units (and gates) into ``out`` (PNG)
    and return ``{"layer", "units", "correlations", "tokens"}``."""
    from rnnkit.tasks.lm import load_run

    opened = load_run(run)
    if opened[0].get("task") not in (None, "lm"):
        raise ConfigError(f"{run} holds a {opened[0].get('task')!r} model; inspect reads language models")
    r = read_text(opened, text, units=units, layer=layer, label=label, max_tokens=max_tokens)
    rows = [(f"unit {u} (hidden state, layer {r.layer})", r.traced["hidden"][:, u], (-1.0, 1.0)) for u in r.units]
    for gate in GATE_NAMES.get(opened[1].rnn.mode, ()):
        rows.append((f"unit {r.units[0]}: {gate}", r.traced[gate][:, r.units[0]], (0.0, 1.0)))
    draw(r.tokens, rows, out, title=f"{Path(run).name}: blue = low, red = high")
    return {"layer": r.layer, "units": r.units, "correlations": r.correlations, "tokens": len(r.tokens)}
