"""evaluation/end_to_end.py on synthetic photos: locating the true face among detections, the shrunk
second image aligned from scaled landmarks or from a detector (misses counted), and the scoring."""

from __future__ import annotations

import numpy as np
import pytest

from crres_sdk import align_faces_uint8
from crres_sdk.detector import Detections
from crres_sdk.preprocess import ARCFACE_TEMPLATE, equivalent_resolution

from evaluation import end_to_end as e2e
from evaluation.datasets import PairDataset
from evaluation.open_set import shrink_photo


def _photo(seed, size=240, eye=60.0):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 255, (size // 8, size // 8, 3), np.uint8).repeat(8, 0).repeat(8, 1)
    lm = (ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(0)) * (eye / 35.24) + size / 2
    return frame, lm


def test_locate_takes_the_detection_at_the_true_face_or_none():
    true = (ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(0)) + 100
    near, far = true + 3, true + 80
    assert e2e.locate(np.stack([far, near]), true) == 1
    assert e2e.locate(np.stack([far]), true) is None
    assert e2e.locate(np.zeros((0, 5, 2)), true) is None


class _Detector:
    """Finds the face (slightly off) only in photos at least ``min_r`` px; counts its calls."""

    def __init__(self, min_r):
        self.min_r, self.calls = min_r, 0

    def detect_arrays(self, frame):
        self.calls += 1
        r = frame.shape[0] / 240 * 112 * 60 / 35.24  # the face's resolution from the photo's size
        if r < self.min_r:
            return Detections.empty()
        s = frame.shape[0] / 240
        lm = ((ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(0)) * (60 / 35.24) + 120 + 0.5) * s - 0.5
        return Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), lm[None].astype(np.float32))


def test_second_image_crops_shrink_align_and_count_misses():
    photos = [_photo(k) for k in range(3)]
    marks = np.stack([lm for _, lm in photos])
    images, sizes = np.array([0, 1, 2, 0]), np.array([40, 16, 8, 40])
    crops, found = e2e.second_image_crops(lambda i: photos[i][0], marks, images, sizes, "landmarks", progress=False)
    assert crops.shape == (4, 112, 112, 3) and found.all()
    frame, lm, _ = shrink_photo(photos[1][0], marks[1], 16)
    assert float(equivalent_resolution(lm[None])[0]) == pytest.approx(16, rel=0.05)
    assert np.array_equal(crops[1], align_faces_uint8(frame, lm[None])[0]) and np.array_equal(crops[0], crops[3])
    det = _Detector(min_r=12)
    crops_d, found_d = e2e.second_image_crops(lambda i: photos[i][0], marks, images, sizes, "detector", det,
                                              progress=False)
    assert found_d.tolist() == [True, True, False, True] and det.calls == 3   # (0, 40) once
    assert not crops_d[2].any()
    assert np.abs(crops_d[0].astype(int) - crops[0].astype(int)).mean() < 12    # same face, landmarks ~1 px apart
    with pytest.raises(ValueError, match="mode"):
        e2e.second_image_crops(lambda i: photos[i][0], marks, images, sizes, "oracle")


class _Cache:
    """HR embeddings by image, and embeddings of crops by their mean colour (a stand-in for a model)."""

    def __init__(self, hr):
        self.hr = hr

    def get(self, index, size):
        return self.hr[np.asarray(index)]

    def embed_crops(self, crops):
        v = np.stack([np.cos(c.mean() / 40.0 + np.arange(4)) for c in crops])
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_evaluate_scores_found_pairs_and_counts_misses_as_failures():
    n = 20
    crops = np.stack([np.full((112, 112, 3), 10 * (k % 10), np.uint8) for k in range(n)])
    cache = _Cache(None)
    emb = cache.embed_crops(crops)
    issame = np.arange(n) % 2 == 0
    other = np.roll(emb, 5, axis=0)
    hr = np.where(issame[:, None], emb, other)
    cache.hr = hr
    ds = PairDataset("t", crops, np.stack([np.arange(n), np.arange(n)], 1), issame, np.arange(n) % 10, [], {})
    found = np.ones(n, bool)
    found[[1, 2]] = False
    out = e2e.evaluate(cache, ds, crops, found)
    assert out["misses"] == 2 and out["miss_rate"] == pytest.approx(0.1) and out["misses_genuine"] == 1
    assert out["n_pairs"] == 18 and out["accuracy_with_misses"] == pytest.approx(out["accuracy"] * 0.9)
    none = e2e.evaluate(cache, ds, crops, np.zeros(n, bool))
    assert none["accuracy"] is None and none["accuracy_with_misses"] == 0.0


def test_fixed_sweep_reports_crop_and_end_to_end_accuracy_and_their_gap():
    n = 20
    photos = [_photo(k) for k in range(n)]
    marks = np.stack([lm for _, lm in photos])
    crops = np.stack([align_faces_uint8(f, lm[None])[0] for f, lm in photos])
    issame = np.arange(n) % 2 == 0

    class Cache(_Cache):
        def get(self, index, size):
            from crres_sdk import degrade

            c = crops[np.asarray(index)]
            return self.embed_crops(c if size == 112 else degrade(c, size))

    ds = PairDataset("t", crops, np.stack([np.arange(n), np.where(issame, np.arange(n), np.roll(np.arange(n), 3))],
                                          1), issame, np.arange(n) % 10, [], {})
    out = e2e.evaluate_fixed(Cache(None), ds, lambda i: photos[i][0], marks, [16], progress=False)
    row = out["16"]
    assert set(row) == {"crop", "landmarks", "gap_pp"} and row["landmarks"]["misses"] == 0
    assert row["gap_pp"]["landmarks"] == pytest.approx(100 * (row["crop"]["accuracy"] - row["landmarks"]["accuracy"]),
                                                       abs=0.01)
