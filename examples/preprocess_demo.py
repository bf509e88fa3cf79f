"""Preprocessing demo: one real face, detected and aligned at every distance a CCTV camera sees it.

Uses scikit-image's astronaut photo (ships with scikit-image). The frame is shrunk so the face carries 112, 40,
14 and 7 px, as if the person stood further away. MTCNN (crres_sdk.FaceDetector) finds the face and its
landmarks where it can (down to ~12 px boxes); below that the full-size landmarks, scaled, stand in for a
tracker's. Each face is aligned by the C++ core and reported with its equivalent resolution (geometry) and
effective resolution (blind estimator). The HR crop is also degraded synthetically to the same resolutions
(F_up(F_down,r(I)), the training and evaluation definition), so the two can be compared side by side.

    python examples/preprocess_demo.py --out out/demo
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

import crres_sdk as crres

RESOLUTIONS = (112, 40, 14, 7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the PNG and JSON")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    frame = np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB -> BGR, as a camera app holds it
    detector = crres.FaceDetector()
    faces = detector.detect(frame)
    if not faces:
        raise SystemExit("no face found in the astronaut image")
    hr_landmarks = faces[0].landmarks
    hr_res = faces[0].equivalent_resolution
    hr_crop = crres.align_faces_uint8(frame, hr_landmarks)

    rows, camera_crops = [], []
    for r in RESOLUTIONS:
        scale = r / hr_res  # shrink the whole frame so the face carries r px of information
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = detector.detect(small)
        source = "detected" if found else "tracked"  # below MTCNN's 12 px: scaled full-size landmarks
        landmarks = found[0].landmarks if found else hr_landmarks * scale
        effective = found[0].effective_resolution if found else None
        if effective is None and detector.estimator is not None:
            effective = float(detector.estimator.estimate(small, landmarks)[0])
        start = time.perf_counter()
        model_input = crres.align_faces(small, landmarks)  # (3, 112, 112) float32 RGB, (x - 127.5) / 128
        elapsed_us = (time.perf_counter() - start) * 1e6
        camera_crops.append(crres.align_faces_uint8(small, landmarks))
        rows.append({
            "target_px": r,
            "frame": f"{small.shape[1]}x{small.shape[0]}",
            "landmarks": source,
            "equivalent_resolution_px": round(float(crres.equivalent_resolution(landmarks)), 1),
            "effective_resolution_px": None if effective is None else round(effective, 1),
            "model_input": list(model_input.shape),
            "align_us": round(elapsed_us, 1),
        })
    synthetic = crres.degrade(np.stack([hr_crop] * len(RESOLUTIONS)), np.array(RESOLUTIONS))

    strip = np.vstack([np.hstack(camera_crops), np.hstack(list(synthetic))])
    cv2.putText(strip, "camera (shrunk frame)", (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 0), 1)
    cv2.putText(strip, "synthetic degrade", (4, 124), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 0), 1)
    png = args.out / "resolutions.png"
    cv2.imwrite(str(png), cv2.resize(strip, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    (args.out / "resolutions.json").write_text(json.dumps(rows, indent=2))

    print(f"{'target px':>9} {'frame':>9} {'landmarks':>9} {'equivalent px':>13} {'effective px':>12} {'align us':>9}")
    for row in rows:
        print(f"{row['target_px']:>9} {row['frame']:>9} {row['landmarks']:>9} {row['equivalent_resolution_px']:>13} "
              f"{str(row['effective_resolution_px']):>12} {row['align_us']:>9}")
    print(f"\nwrote {png} (top: aligned from the shrunk camera frame; bottom: synthetic F_up(F_down,r))")
    print(f"wrote {args.out / 'resolutions.json'}")


if __name__ == "__main__":
    main()
