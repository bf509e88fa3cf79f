"""One reader thread per camera: keeps only the newest frame, reconnects with back-off, reports its state.

A slow consumer never builds a backlog: the reader overwrites its single slot with every frame it decodes, and
the engine takes whatever is newest when it is ready for that camera. Sources are opened with the SDK's
:func:`crres_sdk.video.open_source` (camera index, file, RTSP/HTTP URL, GStreamer pipeline). Files are paced at
their frame rate (as a camera would deliver them) and, with ``loop: true``, start again at their end.

States: ``connecting`` -> ``streaming``; on a failure or the end of a live stream ``reconnecting`` (waits 0.5 s,
doubling up to 30 s, reset by the first good frame); a file without ``loop`` ends in ``ended``; ``stopped`` after
:meth:`CameraReader.stop`; ``disabled`` when the configuration says so.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from crres_sdk.serve.config import CameraConfig
from crres_sdk.video import VideoSource, open_source

log = logging.getLogger("crres.serve.cameras")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
OPEN_TIMEOUT_S = 5.0


@dataclass
class Frame:
    seq: int                 # 1, 2, ... per camera (frames the reader decoded)
    captured: float          # wall-clock time (time.time()) the frame was decoded
    image: np.ndarray        # uint8 H x W x 3 BGR


class CameraReader:
    """The reader thread of one camera (see the module docstring)."""

    def __init__(self, config: CameraConfig, *, on_state: Callable[[str, str], None] | None = None,
                 opener: Callable[..., VideoSource] = open_source) -> None:
        self.config = config
        self.name = config.name
        self._opener = opener
        self._on_state = on_state
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "disabled" if not config.enabled else "connecting"
        self.error: str | None = None
        self.reconnects = 0
        self.frames_read = 0
        self.connected_since: float | None = None
        self.retry_at: float | None = None
        self.width: int | None = None
        self.height: int | None = None
        self._times: collections.deque = collections.deque(maxlen=50)

    # ------------------------------------------------------------------------------------------- consumer side

    def latest(self, after_seq: int = 0) -> Frame | None:
        """The newest frame if it is newer than ``after_seq`` (else None)."""
        with self._lock:
            f = self._frame
        return f if f is not None and f.seq > after_seq else None

    def status(self) -> dict:
        f = self._frame
        return {"name": self.name, "state": self.state, "error": self.error, "reconnects": self.reconnects,
                "frames_read": self.frames_read, "input_fps": round(self.input_fps, 2),
                "connected_since": self.connected_since, "retry_at": self.retry_at,
                "last_frame_at": None if f is None else f.captured, "width": self.width, "height": self.height,
                "max_fps": self.config.max_fps}

    # ---------------------------------------------------------------------------------------------- the thread

    def start(self) -> "CameraReader":
        if self.config.enabled:
            self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.config.enabled:
            self._set_state("stopped")

    def _set_state(self, state: str, error: str | None = None) -> None:
        changed = state != self.state
        self.state, self.error = state, error
        if changed:
            if error:
                log.warning("camera %s: %s (%s)", self.name, state, error)
            else:
                log.info("camera %s: %s", self.name, state)
            if self._on_state is not None:
                try:
                    self._on_state(self.name, state)
                except Exception:  # a publisher's failure must not kill the reader
                    log.exception("camera %s: state callback failed", self.name)

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        replay = False  # a looping file starting again stays "streaming" (no availability flap)
        while not self._stop.is_set():
            if not replay:
                self._set_state("connecting" if self.reconnects == 0 else "reconnecting", self.error)
            replay = False
            self.retry_at = None
            try:
                src = self._opener(self.config.source, open_timeout_s=OPEN_TIMEOUT_S)
            except Exception as exc:  # unreachable camera, missing file, bad pipeline: retry later
                self._wait_retry(f"{type(exc).__name__}: {exc}", backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            got_frame = False
            try:
                pace = None if src.live else 1.0 / (src.fps or 25.0)
                next_t = time.monotonic()
                for _, _, image in src:
                    if self._stop.is_set():
                        break
                    now = time.time()
                    with self._lock:
                        seq = 1 if self._frame is None else self._frame.seq + 1
                        self._frame = Frame(seq, now, image)
                    self.frames_read += 1
                    self._rate(now)
                    if not got_frame:
                        got_frame = True
                        backoff = BACKOFF_START_S
                        self.height, self.width = image.shape[:2]
                        self.connected_since = now
                        self._set_state("streaming")
                    if pace is not None:
                        next_t += pace
                        delay = next_t - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                        else:
                            next_t = time.monotonic()
                error = None if got_frame else "the source opened but delivered no frame"
            except Exception as exc:  # a decode error or a dropped stream
                error = f"{type(exc).__name__}: {exc}"
            finally:
                src.close()
            if self._stop.is_set():
                break
            if not src.live and error is None:
                if self.config.loop:
                    replay = got_frame
                    continue  # a test/demo camera: play the file again
                self._set_state("ended")
                return
            self.connected_since = None
            self._wait_retry(error or "the stream stopped delivering frames", backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S) if not got_frame else backoff

    def _wait_retry(self, error: str, delay: float) -> None:
        self.reconnects += 1
        self.retry_at = time.time() + delay
        self._set_state("reconnecting", error)
        self._stop.wait(delay)

    def _rate(self, now: float) -> None:
        self._times.append(now)

    @property
    def input_fps(self) -> float:
        """Frames decoded per second over the last (up to) 50 frames of the last 5 s."""
        now = time.time()
        times = [t for t in list(self._times) if now - t <= 5.0]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
