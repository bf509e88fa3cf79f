"""Embedding latency per face: torch FP32 against ONNX Runtime and OpenVINO, FP32 and INT8.

For each model (default MobileFaceNet and IResNet-50, 512-d, 112x112), batch size (1, 8) and thread count
(1, 2), measured in the same run:
  torch_fp32      the torch module, eval mode, torch.inference_mode, torch.set_num_threads(threads)
  ort_fp32        (baseline) ONNX Runtime CPU, the FP32 ONNX the exporter writes (opset 17, dynamic batch)
  ort_int8        ONNX Runtime CPU, the exporter's static INT8 QDQ file (per-channel int8 weights, uint8 act.)
  openvino_fp32   OpenVINO CPU on the FP32 ONNX, INFERENCE_PRECISION_HINT f32 (its default here is bf16)
  openvino_int8   OpenVINO CPU on the exporter's NNCF INT8 IR, NNCF's default `performance` preset (symmetric
                  activations; f32 hint for what stays float)
  openvino_int8_mixed  the same with NNCF's `mixed` preset (asymmetric activations), the exporter's first
                  OpenVINO remedy for PReLU networks
  openvino_qdq    OpenVINO CPU on the ONNX Runtime QDQ file (what the SDK runs for onnx/int8 with OpenVINO)
The networks have RANDOM-INIT weights (seeded): speed does not depend on the values, accuracy does not enter
here (parity is the exporter's report). The INT8 files are built by export/quantize.py from 64 random inputs.
Times are per face (median call time / batch).

``--bundles A B ...`` times the files shipped in model bundles instead (real weights, no torch needed): every
ONNX/IR file each manifest lists, on ONNX Runtime and on OpenVINO (the IR on OpenVINO only), batch and thread as
given; the baseline is the first bundle's FP32 ONNX on ONNX Runtime (e.g. the from-scratch MobileFaceNet against
the default).

    python -m benchmarks.bench_embed --json bench-results/embed.json
    python -m benchmarks.bench_embed --bundles models/crres_mobilefacenet_scratch models/crres_default \
        --batches 1 --threads 1 --json bench-results/embed-bundles.json
    python -m benchmarks.bench_embed --quick --json /tmp/e.json      # smoke run (test suite)
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.common import Record, fill_speedups, machine, report, time_call

LOG = logging.getLogger("crres.bench")
IMPLS = ("torch_fp32", "ort_fp32", "ort_int8", "openvino_fp32", "openvino_int8", "openvino_int8_mixed",
         "openvino_qdq")
BASELINE = "ort_fp32"


def cpu_info() -> dict:
    """CPU model and the instruction sets INT8 speed depends on (VNNI: int8 dot products in one instruction)."""
    info = {"cpu": "unknown", "isa": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["cpu"] == "unknown":
            info["cpu"] = value.strip()
        if key.strip() == "flags":
            flags = set(value.split())
            info["isa"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
                           if f in flags]
            break
    return info


def build_files(model_name: str, workdir: Path, calib_n: int) -> dict:
    """Random-init model, FP32 ONNX, ORT INT8 QDQ and (when installed) the NNCF INT8 IR."""
    import torch

    from export.onnx_export import export_fp32
    from export.quantize import pre_process, quantize_openvino, quantize_ort
    from training.models import get_model

    torch.manual_seed(0)
    model = get_model(model_name).eval()
    size = int(model.input_size)
    fp32 = workdir / f"{model_name}.fp32.onnx"
    export_fp32(model, size, fp32)
    calib = np.random.default_rng(0).uniform(-1, 1, (calib_n, 3, size, size)).astype(np.float32)
    pre = pre_process(fp32, workdir / f"{model_name}.pre.onnx")
    int8 = workdir / f"{model_name}.int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_ort(pre, int8, calib, "minmax")
    files = {"model": model, "size": size, "fp32": fp32, "int8": int8, "xml": None, "xml_mixed": None}
    if importlib.util.find_spec("openvino") and importlib.util.find_spec("nncf"):
        for key, preset in (("xml", "performance"), ("xml_mixed", "mixed")):
            files[key] = workdir / f"{model_name}.int8.{preset}.xml"
            quantize_openvino(fp32, files[key], calib, subset_size=calib_n, preset=preset)
    return files


def runners(files: dict, threads: int) -> dict:
    import torch
    from crres_sdk.backends import open_model

    torch.set_num_threads(threads)
    model = files["model"]

    def torch_run(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    def session(path: Path, backend: str):
        s = open_model(path, backend, threads=threads)
        name = s.input_names[0]
        return lambda x: s.run({name: x})

    out = {"torch_fp32": torch_run, "ort_fp32": session(files["fp32"], "onnxruntime"),
           "ort_int8": session(files["int8"], "onnxruntime")}
    if importlib.util.find_spec("openvino"):
        out["openvino_fp32"] = session(files["fp32"], "openvino")
        out["openvino_qdq"] = session(files["int8"], "openvino")
        if files["xml"] is not None:
            out["openvino_int8"] = session(files["xml"], "openvino")
            out["openvino_int8_mixed"] = session(files["xml_mixed"], "openvino")
    return out


def bench(models: list[str], batches: list[int], threads_list: list[int], repeats: int, warmup: int,
          calib_n: int) -> list[Record]:
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="crres-bench-embed-") as tmp:
        for name in models:
            files = build_files(name, Path(tmp), calib_n)
            rng = np.random.default_rng(1)
            for threads in threads_list:
                run = runners(files, threads)
                for batch in batches:
                    x = rng.uniform(-1, 1, (batch, 3, files["size"], files["size"])).astype(np.float32)
                    for impl in IMPLS:
                        if impl not in run:
                            continue
                        fn = run[impl]
                        med, p90 = time_call(lambda: fn(x), repeats, warmup=warmup)
                        records.append(Record(
                            "embed", f"{name}_b{batch}", impl, threads, med, p90,
                            baseline=None if impl == BASELINE else BASELINE,
                            extra={"items": batch, "model": name, "batch": batch,
                                   "weights": "random init (speed only)",
                                   "unit": "per call; per face = median_s / items"}))
                        LOG.info("%s b%d t%d %s: %.2f ms/face", name, batch, threads, impl,
                                     med / batch * 1e3)
    return records


def bundle_files(folder: Path) -> tuple[str, list[tuple[str, Path, str]]]:
    """(bundle label, [(impl name, file, backend)] for every ONNX/IR model file its manifest lists); the label is
    the folder's name (two exports of one model share their manifest name)."""
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    out = []
    for runtime, roles in manifest["files"].items():
        for role, entry in roles.items():
            path = folder / entry["path"]
            if path.suffix not in (".onnx", ".xml"):
                continue
            backends = ["openvino"] if path.suffix == ".xml" else ["onnxruntime", "openvino"]
            for backend in backends:
                if importlib.util.find_spec(backend):
                    out.append((f"{folder.name}:{runtime}/{role}@{backend}", path, backend))
    return folder.name, out


def bench_bundles(folders: list[Path], batches: list[int], threads_list: list[int], repeats: int,
                  warmup: int) -> list[Record]:
    from crres_sdk.backends import open_model

    listed = [bundle_files(folder) for folder in folders]
    if len({label for label, _ in listed}) < len(listed):
        raise SystemExit("--bundles: two bundle folders share a name")
    files = [f for _, fs in listed for f in fs]
    if not files:
        raise SystemExit("no model files in the bundles' manifests")
    baseline = f"{listed[0][0]}:onnx/fp32@onnxruntime"
    if baseline not in {name for name, _, _ in files}:
        baseline = files[0][0]
    records: list[Record] = []
    rng = np.random.default_rng(1)
    for threads in threads_list:
        sessions = {name: open_model(path, backend, threads=threads) for name, path, backend in files}
        for batch in batches:
            x = rng.uniform(-1, 1, (batch, 3, 112, 112)).astype(np.float32)
            for name, session in sessions.items():
                feed = {session.input_names[0]: x}
                med, p90 = time_call(lambda: session.run(feed), repeats, warmup=warmup)
                records.append(Record("embed", f"bundles_b{batch}", name, threads, med, p90,
                                      baseline=None if name == baseline else baseline,
                                      extra={"items": batch, "batch": batch, "weights": "shipped bundle",
                                             "unit": "per call; per face = median_s / items"}))
                LOG.info("b%d t%d %s: %.2f ms/face", batch, threads, name, med / batch * 1e3)
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records to this JSON file")
    parser.add_argument("--bundles", nargs="+", type=Path,
                        help="time these model bundles' shipped files instead (baseline: the first one's FP32 ONNX "
                             "on ONNX Runtime)")
    parser.add_argument("--models", nargs="+", default=["mobilefacenet", "iresnet50"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per implementation and case")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny_test_net, batch 1 and 2, 1 thread, 5 repeats")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)  # ORT's quantizer warns
    LOG.setLevel(logging.INFO)                                                            # on the root logger
    logging.getLogger("nncf").setLevel(logging.ERROR)
    if args.quick:
        args.models, args.batches, args.threads, args.repeats = ["tiny_test_net"], [1, 2], [1], 5
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 for a meaningful median")
    if any(b < 1 for b in args.batches) or any(t < 1 for t in args.threads):
        parser.error("--batches and --threads must be >= 1")
    if args.bundles:
        missing = [str(b) for b in args.bundles if not (b / "manifest.json").is_file()]
        if missing:
            parser.error(f"not a model bundle (no manifest.json): {', '.join(missing)}")
        records = bench_bundles(args.bundles, args.batches, args.threads, args.repeats, warmup=3)
    else:
        from training.models import list_models

        unknown = sorted(set(args.models) - set(list_models()))
        if unknown:
            parser.error(f"unknown model(s) {unknown}; available: {', '.join(list_models())}")
        records = bench(args.models, args.batches, args.threads, args.repeats, warmup=2 if args.quick else 3,
                        calib_n=16 if args.quick else 64)
    fill_speedups(records)
    host = {**machine(), **cpu_info()}
    LOG.info("CPU: %s, %s", host["cpu"], " ".join(host["isa"]) or "no AVX2")
    for r in records:
        r.extra.update(host)
    report(records, args.json, unit="ms", per="/face")


if __name__ == "__main__":
    main()
