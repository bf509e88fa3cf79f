"""Benchmark record format and timing helpers shared by benchmarks/*.py (DESIGN section 7)."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Record:
    benchmark: str
    case: str
    impl: str
    threads: int
    median_s: float
    p90_s: float
    baseline: str | None = None
    speedup_vs_baseline: float | None = None
    extra: dict = field(default_factory=dict)


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median and 90th percentile wall time of fn() over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - start
    return float(np.median(samples)), float(np.percentile(samples, 90))


def fill_speedups(records: list[Record]) -> None:
    """speedup = baseline median / impl median, within the same benchmark, case and thread count."""
    for r in records:
        if r.baseline is None:
            continue
        base = next(
            b for b in records
            if b.benchmark == r.benchmark and b.case == r.case and b.threads == r.threads and b.impl == r.baseline
        )
        r.speedup_vs_baseline = base.median_s / r.median_s


def machine() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version()}


def report(records: list[Record], json_path: str | None, unit: str = "us", per: str = "") -> None:
    scale = {"us": 1e6, "ms": 1e3}[unit]
    header = f"{'benchmark':<12} {'case':<28} {'impl':<26} {'thr':>3} {'median ' + unit + per:>16} {'p90':>10} {'speedup':>8}"
    print(header)
    print("-" * len(header))
    for r in records:
        div = r.extra.get("items", 1)
        speed = f"{r.speedup_vs_baseline:.2f}x" if r.speedup_vs_baseline is not None else "-"
        print(f"{r.benchmark:<12} {r.case:<28} {r.impl:<26} {r.threads:>3} {r.median_s / div * scale:>16.1f} "
              f"{r.p90_s / div * scale:>10.1f} {speed:>8}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps([asdict(r) for r in records], indent=2))
        print(f"\nwrote {json_path}")
