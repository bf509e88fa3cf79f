"""Inference backends behind one small interface: ONNX Runtime (always present) and OpenVINO (extra).

``open_model(path, backend="auto")`` returns a :class:`Session` whose ``run(feeds)`` maps input names to
arrays and returns the outputs in the model's order. ``auto`` prefers OpenVINO when it is installed (it runs
the same ONNX files at FP32 here and INT8 QDQ models at real INT8 speed), else ONNX Runtime.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

from crres_sdk.errors import BackendUnavailableError

BACKENDS = ("onnxruntime", "openvino")


class Session(Protocol):
    backend: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def available_backends() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "openvino" if "openvino" in available_backends() else "onnxruntime"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend not in available_backends():
        raise BackendUnavailableError(
            f"backend {backend!r} is not installed; install it with: pip install 'crres[{backend}]'"
            if backend == "openvino" else f"backend {backend!r} is not installed"
        )
    return backend


class OnnxRuntimeSession:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self.output_names, feeds)


class OpenVinoSession:
    backend = "openvino"

    def __init__(self, path: Path, threads: int | None) -> None:
        import openvino as ov

        # f32: this CPU's default is bf16, which would change the detector's outputs.
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        model = ov.Core().read_model(str(path))
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]
        self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer(feeds)
        return [np.asarray(result[o]) for o in self._compiled.outputs]


def open_model(path: str | Path, backend: str = "auto", threads: int | None = None) -> Session:
    """Open an ONNX model on the chosen backend (``threads``: intra-op threads, None = backend default)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
    name = resolve_backend(backend)
    return OpenVinoSession(path, threads) if name == "openvino" else OnnxRuntimeSession(path, threads)
