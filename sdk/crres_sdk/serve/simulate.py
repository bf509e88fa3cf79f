"""Simulated cameras: the demo's synthetic clip (``crres_demo.clip``) served as MJPEG over HTTP on loopback.

Used by the tests and ``benchmarks/bench_serve.py`` to feed ``crres serve`` real network streams (OpenCV's FFmpeg
backend reads ``multipart/x-mixed-replace`` JPEG streams from ``http://`` URLs, as it does from IP cameras)::

    server = MjpegServer(frames, fps=10.0)     # frames: uint8 H x W x 3 BGR
    server.start()                              # http://127.0.0.1:<port>/cam/<name> for any name
    ...
    server.stop()

Each connection gets the clip from its first frame, looping, paced at ``fps``; the server writes the wall-clock
capture time of each frame into ``server.sent[(name, frame_number)]`` only when ``record=True`` (benchmark).
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from typing import Sequence

import cv2
import numpy as np

BOUNDARY = b"crresframe"


def demo_frames(n_frames: int = 40, size: tuple[int, int] = (640, 480), seed: int = 0) -> tuple[list[np.ndarray],
                                                                                               np.ndarray]:
    """The demo's receding clip (skimage's astronaut walking away, 112 -> 16 px) at ``size``, plus the photo.

    Rendered by ``crres_demo.clip`` (the demo package shipped beside the SDK, imported here only). Needs
    scikit-image (the ``dev`` extra) for the photo, as ``examples/demo.py`` does."""
    from skimage import data

    from crres_demo.clip import render_receding_clip
    from crres_sdk.detector import FaceDetector

    photo = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    face = max(FaceDetector().detect(photo), key=lambda f: f.width * f.height)
    clip = render_receding_clip(photo, face.landmarks, n_frames=n_frames, start_px=112, end_px=16, size=size,
                                fps=10.0, seed=seed)
    return clip.frames, photo


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegServer:
    """Serve ``frames`` as an endless MJPEG stream at ``fps`` on 127.0.0.1 (see the module docstring)."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 10.0, *, port: int = 0, quality: int = 85,
                 loop: bool = True) -> None:
        if not frames:
            raise ValueError("MjpegServer needs at least one frame")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])[1].tobytes() for f in frames]
        self.fps = float(fps)
        self.loop = loop
        self._stop = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY.decode())
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                period = 1.0 / owner.fps
                t_next = time.monotonic()
                i = 0
                try:
                    while not owner._stop.is_set():
                        if i >= len(owner.jpegs) and not owner.loop:
                            break
                        jpg = owner.jpegs[i % len(owner.jpegs)]
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        t_next += period
                        delay = t_next - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        else:
                            t_next = time.monotonic()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def url(self, name: str = "cam") -> str:
        return f"http://127.0.0.1:{self.port}/cam/{name}"

    def start(self) -> "MjpegServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "MjpegServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
