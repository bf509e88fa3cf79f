"""benchmarks/bench_serve.py runs end to end (one camera, a few seconds) and writes DESIGN section 7 records."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.serve.conftest import ROOT, mosquitto_binary, need_serve_extra

RECORD_KEYS = {"benchmark", "case", "impl", "threads", "median_s", "p90_s", "baseline", "speedup_vs_baseline", "extra"}


def test_bench_serve_json(tmp_path):
    need_serve_extra()
    pytest.importorskip("skimage", reason="the demo clip needs scikit-image (dev extra)")
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (.ci/install-serve-deps.sh installs it)")
    out = tmp_path / "serve.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_serve", "--cameras", "1", "--duration",
                           "5", "--warmup", "5", "--frames", "20", "--json", str(out)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    records = json.loads(out.read_text())
    assert len(records) == 1 and set(records[0]) == RECORD_KEYS
    r = records[0]
    e = r["extra"]
    assert r["benchmark"] == "serve" and e["cameras"] == 1 and e["exit_code"] == 0
    assert e["camera_states"] == {"cam0": "streaming"} and e["fps_per_camera"][0] > 0
    assert e["rss_mib_max"] > 0 and e["cpu_cores_used"] > 0
    assert len(e["rss_mib_series"]) >= 2 and all(rss > 0 for _, rss in e["rss_mib_series"])  # every 2 s
    assert "rss_slope_second_half_mib_per_min" in e
    assert "fps/camera" in done.stdout and "latency median ms" in done.stdout  # the table
