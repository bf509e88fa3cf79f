"""python -m benchmarks.bench_embed --quick runs end to end and writes DESIGN section 7 records."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD_KEYS = {"benchmark", "case", "impl", "threads", "median_s", "p90_s", "baseline", "speedup_vs_baseline", "extra"}


def test_embed_benchmark_quick_json(tmp_path):
    out = tmp_path / "embed.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench_embed", "--quick", "--json", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    records = json.loads(out.read_text())
    impls = {"torch_fp32", "ort_fp32", "ort_int8"}
    if importlib.util.find_spec("openvino") and importlib.util.find_spec("nncf"):
        impls |= {"openvino_fp32", "openvino_int8", "openvino_int8_mixed", "openvino_qdq"}
    for case in ("tiny_test_net_b1", "tiny_test_net_b2"):
        assert {r["impl"] for r in records if r["case"] == case} == impls
    for r in records:
        assert set(r) == RECORD_KEYS and r["benchmark"] == "embed" and r["threads"] == 1
        assert r["median_s"] > 0 and r["p90_s"] >= r["median_s"]
        assert r["extra"]["items"] == r["extra"]["batch"] and "random init" in r["extra"]["weights"]
        if r["impl"] == "ort_fp32":
            assert r["baseline"] is None and r["speedup_vs_baseline"] is None
        else:
            base = next(b for b in records if b["impl"] == "ort_fp32" and b["case"] == r["case"])
            assert r["baseline"] == "ort_fp32"
            assert abs(r["speedup_vs_baseline"] - base["median_s"] / r["median_s"]) < 1e-9


def test_embed_benchmark_times_every_shipped_file_of_the_bundles(tmp_path):
    bundles = [ROOT / "models" / "crres_mobilefacenet_scratch", ROOT / "models" / "crres_default"]
    out = tmp_path / "bundles.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench_embed", "--bundles", *map(str, bundles), "--batches", "1",
                    "--threads", "1", "--repeats", "5", "--json", str(out)], check=True, capture_output=True, cwd=ROOT)
    records = json.loads(out.read_text())
    backends = [b for b in ("onnxruntime", "openvino") if importlib.util.find_spec(b)]
    expected = set()
    for folder in bundles:
        for runtime, roles in json.loads((folder / "manifest.json").read_text())["files"].items():
            for role, entry in roles.items():
                suffix = Path(entry["path"]).suffix
                for b in (["openvino"] if suffix == ".xml" else backends) if suffix in (".onnx", ".xml") else []:
                    if b in backends:
                        expected.add(f"{folder.name}:{runtime}/{role}@{b}")
    assert {r["impl"] for r in records} == expected
    baseline = "crres_mobilefacenet_scratch:onnx/fp32@onnxruntime"
    for r in records:
        assert r["case"] == "bundles_b1" and r["extra"]["weights"] == "shipped bundle" and r["median_s"] > 0
        assert r["baseline"] == (None if r["impl"] == baseline else baseline)
    bad = subprocess.run([sys.executable, "-m", "benchmarks.bench_embed", "--bundles", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "not a model bundle" in bad.stderr
