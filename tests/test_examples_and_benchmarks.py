"""The demo and the benchmark run end to end and produce what they promise (small settings)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"benchmark", "case", "impl", "threads", "median_s", "p90_s", "baseline", "speedup_vs_baseline", "extra"}


def test_preprocess_demo(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "examples/preprocess_demo.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    rows = json.loads((tmp_path / "resolutions.json").read_text())
    assert [r["target_px"] for r in rows] == [112, 40, 14, 7]
    for row in rows:  # the shrunk frame carries the face at the target resolution
        # scaled landmarks: frame rounding only; detected ones: MTCNN's landmark noise on tiny faces
        tolerance = 0.02 if row["landmarks"] == "tracked" else 0.25
        assert abs(row["equivalent_resolution_px"] - row["target_px"]) <= tolerance * row["target_px"] + 0.2
        assert row["model_input"] == [3, 112, 112]
    assert rows[0]["landmarks"] == "detected" and rows[-1]["landmarks"] == "tracked"
    assert (tmp_path / "resolutions.png").stat().st_size > 10_000


def test_preprocess_benchmark_json(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench_preprocess", "--json", str(out),
                    "--repeats", "5", "--threads", "1"], check=True, capture_output=True, cwd=ROOT)
    records = json.loads(out.read_text())
    assert {r["impl"] for r in records if r["benchmark"] == "align"} >= {"opencv", "insightface", "crres"}
    assert {r["impl"] for r in records if r["benchmark"] == "degrade"} >= {"pil", "opencv", "crres"}
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["median_s"] > 0 and r["p90_s"] >= r["median_s"]
        if r["baseline"] is None:
            assert r["speedup_vs_baseline"] is None
        else:
            # The baseline of the same case and thread count (several cases share a benchmark name).
            base = next(b for b in records if b["impl"] == r["baseline"] and b["benchmark"] == r["benchmark"]
                        and b["case"] == r["case"] and b["threads"] == r["threads"])
            assert abs(r["speedup_vs_baseline"] - base["median_s"] / r["median_s"]) < 1e-9


def _default_model_or_skip():
    import pytest

    from crres_sdk import BundleError
    from crres_sdk.recognizer import find_model_bundle

    try:
        find_model_bundle("default")
    except BundleError as exc:
        pytest.skip(f"no default model bundle: {exc}")


def test_quickstart_finds_the_astronaut_in_a_small_face(tmp_path):
    _default_model_or_skip()
    out = subprocess.run([sys.executable, str(ROOT / "examples/quickstart.py"), "--gallery", str(tmp_path / "g.db")],
                         check=True, capture_output=True, text=True).stdout
    face_lines = [line for line in out.splitlines() if line.startswith("face at")]
    assert len(face_lines) == 1 and "-> astronaut" in face_lines[0] and "[match]" in face_lines[0], out


def test_pipeline_benchmark_json(tmp_path):
    _default_model_or_skip()
    out = tmp_path / "pipeline.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench_pipeline", "--json", str(out), "--threads", "1",
                    "--faces", "1", "--repeats", "1", "--gallery-sizes", "50"], check=True, capture_output=True, cwd=ROOT)
    records = json.loads(out.read_text())
    assert {r["benchmark"] for r in records} == {"pipeline_1080p", "identify_gallery"}
    for r in records:
        assert set(r) == RECORD_KEYS and r["median_s"] > 0
        if r["impl"].startswith("crres"):
            assert r["baseline"] == "plain-opencv-ort" and r["speedup_vs_baseline"] > 0
    # Both pipelines found the one face, and crres named it.
    frames = [r for r in records if r["benchmark"] == "pipeline_1080p"]
    assert all(r["extra"]["faces_found"] == 1 for r in frames)
    assert all(r["extra"]["identified"] == 1 for r in frames if r["impl"].startswith("crres"))


def test_mitm_benchmark_json(tmp_path):
    _default_model_or_skip()
    out = tmp_path / "mitm.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench_mitm", "--json", str(out), "--threads", "1",
                    "--chains", "2", "--repeats", "1", "--enrol-repeats", "1", "--gallery-sizes", "5"],
                   check=True, capture_output=True, cwd=ROOT)
    records = json.loads(out.read_text())
    assert {(r["benchmark"], r["impl"]) for r in records} == {
        ("mitm_probe", "plain"), ("mitm_probe", "mitm-bicubic"), ("mitm_score", "plain"), ("mitm_score", "mitm"),
        ("mitm_score", "mitm-cached"), ("mitm_enrol", "plain"), ("mitm_enrol", "mitm")}
    for r in records:
        assert set(r) == RECORD_KEYS and r["median_s"] > 0
        assert (r["baseline"] is None) == (r["impl"] == "plain")
        if r["baseline"]:
            base = next(b for b in records if b["benchmark"] == r["benchmark"] and b["case"] == r["case"]
                        and b["impl"] == "plain")
            assert r["speedup_vs_baseline"] == base["median_s"] / r["median_s"]
    probe = next(r for r in records if r["impl"] == "mitm-bicubic")
    assert probe["extra"]["embeddings"] == 48 and probe["extra"]["chains"] == 2
