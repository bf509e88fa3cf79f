"""evaluation.mitm_verification: per-pair 10-fold decisions agree with kfold_accuracy, and the lazy
gallery bank lays out, caches and shares templates as it claims. A toy embedder (a fixed random projection of
the pixels: a test double for the bookkeeping, not a face model); no data needed."""

from __future__ import annotations

import numpy as np
import pytest

from crres_sdk import mitm
from crres_sdk.preprocess import align_faces_uint8
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr
from evaluation.mitm_verification import GalleryBank, fold_decisions
from evaluation.verification import kfold_accuracy


class CountingEmbedder:
    """(N, 112, 112, 3) uint8 -> (N, 8): a fixed random projection of the pixels; counts the crops it saw."""

    def __init__(self) -> None:
        self.w = np.random.default_rng(0).normal(size=(112 * 112 * 3, 8)).astype(np.float32)
        self.seen = 0

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        self.seen += len(crops)
        return crops.reshape(len(crops), -1).astype(np.float32) @ self.w


def test_fold_decisions_reproduce_kfold_accuracy():
    rng = np.random.default_rng(1)
    issame = np.repeat([True, False], 100)
    scores = rng.normal(size=200) + 1.2 * issame
    folds = np.tile(np.repeat(np.arange(10), 10), 2)
    ok = fold_decisions(scores, issame, folds)
    res = kfold_accuracy(scores, issame, folds)
    np.testing.assert_allclose([ok[folds == k].mean() for k in range(10)], res.fold_accuracies)
    assert 0.6 < ok.mean() < 1.0           # separable enough to be informative, not trivially perfect


def test_gallery_bank_layout_cache_and_sharing():
    crop = align_faces_uint8(astronaut_bgr(), ASTRONAUT_LANDMARKS)
    embed = CountingEmbedder()
    # chain 0 has a blur after the first step (differs between scalings); chain 1 none (identical in both)
    chains = [("shear", "disk_blur"), ("disk_blur", "shear")]
    matchers = {mode: mitm.MitmMatcher(embed, None, chains=chains, kernel_scaling=mode)
                for mode in ("image", "literal")}
    bank = GalleryBank(matchers, matchers["image"].embed)
    t_img = bank.templates("image", 0, crop, 28)
    assert t_img.shape == (3, 8) and embed.seen == 3
    want = matchers["image"].embed(np.stack([mitm.match_resolution(h, 28) for h in
                                             matchers["image"].gallery_hypotheses(crop)]))
    np.testing.assert_allclose(t_img, want, rtol=1e-6)
    embed.seen = 0
    t_lit = bank.templates("literal", 0, crop, 28)
    assert embed.seen == 1 and bank.embedded == 4          # only the chain that differs is embedded again
    np.testing.assert_array_equal(t_lit[[0, 2]], t_img[[0, 2]])
    assert not np.allclose(t_lit[1], t_img[1])
    embed.seen = 0
    np.testing.assert_array_equal(bank.templates("image", 0, crop, 28), t_img)   # cached: no new embeddings
    assert embed.seen == 0
    bank.drop_image(0)
    np.testing.assert_array_equal(bank.templates("literal", 0, crop, 28), t_lit)
    assert embed.seen == 0
    with pytest.raises(KeyError):
        bank.templates("pixels", 0, crop, 28)
