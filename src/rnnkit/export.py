"""Export a trained run to ONNX, for inference with onnxruntime (or any ONNX runtime) without PyTorch.

``export_onnx(run, out)`` reads the run folder (``config.json``, ``model.safetensors``,
vocabularies), detects the task and writes:

* ``lm``, ``classify``, ``tag``: one graph, ``<stem>.onnx``;
* ``seq2seq``: an encoder ``<stem>.encoder.onnx`` and a one-step decoder
  ``<stem>.decoder.onnx`` that a plain loop drives (greedy, beam, sampling);
* and always ``<stem>.json``: a small sidecar with every graph's input and output
  names, dtypes and shapes, the special ids (pad/bos/eos/unk), label or tag names,
  the model config and how to drive the graphs.  The same JSON is stored in each
  ``.onnx`` file's metadata under the key ``rnnkit``.

With ``int8=True`` (``rnnkit export --int8``) each graph is then quantised by onnxruntime's
``quantize_dynamic``: the weights of its linear layers (MatMul, after each Gemm on constant weights
is written as MatMul + Add) and of its LSTM nodes become int8 (one scale per output channel), and
their inputs are quantised per call at run time.  Embeddings (Gather) stay float, and so do GRU and
plain-RNN nodes, for which onnxruntime has no quantised kernel.  The sidecar's ``int8`` entry says
what was done (absent: a float32 export).

``<stem>`` is ``out`` without a trailing ``.onnx`` (``out`` an existing folder: ``<out>/model``);
missing folders are created and existing files replaced.
Vocabularies and tokenizers are not copied: they stay in the run folder (the sidecar
names it).  Graphs are float32 with dynamic batch and time axes; rows are right-padded
and ``lengths`` gives each row's real tokens (int64, in ``[1, T]``).

Graphs (``B`` batch, ``T`` time, ``S`` source time, ``W`` characters per word,
``L`` layers, ``D`` directions, ``H`` hidden size):

* **lm**: ``tokens (B, T) int64, lengths (B,) int64, [labels (B,) int64], h0 (L, B, H), [c0 (L, B, H)]``
  -> ``logits (B, T, V), h (L, B, H), [c]``.  ``h``/``c`` are the state after each row's
  last real token; feed them back as ``h0``/``c0`` to continue (start from zeros).
  ``labels`` only for a label-conditioned model, ``c0``/``c`` only for an LSTM.
* **classify**: ``tokens (B, T), lengths (B,)`` -> ``logits (B, C), probs (B, C)``
  (and ``attention (B, T)`` with attention pooling).
* **tag**: ``tokens (B, T), lengths (B,), [chars (B, T, W)]`` -> ``emissions (B, T, K)``, and
  for a softmax tagger ``tags (B, T)`` (argmax, -1 at pads).  A CRF tagger exports
  emissions only: Viterbi runs outside the graph with the sidecar's ``crf`` scores
  (``viterbi`` below is a numpy reference).  ``chars`` only with a character encoder:
  each word's character ids, right-padded with the char pad id.
* **seq2seq encoder**: ``src (B, S), src_lengths (B,)`` -> ``h (L, B, H), [c], [feed (B, H)],
  memory (B, S, H), [keys (B, S, A)], mask (B, S) bool`` — the decoder's starting state.
* **seq2seq decoder** (one step): ``token (B,) int64, h, [c], [feed], [memory, keys, mask]``
  -> ``logits (B, V), log_probs (B, V), h_next, [c_next], [feed_next], [attention (B, S)]``.
  ``memory``/``keys``/``mask`` are inputs only with attention; they never change.

A greedy loop over the seq2seq pair (what ``translate_ids(model, src, pad, beam=1)`` does)::

    meta = json.load(open("model.json")); d = meta["decoding"]
    enc, dec = ort.InferenceSession("model.encoder.onnx"), ort.InferenceSession("model.decoder.onnx")
    names = [o.name for o in dec.get_outputs()]
    state = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"src": src, "src_lengths": lens})))
    limit = np.ceil(d["max_len_ratio"] * lens).astype(int) + d["max_len_extra"]
    token = np.full(len(src), d["start_token"]); finished = limit == 0; outputs = []
    for t in range(limit.max()):
        out = dict(zip(names, dec.run(None, {"token": token, **{k: state[k] for k in d["inputs"]}})))
        token = np.where(finished, d["end_token"], out["logits"].argmax(1))  # finished rows feed eos
        outputs.append(token); finished |= (token == d["end_token"]) | (limit <= t + 1)
        state.update({k: out[v] for k, v in d["state"].items()})
        if finished.all(): break
    # each row: the tokens before its first eos

Every model configuration rnnkit trains can be exported; what stays outside the graphs
is search (greedy/beam/sampling loops, CRF Viterbi) and text processing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from rnnkit import __version__
from rnnkit import checkpoint as ckpt
from rnnkit.errors import ConfigError
from rnnkit.nn.table import CELLS

__all__ = ["export_onnx", "DEFAULT_OPSET", "MIN_OPSET", "sidecar_path", "viterbi"]

DEFAULT_OPSET = 17
MIN_OPSET = 14
FORMAT = "rnnkit-onnx"
FORMAT_VERSION = 1

# torch gate blocks -> ONNX order (LSTM: i f g o -> i o f c; GRU: r z n -> z r h)
_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn_tanh": (0,), "rnn_relu": (0,)}
_ONNX_RNN = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


# ====================================================================== public API


def sidecar_path(out: str | Path) -> Path:
    """The sidecar JSON ``export_onnx(run, out)`` writes: ``<stem>.json``."""
    stem = _stem(Path(out))
    return stem.with_name(stem.name + ".json")


def export_onnx(run: str | Path, out: str | Path, opset: Optional[int] = None, int8: bool = False) -> list[Path]:
    """Export the model of run folder ``run`` to ONNX at ``out``; return the written paths.

    lm / classify / tag: ``[<stem>.onnx, <stem>.json]``; seq2seq:
    ``[<stem>.encoder.onnx, <stem>.decoder.onnx, <stem>.json]`` (``<stem>``: ``out``
    without ``.onnx``, or ``out/model`` when ``out`` is an existing folder).
    ``opset``: the ONNX opset (default 17, at least 14).  ``int8``: quantise each graph with
    onnxruntime's ``quantize_dynamic`` (see the module's notes; needs onnxruntime).

    Raises ``CheckpointError`` for a missing or unreadable run folder and
    ``ConfigError`` for something that cannot be exported (naming what and why),
    including a missing ``onnx`` package (``pip install 'rnnkit[export]'``).
    """
    onnx = _import_onnx()
    opset = _check_opset(onnx, opset)
    quantize_dynamic = _import_quantizer() if int8 else None
    run = Path(run)
    from rnnkit.tasks import task_of_run
    from rnnkit.tasks.runs import open_run

    task = task_of_run(run, "export")
    config, model, vocabs = open_run(run, task.vocabs)
    _check_float32(model, run)
    cell = getattr(model.config, "cell", "lstm")
    if not CELLS[cell].exportable:
        raise ConfigError(f"{run} uses the {cell} cell, which ONNX export cannot write (it exports "
                          f"{', '.join(n for n, c in CELLS.items() if c.exportable)}); use the run through "
                          "rnnkit's own predict, translate, generate or serve instead")
    if getattr(model.config, "ensemble", 1) > 1:
        raise ConfigError(f"{run} holds an ensemble of {model.config.ensemble} classifiers; ONNX export "
                          "writes one network (train with --ensemble 1 to export)")
    stem = _stem(Path(out))
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__,
                            "task": task.name, "model_name": config.get("model_name"), "run": str(run.resolve()),
                            "opset": opset, "model": config.get("model")}
    with torch.no_grad():
        graphs, describe = _EXPORTERS[config["model_name"]]
        graphs = {name: build(model, opset) for name, build in graphs.items()}
        meta.update(describe(model, config, vocabs))
    names = {k: (f"{stem.name}.onnx" if k == "model" else f"{stem.name}.{k}.onnx") for k in graphs}
    meta["files"] = names
    meta["graphs"] = {k: g.describe() for k, g in graphs.items()}
    if int8:
        import onnxruntime

        meta["int8"] = {"method": "onnxruntime.quantization.quantize_dynamic", "onnxruntime": onnxruntime.__version__,
                        "weights": "int8, symmetric, per output channel", "activations": "uint8, per call",
                        "quantized_ops": list(INT8_OPS), "float": "embeddings (Gather), GRU and RNN nodes"}
    written = []
    for key, g in graphs.items():
        path = stem.with_name(names[key])
        files = g.save(onnx, path, meta)
        if int8:
            _quantize_file(onnx, quantize_dynamic, path)
            for data in files[1:]:  # the float weights written beside a very large graph
                data.unlink(missing_ok=True)
            files = [path]
        written += files
    side = sidecar_path(out)
    ckpt.save_json(side, meta)
    return written + [side]


def viterbi(emissions: np.ndarray, length: int, crf: dict[str, Any]) -> list[int]:
    """Best tag path of one sentence from exported ``emissions (T, K)`` and the sidecar's ``crf`` scores.

    ``crf`` holds ``start (K,)``, ``end (K,)`` and ``transitions (K, K)`` (from tag i to tag j):
    a path scores ``start[y1] + sum_t e[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_n]``.
    """
    e = np.asarray(emissions, dtype=np.float64)[:length]
    start, end = np.asarray(crf["start"], np.float64), np.asarray(crf["end"], np.float64)
    trans = np.asarray(crf["transitions"], np.float64)
    score = start + e[0]  # (K,)
    back = []
    for e_t in e[1:]:
        cand = score[:, None] + trans  # (K, K): from i to j
        back.append(cand.argmax(0))
        score = cand.max(0) + e_t
    best = [int((score + end).argmax())]
    for ptr in reversed(back):
        best.append(int(ptr[best[-1]]))
    return best[::-1]


# ====================================================================== checks


def _import_onnx():
    try:
        import onnx  # noqa: F401
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError:
        raise ConfigError("exporting to ONNX needs the onnx package: pip install 'rnnkit[export]' "
                          "(onnx, and onnxruntime to run the exported graphs)") from None
    return onnx


INT8_OPS = ("MatMul", "LSTM")  # what export --int8 quantises (onnxruntime's dynamic mode; Gemm is rewritten to MatMul)


def _import_quantizer():
    try:
        from onnxruntime.quantization import quantize_dynamic
    except ImportError:
        raise ConfigError("export --int8 quantises with onnxruntime: pip install 'rnnkit[export]' "
                          "(onnx and onnxruntime)") from None
    return quantize_dynamic


def _gemm_to_matmul(onnx, model) -> None:
    """Rewrite, in place, each ``Gemm(x, W, b, transB=1)`` on a constant ``W (N, K)`` as ``MatMul(x, W^T) + b``:
    onnxruntime's dynamic quantisation covers MatMul, not Gemm.  The same numbers up to float rounding."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0) \
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        wt = w.T.copy() if attrs.get("transB", 0) else w  # (K, N)
        name = node.input[1] + "_kn"
        graph.initializer.append(numpy_helper.from_array(wt, name))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        product = node.output[0] + "_mm" if bias else node.output[0]
        label = node.name or product
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=label + "_mm"))
        if bias:
            nodes.append(helper.make_node("Add", [product, bias], [node.output[0]], name=label + "_add"))
    used = {i for n in nodes for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _quantize_file(onnx, quantize_dynamic, path: Path) -> None:
    """Replace the float graph at ``path`` by its int8 form (onnxruntime's ``quantize_dynamic``)."""
    import logging
    import os

    model = onnx.load(str(path))
    _gemm_to_matmul(onnx, model)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.int8.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs advice about pre-processing at WARNING on the root logger
    try:
        quantize_dynamic(model, str(tmp), op_types_to_quantize=list(INT8_OPS), per_channel=True,
                         extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    os.replace(tmp, path)


def _check_opset(onnx, opset: Optional[int]) -> int:
    if opset is None:
        return DEFAULT_OPSET
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"opset must be an integer in [{MIN_OPSET}, {newest}] (the installed onnx package's "
                          f"newest); got {opset!r}")
    return opset


def _check_float32(model: torch.nn.Module, run: Path) -> None:
    bad = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if bad:
        raise ConfigError(f"{run}: the exporter writes float32 graphs, but the model has {', '.join(bad)} "
                          "parameters")


def _stem(out: Path) -> Path:
    """``out`` without ``.onnx``; an existing folder gets ``model.*`` files inside it."""
    if out.is_dir():
        return out / "model"
    return out.with_name(out.name[: -len(".onnx")]) if out.name.endswith(".onnx") else out


# ====================================================================== graph builder


class _Graph:
    """A tiny ONNX graph builder: values are names; parameters become initializers once each."""

    def __init__(self, name: str, opset: int, doc: str) -> None:
        from onnx import TensorProto

        self.name, self.opset, self.doc = name, opset, doc
        self.T = TensorProto
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: list = []
        self.outputs: list = []
        self.io: dict[str, list[dict[str, Any]]] = {"inputs": [], "outputs": []}
        self._used: set[str] = set()
        self._params: dict[tuple[int, str], str] = {}
        self._consts: dict[tuple, str] = {}

    # -------------------------------------------------------------- names, constants

    def fresh(self, hint: str) -> str:
        base = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in hint) or "v"
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def array(self, value: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C", copy=True), name))
        return name

    def param(self, tensor: torch.Tensor, hint: str, transform: str = "") -> str:
        """A float32 initializer of a model tensor, stored once per (tensor, transform)."""
        key = (id(tensor), transform)
        if key not in self._params:
            arr = tensor.detach().to("cpu", torch.float32).numpy()
            if transform == "T":
                arr = arr.T
            self._params[key] = self.array(arr, hint)
        return self._params[key]

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.array(arr, "const")
        return self._consts[key]

    # -------------------------------------------------------------- nodes

    def op(self, op_type: str, *inputs: Optional[str], outputs: int = 1, hint: str = "", **attrs: Any):
        from onnx import helper

        outs = [self.fresh(f"{hint or op_type.lower()}") for _ in range(outputs)]
        ins = ["" if i is None else i for i in inputs]
        while ins and ins[-1] == "":
            ins.pop()
        self.nodes.append(helper.make_node(op_type, ins, outs, name=self.fresh(f"n_{op_type}"), **attrs))
        return outs[0] if outputs == 1 else outs

    def input(self, name: str, elem: str, shape: Sequence[Any], doc: str) -> str:
        from onnx import helper

        assert name not in self._used, name
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, self._elem(elem), list(shape)))
        self.io["inputs"].append({"name": name, "dtype": elem, "shape": list(shape), "doc": doc})
        return name

    def output(self, value: str, name: str, elem: str, shape: Sequence[Any], doc: str) -> None:
        from onnx import helper

        assert name not in self._used, name
        self._used.add(name)
        self.nodes.append(helper.make_node("Identity", [value], [name], name=self.fresh("n_out")))
        self.outputs.append(helper.make_tensor_value_info(name, self._elem(elem), list(shape)))
        self.io["outputs"].append({"name": name, "dtype": elem, "shape": list(shape), "doc": doc})

    def _elem(self, elem: str) -> int:
        return {"float32": self.T.FLOAT, "int64": self.T.INT64, "bool": self.T.BOOL}[elem]

    # -------------------------------------------------------------- common ops

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Unsqueeze", x, self.const(list(axes)))

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Squeeze", x, self.const(list(axes)))

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: int = 0) -> str:
        # ReduceSum takes axes as an input from opset 13, the others from opset 18
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.const(list(axes)), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def dims(self, x: str, start: int, end: int) -> str:
        """``shape(x)[start:end]`` as an int64 vector."""
        return self.op("Slice", self.op("Shape", x), self.const([start]), self.const([end]), self.const([0]))

    def linear(self, x: str, module: torch.nn.Linear, rank: int) -> str:
        """``x W^T + b`` over the last axis of a rank-``rank`` ``x`` (Gemm on 2-D, reshaped around it)."""
        w = self.param(module.weight, "weight")
        b = None if module.bias is None else self.param(module.bias, "bias")
        if rank == 2:
            return self.op("Gemm", x, w, b, transB=1)
        flat = self.op("Reshape", x, self.const([-1, module.in_features]))
        y = self.op("Gemm", flat, w, b, transB=1)
        shape = self.op("Concat", self.dims(x, 0, rank - 1), self.const([module.out_features]), axis=0)
        return self.op("Reshape", y, shape)

    def mask(self, lengths: str, like: str, axis: int = 1) -> str:
        """``(B, T)`` bool, True where ``t < lengths[b]``; ``T`` is ``like``'s axis ``axis``."""
        steps = self.op("Range", self.const(0), self.squeeze(self.dims(like, axis, axis + 1), [0]), self.const(1))
        return self.op("Less", self.unsqueeze(steps, [0]), self.unsqueeze(lengths, [1]))

    def zeros(self, shape: str) -> str:
        """float32 zeros of a runtime ``shape`` (an int64 vector)."""
        from onnx import helper

        return self.op("ConstantOfShape", shape, value=helper.make_tensor("zero", self.T.FLOAT, [1], [0.0]))

    def zeros_where_not(self, mask: str, x: str) -> str:
        return self.op("Where", mask, x, self.const(0.0, np.float32))

    def read_padded(self, rnn, embedding: torch.nn.Embedding, name: str, ids: str, lengths: str,
                    pad_id: int) -> tuple[str, str, str, Optional[str]]:
        """Embed right-padded ``ids (B, T)`` (whatever sits in the pads is read as ``pad_id``) and run
        ``rnn`` over each row's real steps: ``mask (B, T)``, outputs ``(B, T, D*H)`` (zeros at pads),
        and the final ``h``, ``c`` as :meth:`recurrent` gives them."""
        mask = self.mask(lengths, ids)
        safe = self.op("Where", mask, ids, self.const(pad_id))
        x = self.op("Transpose", self.op("Gather", self.param(embedding.weight, name), safe), perm=[1, 0, 2])
        y, h, c = self.recurrent(rnn, x, self.op("Cast", lengths, to=self.T.INT32))
        return mask, self.zeros_where_not(self.unsqueeze(mask, [2]), self.op("Transpose", y, perm=[1, 0, 2])), h, c

    def recurrent(self, rnn, x: str, seq_lens: Optional[str] = None, h0: Optional[str] = None,
                  c0: Optional[str] = None) -> tuple[str, str, Optional[str]]:
        """``rnnkit.nn.Recurrent`` as one ONNX RNN/GRU/LSTM node per layer.

        ``x (T, B, I)`` time-major, ``seq_lens (B,) int32`` (None: all T), ``h0``/``c0``
        ``(L*D, B, H)`` or None (zeros).  Returns ``y (T, B, D*H)`` (pads unspecified),
        ``h``, ``c`` ``(L*D, B, H)`` taken at each row's last real step (backward
        directions: after reading the first token), as rnnkit's.
        """
        mode, L, D, H = rnn.mode, rnn.num_layers, rnn.num_directions, rnn.hidden_size
        order = _GATE_ORDER[mode]
        hs, cs = [], []
        layer_in = x
        for layer in range(L):
            Ws, Rs, Bs = [], [], []
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")

                def gates(t: torch.Tensor) -> np.ndarray:
                    blocks = t.detach().to("cpu", torch.float32).chunk(len(order), dim=0)
                    return torch.cat([blocks[i] for i in order], 0).numpy()

                Ws.append(gates(getattr(rnn, f"weight_ih{sfx}")))
                Rs.append(gates(getattr(rnn, f"weight_hh{sfx}")))
                if rnn.bias:
                    Bs.append(np.concatenate([gates(getattr(rnn, f"bias_ih{sfx}")),
                                              gates(getattr(rnn, f"bias_hh{sfx}"))]))
            W = self.array(np.stack(Ws), f"rnn_W_l{layer}")
            R = self.array(np.stack(Rs), f"rnn_R_l{layer}")
            B = self.array(np.stack(Bs), f"rnn_B_l{layer}") if Bs else None

            def rows(s: Optional[str]) -> Optional[str]:
                if s is None:
                    return None
                return self.op("Slice", s, self.const([layer * D]), self.const([(layer + 1) * D]), self.const([0]))

            attrs: dict[str, Any] = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
            if mode == "gru":
                attrs["linear_before_reset"] = 1  # b_hn inside the reset gate's product, as torch
            if mode == "rnn_relu":
                attrs["activations"] = ["Relu"] * D
            ins = [layer_in, W, R, B, seq_lens, rows(h0)]
            if mode == "lstm":
                ins.append(rows(c0))
            outs = self.op(_ONNX_RNN[mode], *ins, outputs=3 if mode == "lstm" else 2, hint=f"rnn_l{layer}",
                           **attrs)
            y = outs[0]  # (T, D, B, H)
            layer_in = self.op("Reshape", self.op("Transpose", y, perm=[0, 2, 1, 3]), self.const([0, 0, -1]))
            hs.append(outs[1])
            if mode == "lstm":
                cs.append(outs[2])
        h = hs[0] if L == 1 else self.op("Concat", *hs, axis=0)
        c = None if not cs else cs[0] if L == 1 else self.op("Concat", *cs, axis=0)
        return layer_in, h, c

    # -------------------------------------------------------------- output

    def describe(self) -> dict[str, Any]:
        return {"doc": self.doc, **self.io}

    def model(self, onnx, meta: dict[str, Any]):
        helper = onnx.helper
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers,
                                  doc_string=self.doc)
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="rnnkit", producer_version=__version__,
                                  ir_version=helper.find_min_ir_version_for(opsets))
        model.doc_string = self.doc
        helper.set_model_props(model, {"rnnkit": json.dumps(meta, ensure_ascii=False)})
        return model

    def save(self, onnx, path: Path, meta: dict[str, Any]) -> list[Path]:
        """Check the graph, then write it atomically (weights over 1.5 GB: to ``<file>.data`` beside it)."""
        from rnnkit.fileio import atomic_write_bytes

        model = self.model(onnx, meta)
        big = sum(t.ByteSize() for t in self.initializers) > 1_500_000_000  # protobuf files stop at 2 GiB
        data = path.with_name(path.name + ".data")
        try:
            if big:
                onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=data.name, size_threshold=1024)
                onnx.checker.check_model(str(path), full_check=True)
            else:
                onnx.checker.check_model(model, full_check=True)
                atomic_write_bytes(path, model.SerializeToString())
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise RuntimeError(f"rnnkit built an invalid ONNX graph for {path} (a bug in rnnkit.export): {e}") from None
        return [path, data] if big else [path]


def _rnn_state_shape(rnn, batch: str = "batch") -> list[Any]:
    return [rnn.num_layers * rnn.num_directions, batch, rnn.hidden_size]


# ====================================================================== language model


def _lm(model, opset: int) -> _Graph:
    c = model.config
    rnn = model.rnn
    g = _Graph("rnnkit_lm", opset, "rnnkit language model: next-token logits at every step and the state after "
               "each row's last real token")
    tokens = g.input("tokens", "int64", ["batch", "time"], "token ids, right-padded")
    lengths = g.input("lengths", "int64", ["batch"], "real tokens per row, in [1, T] (all T: unpadded)")
    labels = g.input("labels", "int64", ["batch"], "label id of each row") if c.num_labels > 0 else None
    state = _rnn_state_shape(rnn)
    h0 = g.input("h0", "float32", state, "initial hidden state (zeros to start)")
    c0 = g.input("c0", "float32", state, "initial LSTM cell state (zeros to start)") if rnn.mode == "lstm" else None
    mask = g.mask(lengths, tokens)
    safe = g.op("Where", mask, tokens, g.const(0))  # pads: any valid id; they never reach a real output
    if model.embedding is None:
        x = g.op("OneHot", safe, g.const(c.vocab_size), g.const([0.0, 1.0], np.float32), axis=-1)
    else:
        x = g.op("Gather", g.param(model.embedding.weight, "embedding"), safe)  # (B, T, E)
    if labels is not None:
        lab = g.unsqueeze(g.op("Gather", g.param(model.label_embedding.weight, "label_embedding"), labels), [1])
        shape = g.op("Concat", g.dims(tokens, 0, 2), g.const([c.label_size]), axis=0)
        x = g.op("Concat", x, g.op("Expand", lab, shape), axis=2)
    y, h, cc = g.recurrent(rnn, g.op("Transpose", x, perm=[1, 0, 2]), g.op("Cast", lengths, to=g.T.INT32), h0, c0)
    out = g.zeros_where_not(g.unsqueeze(mask, [2]), g.op("Transpose", y, perm=[1, 0, 2]))  # (B, T, H)
    g.output(g.linear(out, model.out, 3), "logits", "float32", ["batch", "time", c.vocab_size],
             "next-token logits (at pads: the output layer's bias)")
    g.output(h, "h", "float32", state, "hidden state after each row's last real token")
    if cc is not None:
        g.output(cc, "c", "float32", state, "LSTM cell state after each row's last real token")
    return g


def _lm_meta(model, config, vocabs) -> dict[str, Any]:
    v = vocabs["vocab"]
    rnn = model.rnn
    names = ["h0"] + (["c0"] if rnn.mode == "lstm" else [])
    return {"special_ids": _specials(v), "vocab_size": len(v), "labels": config.get("labels") or [],
            "vocab_files": {"vocab": "vocab.json"},
            "decoding": {"state": {n: n[:-1] for n in names}, "state_shape": _rnn_state_shape(rnn),
                         "start": "zeros" + (" (labelled: prime with bos)" if config.get("labels") else ""),
                         "note": "step one token at a time with lengths = 1, feeding h/c back as h0/c0"}}


# ====================================================================== classifier


def _classifier(model, opset: int) -> _Graph:
    c = model.config
    g = _Graph("rnnkit_classifier", opset, "rnnkit sequence classifier: class logits and probabilities")
    tokens = g.input("tokens", "int64", ["batch", "time"], "token ids, right-padded")
    lengths = g.input("lengths", "int64", ["batch"], "real tokens per row, in [1, T]")
    mask, out, h, _ = g.read_padded(model.rnn, model.embedding, "embedding", tokens, lengths, c.pad_id)  # (B, T, D*H)
    D, H = model.num_directions, c.hidden_size
    weights = None
    if c.pooling == "last":
        # the top layer's final states: forward after the last real token, backward after the first
        top = h if c.num_layers == 1 else g.op("Slice", h, g.const([(c.num_layers - 1) * D]),
                                                 g.const([c.num_layers * D]), g.const([0]))
        pooled = g.op("Reshape", g.op("Transpose", top, perm=[1, 0, 2]), g.const([0, D * H]))
    elif c.pooling == "mean":
        total = g.reduce("ReduceSum", out, [1])
        pooled = g.op("Div", total, g.unsqueeze(g.op("Cast", lengths, to=g.T.FLOAT), [1]))
    elif c.pooling == "max":
        pooled = g.reduce("ReduceMax", g.op("Where", g.unsqueeze(mask, [2]), out, g.const(-np.inf, np.float32)), [1])
    else:
        scores = g.linear(g.op("Tanh", g.linear(out, model.attn_proj, 3)), model.attn_score, 3)  # (B, T, 1)
        scores = g.op("Where", mask, g.squeeze(scores, [2]), g.const(-np.inf, np.float32))
        weights = g.op("Softmax", scores, axis=1)  # (B, T)
        pooled = g.squeeze(g.op("MatMul", g.unsqueeze(weights, [1]), out), [1])
    if isinstance(model.head, torch.nn.Linear):
        logits = g.linear(pooled, model.head, 2)
    else:
        first, _, last = model.head
        logits = g.linear(g.op("Relu", g.linear(pooled, first, 2)), last, 2)
    C = c.num_classes
    g.output(logits, "logits", "float32", ["batch", C], "class scores")
    g.output(g.op("Softmax", logits, axis=1), "probs", "float32", ["batch", C], "class probabilities")
    if weights is not None:
        g.output(weights, "attention", "float32", ["batch", "time"], "attention pooling weights (0 at pads)")
    return g


def _classifier_meta(model, config, vocabs) -> dict[str, Any]:
    v = vocabs["vocab"]
    return {"special_ids": _specials(v), "vocab_size": len(v), "labels": config.get("labels") or [],
            "vocab_files": {"vocab": "vocab.json", "tokenizer": "tokenizer.json"}}


# ====================================================================== tagger


def _tagger(model, opset: int) -> _Graph:
    c = model.config
    g = _Graph("rnnkit_tagger", opset, "rnnkit sequence tagger: per-token tag scores (emissions)"
               + ("; CRF Viterbi runs outside the graph" if c.crf else " and argmax tags"))
    tokens = g.input("tokens", "int64", ["batch", "time"], "word ids, right-padded")
    lengths = g.input("lengths", "int64", ["batch"], "real words per row, in [1, T]")
    chars = None
    if c.char_encoder != "none":
        chars = g.input("chars", "int64", ["batch", "time", "word_chars"],
                        "character ids of each word, right-padded with the char pad id")
    mask = g.mask(lengths, tokens)
    mask3 = g.unsqueeze(mask, [2])
    safe = g.op("Where", mask, tokens, g.const(c.pad_id))  # pad ids never looked up
    x = g.op("Gather", g.param(model.embedding.weight, "embedding"), safe)  # (B, T, E)
    if chars is not None:
        x = g.op("Concat", x, _char_features(g, model, chars, mask3), axis=2)
    y, _, _ = g.recurrent(model.rnn, g.op("Transpose", x, perm=[1, 0, 2]), g.op("Cast", lengths, to=g.T.INT32))
    out = g.zeros_where_not(mask3, g.op("Transpose", y, perm=[1, 0, 2]))  # (B, T, D*H)
    emissions = g.linear(out, model.out, 3)
    K = c.num_tags
    g.output(emissions, "emissions", "float32", ["batch", "time", K], "per-token tag scores (at pads: arbitrary)")
    if not c.crf:
        tags = g.op("Where", mask, g.op("ArgMax", emissions, axis=2, keepdims=0), g.const(-1))
        g.output(tags, "tags", "int64", ["batch", "time"], "argmax tag ids (-1 at pads)")
    return g


def _char_features(g: _Graph, model, chars: str, mask3: str) -> str:
    """``chars (B, T, W)`` -> ``(B, T, F)`` character encodings of the words, zeros at pad tokens."""
    c = model.config
    chars = g.op("Where", mask3, chars, g.const(c.char_pad_id))  # pad tokens: all pad characters
    words = g.op("Reshape", chars, g.op("Concat", g.const([-1]), g.dims(chars, 2, 3), axis=0))  # (N, W)
    is_char = g.op("Not", g.op("Equal", words, g.const(c.char_pad_id)))  # (N, W)
    n_chars = g.reduce("ReduceSum", g.op("Cast", is_char, to=g.T.INT64), [1])  # (N,)
    emb = g.op("Gather", g.param(model.char_embedding.weight, "char_embedding"), words)  # (N, W, Ec)
    emb = g.zeros_where_not(g.unsqueeze(is_char, [2]), emb)  # pad characters read as zero vectors
    if c.char_encoder == "lstm":
        lens = g.op("Cast", g.op("Max", n_chars, g.const(1)), to=g.T.INT32)  # an empty word reads one zero vector
        _, h, _ = g.recurrent(model.char_rnn, g.op("Transpose", emb, perm=[1, 0, 2]), lens)  # h (2, N, Hc)
        feats = g.op("Reshape", g.op("Transpose", h, perm=[1, 0, 2]), g.const([0, 2 * c.char_hidden_size]))
    else:
        conv = model.char_conv
        y = g.op("Conv", g.op("Transpose", emb, perm=[0, 2, 1]), g.param(conv.weight, "char_conv_weight"),
                 g.param(conv.bias, "char_conv_bias"), kernel_shape=[3], pads=[1, 1])  # (N, Hc, W)
        y = g.op("Where", g.unsqueeze(is_char, [1]), y, g.const(-np.inf, np.float32))  # max over real chars only
        feats = g.reduce("ReduceMax", y, [2])  # (N, Hc)
        empty = g.unsqueeze(g.op("Equal", n_chars, g.const(0)), [1])
        feats = g.op("Where", empty, g.const(0.0, np.float32), feats)  # an empty word: zeros, not -inf
    F = 2 * c.char_hidden_size if c.char_encoder == "lstm" else c.char_hidden_size
    shape = g.op("Concat", g.dims(chars, 0, 2), g.const([F]), axis=0)
    return g.zeros_where_not(mask3, g.op("Reshape", feats, shape))  # (B, T, F)


def _tagger_meta(model, config, vocabs) -> dict[str, Any]:
    v, ch, tags = vocabs["vocab"], vocabs["chars"], vocabs["tags"]
    meta: dict[str, Any] = {"special_ids": _specials(v), "vocab_size": len(v), "labels": tags.tokens,
                            "vocab_files": {"vocab": "vocab.json", "chars": "chars.json", "tags": "tags.json"},
                            "lower": bool((config.get("data") or {}).get("lower"))}
    if model.config.char_encoder != "none":
        meta["char_special_ids"] = _specials(ch)
    if model.crf is not None:
        crf = model.crf
        meta["crf"] = {"doc": "path score = start[y1] + sum_t emissions[t, y_t] + sum_t transitions[y_(t-1), y_t] "
                              "+ end[y_n]; decode with Viterbi over each row's real tokens",
                       "start": crf.start.detach().float().tolist(), "end": crf.end.detach().float().tolist(),
                       "transitions": crf.transitions.detach().float().tolist()}
    return meta


# ====================================================================== seq2seq


def _seq2seq_encoder(model, opset: int) -> _Graph:
    c = model.config
    H, L, D = c.hidden_size, c.num_layers, 2 if c.bidirectional else 1
    g = _Graph("rnnkit_seq2seq_encoder", opset, "rnnkit seq2seq encoder: reads the source, returns the decoder's "
               "starting state")
    src = g.input("src", "int64", ["batch", "src_time"], "source ids, right-padded")
    lengths = g.input("src_lengths", "int64", ["batch"], "real source tokens per row, in [1, S]")
    mask, memory, h, cc = g.read_padded(model.encoder, model.src_embed, "src_embedding", src, lengths,
                                        c.src_pad_id)  # memory (B, S, H)

    def join(t: str) -> str:  # (L*D, B, H/D) -> (L, B, H): each layer's directions side by side
        layers = []
        for layer in range(L):
            part = g.op("Slice", t, g.const([layer * D]), g.const([(layer + 1) * D]), g.const([0]))  # (D, B, H/D)
            layers.append(g.unsqueeze(g.op("Reshape", g.op("Transpose", part, perm=[1, 0, 2]), g.const([0, H])), [0]))
        return layers[0] if L == 1 else g.op("Concat", *layers, axis=0)

    h, cc = join(h), None if cc is None else join(cc)
    if c.bridge == "zero":
        h = g.zeros(g.op("Shape", h))
        cc = None if cc is None else g.zeros(g.op("Shape", cc))
    elif c.bridge == "linear":
        h = g.op("Tanh", g.linear(h, model.bridge_h, 3))
        cc = None if cc is None else g.linear(cc, model.bridge_c, 3)
    state = [L, "batch", H]
    g.output(h, "h", "float32", state, "decoder hidden state")
    if cc is not None:
        g.output(cc, "c", "float32", state, "decoder LSTM cell state")
    if c.input_feeding:
        feed = g.zeros(g.op("Concat", g.dims(src, 0, 1), g.const([H]), axis=0))  # (B, H)
        g.output(feed, "feed", "float32", ["batch", H], "last attentional vector (zeros at the start)")
    g.output(memory, "memory", "float32", ["batch", "src_time", H], "encoder outputs (0 at pads)")
    if model.attention is not None:
        att = model.attention
        keys = memory if att.score == "dot" else g.linear(memory, att.key_proj, 3)
        A = H if att.score == "dot" else att.key_proj.out_features
        g.output(keys, "keys", "float32", ["batch", "src_time", A], "the memory's part of the attention score")
    g.output(mask, "mask", "bool", ["batch", "src_time"], "True on real source positions")
    return g


def _seq2seq_decoder(model, opset: int) -> _Graph:
    c = model.config
    H, L = c.hidden_size, c.num_layers
    att = model.attention
    g = _Graph("rnnkit_seq2seq_decoder", opset, "rnnkit seq2seq decoder: one step from the previous token")
    token = g.input("token", "int64", ["batch"], "previous output token (bos at the first step)")
    state = [L, "batch", H]
    h = g.input("h", "float32", state, "decoder hidden state")
    cc = g.input("c", "float32", state, "decoder LSTM cell state") if c.cell == "lstm" else None
    feed = g.input("feed", "float32", ["batch", H], "last attentional vector") if c.input_feeding else None
    memory = keys = mask = None
    if att is not None:
        A = H if att.score == "dot" else att.key_proj.out_features
        memory = g.input("memory", "float32", ["batch", "src_time", H], "encoder outputs")
        keys = g.input("keys", "float32", ["batch", "src_time", A], "attention keys from the encoder")
        mask = g.input("mask", "bool", ["batch", "src_time"], "True on real source positions")

    def attend(query: str) -> tuple[str, str]:  # (B, H) -> context (B, H), weights (B, S)
        if att.score == "bahdanau":
            q = g.unsqueeze(g.op("MatMul", query, g.param(att.query_proj.weight, "att_query", "T")), [1])  # (B,1,A)
            e = g.op("MatMul", g.op("Tanh", g.op("Add", q, keys)), g.param(att.v.weight, "att_v", "T"))  # (B,S,1)
            scores = g.squeeze(e, [2])
        else:
            scores = g.squeeze(g.op("MatMul", g.unsqueeze(query, [1]), g.op("Transpose", keys, perm=[0, 2, 1])), [1])
        weights = g.op("Softmax", g.op("Where", mask, scores, g.const(-np.inf, np.float32)), axis=1)  # (B, S)
        return g.squeeze(g.op("MatMul", g.unsqueeze(weights, [1]), memory), [1]), weights

    emb = g.op("Gather", g.param(model.tgt_embed.weight, "tgt_embedding"), token)  # (B, E)
    weights = context = None
    x = emb
    if c.attention == "bahdanau":  # the previous top-layer state queries the memory before the step
        context, weights = attend(g.op("Gather", h, g.const(L - 1), axis=0))
        x = g.op("Concat", emb, context, axis=1)
    elif feed is not None:
        x = g.op("Concat", emb, feed, axis=1)
    y, h_next, c_next = g.recurrent(model.decoder, g.unsqueeze(x, [0]), None, h, cc)  # y (1, B, H)
    top = g.squeeze(y, [0])  # (B, H)
    feat = top
    if c.attention == "luong":
        context, weights = attend(top)
    if att is not None:
        feat = g.op("Tanh", g.linear(g.op("Concat", context, top, axis=1), model.combine, 2))
    logits = g.linear(feat, model.out, 2)
    V = c.tgt_vocab_size
    g.output(logits, "logits", "float32", ["batch", V], "scores of the next token")
    g.output(g.op("LogSoftmax", logits, axis=1), "log_probs", "float32", ["batch", V],
             "log-probabilities of the next token")
    g.output(h_next, "h_next", "float32", state, "hidden state for the next step (input h)")
    if c_next is not None:
        g.output(c_next, "c_next", "float32", state, "cell state for the next step (input c)")
    if feed is not None:
        g.output(feat, "feed_next", "float32", ["batch", H], "attentional vector for the next step (input feed)")
    if weights is not None:
        g.output(weights, "attention", "float32", ["batch", "src_time"], "attention weights over the source")
    return g


def _seq2seq_meta(model, config, vocabs) -> dict[str, Any]:
    c = model.config
    data = config.get("data") or {}
    src, tgt = vocabs["src_vocab"], vocabs["tgt_vocab"]
    inputs = ["h"] + (["c"] if c.cell == "lstm" else []) + (["feed"] if c.input_feeding else []) \
        + (["memory", "keys", "mask"] if c.attention != "none" else [])
    state = {"h": "h_next", **({"c": "c_next"} if c.cell == "lstm" else {}),
             **({"feed": "feed_next"} if c.input_feeding else {})}
    return {"special_ids": {"src_pad": c.src_pad_id, "src_unk": src.unk_id, "pad": c.tgt_pad_id,
                            "bos": c.tgt_bos_id, "eos": c.tgt_eos_id, "unk": tgt.unk_id},
            "src_vocab_size": c.src_vocab_size, "tgt_vocab_size": c.tgt_vocab_size,
            "vocab_files": {"src_vocab": "src_vocab.json", "tgt_vocab": "tgt_vocab.json",
                            "tokenizers": "tokenizers.json"},
            "decoding": {
                "inputs": inputs,  # decoder inputs (besides token) that come from the encoder's outputs
                "state": state,  # decoder input -> the output that replaces it after each step
                "start_token": c.tgt_bos_id, "end_token": c.tgt_eos_id,
                "max_len_ratio": data.get("max_len_ratio", 2.0), "max_len_extra": data.get("max_len_extra", 10),
                "max_len": "ceil(max_len_ratio * source length) + max_len_extra output tokens before eos",
                "beam": data.get("beam", 5), "length_penalty": data.get("length_penalty", 1.0),
            }}


def _specials(v) -> dict[str, Optional[int]]:
    return {"pad": v.pad_id, "unk": v.unk_id, "bos": v.bos_id, "eos": v.eos_id}


# model name (rnnkit.models.MODELS) -> (its graphs: name -> builder, the sidecar's description of it)
_EXPORTERS = {
    "language_model": ({"model": _lm}, _lm_meta),
    "classifier": ({"model": _classifier}, _classifier_meta),
    "tagger": ({"model": _tagger}, _tagger_meta),
    "seq2seq": ({"encoder": _seq2seq_encoder, "decoder": _seq2seq_decoder}, _seq2seq_meta),
}
