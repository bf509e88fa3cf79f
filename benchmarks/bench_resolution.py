"""Effective-resolution estimation error on LFW faces degraded to known resolutions, next to geometry.

For each LFW image (../shared/data/lfw/images) the MTCNN detector finds the face; the frame is then shrunk so
the face carries r px (r drawn log-uniformly per band: 5-10, 11-40, 41-112) and scaled back up to its original
size with bicubic interpolation, as a digitally zoomed or upscaled low-resolution stream looks. The true
effective resolution is r. Implementations:
  geometry   (baseline) equivalent resolution from the landmarks: 112 * eye distance / 35.24 (blind to blur)
  estimator  crres_sdk.ResolutionEstimator on the aligned crop, capped at the geometry
Figures: median absolute error in px and in log2, per band. Timing: per face (align + estimate).

    python -m benchmarks.bench_resolution --json bench-results/resolution.json [--limit 1000]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import Record, fill_speedups, machine, report

from crres_sdk import FaceDetector, ResolutionEstimator, equivalent_resolution

DEFAULT_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
BANDS = {"r5-10": (5, 10), "r11-40": (11, 40), "r41-112": (41, 112)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--limit", type=int, default=900, help="LFW images to use (spread over the bands)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = sorted((args.lfw / "images").rglob("*.jpg"))
    if not images:
        raise SystemExit(f"no LFW images under {args.lfw / 'images'}")
    rng = np.random.default_rng(args.seed)
    images = [images[i] for i in rng.permutation(len(images))[:args.limit]]
    detector, estimator = FaceDetector(estimate_resolution=False), ResolutionEstimator()
    rows = {band: {"true": [], "geometry": [], "estimator": [], "seconds": []} for band in BANDS}
    for k, path in enumerate(images):
        band = list(BANDS)[k % len(BANDS)]
        lo, hi = BANDS[band]
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        found = detector.detect_arrays(frame)
        if not len(found.scores):
            continue
        landmarks = found.landmarks[:1]
        native = float(equivalent_resolution(landmarks)[0])
        r = float(np.exp(rng.uniform(math.log(lo), math.log(min(hi, native)))))
        s = r / native
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        zoomed = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        start = time.perf_counter()
        estimate = float(estimator.estimate(zoomed, landmarks)[0])
        rows[band]["seconds"].append(time.perf_counter() - start)
        rows[band]["true"].append(r)
        rows[band]["geometry"].append(native)
        rows[band]["estimator"].append(estimate)
    records = []
    for band, data in rows.items():
        true = np.array(data["true"])
        for impl in ("geometry", "estimator"):
            est = np.array(data[impl])
            extra = {"faces": len(true), "median_abs_err_px": float(np.median(np.abs(est - true))),
                     "median_abs_err_log2": float(np.median(np.abs(np.log2(est) - np.log2(true)))),
                     "true_range_px": list(BANDS[band])}
            seconds = np.array(data["seconds"]) if impl == "estimator" else np.zeros(1)
            records.append(Record("resolution", band, impl, 1, float(np.median(seconds)),
                                  float(np.percentile(seconds, 90)), baseline=None, extra=extra))
    fill_speedups(records)
    for r in records:
        r.extra.update(machine())
    report(records, args.json, unit="ms")
    print(f"\n{'band':<9} {'impl':<10} {'faces':>5} {'median |err| px':>16} {'median |err| log2':>18}")
    for r in records:
        print(f"{r.case:<9} {r.impl:<10} {r.extra['faces']:>5} {r.extra['median_abs_err_px']:>16.2f} "
              f"{r.extra['median_abs_err_log2']:>18.3f}")


if __name__ == "__main__":
    main()
