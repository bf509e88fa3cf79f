"""export/sensitivity.py: the per-layer SQNR ranking agrees with ONNX Runtime's own QDQ debugging tool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader
from onnxruntime.quantization import qdq_loss_debug as dbg

from export.onnx_export import export_fp32
from export.quantize import pre_process, quantize_ort
from export.sensitivity import rank_nodes

SUFFIX = "_DequantizeLinear_Output"


class _Net(torch.nn.Module):
    """conv -> act -> conv (stride 2) -> act -> flatten -> linear, on 32x32 inputs."""

    def __init__(self, act: str) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8 * 16 * 16, 6)
        self.a1, self.a2 = ((torch.nn.PReLU(8), torch.nn.PReLU(8)) if act == "prelu"
                            else (torch.nn.ReLU(), torch.nn.ReLU()))

    def forward(self, x):
        return self.fc(torch.flatten(self.a2(self.c2(self.a1(self.c1(x)))), 1))


class _Reader(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self.items = iter([{"image": x[i:i + 4]} for i in range(0, len(x), 4)])

    def get_next(self):
        return next(self.items, None)


def _models(d: Path, act: str, outlier: bool = False) -> tuple[Path, Path, np.ndarray]:
    torch.manual_seed(0)
    net = _Net(act).eval()
    if outlier:
        with torch.no_grad():
            net.c1.weight[:, 0] = 0.0  # the outlier channel feeds nothing: only the image's own range is hit
    export_fp32(net, 32, d / "fp32.onnx")
    pre = pre_process(d / "fp32.onnx", d / "pre.onnx")
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(16, 3, 32, 32)).astype(np.float32)
    if outlier:
        calib[0, 0, 0, 0] = 400.0  # one pixel: the image's INT8 range becomes ~100x too wide
    quantize_ort(pre, d / "qdq.onnx", calib, "minmax")
    return pre, d / "qdq.onnx", rng.normal(size=(8, 3, 32, 32)).astype(np.float32)


def _ort_reference(pre: Path, qdq: Path, x: np.ndarray, d: Path):
    for src, dst in ((qdq, d / "qa.onnx"), (pre, d / "fa.onnx")):
        dbg.modify_model_output_intermediate_tensors(str(src), str(dst))
    match = dbg.create_activation_matching(dbg.collect_activations(str(d / "qa.onnx"), _Reader(x)),
                                           dbg.collect_activations(str(d / "fa.onnx"), _Reader(x)))
    weights = dbg.compute_weight_error(dbg.create_weight_matching(str(pre), str(qdq)))
    return match, dbg.compute_activation_error(match), weights


def _combine(dbs):
    return -10 * np.log10(sum(10 ** (-v / 10) for v in dbs))


def test_ranking_matches_onnxruntime_qdq_loss_debug(tmp_path):
    pre, qdq, x = _models(tmp_path, "prelu")
    ranked = rank_nodes(pre, qdq, x, batch=4)
    _, acts, weights = _ort_reference(pre, qdq, x, tmp_path)
    fnodes = {n.name: n for n in onnx.load(str(pre)).graph.node}
    assert [r["op"] for r in sorted(ranked, key=lambda r: r["name"])] == ["Conv", "Conv", "Gemm"]
    for r in ranked:
        keys = [k[: -len(SUFFIX)] if k.endswith(SUFFIX) else k for k in r["activation_pairs"]]
        assert r["activation_sqnr_db"] == pytest.approx(_combine([acts[k]["qdq_err"] for k in keys]), abs=2e-3)
        assert r["weight_sqnr_db"] == pytest.approx(weights[fnodes[r["name"]].input[1]], abs=2e-3)
        assert r["score_db"] == pytest.approx(_combine([r["activation_sqnr_db"], r["weight_sqnr_db"]]), abs=2e-3)
    assert [r["score_db"] for r in ranked] == sorted(r["score_db"] for r in ranked)
    # the pair in front of the PReLU is charged to the conv behind it (through the PReLU): two pairs for c2
    c2 = next(r for r in ranked if r["name"].endswith("c2/Conv"))
    assert len(c2["activation_pairs"]) == 2


def test_a_relu_folded_into_quantize_linear_is_not_counted_as_noise(tmp_path):
    pre, qdq, x = _models(tmp_path, "relu")
    ops = [n.op_type for n in onnx.load(str(qdq)).graph.node]
    assert "Relu" not in ops  # ORT dropped the activations; the QuantizeLinear range clips instead
    ranked = {r["name"].split("/")[-2]: r for r in rank_nodes(pre, qdq, x)}
    match, acts, _ = _ort_reference(pre, qdq, x, tmp_path)
    (key,) = [k[: -len(SUFFIX)] for k in ranked["c2"]["activation_pairs"]]
    clipped = [np.maximum(t, 0) for t in match[key]["pre_qdq"]]
    expected = dbg.compute_signal_to_quantization_noice_ratio(clipped, match[key]["post_qdq"])
    assert ranked["c2"]["activation_sqnr_db"] == pytest.approx(expected, abs=2e-3)
    assert expected > acts[key]["qdq_err"] + 10  # ORT's tool counts the ReLU's zeroing as noise


def test_the_layer_behind_a_badly_calibrated_range_ranks_first(tmp_path):
    pre, qdq, x = _models(tmp_path, "prelu", outlier=True)
    ranked = rank_nodes(pre, qdq, x)
    first_conv = next(n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv")
    assert ranked[0]["name"] == first_conv
    assert ranked[0]["score_db"] < ranked[1]["score_db"] - 10  # far worse than the rest
