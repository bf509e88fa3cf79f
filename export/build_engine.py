"""Checkpoint -> model bundle (FP32 or INT8), calibrated on mixed-resolution faces, gated by a parity report.

    python -m export.build_engine --target fp32|onnx|x86|jetson --checkpoint runs/x/final.pt --calib CROPS \
        --out DIR [--lfw DIR|none]

Targets and their steps are one table (``export/targets.py``); a build runs its target's plan of steps over one
``BuildState`` (``export/state.py``: each field documented with the step that sets it). Arguments are validated up
front (exit 2 with a clear message); every step is timed and logged. The INT8 gate and the remedy loop are
``export/remedies.py``, the manifest ``export/manifest.py``. The FP32 ONNX is always kept. INT8 embeddings are
compared with FP32 on held-out crops degraded into the low (5-10 px), mid (11-40) and high (41-112) bands (cosine
mean and 1st percentile per band) and by verification accuracy: with LFW per btm-stm protocol (low/mid/high/all; at
most ``--tolerance-pp`` below FP32), without it on the small real face set scikit-image ships
(export/small_face_gate.py); ``parity.accuracy_gate.set`` in the manifest names the set or says "not run". When a
check fails the exporter tries, in order: the other calibration methods, the first conv and the embedding layer
kept in FP32, sensitivity-ranked mixed precision (the k layers with the most quantization noise also kept FP32,
export/sensitivity.py) and a calibration set weighted towards low resolution. If none passes, the build exits 1
with the report (``parity_report.json``) and writes no manifest.
Per-resolution thresholds at FAR 1e-2 ... 1e-6 (1:1 pairs, and 1:N pairs against resolution-matched gallery
templates, with the fitted impostor tail the SDK's fpir policy extrapolates) are measured for the FP32 model and
every INT8 file (export/thresholds.py). Exit codes: 0 bundle written, 1 build or parity failure, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from crres_sdk.bundle import sha256_file

from export.manifest import cpu_isa  # noqa: F401  (importable from here, as before)
from export.manifest import write_manifest
from export.remedies import ParityError  # noqa: F401  (raised by the remedy search; importable from here)
from export.remedies import ExportError, OpenVinoQuantiser, OrtQuantiser, lfw_cache, search
from export.state import BuildState
from export.targets import TARGETS, missing_requirements

REPO = Path(__file__).resolve().parents[1]
LOG = logging.getLogger("crres.export")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.build_engine", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help=f"one of {', '.join(TARGETS)}")
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


def validate(args: argparse.Namespace) -> BuildState:
    """Check every argument before any work (raise ExportError naming the bad one); the build's initial state."""
    from export.calibration import identity_labels, list_crops
    from export.quantize import CALIB_METHODS

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
    return BuildState(out=out, target=TARGETS[args.target], inputs=files, bands=bands, lfw_root=lfw)


def check_tensorrt_version(have: str, want: str) -> None:
    """Refuse a TensorRT whose version does not start with ``want`` (engines are version-specific)."""
    if not (have == want or have.startswith(want + ".")):
        raise ExportError(f"tensorrt {have} is installed but the engine is meant for TensorRT {want}; build on a "
                          f"device with TensorRT {want} (build_engine.sh) or pass --trt-version "
                          f"{'.'.join(have.split('.')[:2])}")


# --- the steps: each reads the state's earlier fields and sets its own (export/state.py) -------------------
def step_load_checkpoint(args: argparse.Namespace, st: BuildState) -> None:
    from training.checkpoint import checkpoint_normalization, load_checkpoint, model_from_checkpoint

    path = Path(args.checkpoint)
    try:
        st.ckpt = load_checkpoint(path)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    st.ckpt_sha = sha256_file(path)
    st.model = model_from_checkpoint(st.ckpt)
    st.input_size = int(st.ckpt.get("input_size", st.model.input_size))
    st.norm = checkpoint_normalization(st.ckpt)
    LOG.info("checkpoint %s: %s %s, input %d, embedding %d", path, st.ckpt["model_name"],
             st.ckpt["model_kwargs"], st.input_size, st.ckpt["embedding_dim"])


def step_export_onnx(args: argparse.Namespace, st: BuildState) -> None:
    from export.onnx_export import check_onnx, export_fp32

    st.fp32 = st.out / "model.fp32.onnx"
    export_fp32(st.model, st.input_size, st.fp32)
    s = st.input_size
    sample = np.random.default_rng(0).uniform(-1.0, 1.0, (8, 3, s, s)).astype(np.float32)
    st.onnx_check = check_onnx(st.model, st.fp32, sample)
    LOG.info("FP32 ONNX %s: %s", st.fp32.name, st.onnx_check)
    st.add_file("onnx", "fp32", st.fp32)


def step_face_data(args: argparse.Namespace, st: BuildState) -> None:
    from export.calibration import build_calibration_set, build_parity_set, load_faces, split_for_export
    from export.parity import embed

    a = args
    st.split = split_for_export(st.inputs, a.calib, a.seed, calib_max=a.calib_size, holdout_max=a.holdout_max)
    LOG.info("--calib split: %s", st.split.describe())
    try:
        hold_crops, hold_files = load_faces(st.split.holdout, st.input_size)
        if st.quantizes:
            st.calib_crops, st.calib_files = load_faces(st.split.calib, st.input_size)
    except ValueError as exc:
        raise ExportError(f"--calib: {exc}") from None
    ids = st.split.holdout_identities
    if ids is not None:  # photos without a face were skipped: keep labels aligned with the crops
        label_of = dict(zip(st.split.holdout, ids))
        ids = [label_of[f] for f in hold_files]
    st.hold_crops, st.hold_ids = hold_crops, ids
    if st.quantizes:
        st.calib = build_calibration_set(st.calib_crops, st.calib_files, a.calib_size, st.norm, a.seed, st.bands)
        LOG.info("calibration set: %s", st.calib.describe())
        st.held = build_parity_set(hold_crops, hold_files, st.norm, a.seed)
        LOG.info("held-out parity set: %s", st.held.describe())
        st.ref = embed(st.fp32, st.held.inputs, backend=a.eval_backend)


def step_accuracy_reference(args: argparse.Namespace, st: BuildState) -> None:
    """The FP32 side of the INT8 accuracy gate: LFW's aligned crops (cached) and the FP32 model's btm-stm
    accuracy, or without LFW the FP32 scores on the small real face set (export/small_face_gate.py)."""
    from export import lfw_parity

    if st.lfw_root is None:
        LOG.info("LFW accuracy parity skipped (%s)", "--lfw none" if args.lfw else "no LFW at ../shared/data/lfw")
        if st.quantizes:
            _small_set_reference(args, st)
        return
    try:
        st.lfw = lfw_parity.load(st.lfw_root, pairs_per_fold=args.lfw_pairs_per_fold, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(f"--lfw: {exc}") from None
    cache = lfw_cache(args, st, st.fp32, args.eval_backend, "onnx/fp32")
    st.lfw_caches["onnx/fp32"] = cache
    st.lfw_fp32 = lfw_parity.accuracy(cache, st.lfw)
    LOG.info("LFW btm-stm FP32 accuracy: %s", ", ".join(f"{b} {v['accuracy_pct']:.2f}% ({v['seconds']:.0f} s)"
                                                       for b, v in st.lfw_fp32.items()))


def _small_set_reference(args: argparse.Namespace, st: BuildState) -> None:
    """Without LFW the INT8 files are gated on the small real face set (export/small_face_gate.py)."""
    from export import small_face_gate
    from export.lfw_parity import make_cache

    why = small_face_gate.available()
    if why is not None:
        st.accuracy_not_run = f"no LFW and {why}"
        LOG.warning("no INT8 accuracy gate (%s): INT8 files are gated by cosine floors only, and the manifest "
                    "says so", st.accuracy_not_run)
        return
    st.small_set = small_face_gate.build(args.seed)
    st.small_fp32 = small_face_gate.scores(make_cache(st.fp32, args.eval_backend, st.norm, st.small_set.crops,
                                                      st.input_size, progress=False), st.small_set)
    LOG.info("INT8 accuracy gate on %s (%d pairs; no LFW)", small_face_gate.SET_NAME, st.small_set.pairs)


def step_quantize_ort(args: argparse.Namespace, st: BuildState, flavour: str, file: str) -> None:
    search(args, st, OrtQuantiser(args, st, flavour, file))


def step_quantize_openvino(args: argparse.Namespace, st: BuildState, file: str) -> None:
    search(args, st, OpenVinoQuantiser(args, st, file))


def step_tensorrt_engine(args: argparse.Namespace, st: BuildState, script: str, engine: str) -> None:
    """build_engine.sh (from the export/build_engine.sh template), the device tool (export/tensorrt_engine.py
    as trt_tool.py) and the engine's parity set; the engine itself when TensorRT imports here."""
    import shutil

    from export import tensorrt_engine as te
    from export.calibration import BANDS
    from export.parity import embed

    a, s = args, st.input_size
    want = a.trt_version
    shapes = {f"@{k}_SHAPE@": f"{b}x3x{s}x{s}" for k, b in zip(("MIN", "OPT", "MAX"), te.PROFILE_BATCHES)}
    text = (REPO / "export" / "build_engine.sh").read_text()
    for key, value in {"@TRT_VERSION@": want, "@QDQ@": st.qdq.name, "@ENGINE@": engine, "@INPUT@": "image",
                       **shapes}.items():
        text = text.replace(key, value)
    sh = st.out / script
    sh.write_text(text)
    sh.chmod(0o755)
    st.add_file("tensorrt", "build_script", sh)
    tool = st.out / "trt_tool.py"
    shutil.copyfile(REPO / "export" / "tensorrt_engine.py", tool)
    st.add_file("tensorrt", "tool", tool)
    parity_set = st.out / te.PARITY_FILE
    parity_info = te.write_parity_set(parity_set, st.held.inputs, st.held.resolutions, BANDS, st.ref,
                                      embed(st.qdq, st.held.inputs, backend=a.eval_backend),
                                      a.cosine_floor, a.cosine_p1_floor, seed=a.seed)
    st.add_file("tensorrt", "parity_set", parity_set)
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
        path = te.build_engine(trt, st.qdq, st.out / engine, "image", s)
        entry = te.engine_entry(st.out, path, have, te.gpu_info(), "tensorrt-python")
        st.add_file("tensorrt", "engine", path)
        st.file_extra["tensorrt/engine"] = {k: v for k, v in entry.items() if k not in ("path", "sha256")}
        info.update(built=True)
    else:
        LOG.info("tensorrt is not importable here: run %s on the device", sh)
    st.tensorrt = info


def _training_identities(st: BuildState) -> set[str]:
    return set(st.ckpt.get("classes") or [])

def _training_identity_overlap(st: BuildState, names: list[str]) -> tuple[int, int]:
    """(LFW people the checkpoint was trained on, its training identities), by source identity name: a class
    folder ``glint_Tom_Hanks`` is LFW's ``Tom_Hanks`` (older checkpoints hold only the folder names)."""
    from training.data import source_identity

    classes = _training_identities(st)
    sources = set(st.ckpt.get("class_sources") or [source_identity(c) for c in classes])
    return len(set(names) & sources), len(classes)

def _threshold_sources(args: argparse.Namespace, st: BuildState) -> tuple[list, list[str]]:
    """(the pair sources of the thresholds, why each offered source that is not one was left out)."""
    from export.thresholds import PairSource

    a = args
    sources, unused = [], []
    if st.hold_ids is not None:
        # A model separates the identities it was trained on better than new ones: their impostor scores
        # are too low and would give thresholds that accept too much, so they never set a threshold.
        trained = _training_identities(st)
        keep = np.asarray([i not in trained for i in st.hold_ids], dtype=bool)
        kept_ids = [i for i, k in zip(st.hold_ids, keep) if k]
        n_dropped = len(set(st.hold_ids) - set(kept_ids))
        note = (f"{n_dropped} of its identities are among the checkpoint's {len(trained)} training identities "
                "(by folder name) and were left out" if trained else "the checkpoint lists no training identities")
        how = "never used for calibration" if st.split.by_identity else "split from calibration by file"
        what = f"held-out identities of --calib {Path(a.calib).resolve()} ({how}); {note}"
        if len(set(kept_ids)) >= 2:
            _, labels = np.unique(kept_ids, return_inverse=True)
            idx = np.arange(len(kept_ids))
            sources.append(PairSource("calib-holdout", st.hold_crops[keep], labels, idx, idx, what))
        else:
            unused.append(f"{what}: fewer than 2 identities left, not a threshold source")
            LOG.warning("thresholds: %s", unused[-1])
    if st.lfw is not None and not a.thresholds_from_lfw:
        unused.append("LFW: the accuracy set, never a threshold source (--thresholds-from-lfw overrides)")
    if st.lfw is not None and a.thresholds_from_lfw:
        ds = st.lfw.ds
        names = [n.split("/")[0] for n in ds.image_names]
        overlap, n_train = _training_identity_overlap(st, names)
        rng = np.random.default_rng([a.seed, 7])
        n_probe = min(a.threshold_probes, len(ds.crops))
        probes = np.sort(rng.permutation(len(ds.crops))[:n_probe])
        gallery = np.arange(len(ds.crops))
        if a.lfw_pairs_per_fold is not None:  # smoke run: the images of the kept pairs only
            gallery = np.union1d(np.unique(ds.pair_index), probes)
        sources.append(PairSource(
            "lfw", ds.crops, st.lfw.identities, gallery, probes,
            f"LFW View-2 images ({st.lfw.info['root']}, aligned with crres_sdk), {len(set(names))} "
            f"identities, {overlap} of them among the checkpoint's {n_train} training identities (by source "
            "name); LFW then also reports accuracy, so its figures are not held out"))
    return sources, unused

def step_thresholds(args: argparse.Namespace, st: BuildState) -> None:
    from export import lfw_parity
    from export import thresholds as th

    sources, unused = _threshold_sources(args, st)
    if not sources:
        raise ExportError("no identity-labelled pairs for the thresholds (need --calib identity sub-folders "
                          "with >= 2 held-out identities the checkpoint was not trained on, or "
                          "--thresholds-from-lfw)")
    files = {"onnx/fp32": (st.fp32, args.eval_backend), **st.shipped}
    results = {}
    for key, (path, backend) in files.items():
        t0 = time.perf_counter()
        caches = {}
        for src in sources:
            if src.name == "lfw":
                caches["lfw"] = st.lfw_caches[key]
            else:
                caches[src.name] = lfw_parity.make_cache(path, backend, st.norm, src.crops, st.input_size,
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
    if st.lfw is not None:
        for key, (path, backend) in files.items():
            lfw_parity.save_store(st.lfw_caches[key], lfw_parity.store_path(path, backend, st.norm, st.lfw))
    fp32 = results.pop("onnx/fp32")
    source = th.describe_sources(sources, fp32["pairs"], th.RESOLUTIONS)
    source += "".join(f" | not a source: {why}" for why in unused)
    st.thresholds = th.manifest_block(fp32, results, source)
    for key, r in results.items():
        st.thresholds["by_file"][key]["backend"] = r["backend"]
    st.thresholds["backend"] = fp32["backend"]
    st.threshold_measured_far = {k: v["measured_far"] for k, v in {"onnx/fp32": fp32, **results}.items()}


def step_manifest(args: argparse.Namespace, st: BuildState) -> None:
    write_manifest(args, st)
    LOG.info("bundle written: %s (%s)", st.out / "manifest.json",
             ", ".join(f"{rt}:{'/'.join(r)}" for rt, r in st.files.items()))


#: Every step a target's plan may name (export/targets.py), in no particular order.
STEPS: dict[str, Callable[..., None]] = {
    "load_checkpoint": step_load_checkpoint,
    "export_onnx": step_export_onnx,
    "face_data": step_face_data,
    "accuracy_reference": step_accuracy_reference,
    "quantize_ort": step_quantize_ort,
    "quantize_openvino": step_quantize_openvino,
    "tensorrt_engine": step_tensorrt_engine,
    "thresholds": step_thresholds,
    "manifest": step_manifest,
}


def plan(target: str) -> list[tuple[str, Callable[..., None], dict[str, Any]]]:
    """The target's steps in order, each with its arguments from the targets table."""
    spec = TARGETS[target]
    return [(name, STEPS[name], spec["args"].get(name, {})) for name in spec["steps"]]


def run(args: argparse.Namespace, st: BuildState) -> Path:
    """Run the target's plan over ``st``, each step timed and logged; returns the bundle folder."""
    st.out.mkdir(parents=True, exist_ok=True)
    for stale in ("manifest.json", "parity_report.json", "manifest.sig"):
        # a failed rebuild must not leave an old, valid-looking bundle (nor a success an old failure report)
        (st.out / stale).unlink(missing_ok=True)
    LOG.info("target %s: %s", args.target, st.target["description"])
    LOG.info("steps: %s", " -> ".join(st.target["steps"]))
    for name, step, kwargs in plan(args.target):
        t0 = time.perf_counter()
        LOG.info("[%s] start", name)
        step(args, st, **kwargs)
        st.timings[name] = round(time.perf_counter() - t0, 3)
        LOG.info("[%s] done in %.2f s", name, st.timings[name])
    return st.out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("nncf", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        state = validate(args)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        out = run(args, state)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bundle": str(out), "target": args.target, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
