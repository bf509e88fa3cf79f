"""crres serve's MQTT side against a real mosquitto (started by the tests on loopback): retained availability,
Home Assistant discovery, a face-track event naming the enrolled person when she passes the camera, the last will
when the process dies, and a clean SIGTERM shutdown that keeps every gallery write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time

import pytest

from tests.serve.conftest import API_KEY, ROOT, Http, Subscriber, free_port, png, serve_config
from tests.serve.test_serve_api import ASTRONAUT, ensure_enrolled


def test_events_availability_and_discovery(service, demo):
    if service.broker is None:
        pytest.skip("mosquitto is not installed (.ci/install-serve-deps.sh installs it)")
    ensure_enrolled(service, demo[1])
    sub = Subscriber(service.broker.port, ["crres/#", "homeassistant/#"])
    try:
        topic, payload, retained, _ = sub.wait_for(lambda m: m[0] == "crres/availability", 20, "crres/availability")
        assert payload == b"online" and retained
        sub.wait_for(lambda m: m[0] == "crres/door/availability" and m[1] == b"online" and m[2], 20,
                     "door online (retained)")
        _, conf, retained, _ = sub.wait_for(
            lambda m: m[0] == "homeassistant/sensor/crrestest_door_person/config", 20, "HA sensor discovery")
        conf = json.loads(conf)
        assert retained and conf["state_topic"] == "crres/door/person" and conf["unique_id"] == "crrestest_door_person"
        assert {"topic": "crres/availability"} in conf["availability"] and conf["device"]["identifiers"]
        sub.wait_for(lambda m: m[0] == "homeassistant/binary_sensor/crrestest_door_connected/config", 20,
                     "HA connectivity discovery")
        # the clip loops every 6 s: her face (112 -> 16 px) passes the camera and is named
        _, payload, retained, received = sub.wait_for(
            lambda m: m[0] == "crres/door/events" and json.loads(m[1]).get("identity") == ASTRONAUT, 60,
            f"an event naming {ASTRONAUT}")
        ev = json.loads(payload)
        assert not retained and ev["camera"] == "door" and ev["decision"] == "match" and ev["label"] == ASTRONAUT
        assert ev["score"] > ev["threshold"] and ev["probe_resolution"] > 0 and isinstance(ev["track_id"], int)
        assert ev["first_seen"] <= ev["captured_at"] <= ev["published_at"] <= received + 1
        assert ev["event"] in ("start", "update") and len(ev["snapshot"]) > 100  # thumbnails + snapshot on
        sub.wait_for(lambda m: m[0] == "crres/door/person" and m[1] == ASTRONAUT.encode(), 10, "the HA person state")
    finally:
        sub.close()
    late = Subscriber(service.broker.port, ["crres/door/person", "crres/door/person/attributes"])
    try:  # a client connecting later gets the retained state at once
        _, label, retained, _ = late.wait_for(lambda m: m[0] == "crres/door/person", 10, "retained person state")
        assert retained and label in (ASTRONAUT.encode(), b"unknown")
        _, attrs, retained, _ = late.wait_for(lambda m: m[0] == "crres/door/person/attributes", 10, "attributes")
        assert retained and "probe_resolution" in json.loads(attrs)
    finally:
        late.close()


def _start(tmp, camera, broker, port, tls=None):
    import yaml

    cfg = serve_config(tmp, camera.url("door"), port, broker.port, client_id="crresproc")
    context = None
    if tls is not None:
        cfg["api"]["tls_cert"], cfg["api"]["tls_key"] = str(tls[0]), str(tls[1])
        context = ssl.create_default_context(cafile=str(tls[0]))
    path = tmp / "crres.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "crres_sdk.serve", "--config", str(path), "--log-level",
                             "warning"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    http = Http(f"{'https' if tls else 'http'}://127.0.0.1:{port}", API_KEY, context)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"crres serve exited {proc.returncode}: {proc.stdout.read().decode()}")
        try:
            if http.request("GET", "/api/health", key=None)[0] == 200:
                return proc, http
        except OSError:  # not listening yet (URLError is an OSError)
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("crres serve did not answer /api/health within 120 s")


def _self_signed(tmp):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the TLS test's certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_last_will_on_kill_and_clean_sigterm(tmp_path, camera, broker, demo):
    from crres_sdk.gallery import Gallery

    sub = Subscriber(broker.port, ["crres/availability", "crres/door/availability"])
    try:
        # 1. killed: the broker publishes the last will; the enrolment answered before the kill is on disk
        proc, http = _start(tmp_path, camera, broker, free_port())
        sub.wait_for(lambda m: m[0] == "crres/availability" and m[1] == b"online", 30, "online")
        status, body = http.request("POST", "/api/identities", fields={"name": "kept"},
                                    files=[("file", "a.png", png(demo[1]))])
        assert status == 201, body
        mark = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        sub.wait_for(lambda m: m[0] == "crres/availability" and m[1] == b"offline" and m[3] >= mark, 60,
                     "the last will 'offline' after SIGKILL (keepalive 30 s x 1.5)")
        # 2. SIGTERM: exit 0, the service itself says offline for the camera and the service (retained); this
        #    time the API is served over TLS (a self-signed certificate for 127.0.0.1)
        tls = _self_signed(tmp_path)
        proc, http = _start(tmp_path, camera, broker, free_port(), tls=tls)
        assert http.base.startswith("https://")
        plain = Http(http.base.replace("https://", "http://"), API_KEY)
        with pytest.raises(OSError):
            plain.request("GET", "/api/health")  # no plain HTTP on a TLS port
        status, body = http.request("GET", "/api/identities")
        assert [p["name"] for p in body] == ["kept"]
        sub.wait_for(lambda m: m[0] == "crres/door/availability" and m[1] == b"online" and m[3] > mark, 30,
                     "door online again")
        status, body = http.request("POST", "/api/identities", fields={"name": "kept2"},
                                    files=[("file", "a.png", png(demo[1]))])
        assert status == 201, body
        mark = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()
        sub.wait_for(lambda m: m[0] == "crres/door/availability" and m[1] == b"offline" and m[3] >= mark, 10,
                     "door offline published by the clean shutdown")
        sub.wait_for(lambda m: m[0] == "crres/availability" and m[1] == b"offline" and m[3] >= mark, 10,
                     "service offline")
    finally:
        sub.close()
    g = Gallery(tmp_path / "gallery.db", None, readonly=True)
    try:
        assert sorted(g) == ["kept", "kept2"] and g.check() == []
    finally:
        g.close()
