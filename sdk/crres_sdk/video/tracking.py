"""Face tracking across frames: :class:`IoUTracker` associates each frame's face boxes greedily by IoU with
the tracks' predicted boxes (last box moved by a smoothed constant velocity), so two people who cross keep their
ids; :class:`Track` is one tracked face and :func:`iou_matrix` the overlap of two sets of boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crres_sdk.matching import MatchResult
from crres_sdk.video.accumulation import TrackTemplate


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of [x1, y1, x2, y2] boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class Track:
    """One tracked face. ``box`` is the last matched box; ``velocity`` the smoothed per-frame box motion."""

    track_id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 1                # frames with a matched detection
    streak: int = 1              # consecutive frames with a matched detection
    misses: int = 0              # consecutive frames without one
    first_frame: int = 0
    last_frame: int = 0
    confirmed: bool = False
    template: "TrackTemplate | None" = None
    state: dict = field(default_factory=dict)
    best_match: "MatchResult | None" = None   # meet-in-the-middle: the match of the sharpest face so far
    matched_frames: int = 0

    def predicted(self) -> np.ndarray:
        """Where the box should be in the next frame: last box + velocity * (frames since last seen + 1)."""
        return self.box + self.velocity * (self.misses + 1)


class IoUTracker:
    """Greedy IoU tracker.

    Each :meth:`update` takes one frame's boxes, matches them to the live tracks' predicted boxes greedily by
    decreasing IoU (pairs below ``iou_threshold`` never match), updates matched tracks (velocity smoothed by
    ``velocity_smoothing``), starts a track for every unmatched box and drops tracks unmatched for more than
    ``max_age`` frames (``motion=False``: predicted box = last box). A track is *confirmed* once it has been matched in ``min_hits`` consecutive frames
    and stays confirmed until dropped. Track ids start at 1 and are never reused.
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 5, min_hits: int = 2,
                 velocity_smoothing: float = 0.5, motion: bool = True) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ValueError(f"max_age must be an int >= 0, got {max_age!r}")
        if isinstance(min_hits, bool) or not isinstance(min_hits, int) or min_hits < 1:
            raise ValueError(f"min_hits must be an int >= 1, got {min_hits!r}")
        if not 0.0 <= velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in [0, 1], got {velocity_smoothing!r}")
        self.iou_threshold = float(iou_threshold)
        self.max_age = max_age
        self.min_hits = min_hits
        self.velocity_smoothing = float(velocity_smoothing)
        self.motion = bool(motion)
        self.tracks: list[Track] = []
        self.frame = -1
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (ids restart at 1)."""
        self.tracks = []
        self.frame = -1
        self._next_id = 1

    def update(self, boxes: Any) -> list[Track]:
        """Advance one frame. Returns, for each input box in order, the track it now belongs to."""
        boxes = np.asarray(boxes, np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4) [x1, y1, x2, y2], got shape {boxes.shape}")
        if not np.all(np.isfinite(boxes)):
            raise ValueError("boxes contain NaN or infinite coordinates")
        if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
            raise ValueError("boxes must have x2 > x1 and y2 > y1")
        self.frame += 1
        assigned: list[Track | None] = [None] * len(boxes)
        if self.tracks and len(boxes):
            predicted = np.stack([t.predicted() for t in self.tracks])
            iou = iou_matrix(predicted, boxes)
            order = np.argsort(-iou, axis=None, kind="stable")
            used_t, used_d = set(), set()
            for flat in order:
                ti, di = divmod(int(flat), len(boxes))
                if iou[ti, di] < self.iou_threshold:
                    break
                if ti in used_t or di in used_d:
                    continue
                used_t.add(ti)
                used_d.add(di)
                assigned[di] = self._hit(self.tracks[ti], boxes[di])
        matched_ids = {t.track_id for t in assigned if t is not None}
        for track in self.tracks:
            if track.track_id not in matched_ids:
                track.misses += 1
                track.streak = 0
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        for di, box in enumerate(boxes):
            if assigned[di] is None:
                track = Track(self._next_id, box.copy(), first_frame=self.frame, last_frame=self.frame)
                track.confirmed = track.streak >= self.min_hits
                self._next_id += 1
                self.tracks.append(track)
                assigned[di] = track
        return assigned  # type: ignore[return-value]

    def _hit(self, track: Track, box: np.ndarray) -> Track:
        if self.motion:
            motion = (box - track.box) / (track.misses + 1)
            a = self.velocity_smoothing
            track.velocity = motion if track.hits == 1 else a * track.velocity + (1 - a) * motion
        track.box = box.copy()
        track.hits += 1
        track.streak += 1
        track.misses = 0
        track.last_frame = self.frame
        track.confirmed = track.confirmed or track.streak >= self.min_hits
        return track
