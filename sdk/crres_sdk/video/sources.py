"""Video sources, opened by :func:`open_source`: a USB camera index (``0`` or ``"0"``), a video file, an
``rtsp://`` / ``http(s)://`` URL, a GStreamer pipeline string (anything containing ``!``, e.g. a Jetson CSI camera
``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx !
videoconvert ! video/x-raw,format=BGR ! appsink``), or frames already in memory (a sequence of uint8 BGR arrays).
Each iterates as ``(index, timestamp_s, frame)``; a file that stops well before its stated frame count raises
:class:`VideoDecodeError`."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

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
