"""Inference backends behind one small interface: ONNX Runtime, OpenVINO and TensorRT, each an optional install.

``open_model(path, backend="auto", device="auto")`` returns a :class:`Session` whose ``run(feeds)`` maps input
names to arrays and returns the outputs in the model's order. Sessions are safe to call from several threads.

| backend | files | devices |
|---|---|---|
| ``onnxruntime`` | ``.onnx`` (FP32 or INT8 QDQ) | ``cpu``, ``cuda`` (CUDA EP), ``tensorrt`` (TensorRT EP, falls back to CUDA/CPU) |
| ``openvino`` | ``.onnx`` or ``.xml`` IR | ``cpu``, ``gpu``, ``npu`` (any OpenVINO device name) |
| ``tensorrt`` | serialized ``.engine`` (built on the target device, TensorRT >= 8.5) | ``cuda``, ``cuda:N`` |

``auto`` for one file: OpenVINO when installed (it runs the same ONNX files at FP32 and INT8 models at real INT8
speed on x86), else ONNX Runtime. For a bundle, :func:`auto_backends` puts the bundle's TensorRT engine first
when the engine can run here (see there); ``device="auto"`` means the CPU for ONNX Runtime and OpenVINO and the
GPU for TensorRT. Each engine is an optional dependency: a missing one raises
:class:`~crres_sdk.errors.BackendUnavailableError` saying what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np

from crres_sdk.errors import BackendUnavailableError

BACKENDS = ("onnxruntime", "openvino", "tensorrt")
_ORT_PROVIDERS = {"cpu": ["CPUExecutionProvider"],
                  "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                  "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}
#: What to install for each engine (the extras are defined in pyproject.toml).
INSTALL_HINTS = {
    "onnxruntime": "pip install 'crres[ort]' (NVIDIA GPU: 'crres[ort-gpu]'; Jetson: NVIDIA's onnxruntime-gpu "
                   "wheel for your JetPack)",
    "openvino": "pip install 'crres[openvino]'",
    "tensorrt": "TensorRT's Python package comes with JetPack (apt install python3-libnvinfer) or NVIDIA's pip "
                "index (pip install tensorrt); its CUDA binding: pip install \"crres[tensorrt]\" (cuda-python)",
}
#: The name-based tensor API the TensorRT session uses (set_input_shape, set_tensor_address, execute_async_v3).
MIN_TENSORRT = (8, 5)
#: cuda-python's runtime module: cuda.bindings.runtime since 12.6, cuda.cudart before (removed in 13).
_CUDA_RUNTIME_MODULES = ("cuda.bindings.runtime", "cuda.cudart")


class Session(Protocol):
    backend: str
    device: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ValueError, ImportError):  # a stub module without __spec__ (it is there), or a missing parent package
        return name in sys.modules


def _require(name: str, backend: str) -> Any:
    """Import an engine's package, or say what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailableError(f"backend {backend!r} needs the {name!r} package, which is not installed here "
                                      f"({exc}); {INSTALL_HINTS[backend]}") from exc


def cuda_runtime() -> Any:
    """NVIDIA's CUDA runtime binding (cuda-python), which the TensorRT session uses for buffers and streams."""
    for name in _CUDA_RUNTIME_MODULES:
        if _importable(name):
            return importlib.import_module(name)
    raise BackendUnavailableError(f"backend 'tensorrt' needs NVIDIA's CUDA runtime binding (cuda-python), which is "
                                  f"not installed here; {INSTALL_HINTS['tensorrt']}")


def available_backends() -> list[str]:
    found = [name for name in ("onnxruntime", "openvino") if _importable(name)]
    if _importable("tensorrt") and any(_importable(m) for m in _CUDA_RUNTIME_MODULES):
        found.append("tensorrt")
    return found


def resolve_backend(backend: str) -> str:
    """``auto`` -> openvino if installed, else onnxruntime; a named backend must be installed."""
    installed = available_backends()
    if backend == "auto":
        for name in ("openvino", "onnxruntime"):
            if name in installed:
                return name
        raise BackendUnavailableError("no inference engine is installed: " + INSTALL_HINTS["onnxruntime"]
                                      + ", or " + INSTALL_HINTS["openvino"])
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend not in installed:
        raise BackendUnavailableError(f"backend {backend!r} is not installed; {INSTALL_HINTS[backend]}")
    return backend


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> (10, 3, 0, 26); non-numeric parts end it."""
    out = []
    for part in str(version).split("."):
        m = re.match(r"\d+", part)
        if m is None:
            break
        out.append(int(m.group()))
    return tuple(out)


def engine_runs_here(engine: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Whether a bundle's registered TensorRT engine (its ``files.tensorrt.engine`` entry) can be loaded here:
    TensorRT and the CUDA binding import, and the engine was built with this TensorRT major.minor (engines do not
    deserialise across versions). Returns (ok, why not)."""
    if not engine:
        return False, "the bundle lists no TensorRT engine (build it on the device with its build_engine.sh)"
    if "tensorrt" not in available_backends():
        return False, "TensorRT or its CUDA binding is not installed; " + INSTALL_HINTS["tensorrt"]
    import tensorrt as trt

    built, have = version_tuple(engine.get("tensorrt", "")), version_tuple(getattr(trt, "__version__", ""))
    if len(built) < 2 or built[:2] != have[:2]:
        return False, (f"the engine was built with TensorRT {engine.get('tensorrt', 'unknown')}, this is "
                       f"{getattr(trt, '__version__', 'unknown')}: rebuild it with the bundle's build_engine.sh")
    return True, ""


def auto_backends(device: str = "auto", engine: Mapping[str, Any] | None = None) -> list[str]:
    """The backends ``backend="auto"`` tries for a bundle, best first.

    The bundle's TensorRT engine comes first when ``device`` is ``"auto"``, ``"cuda"``/``"cuda:N"`` or
    ``"tensorrt"`` and :func:`engine_runs_here` (an engine is registered, TensorRT and cuda-python import, same
    TensorRT major.minor). An explicit ``device="cpu"`` (or an OpenVINO device such as ``"gpu"``) keeps the
    engine out: the caller asked for that device. Then OpenVINO when installed, then ONNX Runtime.
    """
    out = []
    if (device == "auto" or device == "tensorrt" or device.startswith("cuda")) and engine_runs_here(engine)[0]:
        out.append("tensorrt")
    out += [name for name in ("openvino", "onnxruntime") if name in available_backends()]
    if not out:
        resolve_backend("auto")  # raises with what to install
    return out


class OnnxRuntimeSession:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int | None, device: str = "cpu") -> None:
        ort = _require("onnxruntime", "onnxruntime")

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


#: Serialises every OpenVINO infer request's first inference, process-wide (see :class:`OpenVinoSession`).
_OV_FIRST_CALL = threading.Lock()
#: A dynamic dimension's size in the constructor's warm-up inference (the batch dimension, dim 0, gets 1): large
#: enough for MTCNN's P-Net (12 px window, three 3x3 convolutions and a pooling).
_OV_WARM_DIM = 48


class OpenVinoSession:
    """An OpenVINO compiled model, callable from any number of threads.

    OpenVINO's threading model: ``CompiledModel.create_infer_request`` may be called from several threads, while
    an ``InferRequest`` is used by one thread at a time. So each calling thread gets its own infer request, made
    on its first call. Two more things make the session safe by construction rather than by its callers' care:

    * the constructor runs one inference on the constructing thread (zeros, dynamic dimensions at 1 for the batch
      and 48 elsewhere), so the compiled model's and the Python bindings' lazy one-time set-up is done before any
      other thread can reach the session;
    * every infer request's first inference (the constructor's, and each new thread's) runs under one
      process-wide lock, so no two first calls, of this session or another, ever run at once. Later calls take
      no lock.

    (``crres serve`` once hung in a 16-camera run whose two detect workers made the first calls of fresh
    sessions at the same time; serve worked around it with a warm-up of its own, which this makes redundant.)
    """

    backend = "openvino"

    def __init__(self, path: Path, threads: int | None, device: str = "cpu") -> None:
        ov = _require("openvino", "openvino")

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
        self._local = threading.local()  # one infer request per thread
        self.warmed_up = self._warm_up()

    def _warm_up(self) -> bool:
        """One inference on zeros on this (the constructing) thread; False when the model would not run on the
        guessed shapes (its first real call then still runs under the first-call lock)."""
        feeds = {}
        for port in self._compiled.inputs:
            dims = []
            for i, d in enumerate(port.get_partial_shape()):
                if not d.is_dynamic:
                    dims.append(d.get_length())
                    continue
                size = 1 if i == 0 else _OV_WARM_DIM
                size = max(size, d.get_min_length())
                if d.get_max_length() > 0:
                    size = min(size, d.get_max_length())
                dims.append(size)
            feeds[port.get_any_name()] = np.zeros(dims, port.get_element_type().to_dtype())
        try:
            self.run(feeds)
        except Exception:  # e.g. a model whose dynamic dimensions have other constraints
            return False
        return True

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:  # this thread's first inference: never at the same time as another first inference
            with _OV_FIRST_CALL:
                request = self._compiled.create_infer_request()
                outputs = self._infer(request, feeds)
            self._local.request = request  # kept only once it has run (a failed first call stays a first call)
            return outputs
        return self._infer(request, feeds)

    def _infer(self, request: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = request.infer(feeds)
        return [np.array(result[o]) for o in self._compiled.outputs]  # copies: the request reuses its buffers


class TensorRTSession:
    """A serialized TensorRT engine (TensorRT >= 8.5's name-based tensor API) on one CUDA device.

    Device buffers are allocated per tensor and grown when a larger batch arrives; inputs are copied in,
    the engine enqueued and outputs copied back on one CUDA stream, under a lock (one execution context).
    """

    backend = "tensorrt"

    def __init__(self, path: Path, threads: int | None = None, device: str = "cuda") -> None:
        del threads  # the GPU does the work
        trt = _require("tensorrt", "tensorrt")
        self._cuda = cuda_runtime()
        self.trt_version = str(getattr(trt, "__version__", "unknown"))
        if version_tuple(self.trt_version)[:2] < MIN_TENSORRT:
            raise BackendUnavailableError(f"TensorRT {self.trt_version} is too old: the tensorrt backend needs "
                                          f"{'.'.join(map(str, MIN_TENSORRT))} or newer (JetPack 5.1+)")
        self.device = device
        self.device_index = _cuda_device_index(device)
        self._call("cudaSetDevice", self.device_index)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:  # TensorRT refuses engines of another version or GPU (it logs why)
            raise BackendUnavailableError(
                f"TensorRT {self.trt_version} could not load {path}: engines are specific to the TensorRT version "
                "and GPU they were built with; rebuild it on this device with the bundle's build_engine.sh")
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor name -> (device pointer, bytes)
        self._stream = self._call("cudaStreamCreate")
        self._lock = threading.Lock()

    def _call(self, name: str, *args: Any) -> Any:
        """A cuda-python runtime call: (error, *values) -> values, raising on an error code."""
        result = getattr(self._cuda, name)(*args)
        err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if err != self._cuda.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA {name} failed: {err}")
        return values[0] if len(values) == 1 else values

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._call("cudaFree", ptr)
                self._buffers.pop(name)
            ptr = int(self._call("cudaMalloc", nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"missing inputs {missing}; the engine takes {self.input_names}")
        h2d, d2h = self._cuda.cudaMemcpyKind.cudaMemcpyHostToDevice, self._cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            inputs = {}  # kept alive until the stream is synchronised
            for name in self.input_names:
                host = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
                if not self._context.set_input_shape(name, tuple(host.shape)):
                    lo, _, hi = self._engine.get_tensor_profile_shape(name, 0)
                    raise ValueError(f"input {name!r} of shape {host.shape} is outside the engine's optimisation "
                                     f"profile ({tuple(lo)} to {tuple(hi)}); split the batch")
                ptr = self._device_buffer(name, host.nbytes)
                self._context.set_tensor_address(name, ptr)
                self._call("cudaMemcpyAsync", ptr, host.ctypes.data, host.nbytes, h2d, self._stream)
                inputs[name] = host
            outputs = []
            for name in self.output_names:
                host = np.empty(tuple(self._context.get_tensor_shape(name)), self._dtypes[name])
                self._context.set_tensor_address(name, self._device_buffer(name, host.nbytes))
                outputs.append(host)
            if not self._context.execute_async_v3(int(self._stream)):
                raise RuntimeError("TensorRT could not enqueue the engine (see its log above)")
            for name, host in zip(self.output_names, outputs):
                self._call("cudaMemcpyAsync", host.ctypes.data, self._buffers[name][0], host.nbytes, d2h,
                           self._stream)
            self._call("cudaStreamSynchronize", self._stream)
            return outputs

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the session is collected)."""
        for ptr, _ in self._buffers.values():
            self._call("cudaFree", ptr)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._call("cudaStreamDestroy", self._stream)
            self._stream = None

    def __del__(self) -> None:
        try:
            if hasattr(self, "_buffers"):
                self.close()
        except Exception:  # interpreter shutdown: the CUDA binding may already be gone
            pass


def _cuda_device_index(device: str) -> int:
    if device in ("cuda", "auto", "tensorrt"):
        return 0
    m = re.fullmatch(r"cuda:(\d+)", device)
    if m is None:
        raise ValueError(f"the tensorrt backend runs on a CUDA device ('cuda' or 'cuda:N'), got device={device!r}; "
                         "for the CPU use backend='onnxruntime' or 'openvino'")
    return int(m.group(1))


def open_model(path: str | Path, backend: str = "auto", threads: int | None = None, *,
               device: str = "auto") -> Session:
    """Open a model file on the chosen backend (``threads``: intra-op CPU threads, None = backend default).
    ``device="auto"``: the CPU for ONNX Runtime and OpenVINO, the first GPU for TensorRT."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a non-empty string, got {device!r}")
    name = "tensorrt" if backend == "auto" and path.suffix in (".engine", ".plan") else resolve_backend(backend)
    if name == "tensorrt":
        if path.suffix == ".onnx":
            raise ValueError(f"the tensorrt backend runs serialized engines, not {path.name}; build one with the "
                             "bundle's build_engine.sh, or use backend='onnxruntime' with device='tensorrt'")
        resolve_backend("tensorrt")
        return TensorRTSession(path, threads, "cuda" if device == "auto" else device)
    device = "cpu" if device == "auto" else device
    if name == "openvino":
        return OpenVinoSession(path, threads, device)
    return OnnxRuntimeSession(path, threads, device)
