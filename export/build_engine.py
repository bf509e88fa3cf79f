"""Checkpoint -> model bundle (FP32 or INT8), calibrated on mixed-resolution faces, gated by a parity report.

    python export/build_engine.py --target fp32|onnx|x86|jetson --checkpoint runs/x/final.pt --calib CROPS \
        --out DIR [--lfw DIR|none]

Targets and their steps are one table (``export/targets.py``). Arguments are validated up front (exit 2 with a
clear message); every step is timed and logged. The FP32 ONNX is always kept. INT8 embeddings are compared with
FP32 on held-out crops degraded into the low (5-10 px), mid (11-40) and high (41-112) bands (cosine mean and 1st
percentile per band) and by verification accuracy: with LFW per btm-stm protocol (low/mid/high/all; at most
``--tolerance-pp`` below FP32), without it on the small real face set scikit-image ships
(export/small_face_gate.py); ``parity.accuracy_gate.set`` in the manifest names the set or says "not run".
When a check fails the exporter tries, in order: the other calibration methods, the first conv and the embedding
layer kept in FP32, sensitivity-ranked mixed precision (the k layers with the most quantization noise also kept
FP32, export/sensitivity.py) and a calibration set weighted towards low resolution. If none passes, the build
exits 1 with the report (``parity_report.json``) and writes no manifest.
Per-resolution thresholds at FAR 1e-2 ... 1e-6 (1:1 pairs, and 1:N pairs against resolution-matched gallery
templates, with the fitted impostor tail the SDK's fpir policy extrapolates) are measured for the FP32 model and
every INT8 file (export/thresholds.py). Exit codes: 0 bundle written, 1 build or parity failure, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `training`, `export` importable
    sys.path.insert(0, str(REPO))


import numpy as np

from crres_sdk.bundle import sha256_file

LOG = logging.getLogger("crres.export")
TARGET_NAMES = ("fp32", "onnx", "x86", "jetson")
LOW_RES_WEIGHTS = {"low": 0.5, "mid": 0.3, "high": 0.2}
#: Sensitivity-ranked mixed precision: numbers of most-sensitive layers kept FP32, tried in this order.
MIXED_PRECISION_STEPS = (2, 4, 8, 16)
#: Share of the weighted layers (Conv/Gemm/MatMul) that must stay INT8 whatever the remedy.
MIN_INT8_SHARE = 0.4
#: Calibration samples the sensitivity ranking runs on (stratified: the calibration set is shuffled).
RANKING_SAMPLES = 48


#: Instruction-set flags that change INT8 results (VNNI vs AVX2 integer dot products; ORT's reduce_range exists
#: for the latter) or speed, recorded with every parity figure.
ISA_FLAGS = ("sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
             "asimd", "asimddp", "i8mm")


def cpu_isa(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU the parity figures were measured on: model name and the INT8-relevant ISA flags (Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    model = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("model name", "cpu model") and model is None:
            model = value.strip()
    return {"machine": platform.machine(), "model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


class ExportError(Exception):
    """A build failure with a message meant for the user."""


class ParityError(ExportError):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python export/build_engine.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help=f"one of {', '.join(TARGET_NAMES)}")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (final.pt from training/train.py)")
    p.add_argument("--calib", required=True,
                   help="folder of aligned 112x112 face crops or raw photos; identity sub-folders give the "
                        "threshold pairs (held-out identities)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--calib-size", type=int, default=512, help="calibration samples (default 512)")
    p.add_argument("--calib-method", default="minmax", help="minmax | entropy | percentile (default minmax)")
    p.add_argument("--calib-bands", default="low=1,mid=1,high=1",
                   help="relative share of calibration samples per band: low 5-10, mid 11-40, high 41-112 px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lfw", default=None,
                   help="LFW folder (images/, pairs.txt, btm_stm/) for accuracy parity and threshold pairs, or "
                        "'none' (default: ../shared/data/lfw when it exists); without LFW the INT8 accuracy gate "
                        "runs on scikit-image's small real face set (export/small_face_gate.py)")
    p.add_argument("--lfw-pairs-per-fold", type=int, default=None,
                   help="use only N pairs of each of the 10 LFW folds, half genuine (smoke runs; default all 600)")
    p.add_argument("--tolerance-pp", type=float, default=0.5,
                   help="max verification-accuracy drop INT8 vs FP32 per band, percentage points (LFW: 10-fold "
                        "accuracy per btm-stm band; the small face set: net lost pairs, failing only when also "
                        "beyond chance, see export/small_face_gate.py)")
    p.add_argument("--cosine-floor", type=float, default=0.95, help="min INT8-vs-FP32 cosine mean per band")
    p.add_argument("--cosine-p1-floor", type=float, default=0.85,
                   help="min 1st-percentile INT8-vs-FP32 cosine per band")
    p.add_argument("--no-remedies", action="store_true", help="fail on the first parity miss")
    p.add_argument("--max-fp32-layers", type=int, default=16,
                   help="most sensitivity-ranked layers the mixed-precision remedy may keep FP32 (default 16)")
    p.add_argument("--eval-backend", default="onnxruntime", choices=("onnxruntime", "openvino"),
                   help="runtime that evaluates the ONNX files (parity, thresholds); OpenVINO IRs always run on "
                        "openvino (default onnxruntime)")
    p.add_argument("--thresholds-from-lfw", action="store_true",
                   help="also take threshold pairs from LFW (off: LFW is the accuracy set; thresholds come from "
                        "held-out --calib identities)")
    p.add_argument("--holdout-max", type=int, default=512,
                   help="most held-out --calib crops used for parity and threshold pairs (default 512)")
    p.add_argument("--threshold-probes", type=int, default=1000,
                   help="LFW images degraded to each threshold resolution (default 1000; every LFW image is a "
                        "112 px gallery crop)")
    p.add_argument("--name", help="bundle name (default: the checkpoint's recipe or model name)")
    p.add_argument("--version", help="bundle version (default: ckpt-<sha256 prefix of the checkpoint>)")
    p.add_argument("--trt-version", default="10", help="TensorRT major[.minor] the jetson engine is built for")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    p.add_argument("--signing-key", help="Ed25519 private key (PEM, export/signing.py keygen): sign the bundle")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines while embedding LFW")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _parse_bands(text: str) -> dict[str, float]:
    from export.calibration import BANDS

    out: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in BANDS:
            raise ExportError(f"--calib-bands expects e.g. low=1,mid=1,high=1 (bands {list(BANDS)}), got {text!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ExportError(f"--calib-bands: {value!r} is not a number") from None
    if any(v < 0 for v in out.values()) or sum(out.values()) <= 0:
        raise ExportError(f"--calib-bands weights must be >= 0 and not all zero, got {text!r}")
    return out


def _resolve_lfw(value: str | None) -> Path | None:
    from export.lfw_parity import default_root

    if value is None:
        return default_root(REPO)
    if value.lower() == "none":
        return None
    root = Path(value)
    images = root / "images" if (root / "images").is_dir() else root
    if not root.is_dir() or not (root / "pairs.txt").is_file() or not images.is_dir():
        raise ExportError(f"--lfw {root} is not an LFW folder (needs pairs.txt and images/); pass --lfw none to skip")
    if not (root / "btm_stm").is_dir():
        raise ExportError(f"--lfw {root} has no btm_stm/ folder with the cross-resolution protocols")
    return root


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Check every argument before any work; raise ExportError naming the bad one."""
    from export.calibration import identity_labels, list_crops
    from export.quantize import CALIB_METHODS
    from export.targets import TARGETS, missing_requirements

    if args.target not in TARGETS:
        raise ExportError(f"--target must be one of {', '.join(TARGETS)}, got {args.target!r}")
    missing = missing_requirements(args.target)
    if missing:
        raise ExportError(f"--target {args.target} needs {', '.join(missing)}: pip install {' '.join(missing)}")
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise ExportError(f"--checkpoint {ckpt} does not exist (expected final.pt from training/train.py)")
    if args.calib_method not in CALIB_METHODS:
        raise ExportError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {args.calib_method!r}")
    if args.calib_size < 8:
        raise ExportError(f"--calib-size must be >= 8, got {args.calib_size}")
    for name in ("cosine_floor", "cosine_p1_floor"):
        v = getattr(args, name)
        if not -1.0 <= v <= 1.0:
            raise ExportError(f"--{name.replace('_', '-')} must lie in [-1, 1], got {v}")
    if not 0 <= args.tolerance_pp <= 100:
        raise ExportError(f"--tolerance-pp must lie in [0, 100], got {args.tolerance_pp}")
    if args.lfw_pairs_per_fold is not None and not 2 <= args.lfw_pairs_per_fold <= 600:
        raise ExportError(f"--lfw-pairs-per-fold must lie in [2, 600], got {args.lfw_pairs_per_fold}")
    if args.max_fp32_layers < 0:
        raise ExportError(f"--max-fp32-layers must be >= 0, got {args.max_fp32_layers}")
    if args.holdout_max < 4:
        raise ExportError(f"--holdout-max must be >= 4, got {args.holdout_max}")
    if args.threshold_probes < 10:
        raise ExportError(f"--threshold-probes must be >= 10, got {args.threshold_probes}")
    if args.eval_backend == "openvino" and importlib.util.find_spec("openvino") is None:
        raise ExportError("--eval-backend openvino needs openvino: pip install openvino")
    if not re.fullmatch(r"\d+(\.\d+){0,2}", args.trt_version):
        raise ExportError(f"--trt-version must look like 10 or 10.3, got {args.trt_version!r}")
    bands = _parse_bands(args.calib_bands)
    try:
        files = list_crops(args.calib)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if len(files) < 2:
        raise ExportError(f"--calib {args.calib} has {len(files)} image; need at least 2 (one is held out)")
    lfw = _resolve_lfw(args.lfw)
    if identity_labels(files, args.calib) is None and (lfw is None or not args.thresholds_from_lfw):
        raise ExportError(f"per-resolution thresholds need identities: --calib {args.calib} has no identity "
                          "sub-folders (at least 2); use --calib DIR/<identity>/*.png (held-out identities), or "
                          "--thresholds-from-lfw with --lfw DIR (LFW then stops being a held-out accuracy set)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ExportError(f"--out {out} is not empty; pass --overwrite to replace its bundle")
    return {"files": files, "bands": bands, "lfw": lfw}


def check_tensorrt_version(have: str, want: str) -> None:
    """Refuse a TensorRT whose version does not start with ``want`` (engines are version-specific)."""
    if not (have == want or have.startswith(want + ".")):
        raise ExportError(f"tensorrt {have} is installed but the engine is meant for TensorRT {want}; build on a "
                          f"device with TensorRT {want} (build_engine.sh) or pass --trt-version "
                          f"{'.'.join(have.split('.')[:2])}")


def _margin(report: dict[str, Any]) -> float:
    """How far the worst band is above its floors (negative: below)."""
    return min(min(b["cosine_mean"] - report["floor_mean"], b["cosine_p1"] - report["floor_p1"])
               for b in report["bands"].values())


class Exporter:
    def __init__(self, args: argparse.Namespace, checked: dict[str, Any]) -> None:
        from export.targets import TARGETS

        self.args, self.files_in, self.bands = args, checked["files"], checked["bands"]
        self.lfw_root: Path | None = checked["lfw"]
        self.spec = TARGETS[args.target]
        self.out = Path(args.out)
        self.timings: dict[str, float] = {}
        self.files: dict[str, dict[str, str]] = {}
        self.file_extra: dict[str, dict[str, Any]] = {}  # "runtime/role" -> more manifest keys (the engine's GPU...)
        self.quant: dict[str, Any] = {}
        self.parity: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.calib_desc: dict[str, Any] | None = None
        self.lfw = None                                   # export.lfw_parity.LfwSet
        self.lfw_fp32: dict[str, Any] | None = None       # FP32 accuracy per band
        self.lfw_caches: dict[str, Any] = {}             # "runtime/role" -> EmbeddingCache over LFW crops
        self.lfw_reports: dict[str, Any] = {}            # "runtime/role" -> INT8 vs FP32 comparison
        self.small_set = None                             # export.small_face_gate.FaceSet when it gates instead
        self.small_fp32: dict[str, np.ndarray] | None = None  # FP32 pair scores per band on it
        self.small_reports: dict[str, Any] = {}          # "runtime/role" -> INT8 vs FP32 comparison on it
        self.accuracy_not_run: str | None = None         # why no accuracy gate ran (None: one did)
        self.shipped: dict[str, tuple[Path, str]] = {}   # "runtime/role" -> (file, backend) evaluated
        self.rankings: dict[str, list[dict[str, Any]]] = {}
        self.thresholds: dict[str, Any] | None = None

    # --- driver ------------------------------------------------------------------------------------------
    def run(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in ("manifest.json", "parity_report.json", "manifest.sig"):
            # a failed rebuild must not leave an old, valid-looking bundle (nor a success an old failure report)
            (self.out / stale).unlink(missing_ok=True)
        LOG.info("target %s: %s", self.args.target, self.spec["description"])
        LOG.info("steps: %s", " -> ".join(self.spec["steps"]))
        for step in self.spec["steps"]:
            t0 = time.perf_counter()
            LOG.info("[%s] start", step)
            getattr(self, f"step_{step}")(**self.spec["args"].get(step, {}))
            self.timings[step] = round(time.perf_counter() - t0, 3)
            LOG.info("[%s] done in %.2f s", step, self.timings[step])
        return self.out

    def _add_file(self, runtime: str, role: str, path: Path) -> None:
        self.files.setdefault(runtime, {})[role] = str(path.relative_to(self.out))

    # --- steps -------------------------------------------------------------------------------------------
    def step_load_checkpoint(self) -> None:
        from training.checkpoint import load_checkpoint, model_from_checkpoint

        path = Path(self.args.checkpoint)
        try:
            self.ckpt = load_checkpoint(path)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        self.ckpt_sha = sha256_file(path)
        self.model = model_from_checkpoint(self.ckpt)
        self.input_size = int(self.ckpt.get("input_size", self.model.input_size))
        self.norm = dict(self.ckpt["normalisation"])
        LOG.info("checkpoint %s: %s %s, input %d, embedding %d", path, self.ckpt["model_name"],
                 self.ckpt["model_kwargs"], self.input_size, self.ckpt["embedding_dim"])

    def step_export_onnx(self) -> None:
        from export.onnx_export import check_onnx, export_fp32

        self.fp32 = self.out / "model.fp32.onnx"
        export_fp32(self.model, self.input_size, self.fp32)
        s = self.input_size
        sample = np.random.default_rng(0).uniform(-1.0, 1.0, (8, 3, s, s)).astype(np.float32)
        self.extra["onnx_check"] = check_onnx(self.model, self.fp32, sample)
        LOG.info("FP32 ONNX %s: %s", self.fp32.name, self.extra["onnx_check"])
        self._add_file("onnx", "fp32", self.fp32)

    def step_face_data(self) -> None:
        from export.calibration import build_calibration_set, build_parity_set, load_faces, split_for_export
        from export.parity import embed

        a = self.args
        self.split = split_for_export(self.files_in, a.calib, a.seed, calib_max=a.calib_size,
                                      holdout_max=a.holdout_max)
        LOG.info("--calib split: %s", self.split.describe())
        try:
            hold_crops, hold_files = load_faces(self.split.holdout, self.input_size)
            if self.spec["quantizes"]:
                self.calib_crops, self.calib_files = load_faces(self.split.calib, self.input_size)
        except ValueError as exc:
            raise ExportError(f"--calib: {exc}") from None
        ids = self.split.holdout_identities
        if ids is not None:  # photos without a face were skipped: keep labels aligned with the crops
            label_of = dict(zip(self.split.holdout, ids))
            ids = [label_of[f] for f in hold_files]
        self.hold_crops, self.hold_ids = hold_crops, ids
        if self.spec["quantizes"]:
            self.calib = build_calibration_set(self.calib_crops, self.calib_files, a.calib_size, self.norm, a.seed,
                                               self.bands)
            LOG.info("calibration set: %s", self.calib.describe())
            self.held = build_parity_set(hold_crops, hold_files, self.norm, a.seed)
            LOG.info("held-out parity set: %s", self.held.describe())
            self.ref = embed(self.fp32, self.held.inputs, backend=a.eval_backend)
        else:
            self.held = None

    def step_lfw_reference(self) -> None:
        """LFW aligned crops (cached) and the FP32 model's btm-stm accuracy: the reference INT8 is held to."""
        from export import lfw_parity

        if self.lfw_root is None:
            LOG.info("LFW accuracy parity skipped (%s)", "--lfw none" if self.args.lfw else
                     "no LFW at ../shared/data/lfw")
            if self.spec["quantizes"]:
                self._small_set_reference()
            return
        try:
            self.lfw = lfw_parity.load(self.lfw_root, pairs_per_fold=self.args.lfw_pairs_per_fold,
                                       progress=not self.args.quiet)
        except (FileNotFoundError, ValueError) as exc:
            raise ExportError(f"--lfw: {exc}") from None
        cache = self._lfw_cache(self.fp32, self.args.eval_backend, "onnx/fp32")
        self.lfw_caches["onnx/fp32"] = cache
        self.lfw_fp32 = lfw_parity.accuracy(cache, self.lfw)
        LOG.info("LFW btm-stm FP32 accuracy: %s", ", ".join(f"{b} {v['accuracy_pct']:.2f}% ({v['seconds']:.0f} s)"
                                                           for b, v in self.lfw_fp32.items()))

    def _small_set_reference(self) -> None:
        """Without LFW the INT8 files are gated on the small real face set (export/small_face_gate.py)."""
        from export import small_face_gate
        from export.lfw_parity import make_cache

        why = small_face_gate.available()
        if why is not None:
            self.accuracy_not_run = f"no LFW and {why}"
            LOG.warning("no INT8 accuracy gate (%s): INT8 files are gated by cosine floors only, and the manifest "
                        "says so", self.accuracy_not_run)
            return
        self.small_set = small_face_gate.build(self.args.seed)
        self.small_fp32 = small_face_gate.scores(make_cache(self.fp32, self.args.eval_backend, self.norm,
                                                            self.small_set.crops, self.input_size, progress=False),
                                                 self.small_set)
        LOG.info("INT8 accuracy gate on %s (%d pairs; no LFW)", small_face_gate.SET_NAME, self.small_set.pairs)

    def _lfw_cache(self, path: Path, backend: str, file_key: str):
        """An LFW EmbeddingCache for this model file, pre-filled from an earlier build's disk store if any."""
        from export import lfw_parity

        cache = lfw_parity.make_cache(path, backend, self.norm, self.lfw.ds.crops, self.input_size,
                                      progress=not self.args.quiet)
        reused = lfw_parity.load_store(cache, lfw_parity.store_path(path, backend, self.norm, self.lfw))
        if reused:
            LOG.info("%s: %d LFW embeddings reused from an earlier build", file_key, reused)
        self.extra.setdefault("lfw_embeddings_reused", {})[file_key] = reused
        return cache

    # --- INT8 candidates ----------------------------------------------------------------------------------
    def _evaluate(self, path: Path, backend: str, file_key: str, att: dict[str, Any]) -> dict[str, Any]:
        """Cosine parity on the held-out crops, then (when it passes) the accuracy gate: LFW, else the small face
        set. ``passed``: True = every gate passed, False = one failed, None = cosine passed and no accuracy gate
        could run (accepted, but never recorded as passed)."""
        from export import lfw_parity, small_face_gate
        from export.parity import band_report, cosine, embed, format_report

        a = self.args
        t0 = time.perf_counter()
        rep = band_report(cosine(self.ref, embed(path, self.held.inputs, backend=backend)), self.held.resolutions,
                          a.cosine_floor, a.cosine_p1_floor)
        record: dict[str, Any] = {"remedy": att["remedy"], "calibration_method": att.get("method"),
                                  "nodes_kept_fp32": list(att.get("exclude") or []), "report": rep,
                                  "passed": rep["passed"]}
        if att.get("sensitive"):
            record["sensitive_layers_kept_fp32"] = att["sensitive"]
        LOG.info("%s attempt (%s)\n%s", file_key, att["remedy"], format_report(f"{file_key} on {backend}", rep))
        if rep["passed"] and self.lfw is not None:
            cache = self._lfw_cache(path, backend, file_key)
            cmp = lfw_parity.compare(self.lfw_fp32, lfw_parity.accuracy(cache, self.lfw), a.tolerance_pp)
            LOG.info("%s", lfw_parity.format_report(file_key, cmp))
            record["accuracy"] = {"set": "lfw", **cmp}
            record["passed"] = cmp["passed"]
            if cmp["passed"]:
                self.lfw_caches[file_key] = cache
                self.lfw_reports[file_key] = cmp
                # kept now, not only after the thresholds: a later step may still fail, and the rebuild reuses it
                lfw_parity.save_store(cache, lfw_parity.store_path(path, backend, self.norm, self.lfw))
        elif rep["passed"] and self.small_set is not None:
            cache = lfw_parity.make_cache(path, backend, self.norm, self.small_set.crops, self.input_size,
                                          progress=False)
            cmp = small_face_gate.compare(self.small_fp32, small_face_gate.scores(cache, self.small_set),
                                          self.small_set.issame, a.tolerance_pp)
            LOG.info("%s", small_face_gate.format_report(file_key, cmp))
            record["accuracy"] = cmp
            record["passed"] = cmp["passed"]
            if cmp["passed"]:
                self.small_reports[file_key] = cmp
        elif rep["passed"]:
            record["accuracy"] = {"set": "not run", "reason": self.accuracy_not_run}
            record["passed"] = None
        record["seconds"] = round(time.perf_counter() - t0, 2)
        return record

    def _ranking(self, flavour: str, pre: Path, qdq: Path | None = None) -> list[dict[str, Any]]:
        """Sensitivity ranking of the all-INT8 model of this flavour (computed once)."""
        from export.quantize import quantize_ort
        from export.sensitivity import rank_nodes

        if flavour in self.rankings:
            return self.rankings[flavour]
        tmp = None
        if qdq is None:
            tmp = qdq = self.out / f"_ranking_{flavour}.onnx"
            quantize_ort(pre, qdq, self.calib.inputs, self.args.calib_method, flavour=flavour)
        t0 = time.perf_counter()
        ranked = rank_nodes(pre, qdq, self.calib.inputs[:RANKING_SAMPLES])
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        LOG.info("sensitivity ranking (%s, %d layers, %.1f s), most sensitive: %s", flavour, len(ranked),
                 time.perf_counter() - t0,
                 ", ".join(f"{r['name']} ({r['score_db']:.1f} dB)" for r in ranked[:5]))
        self.rankings[flavour] = ranked
        return ranked

    def _mixed_precision_sets(self, ranked: list[dict[str, Any]], fixed: list[str]) -> list[tuple[int, list[str]]]:
        """(k, the k most sensitive layers not already in ``fixed``) for k in MIXED_PRECISION_STEPS.

        At most ``--max-fp32-layers`` extra layers, and at least MIN_INT8_SHARE of the weighted layers stay INT8
        (keeping everything FP32 would pass any parity check and ship an FP32 model labelled INT8)."""
        names = [r["name"] for r in ranked if r["name"] not in set(fixed)]
        room = len(ranked) - math.ceil(MIN_INT8_SHARE * len(ranked)) - len(set(fixed) & {r["name"] for r in ranked})
        limit = max(0, min(self.args.max_fp32_layers, room, len(names)))
        out, seen = [], 0
        for k in MIXED_PRECISION_STEPS:
            k = min(k, limit)
            if k > seen:
                out.append((k, names[:k]))
                seen = k
        return out

    def _ort_attempts(self, flavour: str, pre: Path, fixed: list[str], tried: list[dict[str, Any]]):
        """The remedy plan, lazily: later attempts use what earlier ones measured (best method, ranking)."""
        from export.quantize import CALIB_METHODS

        first = self.args.calib_method
        yield {"method": first, "exclude": [], "weights": None, "remedy": "none"}
        if self.args.no_remedies:
            return
        others = [m for m in ("percentile", "entropy", "minmax") if m != first and m in CALIB_METHODS]
        for m in others:
            yield {"method": m, "exclude": [], "weights": None, "remedy": f"{m} calibration"}
        for m in [first] + others:
            yield {"method": m, "exclude": fixed, "weights": None,
                   "remedy": f"{m} calibration, first conv + embedding layer kept FP32"}
        best = max(tried, key=lambda t: _margin(t["report"]))["calibration_method"]
        for k, nodes in self._mixed_precision_sets(self._ranking(flavour, pre), fixed):
            yield {"method": best, "exclude": sorted(set(fixed) | set(nodes)), "weights": None, "sensitive": nodes,
                   "remedy": f"{best} calibration, first conv + embedding layer + {k} most sensitive layers kept "
                             "FP32 (sensitivity-ranked mixed precision)"}
        yield {"method": first, "exclude": fixed, "weights": LOW_RES_WEIGHTS,
               "remedy": f"{first} calibration, FP32 first conv + embedding layer, calibration weighted to low "
                         "resolution"}

    def step_quantize_ort(self, flavour: str, file: str) -> None:
        from export.calibration import build_calibration_set
        from export.quantize import pre_process, quantize_ort, sensitive_nodes

        a = self.args
        pre = pre_process(self.fp32, self.out / "_preprocessed.onnx")
        fixed = sensitive_nodes(pre)
        key = "onnxruntime" if flavour == "cpu" else "tensorrt_qdq"
        file_key = "onnx/int8" if flavour == "cpu" else "tensorrt/qdq"
        target = self.out / file
        tried: list[dict[str, Any]] = []
        chosen = None
        try:
            for k, att in enumerate(self._ort_attempts(flavour, pre, fixed, tried)):
                calib = self.calib
                if att["weights"] is not None:
                    calib = build_calibration_set(self.calib_crops, self.calib_files, a.calib_size, self.norm,
                                                  a.seed, att["weights"])
                tmp = self.out / f"_attempt{k}.onnx"
                info = quantize_ort(pre, tmp, calib.inputs, att["method"], flavour=flavour, exclude=att["exclude"])
                record = self._evaluate(tmp, a.eval_backend, file_key, att)
                tried.append(record)
                if record["passed"] is not False:
                    chosen = (tmp, info, att, record)
                    break
                if k == 0 and not a.no_remedies:
                    self._ranking(flavour, pre, tmp)  # rank on the all-INT8 model just measured
                tmp.unlink()
        finally:
            pre.unlink(missing_ok=True)
        self.parity[key] = {"file": file_key, "backend": a.eval_backend, "attempts": tried}
        if flavour in self.rankings:
            self.parity[key]["sensitivity_ranking"] = self.rankings[flavour][:32]
        if chosen is None:
            self._write_failure()
            raise ParityError(f"INT8 parity failed for {key} after {len(tried)} attempt(s); see "
                              f"{self.out / 'parity_report.json'}")
        tmp, info, att, record = chosen
        tmp.replace(target)
        for f in self.out.glob("_attempt*.onnx"):
            f.unlink()
        self.parity[key].update(remedy_used=att["remedy"], passed=record["passed"], bands=record["report"]["bands"],
                                accuracy=record["accuracy"])
        if att.get("sensitive"):
            self.parity[key]["sensitive_layers_kept_fp32"] = att["sensitive"]
        self.quant[key] = info
        self.calib_desc = self._calibration_description(att["weights"] or self.bands, att["method"])
        self.qdq = target
        self._add_file("onnx" if flavour == "cpu" else "tensorrt", "int8" if flavour == "cpu" else "qdq", target)
        self.shipped[file_key] = (target, a.eval_backend)
        LOG.info("%s: %s (remedy: %s)", target.name, "parity passed", att["remedy"])

    def step_quantize_openvino(self, file: str) -> None:
        from export.calibration import build_calibration_set
        from export.quantize import quantize_openvino, sensitive_nodes

        a = self.args
        xml = self.out / file
        fixed = sensitive_nodes(self.fp32)
        tried: list[dict[str, Any]] = []

        def plans():
            yield {"remedy": "none", "exclude": [], "preset": "performance"}
            if a.no_remedies:
                return
            # NNCF's default preset quantizes activations symmetrically; PReLU nets' are not centred on zero
            yield {"remedy": "NNCF mixed preset (asymmetric activations)", "exclude": [], "preset": "mixed"}
            yield {"remedy": "mixed preset, first conv + embedding layer kept FP32", "exclude": fixed,
                   "preset": "mixed"}
            pre = self.out / "_preprocessed_ov.onnx"
            if "cpu" not in self.rankings:
                from export.quantize import pre_process

                pre_process(self.fp32, pre)
            try:
                ranked = self._ranking("cpu", pre)
            finally:
                pre.unlink(missing_ok=True)
            for k, nodes in self._mixed_precision_sets(ranked, fixed):
                yield {"remedy": f"mixed preset, first conv + embedding layer + {k} most sensitive layers kept FP32 "
                                 "(sensitivity-ranked mixed precision, ranked on the ONNX Runtime INT8 model)",
                       "exclude": sorted(set(fixed) | set(nodes)), "sensitive": nodes, "preset": "mixed"}
            yield {"remedy": "mixed preset, first conv + embedding layer kept FP32, calibration weighted to low "
                             "resolution", "exclude": fixed, "weights": LOW_RES_WEIGHTS, "preset": "mixed"}

        info = None
        for att in plans():
            calib = self.calib
            if att.get("weights") is not None:
                calib = build_calibration_set(self.calib_crops, self.calib_files, a.calib_size, self.norm, a.seed,
                                              att["weights"])
            info = quantize_openvino(self.fp32, xml, calib.inputs, subset_size=a.calib_size,
                                     ignored=att["exclude"] or None, preset=att["preset"])
            if att.get("weights") is not None:
                info["calibration_bands"] = att["weights"]
            record = self._evaluate(xml, "openvino", "openvino/int8_xml", att)
            tried.append(record)
            if record["passed"] is not False:
                break
        self.parity["openvino"] = {"file": "openvino/int8_xml", "backend": "openvino", "attempts": tried}
        if tried[-1]["passed"] is False:
            self._write_failure()
            raise ParityError(f"INT8 parity failed for openvino; see {self.out / 'parity_report.json'}")
        last = tried[-1]
        self.parity["openvino"].update(remedy_used=last["remedy"], passed=last["passed"],
                                       bands=last["report"]["bands"])
        for k in ("sensitive_layers_kept_fp32", "accuracy"):
            if k in last:
                self.parity["openvino"][k] = last[k]
        self.quant["openvino"] = info
        self._add_file("openvino", "int8_xml", xml)
        self._add_file("openvino", "int8_bin", xml.with_suffix(".bin"))
        self.shipped["openvino/int8_xml"] = (xml, "openvino")

    def step_tensorrt_engine(self, script: str, engine: str) -> None:
        """build_engine.sh (from the export/build_engine.sh template), the device tool (export/tensorrt_engine.py
        as trt_tool.py) and the engine's parity set; the engine itself when TensorRT imports here."""
        import shutil

        from export import tensorrt_engine as te
        from export.calibration import BANDS
        from export.parity import embed

        a, s = self.args, self.input_size
        want = a.trt_version
        shapes = {f"@{k}_SHAPE@": f"{b}x3x{s}x{s}" for k, b in zip(("MIN", "OPT", "MAX"), te.PROFILE_BATCHES)}
        text = (REPO / "export" / "build_engine.sh").read_text()
        for key, value in {"@TRT_VERSION@": want, "@QDQ@": self.qdq.name, "@ENGINE@": engine, "@INPUT@": "image",
                           **shapes}.items():
            text = text.replace(key, value)
        sh = self.out / script
        sh.write_text(text)
        sh.chmod(0o755)
        self._add_file("tensorrt", "build_script", sh)
        tool = self.out / "trt_tool.py"
        shutil.copyfile(REPO / "export" / "tensorrt_engine.py", tool)
        self._add_file("tensorrt", "tool", tool)
        parity_set = self.out / te.PARITY_FILE
        parity_info = te.write_parity_set(parity_set, self.held.inputs, self.held.resolutions, BANDS, self.ref,
                                          embed(self.qdq, self.held.inputs, backend=a.eval_backend),
                                          a.cosine_floor, a.cosine_p1_floor, seed=a.seed)
        self._add_file("tensorrt", "parity_set", parity_set)
        info: dict[str, Any] = {"engine": engine, "built": False, "required_tensorrt": want,
                                "parity_set": parity_info,
                                "note": "engines are device- and TensorRT-version-specific: build and register it "
                                        f"on the device with {script}, then check it with trt_tool.py parity"}
        try:
            import tensorrt as trt
        except ImportError:
            trt = None
        if trt is not None:  # pragma: no cover - needs TensorRT and a GPU
            have = str(getattr(trt, "__version__", "unknown"))
            check_tensorrt_version(have, want)
            path = te.build_engine(trt, self.qdq, self.out / engine, "image", s)
            entry = te.engine_entry(self.out, path, have, te.gpu_info(), "tensorrt-python")
            self._add_file("tensorrt", "engine", path)
            self.file_extra["tensorrt/engine"] = {k: v for k, v in entry.items() if k not in ("path", "sha256")}
            info.update(built=True)
        else:
            LOG.info("tensorrt is not importable here: run %s on the device", sh)
        self.extra["tensorrt"] = info

    # --- thresholds ---------------------------------------------------------------------------------------
    def _training_identities(self) -> set[str]:
        return set(self.ckpt.get("classes") or [])

    def _training_identity_overlap(self, names: list[str]) -> tuple[int, int]:
        """(LFW people the checkpoint was trained on, its training identities), by source identity name: a class
        folder ``glint_Tom_Hanks`` is LFW's ``Tom_Hanks`` (older checkpoints hold only the folder names)."""
        from training.data import source_identity

        classes = self._training_identities()
        sources = set(self.ckpt.get("class_sources") or [source_identity(c) for c in classes])
        return len(set(names) & sources), len(classes)

    def _threshold_sources(self) -> tuple[list, list[str]]:
        """(the pair sources of the thresholds, why each offered source that is not one was left out)."""
        from export.thresholds import PairSource

        a = self.args
        sources, unused = [], []
        if self.hold_ids is not None:
            # A model separates the identities it was trained on better than new ones: their impostor scores
            # are too low and would give thresholds that accept too much, so they never set a threshold.
            trained = self._training_identities()
            keep = np.asarray([i not in trained for i in self.hold_ids], dtype=bool)
            kept_ids = [i for i, k in zip(self.hold_ids, keep) if k]
            n_dropped = len(set(self.hold_ids) - set(kept_ids))
            note = (f"{n_dropped} of its identities are among the checkpoint's {len(trained)} training identities "
                    "(by folder name) and were left out" if trained else "the checkpoint lists no training identities")
            how = "never used for calibration" if self.split.by_identity else "split from calibration by file"
            what = f"held-out identities of --calib {Path(a.calib).resolve()} ({how}); {note}"
            if len(set(kept_ids)) >= 2:
                _, labels = np.unique(kept_ids, return_inverse=True)
                idx = np.arange(len(kept_ids))
                sources.append(PairSource("calib-holdout", self.hold_crops[keep], labels, idx, idx, what))
            else:
                unused.append(f"{what}: fewer than 2 identities left, not a threshold source")
                LOG.warning("thresholds: %s", unused[-1])
        if self.lfw is not None and not a.thresholds_from_lfw:
            unused.append("LFW: the accuracy set, never a threshold source (--thresholds-from-lfw overrides)")
        if self.lfw is not None and a.thresholds_from_lfw:
            ds = self.lfw.ds
            names = [n.split("/")[0] for n in ds.image_names]
            overlap, n_train = self._training_identity_overlap(names)
            rng = np.random.default_rng([a.seed, 7])
            n_probe = min(a.threshold_probes, len(ds.crops))
            probes = np.sort(rng.permutation(len(ds.crops))[:n_probe])
            gallery = np.arange(len(ds.crops))
            if a.lfw_pairs_per_fold is not None:  # smoke run: the images of the kept pairs only
                gallery = np.union1d(np.unique(ds.pair_index), probes)
            sources.append(PairSource(
                "lfw", ds.crops, self.lfw.identities, gallery, probes,
                f"LFW View-2 images ({self.lfw.info['root']}, aligned with crres_sdk), {len(set(names))} "
                f"identities, {overlap} of them among the checkpoint's {n_train} training identities (by source "
                "name); LFW then also reports accuracy, so its figures are not held out"))
        return sources, unused

    def step_thresholds(self) -> None:
        from export import lfw_parity
        from export import thresholds as th

        sources, unused = self._threshold_sources()
        if not sources:
            raise ExportError("no identity-labelled pairs for the thresholds (need --calib identity sub-folders "
                              "with >= 2 held-out identities the checkpoint was not trained on, or "
                              "--thresholds-from-lfw)")
        files = {"onnx/fp32": (self.fp32, self.args.eval_backend), **self.shipped}
        results = {}
        for key, (path, backend) in files.items():
            t0 = time.perf_counter()
            caches = {}
            for src in sources:
                if src.name == "lfw":
                    caches["lfw"] = self.lfw_caches[key]
                else:
                    caches[src.name] = lfw_parity.make_cache(path, backend, self.norm, src.crops, self.input_size,
                                                             progress=False)

            def embed(source, index, r, caches=caches):
                return caches[source.name].get(index, r)

            results[key] = th.compute(sources, embed)
            results[key]["backend"] = backend
            LOG.info("thresholds %s (%s, %.1f s): FAR 1e-3 %s; 1:N FAR 1e-5 %s", key, backend,
                     time.perf_counter() - t0,
                     " ".join(f"{r}:{t:.3f}" for r, t in zip(th.RESOLUTIONS, results[key]["far"]["1e-3"])),
                     " ".join(f"{r}:{t:.3f}" for r, t in zip(th.RESOLUTIONS,
                                                              results[key]["identification"]["far"]["1e-5"])))
        if self.lfw is not None:
            for key, (path, backend) in files.items():
                lfw_parity.save_store(self.lfw_caches[key], lfw_parity.store_path(path, backend, self.norm, self.lfw))
        fp32 = results.pop("onnx/fp32")
        source = th.describe_sources(sources, fp32["pairs"], th.RESOLUTIONS)
        source += "".join(f" | not a source: {why}" for why in unused)
        self.thresholds = th.manifest_block(fp32, results, source)
        for key, r in results.items():
            self.thresholds["by_file"][key]["backend"] = r["backend"]
        self.thresholds["backend"] = fp32["backend"]
        self.extra["threshold_measured_far"] = {k: v["measured_far"] for k, v in {"onnx/fp32": fp32, **results}.items()}

    # --- manifest -----------------------------------------------------------------------------------------
    def _calibration_description(self, weights: dict[str, float], method: str) -> dict[str, Any]:
        from export.calibration import BANDS

        return {"source": str(Path(self.args.calib).resolve()), "distinct_crops": len(self.calib_files),
                "size": int(self.args.calib_size), "seed": int(self.args.seed), "method": method,
                "resolution_definition": "crres_sdk.degrade (antialiased bicubic down to r, bicubic up to 112)",
                "bands": {b: {"range": list(r), "weight": weights.get(b, 0.0)} for b, r in BANDS.items()},
                "set": self.calib.describe(), "split": self.split.describe()}

    def _write_failure(self) -> None:
        (self.out / "parity_report.json").write_text(json.dumps(
            {"passed": False, "parity": self.parity, "lfw_fp32": self.lfw_fp32, "cpu": cpu_isa(),
             "timings_s": self.timings},
            indent=2))

    def _lfw_summary(self) -> dict[str, Any]:
        a = self.args
        if self.lfw is None:
            why = "--lfw none" if a.lfw else "no LFW at ../shared/data/lfw"
            return {"status": f"not run ({why})", "tolerance_pp": a.tolerance_pp}
        return {"status": "run", "protocol": "LFW View-2 pairs with the btm-stm sizes (Knoche 6.3): first image "
                                              "112 px, second degraded; 10-fold accuracy per model",
                "tolerance_pp": a.tolerance_pp, "backend": a.eval_backend, "data": self.lfw.info,
                "embeddings_reused_from_disk": self.extra.get("lfw_embeddings_reused"),
                "fp32": self.lfw_fp32, "files": self.lfw_reports,
                "passed": all(r["passed"] for r in self.lfw_reports.values())}

    def _accuracy_gate(self) -> dict[str, Any]:
        """Which set gated which INT8 files' verification accuracy: ``set`` is "lfw", the small face set's name or
        "not run" (with ``reason``), ``files`` the gated file keys; the SDK warns when it opens an INT8 file that is
        not among them (a TensorRT engine built later on the device never is)."""
        from export import small_face_gate

        if not self.spec["quantizes"]:
            return {"set": "not run", "reason": "FP32 target: nothing is quantized", "passed": None}
        if self.lfw is not None:
            return {"set": "lfw", "pairs": int(self.lfw.info["pairs"]), "tolerance_pp": self.args.tolerance_pp,
                    "rule": "10-fold accuracy per btm-stm band at most tolerance_pp below FP32 (details: "
                            "parity.lfw_accuracy)", "files": sorted(self.lfw_reports),
                    "passed": all(r["passed"] for r in self.lfw_reports.values())}
        if self.small_set is not None:
            return {"set": small_face_gate.SET_NAME, "pairs": self.small_set.pairs,
                    "what": small_face_gate.DESCRIPTION, "rule": small_face_gate.RULE,
                    "tolerance_pp": self.args.tolerance_pp, "data": self.small_set.info, "files": self.small_reports,
                    "passed": all(r["passed"] for r in self.small_reports.values())}
        return {"set": "not run", "reason": self.accuracy_not_run, "passed": None}

    def step_manifest(self) -> None:
        import onnx
        import onnxruntime

        a, ck = self.args, self.ckpt
        recipe = ck.get("recipe") or {}
        versions = {"python": platform.python_version(), "onnx": onnx.__version__,
                    "onnxruntime": onnxruntime.__version__}
        for mod in ("torch", "openvino", "nncf"):
            try:
                versions[mod] = __import__(mod).__version__
            except ImportError:
                pass
        classes = ck.get("classes") or []
        manifest = {
            "format": "crres-bundle/1",
            "name": a.name or recipe.get("name") or ck["model_name"],
            "version": a.version or f"ckpt-{self.ckpt_sha[:12]}",
            "task": "face-embedding",
            "input": {"size": [self.input_size, self.input_size], "color": self.norm["color"],
                      "mean": [float(v) for v in self.norm["mean"]], "std": [float(v) for v in self.norm["std"]],
                      "layout": "NCHW", "name": "image"},
            "output": {"name": "embedding", "normalised": False},
            "embedding_dim": int(ck["embedding_dim"]),
            "files": {rt: {role: {"path": p, "sha256": sha256_file(self.out / p),
                                  **self.file_extra.get(f"{rt}/{role}", {})} for role, p in roles.items()}
                      for rt, roles in self.files.items()},
            "thresholds": self.thresholds,
            "recipe": recipe or None,
            "data": {"training": {"identities": len(classes),
                                  "note": "identity names are in the checkpoint; its data folder is not recorded"},
                     "calibration": str(Path(a.calib).resolve()) if self.spec["quantizes"] else None,
                     "thresholds": self.thresholds["source"] if self.thresholds else None,
                     "lfw": self.lfw.info if self.lfw is not None else None},
            "export": {"target": a.target, "steps": list(self.spec["steps"]), "timings_s": self.timings,
                       "onnx": self.extra.get("onnx_check"), "quantization": self.quant,
                       "tensorrt": self.extra.get("tensorrt"), "versions": versions,
                       "evaluation_backend": a.eval_backend,
                       "threshold_measured_far": self.extra.get("threshold_measured_far")},
            "source": {"checkpoint": str(Path(a.checkpoint).resolve()), "checkpoint_sha256": self.ckpt_sha,
                       "model_name": ck["model_name"], "model_kwargs": ck["model_kwargs"],
                       "recipe": recipe.get("name"), "training_data": recipe.get("data")},
            "calibration": self.calib_desc,
            "parity": {"metric": "cosine(INT8 embedding, FP32 embedding) on held-out crops per band",
                       "held_out": self.held.describe() if self.held is not None else None,
                       "note": None if self.spec["quantizes"] else "FP32 target: nothing is quantized",
                       "floor_mean": a.cosine_floor,
                       "floor_p1": a.cosine_p1_floor, "results": self.parity, "cpu": cpu_isa(),
                       "accuracy_gate": self._accuracy_gate(), "lfw_accuracy": self._lfw_summary()},
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        from crres_sdk.bundle import load_bundle

        load_bundle(self.out, task="face-embedding")
        if a.signing_key:  # Ed25519 over the manifest (and so every file's sha256): see export/signing.py
            from export.signing import sign_bundle

            LOG.info("signed: %s", sign_bundle(self.out, a.signing_key))
        LOG.info("bundle written: %s (%s)", self.out / "manifest.json",
                 ", ".join(f"{rt}:{'/'.join(r)}" for rt, r in self.files.items()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("nncf", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        checked = validate(args)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        out = Exporter(args, checked).run()
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bundle": str(out), "target": args.target, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
