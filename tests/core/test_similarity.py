"""Similarity transform estimation vs exact maps, skimage (Umeyama) and OpenCV."""

import cv2
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from skimage.transform import SimilarityTransform

from crres_sdk import ARCFACE_TEMPLATE, estimate_similarity

from .helpers import apply, similarity


@given(
    scale=st.floats(0.05, 20.0),
    angle=st.floats(-np.pi, np.pi),
    tx=st.floats(-2000, 2000),
    ty=st.floats(-2000, 2000),
)
def test_recovers_exact_similarity(scale, angle, tx, ty):
    m = similarity(scale, angle, tx, ty)
    src = ARCFACE_TEMPLATE
    np.testing.assert_allclose(estimate_similarity(src, apply(m, src)), m, rtol=1e-9, atol=1e-7)


def test_default_destination_is_arcface_template():
    m = similarity(0.5, 0.3, 12.0, -7.0)
    landmarks = apply(np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2], ARCFACE_TEMPLATE)
    np.testing.assert_allclose(estimate_similarity(landmarks), m, atol=1e-9)


@given(
    n=st.integers(2, 12),
    seed=st.integers(0, 2**32 - 1),
    noise=st.floats(0.0, 5.0),
)
@example(n=3, seed=1337, noise=0.0)  # eigenvalue ratio 1.2e-7: skimage fits it, the core refuses it (CI failure)
def test_matches_skimage_umeyama_on_noisy_points(n, seed, noise):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 500, (n, 2))
    m = similarity(rng.uniform(0.2, 4), rng.uniform(-3, 3), *rng.uniform(-100, 100, 2))
    dst = apply(m, src) + rng.normal(0, noise, (n, 2))
    expected = SimilarityTransform.from_estimate(src, dst)
    if not expected:  # skimage refuses degenerate draws; ours must refuse them too
        with pytest.raises(ValueError):
            estimate_similarity(src, dst)
        return
    eig = np.linalg.eigvalsh(np.cov(src.T, bias=True)) if n >= 3 else None
    if eig is not None and eig[0] <= 1.01e-6 * eig[1]:
        # Nearly collinear draws (eigenvalue ratio <= 1e-6, the core's documented refusal), which skimage still
        # fits: ours refuses them, as no face's landmarks are collinear.
        with pytest.raises(ValueError, match="collinear"):
            estimate_similarity(src, dst)
        return
    np.testing.assert_allclose(estimate_similarity(src, dst), expected.params[:2], rtol=1e-7, atol=1e-6)


def test_matches_opencv_partial_affine_on_noisy_landmarks():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = similarity(rng.uniform(0.3, 3), rng.uniform(-0.8, 0.8), *rng.uniform(0, 800, 2))
        src = apply(m, ARCFACE_TEMPLATE) + rng.normal(0, 0.7, (5, 2))
        # With every point an inlier, OpenCV's Levenberg-Marquardt refinement converges to the least-squares fit.
        cv_m, inliers = cv2.estimateAffinePartial2D(src, ARCFACE_TEMPLATE, ransacReprojThreshold=20.0)
        assert inliers.all()
        np.testing.assert_allclose(estimate_similarity(src), cv_m, atol=5e-3)


def test_never_reflects():
    mirrored = ARCFACE_TEMPLATE * [-1.0, 1.0]  # a mirror image of the template
    m = estimate_similarity(mirrored)
    assert m[0, 0] == pytest.approx(m[1, 1]) and m[0, 1] == pytest.approx(-m[1, 0])
    assert np.linalg.det(m[:, :2]) > 0


def test_two_points_define_the_transform():
    m = similarity(2.0, 0.25, 3.0, 4.0)
    src = np.array([[0.0, 0.0], [10.0, 0.0]])
    np.testing.assert_allclose(estimate_similarity(src, apply(m, src)), m, atol=1e-12)


def test_float32_and_float64_agree():
    src = ARCFACE_TEMPLATE * 1.7 + 33.0
    np.testing.assert_allclose(
        estimate_similarity(src.astype(np.float32)), estimate_similarity(src), rtol=1e-6, atol=1e-5
    )
