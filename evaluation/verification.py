"""Face verification metrics: cosine similarity, 10-fold accuracy, TAR at FAR, ROC.

Knoche et al. 2022, section 3.4: the cosine distance ``d = 1 - cos(M(I1), M(I2))`` (eq. 2; the paper's
squared norms in the denominator are a typo for the plain norms) separates genuine from impostor pairs by a
threshold chosen by 10-fold cross-validation; ``Acc = (TP + TN) / N`` (eq. 3). As in LFW's View-2 protocol
and InsightFace's ``verification.py``, the threshold of fold k is the one that maximises accuracy on the other
nine folds, and the reported accuracy is the mean (and std) of the ten test-fold accuracies.

Scores here are *similarities* (higher = more alike); ``distance = 1 - similarity`` is what the papers plot.
A pair is called genuine when ``similarity > threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

#: False-accept rates at which TAR is reported.
DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (N, D) arrays of the same shape, got {a.shape} and {b.shape}")
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=1)


def _check_scores(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(issame).ravel()
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("issame must be boolean (or 0/1)")
        y = y.astype(bool)
    if s.shape != y.shape or s.size == 0:
        raise ValueError(f"scores and issame must be non-empty and the same length, got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return s, y


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The similarity threshold with the highest accuracy on these pairs (exact search) and that accuracy.

    Candidates are the midpoints between consecutive distinct scores plus one below the minimum and one above
    the maximum, so the optimum over *all* real thresholds is found (the papers' grid searches approximate it).
    Ties between equally good thresholds go to the middle one of the best run.
    """
    s, y = _check_scores(scores, issame)
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    uniq, first = np.unique(s_sorted, return_index=True)
    # Threshold just below uniq[j]: pairs with index >= first[j] are called genuine.
    n_gen = y.sum()
    gen_below = np.concatenate([[0], np.cumsum(y_sorted)])        # genuine among the first i pairs
    imp_below = np.arange(len(s) + 1) - gen_below                 # impostors among the first i pairs
    cut = np.concatenate([first, [len(s)]])                       # index where "genuine" calls start
    correct = imp_below[cut] + (n_gen - gen_below[cut])
    thresholds = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1e-6]])
    best = np.flatnonzero(correct == correct.max())
    pick = best[len(best) // 2]
    return float(thresholds[pick]), float(correct[pick] / len(s))


def accuracy_at(scores: np.ndarray, issame: np.ndarray, threshold: float) -> float:
    s, y = _check_scores(scores, issame)
    return float(np.mean((s > threshold) == y))


def lfw_folds(n_pairs: int, n_folds: int = 10) -> np.ndarray:
    """Fold index per pair for LFW-style consecutive folds (pairs.txt and InsightFace .bin order)."""
    if n_pairs % n_folds:
        raise ValueError(f"{n_pairs} pairs do not split into {n_folds} equal folds")
    return np.repeat(np.arange(n_folds), n_pairs // n_folds)


@dataclass
class KFoldResult:
    accuracy: float                      # mean test-fold accuracy
    std: float                           # std of the test-fold accuracies
    fold_accuracies: list[float]
    thresholds: list[float]              # similarity threshold chosen per fold (on the other folds)
    threshold_mean: float
    distance_threshold_mean: float       # 1 - threshold: Knoche Fig. 11 plots this

    def to_dict(self) -> dict:
        return asdict(self)


def kfold_accuracy(scores: np.ndarray, issame: np.ndarray, folds: np.ndarray | None = None,
                   n_folds: int = 10) -> KFoldResult:
    """10-fold verification accuracy (Knoche §3.4 eq. 3): threshold from 9 folds, accuracy on the 10th."""
    s, y = _check_scores(scores, issame)
    folds = lfw_folds(len(s), n_folds) if folds is None else np.asarray(folds).ravel()
    if folds.shape != s.shape:
        raise ValueError("folds must give one fold index per pair")
    accs, thrs = [], []
    for k in np.unique(folds):
        test = folds == k
        if test.all():
            raise ValueError("k-fold evaluation needs at least two folds")
        thr, _ = best_threshold(s[~test], y[~test])
        thrs.append(thr)
        accs.append(accuracy_at(s[test], y[test], thr))
    return KFoldResult(float(np.mean(accs)), float(np.std(accs)), [float(a) for a in accs],
                       [float(t) for t in thrs], float(np.mean(thrs)), float(1.0 - np.mean(thrs)))


def roc_curve(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds) for thresholds at every distinct score, descending (pairs with score >= t accepted)."""
    s, y = _check_scores(scores, issame)
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError("ROC needs both genuine and impostor pairs")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp, fp = np.cumsum(y_sorted), np.cumsum(~y_sorted)
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]     # last index of each distinct score
    far = np.r_[0.0, fp[last] / n_imp]
    tar = np.r_[0.0, tp[last] / n_gen]
    thr = np.r_[np.inf, s_sorted[last]]
    return far, tar, thr


def tar_at_far(scores: np.ndarray, issame: np.ndarray, fars=DEFAULT_FARS) -> dict[str, dict]:
    """TAR at each FAR: the highest TAR whose operating point has FAR <= target (no interpolation).

    With n impostor pairs the smallest non-zero FAR is 1/n (LFW: 1/3000 = 3.3e-4), so FAR 1e-4 on LFW is the
    TAR at zero false accepts; ``attainable`` says whether the target is at least 1/n.
    """
    far, tar, thr = roc_curve(scores, issame)
    n_imp = int((~np.asarray(issame, dtype=bool)).sum())
    out = {}
    for target in fars:
        ok = np.flatnonzero(far <= target + 1e-15)
        i = ok[-1]
        out[f"{target:g}"] = {"tar": float(tar[i]), "far": float(far[i]), "threshold": float(thr[i]),
                              "attainable": bool(target >= 1.0 / n_imp)}
    return out


@dataclass
class VerificationReport:
    kfold: KFoldResult
    tar_at_far: dict
    genuine_distance_mean: float
    impostor_distance_mean: float
    n_pairs: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"accuracy": self.kfold.accuracy, "std": self.kfold.std, "kfold": self.kfold.to_dict(),
                "tar_at_far": self.tar_at_far, "genuine_distance_mean": self.genuine_distance_mean,
                "impostor_distance_mean": self.impostor_distance_mean, "n_pairs": self.n_pairs, **self.extra}


def evaluate_scores(scores: np.ndarray, issame: np.ndarray, folds: np.ndarray | None = None,
                    fars=DEFAULT_FARS) -> VerificationReport:
    s, y = _check_scores(scores, issame)
    d = 1.0 - s
    return VerificationReport(kfold_accuracy(s, y, folds), tar_at_far(s, y, fars),
                              float(d[y].mean()) if y.any() else float("nan"),
                              float(d[~y].mean()) if (~y).any() else float("nan"), len(s))
