"""Temporal accumulation (:class:`TrackTemplate`): a track keeps a running weighted sum of its faces'
L2-normalised embeddings, each weighted by ``w = r / 112`` with ``r`` the face's probe resolution (the blind
effective resolution, never above the geometric one; see :meth:`Recognizer.probe_resolution`). Weighting by ``r``
(rather than by the pixel count ``r**2``) lets a sharp close-up dominate a few tiny far-away frames without
letting one frame erase the rest. The track's template is the normalised sum; its *accumulated resolution* is the
mean resolution under the same weights, ``sum(w_i * r_i) / sum(w_i)``, i.e. the resolution the template's mass
comes from."""

from __future__ import annotations

import math

import numpy as np

from crres_sdk.preprocess import TEMPLATE_SIZE


def resolution_weight(resolution: float | np.ndarray) -> np.ndarray | float:
    """The weight of a face of probe resolution r in a track's template: ``r / 112`` (r clipped to [1, 112])."""
    r = np.clip(np.asarray(resolution, np.float64), 1.0, TEMPLATE_SIZE)
    return r / TEMPLATE_SIZE if r.ndim else float(r / TEMPLATE_SIZE)


class TrackTemplate:
    """Running resolution-weighted template of one track (see the module docstring for the choice of weights).

    ``add(e, r)`` adds an L2-normalised embedding ``e`` at probe resolution ``r``; ``template`` is
    ``normalise(sum w_i e_i)``, ``resolution`` is ``sum w_i r_i / sum w_i``, with ``w = r / 112``.
    """

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.sum = np.zeros(int(dim), np.float64)
        self.weight = 0.0
        self.weighted_resolution = 0.0
        self.count = 0

    def add(self, embedding: np.ndarray, resolution: float) -> None:
        e = np.asarray(embedding, np.float64).reshape(-1)
        if e.shape != self.sum.shape:
            raise ValueError(f"embedding must have {self.sum.shape[0]} values, got {e.shape[0]}")
        norm = float(np.linalg.norm(e))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError("embedding must be finite and non-zero")
        if not isinstance(resolution, (int, float, np.floating, np.integer)) or not math.isfinite(resolution) \
                or resolution <= 0:
            raise ValueError(f"resolution must be a positive finite number, got {resolution!r}")
        r = float(min(max(resolution, 1.0), TEMPLATE_SIZE))
        w = float(resolution_weight(r))
        self.sum += w * (e / norm)
        self.weight += w
        self.weighted_resolution += w * r
        self.count += 1

    @property
    def template(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("the track template is empty")
        norm = float(np.linalg.norm(self.sum))
        if norm == 0.0:  # opposite embeddings cancelling exactly: no direction to match
            raise ValueError("the track's embeddings cancel out")
        return (self.sum / norm).astype(np.float32)

    @property
    def resolution(self) -> float:
        if self.count == 0:
            raise ValueError("the track template is empty")
        return self.weighted_resolution / self.weight
