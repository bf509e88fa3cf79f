"""Wiring and the life of ``crres serve``: recognizer + gallery, camera readers, the engine, MQTT, the API on
uvicorn; a clean shutdown on SIGTERM/SIGINT.

Shutdown order (uvicorn catches the signal): the HTTP server stops accepting and lets requests in flight finish
(so an enrolment that has started is committed, never cut), then the cameras and the engine stop, open tracks end
with ``end`` events, MQTT publishes ``offline`` for every camera and the service (retained) and disconnects, and
the gallery is closed. If the process dies instead, the broker publishes the last will (``offline``) and SQLite's
WAL keeps every committed write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from crres_sdk.serve.cameras import CameraReader
from crres_sdk.serve.config import ServeConfig

log = logging.getLogger("crres.serve")


def inference_threads(rc: Any) -> int:
    """CPU threads per inference call: ``recognition.threads``, else the cores shared out among the detect
    workers (1 each on a 2-core machine with 2 workers: two inferences at once, one core each, rather than four
    threads competing for two cores)."""
    if rc.threads:
        return int(rc.threads)
    return max(1, (os.cpu_count() or 1) // max(1, rc.detect_workers))


class Service:
    """Everything ``crres serve`` runs, built from a :class:`ServeConfig`; :meth:`start` / :meth:`stop`."""

    def __init__(self, cfg: ServeConfig, *, recognizer: Any = None) -> None:
        from crres_sdk import __version__
        from crres_sdk.gallery import Gallery
        from crres_sdk.recognizer import Recognizer
        from crres_sdk.serve.engine import Engine

        self.cfg = cfg
        self.version = __version__
        self.log = log
        self.started = time.time()
        self.write_lock = threading.RLock()
        rc = cfg.recognition
        if recognizer is None:
            detector = {"min_face": rc.detector_min_face}
            recognizer = Recognizer(rc.model, backend=rc.backend, threads=inference_threads(rc), far=rc.far,
                                    fpir=rc.fpir,
                                    batch_size=rc.batch_size, detector=detector)
            gc = cfg.gallery
            try:
                recognizer.gallery = Gallery(gc.path, recognizer.model_key, key_file=gc.key_file, key_env=gc.key_env,
                                             thumbnails=gc.thumbnails)
            except BaseException:
                recognizer.close()
                raise
        self.rec = recognizer
        self.mqtt = None
        if cfg.mqtt.enabled:
            from crres_sdk.serve.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(cfg.mqtt, [c.name for c in cfg.cameras])
        on_state = self.mqtt.camera_state if self.mqtt is not None else None
        self.cameras = {c.name: CameraReader(c, on_state=on_state) for c in cfg.cameras}
        self.engine = Engine(recognizer, self.cameras, cfg,
                             publish=self.mqtt.event if self.mqtt is not None else None)
        self._stopped = False

    def start(self) -> "Service":
        if self.mqtt is not None:
            self.mqtt.start()
        for cam in self.cameras.values():
            cam.start()
        self.engine.start()
        log.info("crres serve: %d camera(s), model %s %s on %s, gallery %s (%d identities)", len(self.cameras),
                 self.rec.bundle.name, self.rec.bundle.version, self.rec.backend,
                 None if self.rec.gallery is None else self.rec.gallery.path,
                 0 if self.rec.gallery is None else len(self.rec.gallery))
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("crres serve: stopping")
        for cam in self.cameras.values():
            cam._stop.set()
        self.engine.stop()
        for cam in self.cameras.values():
            cam.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        with self.write_lock:  # no API write is in flight once this is held
            self.rec.close()
        log.info("crres serve: stopped")

    # ------------------------------------------------------------------------------------------------ metrics

    def metrics_text(self) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[dict, float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
                lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

        eng = self.engine
        cams = eng.camera_status()
        metric("crres_up", "gauge", "1 while the service runs", [({}, 1)])
        metric("crres_uptime_seconds", "gauge", "seconds since start", [({}, round(time.time() - self.started, 1))])
        metric("crres_camera_up", "gauge", "1 while the camera streams",
               [({"camera": c["name"]}, int(c["state"] == "streaming")) for c in cams])
        metric("crres_camera_frames_read_total", "counter", "frames decoded by the camera's reader",
               [({"camera": c["name"]}, c["frames_read"]) for c in cams])
        metric("crres_camera_frames_processed_total", "counter", "frames the recognizer processed",
               [({"camera": c["name"]}, c["processed_frames"]) for c in cams])
        metric("crres_camera_processed_fps", "gauge", "frames processed per second over the last 5 s",
               [({"camera": c["name"]}, c["processed_fps"]) for c in cams])
        metric("crres_camera_reconnects_total", "counter", "reconnection attempts",
               [({"camera": c["name"]}, c["reconnects"]) for c in cams])
        metric("crres_camera_open_tracks", "gauge", "face tracks open", [({"camera": c["name"]}, c["open_tracks"])
                                                                          for c in cams])
        metric("crres_faces_total", "counter", "faces detected and embedded", [({}, eng.counters["faces"])])
        metric("crres_events_total", "counter", "face-track events",
               [({"event": k}, eng.counters[f"events_{k}"]) for k in ("start", "update", "end")])
        metric("crres_engine_busy_seconds_total", "counter", "seconds the recognizer thread spent on frames",
               [({}, round(eng.counters["busy_s"], 3))])
        metric("crres_detections_total", "counter", "frames by how the detector saw them (motion gate): whole frame, "
               "changed regions only, or skipped (nothing changed)",
               [({"kind": k}, eng.counters[f"detect_{k}"]) for k in ("full", "regions", "skipped")])
        metric("crres_embeddings_skipped_total", "counter", "faces of confidently named tracks not embedded again "
               "(reidentify_every)", [({}, eng.counters["embeddings_skipped"])])
        metric("crres_engine_errors_total", "counter", "engine steps that failed", [({}, eng.counters["errors"])])
        sizes = list(eng.batch_sizes)
        metric("crres_embed_batch_faces", "gauge", "mean faces per embedding batch (last 256 batches)",
               [({}, round(sum(sizes) / len(sizes), 2) if sizes else 0)])
        g = self.rec.gallery
        if g is not None:
            metric("crres_gallery_identities", "gauge", "identities in the gallery", [({}, len(g))])
            metric("crres_gallery_templates", "gauge", "templates in the gallery", [({}, g.n_templates)])
        metric("crres_unknown_groups", "gauge", "unknown people awaiting labels", [({}, len(eng.unknown))])
        if self.mqtt is not None:
            st = self.mqtt.status()
            metric("crres_mqtt_connected", "gauge", "1 while connected to the broker", [({}, int(st["connected"]))])
            metric("crres_mqtt_published_total", "counter", "events published", [({}, st["published"])])
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def run(cfg: ServeConfig, *, log_level: str = "info") -> int:
    """Run the service in the foreground until SIGTERM/SIGINT; returns the exit status."""
    import contextlib

    import uvicorn

    from crres_sdk.serve.api import create_api

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level != "debug":  # a camera's failures are logged once per state change, not per OpenCV retry
        import cv2

        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            pass
    service = Service(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        service.start()
        try:
            yield
        finally:
            # uvicorn has stopped accepting and drained the requests in flight (graceful shutdown)
            await _in_thread(service.stop)

    app = create_api(service)
    app.router.lifespan_context = lifespan
    api = cfg.api
    if not api.api_keys:
        log.warning("no api.api_keys configured: the API and the page are open to anyone who can reach %s:%d",
                    api.host, api.port)
    config = uvicorn.Config(app, host=api.host, port=api.port, log_level=log_level, ssl_certfile=api.tls_cert,
                            ssl_keyfile=api.tls_key, timeout_graceful_shutdown=30, access_log=False,
                            lifespan="on")
    server = _Server(config)
    try:
        server.run()
    finally:
        service.stop()
    return 0 if server.started else 1


def _server_class() -> type:
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that a SIGTERM/SIGINT that ended in a graceful shutdown exits with status 0
        instead of being raised again at the process (uvicorn re-raises it for the default handler)."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            with super().capture_signals():
                yield
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

    return Server


def _Server(config: Any) -> Any:  # noqa: N802 (a class made on first use: uvicorn is imported lazily)
    return _server_class()(config)


async def _in_thread(fn: Any) -> None:
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, fn)
