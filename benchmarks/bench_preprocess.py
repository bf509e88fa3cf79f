"""Preprocessing speed: fused C++ align+normalise and degrade against the usual Python pipelines.

Align: 16 faces at random scales (0.3-3x the template) and rotations (+-35 deg) in one 1920x1080 BGR frame, to
a (16, 3, 112, 112) float32 RGB (x - 127.5) / 128 batch. Implementations, measured in the same run:
  opencv       (baseline) per face cv2.estimateAffinePartial2D + cv2.warpAffine + numpy normalise/transpose
  insightface  per face skimage SimilarityTransform + cv2.warpAffine (InsightFace norm_crop), then one
               cv2.dnn.blobFromImages (InsightFace's ArcFaceONNX.get_feat)
  crres        crres_sdk.align_faces (one C++ call: fit, warp, swap, normalise, NCHW), its default
               resample="bicubic" (the faces smaller than the crop, ~1/4 here, take one bicubic warp)
  crres_bilinear  the same with resample="bilinear" (one bilinear warp per face, what the baselines compute)
  crres_uint8  crres_sdk.align_faces_uint8 (HWC uint8 crops, for storage), its default
  crres_scalar the default with the core's vector path switched off (_core.set_simd_enabled(False)): what the
               build's SIMD path (AVX2+FMA on x86-64, NEON on aarch64) buys on this CPU
Small faces: 16 faces at r = 12-100 px (all smaller than the crop) in the same frame, crres (the default,
bicubic) and crres_matched (resample="matched": own-scale warp, then degrade's F_up) against crres_bilinear as
baseline: what each small-face warp costs where it applies.
Degrade: 64 uint8 112x112x3 crops, each down to r in {7, 14, 28, 56} and back up:
  pil          (baseline) PIL resize(BICUBIC) down and up (the definition the core reproduces bit-exactly)
  opencv       cv2.resize INTER_CUBIC down and up (not antialiased: a different, cheaper operation)
  torch        F.interpolate(bicubic, antialias=True) down and up on a float32 NCHW batch, when torch is present
  crres        crres_sdk.degrade (C++, PIL-exact)
Every record carries the CPU (model, ISA flags such as avx2 / avx512f / avx512_vnni / asimd), the core's
vector path (``core_simd``: the one built in and supported here, ``avx2+fma``, ``neon`` or ``scalar``) and what
OpenCV and numpy dispatch to (``baseline_dispatch``), so the align speed-up can be tabled per instruction set
(benchmarks/README.md). The core has no AVX-512 path, but OpenCV and numpy use AVX-512 where the CPU has it;
``--baseline-isa avx2`` reruns the benchmark with their AVX-512 kernels switched off (OPENCV_CPU_DISABLE,
NPY_DISABLE_CPU_FEATURES), which is what the baseline runs on an AVX2-only x86-64. Times are per face / per crop. Thread counts apply to OpenCV (cv2.setNumThreads), torch and the core; PIL and
numpy run on one thread.

    python -m benchmarks.bench_preprocess --json bench-results/preprocess.json
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import cv2
import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform

from benchmarks.common import Record, fill_speedups, machine, report, time_call
from export.build_engine import cpu_isa

from crres_sdk import ARCFACE_TEMPLATE, _core, align_faces, align_faces_uint8, degrade

N_FACES = 16
N_CROPS = 64
SIZES = (7, 14, 28, 56)


def face_landmarks(rng: np.random.Generator, n: int, scale: tuple[float, float] = (0.3, 3.0)) -> np.ndarray:
    out = []
    for _ in range(n):
        s, a = rng.uniform(*scale), rng.uniform(-0.6, 0.6)
        rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        centre = np.array([rng.uniform(200, 1720), rng.uniform(200, 880)])
        out.append((ARCFACE_TEMPLATE - 56.0) @ rot.T + centre)
    return np.stack(out).astype(np.float32)


def cpu_median(fn, repeats: int) -> float:
    """Median CPU time of fn() on this thread: on a shared machine wall-clock medians of the long baseline calls
    (milliseconds) catch other jobs' time slices far more often than the core's short calls, which inflates
    the wall-clock ratio; CPU time does not."""
    fn()
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.thread_time()
        fn()
        samples[i] = time.thread_time() - start
    return float(np.median(samples))


def bench_align(repeats: int, threads_list: list[int]) -> list[Record]:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    landmarks = face_landmarks(rng, N_FACES)
    template = ARCFACE_TEMPLATE.astype(np.float32)

    def opencv():
        out = []
        for lm in landmarks:
            m, _ = cv2.estimateAffinePartial2D(lm, template)
            crop = cv2.warpAffine(frame, m, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)
            out.append(((crop[:, :, ::-1].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1))
        return np.stack(out)

    def insightface():
        crops = []
        for lm in landmarks:
            tform = SimilarityTransform.from_estimate(lm, template)
            crops.append(cv2.warpAffine(frame, tform.params[:2], (112, 112), borderValue=0))
        return cv2.dnn.blobFromImages(crops, 1.0 / 128.0, (112, 112), (127.5, 127.5, 127.5), swapRB=True)

    reference = opencv()
    assert np.abs(align_faces(frame, landmarks, resample="bilinear") - reference).max() < 0.02, \
        "crres disagrees with the baseline"
    assert np.abs(insightface() - reference).max() < 0.02, "insightface pipeline disagrees with the baseline"

    records = []
    for threads in threads_list:
        cv2.setNumThreads(threads)
        impls = {
            "opencv": opencv,
            "insightface": insightface,
            "crres": lambda: align_faces(frame, landmarks, threads=threads),
            "crres_bilinear": lambda: align_faces(frame, landmarks, threads=threads, resample="bilinear"),
            "crres_uint8": lambda: align_faces_uint8(frame, landmarks, threads=threads),
            "crres_scalar": lambda: align_faces(frame, landmarks, threads=threads),
        }
        for name, fn in impls.items():
            _core.set_simd_enabled(name != "crres_scalar")
            try:
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                med, p90 = time_call(fn, repeats)
                # The baseline's numpy temporaries (150 kB a face) page-fault on every call or on none, depending
                # on glibc malloc's state in this process (about 1,100 faults a call cost ~2.5x its time).
                faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (repeats + 3)
                extra = {"items": N_FACES, "unit": "per call; per face = median_s / items",
                         "minor_faults_per_call": faults}
                if threads == 1:  # every implementation then runs on the calling thread
                    extra["cpu_median_s"] = cpu_median(fn, max(repeats // 2, 5))
            finally:
                _core.set_simd_enabled(True)
            records.append(Record("align", f"{N_FACES}faces_1920x1080", name, threads, med, p90,
                                  baseline=None if name == "opencv" else "opencv", extra=extra))
    # Faces smaller than the crop only: what each small-face warp costs where it applies.
    small = face_landmarks(rng, N_FACES, scale=(12 / 112, 100 / 112))
    for threads in threads_list:
        impls = {  # name: (function, resample)
            "crres_bilinear": (lambda: align_faces(frame, small, threads=threads, resample="bilinear"), "bilinear"),
            "crres": (lambda: align_faces(frame, small, threads=threads), "bicubic"),
            "crres_matched": (lambda: align_faces(frame, small, threads=threads, resample="matched"), "matched"),
            "crres_uint8_bilinear": (lambda: align_faces_uint8(frame, small, threads=threads, resample="bilinear"),
                                     "bilinear"),
            "crres_uint8": (lambda: align_faces_uint8(frame, small, threads=threads), "bicubic"),
        }
        for name, (fn, resample) in impls.items():
            med, p90 = time_call(fn, repeats)
            base = None if name == "crres_bilinear" else "crres_bilinear"
            records.append(Record("align", f"{N_FACES}faces_r12-100_1920x1080", name, threads, med, p90,
                                  baseline=base, extra={"items": N_FACES, "resample": resample}))
    return records


def bench_degrade(repeats: int, threads_list: list[int]) -> list[Record]:
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (N_CROPS, 112, 112, 3), dtype=np.uint8)
    sizes = np.array([SIZES[i % len(SIZES)] for i in range(N_CROPS)])

    def pil():
        return np.stack([
            np.asarray(Image.fromarray(c).resize((r, r), Image.Resampling.BICUBIC).resize((112, 112), Image.Resampling.BICUBIC))
            for c, r in zip(crops, sizes)
        ])

    def opencv():
        return np.stack([
            cv2.resize(cv2.resize(c, (int(r), int(r)), interpolation=cv2.INTER_CUBIC), (112, 112),
                       interpolation=cv2.INTER_CUBIC)
            for c, r in zip(crops, sizes)
        ])

    assert np.array_equal(degrade(crops, sizes), pil()), "crres degrade must equal PIL bit for bit"
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    nchw = None if torch is None else torch.from_numpy(crops.transpose(0, 3, 1, 2).astype(np.float32))

    def torch_degrade():
        out = torch.empty_like(nchw)
        for r in SIZES:  # batched per distinct r, as training does
            idx = torch.from_numpy(np.flatnonzero(sizes == r))
            small = F.interpolate(nchw[idx], size=(r, r), mode="bicubic", antialias=True, align_corners=False)
            out[idx] = F.interpolate(small, size=(112, 112), mode="bicubic", antialias=True, align_corners=False)
        return out

    records = []
    for threads in threads_list:
        cv2.setNumThreads(threads)
        impls = {"pil": pil, "opencv": opencv, "crres": lambda: degrade(crops, sizes, threads=threads)}
        if torch is not None:
            torch.set_num_threads(threads)
            impls["torch"] = torch_degrade
        for name, fn in impls.items():
            med, p90 = time_call(fn, repeats)
            records.append(Record("degrade", f"{N_CROPS}crops_112_r7-56", name, threads, med, p90,
                                  baseline=None if name == "pil" else "pil",
                                  extra={"items": N_CROPS, "sizes": list(SIZES)}))
    return records


# OpenCV's and numpy's names for their AVX-512 (and AVX-VNNI) kernels: disabled, they dispatch to AVX2 at best.
AVX2_ONLY_ENV = {"OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512-CLX,AVX512-CNL,AVX512-ICL,AVX512F,AVX512-COMMON,AVX_VNNI",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR"}


def baseline_dispatch() -> dict:
    """The optional CPU features OpenCV and numpy dispatch to in this process (the baseline's instruction set)."""
    opencv = [f[1:] for f in cv2.getCPUFeaturesLine().split() if f.startswith("*") and not f.endswith("?")]
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return {"opencv": opencv, "numpy": [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records to this JSON file")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per implementation (align)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--benchmarks", nargs="+", choices=["align", "degrade"], default=["align", "degrade"])
    parser.add_argument("--baseline-isa", choices=["native", "avx2"], default="native",
                        help="avx2: OpenCV and numpy without their AVX-512 kernels, as on an AVX2-only CPU (the "
                             "core has no AVX-512 path, so it runs the same code either way)")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 for a meaningful median")
    if args.baseline_isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ONLY_ENV.items()):
        # OpenCV and numpy read these once, at import: start again with them set.
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_preprocess", *sys.argv[1:]],
                  {**os.environ, **AVX2_ONLY_ENV})
    records = []
    if "align" in args.benchmarks:
        records += bench_align(args.repeats, args.threads)
    if "degrade" in args.benchmarks:
        records += bench_degrade(max(args.repeats // 10, 5), args.threads)
    fill_speedups(records)
    for r in records:  # the same ratio in CPU time (single-thread align records)
        base = next((b for b in records if b.impl == r.baseline and b.case == r.case and b.threads == r.threads), None)
        if base is not None and "cpu_median_s" in r.extra and "cpu_median_s" in base.extra:
            r.extra["cpu_speedup_vs_baseline"] = base.extra["cpu_median_s"] / r.extra["cpu_median_s"]
    cpu = cpu_isa()
    dispatch = baseline_dispatch()
    print(f"CPU: {cpu['model']} ({cpu['machine']}; {' '.join(cpu['isa'])}); core vector path: "
          f"{_core.simd_available()}; baseline ({args.baseline_isa}) dispatches to OpenCV "
          f"{' '.join(dispatch['opencv'])}, numpy {' '.join(dispatch['numpy'])}")
    for r in records:
        r.extra.update(machine())
        r.extra["cpu"] = cpu
        r.extra["baseline_isa"] = args.baseline_isa
        r.extra["baseline_dispatch"] = dispatch
        # the core's vector path in this record: avx2+fma, neon or scalar (crres_scalar: switched off)
        r.extra["core_simd"] = "scalar" if r.impl == "crres_scalar" else _core.simd_available()
    report(records, args.json, unit="us", per="/item")
    timed = [r for r in records if "cpu_median_s" in r.extra]
    if timed:
        print("align, 1 thread, page faults per call: " + ", ".join(
            f"{r.impl} {r.extra['minor_faults_per_call']:.0f}" for r in timed))
        print("align, 1 thread, CPU time per face: " + ", ".join(
            f"{r.impl} {r.extra['cpu_median_s'] / r.extra['items'] * 1e6:.1f} us"
            + (f" ({r.extra['cpu_speedup_vs_baseline']:.2f}x)" if "cpu_speedup_vs_baseline" in r.extra else "")
            for r in timed))


if __name__ == "__main__":
    main()
