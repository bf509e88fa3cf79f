"""bench_preprocess records the CPU's ISA and the core's vector path in every record, and times the core's scalar
loops beside its vector path (crres_scalar), so the align speed-up can be stated per instruction set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crres_sdk import _core

ROOT = Path(__file__).resolve().parents[1]


def test_records_carry_the_isa_and_the_core_vector_path(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench_preprocess", "--json", str(out),
                    "--repeats", "5", "--threads", "1"], check=True, capture_output=True, cwd=ROOT)
    records = json.loads(out.read_text())
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    for r in records:
        cpu = r["extra"]["cpu"]
        assert set(cpu) == {"machine", "model", "isa"} and set(cpu["isa"]) <= flags
        assert r["extra"]["core_simd"] == ("scalar" if r["impl"] == "crres_scalar" else _core.simd_available())
    scalar = [r for r in records if r["impl"] == "crres_scalar"]
    assert scalar and all(r["baseline"] == "opencv" and r["benchmark"] == "align" for r in scalar)
