"""Fake ``tensorrt`` (see README.md): records and checks the builder and runtime calls of the TensorRT path.

A "serialized engine" is a JSON header (the TensorRT version, profile, tensor names) and the ONNX bytes it was
built from; executing it runs that ONNX file with ONNX Runtime on the CPU, reading and writing the fake CUDA
memory of ``cuda.bindings.runtime``. The version comes from $FAKE_TENSORRT_VERSION (default 10.3.0).
"""

from __future__ import annotations

import enum
import json
import os

import numpy as np

__version__ = os.environ.get("FAKE_TENSORRT_VERSION", "10.3.0")
MAJOR = int(__version__.split(".")[0])
MAGIC = b"FAKE-TRT-ENGINE\n"
CALLS: list[tuple] = []


class Logger:
    WARNING = 2

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0


def nptype(dtype: DataType):
    return {DataType.FLOAT: np.float32}[dtype]


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.onnx = None


class OnnxParser:
    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network, self.errors = network, []

    def parse(self, data: bytes) -> bool:
        CALLS.append(("parse", len(data)))
        explicit = self.network.flags & (1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        if MAJOR < 10 and not explicit:  # TensorRT 8.x's ONNX parser refuses implicit-batch networks
            self.errors = ["ModelImporter.cpp: the ONNX parser only supports networks with an explicit batch dimension"]
            return False
        import onnx

        model = onnx.load_from_string(data)
        self.network.onnx = data
        self.network.inputs = [i.name for i in model.graph.input]
        self.network.outputs = [o.name for o in model.graph.output]
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]


class _Profile:
    def __init__(self) -> None:
        self.shapes = {}

    def set_shape(self, name: str, lo, opt, hi) -> None:
        CALLS.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))
        assert all(a <= b <= c for a, b, c in zip(lo, opt, hi)), "profile shapes must satisfy min <= opt <= max"
        self.shapes[name] = [list(lo), list(opt), list(hi)]


class _Config:
    def __init__(self) -> None:
        self.flags, self.profiles = set(), []

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(BuilderFlag(flag))

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> _Network:
        CALLS.append(("create_network", flags))
        if MAJOR >= 10 and flags & (1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH):
            CALLS.append(("deprecated", "EXPLICIT_BATCH is ignored in TensorRT 10"))
        return _Network(flags)

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config):
        CALLS.append(("build_serialized_network", sorted(f.name for f in config.flags)))
        if network.onnx is None or not config.profiles:
            return None
        missing = [n for n in network.inputs if n not in config.profiles[0].shapes]
        if missing:  # dynamic inputs need a profile
            return None
        header = {"tensorrt": __version__, "profile": config.profiles[0].shapes, "inputs": network.inputs,
                  "outputs": network.outputs}
        return MAGIC + json.dumps(header).encode() + b"\n" + network.onnx


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes):
        CALLS.append(("deserialize_cuda_engine", len(data)))
        if not data.startswith(MAGIC):
            return None
        header, onnx_bytes = data[len(MAGIC):].split(b"\n", 1)
        header = json.loads(header)
        if header["tensorrt"] != __version__:  # as TensorRT: engines do not load across versions
            return None
        return _Engine(header, onnx_bytes)


class _Engine:
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self.header = header
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.names = header["inputs"] + header["outputs"]

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self.header["inputs"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, profile: int):
        return self.header["profile"][name]

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape) -> bool:
        CALLS.append(("set_input_shape", name, tuple(shape)))
        lo, _, hi = self.engine.header["profile"][name]
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        assert name in self.engine.names, f"unknown tensor {name!r}"
        self.addresses[name] = int(ptr)
        return True

    def get_tensor_shape(self, name: str):
        if name in self.engine.header["inputs"]:
            return self.shapes.get(name, tuple(-1 for _ in self.engine.header["profile"][name][0]))
        missing = [n for n in self.engine.header["inputs"] if n not in self.shapes]
        assert not missing, f"output shape asked before the input shapes of {missing} were set"
        feeds = {n: np.zeros(self.shapes[n], np.float32) for n in self.engine.header["inputs"]}
        return self.engine.session.run([name], feeds)[0].shape

    def execute_async_v3(self, stream_handle: int) -> bool:
        from cuda.bindings import runtime as cudart

        assert isinstance(stream_handle, int), "execute_async_v3 takes the stream as an int handle"
        assert stream_handle in cudart.STREAMS, "enqueued on a stream that does not exist"
        unbound = [n for n in self.engine.names if n not in self.addresses]
        assert not unbound, f"tensors without an address: {unbound}"
        CALLS.append(("execute_async_v3", dict(self.shapes)))
        feeds = {}
        for n in self.engine.header["inputs"]:
            count = int(np.prod(self.shapes[n])) * 4
            feeds[n] = np.frombuffer(bytes(cudart.device_bytes(self.addresses[n], count)), np.float32).reshape(
                self.shapes[n])
        for n, value in zip(self.engine.header["outputs"], self.engine.session.run(self.engine.header["outputs"], feeds)):
            data = np.ascontiguousarray(value, np.float32).tobytes()
            cudart.device_bytes(self.addresses[n], len(data))[:] = data
        return True
