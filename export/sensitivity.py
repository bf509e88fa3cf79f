"""Sensitivity ranking for mixed precision: which layers lose the most to INT8.

For every weighted node (Conv, Gemm, MatMul) of a QDQ model, the quantization noise it sees is measured on real
inputs, after ONNX Runtime's QDQ debugging idea (``onnxruntime.quantization.qdq_loss_debug``: compare each
tensor before and after its QuantizeLinear/DequantizeLinear pair), but accumulated batch by batch instead of
keeping every activation in memory:

* activation inputs: signal-to-quantization-noise ratio ``SQNR = 10 log10(sum x^2 / sum (x - DQ(Q(x)))^2)``
  over the inputs, x the float tensor feeding the QuantizeLinear in the QDQ model;
* weights: the same ratio between the FP32 model's initializer and its dequantized int8 copy.

Where ORT folded a Relu/Clip into the QuantizeLinear (it drops them in QDQ models), the float reference is
clipped the same way, so the activation itself is not counted as noise (ORT's debugging tool does count it).
Each activation pair is charged to the weighted node(s) it reaches through non-weighted ops (PReLU, Add,
Flatten, ...). A node's score combines the noise powers charged to it, activations and weights
(``-10 log10(sum 10^(-SQNR_i / 10))``); the lowest score is the most sensitive node. The exporter keeps the
top-k of this ranking in FP32 as a remedy (``nodes_to_exclude`` for ONNX Runtime, NNCF's ``ignored_scope`` for
OpenVINO) and reports the nodes and their scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_QUANT_SUFFIX = "_quantized"


def _sqnr_db(signal: float, noise: float) -> float:
    """SQNR from energies, with ORT's convention: both norms floored at float64 epsilon (no noise ~ 340 dB)."""
    eps = float(np.finfo(float).eps)
    return 20.0 * math.log10(max(math.sqrt(signal), eps) / max(math.sqrt(noise), eps))


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int) -> np.ndarray:
    q = q.astype(np.float64)
    scale = np.asarray(scale, np.float64)
    zero = np.zeros_like(scale) if zero is None else np.asarray(zero, np.float64)
    if scale.size > 1:  # per-channel along ``axis``
        shape = [1] * q.ndim
        shape[axis % q.ndim] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q - zero) * scale


def _folded_activation(tensor: str, qdq_producer: dict[str, Any], fp32_producer: dict[str, Any],
                       inits: dict[str, Any]) -> tuple[float, float] | None:
    """ORT's QDQ quantizer drops a Relu/Clip that follows a node (the node then writes the activation's output
    name) and lets the QuantizeLinear's range do the clipping; the float reference for that fake-quantized
    tensor is then the clipped one, else the activation itself would count as quantization noise.
    Returns the clip range, or None."""
    node = fp32_producer.get(tensor)
    if node is None or node.op_type not in ("Relu", "Clip"):
        return None
    if qdq_producer.get(tensor) is not None and qdq_producer[tensor].op_type == node.op_type:
        return None  # the activation is still there
    if node.op_type == "Relu":
        return (0.0, math.inf)
    bounds = [-math.inf, math.inf]
    for k, name in enumerate(node.input[1:3]):
        if name and name in inits:
            bounds[k] = float(numpy_helper.to_array(inits[name]))
    for a in node.attribute:  # opset < 11
        if a.name in ("min", "max"):
            bounds[0 if a.name == "min" else 1] = a.f
    return (bounds[0], bounds[1])


def rank_nodes(fp32_path: Path, qdq_path: Path, inputs: np.ndarray, input_name: str = "image",
               batch: int = 8) -> list[dict[str, Any]]:
    """Weighted nodes of ``qdq_path`` with their activation/weight SQNR (dB), most sensitive first.

    Every activation Q/DQ pair is measured once and charged to the weighted node(s) its output reaches through
    non-weighted ops (PReLU, Add, Flatten, further Q/DQ pairs...), so noise added in front of a PReLU counts
    against the convolution that reads the PReLU's output. Entries: name, op, activation_sqnr_db (all charged
    pairs combined), activation_pairs (their fake-quantized tensor names), weight_sqnr_db, score_db.
    """
    import onnxruntime as ort

    qdq = onnx.load(str(qdq_path))
    fp32 = onnx.load(str(fp32_path))
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    fp32_producer = {o: n for n in fp32.graph.node for o in n.output}
    inits = {i.name: i for i in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in qdq.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    nodes: dict[str, dict[str, Any]] = {}
    for node in qdq.graph.node:
        if node.op_type in WEIGHTED_OPS and node.name:
            nodes[node.name] = {"name": node.name, "op": node.op_type, "activation_sqnr_db": None,
                                "activation_pairs": [], "weight_sqnr_db": None, "_weights": []}

    # weights: int8 initializer -> DequantizeLinear -> weighted node, against the FP32 model's initializer
    for name, entry in nodes.items():
        node = next(n for n in qdq.graph.node if n.name == name)
        for inp in node.input:
            dq = producer.get(inp)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
                continue
            src = dq.input[0]
            tensor = inits[src]
            if tensor.data_type == TensorProto.INT32 or not src.endswith(_QUANT_SUFFIX):
                continue  # int32 bias, or a constant we cannot match with its float original
            original = fp32_inits.get(src[: -len(_QUANT_SUFFIX)])
            if original is None:
                continue
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            scale = numpy_helper.to_array(inits[dq.input[1]])
            zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else None
            w = numpy_helper.to_array(original).astype(np.float64)
            deq = _dequantize(numpy_helper.to_array(tensor), scale, zero, axis)
            entry["_weights"].append(_sqnr_db(float((w ** 2).sum()), float(((w - deq) ** 2).sum())))

    # activations: QuantizeLinear(x) -> DequantizeLinear pairs on computed tensors, charged downstream
    activations: dict[str, tuple[str, str]] = {}        # DQ output -> (float tensor, fake-quantized tensor)
    folded: dict[str, tuple[float, float] | None] = {}  # DQ output -> clip range of an activation ORT folded
    for dq in qdq.graph.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] in inits:
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
            continue
        key = dq.output[0]
        activations[key] = (q.input[0], key)
        folded[key] = _folded_activation(q.input[0], producer, fp32_producer, fp32_inits)
        seen, todo = set(), [key]
        while todo:
            for user in consumers.get(todo.pop(), []):
                if user.name in nodes:
                    if key not in nodes[user.name]["activation_pairs"]:
                        nodes[user.name]["activation_pairs"].append(key)
                elif id(user) not in seen:
                    seen.add(id(user))
                    todo.extend(user.output)

    act_db: dict[str, float] = {}
    if activations:
        names = sorted({t for pair in activations.values() for t in pair})
        graph_outputs = {o.name for o in qdq.graph.output}
        for name in names:
            if name not in graph_outputs:
                qdq.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every Q/DQ pair
        options.log_severity_level = 3
        session = ort.InferenceSession(qdq.SerializeToString(), options, providers=["CPUExecutionProvider"])
        signal = dict.fromkeys(activations, 0.0)
        noise = dict.fromkeys(activations, 0.0)
        for start in range(0, len(inputs), batch):
            values = dict(zip(names, session.run(names, {input_name: inputs[start:start + batch]})))
            for key, (pre, post) in activations.items():
                x = values[pre].astype(np.float64)
                if folded[key] is not None:
                    x = np.clip(x, *folded[key])
                signal[key] += float((x ** 2).sum())
                noise[key] += float(((x - values[post]) ** 2).sum())
        act_db = {k: _sqnr_db(signal[k], noise[k]) for k in activations}

    ranked = []
    for entry in nodes.values():
        acts = [act_db[a] for a in entry["activation_pairs"]]
        weights = entry.pop("_weights")
        if not acts and not weights:
            continue
        if acts:
            entry["activation_sqnr_db"] = round(_combine(acts), 3)
        if weights:
            entry["weight_sqnr_db"] = round(_combine(weights), 3)
        entry["score_db"] = round(_combine(acts + weights), 3)
        ranked.append(entry)
    ranked.sort(key=lambda e: (e["score_db"], e["name"]))
    return ranked


def _combine(db_values: list[float]) -> float:
    """Noise powers add: -10 log10(sum 10^(-SQNR_i / 10))."""
    return -10.0 * math.log10(sum(10.0 ** (-db / 10.0) for db in db_values))
