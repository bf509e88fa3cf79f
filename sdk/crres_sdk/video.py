"""Video: sources, an IoU tracker, per-track template accumulation and the recognition pipeline.

    from crres_sdk import Recognizer
    from crres_sdk.video import VideoPipeline

    rec = Recognizer(gallery="people.db")
    summary = VideoPipeline(rec).run("rtsp://camera/stream", events="events.jsonl", output_video="out.mp4")

Sources (:func:`open_source`): a USB camera index (``0`` or ``"0"``), a video file, an ``rtsp://`` /
``http(s)://`` URL, a GStreamer pipeline string (anything containing ``!``, e.g. a Jetson CSI camera
``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx !
videoconvert ! video/x-raw,format=BGR ! appsink``), or frames already in memory (a sequence of uint8 BGR arrays).

Tracking (:class:`IoUTracker`): greedy IoU association of each frame's face boxes with the tracks' predicted
boxes (last box moved by a smoothed constant velocity), so two people who cross keep their ids.

Temporal accumulation (:class:`TrackTemplate`): a track keeps a running weighted sum of its faces' L2-normalised
embeddings, each weighted by ``w = r / 112`` with ``r`` the face's probe resolution (the blind effective
resolution, never above the geometric one; see :meth:`Recognizer.probe_resolution`). Weighting by ``r`` (rather
than by the pixel count ``r**2``) lets a sharp close-up dominate a few tiny far-away frames without letting one
frame erase the rest. The track's template is the normalised sum; its *accumulated resolution* is the mean
resolution under the same weights, ``sum(w_i * r_i) / sum(w_i)``, i.e. the resolution the template's mass comes
from. Each processed frame the template is matched with :meth:`Recognizer.match` at that accumulated resolution
(gallery level and threshold), next to the face's own single-frame match. Matching goes through the
recognizer's one matcher (:mod:`crres_sdk.matching`): with ``Recognizer(matching="mitm")`` every face is matched
meet-in-the-middle from its crop, and a track's decision is the match of its highest-resolution face so far (an
averaged embedding has no crop to build MITM probes from).

Events (JSON lines, one object per line, ``"type"`` first):

* ``start``: source description, fps, frame count, model, gallery size, pipeline settings.
* ``face``: one per face per processed frame: ``frame``, ``time`` (s), ``track_id``, ``confirmed``, ``box``
  ``[x1, y1, x2, y2]``, ``detector_score``, ``equivalent_resolution``, ``effective_resolution``,
  ``probe_resolution``, the single-frame ``identity``/``score``/``threshold``/``decision`` and ``candidates``
  (``[[identity, score], ...]``), and ``track``: the accumulated template's ``identity``/``score``/
  ``threshold``/``decision``/``resolution``/``frames``/``candidates``.
* ``track``: when a track's accumulated decision or identity changes (including its first decision):
  ``frame``, ``time``, ``track_id``, ``identity``, ``score``, ``threshold``, ``decision``, ``resolution``,
  ``previous`` (the previous ``[decision, identity]`` or null).
* ``end``: the run's summary (the dict :meth:`VideoPipeline.run` returns).

Decisions are ``"match"`` (identity set), ``"unknown"``, ``"too-small"`` (below the lowest calibrated resolution:
no name), ``"no-gallery"`` or, for uncalibrated MITM, ``"ranked"``; ``score`` is the best candidate's fused
score (null without candidates), ``threshold`` the 1:N threshold at the resolution used (null when the model has
no thresholds); each face also carries its typed :class:`crres_sdk.matching.MatchResult` as ``face.match``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from crres_sdk.face import Face
from crres_sdk.matching import MatchResult
from crres_sdk.preprocess import TEMPLATE_SIZE

__all__ = ["FrameSource", "IoUTracker", "Track", "TrackTemplate", "VideoDecodeError", "VideoPipeline", "VideoSource",
           "VideoSourceError", "gstreamer_available", "iou_matrix", "open_source", "resolution_weight"]


class VideoSourceError(RuntimeError):
    """A video source that cannot be opened (missing file, unreachable stream, unsupported backend)."""


class VideoDecodeError(VideoSourceError):
    """A video file stopped delivering frames well before its frame count (corrupt or truncated). ``summary``
    holds what :meth:`VideoPipeline.run` did with the frames before it (events and video up to there are kept)."""

    def __init__(self, message: str, frames_read: int, frame_count: int) -> None:
        super().__init__(message)
        self.frames_read = frames_read
        self.frame_count = frame_count
        self.summary: dict | None = None


#: A file that ends more than this many frames (or this fraction of its frame count, if more) before the count
#: its container states is reported as corrupt; containers' counts can be off by a frame or two.
FRAME_COUNT_SLACK = 2
FRAME_COUNT_SLACK_FRACTION = 0.02


# ------------------------------------------------------------------------------------------------- sources


class VideoSource:
    """Frames from a source: iterate for ``(frame_index, timestamp_s, frame)`` (uint8 H x W x 3 BGR).

    ``fps`` and ``frame_count`` are None when the source does not say (live cameras and streams usually have no
    frame count). File timestamps are ``index / fps`` (the container's position when fps is unknown); live
    sources are stamped with the wall clock since opening. Iteration ends at the end of a file or when a live
    source stops delivering frames; a file that stops well before its stated frame count (a frame that cannot
    be decoded) raises :class:`VideoDecodeError` instead of ending quietly. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, capture: Any, description: str, *, live: bool) -> None:
        self._capture = capture
        self.description = description
        self.live = live
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if math.isfinite(fps) and 0.0 < fps < 1000.0 else None
        count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self.frame_count: int | None = int(count) if not live and math.isfinite(count) and count > 0 else None
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0) or None
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0) or None

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        start = time.monotonic()
        index = 0
        while True:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                count = self.frame_count
                if not self.live and count and index < count - max(FRAME_COUNT_SLACK,
                                                                   FRAME_COUNT_SLACK_FRACTION * count):
                    raise VideoDecodeError(f"{self.description}: no frame could be decoded after frame {index} of "
                                           f"the {count} the file states (corrupt or truncated video)", index, count)
                return
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            elif frame.shape[2] == 4:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
            if self.live:
                t = time.monotonic() - start
            elif self.fps:
                t = index / self.fps
            else:
                t = float(self._capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
            yield index, t, frame
            index += 1

    def info(self) -> dict:
        return {"source": self.description, "fps": self.fps, "frame_count": self.frame_count,
                "width": self.width, "height": self.height, "live": self.live}

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FrameSource(VideoSource):
    """Frames already in memory (a sequence or iterator of uint8 H x W x 3 BGR arrays) at a nominal ``fps``."""

    def __init__(self, frames: Iterable[np.ndarray], fps: float = 25.0, description: str = "frames") -> None:
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self._frames = frames
        self.description = description
        self.live = False
        self.fps = float(fps)
        self.frame_count = len(frames) if hasattr(frames, "__len__") else None  # type: ignore[arg-type]
        first = frames[0] if isinstance(frames, Sequence) and len(frames) else None
        self.width = int(first.shape[1]) if isinstance(first, np.ndarray) and first.ndim == 3 else None
        self.height = int(first.shape[0]) if isinstance(first, np.ndarray) and first.ndim == 3 else None
        self._capture = None

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        for index, frame in enumerate(self._frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
                    or frame.shape[2] != 3 or frame.size == 0:
                what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
                raise ValueError(f"frame {index} must be a uint8 H x W x 3 BGR array, got {what}")
            yield index, index / self.fps, frame


def gstreamer_available() -> bool:
    """Whether this OpenCV build has the GStreamer video I/O backend."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return line.split(":", 1)[1].strip().upper().startswith("YES")
    return False


def open_source(source: Any, *, open_timeout_s: float = 10.0) -> VideoSource:
    """Open a camera index, file, URL, GStreamer pipeline or in-memory frames (see the module docstring).

    Raises FileNotFoundError for a missing file, :class:`VideoSourceError` when OpenCV cannot open the source
    (or the pipeline needs GStreamer that this OpenCV build lacks), TypeError/ValueError for a bad argument.
    """
    if isinstance(source, VideoSource):
        return source
    if isinstance(source, np.ndarray):
        if source.ndim == 4:
            return FrameSource(list(source))
        raise ValueError(f"an array source must be (T, H, W, 3) frames, got shape {source.shape}")
    if isinstance(source, (list, tuple)):
        return FrameSource(source)
    if isinstance(source, bool) or not isinstance(source, (int, np.integer, str, os.PathLike)):
        raise TypeError(f"source must be a camera index, a file path, a URL, a GStreamer pipeline or a list of "
                        f"frames, got {type(source).__name__}")
    if isinstance(source, str) and source.strip().isdigit():
        source = int(source.strip())
    if isinstance(source, (int, np.integer)):
        index = int(source)
        if index < 0:
            raise ValueError(f"camera index must be >= 0, got {index}")
        capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            capture.release()
            raise VideoSourceError(f"cannot open camera {index} (no such device, in use, or no permission to "
                                   f"/dev/video{index})")
        return VideoSource(capture, f"camera {index}", live=True)
    text = os.fspath(source)
    if "!" in text:
        if not gstreamer_available():
            raise VideoSourceError("this OpenCV build has no GStreamer support (cv2.getBuildInformation() says "
                                   "GStreamer: NO), so GStreamer pipelines such as Jetson CSI cameras cannot be "
                                   "opened; install an OpenCV built with GStreamer (JetPack's python3-opencv)")
        capture = cv2.VideoCapture(text, cv2.CAP_GSTREAMER)
        if not capture.isOpened():
            capture.release()
            raise VideoSourceError(f"GStreamer could not start the pipeline {text!r} (it must end in appsink and "
                                   "deliver BGR frames)")
        return VideoSource(capture, f"gstreamer: {text}", live=True)
    lowered = text.lower()
    if lowered.startswith(("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")):
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(open_timeout_s * 1000)]
        capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise VideoSourceError(f"cannot open stream {_redact(text)} within {open_timeout_s:g} s (unreachable "
                                   "host, wrong path or credentials, or a codec this OpenCV lacks)")
        return VideoSource(capture, f"stream {_redact(text)}", live=True)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"video file {path} does not exist" + (" (a directory)" if path.is_dir() else ""))
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoSourceError(f"cannot read {path} as a video (corrupt file or a codec this OpenCV build lacks)")
    return VideoSource(capture, f"file {path}", live=False)


def _redact(url: str) -> str:
    """A URL without its password (``rtsp://user:secret@host`` -> ``rtsp://user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.partition("@")
    if at and ":" in creds:
        return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
    return url


# ------------------------------------------------------------------------------------------------ tracking


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


# ------------------------------------------------------------------------------------ temporal accumulation


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


# ----------------------------------------------------------------------------------------------- pipeline


class _Progress:
    """tqdm when installed, else a stderr line at most once a second; nothing when disabled."""

    def __init__(self, enabled: bool, total: int | None, description: str) -> None:
        self.enabled, self.total, self.count = enabled, total, 0
        self._bar = None
        self._last = 0.0
        self._start = time.monotonic()
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=description, unit="frame", file=sys.stderr)

    def update(self, faces: int) -> None:
        self.count += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(faces=faces, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            rate = self.count / max(now - self._start, 1e-9)
            total = f"/{self.total}" if self.total else ""
            print(f"\rframe {self.count}{total}  {rate:.1f} fps  faces {faces}   ", end="", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.count:
            print(file=sys.stderr)


_COLOURS = {"match": (60, 200, 60), "unknown": (40, 40, 230), "no-gallery": (180, 180, 180),
            "too-small": (0, 160, 230), "ranked": (200, 160, 0)}


def _as_result(x: Any, r: float) -> MatchResult:
    """A MatchResult from a matcher, or from a stand-in's legacy ``(candidates, threshold, decision)``."""
    if isinstance(x, MatchResult):
        return x
    cands, threshold, decision = x
    return MatchResult(list(cands), threshold, decision, float(r))


class VideoPipeline:
    """Detect (or take caller-supplied faces), track, embed, accumulate and match faces in a video.

    Args:
        recognizer: a :class:`crres_sdk.Recognizer` (its gallery decides identities; without one every
            decision is ``"no-gallery"``).
        tracker: an :class:`IoUTracker` (one with defaults when None); :meth:`run` resets it first.
        every_n: process every n-th frame; the frames in between are written to the output video with the
            last annotations and produce no events.
        min_face: faces whose box is narrower than this (px) are ignored (None = keep all the detector finds).
        top_k: candidates reported per face.
        accumulate: match each track's accumulated template (see :class:`TrackTemplate`); False = single frames.
        faces: where faces come from: None = ``recognizer.detect``; or a callable ``(frame_index, frame) ->``
            Face records, (N, 4) boxes or (N, 5, 2) landmarks, for an external detector (or, as the demo does,
            ground-truth boxes of faces too small to detect).
        matching: None = the recognizer's matcher; ``"plain"`` or ``"mitm"`` must agree with it (a
            ``Recognizer(matching="mitm")`` is needed for meet-in-the-middle: it has its own gallery).
    """

    def __init__(self, recognizer: Any, *, tracker: IoUTracker | None = None, every_n: int = 1,
                 min_face: float | None = None, top_k: int = 1, accumulate: bool = True,
                 faces: Callable[[int, np.ndarray], Any] | None = None, matching: str | None = None) -> None:
        for name in ("detect", "faces_from", "embed", "match", "probe_resolution"):
            if not callable(getattr(recognizer, name, None)):
                raise TypeError(f"recognizer must be a crres_sdk.Recognizer (no {name}()), got "
                                f"{type(recognizer).__name__}")
        if tracker is not None and not isinstance(tracker, IoUTracker):
            raise TypeError(f"tracker must be an IoUTracker, got {type(tracker).__name__}")
        if isinstance(every_n, bool) or not isinstance(every_n, int) or every_n < 1:
            raise ValueError(f"every_n must be an int >= 1, got {every_n!r}")
        if min_face is not None and not (isinstance(min_face, (int, float)) and min_face >= 0):
            raise ValueError(f"min_face must be a number >= 0 or None, got {min_face!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if faces is not None and not callable(faces):
            raise TypeError("faces must be a callable (frame_index, frame) -> faces, or None")
        kind = getattr(getattr(recognizer, "matcher", None), "kind", "plain")
        if matching is not None and matching not in ("plain", "mitm"):
            raise ValueError(f"matching must be None, 'plain' or 'mitm', got {matching!r}")
        if matching is not None and matching != kind:
            raise ValueError(f"VideoPipeline(matching={matching!r}) but the recognizer matches {kind!r}: build it "
                             f"with Recognizer(matching={matching!r}) (meet-in-the-middle keeps its own gallery)")
        self.matching = kind
        self.recognizer = recognizer
        self.tracker = tracker or IoUTracker()
        self.every_n = every_n
        self.min_face = min_face
        self.top_k = top_k
        self.accumulate = accumulate
        self.faces_fn = faces

    # -------------------------------------------------------------------------------------------- one frame

    def process(self, frame_index: int, timestamp: float, frame: np.ndarray) -> list[Face]:
        """Detect/track/embed/match one frame; returns its faces with ``track_id``, single-frame
        identity/score/decision and ``extra["track"]`` (the accumulated match)."""
        rec = self.recognizer
        if self.faces_fn is None:
            faces = rec.detect(frame)
        else:
            supplied = self.faces_fn(frame_index, frame)
            faces = [] if supplied is None else rec.faces_from(frame, supplied)
        if self.min_face is not None:
            faces = [f for f in faces if f.width >= self.min_face]
        tracks = self.tracker.update(np.array([f.box for f in faces], np.float64).reshape(-1, 4))
        if not faces:
            return []
        resolutions = np.array([rec.probe_resolution(f) for f in faces], np.float64)
        n = len(faces)
        if self.matching == "mitm":
            single = list(rec.matcher.match_faces(frame, faces, top_k=self.top_k))
            tracked = []
            for track, res, r in zip(tracks, single, resolutions):
                track.matched_frames += 1
                if track.best_match is None or r >= track.best_match.probe_resolution:
                    track.best_match = res  # the sharpest face so far decides the track
                best = track.best_match
                tracked.append((best, float(best.probe_resolution), track.matched_frames))
        else:
            embeddings = rec.embed(frame, faces)
            probe_emb, probe_res = [embeddings], [resolutions]
            if self.accumulate:
                for face, track, emb, r in zip(faces, tracks, embeddings, resolutions):
                    if track.template is None:
                        track.template = TrackTemplate(embeddings.shape[1])
                    track.template.add(emb, float(r))
                probe_emb.append(np.stack([t.template.template for t in tracks]))
                probe_res.append(np.array([t.template.resolution for t in tracks]))
            all_res = np.concatenate(probe_res)
            matcher = getattr(rec, "matcher", None)
            results = matcher.match_embeddings(np.concatenate(probe_emb), all_res, top_k=self.top_k) \
                if matcher is not None else rec.match(np.concatenate(probe_emb), all_res, top_k=self.top_k)
            results = [_as_result(x, r) for x, r in zip(results, all_res.tolist())]
            single = results[:n]
            tracked = [(results[n + i], float(tracks[i].template.resolution), tracks[i].template.count)
                       for i in range(n)] if self.accumulate else \
                [(res, float(r), 1) for res, r in zip(single, resolutions)]
        for face, track, res, (t_res, t_r, t_frames) in zip(faces, tracks, single, tracked):
            face.track_id = track.track_id
            res.apply(face, confirmed=track.confirmed, frame=frame_index, time=timestamp)
            face.extra["track"] = {
                "identity": t_res.identity,
                "score": t_res.score, "threshold": t_res.threshold, "decision": t_res.decision,
                "resolution": t_r, "frames": t_frames, "matcher": t_res.matcher,
                "candidates": [[c.identity, float(c.score)] for c in t_res.candidates]}
        return faces

    # ---------------------------------------------------------------------------------------------- the run

    def run(self, source: Any, *, events: str | os.PathLike | None = None,
            output_video: str | os.PathLike | None = None, max_frames: int | None = None,
            progress: bool = True, fps: float | None = None,
            on_event: Callable[[dict], None] | None = None) -> dict:
        """Run over a source (anything :func:`open_source` takes). Writes JSON-lines ``events`` and an annotated
        ``output_video`` (mp4v) when given; returns a summary dict (also the ``end`` event).

        ``max_frames`` stops after that many frames read; ``fps`` overrides the source's frame rate for the
        output video (default: the source's, else 25); ``on_event`` is called with every event dict as it
        happens (with or without an events file), e.g. to print track decisions live.
        """
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames < 1):
            raise ValueError(f"max_frames must be an int >= 1 or None, got {max_frames!r}")
        if on_event is not None and not callable(on_event):
            raise TypeError("on_event must be a callable taking an event dict")
        self.tracker.reset()
        owned = not isinstance(source, VideoSource)
        src = open_source(source)
        writer = None
        log = None

        def emit(record: dict) -> None:
            if log is not None:
                log.write(json.dumps(record, separators=(",", ":")) + "\n")
                log.flush()
            if on_event is not None:
                on_event(record)

        total = src.frame_count if max_frames is None else min(src.frame_count or max_frames, max_frames)
        bar = _Progress(progress, total, "crres")
        rec = self.recognizer
        tracks_summary: dict[int, dict] = {}
        frames_read = frames_processed = n_faces = 0
        last_faces: list[Face] = []
        start = time.monotonic()
        try:
            if events is not None:
                Path(events).parent.mkdir(parents=True, exist_ok=True)
                log = open(events, "w", encoding="utf-8")
            gallery = getattr(rec, "gallery", None)
            bundle = getattr(rec, "bundle", None)
            emit({"type": "start", **src.info(),
                  "model": None if bundle is None else f"{bundle.name} {bundle.version}",
                  "gallery_identities": None if gallery is None else len(gallery),
                  "every_n": self.every_n, "accumulate": self.accumulate, "matching": self.matching,
                  "fpir": getattr(rec, "fpir", None),
                  "faces": "detector" if self.faces_fn is None else "caller"})
            frames = iter(src)
            decode_error: VideoDecodeError | None = None
            while True:
                try:
                    index, timestamp, frame = next(frames)
                except StopIteration:
                    break
                except VideoDecodeError as exc:  # finish the summary and outputs, then report it
                    decode_error = exc
                    break
                if max_frames is not None and frames_read >= max_frames:
                    break
                frames_read += 1
                if index % self.every_n == 0:
                    last_faces = self.process(index, timestamp, frame)
                    frames_processed += 1
                    n_faces += len(last_faces)
                    for face in last_faces:
                        self._record(face, index, timestamp, tracks_summary, emit)
                if output_video is not None:
                    if writer is None:
                        writer = _open_writer(output_video, fps or src.fps or 25.0, frame.shape)
                    writer.write(annotate(frame, last_faces))
                bar.update(len(last_faces))
            elapsed = time.monotonic() - start
            summary = {
                **src.info(),
                "frames_read": frames_read,
                "frames_processed": frames_processed,
                "faces": n_faces,
                "elapsed_s": round(elapsed, 3),
                "processed_fps": round(frames_processed / elapsed, 2) if elapsed > 0 else None,
                "tracks": [tracks_summary[k] for k in sorted(tracks_summary)],
                "events": None if events is None else str(events),
                "output_video": None if output_video is None or writer is None else str(output_video),
            }
            if decode_error is not None:
                summary["error"] = str(decode_error)
                emit({"type": "error", "message": str(decode_error), "frame": frames_read})
            emit({"type": "end", **summary})
            if decode_error is not None:
                decode_error.summary = summary
                raise decode_error
        finally:
            bar.close()
            if writer is not None:
                writer.release()
            if log is not None:
                log.close()
            if owned:
                src.close()
        return summary

    def _record(self, face: Face, index: int, timestamp: float, tracks: dict,
                emit: Callable[[dict], None]) -> None:
        track = face.extra["track"]
        summary = tracks.setdefault(face.track_id, {
            "track_id": face.track_id, "first_frame": index, "last_frame": index, "faces": 0,
            "max_probe_resolution": 0.0, "min_probe_resolution": float("inf"), "decision": None, "identity": None,
            "score": None, "changes": 0})
        previous = None if summary["decision"] is None else [summary["decision"], summary["identity"]]
        changed = previous != [track["decision"], track["identity"]]
        r = face.extra["probe_resolution"]
        summary.update(last_frame=index, faces=summary["faces"] + 1,
                       max_probe_resolution=max(summary["max_probe_resolution"], r),
                       min_probe_resolution=min(summary["min_probe_resolution"], r),
                       decision=track["decision"], identity=track["identity"], score=track["score"],
                       changes=summary["changes"] + int(changed))
        emit(face_event(face, index, timestamp))
        if changed:
            emit({"type": "track", "frame": index, "time": round(timestamp, 4), "track_id": face.track_id,
                  "identity": track["identity"], "score": _round(track["score"]),
                  "threshold": _round(track["threshold"]), "decision": track["decision"],
                  "resolution": _round(track["resolution"]), "previous": previous})


def face_event(face: Face, index: int, timestamp: float) -> dict:
    """The ``face`` event of one processed face (see the module docstring)."""
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
