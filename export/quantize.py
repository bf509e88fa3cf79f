"""INT8 quantization: ONNX Runtime static QDQ (CPU and TensorRT flavours) and OpenVINO IR via NNCF."""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx

LOG = logging.getLogger("crres.export")
CALIB_METHODS = ("minmax", "entropy", "percentile")
_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


class _Reader:
    """onnxruntime CalibrationDataReader over an (N, C, H, W) array, in batches."""

    def __init__(self, inputs: np.ndarray, input_name: str, batch: int = 16) -> None:
        self._batches = [inputs[i:i + batch] for i in range(0, len(inputs), batch)]
        self._name, self._i = input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {self._name: self._batches[self._i - 1]}

    def rewind(self) -> None:
        self._i = 0


def pre_process(fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False)
    return out


def sensitive_nodes(model_path: Path) -> list[str]:
    """First conv (reads the image) and the embedding layer (last weighted op) plus everything after it."""
    graph = onnx.load(str(model_path)).graph
    nodes = list(graph.node)
    weighted = [i for i, n in enumerate(nodes) if n.op_type in _WEIGHTED_OPS]
    if not weighted:
        return []
    first_conv = next((i for i in weighted if nodes[i].op_type in ("Conv", "ConvTranspose")), weighted[0])
    last = weighted[-1]
    keep = {nodes[first_conv].name} | {n.name for n in nodes[last:]}
    return sorted(k for k in keep if k)


#: Entropy (KL) calibration histogram: ORT's defaults (128 bins, 128 quantized bins) leave a single candidate
#: threshold, the full range, i.e. MinMax; quantize_static cannot pass other values, so they are injected here.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 512, 128


@contextlib.contextmanager
def _entropy_bins():
    ortq = importlib.import_module("onnxruntime.quantization.quantize")  # the module, not the function

    original = ortq.create_calibrator

    def create(*args, **kwargs):
        from onnxruntime.quantization import CalibrationMethod

        if kwargs.get("calibrate_method") != CalibrationMethod.Entropy:
            return original(*args, **kwargs)
        options = dict(kwargs.get("extra_options") or {})
        options.setdefault("num_bins", ENTROPY_BINS)
        options.setdefault("num_quantized_bins", ENTROPY_QUANTIZED_BINS)
        kwargs["extra_options"] = options
        return original(*args, **kwargs)

    ortq.create_calibrator = create
    try:
        yield
    finally:
        ortq.create_calibrator = original


def quantize_ort(pre: Path, out: Path, calib: np.ndarray, method: str, *, flavour: str = "cpu",
                 exclude: list[str] | None = None, input_name: str = "image", batch: int = 16) -> dict[str, Any]:
    """Static INT8 QDQ, per-channel weights. ``flavour="tensorrt"``: symmetric int8 activations and weights
    (explicit quantization for TensorRT 10); ``"cpu"``: uint8 activations (ORT's CPU kernels)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in CALIB_METHODS:
        raise ValueError(f"calibration method must be one of {CALIB_METHODS}, got {method!r}")
    cal = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    if flavour == "tensorrt":
        act = QuantType.QInt8
        extra.update(ActivationSymmetric=True, WeightSymmetric=True)
    elif flavour == "cpu":
        act = QuantType.QUInt8
    else:
        raise ValueError(f"flavour must be 'cpu' or 'tensorrt', got {flavour!r}")
    with _entropy_bins():
        quantize_static(str(pre), str(out), _Reader(calib, input_name, batch), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=act, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude or []), calibrate_method=cal, extra_options=extra)
    onnx.checker.check_model(onnx.load(str(out)))
    q = onnx.load(str(out)).graph.node
    return {"format": "QDQ", "calibration_method": method, "per_channel_weights": True,
            "activations": "int8 symmetric" if flavour == "tensorrt" else "uint8 asymmetric",
            "weights": "int8 symmetric per-channel", "nodes_kept_fp32": list(exclude or []),
            "quantize_linear_nodes": sum(n.op_type == "QuantizeLinear" for n in q)}


OPENVINO_PRESETS = ("performance", "mixed")


def openvino_names(model: Any, onnx_path: Path, onnx_nodes: list[str]) -> list[str]:
    """The OpenVINO ops that implement each named ONNX node (for NNCF's ignored scope); raises if one has none.

    The ONNX frontend keeps a node's name as the op's name or its prefix ("/fc/Gemm" -> "/fc/Gemm/WithoutBiases"),
    except for a node that produces a graph output, whose op takes the output's name ("embedding")."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    produces = {n.name: [o for o in n.output if o in outputs] for n in graph.node}
    ops = [op.get_friendly_name() for op in model.get_ordered_ops()]
    names: list[str] = []
    for node in onnx_nodes:
        pattern = re.compile(re.escape(node) + "(/.*)?")
        found = [op for op in ops if pattern.fullmatch(op) or op in produces.get(node, [])]
        if not found:
            raise ValueError(f"ONNX node {node!r} has no op in the OpenVINO model; cannot keep it FP32")
        names += found
    return names


def quantize_openvino(fp32: Path, xml_out: Path, calib: np.ndarray, *, subset_size: int,
                      ignored: list[str] | None = None, preset: str = "performance") -> dict[str, Any]:
    """OpenVINO INT8 IR with NNCF post-training quantization (mixed-resolution calibration set).

    ``preset``: NNCF's ``performance`` (its default: symmetric weights and activations) or ``mixed`` (asymmetric
    activations, which suit PReLU networks whose activations are not centred on zero). ``ignored``: ONNX node
    names kept FP32. The model is read with ``Core.read_model``, not ``convert_model``: the latter fuses a
    convolution with a following multiply and names the result after the multiply, so ONNX names no longer
    find it (NNCF then quantized every remedy's "kept FP32" layers anyway)."""
    import nncf
    import openvino as ov

    if preset not in OPENVINO_PRESETS:
        raise ValueError(f"preset must be one of {OPENVINO_PRESETS}, got {preset!r}")
    model = ov.Core().read_model(str(fp32))
    dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
    kwargs: dict[str, Any] = {"subset_size": min(subset_size, len(calib)),
                              "preset": nncf.QuantizationPreset(preset)}
    if ignored:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=openvino_names(model, fp32, ignored), validate=True)
    q = nncf.quantize(model, dataset, **kwargs)
    ov.save_model(q, str(xml_out), compress_to_fp16=False)
    return {"format": "OpenVINO IR", "tool": f"nncf {nncf.__version__}", "subset_size": kwargs["subset_size"],
            "preset": preset, "nodes_kept_fp32": list(ignored or [])}
