"""The TensorRT engine of a jetson bundle: build it, register it in the manifest, check its parity, on the device.

The exporter (``export/build_engine.py --target jetson``) copies this file into the bundle as ``trt_tool.py`` next
to ``build_engine.sh``, ``model.qdq.onnx`` and ``tensorrt_parity.npz``, so the device needs only the bundle, the
``crres`` package, TensorRT (JetPack's) and cuda-python; no checkout and no torch::

    sh build_engine.sh                               # trtexec, then `trt_tool.py register`
    python3 trt_tool.py build BUNDLE                 # TensorRT's Python builder instead of trtexec, then register
    python3 trt_tool.py register BUNDLE --engine model.int8.engine --builder trtexec
    python3 trt_tool.py parity BUNDLE                # engine vs the exporter's FP32 and QDQ embeddings

``register`` writes ``files.tensorrt.engine = {path, sha256, tensorrt, gpu, compute_capability, built_with,
built_on}`` into ``manifest.json`` (the SDK's ``backends.engine_runs_here`` reads ``tensorrt``) and sets
``export.tensorrt.built``; the bundle is checked by the SDK's own loader before and after. A signed bundle must be
re-signed (``--signing-key``, needs the repository's ``export/signing.py``) or its signature dropped
(``--drop-signature``): the manifest changes.

``parity`` runs the engine through the SDK's ``TensorRTSession`` on the held-out faces the exporter stored
(``tensorrt_parity.npz``: model inputs per resolution band, their FP32 embeddings and the QDQ file's embeddings on
ONNX Runtime) and gates per band:

* engine vs FP32: the exporter's INT8 floors (``--cosine-floor`` 0.95 mean, ``--cosine-p1-floor`` 0.85 1st
  percentile by default), the same bar the QDQ file passed on the CPU;
* engine vs QDQ on ONNX Runtime: mean >= 0.98, 1st percentile >= 0.95. Same Q/DQ scales, so only TensorRT's FP16
  for unquantized layers and its kernels' rounding differ; these floors are a proposal not yet measured on a
  device (docs/jetson.md).

It writes ``engine_parity.json`` beside the manifest and exits 1 when a band is below a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ENGINE_FILE = "model.int8.engine"
PARITY_FILE = "tensorrt_parity.npz"
REPORT_FILE = "engine_parity.json"
#: Engine vs the QDQ file on ONNX Runtime, per band (see the module docstring).
QDQ_FLOOR_MEAN, QDQ_FLOOR_P1 = 0.98, 0.95
#: Batch sizes of the engine's optimisation profile: min, opt, max.
PROFILE_BATCHES = (1, 8, 32)
PARITY_PER_BAND = 16


# --- build ------------------------------------------------------------------------------------------------------
def network_flags(trt: Any) -> int:
    """``create_network`` flags: EXPLICIT_BATCH on TensorRT 8.x (its ONNX parser rejects implicit-batch networks),
    none on 10+ (networks are always explicit batch there and the flag is deprecated)."""
    major = int(str(trt.__version__).split(".")[0])
    return 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def build_engine(trt: Any, onnx_path: Path, engine_path: Path, input_name: str, size: int,
                 batches: tuple[int, int, int] = PROFILE_BATCHES) -> Path:
    """Build an INT8 (+FP16) engine from an explicit-quantization QDQ ONNX with TensorRT's Python builder."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        raise RuntimeError("TensorRT could not parse the QDQ ONNX: "
                           + "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *[(b, 3, size, size) for b in batches])
    config.add_optimization_profile(profile)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise RuntimeError("TensorRT engine build failed (see its log above)")
    Path(engine_path).write_bytes(bytes(data))
    return Path(engine_path)


# --- register ---------------------------------------------------------------------------------------------------
def gpu_info(device_index: int = 0) -> dict[str, Any]:
    """Name and compute capability of a CUDA device, from cuda-python."""
    from crres_sdk.backends import cuda_runtime

    cudart = cuda_runtime()
    err, prop = cudart.cudaGetDeviceProperties(device_index)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA cudaGetDeviceProperties({device_index}) failed: {err}")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {"gpu": name.rstrip("\x00").strip(), "compute_capability": f"{prop.major}.{prop.minor}"}


def engine_entry(root: Path, engine: Path, tensorrt_version: str, gpu: dict[str, Any], builder: str) -> dict[str, Any]:
    """The manifest's ``files.tensorrt.engine`` record of a built engine."""
    from crres_sdk.bundle import sha256_file

    return {"path": str(Path(engine).resolve().relative_to(Path(root).resolve())), "sha256": sha256_file(engine),
            "tensorrt": tensorrt_version, **gpu, "built_with": builder, "built_on": platform.node(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def register_engine(root: str | Path, engine: str | Path = ENGINE_FILE, *, builder: str,
                    tensorrt_version: str | None = None, gpu: dict[str, Any] | None = None,
                    signing_key: str | None = None, drop_signature: bool = False) -> dict[str, Any]:
    """Write the engine's entry into ``root/manifest.json`` (atomically) and check the bundle loads with it."""
    from crres_sdk.bundle import SIGNATURE_FILE, load_bundle

    root = Path(root).resolve()
    engine = (root / engine).resolve()
    if not engine.is_file():
        raise FileNotFoundError(f"{engine} does not exist: build the engine first (build_engine.sh)")
    if not engine.is_relative_to(root):
        raise ValueError(f"the engine {engine} must lie inside the bundle {root}")
    signed = (root / SIGNATURE_FILE).is_file()
    if signed and not (signing_key or drop_signature):
        raise ValueError(f"{root} is signed and registering the engine changes manifest.json: pass --signing-key "
                         "KEY to re-sign it (export/signing.py), or --drop-signature (deployments that pin a key "
                         "will then refuse it)")
    manifest = dict(load_bundle(root).manifest)  # the bundle as exported must be intact
    if tensorrt_version is None:
        import tensorrt as trt

        tensorrt_version = str(trt.__version__)
    entry = engine_entry(root, engine, tensorrt_version, gpu if gpu is not None else gpu_info(), builder)
    manifest["files"] = {**manifest["files"], "tensorrt": {**manifest["files"].get("tensorrt", {}), "engine": entry}}
    export_info = dict(manifest.get("export") or {})
    export_info["tensorrt"] = {**(export_info.get("tensorrt") or {}), "built": True}
    manifest["export"] = export_info
    path = root / "manifest.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, path)
    if signed:
        if signing_key:
            from export.signing import sign_bundle

            sign_bundle(root, signing_key)
        else:
            (root / SIGNATURE_FILE).unlink()
    load_bundle(root)  # what the SDK will read, hashes included
    return entry


# --- parity -----------------------------------------------------------------------------------------------------
def write_parity_set(path: Path, inputs: np.ndarray, resolutions: np.ndarray, bands: dict[str, tuple[int, int]],
                     fp32: np.ndarray, qdq: np.ndarray, floor_mean: float, floor_p1: float,
                     per_band: int = PARITY_PER_BAND, seed: int = 0) -> dict[str, Any]:
    """Store up to ``per_band`` held-out inputs per band with their FP32 and QDQ embeddings (exporter side).
    Inputs are kept as float16 when that is exact (the (x - 127.5) / 128 normalisation of uint8 is)."""
    rng = np.random.default_rng(seed)
    keep, labels = [], []
    for name, (lo, hi) in bands.items():
        idx = np.flatnonzero((resolutions >= lo) & (resolutions <= hi))
        idx = np.sort(rng.choice(idx, min(per_band, len(idx)), replace=False)) if len(idx) else idx
        keep.extend(idx.tolist())
        labels.extend([name] * len(idx))
    if not keep:
        raise ValueError("no held-out input falls in any band")
    x = np.ascontiguousarray(inputs[keep], np.float32)
    half = x.astype(np.float16)
    np.savez_compressed(path, inputs=half if np.array_equal(half.astype(np.float32), x) else x,
                        resolutions=np.asarray(resolutions[keep], np.int64), bands=np.asarray(labels),
                        fp32=np.asarray(fp32[keep], np.float32), qdq=np.asarray(qdq[keep], np.float32),
                        floors=np.asarray([floor_mean, floor_p1, QDQ_FLOOR_MEAN, QDQ_FLOOR_P1], np.float64))
    return {"file": Path(path).name, "n": len(keep), "per_band": per_band}


# The cosine parity statistics live here, not in export/parity.py (which uses them): this file is copied into
# bundles as a standalone device tool and cannot import the rest of export/.
def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two embedding batches."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


def cosine_stats(c: np.ndarray, floor_mean: float, floor_p1: float) -> dict[str, Any]:
    """One band's n, cosine mean, 1st percentile, min and whether both floors hold."""
    mean, p1 = float(c.mean()), float(np.percentile(c, 1))
    return {"n": int(c.size), "cosine_mean": round(mean, 5), "cosine_p1": round(p1, 5),
            "cosine_min": round(float(c.min()), 5), "passed": bool(mean >= floor_mean and p1 >= floor_p1)}


def band_gate(cos: np.ndarray, bands: np.ndarray, floor_mean: float, floor_p1: float) -> dict[str, Any]:
    """:func:`cosine_stats` per band label, in order of first appearance."""
    out = {name: cosine_stats(cos[bands == name], floor_mean, floor_p1) for name in dict.fromkeys(bands.tolist())}
    return {"floor_mean": floor_mean, "floor_p1": floor_p1, "bands": out,
            "passed": all(b["passed"] for b in out.values())}


def check_parity(root: str | Path, session: Any = None) -> dict[str, Any]:
    """Run the registered engine on the stored parity set and gate it (see the module docstring)."""
    from crres_sdk.bundle import load_bundle

    bundle = load_bundle(root)
    data = np.load(bundle.file("tensorrt", "parity_set"), allow_pickle=False)
    if session is None:
        from crres_sdk.backends import TensorRTSession

        session = TensorRTSession(bundle.file("tensorrt", "engine"))
    x = data["inputs"].astype(np.float32)
    name = session.input_names[0]
    step = PROFILE_BATCHES[-1]
    emb = np.concatenate([session.run({name: x[i:i + step]})[0] for i in range(0, len(x), step)]).astype(np.float64)
    floor_mean, floor_p1, qdq_mean, qdq_p1 = (float(v) for v in data["floors"])
    bands = data["bands"]
    engine = bundle.manifest["files"]["tensorrt"]["engine"]
    report = {"engine": {k: engine.get(k) for k in ("path", "sha256", "tensorrt", "gpu", "compute_capability")},
              "n": int(len(x)),
              "vs_fp32": band_gate(cosine(emb, data["fp32"]), bands, floor_mean, floor_p1),
              "vs_qdq_onnxruntime": band_gate(cosine(emb, data["qdq"]), bands, qdq_mean, qdq_p1)}
    report["passed"] = report["vs_fp32"]["passed"] and report["vs_qdq_onnxruntime"]["passed"]
    (bundle.root / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    return report


def format_parity(report: dict[str, Any]) -> str:
    lines = [f"engine parity: {'PASS' if report['passed'] else 'FAIL'} ({report['n']} held-out faces; "
             f"TensorRT {report['engine']['tensorrt']} on {report['engine']['gpu']})"]
    for key, label in (("vs_fp32", "vs FP32"), ("vs_qdq_onnxruntime", "vs QDQ on ORT")):
        gate = report[key]
        lines.append(f"  {label} (floors: mean >= {gate['floor_mean']}, p1 >= {gate['floor_p1']})")
        for band, b in gate["bands"].items():
            lines.append(f"    {band:<5} n={b['n']:<4} mean={b['cosine_mean']:.4f} p1={b['cosine_p1']:.4f} "
                         f"min={b['cosine_min']:.4f} {'ok' if b['passed'] else 'BELOW FLOOR'}")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("build", "build the engine with TensorRT's Python builder, then register it"),
                       ("register", "register a built engine in the manifest"),
                       ("parity", "check the registered engine against the stored embeddings")):
        s = sub.add_parser(name, help=text)
        s.add_argument("bundle", help="the bundle folder (manifest.json)")
        if name != "parity":
            s.add_argument("--engine", default=ENGINE_FILE, help=f"engine file inside the bundle ({ENGINE_FILE})")
            s.add_argument("--signing-key", help="re-sign a signed bundle with this Ed25519 private key")
            s.add_argument("--drop-signature", action="store_true", help="remove a signed bundle's manifest.sig")
        if name == "register":
            s.add_argument("--builder", default="trtexec", help="what built it (recorded)")
    a = p.parse_args(argv)
    root = Path(a.bundle)
    try:
        if a.command == "parity":
            report = check_parity(root)
            print(format_parity(report))
            print(f"wrote {root / REPORT_FILE}")
            return 0 if report["passed"] else 1
        if a.command == "build":
            import tensorrt as trt
            from crres_sdk.bundle import load_bundle

            manifest = load_bundle(root).manifest
            build_engine(trt, load_bundle(root).file("tensorrt", "qdq"), root / a.engine,
                         manifest["input"].get("name", "image"), int(manifest["input"]["size"][0]))
        entry = register_engine(root, a.engine, builder=getattr(a, "builder", "tensorrt-python"),
                                signing_key=a.signing_key, drop_signature=a.drop_signature)
        print(f"registered {entry['path']} (sha256 {entry['sha256'][:16]}..., TensorRT {entry['tensorrt']}, "
              f"{entry['gpu']} sm {entry['compute_capability']}) in {root / 'manifest.json'}")
        return 0
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
