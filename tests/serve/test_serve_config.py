"""crres serve's configuration and camera readers, without a model: bad fields get errors naming them; a reader
keeps only the newest frame and reconnects with back-off."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("yaml", reason="crres serve tests need the serve extra (pip install \"crres[serve]\")")

from crres_sdk.serve.cameras import CameraReader  # noqa: E402
from crres_sdk.serve.config import CameraConfig, ConfigError, hash_key, load_config, parse_config  # noqa: E402

GOOD_SHA = hash_key("k")


@pytest.mark.parametrize("data, message", [
    ({"camera": []}, "unknown key(s) camera"),
    ({"cameras": [{"name": "door"}]}, "cameras[0]: missing source"),
    ({"cameras": [{"name": "front door", "source": 0}]}, "cameras[0].name"),
    ({"cameras": [{"name": "a", "source": 0}, {"name": "a", "source": 1}]}, "duplicate name(s) a"),
    ({"cameras": [{"name": "a", "source": 0, "max_fps": 0}]}, "cameras[0].max_fps: must be in"),
    ({"cameras": [{"name": "a", "source": 0, "fps": 5}]}, "cameras[0]: unknown key(s) fps"),
    ({"api": {"api_keys": [{"name": "x", "sha256": "secret"}]}}, "api.api_keys[0].sha256"),
    ({"api": {"tls_cert": "c.pem"}}, "TLS needs both"),
    ({"api": {"port": "80"}}, "api.port: must be an integer"),
    ({"mqtt": {"topic_prefix": "crres/#"}}, "mqtt.topic_prefix"),
    ({"recognition": {"far": "often"}}, "recognition.far"),
    ({"recognition": {"backend": "cuda"}}, "recognition.backend: must be one of"),
    ({"gallery": {"thumbnails": "yes"}}, "gallery.thumbnails: must be true or false"),
    ([1, 2], "mapping at the top level"),
])
def test_bad_config_fields_are_named(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_config_file_paths_resolve_next_to_the_file(tmp_path):
    path = tmp_path / "crres.yaml"
    path.write_text(f"""
cameras:
  - {{name: door, source: clip.mp4, loop: true}}
  - {{name: gate, source: "rtsp://user:pw@10.0.0.2/stream"}}
  - {{name: usb, source: 0}}
gallery: {{path: people.db}}
api: {{api_keys: [{{name: ha, sha256: "{GOOD_SHA}"}}]}}
mqtt: {{enabled: true}}
""")
    cfg = load_config(path)
    assert cfg.cameras[0].source == str(tmp_path / "clip.mp4") and cfg.cameras[0].loop
    assert cfg.cameras[1].source.startswith("rtsp://") and cfg.cameras[2].source == 0
    assert cfg.gallery.path == str(tmp_path / "people.db")
    assert cfg.api.api_keys[0].sha256 == GOOD_SHA and cfg.mqtt.enabled
    (tmp_path / "bad.yaml").write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


class FakeSource:
    """A live source delivering numbered frames as fast as asked, or failing on open."""

    live = True
    fps = None

    def __init__(self, n: int, delay: float = 0.0) -> None:
        self.n, self.delay = n, delay

    def __iter__(self):
        for i in range(self.n):
            if self.delay:
                time.sleep(self.delay)
            yield i, 0.0, np.full((4, 4, 3), i % 256, np.uint8)

    def close(self):
        pass


def test_reader_keeps_only_the_newest_frame():
    release = threading.Event()

    def opener(source, open_timeout_s):
        release.wait(5)
        return FakeSource(500)

    reader = CameraReader(CameraConfig("cam", "fake"), opener=opener).start()
    release.set()
    deadline = time.monotonic() + 10
    while reader.frames_read < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    reader.stop()
    frame = reader.latest()
    assert reader.frames_read == 500
    assert frame is not None and frame.seq == 500 and int(frame.image[0, 0, 0]) == 499 % 256
    assert reader.latest(after_seq=500) is None  # nothing newer: a consumer never sees a frame twice


def test_reader_reconnects_with_backoff_and_reports_state(monkeypatch):
    import crres_sdk.serve.cameras as cameras

    monkeypatch.setattr(cameras, "BACKOFF_START_S", 0.01)
    attempts = []
    states = []

    def opener(source, open_timeout_s):
        attempts.append(time.monotonic())
        if len(attempts) <= 3:
            raise OSError("connection refused")
        return FakeSource(10 ** 6, delay=0.001)

    reader = CameraReader(CameraConfig("cam", "rtsp://nowhere"), opener=opener,
                          on_state=lambda name, s: states.append(s)).start()
    deadline = time.monotonic() + 10
    while reader.state != "streaming" and time.monotonic() < deadline:
        time.sleep(0.01)
    status = reader.status()
    reader.stop()
    assert status["state"] == "streaming" and status["reconnects"] == 3
    assert states.index("reconnecting") < states.index("streaming")
    gaps = np.diff(attempts[:4])
    assert gaps[1] >= 0.02 * 0.9 and gaps[2] >= 0.04 * 0.9  # the wait doubles: 0.01, 0.02, 0.04 s
    assert states[-1] == "stopped"


def test_unreachable_stream_is_reported_not_fatal():
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reader = CameraReader(CameraConfig("gate", f"http://127.0.0.1:{port}/stream")).start()
    deadline = time.monotonic() + 20
    while reader.reconnects < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    status = reader.status()
    reader.stop()
    assert status["state"] == "reconnecting" and status["reconnects"] >= 1
    assert "cannot open stream" in status["error"] and status["retry_at"] is not None


def test_looping_file_camera_stays_streaming(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 200.0, (32, 32))
    for i in range(4):
        writer.write(np.full((32, 32, 3), 60 * i, np.uint8))
    writer.release()
    states = []
    reader = CameraReader(CameraConfig("clip", str(path), loop=True), on_state=lambda n, s: states.append(s)).start()
    deadline = time.monotonic() + 20
    while reader.frames_read < 12 and time.monotonic() < deadline:  # three plays of the 4-frame file
        time.sleep(0.01)
    reader.stop()
    assert reader.frames_read >= 12 and reader.reconnects == 0
    assert states == ["streaming", "stopped"]  # no connecting/offline flap at each replay
