"""The face record the SDK hands to applications (DESIGN section 4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from crres_sdk.matching import MatchResult


@dataclass
class Face:
    """One detected face.

    ``box`` is [x1, y1, x2, y2] in frame pixels (continuous, x2/y2 exclusive), ``landmarks`` (5, 2) in the
    order left eye, right eye, nose, left and right mouth corner. ``equivalent_resolution`` is the face's size
    in template pixels from its eye distance; ``effective_resolution`` is what a blind estimator measured in the
    aligned crop (lower when the face is blurred, compressed or upscaled), None when no estimator ran.
    After matching, ``match`` holds the typed :class:`crres_sdk.matching.MatchResult` (candidates, threshold,
    decision, probe resolution, matcher) and ``identity``/``match_score``/``decision`` repeat its verdict.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    equivalent_resolution: float
    effective_resolution: float | None = None
    track_id: int | None = None
    identity: str | None = None
    match_score: float | None = None
    decision: str | None = None
    extra: dict = field(default_factory=dict)
    match: "MatchResult | None" = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])
