"""Resolution-matched alignment (``resample="matched"``; DESIGN section 4, "Canonical crop"). The default,
``resample="bicubic"``, is tested in tests/core/test_small_faces.py.

A face smaller than the crop (resolution r = W * eye distance / template eye distance < W) is warped at its
own scale to a round(r)-wide crop (bicubic, antialiased where that warp shrinks) and brought to the crop size
by the bicubic F_up of ``degrade``. What this buys, on the astronaut photo shrunk as a whole with
cv2.INTER_AREA so its face is r px (landmarks scaled with it), against ``degrade(HR crop, r)`` (what the model
was trained on), as measured when this was written:

    r     RMSE matched / bilinear (grey levels)    embedding cosine matched / bilinear (from-scratch MobileFaceNet,
                                                   models/crres_mobilefacenet_scratch, the default then)
    6          8.91 / 14.54                             0.913 / 0.770
    8          8.46 / 13.90                             0.794 / 0.755
    12         8.61 / 11.82                             0.856 / 0.815
    16         6.17 /  9.11                             0.950 / 0.926
    24         5.15 /  7.38                             0.978 / 0.972
    32         4.17 /  6.32                             0.996 / 0.991
    48         3.09 /  4.69                             0.9995 / 0.9985
    96         1.91 /  2.71                             0.9999 / 0.9998

With the dlib fine-tune that became the default (models/crres_default) the cosines are all 0.97-0.9997 and
the two resamplings are level: matched 0.9968 / 0.9815 / 0.9867 / 0.9705 / 0.9727 / 0.9959 / 0.9978 / 0.9997,
bilinear 0.9937 / 0.9855 / 0.9870 / 0.9728 / 0.9690 / 0.9923 / 0.9972 / 0.9993 at r = 6 ... 96 (matched ahead at
6, 24-96, behind at 8-16 by <= 0.004), so the embedding test keeps the model it was measured with.

The rest of the RMSE is the photo's own downscale (INTER_AREA's box, not degrade's antialiased bicubic, and the
HR crop's bilinear shrink from the photo's 133 px face). With degrade's own F_down as the camera, matched
equals degrade bit for bit (test_matched_inverts_f_down_exactly).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from crres_sdk import (
    ARCFACE_TEMPLATE,
    Normalization,
    _core,
    align_faces,
    align_faces_uint8,
    degrade,
    equivalent_resolution,
    resize_bicubic,
    warp_faces,
    warp_faces_uint8,
)

from ..faces import ASTRONAUT_LANDMARKS, astronaut_bgr
from .helpers import face_landmarks, random_frame, similarity

RAW = Normalization(color="bgr", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
MODEL = Path(__file__).resolve().parents[2] / "models" / "crres_mobilefacenet_scratch" / "model.fp32.onnx"


def scaled_template(r: int) -> np.ndarray:
    """Where the template's points land when a 112 crop is resized to r x r (pixel-area convention)."""
    return (ARCFACE_TEMPLATE + 0.5) * r / 112 - 0.5


@pytest.mark.parametrize("r", [1, 5, 7, 12, 16, 33, 56, 100, 111])
def test_matched_inverts_f_down_exactly(r):
    # A face that is exactly degrade's F_down of an aligned crop comes back as degrade's F_up of it.
    rng = np.random.default_rng(r)
    crop = random_frame(rng, 112, 112)
    small = resize_bicubic(crop, r)
    lm = scaled_template(r)
    assert round(equivalent_resolution(lm)) == r
    np.testing.assert_array_equal(align_faces_uint8(small, lm, resample="matched"), degrade(crop, r))
    # float path: the same F_up in float32 on the small crop's values (no uint8 rounding of the F_up)
    up = resize_bicubic(small.astype(np.float32), 112).transpose(2, 0, 1)
    np.testing.assert_allclose(align_faces(small, lm, normalization=RAW, resample="matched"), up, atol=4e-3)


def astronaut_at(r: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The astronaut photo shrunk with INTER_AREA so its face is ~r px, its landmarks, and the rounded r."""
    photo = astronaut_bgr()
    side = int(round(photo.shape[1] * r / equivalent_resolution(ASTRONAUT_LANDMARKS)))
    f = side / photo.shape[1]
    small = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    lm = (ASTRONAUT_LANDMARKS + 0.5) * f - 0.5
    return small, lm, int(round(equivalent_resolution(lm)))


RS = (6, 8, 12, 16, 24, 32, 48, 96)


@pytest.mark.parametrize("r", RS)
def test_shrunk_photo_is_closer_to_degrade_than_the_bilinear_warp(r):
    hr = align_faces_uint8(astronaut_bgr(), ASTRONAUT_LANDMARKS)
    small, lm, rr = astronaut_at(r)
    target = degrade(hr, rr).astype(np.float64)

    def rmse(crop):
        return float(np.sqrt(((crop.astype(np.float64) - target) ** 2).mean()))

    matched = rmse(align_faces_uint8(small, lm, resample="matched"))
    bilinear = rmse(align_faces_uint8(small, lm, resample="bilinear"))
    # measured: matched/bilinear 0.61-0.73 at every r listed (module docstring)
    assert matched < 0.8 * bilinear, (r, matched, bilinear)


def test_shrunk_photo_embeds_closer_to_degrade_with_the_from_scratch_model():
    ort = pytest.importorskip("onnxruntime")
    if not MODEL.exists():
        pytest.skip(f"{MODEL} not present")
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    norm = Normalization.arcface()  # the bundle's manifest: RGB, (x - 127.5) / 128
    hr = align_faces_uint8(astronaut_bgr(), ASTRONAUT_LANDMARKS)
    batch = []
    for r in RS:
        small, lm, rr = astronaut_at(r)
        ref = degrade(hr, rr)
        ref_input = ((ref[:, :, ::-1].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)
        batch += [ref_input, align_faces(small, lm, normalization=norm, resample="matched"),
                  align_faces(small, lm, normalization=norm, resample="bilinear")]
    (emb,) = session.run(None, {session.get_inputs()[0].name: np.stack(batch).astype(np.float32)})
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ref, matched, bilinear = emb[0::3], emb[1::3], emb[2::3]
    cos_matched, cos_bilinear = (ref * matched).sum(1), (ref * bilinear).sum(1)
    # measured: matched 0.79-0.9999, bilinear 0.75-0.9998; matched higher at every r (module docstring)
    assert np.all(cos_matched > cos_bilinear), (cos_matched, cos_bilinear)
    assert cos_matched[RS.index(16)] > 0.94 and cos_matched[RS.index(32)] > 0.99


def test_faces_at_or_above_the_crop_size_take_the_bilinear_warp():
    rng = np.random.default_rng(3)
    frame = random_frame(rng, 600, 800)
    lm = face_landmarks(rng, (600, 800), 12, scale=(1.0, 3.0))
    lm = np.concatenate([lm, ((ARCFACE_TEMPLATE - 56.0) * (111.6 / 112) + 300.0)[None]])  # rounds to 112
    for mode in ("matched", "bicubic"):
        np.testing.assert_array_equal(align_faces_uint8(frame, lm, resample=mode),
                                      align_faces_uint8(frame, lm, resample="bilinear"))
        np.testing.assert_array_equal(align_faces(frame, lm, resample=mode), align_faces(frame, lm, resample="bilinear"))
        smaller = (ARCFACE_TEMPLATE - 56.0) * (110.0 / 112) + 300.0
        assert not np.array_equal(align_faces_uint8(frame, smaller, resample=mode),
                                  align_faces_uint8(frame, smaller, resample="bilinear"))


def test_uint8_and_float_paths_agree():
    rng = np.random.default_rng(8)
    frame = cv2.GaussianBlur(random_frame(rng, 400, 400), (0, 0), 2.0)  # photo-like: bounded overshoot
    lm = face_landmarks(rng, (200, 200), 10, scale=(0.05, 0.95)) + 100.0  # inside the frame
    u8 = align_faces_uint8(frame, lm, resample="matched").astype(np.float32).transpose(0, 3, 1, 2)
    f32 = align_faces(frame, lm, normalization=RAW, resample="matched")
    # uint8 rounds the small crop and the F_up's intermediate (as degrade does); float32 does not clip. (At a
    # face's edge with the frame's zero border the uint8 path also clips the small crop's overshoot, so faces
    # leaving the frame can differ by more.)
    assert np.abs(u8 - np.clip(f32, 0, 255)).max() <= 2.0


def test_normalisation_commutes_with_the_upsample():
    rng = np.random.default_rng(12)
    frame = random_frame(rng, 300, 300)
    lm = face_landmarks(rng, (300, 300), 6, scale=(0.1, 0.9))
    norm = Normalization(color="rgb", mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    raw = align_faces(frame, lm, normalization=RAW, resample="matched")[:, ::-1]  # BGR -> RGB planes
    expected = (raw - np.array(norm.mean, np.float32)[:, None, None]) / np.array(norm.std, np.float32)[:, None, None]
    np.testing.assert_allclose(align_faces(frame, lm, normalization=norm, resample="matched"), expected, atol=1e-4)


@pytest.mark.parametrize("r", [1.4, 2.6, 5.45, 9.49, 10.3, 20.2, 40.7, 80.1])
def test_a_flat_face_stays_flat(r):
    # Weights sum to 1 in every path: interpolation, the kernel widened for small shrinks (r just above an
    # integer, k = r / round(r) >= 1.02 below r = 25) and the F_up.
    frame = np.full((200, 200, 3), (10, 128, 250), np.uint8)
    lm = (ARCFACE_TEMPLATE - 56.0) * (r / 112) + 100.0
    for mode in ("matched", "bicubic"):
        crop = align_faces_uint8(frame, lm, resample=mode)
        assert np.array_equal(crop, np.broadcast_to(np.array([10, 128, 250], np.uint8), crop.shape))
        np.testing.assert_allclose(align_faces(frame, lm, normalization=RAW, resample=mode),
                                   np.broadcast_to(np.array([10.0, 128, 250])[:, None, None], (3, 112, 112)),
                                   atol=1e-3)


def test_face_leaving_the_frame_gets_the_zero_border():
    frame = np.full((60, 60, 3), 200, np.uint8)
    lm = (ARCFACE_TEMPLATE - 56.0) * (40 / 112) + [5.0, 30.0]  # 40 px face, its left part outside the frame
    for mode in ("matched", "bicubic"):
        crop = align_faces_uint8(frame, lm, resample=mode)
        assert crop[:, :10].max() < 40 and crop[:, 80:].min() == 200
        assert np.isfinite(align_faces(frame, lm, resample=mode)).all()


def test_warp_faces_matches_align_faces_for_the_same_map():
    rng = np.random.default_rng(14)
    frame = random_frame(rng, 300, 300)
    m = similarity(112 / 30.0, 0.3, -300.0, -250.0)  # a 30 px face: crop px per source px = 112 / 30
    lm = (ARCFACE_TEMPLATE - m[:, 2]) @ np.linalg.inv(m[:, :2]).T  # the template's points in the frame
    for mode in ("matched", "bicubic"):
        np.testing.assert_array_equal(warp_faces_uint8(frame, m, resample=mode),
                                      align_faces_uint8(frame, lm, resample=mode))
        np.testing.assert_allclose(warp_faces(frame, m, resample=mode), align_faces(frame, lm, resample=mode),
                                   atol=1e-5)


def test_non_square_crop_follows_degrade():
    # A 96 x 80 crop (another model's template): the small crop is r x degraded_side, as degrade's.
    rng = np.random.default_rng(15)
    crop = random_frame(rng, 96, 80)
    template = ARCFACE_TEMPLATE * (80 / 112)
    r = 20
    small = resize_bicubic(crop, (24, 20))  # degrade's F_down of a 96 x 80 crop to width 20
    lm = (template + 0.5) * r / 80 - 0.5
    lm[:, 1] = (template[:, 1] + 0.5) * 24 / 96 - 0.5
    lm[:, 0] = (template[:, 0] + 0.5) * 20 / 80 - 0.5
    got = align_faces_uint8(small, lm, size=(96, 80), template=template, resample="matched")
    np.testing.assert_array_equal(got, degrade(crop, r))


def test_threads_and_strided_views_give_identical_results():
    rng = np.random.default_rng(16)
    frame = random_frame(rng, 500, 700)
    view = frame[20:480, 30:650]
    lm = face_landmarks(rng, view.shape[:2], 11, scale=(0.1, 1.5))
    for mode in ("matched", "bicubic"):
        one = align_faces(view, lm, threads=1, resample=mode)
        np.testing.assert_array_equal(align_faces(view, lm, threads=3, resample=mode), one)
        np.testing.assert_array_equal(align_faces(np.ascontiguousarray(view), lm, resample=mode), one)
        np.testing.assert_array_equal(align_faces_uint8(view, lm, threads=0, resample=mode),
                                      align_faces_uint8(view, lm, threads=1, resample=mode))


def test_resample_is_validated():
    frame = np.zeros((50, 50, 3), np.uint8)
    for fn in (align_faces, align_faces_uint8):
        with pytest.raises(ValueError, match="resample"):
            fn(frame, ARCFACE_TEMPLATE, resample="nearest")
    with pytest.raises(ValueError, match="resample"):
        _core.align_u8(frame, ARCFACE_TEMPLATE[None], None, 112, 112, False, 1, "nearest")


def test_simd_and_scalar_paths_agree():
    # The vector path (AVX2 here, NEON on aarch64; make test-aarch64 runs the C++ version under qemu) against
    # the scalar loops in the same build: FMA rounding only.
    rng = np.random.default_rng(17)
    frame = random_frame(rng, 720, 1280)
    lm = face_landmarks(rng, (720, 1280), 16)
    for mode in ("matched", "bicubic"):
        fast_f32 = align_faces(frame, lm, normalization=RAW, resample=mode)
        fast_u8 = align_faces_uint8(frame, lm, resample=mode)
        _core.set_simd_enabled(False)
        try:
            assert _core.simd_path() == "scalar"
            slow_f32 = align_faces(frame, lm, normalization=RAW, resample=mode)
            slow_u8 = align_faces_uint8(frame, lm, resample=mode)
        finally:
            _core.set_simd_enabled(True)
        assert _core.simd_path() == _core.simd_available()
        np.testing.assert_allclose(fast_f32, slow_f32, atol=5e-2)  # test_warp.py's Full-HD tolerance
        assert np.abs(fast_u8.astype(int) - slow_u8).max() <= 1
