"""Does our detect-and-align preparation reproduce the shipped aligned crops? (issue 6, data check)

Runs ``training.prepare`` (crres_sdk MTCNN + similarity alignment) on ``shared/data/train/celeba_raw`` and compares
every crop with the shipped aligned crop of the same photo in ``shared/data/train/celeba`` (aligned by another
detector to the same template): residual translation (phase correlation, px), mean absolute pixel difference, and
the same difference after undoing the translation. With ``--model`` (an ONNX embedding model or bundle) it also
reports the cosine similarity between the two crops' embeddings.

    python -m training.experiments.check_prepare --shared ../shared --out runs/check_prepare [--model BUNDLE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    a = cv2.cvtColor(ours, cv2.COLOR_BGR2GRAY).astype(np.float64)
    b = cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY).astype(np.float64)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(b, a, window)
    shifted = cv2.warpAffine(ours, np.float32([[1, 0, -dx], [0, 1, -dy]]), ours.shape[1::-1],
                             borderMode=cv2.BORDER_REFLECT)
    inner = (slice(8, -8), slice(8, -8))  # ignore the border the shift exposes
    return {"shift_px": float(np.hypot(dx, dy)), "dx": float(dx), "dy": float(dy),
            "mad": float(np.abs(ours.astype(int) - ref.astype(int)).mean()),
            "mad_after_shift": float(np.abs(shifted[inner].astype(int) - ref[inner].astype(int)).mean())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared"))
    p.add_argument("--out", default=str(REPO / "runs" / "check_prepare"))
    p.add_argument("--model", help="embedding bundle folder or ONNX file for the embedding cosine (optional)")
    args = p.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    raw, aligned = shared / "data/train/celeba_raw", shared / "data/train/celeba"
    if not raw.is_dir() or not aligned.is_dir():
        print(f"error: {raw} or {aligned} missing", file=sys.stderr)
        return 2
    crops = out / "crops"
    subprocess.run([sys.executable, "-m", "training.prepare", str(raw), str(crops), "--json",
                    str(out / "prepare.json"), "--no-progress"], check=True, cwd=REPO)
    rows = []
    for ours_path in sorted(crops.glob("*/*.jpg")):
        ref_path = aligned / ours_path.parent.name / ours_path.name
        if not ref_path.is_file():
            continue
        ours, ref = cv2.imread(str(ours_path)), cv2.imread(str(ref_path))
        rows.append({"image": f"{ours_path.parent.name}/{ours_path.name}", **compare(ours, ref)})
    if args.model:
        from evaluation.embedder import open_embedder

        embedder = open_embedder(args.model)
        a = np.stack([cv2.imread(str(crops / r["image"])) for r in rows])   # BGR, as the embedders take
        b = np.stack([cv2.imread(str(aligned / r["image"])) for r in rows])
        ea, eb = embedder.embed(a), embedder.embed(b)
        ea /= np.linalg.norm(ea, axis=1, keepdims=True)
        eb /= np.linalg.norm(eb, axis=1, keepdims=True)
        for r, c in zip(rows, np.sum(ea * eb, axis=1)):
            r["embedding_cosine"] = float(c)
    summary = {"raw_photos": sum(1 for _ in raw.glob("*/*")), "aligned_by_us": sum(1 for _ in crops.glob("*/*.jpg")),
               "compared": len(rows)}
    for key in ("shift_px", "mad", "mad_after_shift", "embedding_cosine"):
        values = np.array([r[key] for r in rows if key in r])
        if len(values):
            summary[key] = {"min": float(values.min()), "p10": float(np.percentile(values, 10)),
                            "median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
                            "max": float(values.max())}
    if any("embedding_cosine" in r for r in rows):  # a crop of another person (group photos) scores near 0
        summary["embedding_cosine_below_0.5"] = sum(r["embedding_cosine"] < 0.5 for r in rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "check_prepare.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
