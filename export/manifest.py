"""The bundle's one metadata record: ``manifest.json`` (``crres-bundle/1``, ``face-embedding``) written here from
the build state, and read back here with the SDK's own reader (``crres_sdk.bundle.load_bundle``) before the build
counts as done; a failed build writes ``parity_report.json`` instead, also here."""

from __future__ import annotations

import argparse
import json
import logging
import platform
from pathlib import Path
from typing import Any

from crres_sdk.bundle import sha256_file

from export.state import BuildState

LOG = logging.getLogger("crres.export")

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


def calibration_description(args: argparse.Namespace, st: BuildState, weights: dict[str, float],
                            method: str) -> dict[str, Any]:
    from export.calibration import BANDS

    return {"source": str(Path(args.calib).resolve()), "distinct_crops": len(st.calib_files),
            "size": int(args.calib_size), "seed": int(args.seed), "method": method,
            "resolution_definition": "crres_sdk.degrade (antialiased bicubic down to r, bicubic up to 112)",
            "bands": {b: {"range": list(r), "weight": weights.get(b, 0.0)} for b, r in BANDS.items()},
            "set": st.calib.describe(), "split": st.split.describe()}


def write_failure(st: BuildState) -> None:
    """``parity_report.json``: every attempt of a build whose INT8 parity failed (no manifest is written)."""
    (st.out / "parity_report.json").write_text(json.dumps(
        {"passed": False, "parity": st.parity, "lfw_fp32": st.lfw_fp32, "cpu": cpu_isa(), "timings_s": st.timings},
        indent=2))


def lfw_summary(args: argparse.Namespace, st: BuildState) -> dict[str, Any]:
    if st.lfw is None:
        why = "--lfw none" if args.lfw else "no LFW at ../shared/data/lfw"
        return {"status": f"not run ({why})", "tolerance_pp": args.tolerance_pp}
    return {"status": "run", "protocol": "LFW View-2 pairs with the btm-stm sizes (Knoche 6.3): first image "
                                          "112 px, second degraded; 10-fold accuracy per model",
            "tolerance_pp": args.tolerance_pp, "backend": args.eval_backend, "data": st.lfw.info,
            "embeddings_reused_from_disk": st.lfw_embeddings_reused or None,
            "fp32": st.lfw_fp32, "files": st.lfw_reports,
            "passed": all(r["passed"] for r in st.lfw_reports.values())}


def accuracy_gate(args: argparse.Namespace, st: BuildState) -> dict[str, Any]:
    """Which set gated which INT8 files' verification accuracy: ``set`` is "lfw", the small face set's name or
    "not run" (with ``reason``), ``files`` the gated file keys; the SDK warns when it opens an INT8 file that is
    not among them (a TensorRT engine built later on the device never is)."""
    from export import small_face_gate

    if not st.quantizes:
        return {"set": "not run", "reason": "FP32 target: nothing is quantized", "passed": None}
    if st.lfw is not None:
        return {"set": "lfw", "pairs": int(st.lfw.info["pairs"]), "tolerance_pp": args.tolerance_pp,
                "rule": "10-fold accuracy per btm-stm band at most tolerance_pp below FP32 (details: "
                        "parity.lfw_accuracy)", "files": sorted(st.lfw_reports),
                "passed": all(r["passed"] for r in st.lfw_reports.values())}
    if st.small_set is not None:
        return {"set": small_face_gate.SET_NAME, "pairs": st.small_set.pairs,
                "what": small_face_gate.DESCRIPTION, "rule": small_face_gate.RULE,
                "tolerance_pp": args.tolerance_pp, "data": st.small_set.info, "files": st.small_reports,
                "passed": all(r["passed"] for r in st.small_reports.values())}
    return {"set": "not run", "reason": st.accuracy_not_run, "passed": None}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {"python": platform.python_version(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    for mod in ("torch", "openvino", "nncf"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return versions


def build_manifest(args: argparse.Namespace, st: BuildState) -> dict[str, Any]:
    a, ck = args, st.ckpt
    recipe = ck.get("recipe") or {}
    classes = ck.get("classes") or []
    return {
        "format": "crres-bundle/1",
        "name": a.name or recipe.get("name") or ck["model_name"],
        "version": a.version or f"ckpt-{st.ckpt_sha[:12]}",
        "task": "face-embedding",
        "input": {"size": [st.input_size, st.input_size], "color": st.norm["color"],
                  "mean": [float(v) for v in st.norm["mean"]], "std": [float(v) for v in st.norm["std"]],
                  "layout": "NCHW", "name": "image"},
        "output": {"name": "embedding", "normalised": False},
        "embedding_dim": int(ck["embedding_dim"]),
        "files": {rt: {role: {"path": p, "sha256": sha256_file(st.out / p),
                              **st.file_extra.get(f"{rt}/{role}", {})} for role, p in roles.items()}
                  for rt, roles in st.files.items()},
        "thresholds": st.thresholds,
        "recipe": recipe or None,
        "data": {"training": {"identities": len(classes),
                              "note": "identity names are in the checkpoint; its data folder is not recorded"},
                 "calibration": str(Path(a.calib).resolve()) if st.quantizes else None,
                 "thresholds": st.thresholds["source"] if st.thresholds else None,
                 "lfw": st.lfw.info if st.lfw is not None else None},
        "export": {"target": a.target, "steps": list(st.target["steps"]), "timings_s": st.timings,
                   "onnx": st.onnx_check, "quantization": st.quant,
                   "tensorrt": st.tensorrt, "versions": _versions(),
                   "evaluation_backend": a.eval_backend,
                   "threshold_measured_far": st.threshold_measured_far},
        "source": {"checkpoint": str(Path(a.checkpoint).resolve()), "checkpoint_sha256": st.ckpt_sha,
                   "model_name": ck["model_name"], "model_kwargs": ck["model_kwargs"],
                   "recipe": recipe.get("name"), "training_data": recipe.get("data")},
        "calibration": st.calib_desc,
        "parity": {"metric": "cosine(INT8 embedding, FP32 embedding) on held-out crops per band",
                   "held_out": st.held.describe() if st.held is not None else None,
                   "note": None if st.quantizes else "FP32 target: nothing is quantized",
                   "floor_mean": a.cosine_floor,
                   "floor_p1": a.cosine_p1_floor, "results": st.parity, "cpu": cpu_isa(),
                   "accuracy_gate": accuracy_gate(args, st), "lfw_accuracy": lfw_summary(args, st)},
    }


def write_manifest(args: argparse.Namespace, st: BuildState) -> Path:
    """Write ``manifest.json``, read it back with the SDK's reader (a bundle the SDK refuses is a failed build)
    and sign it when ``--signing-key`` is given."""
    from crres_sdk.bundle import load_bundle

    path = st.out / "manifest.json"
    path.write_text(json.dumps(build_manifest(args, st), indent=2))
    load_bundle(st.out, task="face-embedding")
    if args.signing_key:  # Ed25519 over the manifest (and so every file's sha256): see export/signing.py
        from export.signing import sign_bundle

        LOG.info("signed: %s", sign_bundle(st.out, args.signing_key))
    return path
