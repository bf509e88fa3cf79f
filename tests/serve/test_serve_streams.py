"""Network cameras against real servers on loopback: the demo clip over RTSP from GStreamer's gst-rtsp-server
(Debian packages; ``.ci/install-serve-deps.sh`` installs them, else the RTSP test skips with the reason) and over
HTTP/MJPEG from the simulated camera. The reader (:class:`CameraReader` on the SDK's ``open_source``) must deliver
the clip's frames, notice the server going away, retry with a doubling back-off while it is down and stream again
once it is back on the same address."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import free_port

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi lives (not the project's venv)
RTSP_PACKAGES = "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good"
_PROBE = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
          "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
          "missing = [e for e in ('filesrc', 'avidemux', 'jpegdec', 'jpegenc', 'rtpjpegpay') "
          "if Gst.ElementFactory.find(e) is None]; "
          "print(' '.join(missing))")


def rtsp_server_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    done = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"gst-rtsp-server's Python bindings do not load ({done.stderr.strip().splitlines()[-1:]})"
    if done.stdout.strip():
        return f"GStreamer elements missing: {done.stdout.strip()}"
    return None


class RtspServer:
    """tests/serve/rtsp_server.py (gst-rtsp-server) serving an MJPEG AVI at rtsp://127.0.0.1:PORT/cam."""

    def __init__(self, clip: Path, port: int) -> None:
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(clip), str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().strip() if ready else ""
        if line != "ready":
            self.kill()
            raise RuntimeError(f"the RTSP server did not start: {line!r} {self.proc.stderr.read()[-2000:]!r}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes as a crashed or unplugged camera does (no RTSP TEARDOWN)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


@pytest.fixture(scope="module")
def rtsp_clip(demo, tmp_path_factory) -> Path:
    """The demo clip as a 10 fps MJPEG AVI, long enough (12 s) that it does not end during a test."""
    reason = rtsp_server_missing()
    if reason:
        pytest.skip(f"no RTSP server: {reason} (Debian packages {RTSP_PACKAGES}; .ci/install-serve-deps.sh "
                    "installs them)")
    path = tmp_path_factory.mktemp("rtsp") / "clip.avi"
    frames = demo[0]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for i in range(120):
        writer.write(frames[i % len(frames)])
    writer.release()
    return path


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.02)


def _like_the_clip(image: np.ndarray, frames: list[np.ndarray]) -> bool:
    """A decoded frame is one of the clip's (JPEG-compressed: mean absolute difference under 4 grey levels)."""
    return image.shape == frames[0].shape and min(
        float(np.mean(cv2.absdiff(image, f))) for f in frames) < 4.0


def _reader_through_restart(monkeypatch, source: str, start, stop, frames: list[np.ndarray],
                            down_s: float = 2.5) -> tuple[list, list, dict]:
    """Run a CameraReader on ``source``: stream, ``stop()`` the server, keep it down ``down_s``, ``start()`` it
    again, stream again. Returns the reader's open attempts (monotonic time, ok), its states and final status."""
    import crres_sdk.serve.cameras as cameras
    from crres_sdk.serve.cameras import CameraReader
    from crres_sdk.serve.config import CameraConfig
    from crres_sdk.video import open_source

    monkeypatch.setattr(cameras, "OPEN_TIMEOUT_S", 2.0)  # also the read timeout: a dead stream is noticed in 2 s
    attempts: list[tuple[float, bool]] = []
    states: list[str] = []

    def opener(src, open_timeout_s):
        t = time.monotonic()
        try:
            out = open_source(src, open_timeout_s=open_timeout_s)
        except Exception:
            attempts.append((t, False))
            raise
        attempts.append((t, True))
        return out

    reader = CameraReader(CameraConfig("cam", source), opener=opener, on_state=lambda n, s: states.append(s))
    reader.start()
    try:
        _wait(lambda: reader.frames_read >= 5, 20, "no frame arrived")
        first = reader.latest()
        assert first is not None and _like_the_clip(first.image, frames)
        assert reader.state == "streaming"
        stop()
        _wait(lambda: reader.state == "reconnecting", 15, "the reader did not notice the server going away")
        time.sleep(down_s)
        read_before = reader.frames_read
        start()
        _wait(lambda: reader.state == "streaming" and reader.frames_read >= read_before + 5, 30,
              "the reader did not stream again after the server came back")
        again = reader.latest()
        assert again is not None and _like_the_clip(again.image, frames)
        return attempts, states, reader.status()
    finally:
        reader.stop()


def _check_backoff(attempts: list[tuple[float, bool]]) -> None:
    """Connected, then failed opens while the server was down, each after twice the wait before it (0.5, 1, 2 s
    from BACKOFF_START_S), then connected again."""
    from crres_sdk.serve.cameras import BACKOFF_START_S

    oks = [ok for _, ok in attempts]
    assert oks[0] and oks[-1] and oks.count(True) == 2, oks
    failed = [t for t, ok in attempts if not ok]
    assert len(failed) >= 2, oks  # the server was down for several tries
    waits = np.diff(failed)
    expected = BACKOFF_START_S * 2.0 ** np.arange(len(waits))
    assert np.all(waits >= 0.9 * expected) and np.all(waits < expected + 2.0), (list(waits), list(expected))


def test_rtsp_camera_streams_and_reconnects_with_backoff(rtsp_clip, demo, monkeypatch):
    port = free_port()
    server = {"now": RtspServer(rtsp_clip, port)}
    try:
        attempts, states, status = _reader_through_restart(
            monkeypatch, f"rtsp://127.0.0.1:{port}/cam",
            start=lambda: server.__setitem__("now", RtspServer(rtsp_clip, port)),
            stop=lambda: server["now"].kill(), frames=demo[0])
    finally:
        server["now"].kill()
    _check_backoff(attempts)
    assert states[0] == "streaming" and "reconnecting" in states and states[-2:] == ["streaming", "stopped"]
    assert status["width"] == 640 and status["height"] == 480 and status["reconnects"] >= 2


def test_mjpeg_camera_reconnects_with_backoff(demo, monkeypatch):
    from crres_sdk.serve.simulate import MjpegServer

    frames = demo[0]
    server = {"now": MjpegServer(frames, fps=10.0).start()}
    port = server["now"].port
    try:
        attempts, states, status = _reader_through_restart(
            monkeypatch, server["now"].url("door"),
            start=lambda: server.__setitem__("now", MjpegServer(frames, fps=10.0, port=port).start()),
            stop=lambda: server["now"].stop(), frames=frames)
    finally:
        server["now"].stop()
    _check_backoff(attempts)
    assert states[0] == "streaming" and "reconnecting" in states and states[-2:] == ["streaming", "stopped"]
    assert status["reconnects"] >= 2


def test_gstreamer_pipeline_camera_without_gstreamer_says_why():
    """PyPI's OpenCV has no GStreamer: a pipeline camera (e.g. a Jetson CSI camera) is reported, not fatal, with
    the reason in its status."""
    from crres_sdk.serve.cameras import CameraReader
    from crres_sdk.serve.config import CameraConfig
    from crres_sdk.video import gstreamer_available

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer (cv2.getBuildInformation()): a pipeline would open")
    pipeline = "videotestsrc ! videoconvert ! video/x-raw,format=BGR ! appsink"
    reader = CameraReader(CameraConfig("csi", pipeline)).start()
    try:
        _wait(lambda: reader.reconnects >= 1, 10, "the pipeline camera did not report its failure")
        status = reader.status()
    finally:
        reader.stop()
    assert status["state"] == "reconnecting" and status["frames_read"] == 0
    assert "VideoSourceError" in status["error"] and "no GStreamer support" in status["error"]
    assert "GStreamer: NO" in status["error"]
