"""The decision threshold at a false-accept rate: the one rule that export's per-resolution thresholds
(export/thresholds.py) and the meet-in-the-middle experiments (training/experiments/mitm_eval.py) share."""

from __future__ import annotations

import math

import numpy as np


def threshold_at_far(impostor: np.ndarray, far: float) -> dict:
    """The lowest threshold t (among impostor scores) at which at most ``far`` of them are accepted (accept when
    score > t, as crres_sdk.Recognizer decides).

    With k = floor(far * n) the threshold is the (k+1)-th largest impostor score; when k = 0 (fewer than 1/far
    impostor pairs) it is the largest score, i.e. FAR 0 on this data. Returns ``{"far", "threshold", "impostors",
    "accepted"}`` (accepted / impostors is the measured FAR) and ``estimable``: n * far >= 1, below which the rate
    cannot be measured on these scores.
    """
    s = np.asarray(impostor, np.float64).ravel()
    if s.size == 0:
        raise ValueError("threshold_at_far needs impostor scores")
    if not 0 < far < 1:
        raise ValueError(f"far must lie in (0, 1), got {far}")
    k = min(int(math.floor(far * s.size + 1e-9)), s.size - 1)
    t = float(np.partition(s, s.size - 1 - k)[s.size - 1 - k])
    return {"far": far, "threshold": t, "impostors": int(s.size), "accepted": int(np.sum(s > t)),
            "estimable": bool(s.size * far >= 1)}
