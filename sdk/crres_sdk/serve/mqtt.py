"""MQTT events with paho-mqtt 2.x: face-track events, retained availability with a last will, Home Assistant
discovery.

Topics (``P`` = ``mqtt.topic_prefix``, default ``crres``):

* ``P/availability`` — ``online`` (retained) while the service runs; the broker publishes the last will
  ``offline`` (retained) if the process dies, and a clean shutdown publishes ``offline`` itself.
* ``P/<camera>/availability`` — ``online`` while the camera streams, else ``offline`` (retained).
* ``P/<camera>/events`` — one JSON message per face-track event (``start``, ``update``, ``end``): camera, track id,
  identity or null with ``label`` ``unknown``, score, threshold, probe resolution, timestamps (``first_seen``,
  ``last_seen``, ``captured_at``: when the frame was read; ``published_at``), optional base64 JPEG ``snapshot``
  (``mqtt.snapshot`` and a gallery that allows face images). QoS 1, not retained.
* ``P/<camera>/person`` — the label of the latest track event (retained), with its JSON on
  ``P/<camera>/person/attributes``: what Home Assistant's sensor shows.
* Discovery (``mqtt.discovery``): ``<discovery_prefix>/sensor/<id>_<camera>_person/config`` and
  ``<discovery_prefix>/binary_sensor/<id>_<camera>_connected/config`` (retained), one device per service.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from crres_sdk.serve.config import MqttConfig

log = logging.getLogger("crres.serve.mqtt")

MAX_QUEUED = 1000


class MqttPublisher:
    """A paho client in its own network thread (``loop_start``); reconnects by itself (1-30 s back-off)."""

    def __init__(self, config: MqttConfig, cameras: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.cfg = config
        self.cameras = list(cameras)
        self.prefix = config.topic_prefix
        self.connected = threading.Event()
        self.published = 0
        self.failed = 0
        self.last_error: str | None = None
        self._camera_state: dict[str, str] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id)
        if config.username:
            password = os.environ.get(config.password_env) if config.password_env else None
            if config.password_env and password is None:
                raise ValueError(f"mqtt.password_env names ${config.password_env}, which is not set")
            self.client.username_pw_set(config.username, password)
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        # while the broker is away paho queues what is published: bounded, so memory stays flat (older events are
        # not replayed; availability is republished on every connect)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def topic(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])

    # -------------------------------------------------------------------------------------------------- life

    def start(self) -> "MqttPublisher":
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` for the service and every camera, wait for delivery, disconnect."""
        if self.connected.is_set():
            infos = [self.client.publish(self.topic(c, "availability"), "offline", qos=1, retain=True)
                     for c in self.cameras]
            infos.append(self.client.publish(self.topic("availability"), "offline", qos=1, retain=True))
            deadline = time.monotonic() + timeout
            for info in infos:
                try:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                except (RuntimeError, ValueError):
                    pass
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self.last_error = f"connection refused: {reason_code}"
            log.warning("MQTT %s:%s %s", self.cfg.host, self.cfg.port, self.last_error)
            return
        log.info("MQTT connected to %s:%s", self.cfg.host, self.cfg.port)
        self.last_error = None
        if self.cfg.discovery:
            self._discovery()
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        with self._lock:
            states = dict(self._camera_state)
        for cam in self.cameras:
            client.publish(self.topic(cam, "availability"), states.get(cam, "offline"), qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        if getattr(reason_code, "value", 0) != 0:
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT %s", self.last_error)

    # ------------------------------------------------------------------------------------------------ messages

    def camera_state(self, camera: str, state: str) -> None:
        payload = "online" if state == "streaming" else "offline"
        with self._lock:
            if self._camera_state.get(camera) == payload:
                return
            self._camera_state[camera] = payload
        if self.connected.is_set():
            self.client.publish(self.topic(camera, "availability"), payload, qos=1, retain=True)

    def event(self, ev: dict) -> None:
        payload = {k: v for k, v in ev.items() if k != "snapshot" or self.cfg.snapshot}
        payload["published_at"] = round(time.time(), 4)
        info = self.client.publish(self.topic(ev["camera"], "events"), json.dumps(payload), qos=1)
        if info.rc != 0:  # queued by paho while disconnected counts as sent; a full queue does not
            self.failed += 1
            return
        self.published += 1
        if ev["event"] != "end":
            self.client.publish(self.topic(ev["camera"], "person"), ev["label"], qos=1, retain=True)
            attrs = {k: ev.get(k) for k in ("identity", "score", "threshold", "probe_resolution", "track_id",
                                             "decision", "captured_at")}
            self.client.publish(self.topic(ev["camera"], "person", "attributes"), json.dumps(attrs), qos=1,
                                retain=True)

    def _discovery(self) -> None:
        base = self.cfg.discovery_prefix
        uid = self.cfg.client_id
        device = {"identifiers": [f"crres_{uid}"], "name": f"crres ({uid})", "manufacturer": "crres",
                  "model": "crres serve"}
        for cam in self.cameras:
            avail = [{"topic": self.topic("availability")}, {"topic": self.topic(cam, "availability")}]
            sensor = {"name": f"{cam} person", "unique_id": f"{uid}_{cam}_person",
                      "state_topic": self.topic(cam, "person"),
                      "json_attributes_topic": self.topic(cam, "person", "attributes"),
                      "availability": avail, "availability_mode": "all", "icon": "mdi:face-recognition",
                      "device": device}
            conn = {"name": f"{cam} camera", "unique_id": f"{uid}_{cam}_connected",
                    "state_topic": self.topic(cam, "availability"), "payload_on": "online", "payload_off": "offline",
                    "device_class": "connectivity", "availability": [{"topic": self.topic("availability")}],
                    "device": device}
            self.client.publish(f"{base}/sensor/{uid}_{cam}_person/config", json.dumps(sensor), qos=1, retain=True)
            self.client.publish(f"{base}/binary_sensor/{uid}_{cam}_connected/config", json.dumps(conn), qos=1,
                                retain=True)

    def status(self) -> dict:
        return {"enabled": True, "connected": self.connected.is_set(), "broker": f"{self.cfg.host}:{self.cfg.port}",
                "published": self.published, "failed": self.failed, "error": self.last_error}
