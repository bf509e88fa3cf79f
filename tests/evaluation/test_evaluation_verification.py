"""10-fold verification accuracy, thresholds, TAR@FAR and ROC on synthetic scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.verification import (
    accuracy_at,
    best_threshold,
    cosine_similarity,
    evaluate_scores,
    kfold_accuracy,
    lfw_folds,
    roc_curve,
    tar_at_far,
)


def _brute_best(scores, issame):
    cands = np.concatenate([[scores.min() - 1], scores, [scores.max() + 1]])
    return max(np.mean((scores > t) == issame) for t in cands)


def test_separable_scores_give_full_accuracy_and_a_threshold_between_the_classes():
    rng = np.random.default_rng(0)
    issame = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    scores = np.where(issame, rng.uniform(0.6, 0.9, issame.size), rng.uniform(-0.2, 0.4, issame.size))
    res = kfold_accuracy(scores, issame)
    assert res.accuracy == 1.0 and res.std == 0.0
    assert all(0.4 <= t <= 0.6 for t in res.thresholds)
    assert res.distance_threshold_mean == pytest.approx(1 - res.threshold_mean)


def test_one_genuine_outlier_per_fold_costs_exactly_one_pair_per_fold():
    # 10 folds x (300 genuine at 0.8, 300 impostor at 0.2); in every fold one genuine pair scores 0.1.
    issame = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    scores = np.where(issame, 0.8, 0.2)
    scores[np.arange(10) * 600] = 0.1
    res = kfold_accuracy(scores, issame)
    assert res.fold_accuracies == pytest.approx([599 / 600] * 10)
    assert res.accuracy == pytest.approx(599 / 600)
    assert all(0.2 < t < 0.8 for t in res.thresholds)


def test_threshold_comes_from_the_training_folds_only():
    # Fold 0's own optimum (0.55) differs from the other folds' (0.35): a leak would give fold 0 100 %.
    issame = np.tile(np.r_[np.ones(2, bool), np.zeros(2, bool)], 10)
    scores = np.tile([0.5, 0.6, 0.1, 0.2], 10).astype(float)   # folds 1..9: any t in (0.2, 0.5) is perfect
    scores[:4] = [0.6, 0.7, 0.3, 0.45]                          # fold 0: perfect only for t in (0.45, 0.6)
    res = kfold_accuracy(scores, issame)
    t0 = res.thresholds[0]
    assert 0.2 < t0 < 0.5
    assert res.fold_accuracies[0] == accuracy_at(scores[:4], issame[:4], t0) < 1.0


def test_best_threshold_matches_brute_force_on_random_scores():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        issame = rng.random(n) < 0.5
        scores = np.round(rng.normal(issame * 0.5, 0.4), 1)   # rounding makes ties
        thr, acc = best_threshold(scores, issame)
        assert acc == pytest.approx(_brute_best(scores, issame))
        assert accuracy_at(scores, issame, thr) == pytest.approx(acc)


def test_tar_at_far_and_roc_known_case():
    # 10 impostors at 0.0..0.9, 4 genuine at 0.35, 0.55, 0.95, 0.99.
    imp = np.arange(10) / 10
    gen = np.array([0.35, 0.55, 0.95, 0.99])
    scores = np.r_[gen, imp]
    issame = np.r_[np.ones(4, bool), np.zeros(10, bool)]
    out = tar_at_far(scores, issame, fars=(0.1, 0.3, 0.01))
    assert out["0.1"]["tar"] == 0.5 and out["0.1"]["far"] == pytest.approx(0.1)   # accept >= 0.9
    assert out["0.3"]["tar"] == 0.5                                               # 0.7: still 2 genuine
    assert out["0.01"]["tar"] == 0.5 and out["0.01"]["far"] == 0.0 and not out["0.01"]["attainable"]
    far, tar, _ = roc_curve(scores, issame)
    assert far[0] == tar[0] == 0 and far[-1] == tar[-1] == 1
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)


def test_cosine_similarity_and_report():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[3.0, 0.0], [1.0, 0.0]])
    assert cosine_similarity(a, b) == pytest.approx([1.0, 0.0])
    issame = np.tile([True, False], 10)
    rep = evaluate_scores(np.where(issame, 0.9, 0.1), issame).to_dict()
    assert rep["accuracy"] == 1.0
    assert rep["genuine_distance_mean"] == pytest.approx(0.1) and rep["impostor_distance_mean"] == pytest.approx(0.9)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        kfold_accuracy(np.ones(7), np.ones(7, bool))          # 7 pairs do not split into 10 folds
    with pytest.raises(ValueError):
        best_threshold(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError):
        best_threshold(np.ones(3), np.ones(4, bool))
    assert lfw_folds(20).tolist() == [k for k in range(10) for _ in range(2)]
