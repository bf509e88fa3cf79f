"""Faces smaller than the crop, the default ``resample="bicubic"``: one bicubic warp (Keys a = -0.5, the kernel of
``degrade``'s ``F_up``) from the photo's own pixels straight to the crop.

Why not ``"matched"`` (warp at the face's own scale, then ``F_up``; tests/core/test_matched.py): its crop is
pixel-closer to ``degrade(HR crop, r)``, but its second resampling blurs, and end to end it scores lower. LFW's
6,000 pairs with the second photo shrunk as a whole (INTER_AREA) to r and aligned from its landmarks, the dlib
default: see docs/results.md, "Small-face alignment" (``python -m evaluation.shrink_filters``); chosen on 20
CelebA identities' raw photos, disjoint from LFW.
"""

from __future__ import annotations

import numpy as np
import pytest

from crres_sdk import ARCFACE_TEMPLATE, Normalization, align_faces, align_faces_uint8, resize_bicubic

from .helpers import face_landmarks, random_frame, similarity

RAW = Normalization(color="bgr", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def keys(d: np.ndarray, a: float = -0.5) -> np.ndarray:
    d = np.abs(d)
    return np.where(d < 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                    np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))


def reference_bicubic(frame: np.ndarray, src_to_crop: np.ndarray, size: int = 112) -> np.ndarray:
    """Float (size, size, 3) crop by a plain Keys a = -0.5 warp under the (2, 3) frame->crop map; NaN where a
    tap falls outside the frame (the core reads its zero border there)."""
    inv = np.linalg.inv(np.vstack([src_to_crop, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    h, w = frame.shape[:2]
    inside = (x0 >= 1) & (x0 + 2 < w) & (y0 >= 1) & (y0 + 2 < h)
    out = np.zeros((size, size, 3))
    for j in range(4):
        yy = np.clip(y0 - 1 + j, 0, h - 1)
        for i in range(4):
            xx = np.clip(x0 - 1 + i, 0, w - 1)
            out += (keys(sy - (y0 - 1 + j)) * keys(sx - (x0 - 1 + i)))[..., None] * frame[yy, xx]
    out[~inside] = np.nan
    return out


def template_map(lm: np.ndarray) -> np.ndarray:
    """The (2, 3) least-squares similarity frame -> crop the core fits (numpy Umeyama, as cv2's)."""
    from crres_sdk import estimate_similarity

    return estimate_similarity(lm)


@pytest.mark.parametrize("scale,angle", [(0.1, 0.0), (0.2, 0.3), (0.35, -0.5), (0.6, 1.2), (0.9, 0.05)])
def test_bicubic_is_one_keys_warp(scale, angle):
    rng = np.random.default_rng(int(scale * 100))
    frame = random_frame(rng, 120, 160)
    m = similarity(scale, angle, 80.0, 60.0)  # crop -> frame: a face of 112 * scale px in the middle
    lm = (ARCFACE_TEMPLATE - 56.0) @ m[:, :2].T + m[:, 2]
    ref = reference_bicubic(frame.astype(np.float64), template_map(lm))
    ok = np.isfinite(ref)
    assert ok.mean() > 0.5
    f32 = align_faces(frame, lm, normalization=RAW).transpose(1, 2, 0)
    np.testing.assert_allclose(f32[ok], ref[ok], atol=0.05)  # float32 weights and FMA against float64
    u8 = align_faces_uint8(frame, lm).astype(np.float64)
    assert np.abs(u8[ok] - np.clip(np.rint(ref[ok]), 0, 255)).max() <= 1


@pytest.mark.parametrize("r", [7, 12, 16, 28, 56])
def test_on_the_template_grid_it_is_degrades_f_up(r):
    # A face already on the crop's grid at r px: one bicubic warp is PIL's BICUBIC upsample of it, i.e. the
    # F_up of degrade in float (away from the border, where PIL renormalises its clipped taps and the warp reads zeros).
    rng = np.random.default_rng(r)
    small = random_frame(rng, r, r)
    lm = (ARCFACE_TEMPLATE + 0.5) * r / 112 - 0.5
    up = resize_bicubic(small.astype(np.float32), 112)  # float: no intermediate rounding or clipping
    got = align_faces(small, lm, normalization=RAW).transpose(1, 2, 0)
    src = (np.arange(112) + 0.5) * r / 112 - 0.5
    inner = (np.floor(src) >= 1) & (np.floor(src) + 2 <= r - 1)
    mask = inner[:, None] & inner[None, :]
    assert mask.sum() > 0
    np.testing.assert_allclose(got[mask], up[mask], atol=0.05)


def test_bicubic_is_the_default_and_differs_from_matched():
    rng = np.random.default_rng(5)
    frame = random_frame(rng, 300, 400)
    lm = face_landmarks(rng, (300, 400), 8, scale=(0.1, 0.9))
    np.testing.assert_array_equal(align_faces_uint8(frame, lm), align_faces_uint8(frame, lm, resample="bicubic"))
    np.testing.assert_array_equal(align_faces(frame, lm), align_faces(frame, lm, resample="bicubic"))
    assert not np.array_equal(align_faces_uint8(frame, lm), align_faces_uint8(frame, lm, resample="matched"))


def test_bicubic_keeps_more_detail_than_matched():
    # The reason for the default: matched resamples twice (at the face's own scale, then F_up), which blurs. A
    # face of fine texture (random pixels) keeps more of its contrast through one warp.
    rng = np.random.default_rng(6)
    frame = random_frame(rng, 200, 200)
    lm = (ARCFACE_TEMPLATE - 56.0) @ similarity(0.15, 0.4, 0.0, 0.0)[:, :2].T + 100.0  # a 17 px face
    one = align_faces_uint8(frame, lm).astype(np.float64)
    two = align_faces_uint8(frame, lm, resample="matched").astype(np.float64)
    assert one.std() > 1.1 * two.std(), (one.std(), two.std())
