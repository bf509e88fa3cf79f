"""Gallery speed: identification search from 1k to 1M templates (numpy BLAS vs FAISS), index load, enrolment.

Synthetic galleries of random unit vectors, 5 templates per identity at the resolution levels 112, 56, 28, 14
and 7 px (an HR template and 4 degraded ones, as enrolment makes them), so a probe is compared with the fifth
of the templates at its nearest level. Cases, measured in the same run:
  gallery_search  top-5 S_max per probe; 1 probe at 112 px, and 16 probes at resolutions from 6 to 112 px
                  numpy        (baseline) the gallery's numpy path (BLAS matmul + per-identity reduceat)
                  faiss        the FAISS path (IndexFlatIP per level, first k distinct identities)
                  numpy_all    numpy with match="all": every template, no resolution-level selection
  gallery_index   building the in-memory search index from template arrays (grouping by level and identity)
  gallery_db      from SQLite: enrolment per identity (one transaction, synchronous=FULL) and the first search
                  after opening (reads and decodes every template), plain and AES-256-GCM encrypted
The FAISS switch of backend="auto" (crres_sdk.gallery.FAISS_MIN_TEMPLATES templates per level and
FAISS_MIN_PROBES probes per call) is set from where faiss beat numpy here at both 1 and 2 threads; the JSON keeps
the per-level row counts in extra.level_rows and what "auto" picks in extra.auto_picks.

    python -m benchmarks.bench_gallery --json bench-results/gallery.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

LEVELS = (112.0, 56.0, 28.0, 14.0, 7.0)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records to this JSON file")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000],
                        help="gallery sizes in templates for the search benchmark")
    parser.add_argument("--db-sizes", type=int, nargs="*", default=[1_000, 10_000],
                        help="gallery sizes in templates for the SQLite enrol/load benchmark")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="BLAS and FAISS (OpenMP) threads")
    return parser.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:  # thread counts must be set before numpy loads its BLAS
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from benchmarks.common import Record, fill_speedups, machine, report, time_call  # noqa: E402
from crres_sdk.gallery import (  # noqa: E402
    FAISS_MIN_PROBES,
    FAISS_MIN_TEMPLATES,
    Gallery,
    ModelKey,
    _Index,
    auto_backend,
    generate_key,
)


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def bench_search(sizes: list[int], dim: int, repeats: int, threads: int) -> list[Record]:
    records = []
    rng = np.random.default_rng(0)
    have_faiss = faiss_available()
    if have_faiss:
        import faiss

        faiss.omp_set_num_threads(threads)
    probe_sets = {1: (unit_rows(rng, 1, dim), np.array([112.0])),
                  16: (unit_rows(rng, 16, dim), np.geomspace(6, 112, 16))}
    for size in sizes:
        n_ident = max(1, size // len(LEVELS))
        vectors = unit_rows(rng, n_ident * len(LEVELS), dim)
        ident = np.repeat(np.arange(n_ident), len(LEVELS))
        res = np.tile(LEVELS, n_ident)
        start = time.perf_counter()
        index = _Index(1, [f"id{i}" for i in range(n_ident)], ident, res, vectors)
        build_s = time.perf_counter() - start
        del vectors
        level_rows = [len(b.row_ident) for b in index.blocks]
        common = {"templates": n_ident * len(LEVELS), "identities": n_ident, "dim": dim, "top_k": 5,
                  "level_rows": level_rows}
        records.append(Record("gallery_index", f"{n_ident * len(LEVELS)} tpl", "numpy", threads, build_s, build_s,
                              extra=common))
        for n_probes, (probes, pres) in probe_sets.items():
            case = f"{n_ident * len(LEVELS)} tpl, {n_probes} probe{'s' if n_probes > 1 else ''}"
            extra = {**common, "probes": n_probes, "items": n_probes,
                     "probe_resolutions": [round(float(r), 2) for r in pres],
                     "auto_picks": auto_backend(max(level_rows), n_probes) if have_faiss else "numpy"}
            impls = [("numpy", None, lambda: index.search(probes, pres, 5, "max", "numpy")),
                     ("numpy_all", "numpy", lambda: index.search(probes, None, 5, "max", "numpy"))]
            if have_faiss:
                impls.insert(1, ("faiss", "numpy", lambda: index.search(probes, pres, 5, "max", "faiss")))
            reference = index.search(probes, pres, 5, "max", "numpy")
            for name, baseline, fn in impls:
                reps = max(3, repeats if size <= 100_000 else repeats // 2)
                median, p90 = time_call(fn, reps, warmup=2)
                rec_extra = dict(extra)
                if name == "faiss":  # same answers as the baseline
                    got = fn()
                    rec_extra["same_top5_as_numpy"] = all(
                        [m.identity for m in a] == [m.identity for m in b] for a, b in zip(got, reference))
                records.append(Record("gallery_search", case, name, threads, median, p90, baseline, extra=rec_extra))
            print(f"  {case}: done", file=sys.stderr, flush=True)
        del index
    return records


def bench_db(sizes: list[int], dim: int, threads: int) -> list[Record]:
    records = []
    rng = np.random.default_rng(1)
    model = ModelKey("bench", "1", dim)
    have_crypto = True
    try:
        import cryptography  # noqa: F401
    except ImportError:
        have_crypto = False
    for size in sizes:
        n_ident = max(1, size // len(LEVELS))
        vectors = unit_rows(rng, n_ident * len(LEVELS), dim).reshape(n_ident, len(LEVELS), dim)
        case = f"{n_ident * len(LEVELS)} tpl"
        for name in ("plain", "encrypted") if have_crypto else ("plain",):
            with tempfile.TemporaryDirectory() as tmp:
                key = generate_key() if name == "encrypted" else None
                path = Path(tmp) / "g.db"
                times = np.empty(n_ident)
                with Gallery(path, model, key=key) as g:
                    for i in range(n_ident):
                        t0 = time.perf_counter()
                        g.enroll(f"id{i}", vectors[i], LEVELS)
                        times[i] = time.perf_counter() - t0
                extra = {"templates": n_ident * len(LEVELS), "identities": n_ident, "dim": dim,
                         "templates_per_enrolment": len(LEVELS), "db_bytes": path.stat().st_size}
                base = None if name == "plain" else "plain"
                records.append(Record("gallery_db", f"{case} enrol/identity", name, threads, float(np.median(times)),
                                      float(np.percentile(times, 90)), base, extra=extra))
                loads = []
                for _ in range(3):
                    with Gallery(path, model, key=key) as g:
                        t0 = time.perf_counter()
                        g.search(vectors[0, 0], [112.0])
                        loads.append(time.perf_counter() - t0)
                records.append(Record("gallery_db", f"{case} open+first search", name, threads,
                                      float(np.median(loads)), float(np.max(loads)), base, extra=extra))
            print(f"  db {case}: done", file=sys.stderr, flush=True)
    return records


def main() -> None:
    args = ARGS
    records = bench_search(args.sizes, args.dim, args.repeats, args.threads)
    records += bench_db(args.db_sizes, args.dim, args.threads)
    fill_speedups(records)
    for r in records:
        r.extra.update(machine())
        r.extra["faiss_min_templates_setting"] = FAISS_MIN_TEMPLATES
        r.extra["faiss_min_probes_setting"] = FAISS_MIN_PROBES
    report(records, args.json, unit="ms")
    search = [r for r in records if r.benchmark == "gallery_search" and r.impl == "faiss"]
    if search:
        print("\nfaiss vs numpy by templates per level (speedup > 1: faiss faster):")
        for r in search:
            print(f"  {r.case:<28} level rows {max(r.extra['level_rows']):>8}  speedup {r.speedup_vs_baseline:.2f}x"
                  f"  auto picks {r.extra['auto_picks']}")


if __name__ == "__main__":
    main()
