"""Fused align/warp vs cv2.warpAffine (bilinear, BORDER_CONSTANT 0) and vs the unfused pipeline.

These hold the bilinear warp, ``resample="bilinear"``: the default, ``"bicubic"``, and ``"matched"`` take it only
for faces at or above the crop size (tests/core/test_small_faces.py and test_matched.py cover smaller faces).

Tolerance: OpenCV >= 4.11 interpolates in float32 like the core, so uint8 results agree within 1 grey level
(rounding of values that land within float error of .5). Float results agree within 1e-2 grey levels on small
images and 5e-2 on Full-HD frames, where float32 source coordinates carry ~1e-4 px of rounding.
"""

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crres_sdk import (
    ARCFACE_TEMPLATE,
    Normalization,
    align_faces,
    align_faces_uint8,
    estimate_similarity,
    warp_faces,
    warp_faces_uint8,
)

from .helpers import face_landmarks, random_frame, similarity

RAW = Normalization(color="bgr", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def cv_warp(image, m, size_hw, dtype=None):
    src = image if dtype is None else image.astype(dtype)
    return cv2.warpAffine(src, m, (size_hw[1], size_hw[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    out_h=st.integers(1, 40),
    out_w=st.integers(1, 40),
    scale=st.floats(0.1, 4.0),
    angle=st.floats(-np.pi, np.pi),
)
def test_matches_cv2_warp_affine(seed, h, w, out_h, out_w, scale, angle):
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, h, w)
    m = similarity(scale, angle, rng.uniform(-w, w), rng.uniform(-h, h))
    ours_u8 = warp_faces_uint8(frame, m, size=(out_h, out_w), resample="bilinear")
    assert ours_u8.shape == (out_h, out_w, 3) and ours_u8.dtype == np.uint8
    assert np.abs(ours_u8.astype(int) - cv_warp(frame, m, (out_h, out_w))).max() <= 1
    ours_f32 = warp_faces(frame, m, size=(out_h, out_w), normalization=RAW, resample="bilinear")
    expected = cv_warp(frame, m, (out_h, out_w), np.float32).transpose(2, 0, 1)
    np.testing.assert_allclose(ours_f32, expected, atol=1e-2)


def test_interior_fast_path_and_borders_match_cv2_on_a_full_hd_frame():
    rng = np.random.default_rng(7)
    frame = random_frame(rng, 1080, 1920)
    landmarks = face_landmarks(rng, (1080, 1920), 32)
    landmarks[:4] -= [1900, 0]  # a few faces leaving the frame on the left
    crops = align_faces_uint8(frame, landmarks, resample="bilinear")
    for crop, lm in zip(crops, landmarks):
        expected = cv_warp(frame, estimate_similarity(lm), (112, 112))
        assert np.abs(crop.astype(int) - expected).max() <= 1


def test_fused_normalisation_equals_unfused_pipeline():
    rng = np.random.default_rng(11)
    frame = random_frame(rng, 480, 640)
    landmarks = face_landmarks(rng, (480, 640), 8)
    norm = Normalization(color="rgb", mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    ours = align_faces(frame, landmarks, normalization=norm, resample="bilinear")
    assert ours.shape == (8, 3, 112, 112) and ours.dtype == np.float32
    for got, lm in zip(ours, landmarks):
        crop = cv_warp(frame, estimate_similarity(lm), (112, 112), np.float32)[:, :, ::-1]  # BGR -> RGB
        expected = ((crop - np.array(norm.mean, np.float32)) / np.array(norm.std, np.float32)).transpose(2, 0, 1)
        np.testing.assert_allclose(got, expected, atol=5e-2 / 57.1)


def test_colour_order_and_uint8_variant_agree_with_float():
    rng = np.random.default_rng(5)
    frame = random_frame(rng, 200, 200)
    lm = face_landmarks(rng, (200, 200), 1, scale=(0.8, 1.2))[0]
    bgr = align_faces_uint8(frame, lm, resample="bilinear")
    rgb = align_faces_uint8(frame, lm, output_color="rgb", resample="bilinear")
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
    raw = align_faces(frame, lm, normalization=RAW, resample="bilinear")  # BGR planes, no normalisation
    np.testing.assert_array_equal(np.clip(np.floor(raw + 0.5), 0, 255).astype(np.uint8).transpose(1, 2, 0), bgr)


def test_strided_view_equals_contiguous_copy():
    rng = np.random.default_rng(2)
    frame = random_frame(rng, 300, 400)
    view = frame[40:260, 30:370]
    assert not view.flags.c_contiguous
    lm = face_landmarks(rng, view.shape[:2], 4)
    np.testing.assert_array_equal(align_faces(view, lm), align_faces(np.ascontiguousarray(view), lm))


@pytest.mark.parametrize("threads", [0, 2, 3, 64])
def test_threads_give_identical_results(threads):
    rng = np.random.default_rng(9)
    frame = random_frame(rng, 720, 1280)
    lm = face_landmarks(rng, (720, 1280), 9)
    np.testing.assert_array_equal(align_faces(frame, lm, threads=threads), align_faces(frame, lm, threads=1))
    np.testing.assert_array_equal(
        align_faces_uint8(frame, lm, threads=threads), align_faces_uint8(frame, lm, threads=1)
    )


def test_face_outside_the_frame_is_the_border_value():
    frame = np.full((100, 100, 3), 200, np.uint8)
    lm = ARCFACE_TEMPLATE + 1000.0
    assert not align_faces_uint8(frame, lm).any()
    norm = Normalization.arcface()
    np.testing.assert_allclose(align_faces(frame, lm, normalization=norm), -127.5 / 128.0)


def test_identity_alignment_returns_the_crop():
    rng = np.random.default_rng(4)
    crop = random_frame(rng, 112, 112)
    np.testing.assert_array_equal(align_faces_uint8(crop, ARCFACE_TEMPLATE), crop)


def test_custom_output_size_scales_the_template():
    rng = np.random.default_rng(6)
    crop = random_frame(rng, 112, 112)
    big = align_faces_uint8(crop, ARCFACE_TEMPLATE, size=224, resample="bilinear")
    expected = cv_warp(crop, np.array([[2.0, 0, 0], [0, 2.0, 0]]), (224, 224))
    assert np.abs(big.astype(int) - expected).max() <= 1


def test_empty_batch():
    frame = np.zeros((10, 10, 3), np.uint8)
    assert align_faces(frame, np.zeros((0, 5, 2))).shape == (0, 3, 112, 112)
    assert align_faces_uint8(frame, np.zeros((0, 5, 2))).shape == (0, 112, 112, 3)


def _frame_before_guard_page(h: int, w: int):
    """An (h, w, 3) uint8 array whose last byte sits right before an unreadable page (Linux)."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    n = h * w * 3
    total = (n // page + 2) * page
    buf = mmap.mmap(-1, total, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mprotect(ctypes.c_void_p(base + total - page), ctypes.c_size_t(page), 0) != 0:
        pytest.skip("mprotect unavailable")
    frame = np.frombuffer(buf, np.uint8, count=n, offset=total - page - n).reshape(h, w, 3)
    return frame, buf


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="Linux only")
def test_no_read_past_the_last_pixel():
    # Sampling right up to the bottom-right pixel must not touch the byte after it (a read there faults).
    # The guard page checks the release build (ASan checks only the sanitizer build).
    frame, keep_alive = _frame_before_guard_page(37, 53)
    frame[:] = np.random.default_rng(0).integers(0, 256, frame.shape, dtype=np.uint8)
    rng = np.random.default_rng(1)
    matrices = []
    for _ in range(64):
        s = rng.uniform(3.1, 6.0)  # the whole crop inside the frame, so its rows take the interior (SIMD) path
        # crop pixel (x, y) samples (x / s + ox, y / s + oy) with the far corner a hair inside the frame
        last = 111.0 / s
        ox = 53 - 1 - 1e-3 * rng.uniform(1.5, 3.0) - last
        oy = 37 - 1 - 1e-3 * rng.uniform(1.5, 3.0) - last
        matrices.append([[s, 0.0, -s * ox], [0.0, s, -s * oy]])
    matrices = np.array(matrices)
    got = warp_faces_uint8(frame, matrices, resample="bilinear")
    warp_faces(frame, matrices, resample="bilinear")
    for m, crop in zip(matrices, got):
        assert np.abs(crop.astype(int) - cv_warp(frame, m, (112, 112))).max() <= 1
    # These faces are 18-36 px: the small-face warps read a float copy of their region and the frame's border.
    for mode in ("bicubic", "matched"):
        warp_faces_uint8(frame, matrices, resample=mode)
        warp_faces(frame, matrices, resample=mode)
    del keep_alive
