"""Fixtures of the crres serve tests: real parts on loopback.

* ``demo``: the demo's synthetic clip (skimage's astronaut walking away from the camera) at 640x480 and her photo.
* ``broker``: a real mosquitto (Debian's package; ``.ci/install-serve-deps.sh`` installs it) started on a free
  loopback port for the session and stopped after; skipped with the reason when the binary is missing.
* ``service``: ``crres serve`` (uvicorn on a free loopback port, real HTTP) with one MJPEG camera serving the clip
  and MQTT to the broker when there is one; an API key is configured.

The broker, camera and service are package-scoped: they stop once tests/serve is done, not at the end of the whole
session (a running service would take CPU from the rest of the suite).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import cv2
import numpy as np

SERVE_DEPS = ["fastapi", "uvicorn", "paho.mqtt", "yaml", "multipart"]


def need_serve_extra() -> None:
    for module in SERVE_DEPS:
        pytest.importorskip(module, reason=f"crres serve tests need the serve extra (pip install \"crres[serve]\"): "
                                           f"{module} is missing")

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


class Broker:
    def __init__(self, tmp: Path) -> None:
        binary = mosquitto_binary()
        self.port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.proc.stdout.read().decode(errors='replace')}")
                time.sleep(0.1)
        raise RuntimeError("mosquitto did not start listening within 15 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Subscriber:
    """A paho client collecting every message of ``topics`` (retained ones included)."""

    def __init__(self, port: int, topics: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-" + uuid.uuid4().hex[:8])
        ready = threading.Event()

        def on_connect(client, userdata, flags, rc, props):
            for t in topics:
                client.subscribe(t, qos=1)
            ready.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain), time.time()))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "test subscriber could not connect to mosquitto"

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if predicate(m):
                        return m
            time.sleep(0.1)
        with self.lock:
            seen = sorted({m[0] for m in self.messages})
        raise AssertionError(f"no MQTT message {what} within {timeout:g} s (topics seen: {seen})")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------------------------------ http


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "crrestest" + uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode())
    for field, filename, data in files:
        out.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
                   f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


class Http:
    def __init__(self, base: str, key: str | None, context=None) -> None:
        self.base, self.key, self.context = base, key, context

    def request(self, method: str, path: str, *, fields: dict | None = None, files: list | None = None,
                key: str | None | bool = True, headers: dict | None = None, body: bytes | None = None):
        h = dict(headers or {})
        k = self.key if key is True else (key or None)
        if k:
            h["X-Api-Key"] = k
        data = body
        if fields is not None or files is not None:
            data, ctype = multipart(fields or {}, files or [])
            h["Content-Type"] = ctype
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=120, context=self.context) as r:
                raw, status, rh = r.read(), r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw, status, rh = e.read(), e.code, dict(e.headers)
        ctype = rh.get("content-type", rh.get("Content-Type", ""))
        return status, (json.loads(raw) if "json" in ctype else raw)


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def demo():
    pytest.importorskip("skimage", reason="the demo clip needs scikit-image (dev extra)")
    from crres_sdk.serve.simulate import demo_frames

    frames, photo = demo_frames(30, (640, 480))
    return frames, photo


@pytest.fixture(scope="package")
def broker(tmp_path_factory):
    need_serve_extra()
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (Debian package mosquitto; .ci/install-serve-deps.sh installs it)")
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


@pytest.fixture(scope="package")
def camera(demo):
    from crres_sdk.serve.simulate import MjpegServer

    server = MjpegServer(demo[0], fps=5.0).start()
    yield server
    server.stop()


def serve_config(tmp: Path, camera_url: str, port: int, mqtt_port: int | None, *, client_id: str = "crrestest",
                 thumbnails: bool = True) -> dict:
    from crres_sdk.serve.config import hash_key

    cfg = {
        "cameras": [{"name": "door", "source": camera_url, "max_fps": 5}],
        "recognition": {"detector_min_face": 20, "track_timeout_s": 1.5},
        "gallery": {"path": str(tmp / "gallery.db"), "thumbnails": thumbnails},
        "api": {"host": "127.0.0.1", "port": port, "api_keys": [{"name": "test", "sha256": hash_key(API_KEY)}],
                "max_upload_mb": 2},
    }
    if mqtt_port is not None:
        cfg["mqtt"] = {"enabled": True, "port": mqtt_port, "client_id": client_id, "snapshot": True}
    return cfg


@pytest.fixture(scope="package")
def service(tmp_path_factory, camera, request):
    """The service in this process (uvicorn in a thread), with MQTT when mosquitto is installed."""
    need_serve_extra()
    import uvicorn

    from crres_sdk.serve.api import create_api
    from crres_sdk.serve.app import Service
    from crres_sdk.serve.config import parse_config

    broker = request.getfixturevalue("broker") if mosquitto_binary() else None
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    cfg = parse_config(serve_config(tmp, camera.url("door"), port, broker.port if broker else None))
    svc = Service(cfg)
    app = create_api(svc)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    svc.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    svc.http = Http(f"http://127.0.0.1:{port}", API_KEY)
    svc.broker = broker
    yield svc
    server.should_exit = True
    thread.join(15)
    svc.stop()
