"""NNCF's OpenVINO quantization keeps the ONNX nodes it is told to keep FP32, found by their ONNX names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("nncf")
ov = pytest.importorskip("openvino")

from export.quantize import openvino_names, quantize_openvino  # noqa: E402


def _net(path: Path) -> Path:
    """image (N, 3, 16, 16) -> conv_a (+bias) -> Mul (an affine scale, as dlib's layers export) -> Relu -> conv_b
    -> global pool -> fc MatMul -> "embedding". The Mul after conv_a is what convert_model fuses and renames."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in
            [("wa", (8, 3, 3, 3)), ("ba", (8,)), ("scale", (1, 8, 1, 1)), ("wb", (8, 8, 3, 3)), ("wfc", (8, 4))]]
    nodes = [helper.make_node("Conv", ["image", "wa", "ba"], ["a"], name="/net/conv_a/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["a", "scale"], ["am"], name="/net/affine/Mul"),
             helper.make_node("Relu", ["am"], ["ar"], name="/net/relu/Relu"),
             helper.make_node("Conv", ["ar", "wb"], ["b"], name="/net/conv_b/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["b"], ["p"], name="/net/pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/net/flatten"),
             helper.make_node("MatMul", ["f", "wfc"], ["embedding"], name="/net/fc/MatMul")]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 4])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _int8_weights(xml: Path) -> dict[str, bool]:
    """Weighted op name -> whether its weights are stored INT8 (an i8 constant decompressed on the way in)."""
    model = ov.Core().read_model(str(xml))

    def has_i8_constant(node, hops: int) -> bool:
        if node.get_type_name() == "Constant":
            return node.get_element_type() == ov.Type.i8
        return hops > 0 and any(has_i8_constant(node.input_value(i).get_node(), hops - 1)
                                for i in range(node.get_input_size()))

    return {op.get_friendly_name(): has_i8_constant(op.input_value(1).get_node(), 3)
            for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "MatMul")}


def test_ignored_onnx_nodes_stay_fp32_and_the_rest_are_quantized(tmp_path):
    fp32 = _net(tmp_path / "m.onnx")
    calib = np.random.default_rng(1).random((16, 3, 16, 16)).astype(np.float32)
    quantize_openvino(fp32, tmp_path / "all.xml", calib, subset_size=16)
    everything = _int8_weights(tmp_path / "all.xml")
    assert len(everything) == 3 and all(everything.values()), everything   # nothing kept: every weighted op INT8
    info = quantize_openvino(fp32, tmp_path / "kept.xml", calib, subset_size=16,
                             ignored=["/net/conv_a/Conv", "/net/fc/MatMul"])
    kept = _int8_weights(tmp_path / "kept.xml")
    conv_a = [k for k in kept if k.startswith("/net/conv_a/Conv")]
    conv_b = [k for k in kept if k.startswith("/net/conv_b/Conv")]
    assert conv_a and conv_b and not any(kept[k] for k in conv_a) and all(kept[k] for k in conv_b), kept
    assert kept["embedding"] is False   # the graph-output MatMul is named after its output
    assert info["nodes_kept_fp32"] == ["/net/conv_a/Conv", "/net/fc/MatMul"]


def test_an_onnx_node_without_an_openvino_op_is_an_error_not_silently_quantized(tmp_path):
    fp32 = _net(tmp_path / "m.onnx")
    model = ov.Core().read_model(str(fp32))
    assert openvino_names(model, fp32, ["/net/fc/MatMul"]) == ["embedding"]
    with pytest.raises(ValueError, match="no op in the OpenVINO model"):
        openvino_names(model, fp32, ["/net/nope/Conv"])
