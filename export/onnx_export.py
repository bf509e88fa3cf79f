"""Checkpoint -> FP32 ONNX (opset >= 17, dynamic batch, input ``image``, output ``embedding``), checked."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from training.models import get_model

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "embedding"


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """The backbone only (the training head is not part of the deployed model), eval mode, strict load."""
    model = get_model(ckpt["model_name"], **ckpt["model_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


class _EmbeddingOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def export_fp32(model: torch.nn.Module, input_size: int, path: Path, opset: int = OPSET) -> None:
    dummy = torch.zeros(2, 3, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_EmbeddingOnly(model).eval(), (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)


def check_onnx(model: torch.nn.Module, path: Path, samples: np.ndarray, opset: int = OPSET,
               atol: float = 1e-3) -> dict[str, Any]:
    """onnx.checker, opset, names, dynamic batch and max |torch - ORT| on ``samples`` (two batch sizes)."""
    import onnxruntime as ort

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    got_opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if got_opset < opset:
        raise RuntimeError(f"{path} has opset {got_opset}, need >= {opset}")
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise RuntimeError(f"{path} has inputs/outputs {names}, expected ['image'] / ['embedding']")
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch_dim.dim_param:
        raise RuntimeError(f"{path}: batch dimension is not dynamic")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, min(len(samples), 8)):
        x = samples[:n]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        out = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(out - ref).max()))
    scale = float(np.abs(ref).max()) or 1.0
    if worst > atol * max(1.0, scale):
        raise RuntimeError(f"{path}: ONNX Runtime differs from torch by {worst:.3g} (tolerance {atol} x {scale:.3g})")
    return {"opset": int(got_opset), "max_abs_diff_vs_torch": worst, "checker": "ok"}
