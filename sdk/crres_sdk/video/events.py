"""What a run puts out besides its summary: the ``face`` event record of one processed face (the event
format is described in :mod:`crres_sdk.video`), the annotated frame (box and the track's decision) and the
writer of the annotated output video."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from crres_sdk.face import Face
from crres_sdk.video.sources import VideoSourceError

_COLOURS = {"match": (60, 200, 60), "unknown": (40, 40, 230), "no-gallery": (180, 180, 180),
            "too-small": (0, 160, 230), "ranked": (200, 160, 0)}


def face_event(face: Face, index: int, timestamp: float) -> dict:
    """The ``face`` event of one processed face (see :mod:`crres_sdk.video`)."""
    track = face.extra.get("track") or {}
    return {
        "type": "face", "frame": index, "time": round(float(timestamp), 4), "track_id": face.track_id,
        "confirmed": bool(face.extra.get("confirmed", False)),
        "box": [round(float(v), 2) for v in face.box],
        "detector_score": _round(face.score),
        "equivalent_resolution": _round(face.equivalent_resolution),
        "effective_resolution": _round(face.effective_resolution),
        "probe_resolution": _round(face.extra.get("probe_resolution")),
        "identity": face.identity, "score": _round(face.match_score),
        "threshold": _round(face.extra.get("threshold")), "decision": face.decision,
        "candidates": [[c.identity, _round(c.score)] for c in face.extra.get("candidates", [])],
        "track": {k: [[c, _round(v)] for c, v in track["candidates"]] if k == "candidates" else
                  _round(v) if isinstance(v, float) else v for k, v in track.items()},
    }


def annotate(frame: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """A copy of the frame with each face's box and a ``#track name score r=..`` label (the track's decision)."""
    out = frame.copy()
    h = out.shape[0]
    scale = max(0.35, min(1.0, h / 900))
    for face in faces:
        track = face.extra.get("track") or {}
        decision = track.get("decision", face.decision) or "unknown"
        colour = _COLOURS.get(decision, (180, 180, 180))
        x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1 if (x2 - x1) < 40 else 2)
        name = track.get("identity") or decision
        score = track.get("score")
        r = face.extra.get("probe_resolution", face.equivalent_resolution)
        label = f"#{face.track_id} {name}" + ("" if score is None else f" {score:.2f}") + f" r={r:.0f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 4 if y1 - th - 6 >= 0 else min(y2 + th + 4, h - 2)
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 1), (0, 0, 0), -1)
        cv2.putText(out, label, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return out


def _open_writer(path: str | os.PathLike, fps: float, shape: tuple[int, ...]) -> cv2.VideoWriter:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (shape[1], shape[0]))
    if not writer.isOpened():
        raise VideoSourceError(f"cannot write video {path} with the mp4v codec (this OpenCV build lacks a writer "
                               "for it, or the folder is not writable)")
    return writer


def _round(value: Any, digits: int = 4) -> Any:
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None
