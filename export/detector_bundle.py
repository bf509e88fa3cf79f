"""Build the MTCNN face-detector bundle (P-Net, R-Net, O-Net as ONNX + manifest) for crres_sdk.FaceDetector.

Command-line front end of :mod:`crres_sdk.mtcnn_convert`, which reads the MIT-licensed weights out of PyPI's
``facenet-pytorch==2.6.0`` wheel with a restricted unpickler and writes the graphs with ``onnx.helper``: no torch
needed. The wheel is downloaded once with ``pip download --no-deps`` (sha256-pinned) and kept in the cache folder.
The weights are never committed; ``make setup`` runs this when the bundle is missing. Parity with facenet-pytorch's
own networks run by torch is tested in ``tests/sdk/test_mtcnn_convert.py``.

    python export/detector_bundle.py --out models/mtcnn
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from crres_sdk.errors import BundleError
from crres_sdk.mtcnn_convert import build_bundle, downloads_dir, fetch_wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/mtcnn"), help="bundle folder to write")
    parser.add_argument("--wheel", type=Path, help="use this facenet-pytorch wheel instead of downloading it")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"where the downloaded wheel is kept (default: {downloads_dir()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        wheel = args.wheel if args.wheel is not None else fetch_wheel(args.cache)
        print(f"building the MTCNN bundle from {wheel} into {args.out}", flush=True)
        out = build_bundle(args.out, wheel)
    except (BundleError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out / 'manifest.json'} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
