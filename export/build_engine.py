"""Checkpoint -> INT8 model bundle, calibrated on mixed-resolution faces, gated by a parity report.

    python export/build_engine.py --target onnx|x86|jetson --checkpoint runs/x/final.pt --calib CROPS --out DIR

Targets and their steps are one table (``export/targets.py``). Arguments are validated up front (exit 2 with a
clear message); every step is timed and logged. The FP32 ONNX is always kept. INT8 embeddings are compared with
FP32 on held-out crops degraded into the low (5-10 px), mid (11-40) and high (41-112) bands; when a band's cosine
mean or 1st percentile is below its floor the exporter tries, in order: the other calibration methods, keeping
the first conv and the embedding layer in FP32, and a calibration set weighted towards low resolution. If none
passes, the build exits 1 with the report (``parity_report.json``) and writes no manifest.
Exit codes: 0 bundle written, 1 build or parity failure, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
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

LOG = logging.getLogger("crres.export")
TARGET_NAMES = ("onnx", "x86", "jetson")
LOW_RES_WEIGHTS = {"low": 0.5, "mid": 0.3, "high": 0.2}


class ExportError(Exception):
    """A build failure with a message meant for the user."""


class ParityError(ExportError):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python export/build_engine.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help=f"one of {', '.join(TARGET_NAMES)}")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (final.pt from training/train.py)")
    p.add_argument("--calib", required=True, help="folder of aligned 112x112 face crops or raw photos (identity sub-folders ok)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--calib-size", type=int, default=512, help="calibration samples (default 512)")
    p.add_argument("--calib-method", default="minmax", help="minmax | entropy | percentile (default minmax)")
    p.add_argument("--calib-bands", default="low=1,mid=1,high=1",
                   help="relative share of calibration samples per band: low 5-10, mid 11-40, high 41-112 px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance-pp", type=float, default=0.5,
                   help="max verification-accuracy drop per band in percentage points (LFW parity: not "
                        "implemented yet, recorded only)")
    p.add_argument("--cosine-floor", type=float, default=0.95, help="min INT8-vs-FP32 cosine mean per band")
    p.add_argument("--cosine-p1-floor", type=float, default=0.85,
                   help="min 1st-percentile INT8-vs-FP32 cosine per band")
    p.add_argument("--no-remedies", action="store_true", help="fail on the first parity miss")
    p.add_argument("--name", help="bundle name (default: the checkpoint's recipe or model name)")
    p.add_argument("--version", help="bundle version (default: ckpt-<sha256 prefix of the checkpoint>)")
    p.add_argument("--trt-version", default="10", help="TensorRT major[.minor] the jetson engine is built for")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
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


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Check every argument before any work; raise ExportError naming the bad one."""
    from export.calibration import list_crops
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
    if not re.fullmatch(r"\d+(\.\d+){0,2}", args.trt_version):
        raise ExportError(f"--trt-version must look like 10 or 10.3, got {args.trt_version!r}")
    bands = _parse_bands(args.calib_bands)
    try:
        files = list_crops(args.calib)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if len(files) < 2:
        raise ExportError(f"--calib {args.calib} has {len(files)} image; need at least 2 (one is held out)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ExportError(f"--out {out} is not empty; pass --overwrite to replace its bundle")
    return {"files": files, "bands": bands}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Exporter:
    def __init__(self, args: argparse.Namespace, checked: dict[str, Any]) -> None:
        from export.targets import TARGETS

        self.args, self.files_in, self.bands = args, checked["files"], checked["bands"]
        self.spec = TARGETS[args.target]
        self.out = Path(args.out)
        self.timings: dict[str, float] = {}
        self.files: dict[str, dict[str, str]] = {}
        self.quant: dict[str, Any] = {}
        self.parity: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}

    # --- driver ------------------------------------------------------------------------------------------
    def run(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in ("manifest.json", "parity_report.json"):
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
        from export.onnx_export import model_from_checkpoint
        from training.train import load_checkpoint

        path = Path(self.args.checkpoint)
        try:
            self.ckpt = load_checkpoint(path)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        self.ckpt_sha = _sha256(path)
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

    def step_calibration_data(self) -> None:
        from export.calibration import (
            build_calibration_set,
            build_parity_set,
            load_faces,
            split_files,
        )

        a = self.args
        calib_files, hold_files = split_files(self.files_in, a.seed)
        try:
            self.calib_crops, self.calib_files = load_faces(calib_files, self.input_size)
            hold_crops, hold_files = load_faces(hold_files, self.input_size)
        except ValueError as exc:
            raise ExportError(f"--calib: {exc}") from None
        self.calib = build_calibration_set(self.calib_crops, self.calib_files, a.calib_size, self.norm, a.seed,
                                           self.bands)
        self.held = build_parity_set(hold_crops, hold_files, self.norm, a.seed)
        LOG.info("calibration set: %s", self.calib.describe())
        LOG.info("held-out parity set: %s", self.held.describe())
        from export.parity import embed

        self.ref = embed(self.fp32, self.held.inputs)

    def _calibration_description(self, weights: dict[str, float], method: str) -> dict[str, Any]:
        from export.calibration import BANDS

        return {"source": str(Path(self.args.calib).resolve()), "distinct_crops": len(self.calib_files),
                "size": int(self.args.calib_size), "seed": int(self.args.seed), "method": method,
                "resolution_definition": "crres_sdk.degrade (antialiased bicubic down to r, bicubic up to 112)",
                "bands": {b: {"range": list(r), "weight": weights.get(b, 0.0)} for b, r in BANDS.items()},
                "set": self.calib.describe()}

    def _attempts(self) -> list[dict[str, Any]]:
        from export.quantize import CALIB_METHODS

        first = self.args.calib_method
        others = [m for m in ("percentile", "entropy", "minmax") if m != first and m in CALIB_METHODS]
        plan = [{"method": first, "exclude": False, "weights": None, "remedy": "none"}]
        if self.args.no_remedies:
            return plan
        plan += [{"method": m, "exclude": False, "weights": None, "remedy": f"{m} calibration"} for m in others]
        plan += [{"method": m, "exclude": True, "weights": None,
                  "remedy": f"{m} calibration, first conv + embedding layer kept FP32"} for m in [first] + others]
        plan += [{"method": first, "exclude": True, "weights": LOW_RES_WEIGHTS,
                  "remedy": f"{first} calibration, FP32 first conv + embedding layer, calibration weighted to "
                            "low resolution"}]
        return plan

    def step_quantize_ort(self, flavour: str, file: str) -> None:
        from export.calibration import build_calibration_set
        from export.parity import band_report, cosine, embed, format_report
        from export.quantize import pre_process, quantize_ort, sensitive_nodes

        a = self.args
        pre = pre_process(self.fp32, self.out / "_preprocessed.onnx")
        exclude_nodes = sensitive_nodes(pre)
        target = self.out / file
        tried = []
        chosen = None
        for k, att in enumerate(self._attempts()):
            calib = self.calib
            if att["weights"] is not None:
                calib = build_calibration_set(self.calib_crops, self.calib_files, a.calib_size, self.norm, a.seed,
                                              att["weights"])
            tmp = self.out / f"_attempt{k}.onnx"
            t0 = time.perf_counter()
            info = quantize_ort(pre, tmp, calib.inputs, att["method"], flavour=flavour,
                                exclude=exclude_nodes if att["exclude"] else None)
            rep = band_report(cosine(self.ref, embed(tmp, self.held.inputs)), self.held.resolutions,
                              a.cosine_floor, a.cosine_p1_floor)
            LOG.info("attempt %d (%s) in %.2f s\n%s", k, att["remedy"], time.perf_counter() - t0,
                     format_report(f"onnxruntime {flavour}", rep))
            tried.append({"remedy": att["remedy"], "calibration_method": att["method"], "report": rep})
            if rep["passed"]:
                chosen = (tmp, info, att, rep)
                break
            tmp.unlink()
        pre.unlink(missing_ok=True)
        key = "onnxruntime" if flavour == "cpu" else "tensorrt_qdq"
        self.parity[key] = {"attempts": tried}
        if chosen is None:
            self._write_failure()
            raise ParityError(f"INT8 parity failed for {key} after {len(tried)} attempt(s); see "
                              f"{self.out / 'parity_report.json'}")
        tmp, info, att, rep = chosen
        tmp.replace(target)
        for f in self.out.glob("_attempt*.onnx"):
            f.unlink()
        self.parity[key].update(remedy_used=att["remedy"], passed=True, bands=rep["bands"])
        self.quant[key] = info
        self.calib_desc = self._calibration_description(att["weights"] or self.bands, att["method"])
        self.qdq = target
        self._add_file("onnx" if flavour == "cpu" else "tensorrt", "int8" if flavour == "cpu" else "qdq", target)
        LOG.info("%s: %s (remedy: %s)", target.name, "parity passed", att["remedy"])

    def step_quantize_openvino(self, file: str) -> None:
        from export.parity import band_report, cosine, embed, format_report
        from export.quantize import quantize_openvino, sensitive_nodes

        a = self.args
        xml = self.out / file
        tried = []
        plans = [("none", None)]
        if not a.no_remedies:
            plans.append(("first conv + embedding layer kept FP32", sensitive_nodes(self.fp32)))
        for remedy, ignored in plans:
            info = quantize_openvino(self.fp32, xml, self.calib.inputs, subset_size=a.calib_size, ignored=ignored)
            rep = band_report(cosine(self.ref, embed(xml, self.held.inputs, backend="openvino")),
                              self.held.resolutions, a.cosine_floor, a.cosine_p1_floor)
            LOG.info("openvino attempt (%s)\n%s", remedy, format_report("openvino nncf", rep))
            tried.append({"remedy": remedy, "report": rep})
            if rep["passed"]:
                break
        self.parity["openvino"] = {"attempts": tried}
        if not tried[-1]["report"]["passed"]:
            self._write_failure()
            raise ParityError(f"INT8 parity failed for openvino; see {self.out / 'parity_report.json'}")
        self.parity["openvino"].update(remedy_used=tried[-1]["remedy"], passed=True,
                                       bands=tried[-1]["report"]["bands"])
        self.quant["openvino"] = info
        self._add_file("openvino", "int8_xml", xml)
        self._add_file("openvino", "int8_bin", xml.with_suffix(".bin"))

    def step_tensorrt_engine(self, script: str, engine: str) -> None:
        import importlib.util

        want = self.args.trt_version
        sh = self.out / script
        sh.write_text(
            "#!/bin/sh\n"
            f"# Build the TensorRT {want}.x INT8 engine ON THE TARGET DEVICE (engines are device- and\n"
            "# TensorRT-version-specific). Explicit quantization: the Q/DQ scales come from the ONNX file.\n"
            "set -eu\ncd \"$(dirname \"$0\")\"\n"
            "TRTEXEC=${TRTEXEC:-trtexec}\n"
            f"WANT={want}\n"
            "HAVE=$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)\n"
            "if [ -n \"$HAVE\" ]; then case \"$HAVE\" in \"$WANT\"|\"$WANT\".*) ;; *)\n"
            "  echo \"error: TensorRT $HAVE on this device, the bundle was made for TensorRT $WANT\" >&2; exit 2;;\n"
            "esac; else echo \"warning: cannot read the TensorRT version (python3 tensorrt); expecting $WANT\" >&2; fi\n"
            f"\"$TRTEXEC\" --onnx={self.qdq.name} --int8 --fp16 --saveEngine={engine} \\\n"
            f"  --minShapes=image:1x3x{self.input_size}x{self.input_size} "
            f"--optShapes=image:8x3x{self.input_size}x{self.input_size} "
            f"--maxShapes=image:32x3x{self.input_size}x{self.input_size}\n")
        sh.chmod(0o755)
        self._add_file("tensorrt", "build_script", sh)
        info: dict[str, Any] = {"engine": engine, "built": False, "required_tensorrt": want,
                                "note": "engines are device-specific: build with build_engine.sh on the Jetson"}
        if importlib.util.find_spec("tensorrt") is not None:
            import tensorrt as trt  # pragma: no cover - not installable on these machines

            if not (trt.__version__ == want or trt.__version__.startswith(want + ".")):
                raise ExportError(f"tensorrt {trt.__version__} is installed but the engine is meant for "
                                  f"TensorRT {want}; install that version or pass --trt-version {trt.__version__}")
            self._build_trt_engine(trt, self.out / engine)  # pragma: no cover
            info.update(built=True, tensorrt=trt.__version__)
            self._add_file("tensorrt", "engine", self.out / engine)
        else:
            LOG.info("tensorrt is not importable here: run %s on the device", sh)
        self.extra["tensorrt"] = info

    def _build_trt_engine(self, trt: Any, path: Path) -> None:  # pragma: no cover - needs TensorRT
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(self.qdq.read_bytes()):
            raise ExportError("TensorRT could not parse the QDQ ONNX: " +
                              "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        s = self.input_size
        profile.set_shape("image", (1, 3, s, s), (8, 3, s, s), (32, 3, s, s))
        config.add_optimization_profile(profile)
        data = builder.build_serialized_network(network, config)
        if data is None:
            raise ExportError("TensorRT engine build failed")
        path.write_bytes(bytes(data))

    def _write_failure(self) -> None:
        (self.out / "parity_report.json").write_text(json.dumps(
            {"passed": False, "parity": self.parity, "timings_s": self.timings}, indent=2))

    def step_manifest(self) -> None:
        import onnx
        import onnxruntime

        a, ck = self.args, self.ckpt
        recipe = ck.get("recipe") or {}
        versions = {"python": platform.python_version(), "onnx": onnx.__version__,
                    "onnxruntime": onnxruntime.__version__}
        try:
            import torch

            versions["torch"] = torch.__version__
            import openvino

            versions["openvino"] = openvino.__version__
            import nncf

            versions["nncf"] = nncf.__version__
        except ImportError:
            pass
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
            "files": {rt: {role: {"path": p, "sha256": _sha256(self.out / p)} for role, p in roles.items()}
                      for rt, roles in self.files.items()},
            "export": {"target": a.target, "steps": list(self.spec["steps"]), "timings_s": self.timings,
                       "onnx": self.extra.get("onnx_check"), "quantization": self.quant,
                       "tensorrt": self.extra.get("tensorrt"), "versions": versions},
            "source": {"checkpoint": str(Path(a.checkpoint).resolve()), "checkpoint_sha256": self.ckpt_sha,
                       "model_name": ck["model_name"], "model_kwargs": ck["model_kwargs"],
                       "recipe": recipe.get("name"), "training_data": recipe.get("data")},
            "calibration": self.calib_desc,
            "parity": {"metric": "cosine(INT8 embedding, FP32 embedding) on held-out crops per band",
                       "held_out": self.held.describe(), "floor_mean": a.cosine_floor,
                       "floor_p1": a.cosine_p1_floor, "results": self.parity,
                       "lfw_accuracy": {"status": "not run (not implemented yet)",
                                        "tolerance_pp": a.tolerance_pp}},
            "thresholds": None,
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        from crres_sdk.bundle import load_bundle

        load_bundle(self.out, task="face-embedding")
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
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bundle": str(out), "target": args.target, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
