"""Fusion (Sec. 3.4, eqs. 3-5, Fig. 4, Tables 2-3): the correlation similarity ``r``, template fusion (``t_add``,
``t_concat``), score fusion (``s_add``, ``s_max``) and their combinations named in ``FUSIONS``; ``similarity_tensor``
is R[s, m, n] of eq. 3, ``fuse_scores`` its two-stage reduction and ``fuse`` one score between a probe's and a
gallery image's templates. Pure numpy on templates: no images, no models."""

from __future__ import annotations

import numpy as np


# ------------------------------------------------------------------------------------ Sec. 3.4: fusion

def _centred_unit(t: np.ndarray) -> np.ndarray:
    z = t - t.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    if np.any(norm == 0) or not np.all(np.isfinite(norm)):
        raise ValueError("correlation similarity is undefined for a constant or non-finite template")
    return z / norm


def correlation_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Eq. 3, Pearson correlation of templates: ``(a - mean a) . (b - mean b) / (|a - mean a| |b - mean b|)``,
    the means taken over each template's D elements. (D,) x (D,) -> float; (M, D) x (N, D) -> (M, N)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.ndim not in (1, 2) or b64.ndim not in (1, 2) or a64.shape[-1] != b64.shape[-1] or a64.shape[-1] < 2:
        raise ValueError(f"templates must be (D,) or (N, D) with the same D >= 2, got {a64.shape} and {b64.shape}")
    r = _centred_unit(np.atleast_2d(a64)) @ _centred_unit(np.atleast_2d(b64)).T
    if a64.ndim == 1 and b64.ndim == 1:
        return float(r[0, 0])
    if a64.ndim == 1:
        return r[0]
    return r[:, 0] if b64.ndim == 1 else r


def t_add(templates: np.ndarray) -> np.ndarray:
    """Eq. 4: the element-wise sum of all hypothesis templates, (..., D) -> (D,)."""
    t = np.asarray(templates, np.float64)
    return t.reshape(-1, t.shape[-1]).sum(axis=0)


def t_concat(templates: np.ndarray) -> np.ndarray:
    """Eq. 5: T_add within each scale, then the per-scale sums concatenated: (S, M, D) -> (S * D,)."""
    t = np.asarray(templates, np.float64)
    if t.ndim != 3:
        raise ValueError(f"t_concat needs (scales, hypotheses, D) templates, got shape {t.shape}")
    return t.sum(axis=1).reshape(-1)


def s_add(scores: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Score addition (sum rule, Kittler et al. [24]), computed as the mean: the same ranking as the sum when
    every identity has the same number of hypotheses (the paper's one gallery image per subject), fair when
    they differ, and a score in [-1, 1] that a threshold can apply to."""
    return np.mean(scores, axis=axis)


def s_max(scores: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Score max: the best pair of hypotheses decides (Sec. 3.4)."""
    return np.max(scores, axis=axis)


_REDUCE = {"max": s_max, "add": s_add}

#: Fusion modes of Table 2 / Table 3 / Sec. 4.2, for probe templates P (S, M, D) and gallery templates G (S, N, D)
#: (G[s]: the gallery hypotheses resolution-matched to probe scale s), R[s, m, n] = r(P[s, m], G[s, n]) (eq. 3).
FUSIONS = (
    "smax_sadd",             # sum_s over scales of max over (m, n) of R[s] (Sec. 4.2: S_max then S_add; default)
    "s_max",                 # max over s, m, n of R (Table 2, S_max)
    "s_add",                 # mean over n, then the blur rule over m, mean over s (Table 2, S_add)
    "t_add",                 # r(T_add(P), T_add(G)) (eq. 4 on both sides; Fig. 4a; Table 2, T_add)
    "t_concat",              # r(T_concat(P), T_concat(G)) (eq. 5; Table 2, T_concat)
    "probe_t_add+s_add",     # r(T_add(P), G[s, n]) averaged over (s, n) (Table 3, upper, S_add)
    "probe_t_add+s_max",     # ... max over (s, n) (Table 3, upper, S_max)
    "gallery_t_add+s_add",   # r(P[s, m], T_add(G)) averaged over (s, m) (Table 3, lower, S_add)
    "gallery_t_add+s_max",   # ... max over (s, m) (Table 3, lower, S_max)
)


def _check_pg(probe: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(probe, np.float64), np.asarray(gallery, np.float64)
    if p.ndim != 3 or g.ndim != 3 or p.shape[0] != g.shape[0] or p.shape[2] != g.shape[2] or 0 in p.shape \
            or 0 in g.shape:
        raise ValueError(f"probe must be (S, M, D) and gallery (S, N, D) with the same S and D, got {p.shape} "
                         f"and {g.shape}")
    return p, g


def similarity_tensor(probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """R[s, m, n] = r(P[s, m], G[s, n]) (eq. 3), each probe scale against the gallery matched to it."""
    p, g = _check_pg(probe, gallery)
    return np.einsum("smd,snd->smn", _centred_unit(p), _centred_unit(g))


def fuse_scores(r: np.ndarray, gallery: str = "max", blur: str = "max", scales: str = "add") -> float:
    """Two-stage score fusion of Fig. 4c on R (S, M, N): reduce the gallery hypotheses n, then the probe's blur
    hypotheses m (Sec. 3.3 picks the best: "max"), then the scales s, each by "max" (S_max) or "add" (S_add)."""
    for value, what in ((gallery, "gallery"), (blur, "blur"), (scales, "scales")):
        if value not in _REDUCE:
            raise ValueError(f"{what} must be 'max' or 'add', got {value!r}")
    r = np.asarray(r, np.float64)
    if r.ndim != 3 or 0 in r.shape:
        raise ValueError(f"r must be a non-empty (S, M, N) array, got shape {r.shape}")
    return float(_REDUCE[scales](_REDUCE[blur](_REDUCE[gallery](r, axis=2), axis=1), axis=0))


def fuse(probe: np.ndarray, gallery: np.ndarray, method: str = "smax_sadd", blur: str = "max") -> float:
    """One similarity between a probe's templates (S, M, D) and a gallery image's (S, N, D); see ``FUSIONS``.
    ``blur``: how the probe's blur hypotheses combine in the score-level modes ("max", Sec. 3.3, or "add")."""
    if method not in FUSIONS:
        raise ValueError(f"method must be one of {FUSIONS}, got {method!r}")
    p, g = _check_pg(probe, gallery)
    if method == "smax_sadd":
        return fuse_scores(similarity_tensor(p, g), "max", blur, "add")
    if method == "s_max":
        return fuse_scores(similarity_tensor(p, g), "max", "max", "max")
    if method == "s_add":
        return fuse_scores(similarity_tensor(p, g), "add", blur, "add")
    if method == "t_add":
        return float(correlation_similarity(t_add(p), t_add(g)))
    if method == "t_concat":
        return float(correlation_similarity(t_concat(p), t_concat(g)))
    side, rule = method.split("+")
    if side == "probe_t_add":
        scores = correlation_similarity(g.reshape(-1, g.shape[-1]), t_add(p))
    else:
        scores = correlation_similarity(p.reshape(-1, p.shape[-1]), t_add(g))
    return float(_REDUCE[rule[2:]](scores))
