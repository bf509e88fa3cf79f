"""Face detection: recall on the shared LFW images and frames per second, against OpenCV's Haar cascade.

Recall: every one of the 7,701 LFW View-2 images (../shared/data/lfw/images, 250 x 250, one centred face)
should yield a face; a detection counts when its box centre lies within 40 px of the image centre and its
width is 30-200 px. Speed: 640x480 and 1920x1080 frames holding scikit-image's astronaut face at several
sizes, min face 12 px (Haar: minSize 12 x 12), at 1 and 2 threads. Implementations:
  haar       (baseline) cv2.CascadeClassifier(haarcascade_frontalface_default).detectMultiScale, no landmarks
  crres      crres_sdk.FaceDetector (MTCNN; glue in the C++ core)
  reference  the same MTCNN with numpy/PIL glue (benchmarks/mtcnn_reference.py): the C++ core's share

    python -m benchmarks.bench_detect --json bench-results/detect.json [--lfw ../shared/data/lfw] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from benchmarks.common import Record, fill_speedups, machine, report, time_call
from benchmarks.mtcnn_reference import detect_reference

from crres_sdk import FaceDetector

DEFAULT_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


HAAR_VENV = Path(__file__).resolve().parents[1] / ".venv-haar"
HAAR_WORKER = Path(__file__).resolve().parent / "haar_worker.py"


def haar_python() -> str:
    """An interpreter with OpenCV 4 (whose wheels still ship CascadeClassifier and the cascades)."""
    python = HAAR_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {HAAR_VENV} with opencv-python-headless<5 for the Haar baseline ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(HAAR_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "opencv-python-headless<5", "numpy"], check=True)
    return str(python)


def haar_run(*args: str) -> object:
    done = subprocess.run([haar_python(), str(HAAR_WORKER), *args], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def _centred_hit(boxes_xyxy: np.ndarray, size: int = 250) -> bool:
    if len(boxes_xyxy) == 0:
        return False
    centre = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:4]) / 2
    width = boxes_xyxy[:, 2] - boxes_xyxy[:, 0]
    ok = (np.hypot(*(centre - size / 2).T) <= 40) & (width >= 30) & (width <= 200)
    return bool(ok.any())


def bench_recall(lfw: Path, limit: int | None, detector: FaceDetector, parity_every: int = 10) -> list[Record]:
    images = sorted((lfw / "images").rglob("*.jpg"))[:limit]
    if not images:
        raise SystemExit(f"no LFW images under {lfw / 'images'}")
    hits = {"crres": 0, "haar": 0}
    seconds = {"crres": 0.0, "haar": 0.0}
    parity = {"images": 0, "same_count": 0, "max_box_px": 0.0, "max_landmark_px": 0.0}
    for k, path in enumerate(images):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        start = time.perf_counter()
        found = detector.detect_arrays(frame)
        seconds["crres"] += time.perf_counter() - start
        hits["crres"] += _centred_hit(found.boxes)
        if k % parity_every == 0:  # C++ glue vs the numpy/PIL reference on real images
            ref = detect_reference(detector, frame)
            parity["images"] += 1
            if len(ref.scores) == len(found.scores):
                parity["same_count"] += 1
                if len(ref.scores):
                    parity["max_box_px"] = max(parity["max_box_px"], float(np.abs(ref.boxes - found.boxes).max()))
                    parity["max_landmark_px"] = max(parity["max_landmark_px"],
                                                    float(np.abs(ref.landmarks - found.landmarks).max()))
        if (k + 1) % 500 == 0:
            print(f"  recall: {k + 1}/{len(images)} images", flush=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(str(p) for p in images))
        listing.flush()
        for result in haar_run("--images", listing.name):
            seconds["haar"] += result["seconds"]
            hits["haar"] += _centred_hit(np.asarray(result["boxes"], np.float32).reshape(-1, 4))
    records = []
    for impl in ("haar", "crres"):
        per_image = seconds[impl] / len(images)
        records.append(Record("detect", "lfw_recall", impl, detector.threads or 1, per_image, per_image,
                              extra={"recall": hits[impl] / len(images), "images": len(images),
                                     "criterion": "box centre within 40 px of image centre, width 30-200 px",
                                     **({"backend": detector.backend, "parity_vs_reference": parity}
                                        if impl == "crres" else {})}))
    return records


def scene(height: int, width: int) -> np.ndarray:
    """A grey frame with the astronaut's face pasted at 100, 48 and 24 px widths."""
    face = np.ascontiguousarray(data.astronaut()[40:200, 150:290, ::-1])
    frame = np.full((height, width, 3), 110, np.uint8)
    x = 20
    for w in (100, 48, 24):
        small = cv2.resize(face, None, fx=w / 84, fy=w / 84, interpolation=cv2.INTER_AREA)
        frame[40:40 + small.shape[0], x:x + small.shape[1]] = small
        x += small.shape[1] + 30
    return frame


def bench_speed(repeats: int, threads_list: list[int]) -> list[Record]:
    frames = {f"fps_{w}x{h}": scene(h, w) for h, w in ((480, 640), (1080, 1920))}
    records = []
    for threads in threads_list:
        with tempfile.NamedTemporaryFile(suffix=".npz") as npz:
            np.savez(npz.name, **frames)
            haar = haar_run(npz.name, str(repeats), str(threads))
        detector = FaceDetector(threads=threads, estimate_resolution=False)
        for case, frame in frames.items():
            h = haar["frames"][case]
            records.append(Record("detect", case, "haar", threads, h["median_s"], h["p90_s"],
                                  extra={"fps": 1.0 / h["median_s"], "faces_found": len(h["boxes"]),
                                         "opencv": haar["opencv"], "min_face": 12}))
            impls = {"crres": lambda: detector.detect_arrays(frame),
                     "reference": lambda: detect_reference(detector, frame)}
            for name, fn in impls.items():
                med, p90 = time_call(fn, repeats, warmup=1)
                records.append(Record("detect", case, name, threads, med, p90, baseline="haar",
                                      extra={"fps": 1.0 / med, "faces_found": int(len(fn().scores)), "min_face": 12,
                                             "backend": detector.backend}))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records to this JSON file")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder with images/ (skipped if absent)")
    parser.add_argument("--limit", type=int, help="only the first N LFW images")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    records = bench_speed(args.repeats, args.threads)
    if (args.lfw / "images").is_dir():
        records += bench_recall(args.lfw, args.limit, FaceDetector(threads=1, estimate_resolution=False))
    else:
        print(f"(no LFW at {args.lfw}: recall skipped)")
    fill_speedups(records)
    for r in records:
        r.extra.update(machine())
    report(records, args.json, unit="ms")
    for r in records:
        if "recall" in r.extra:
            print(f"recall {r.impl:<8} {r.extra['recall']:.4f} on {r.extra['images']} LFW images")
        if "parity_vs_reference" in r.extra:
            print(f"parity vs numpy reference: {r.extra['parity_vs_reference']}")


if __name__ == "__main__":
    main()
