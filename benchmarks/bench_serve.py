"""crres serve under load: N simulated cameras (the demo clip, 640x480, served as MJPEG on loopback), one service
process, a real mosquitto. Measures per camera the frames processed per second, the latency from frame capture
(the reader decoding it) to the MQTT event arriving at a subscriber (median, p95), and the service process's CPU
and RSS (start, end, max, slope over the run).

    python -m benchmarks.bench_serve --cameras 1,4,8 --duration 60 --json bench-results/serve.json

Needs the serve extra, scikit-image (the demo photo) and Debian's mosquitto (``.ci/install-serve-deps.sh``).
Records follow DESIGN section 7: ``median_s``/``p90_s`` are the capture -> MQTT latency; everything else is in
``extra``. There is no baseline implementation (``baseline`` null).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from benchmarks.common import Record, machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds user+system, RSS MiB) of a process and its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def http_json(base: str, path: str, key: str, method: str = "GET", data: bytes | None = None,
              ctype: str | None = None) -> object:
    headers = {"X-Api-Key": key}
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def engine_counters(base: str) -> dict[str, float]:
    """The engine's counters from /metrics: frames detected whole / by regions / skipped, embeddings skipped,
    faces, busy seconds."""
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        text = r.read().decode()
    names = {'crres_detections_total{kind="full"}': "detect_full", 'crres_detections_total{kind="regions"}':
             "detect_regions", 'crres_detections_total{kind="skipped"}': "detect_skipped",
             "crres_embeddings_skipped_total": "embeddings_skipped", "crres_faces_total": "faces",
             "crres_engine_busy_seconds_total": "busy_s"}
    out = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in names:
            out[names[name]] = float(value)
    return out


def enrol(base: str, key: str, name: str, image_png: bytes) -> None:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image_png + f"\r\n--{boundary}--\r\n".encode()
    http_json(base, "/api/identities", key, "POST", body, f"multipart/form-data; boundary={boundary}")


def run_case(n: int, args: argparse.Namespace, frames: list, photo_png: bytes, broker_port: int,
             tmp: Path) -> Record:
    import paho.mqtt.client as mqtt
    import yaml

    from crres_sdk.serve.config import hash_key
    from crres_sdk.serve.simulate import MjpegServer

    key = "bench-" + uuid.uuid4().hex
    port = free_port()
    cams = MjpegServer(frames, fps=args.source_fps).start()
    gallery = tmp / f"gallery-{n}.db"
    cfg = {"cameras": [{"name": f"cam{i}", "source": cams.url(f"cam{i}"), "max_fps": args.max_fps}
                       for i in range(n)],
           "recognition": {"detector_min_face": args.min_face, "detect_workers": args.detect_workers,
                           "threads": args.threads, "motion_gate": args.motion_gate == "on",
                           "reidentify_every": args.reidentify_every},
           "gallery": {"path": str(gallery)},
           "api": {"port": port, "api_keys": [{"name": "bench", "sha256": hash_key(key)}]},
           "mqtt": {"enabled": True, "port": broker_port, "client_id": f"bench{n}"}}
    path = tmp / f"serve-{n}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    latencies: list[float] = []
    events_by_cam: dict[str, int] = {}
    starts: dict[str, int] = {}   # "start" events by label: each pass of the person should give one, named
    lock = threading.Lock()
    measuring = threading.Event()

    def on_message(client, userdata, msg):
        now = time.time()
        ev = json.loads(msg.payload)
        if ev.get("event") in ("start", "update") and measuring.is_set():
            with lock:
                latencies.append(now - ev["captured_at"])
                events_by_cam[ev["camera"]] = events_by_cam.get(ev["camera"], 0) + 1
                if ev["event"] == "start":
                    starts[ev["label"]] = starts.get(ev["label"], 0) + 1

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub-" + uuid.uuid4().hex[:6])
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("crres/+/events", qos=1)
    sub.connect("127.0.0.1", broker_port)
    sub.loop_start()
    proc = subprocess.Popen([sys.executable, "-m", "crres_sdk.serve", "--config", str(path), "--log-level", "warning"],
                            cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    rss_series: list[tuple[float, float]] = []
    try:
        wait_port(port, 180, proc)
        enrol(base, key, "astronaut", photo_png)
        time.sleep(args.warmup)
        before = {c["name"]: c["processed_frames"] for c in http_json(base, "/api/cameras", key)}
        counters0 = engine_counters(base)
        load0 = os.getloadavg()[0]
        cpu0, _ = proc_stats(proc.pid)
        t0 = time.time()
        measuring.set()
        while (left := args.duration - (time.time() - t0)) > 0:
            time.sleep(min(2.0, left))
            rss_series.append((time.time() - t0, proc_stats(proc.pid)[1]))
        measuring.clear()
        elapsed = time.time() - t0
        cpu1, _ = proc_stats(proc.pid)
        counters1 = engine_counters(base)
        status = http_json(base, "/api/cameras", key)
        after = {c["name"]: c["processed_frames"] for c in status}
        states = {c["name"]: c["state"] for c in status}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = b""
        sub.disconnect()
        sub.loop_stop()
        cams.stop()
    fps = [(after[c] - before[c]) / elapsed for c in sorted(after)]
    lat = np.array(latencies) if latencies else np.array([np.nan])
    ts = np.array([t for t, _ in rss_series])
    rss = np.array([r for _, r in rss_series])
    slope = float(np.polyfit(ts, rss, 1)[0] * 60) if len(rss) > 2 else None
    # the second half alone: warm-up growth (caches filling) that levels off shows here as ~0, a leak does not
    late = ts >= ts[-1] / 2 if len(ts) else ts.astype(bool)
    slope_late = float(np.polyfit(ts[late], rss[late], 1)[0] * 60) if late.sum() > 2 else None
    extra = {
        "cameras": n, "frame": "640x480", "source_fps": args.source_fps, "max_fps_per_camera": args.max_fps,
        "duration_s": round(elapsed, 1), "fps_per_camera": [round(f, 2) for f in fps],
        "fps_per_camera_mean": round(float(np.mean(fps)), 2), "fps_per_camera_min": round(float(np.min(fps)), 2),
        "latency_median_s": round(float(np.median(lat)), 4), "latency_p95_s": round(float(np.percentile(lat, 95)), 4),
        "latency_events": int(len(latencies)), "events_per_camera": events_by_cam,
        "cpu_cores_used": round((cpu1 - cpu0) / elapsed, 3),
        "rss_mib_start": round(float(rss[0]), 1), "rss_mib_end": round(float(rss[-1]), 1),
        "rss_mib_max": round(float(rss.max()), 1),
        "rss_slope_mib_per_min": None if slope is None else round(slope, 3),
        "rss_slope_second_half_mib_per_min": None if slope_late is None else round(slope_late, 3),
        "rss_mib_series": [[round(t, 1), round(r, 1)] for t, r in rss_series],  # (s into the run, MiB) every 2 s
        "camera_states": states, "exit_code": proc.returncode, "detect_workers": args.detect_workers,
        "min_face": args.min_face, "threads": args.threads, "motion_gate": args.motion_gate,
        "reidentify_every": args.reidentify_every, "start_events_by_label": starts,
        "engine": {k: round(counters1.get(k, 0) - counters0.get(k, 0), 3) for k in counters1},
        "cpus": os.cpu_count(), "loadavg_1m_start": round(load0, 2), "loadavg_1m_end": round(os.getloadavg()[0], 2),
        **machine(),
    }
    if proc.returncode != 0:
        extra["stderr_tail"] = err.decode(errors="replace")[-2000:]
    if not latencies:  # no event reached the subscriber: no latency to report (JSON null, never NaN)
        extra["latency_median_s"] = extra["latency_p95_s"] = None
    return Record("serve", f"{n} cameras 640x480", "crres serve", args.threads or 0,
                  float(np.median(lat)) if latencies else None, float(np.percentile(lat, 90)) if latencies else None,
                  None, None, extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", default="1,4", help="comma-separated camera counts, one run each")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds after enrolment before measuring")
    p.add_argument("--source-fps", type=float, default=10.0, help="frames per second each simulated camera sends")
    p.add_argument("--max-fps", type=float, default=5.0, help="frames per second the service processes per camera")
    p.add_argument("--min-face", type=int, default=20, help="detector's smallest face (px)")
    p.add_argument("--detect-workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's)")
    p.add_argument("--motion-gate", choices=("on", "off"), default="on",
                   help="recognition.motion_gate: detect only the changed parts of frames (default on)")
    p.add_argument("--reidentify-every", type=int, default=5,
                   help="recognition.reidentify_every: embed a confidently named track every N frames (1: every "
                        "frame)")
    p.add_argument("--frames", type=int, default=40, help="frames in the demo clip (it loops)")
    p.add_argument("--json", help="write the records here (DESIGN section 7)")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.cameras.split(",") if x.strip()]
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if binary is None:
        print("bench_serve: mosquitto is not installed (.ci/install-serve-deps.sh installs it)", file=sys.stderr)
        return 2
    import cv2

    from crres_sdk.serve.simulate import demo_frames

    frames, photo = demo_frames(args.frames, (640, 480))
    photo_png = cv2.imencode(".png", photo)[1].tobytes()
    records = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker_port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(broker_port, 15, broker)
            for n in counts:
                print(f"{n} camera(s): {args.warmup:g} s warm-up, {args.duration:g} s measured ...", flush=True)
                r = run_case(n, args, frames, photo_png, broker_port, tmp)
                e = r.extra
                ms = (lambda v: "-" if v is None else f"{v * 1000:.0f}")  # noqa: E731
                print(f"  fps per camera {e['fps_per_camera']} (mean {e['fps_per_camera_mean']}), latency median "
                      f"{ms(e['latency_median_s'])} ms p95 {ms(e['latency_p95_s'])} ms "
                      f"({e['latency_events']} events), CPU {e['cpu_cores_used']:.2f} cores, RSS "
                      f"{e['rss_mib_start']}->{e['rss_mib_end']} MiB (max {e['rss_mib_max']}, slope "
                      f"{e['rss_slope_mib_per_min']} MiB/min, second half {e['rss_slope_second_half_mib_per_min']}), "
                      f"load {e['loadavg_1m_end']}", flush=True)
                records.append(r)
        finally:
            broker.terminate()
            broker.wait(10)
    print()
    table(records)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([asdict(r) for r in records], indent=2))
        print(f"\nwrote {args.json}")
    return 0


def table(records: list[Record]) -> None:
    ms = (lambda v: "-" if v is None else f"{v * 1000:.0f}")  # noqa: E731
    print(f"{'cameras':>7} {'fps/camera (min)':>17} {'latency median ms':>18} {'p95 ms':>7} {'events':>6} "
          f"{'CPU cores':>9} {'RSS MiB start->end (max)':>26} {'MiB/min':>8} {'2nd half':>8}")
    for r in records:
        e = r.extra
        print(f"{e['cameras']:>7} {e['fps_per_camera_mean']:>10.2f} ({e['fps_per_camera_min']:.2f}) "
              f"{ms(e['latency_median_s']):>18} {ms(e['latency_p95_s']):>7} {e['latency_events']:>6} "
              f"{e['cpu_cores_used']:>9.2f} {e['rss_mib_start']:>11.1f}->{e['rss_mib_end']:.1f} "
              f"({e['rss_mib_max']:.1f}) {e['rss_slope_mib_per_min']!s:>8} "
              f"{e.get('rss_slope_second_half_mib_per_min')!s:>8}")


if __name__ == "__main__":
    sys.exit(main())
