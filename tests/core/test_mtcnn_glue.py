"""MTCNN glue in the C++ core (NMS, P-Net decoding, candidate crops, pyramid checks) against the numpy/PIL
reference in benchmarks/mtcnn_reference.py. No networks needed, so these also run under the sanitizers."""

import numpy as np
import pytest

from benchmarks.mtcnn_reference import _crops, _nms
from crres_sdk import _core


def _random_boxes(rng, n):
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    scores = rng.choice([0.5, 0.7, 0.9, 0.95], n)  # many ties: order must be stable
    return np.concatenate([xy, xy + wh, scores[:, None], rng.normal(0, 0.1, (n, 4))], 1).astype(np.float32)


@pytest.mark.parametrize("mode", ["iou", "min"])
@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_reference(mode, seed):
    boxes = _random_boxes(np.random.default_rng(seed), 300)
    for threshold in (0.3, 0.5, 0.7):
        np.testing.assert_array_equal(_core.mtcnn_nms(boxes, threshold, mode), _nms(boxes, threshold, mode))


def test_pnet_decode_matches_numpy():
    rng = np.random.default_rng(3)
    prob = rng.random((37, 53), dtype=np.float32)
    reg = rng.normal(0, 0.1, (4, 37, 53)).astype(np.float32)
    got = _core.mtcnn_pnet_decode(prob, reg, 0.35, 0.9, 1.0)  # NMS threshold 1: keeps everything
    i, j = np.nonzero(prob >= 0.9)
    expected = np.stack([2 * j / 0.35, 2 * i / 0.35, (2 * j + 12) / 0.35, (2 * i + 12) / 0.35, prob[i, j],
                         *reg[:, i, j]], 1)
    expected = expected[np.argsort(-expected[:, 4], kind="stable")]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_crops_match_pil_reference():
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10.3, 5.7, 60.1, 55.5], [-20.0, -8.5, 30.0, 41.5], [140.2, 100.0, 190.0, 150.0],
                      [50.0, 50.0, 53.0, 53.0]], np.float32)
    for size in (24, 48):
        ours = _core.mtcnn_crops(frame, boxes, size, [127.5] * 3, [128.0] * 3, True, 1)
        np.testing.assert_allclose(ours, _crops(np.ascontiguousarray(frame[:, :, ::-1]), boxes, size), atol=1e-6)


def test_glue_rejects_bad_arrays():
    with pytest.raises(ValueError, match="mode must be 'iou' or 'min'"):
        _core.mtcnn_nms(np.zeros((1, 5), np.float32), 0.5, "giou")
    with pytest.raises(ValueError, match="boxes.0. is not finite"):
        _core.mtcnn_nms(np.full((1, 5), np.nan, np.float32), 0.5, "iou")
    with pytest.raises(ValueError, match="threshold must be in"):
        _core.mtcnn_nms(np.zeros((1, 5), np.float32), 1.5, "iou")
    with pytest.raises(ValueError, match="reg must have shape"):
        _core.mtcnn_pnet_decode(np.zeros((4, 5), np.float32), np.zeros((4, 5, 4), np.float32), 1.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="scales must be strictly decreasing"):
        _core.mtcnn_pyramid(np.zeros((40, 40, 3), np.uint8), [0.5, 0.7], [0, 0, 0], [1, 1, 1], False, 1)
    with pytest.raises(ValueError, match="scales must be in"):
        _core.mtcnn_pyramid(np.zeros((9, 9, 3), np.uint8), [0.0], [0, 0, 0], [1, 1, 1], False, 1)
    with pytest.raises(ValueError, match="implausibly large"):
        _core.mtcnn_crops(np.zeros((9, 9, 3), np.uint8), np.array([[0, 0, 1e6, 1e6]], np.float32), 24,
                          [0, 0, 0], [1, 1, 1], False, 1)
