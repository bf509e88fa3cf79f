"""Fit the fixed similarity from the 112 ArcFace-template crop into dlib's 150x150 face chip.

dlib defines its chip by its own 5-point landmarks (outer/inner eye corners, the base of the nose) and
``get_face_chip_details(shape, 150, 0.25)``. Our crops are defined by the ArcFace template. On aligned training
crops (never LFW), each crop is upsampled x4, dlib's HOG detector and 5-point predictor find the face, and the
chip mapping dlib would use (``get_mapping_to_chip``: the rect's corners rotated about its centre go to the
chip's corners) is composed with the x4 upsampling. The five ArcFace template points, sent through each crop's
mapping and averaged, are the template's place in the chip; one least-squares similarity maps the template onto
them. Needs ``dlib-bin`` and ``shape_predictor_5_face_landmarks.dat`` (``make pretrained``).

    python -m training.experiments.dlib_chip_geometry --data ../shared/data/train/celeba --max-images 400
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from crres_sdk.preprocess import ARCFACE_TEMPLATE, estimate_similarity
from training.pretrained import pretrained_file

UPSAMPLE = 4


def chip_mapping(chip) -> np.ndarray:
    """dlib's get_mapping_to_chip as a 2x3 matrix: image pixel -> chip pixel."""
    rect, angle = chip.rect, chip.angle
    cx, cy = (rect.left() + rect.right()) / 2.0, (rect.top() + rect.bottom()) / 2.0
    c, s = math.cos(angle), math.sin(angle)

    def rotate(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + c * dx - s * dy, cy + s * dx + c * dy

    src = np.array([rotate(rect.left(), rect.top()), rotate(rect.right(), rect.top()),
                    rotate(rect.right(), rect.bottom())])
    dst = np.array([[0.0, 0.0], [chip.cols - 1.0, 0.0], [chip.cols - 1.0, chip.rows - 1.0]])
    # Three point pairs fix an affine map exactly.
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def main() -> None:
    import dlib

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of <identity>/<image> aligned 112 crops")
    ap.add_argument("--max-images", type=int, default=400)
    ap.add_argument("--json", type=Path, help="write the fitted matrix and residuals here")
    args = ap.parse_args()

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(pretrained_file("dlib_shape_predictor_5")))
    files = sorted(p for d in sorted(args.data.iterdir()) if d.is_dir() for p in sorted(d.iterdir()))
    step = max(1, len(files) // args.max_images)
    files = files[::step][: args.max_images]
    # Template pixel p -> x4 image pixel (pixel centres): 4 * (p + 0.5) - 0.5.
    up = np.array([[UPSAMPLE, 0.0, (UPSAMPLE - 1) / 2.0], [0.0, UPSAMPLE, (UPSAMPLE - 1) / 2.0]])
    mapped = []
    for path in files:
        crop = np.asarray(Image.open(path).convert("RGB"))
        big = np.asarray(Image.fromarray(crop).resize((112 * UPSAMPLE,) * 2, Image.BICUBIC))
        dets = detector(big, 0)
        if len(dets) != 1:
            continue
        chip = dlib.get_face_chip_details(predictor(big, dets[0]), size=150, padding=0.25)
        m = chip_mapping(chip)
        full = m[:, :2] @ up[:, :2]
        matrix = np.hstack([full, (m[:, :2] @ up[:, 2:] + m[:, 2:])])
        mapped.append(np.hstack([ARCFACE_TEMPLATE, np.ones((5, 1))]) @ matrix.T)
    if len(mapped) < 20:
        raise SystemExit(f"dlib found a single face in only {len(mapped)} crops")
    points = np.stack(mapped)                       # (n, 5, 2): template points in chip pixels
    mean = points.mean(axis=0)
    matrix = estimate_similarity(ARCFACE_TEMPLATE, mean)
    fit = np.hstack([ARCFACE_TEMPLATE, np.ones((5, 1))]) @ matrix.T
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    result = {
        "images": len(files), "used": len(mapped), "chip_from_template": matrix.round(6).tolist(),
        "scale": scale, "rotation_deg": float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))),
        "template_in_chip": mean.round(4).tolist(),
        "fit_residual_px": float(np.abs(fit - mean).max()),
        "per_crop_spread_px": points.std(axis=0).round(3).tolist(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
