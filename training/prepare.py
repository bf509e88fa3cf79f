"""Detect and align raw photos into a training folder: ``python -m training.prepare SRC DST``.

``SRC/<identity>/<photo>`` (any size, any of jpg/jpeg/png/bmp) becomes ``DST/<identity>/<stem>.jpg``:
the project's own detector (``crres_sdk.FaceDetector``, MTCNN) finds the faces, the
highest-scoring one is kept, and ``crres_sdk.align_faces_uint8`` warps it by its 5 landmarks to the
canonical 112x112 crop (DESIGN.md Sec. 4) - the same alignment the SDK applies at run time, so the
model trains on what it will see. Photos without a face, or that cannot be read, are skipped and
counted; a summary (and, with ``--json``, a JSON record) is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from training.data import IMAGE_EXTENSIONS


def _iter_photos(src: Path) -> list[tuple[str, Path]]:
    out = []
    for ident in sorted(p for p in src.iterdir() if p.is_dir()):
        out.extend((ident.name, f) for f in sorted(ident.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS)
    return out


def prepare(src: str | Path, dst: str | Path, min_face: int = 20, min_score: float = 0.0, quality: int = 95,
            overwrite: bool = False, detector: Any = None, progress: bool = True) -> dict[str, Any]:
    """Align every photo under ``src/<identity>/`` into ``dst/<identity>/<stem>.jpg``; returns a summary."""
    from crres_sdk import FaceDetector, align_faces_uint8

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    photos = _iter_photos(src)
    if not photos:
        raise ValueError(f"no photos under {src}/<identity>/ ({', '.join(IMAGE_EXTENSIONS)})")
    det = detector if detector is not None else FaceDetector(min_face=min_face)
    summary = {"images": len(photos), "faces_found": 0, "written": 0, "skipped_no_face": 0,
               "skipped_unreadable": 0, "skipped_existing": 0, "multiple_faces": 0, "identities": 0}
    identities: set[str] = set()
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(photos), desc="align", dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            bar = None
    t0 = time.time()
    for i, (ident, path) in enumerate(photos, 1):
        out = dst / ident / (path.stem + ".jpg")
        if out.exists() and not overwrite:
            summary["skipped_existing"] += 1
            identities.add(ident)
        else:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None or frame.size == 0:
                summary["skipped_unreadable"] += 1
            else:
                faces = [f for f in det.detect(frame) if f.score >= min_score]
                if not faces:
                    summary["skipped_no_face"] += 1
                else:
                    summary["faces_found"] += 1
                    summary["multiple_faces"] += len(faces) > 1
                    best = max(faces, key=lambda f: f.score)
                    crop = align_faces_uint8(frame, np.asarray(best.landmarks, np.float32)[None])[0]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    if not cv2.imwrite(str(out), crop, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                        raise OSError(f"could not write {out}")
                    summary["written"] += 1
                    identities.add(ident)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(faces=summary["faces_found"], skipped=summary["skipped_no_face"]
                            + summary["skipped_unreadable"])
        elif progress and (i % 50 == 0 or i == len(photos)):
            print(f"align {i}/{len(photos)}: {summary['faces_found']} faces", file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    summary["identities"] = len(identities)
    summary["seconds"] = round(time.time() - t0, 2)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="raw photos, SRC/<identity>/<photo>")
    p.add_argument("dst", help="output, DST/<identity>/<stem>.jpg (112x112 aligned)")
    p.add_argument("--min-face", type=int, default=20, help="smallest face to detect (px)")
    p.add_argument("--min-score", type=float, default=0.0, help="drop detections below this score")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of the crops")
    p.add_argument("--overwrite", action="store_true", help="re-align photos whose crop already exists")
    p.add_argument("--json", help="also write the summary to this JSON file")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        summary = prepare(args.src, args.dst, args.min_face, args.min_score, args.quality, args.overwrite,
                          progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
