"""Quickstart: enrol a person from one photo, then find them in a frame where their face is small.

    python examples/quickstart.py [--gallery /tmp/quickstart.db] [--model default]

Uses scikit-image's astronaut photo (ships with scikit-image), so it runs anywhere the SDK is installed.
"""

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from crres_sdk import Recognizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gallery", default=str(Path(tempfile.gettempdir()) / "crres-quickstart.db"))
    p.add_argument("--model", default="default")
    args = p.parse_args()

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # frames are uint8 BGR, as OpenCV reads them
    with Recognizer(args.model, gallery=args.gallery) as rec:
        print(rec)
        rec.enroll("astronaut", [photo], replace=True)  # HR template + templates of degraded crops

        # A "CCTV frame": the same photo at 20 % size (a ~27 px face) on a larger grey frame, with a little blur and
        # noise. At 15 % (19 px, 11 px effective) the default model's 1:N threshold is no longer met (its model card).
        small = cv2.resize(photo, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)
        frame = np.full((480, 640, 3), 90, np.uint8)
        frame[200:200 + small.shape[0], 300:300 + small.shape[1]] = cv2.GaussianBlur(small, (3, 3), 0.8)
        frame = np.clip(frame + np.random.default_rng(0).normal(0, 4, frame.shape), 0, 255).astype(np.uint8)

        for face in rec.identify(frame, top_k=3):
            print(f"face at {face.box.astype(int).tolist()}: {face.equivalent_resolution:.0f} px "
                  f"(effective {face.effective_resolution or 0:.0f} px) -> {face.identity or 'unknown'} "
                  f"score {face.match_score:.3f} vs threshold {face.extra['threshold']:.3f} [{face.decision}]")
            for m in face.extra["candidates"]:
                print(f"    candidate {m.identity}: {m.score:.3f} (templates made at {m.template_resolution:g} px)")


if __name__ == "__main__":
    main()
