"""Blind effective-resolution estimation: how many pixels of information an aligned face really carries.

A tiny CNN (trained by ``training/resolution_estimator.py``, shipped in ``models/resolution_estimator``) reads
the aligned 112 x 112 model-input crop and predicts log2(r). A face cannot carry more information than its
pixels, so :meth:`ResolutionEstimator.estimate` also caps the estimate at the face's equivalent resolution
from geometry: a sharp 60 px face upscaled from 12 px reports ~12, a 20 px face never reports more than 20.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crres_sdk.backends import open_model
from crres_sdk.bundle import find_bundle, load_bundle
from crres_sdk.preprocess import TEMPLATE_SIZE, align_faces, equivalent_resolution

BUNDLE_ENV = "CRRES_ESTIMATOR_BUNDLE"


def find_estimator_bundle(path: str | Path | None = None) -> Path:
    return find_bundle("resolution_estimator", BUNDLE_ENV, path,
                       "It ships in the repository's models/ folder; retrain it with "
                       "`python -m training.resolution_estimator --data DIR --out models/resolution_estimator`.")


class ResolutionEstimator:
    def __init__(self, bundle: str | Path | None = None, backend: str = "auto", threads: int | None = None) -> None:
        self.bundle = load_bundle(find_estimator_bundle(bundle), task="resolution-estimation")
        self.normalization = self.bundle.normalization
        self.range_px = tuple(self.bundle.manifest.get("output", {}).get("range_px", (5, TEMPLATE_SIZE)))
        self._session = open_model(self.bundle.file("onnx", "estimator"), backend, threads)

    def estimate_aligned(self, batch: np.ndarray) -> np.ndarray:
        """(N,) effective resolution in px from (N, 3, 112, 112) crops normalised per the bundle's manifest."""
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 \
                or batch.shape[1:] != (3, TEMPLATE_SIZE, TEMPLATE_SIZE):
            raise ValueError("batch must be a float32 (N, 3, 112, 112) array of aligned, normalised crops")
        if len(batch) == 0:
            return np.zeros(0)
        (log2_r,) = self._session.run({"image": np.ascontiguousarray(batch)})
        return np.clip(np.exp2(log2_r.astype(np.float64)), *self.range_px)

    def estimate(self, frame: np.ndarray, landmarks: np.ndarray, *, input_color: str = "bgr") -> np.ndarray:
        """(N,) effective resolution of the faces with (N, 5, 2) landmarks in a uint8 frame, capped at each
        face's equivalent resolution."""
        points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        # "matched": the crop pixel-closest to degrade(HR crop, r), which is what the estimator was trained on
        crops = align_faces(frame, points, input_color=input_color, normalization=self.normalization,
                            resample="matched")
        return np.minimum(self.estimate_aligned(crops), equivalent_resolution(points))
