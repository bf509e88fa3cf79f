"""INT8 vs FP32 embedding parity per resolution band (cosine mean and 1st percentile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from crres_sdk.backends import open_model

from export.calibration import BANDS
from export.tensorrt_engine import cosine, cosine_stats  # noqa: F401  (cosine: export.parity's name for it)


def embed(path: Path, inputs: np.ndarray, backend: str = "onnxruntime", batch: int = 32,
          threads: int | None = 2) -> np.ndarray:
    sess = open_model(path, backend, threads=threads)
    name = sess.input_names[0]
    out = [sess.run({name: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(out).astype(np.float64)


def band_report(cos: np.ndarray, resolutions: np.ndarray, floor_mean: float, floor_p1: float) -> dict[str, Any]:
    """Per band: n, cosine mean, 1st percentile, min, pass; ``passed`` = every non-empty band passes."""
    bands: dict[str, Any] = {}
    for name, (lo, hi) in BANDS.items():
        sel = (resolutions >= lo) & (resolutions <= hi)
        if not sel.any():
            continue
        bands[name] = {"range": [lo, hi], **cosine_stats(cos[sel], floor_mean, floor_p1)}
    return {"floor_mean": floor_mean, "floor_p1": floor_p1, "bands": bands,
            "passed": bool(bands) and all(b["passed"] for b in bands.values())}


def format_report(label: str, report: dict[str, Any]) -> str:
    lines = [(f"parity {label}: {'PASS' if report['passed'] else 'FAIL'} "
              f"(floors: mean >= {report['floor_mean']}, p1 >= {report['floor_p1']})")]
    for name, b in report["bands"].items():
        lines.append(f"  {name:<5} {b['range'][0]:>3}-{b['range'][1]:<3} n={b['n']:<5} mean={b['cosine_mean']:.4f} "
                     f"p1={b['cosine_p1']:.4f} min={b['cosine_min']:.4f} {'ok' if b['passed'] else 'BELOW FLOOR'}")
    return "\n".join(lines)
