"""Every bad input is refused with a TypeError/ValueError that names the argument; never a crash."""

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
    estimate_similarity,
    resize_bicubic,
    warp_faces,
)

FRAME = np.zeros((64, 64, 3), np.uint8)
LM = ARCFACE_TEMPLATE * 0.5


@pytest.mark.parametrize(
    "image, error, words",
    [
        (FRAME.astype(np.float32), TypeError, "image must be uint8"),
        (FRAME.tolist(), TypeError, "image must be a numpy.ndarray"),
        (np.zeros((64, 64), np.uint8), ValueError, "image must have shape (H, W, 3)"),
        (np.zeros((64, 64, 4), np.uint8), ValueError, "3 channels"),
        (np.zeros((0, 64, 3), np.uint8), ValueError, "image is empty"),
        (np.zeros((64, 0, 3), np.uint8), ValueError, "image is empty"),
        (FRAME[:, ::2], ValueError, "packed pixels"),
        (FRAME[:, :, ::-1], ValueError, "packed pixels"),
        (np.asfortranarray(FRAME), ValueError, "packed pixels"),
    ],
)
def test_bad_images(image, error, words):
    for fn in (align_faces, align_faces_uint8):
        with pytest.raises(error, match=_re(words)):
            fn(image, LM)


@pytest.mark.parametrize(
    "landmarks, error, words",
    [
        (np.full((5, 2), np.nan), ValueError, "landmarks[0]: contains NaN"),
        (np.stack([LM, LM + [[np.inf, 0]] + 0]), ValueError, "landmarks[1]: contains NaN or infinite"),
        (np.full((5, 2), 7.0), ValueError, "coincident"),
        (np.stack([np.arange(5.0), 2 * np.arange(5.0)], 1), ValueError, "collinear"),
        (np.zeros((5, 3)), ValueError, "landmarks must have shape (N, K, 2)"),
        (np.zeros((2, 4, 2)), ValueError, "4 points per face but template has 5"),
        (np.array([["a", "b"]] * 5), TypeError, "landmarks must hold real numbers"),
        (np.zeros((5, 2), complex), TypeError, "landmarks must hold real numbers"),
    ],
)
def test_bad_landmarks(landmarks, error, words):
    with pytest.raises(error, match=_re(words)):
        align_faces(FRAME, landmarks)


def test_bad_similarity_inputs():
    with pytest.raises(ValueError, match="at least 2 points"):
        estimate_similarity(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="same number of points"):
        estimate_similarity(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="coincident"):
        estimate_similarity(LM, np.zeros((5, 2)))  # every point onto one: no inverse warp exists
    with pytest.raises(ValueError, match="template must have at least 2 points"):
        align_faces(FRAME, LM[:1], template=LM[:1])


def test_core_rejects_what_the_python_layer_would_have_fixed():
    # The core is importable on its own, so it validates by itself too.
    non_contiguous = np.zeros((2, 5, 4))[:, :, ::2]
    with pytest.raises(ValueError, match="landmarks must be C-contiguous"):
        _core.align_u8(FRAME, non_contiguous, None, 112, 112, False, 1)
    with pytest.raises(TypeError, match="landmarks must be float32 or float64, got int64"):
        _core.align_u8(FRAME, np.zeros((1, 5, 2), np.int64), None, 112, 112, False, 1)
    with pytest.raises(TypeError, match="sizes must be int32 or int64"):
        _core.degrade(np.zeros((1, 8, 8, 3), np.uint8), np.array([4.0]), 1)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"size": 0}, ValueError, "height must be >= 1"),
        ({"size": (112, -3)}, ValueError, "width must be >= 1"),
        ({"size": 11.5}, TypeError, "output size height must be an int"),
        ({"threads": -1}, ValueError, "threads must be >= 0"),
        ({"threads": 1.5}, TypeError, "threads must be an int"),
        ({"input_color": "yuv"}, ValueError, "input_color must be 'bgr' or 'rgb'"),
        ({"size": (100, 120)}, ValueError, "default template needs a square output"),
    ],
)
def test_bad_options(kwargs, error, words):
    with pytest.raises(error, match=_re(words)):
        align_faces(FRAME, LM, **kwargs)


def test_bad_normalization():
    with pytest.raises(ValueError, match="std must be finite and non-zero"):
        Normalization(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="mean must have 3 values"):
        Normalization(mean=(1.0, 2.0))
    with pytest.raises(ValueError, match="mean must be finite"):
        Normalization(mean=(np.nan, 0.0, 0.0))
    with pytest.raises(ValueError, match="color must be 'bgr' or 'rgb'"):
        Normalization(color="hsv")
    with pytest.raises(ValueError, match="std must be finite and non-zero"):
        _core.align_f32(FRAME, LM[None], None, 112, 112, [0, 0, 0], [1, 0, 1], False, 1)


def test_bad_matrices():
    with pytest.raises(ValueError, match="matrices.0. is singular"):
        warp_faces(FRAME, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="matrices.0. is not finite"):
        warp_faces(FRAME, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=_re("matrices must have shape (N, 2, 3)")):
        warp_faces(FRAME, np.zeros((1, 3, 3)))


@pytest.mark.parametrize(
    "crops, sizes, error, words",
    [
        (np.zeros((2, 112, 112, 3), np.uint8), 0, ValueError, "sizes[0] = 0 is outside [1, crop width 112]"),
        (np.zeros((2, 112, 112, 3), np.uint8), [7, 113], ValueError, "sizes[1] = 113 is outside"),
        (np.zeros((2, 112, 112, 3), np.uint8), [7, 8, 9], ValueError, "sizes has 3 entries for 2 crops"),
        (np.zeros((2, 112, 112, 3), np.uint8), 7.5, TypeError, "sizes must be integers"),
        (np.zeros((2, 112, 112, 3), np.float64), 7, TypeError, "crops must be uint8 or float32, got float64"),
        (np.zeros((2, 0, 112, 3), np.uint8), 7, ValueError, "crops has empty images"),
        (np.zeros((2, 112, 112, 3), np.uint8)[:, ::2], 7, ValueError, "crops must be C-contiguous"),
        ([[1, 2]], 1, TypeError, "crops must be a numpy.ndarray"),
    ],
)
def test_bad_degrade_inputs(crops, sizes, error, words):
    with pytest.raises(error, match=_re(words)):
        degrade(crops, sizes)


def test_bad_resize_inputs():
    with pytest.raises(ValueError, match="height must be >= 1"):
        resize_bicubic(np.zeros((8, 8, 3), np.uint8), 0)
    with pytest.raises(ValueError, match=_re("images must have shape (N, H, W, C)")):
        resize_bicubic(np.zeros((1, 2, 8, 8, 3), np.uint8), 4)
    with pytest.raises(ValueError, match="layout must be 'nhwc' or 'nchw'"):
        degrade(np.zeros((1, 8, 8, 3), np.uint8), 4, layout="chw")


def test_bad_equivalent_resolution_inputs():
    with pytest.raises(ValueError, match="landmarks.0. contains NaN"):
        equivalent_resolution(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="at least 2 points"):
        equivalent_resolution(np.zeros((1, 1, 2)))


def _re(words: str) -> str:
    import re

    return re.escape(words)
