"""Peak memory (RSS) and time of one ``Recognizer.identify`` on very large photos (issue 19 item 5).

    python -m benchmarks.bench_giant_images --json bench-results/giant.json [--sizes 12 48] [--repeats 1]

Each case runs in a fresh process (peak RSS is per process): it makes a synthetic photo of N megapixels (4:3, a
smooth random background) with the astronaut's face pasted at 1/10 of the photo's height, enrols her from the
original photo in a throwaway gallery first (so identification does real matching), then times one
``identify(photo)`` and reads the process's peak RSS (``resource.getrusage``; the enrolment's own peak is
measured before and reported apart). Also reported: whether the face was found and named, and the image
pixel limit (``crres_sdk.detector.MAX_IMAGE_PIXELS``) with what happens beyond it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def photo(megapixels: float, seed: int = 0):
    import cv2
    import numpy as np

    from tests.faces import astronaut_bgr

    h = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    w = int(round(h * 4 / 3))
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (max(h // 64, 2), max(w // 64, 2), 3), dtype=np.uint8)
    frame = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    face = astronaut_bgr()
    side = max(h // 10, 64)
    face = cv2.resize(face, (side * face.shape[1] // face.shape[0], side), interpolation=cv2.INTER_AREA)
    y, x = h // 3, w // 3
    frame[y:y + face.shape[0], x:x + face.shape[1]] = face[: h - y, : w - x]
    return frame


def child(megapixels: float, threads: int) -> dict:
    from crres_sdk import Recognizer
    from tests.faces import astronaut_bgr

    with tempfile.TemporaryDirectory() as tmp:
        rec = Recognizer(gallery=Path(tmp) / "g.db", backend="onnxruntime", threads=threads)
        rec.enroll("astronaut", astronaut_bgr())
        frame = photo(megapixels)
        before = _rss_mib()
        t = time.perf_counter()
        faces = rec.identify(frame)
        elapsed = time.perf_counter() - t
        peak = _rss_mib()
        rec.close()
    return {"megapixels": round(frame.shape[0] * frame.shape[1] / 1e6, 2), "shape": list(frame.shape[:2]),
            "identify_s": round(elapsed, 3), "peak_rss_mib": round(peak, 1),
            "peak_rss_before_identify_mib": round(before, 1), "frame_mib": round(frame.nbytes / 2**20, 1),
            "faces": len(faces), "identities": [f.identity for f in faces]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json")
    p.add_argument("--sizes", type=float, nargs="+", default=[12.0, 48.0], help="megapixels per case")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads)))
        return 0
    from benchmarks.common import Record, machine, report
    from crres_sdk.detector import DETECT_MAX_PIXELS, MAX_IMAGE_PIXELS

    records = []
    for mp in args.sizes:
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_giant_images", "--child", str(mp), "--threads",
                               str(args.threads)], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['megapixels']:>6.1f} MP {r['shape']}: identify {r['identify_s']:.2f} s, peak RSS "
              f"{r['peak_rss_mib']:.0f} MiB (before identify {r['peak_rss_before_identify_mib']:.0f}, frame "
              f"{r['frame_mib']:.0f}), faces {r['identities']}")
        records.append(Record("giant_image", f"identify {mp:g} MP", "crres", args.threads, r["identify_s"],
                              r["identify_s"], extra={**r, "detect_max_pixels": DETECT_MAX_PIXELS,
                                                      "max_image_pixels": MAX_IMAGE_PIXELS, **machine()}))
    report(records, args.json, unit="ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
