"""Checkpoint -> FP32 ONNX (opset >= 17, dynamic batch, input ``image``, output ``embedding``), checked.

``export_fp32`` is training/onnx_export.py's ``export_embedding_onnx``: the project's one ONNX exporter lives in
training (which uses it too, and never imports export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from training.onnx_export import EMBEDDING_INPUT as INPUT_NAME
from training.onnx_export import EMBEDDING_OUTPUT as OUTPUT_NAME
from training.onnx_export import OPSET
from training.onnx_export import export_embedding_onnx as export_fp32  # noqa: F401  (export's name for it)


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
