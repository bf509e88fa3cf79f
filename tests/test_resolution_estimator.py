"""Blind effective-resolution estimator: monotone on a degradation sweep of a real face, capped by geometry,
clear errors. Uses the bundle shipped in models/resolution_estimator (trained by training/resolution_estimator.py)."""

import numpy as np
import pytest

from crres_sdk import ResolutionEstimator, align_faces, degrade, equivalent_resolution
from crres_sdk.errors import BundleError
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr

SWEEP = [6, 8, 11, 16, 23, 32, 45, 64]

try:
    ESTIMATOR = ResolutionEstimator()
except BundleError:
    ESTIMATOR = None
needs_bundle = pytest.mark.skipif(ESTIMATOR is None, reason="resolution estimator bundle missing")


@needs_bundle
def test_monotone_on_a_degradation_sweep_of_a_real_face():
    frame = astronaut_bgr()
    crop = align_faces(frame, ASTRONAUT_LANDMARKS, normalization=ESTIMATOR.normalization)[None]
    raw = np.ascontiguousarray((crop * 128.0 + 127.5).clip(0, 255).round().astype(np.float32))
    batch = degrade(np.repeat(raw, len(SWEEP), 0), np.array(SWEEP), layout="nchw")
    estimates = ESTIMATOR.estimate_aligned(((batch.round() - 127.5) / 128.0).astype(np.float32))
    assert np.all(np.diff(estimates) > 0), estimates
    # within a factor of 2 of the truth across the sweep (log2 error < 1)
    assert np.all(np.abs(np.log2(estimates) - np.log2(SWEEP)) < 1.0), estimates


@needs_bundle
def test_upscaled_small_face_reports_its_source_resolution_and_geometry_caps():
    import cv2

    frame = astronaut_bgr()
    small = cv2.resize(frame, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)  # face ~13 px equivalent
    zoomed = cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC)
    sharp, upscaled = ESTIMATOR.estimate(frame, ASTRONAUT_LANDMARKS)[0], ESTIMATOR.estimate(zoomed, ASTRONAUT_LANDMARKS)[0]
    assert upscaled < 0.5 * sharp
    assert upscaled < 30
    tiny = ESTIMATOR.estimate(small, ASTRONAUT_LANDMARKS * 0.1)[0]
    assert tiny <= equivalent_resolution(ASTRONAUT_LANDMARKS * 0.1)  # never more than its pixels carry


@needs_bundle
def test_bad_input():
    with pytest.raises(ValueError, match="float32 .N, 3, 112, 112."):
        ESTIMATOR.estimate_aligned(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="landmarks.0.: contains NaN"):
        ESTIMATOR.estimate(np.zeros((64, 64, 3), np.uint8), np.full((5, 2), np.nan))
    assert ESTIMATOR.estimate_aligned(np.zeros((0, 3, 112, 112), np.float32)).shape == (0,)


def test_missing_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="resolution_estimator bundle not found"):
        ResolutionEstimator(bundle=tmp_path)
