"""MTCNN face detection (Zhang et al. 2016) on ONNX Runtime / OpenVINO, with the glue in the C++ core.

``FaceDetector(min_face=12).detect(frame)`` takes a uint8 H x W x 3 BGR frame and returns :class:`Face`
records sorted by score. The three networks come from the detector bundle that ``make setup`` builds
(``export/detector_bundle.py``); the pyramid, P-Net decoding, NMS, box regression, squaring, candidate
crops and landmark decoding run in ``crres_sdk._core``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from crres_sdk import _core
from crres_sdk.backends import open_model
from crres_sdk.bundle import ModelBundle, find_bundle, load_bundle
from crres_sdk.errors import BundleError
from crres_sdk.estimator import ResolutionEstimator
from crres_sdk.face import Face
from crres_sdk.preprocess import equivalent_resolution

#: Smallest face the networks can see: P-Net's 12 x 12 receptive field.
MIN_FACE = 12
BUNDLE_ENV = "CRRES_DETECTOR_BUNDLE"


def find_detector_bundle(path: str | Path | None = None) -> Path:
    """The MTCNN bundle: ``path``, else $CRRES_DETECTOR_BUNDLE, else models/mtcnn, else ~/.cache/crres."""
    return find_bundle("mtcnn", BUNDLE_ENV, path,
                       "Build it with `make setup`, or `python export/detector_bundle.py --out "
                       "~/.cache/crres/models/mtcnn` (needs the train extra and PyPI access once).")


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
    """MTCNN detector. ``min_face`` >= 12 px; ``thresholds``/``factor`` default to the bundle's (MTCNN's)."""

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
    ) -> None:
        if isinstance(min_face, bool) or not isinstance(min_face, (int, np.integer)):
            raise TypeError(f"min_face must be an int, got {type(min_face).__name__}")
        if min_face < MIN_FACE:
            raise ValueError(f"min_face must be >= {MIN_FACE} px (P-Net's receptive field), got {min_face}")
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
        mean, std, swap = self._norm_args()
        # An empty scale list still validates the frame in the core.
        scales = pyramid_scales(*frame.shape[:2], self.min_face, self.factor) if _is_frame_like(frame) else []
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
