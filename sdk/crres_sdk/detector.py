"""MTCNN face detection (Zhang et al. 2016) on ONNX Runtime / OpenVINO, with the glue in the C++ core.

``FaceDetector(min_face=12).detect(frame)`` takes a uint8 H x W x 3 BGR frame and returns :class:`Face`
records sorted by score. The three networks come from the detector bundle that ``make setup`` builds
(``export/detector_bundle.py``); the pyramid, P-Net decoding, NMS, box regression, squaring, candidate
crops and landmark decoding run in ``crres_sdk._core``.

Large images: frames above :data:`MAX_IMAGE_PIXELS` (100 MP) are refused with ImageTooLargeError. Detection runs
on a working copy of at most :data:`DETECT_MAX_PIXELS` (4K UHD, 8.3 MP; ``max_pixels=``), area-downscaled, and
the boxes and landmarks are mapped back to the full frame, where alignment and embedding then work at full
resolution. On a larger photo the smallest face found grows accordingly: ``min_face`` in the working copy, i.e.
``max(min_face, 12 / s)`` px of the original for a downscale ``s`` (29 px on a 48 MP photo). Peak RSS of one
``Recognizer.identify`` (``python -m benchmarks.bench_giant_images --json bench-results/giant.json``, 2-core VM,
ONNX Runtime, 1 thread): 12 MP 2379 -> 1562 MiB (9.5 -> 6.4 s), 48 MP 8986 -> 1757 MiB (34.1 -> 6.9 s), before ->
after the working copy; what remains is mostly the MTCNN pyramid over the 8.3 MP copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import math

import cv2
import numpy as np

from crres_sdk import _core
from crres_sdk.backends import open_model
from crres_sdk.bundle import ModelBundle, find_bundle, load_bundle
from crres_sdk.errors import BundleError, ImageTooLargeError
from crres_sdk.estimator import ResolutionEstimator
from crres_sdk.face import Face
from crres_sdk.preprocess import equivalent_resolution

#: Smallest face the networks can see: P-Net's 12 x 12 receptive field.
MIN_FACE = 12
#: Smallest ``min_face`` accepted: below MIN_FACE the pyramid starts upsampled by MIN_FACE / min_face (at most
#: x2), so P-Net sees 6-11 px faces at 12 px. On LFW's 5-10 px btm-stm faces min_face=6 finds 50 % instead of
#: 30 % (docs/open_set.md), at up to 4x the first level's pixels: an option, not the default.
MIN_FACE_UPSAMPLED = 6
#: Largest frame the SDK accepts (pixels): 100 MP, 300 MB as uint8 BGR. Larger ones raise ImageTooLargeError.
MAX_IMAGE_PIXELS = 100_000_000
#: Detection runs on a copy of at most this many pixels (4K UHD); faces are mapped back to the full frame.
DETECT_MAX_PIXELS = 3840 * 2160


def check_image_size(height: int, width: int, what: str = "image") -> None:
    """ImageTooLargeError for more than MAX_IMAGE_PIXELS pixels."""
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(f"{what} is {width}x{height} = {height * width / 1e6:.1f} MP, over the SDK's limit "
                                 f"of {MAX_IMAGE_PIXELS / 1e6:g} MP (crres_sdk.detector.MAX_IMAGE_PIXELS); downscale "
                                 "it first")
BUNDLE_ENV = "CRRES_DETECTOR_BUNDLE"


def find_detector_bundle(path: str | Path | None = None) -> Path:
    """The MTCNN bundle: ``path``, else $CRRES_DETECTOR_BUNDLE, else models/mtcnn, else ~/.cache/crres."""
    return find_bundle("mtcnn", BUNDLE_ENV, path,
                       "Build it with `make setup` (in a checkout) or `crres models fetch` (needs the convert "
                       "extra, `pip install 'crres[convert]'`, and PyPI access once).")


@dataclass(frozen=True)
class Detections:
    """Raw detector output: boxes (N, 4), scores (N,), landmarks (N, 5, 2), float32, by descending score."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


def pyramid_scales(height: int, width: int, min_face: int, factor: float) -> list[float]:
    """MTCNN's image pyramid: scale 12 / min_face, times `factor` until the short side falls below 12 px."""
    scale = MIN_FACE / min_face
    short = min(height, width) * scale
    scales = []
    while short >= MIN_FACE:
        scales.append(scale)
        scale *= factor
        short *= factor
    return scales


class FaceDetector:
    """MTCNN detector. ``min_face`` >= 6 px (below 12 the frame is upsampled, :data:`MIN_FACE_UPSAMPLED`);
    ``thresholds``/``factor`` default to the bundle's (MTCNN's)."""

    def __init__(
        self,
        min_face: int = MIN_FACE,
        backend: str = "auto",
        *,
        bundle: str | Path | None = None,
        thresholds: Sequence[float] | None = None,
        factor: float | None = None,
        threads: int | None = None,
        estimate_resolution: bool | None = None,
        public_key: str | bytes | None = None,
        max_pixels: int = DETECT_MAX_PIXELS,
    ) -> None:
        if isinstance(min_face, bool) or not isinstance(min_face, (int, np.integer)):
            raise TypeError(f"min_face must be an int, got {type(min_face).__name__}")
        if min_face < MIN_FACE_UPSAMPLED:
            raise ValueError(f"min_face must be >= {MIN_FACE_UPSAMPLED} px (P-Net's 12 px window on a frame "
                             f"upsampled at most x2), got {min_face}")
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 144:
            raise ValueError(f"max_pixels must be an int >= 144 (12 x 12), got {max_pixels!r}")
        self.max_pixels = int(max_pixels)
        self.bundle: ModelBundle = load_bundle(find_detector_bundle(bundle), task="face-detection",
                                               public_key=public_key)
        defaults = self.bundle.manifest.get("detector", {})
        self.min_face = int(min_face)
        self.factor = float(defaults.get("pyramid_factor", 0.709) if factor is None else factor)
        if not 0.1 <= self.factor < 1.0:
            raise ValueError(f"factor must be in [0.1, 1), got {self.factor}")
        self.thresholds = tuple(float(t) for t in (defaults.get("thresholds", (0.6, 0.7, 0.7))
                                                   if thresholds is None else thresholds))
        if len(self.thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must be 3 probabilities, got {thresholds!r}")
        self.threads = threads
        self._core_threads = threads or 1
        self._norm = self.bundle.normalization
        self._nets = {name: open_model(self.bundle.file("onnx", name), backend, threads)
                      for name in ("pnet", "rnet", "onet")}
        self.backend = self._nets["pnet"].backend
        # Effective resolution: None = when the estimator bundle is present, True = required, False = off.
        self.estimator: ResolutionEstimator | None = None
        if estimate_resolution or estimate_resolution is None:
            try:
                self.estimator = ResolutionEstimator(backend=backend, threads=threads)
            except BundleError:
                if estimate_resolution:
                    raise

    def _norm_args(self) -> tuple[list[float], list[float], bool]:
        # Frames are BGR; the networks take the bundle's colour order.
        return list(self._norm.mean), list(self._norm.std), self._norm.color != "bgr"

    def detect_arrays(self, frame: np.ndarray) -> Detections:
        """Raw detections in full-frame coordinates; frames over ``max_pixels`` are detected on a downscaled
        working copy (see the module docstring)."""
        if not _is_frame_like(frame) or frame.shape[0] * frame.shape[1] <= self.max_pixels:
            # an upsampled first level stays within max_pixels too
            area = frame.shape[0] * frame.shape[1] if _is_frame_like(frame) else 0
            return self._detect_arrays(frame, max(self.min_face, MIN_FACE * math.sqrt(area / self.max_pixels)))
        h, w = frame.shape[:2]
        check_image_size(h, w, "frame")
        s = math.sqrt(self.max_pixels / (h * w))
        size = (max(1, int(w * s)), max(1, int(h * s)))
        work = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)  # area: no aliasing, like a camera's binning
        sx, sy = size[0] / w, size[1] / h
        found = self._detect_arrays(work, max(MIN_FACE, self.min_face * min(sx, sy)))
        del work
        scale = np.array([sx, sy, sx, sy], np.float32)
        return Detections((found.boxes / scale).astype(np.float32), found.scores,
                          (found.landmarks / np.array([sx, sy], np.float32)).astype(np.float32))

    def _detect_arrays(self, frame: np.ndarray, min_face: float) -> Detections:
        mean, std, swap = self._norm_args()
        # An empty scale list still validates the frame in the core.
        scales = pyramid_scales(*frame.shape[:2], min_face, self.factor) if _is_frame_like(frame) else []
        levels = _core.mtcnn_pyramid(frame, scales, mean, std, swap, self._core_threads)
        t1, t2, t3 = self.thresholds
        stage1 = []
        for scale, level in zip(scales, levels):
            prob, reg = self._nets["pnet"].run({"image": level})
            stage1.append(_core.mtcnn_pnet_decode(prob[0, 1], reg[0], scale, t1, 0.5))
        boxes = np.concatenate(stage1) if stage1 else np.zeros((0, 9), np.float32)
        if len(boxes) == 0:
            return Detections.empty()
        boxes = _core.mtcnn_refine(boxes[_core.mtcnn_nms(boxes, 0.7, "iou")], True)

        prob, reg = self._nets["rnet"].run({"image": _core.mtcnn_crops(frame, boxes, 24, mean, std, swap,
                                                                        self._core_threads)})
        keep = prob[:, 1] > t2
        boxes = _with_scores(boxes[keep], prob[keep, 1], reg[keep])
        if len(boxes) == 0:
            return Detections.empty()
        boxes = _core.mtcnn_refine(boxes[_core.mtcnn_nms(boxes, 0.7, "iou")], True)

        prob, reg, marks = self._nets["onet"].run({"image": _core.mtcnn_crops(frame, boxes, 48, mean, std, swap,
                                                                               self._core_threads)})
        keep = prob[:, 1] > t3
        boxes = _with_scores(boxes[keep], prob[keep, 1], reg[keep])
        if len(boxes) == 0:
            return Detections.empty()
        landmarks = _core.mtcnn_landmarks(boxes, np.ascontiguousarray(marks[keep]))  # on the squared box
        boxes = _core.mtcnn_refine(boxes, False)
        final = _core.mtcnn_nms(boxes, 0.7, "min")
        return Detections(boxes[final, :4].copy(), boxes[final, 4].copy(), landmarks[final])

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in a uint8 H x W x 3 BGR frame, by descending score."""
        found = self.detect_arrays(frame)
        if len(found.scores) == 0:
            return []
        resolution = equivalent_resolution(found.landmarks)
        effective = (self.estimator.estimate(frame, found.landmarks) if self.estimator is not None
                     else [None] * len(resolution))
        return [
            Face(box=b, score=float(s), landmarks=lm, equivalent_resolution=float(r),
                 effective_resolution=None if e is None else float(e))
            for b, s, lm, r, e in zip(found.boxes, found.scores, found.landmarks, resolution, effective)
        ]


def _is_frame_like(frame: object) -> bool:
    return isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.dtype == np.uint8


def _with_scores(boxes: np.ndarray, scores: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[:, 4] = scores
    out[:, 5:9] = reg
    return np.ascontiguousarray(out, dtype=np.float32)
