"""Inference backends behind one small interface: ONNX Runtime (always present), OpenVINO and TensorRT (extras).

``open_model(path, backend="auto", device="cpu")`` returns a :class:`Session` whose ``run(feeds)`` maps input
names to arrays and returns the outputs in the model's order. Sessions are safe to call from several threads.

| backend | files | devices |
|---|---|---|
| ``onnxruntime`` | ``.onnx`` (FP32 or INT8 QDQ) | ``cpu``, ``cuda`` (CUDA EP), ``tensorrt`` (TensorRT EP, falls back to CUDA/CPU) |
| ``openvino`` | ``.onnx`` or ``.xml`` IR | ``cpu``, ``gpu``, ``npu`` (any OpenVINO device name) |
| ``tensorrt`` | serialized ``.engine`` (built on the target device) | the GPU it was built for |

``auto`` prefers OpenVINO when it is installed (it runs the same ONNX files at FP32 and INT8 models at real INT8
speed on x86), else ONNX Runtime; the Recognizer's own ``auto`` also considers a bundle's TensorRT engine.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from crres_sdk.errors import BackendUnavailableError

BACKENDS = ("onnxruntime", "openvino", "tensorrt")
_ORT_PROVIDERS = {"cpu": ["CPUExecutionProvider"],
                  "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                  "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}
_INSTALL_HINT = {"openvino": "pip install 'crres[openvino]'",
                 "tensorrt": "install NVIDIA's TensorRT Python package (JetPack ships it) and pip install polygraphy"}


class Session(Protocol):
    backend: str
    device: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # already imported without a __spec__ (e.g. a stub module): it is there
        return name in sys.modules


def available_backends() -> list[str]:
    found = [name for name in ("onnxruntime", "openvino") if _importable(name)]
    if _importable("tensorrt") and _importable("polygraphy"):
        found.append("tensorrt")
    return found


def resolve_backend(backend: str) -> str:
    """``auto`` -> openvino if installed else onnxruntime; a named backend must be installed."""
    if backend == "auto":
        return "openvino" if "openvino" in available_backends() else "onnxruntime"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend not in available_backends():
        hint = _INSTALL_HINT.get(backend)
        raise BackendUnavailableError(f"backend {backend!r} is not installed" + (f"; {hint}" if hint else ""))
    return backend


class OnnxRuntimeSession:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int | None, device: str = "cpu") -> None:
        import onnxruntime as ort

        if device not in _ORT_PROVIDERS:
            raise ValueError(f"onnxruntime device must be one of {sorted(_ORT_PROVIDERS)}, got {device!r}")
        wanted = _ORT_PROVIDERS[device][0]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"onnxruntime here has no {wanted} (available: {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu (or JetPack's build) for CUDA/TensorRT")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.device = device
        self._session = ort.InferenceSession(str(path), options, providers=_ORT_PROVIDERS[device])
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self.output_names, feeds)  # InferenceSession.run is thread-safe


class OpenVinoSession:
    backend = "openvino"

    def __init__(self, path: Path, threads: int | None, device: str = "cpu") -> None:
        import openvino as ov

        core = ov.Core()
        name = device.upper()
        if not any(d == name or d.startswith(name + ".") for d in core.available_devices):
            raise BackendUnavailableError(
                f"OpenVINO device {name!r} is not available here (available: {', '.join(core.available_devices)})")
        # f32 on CPU: this CPU's default is bf16, which would change FP32 models' outputs (INT8 layers stay INT8).
        config = {"INFERENCE_PRECISION_HINT": "f32"} if name == "CPU" else {}
        if threads and name == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        self.device = device
        self._compiled = core.compile_model(core.read_model(str(path)), name, config)
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]
        self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        # An infer request is not thread-safe: one per thread.
        self._local = threading.local()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        result = request.infer(feeds)
        return [np.array(result[o]) for o in self._compiled.outputs]  # copies: the request reuses its buffers


class TensorRTSession:
    """A serialized TensorRT engine, run with Polygraphy's runner (which manages the CUDA buffers)."""

    backend = "tensorrt"

    def __init__(self, path: Path, threads: int | None = None, device: str = "cuda") -> None:
        del threads  # the GPU does the work
        import tensorrt as trt
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        self.device = device
        self.trt_version = trt.__version__
        try:
            engine = EngineFromBytes(Path(path).read_bytes())()
        except Exception as exc:  # TensorRT refuses engines of another version or GPU
            raise BackendUnavailableError(
                f"TensorRT {trt.__version__} could not load {path}: engines are specific to the TensorRT version "
                f"and GPU they were built with; rebuild it on this device with the bundle's build_engine.sh "
                f"({exc})") from exc
        self.input_names = [n for n in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors))
                            if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors))
                             if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._runner = TrtRunner(engine)
        self._runner.activate()
        self._lock = threading.Lock()  # one execution context

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            out = self._runner.infer(feeds)
            return [np.array(out[name]) for name in self.output_names]


def open_model(path: str | Path, backend: str = "auto", threads: int | None = None, *, device: str = "cpu") -> Session:
    """Open a model file on the chosen backend (``threads``: intra-op CPU threads, None = backend default)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a non-empty string, got {device!r}")
    name = resolve_backend(backend)
    if name == "tensorrt":
        if path.suffix == ".onnx":
            raise ValueError(f"the tensorrt backend runs serialized engines, not {path.name}; build one with the "
                             "bundle's build_engine.sh, or use backend='onnxruntime' with device='tensorrt'")
        return TensorRTSession(path, threads, "cuda" if device == "cpu" else device)
    if name == "openvino":
        return OpenVinoSession(path, threads, device)
    return OnnxRuntimeSession(path, threads, device)
