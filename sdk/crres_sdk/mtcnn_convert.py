"""Build the MTCNN detector bundle (P-Net, R-Net, O-Net as ONNX + manifest) without torch.

The weights are the MIT-licensed ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` inside PyPI's ``facenet-pytorch==2.6.0``
wheel (converted by its authors from the original MTCNN of Zhang et al. 2016). The wheel is fetched once with
``pip download --no-deps`` (its torch pin forbids installing it) into ``~/.cache/crres/downloads`` and checked
against a pinned sha256. Each ``.pt`` is a PyTorch state dict: the legacy format (five pickles followed by the raw
storages; what this wheel ships) or the zip format (``data.pkl`` + one file per storage). Both are read by a
restricted unpickler that resolves only the globals a state dict needs to this module's own numpy constructors and
refuses every other global with :class:`UnsafePickleError`, before anything is called. The three graphs are then
written with ``onnx.helper`` in the exact layer order of facenet-pytorch's networks, checked with ``onnx.checker``
and listed with their sha256 in the manifest :class:`crres_sdk.detector.FaceDetector` reads.

    from crres_sdk.mtcnn_convert import build_bundle
    build_bundle(Path.home() / ".cache/crres/models/mtcnn")

Needs ``onnx`` (not torch). ``export/detector_bundle.py`` is the command-line front end.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from crres_sdk.bundle import sha256_file, user_models_dir
from crres_sdk.dependencies import require
from crres_sdk.errors import BundleError

LOGGER = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "facenet-pytorch==2.6.0"
WHEEL_NAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
#: Opset 17 at IR version 8 (the minimum it needs), so the older ONNX Runtime / TensorRT of JetPack load the files.
OPSET, IR_VERSION = 17, 8
#: Largest weight file read from a wheel; the real ones are 28 KB - 1.6 MB.
MAX_WEIGHT_FILE_BYTES = 64 << 20
#: The legacy torch.save format starts with this magic number and protocol version.
LEGACY_MAGIC, LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


class UnsafePickleError(pickle.UnpicklingError):
    """A weight file's pickle asks for something a PyTorch state dict never needs (a global such as ``os.system``)."""


# --------------------------------------------------------------------------------------------------------------
# Reading PyTorch state dicts without torch
# --------------------------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


# The stand-ins a pickle can reach are immutable (named tuples, a bound method for the rebuild function), so a
# BUILD opcode aimed at one cannot change how this or a later file is read.
class _StorageType(NamedTuple):
    """Stands in for ``torch.FloatStorage`` etc.: only its dtype is used."""

    dtype: np.dtype


class _Storage:
    """A storage named by a persistent id; its bytes are attached once read (after the pickle in legacy files)."""

    __slots__ = ("key", "dtype", "numel", "array")

    def __init__(self, key: str, dtype: np.dtype, numel: int) -> None:
        self.key, self.dtype, self.numel = key, np.dtype(dtype), numel
        self.array: np.ndarray | None = None


class _TensorRef(NamedTuple):
    """What ``torch._utils._rebuild_tensor_v2`` gives here: a strided view to materialise once storages are read."""

    storage: Any
    offset: Any
    size: Any
    stride: Any


_STORAGE_TYPES = {("torch", name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()}


class _StateDictUnpickler(pickle.Unpickler):
    """Allows only the globals of a state dict, resolved to the stand-ins above; never imports anything."""

    def __init__(self, file: io.BytesIO, what: str, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.what, self.storages = what, storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor_v2
        if (module, name) in _STORAGE_TYPES:
            return _STORAGE_TYPES[(module, name)]
        raise UnsafePickleError(f"{self.what}: its pickle references {module}.{name}, which a PyTorch state dict "
                                "never needs; refusing to load it (nothing was executed)")

    def _rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _TensorRef:
        return _TensorRef(storage, offset, size, stride)

    def persistent_load(self, pid: Any) -> _Storage:
        # Legacy: ('storage', type, key, location, numel, view_metadata); zip: ('storage', type, key, location, numel).
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or isinstance(pid[4], bool) or not isinstance(pid[4], int) or pid[4] < 0
                or (len(pid) == 6 and pid[5] is not None)):
            raise BundleError(f"{self.what}: unexpected persistent id {pid!r:.120} (not a plain tensor storage)")
        _, storage_type, key, _location, numel = pid[:5]
        storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        if storage.dtype != storage_type.dtype or storage.numel != numel:
            raise BundleError(f"{self.what}: storage {key} is declared twice with different types or sizes")
        return storage


def _unpickle(stream: io.BytesIO, what: str, storages: dict[str, _Storage]) -> Any:
    try:
        return _StateDictUnpickler(stream, what, storages).load()
    except (UnsafePickleError, BundleError):
        raise
    except Exception as e:  # truncated or malformed pickles raise UnpicklingError, EOFError, TypeError, ...
        raise BundleError(f"{what}: not a readable PyTorch state dict ({type(e).__name__}: {e})") from None


def _read_legacy(data: bytes, what: str) -> tuple[Any, dict[str, _Storage]]:
    """torch.save's legacy format: magic, protocol, sys info, the object, storage keys, then each storage as
    int64 element count + raw little-endian bytes (torch/serialization.py ``_legacy_load``)."""
    stream, storages = io.BytesIO(data), {}
    if _unpickle(stream, what, storages) != LEGACY_MAGIC or _unpickle(stream, what, storages) != LEGACY_PROTOCOL:
        raise BundleError(f"{what}: not a PyTorch weight file (no torch.save magic number)")
    sys_info = _unpickle(stream, what, storages)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise BundleError(f"{what}: only little-endian weight files are supported")
    obj = _unpickle(stream, what, storages)
    keys = _unpickle(stream, what, storages)
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise BundleError(f"{what}: its storage list does not match the tensors it holds")
    for key in keys:
        storage = storages[key]
        count = np.frombuffer(stream.read(8), "<i8")
        nbytes = storage.numel * storage.dtype.itemsize
        if count.size != 1 or int(count[0]) != storage.numel:
            raise BundleError(f"{what}: storage {key} is truncated or has the wrong size")
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise BundleError(f"{what}: storage {key} is truncated")
        storage.array = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
    return obj, storages


def _read_zip(data: bytes, what: str) -> tuple[Any, dict[str, _Storage]]:
    """torch.save's zip format: ``<archive>/data.pkl`` and one ``<archive>/data/<key>`` file per storage."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise BundleError(f"{what}: a zip without exactly one <archive>/data.pkl is not a PyTorch weight file")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in zf.namelist() and zf.read(f"{prefix}byteorder") != b"little":
            raise BundleError(f"{what}: only little-endian weight files are supported")
        storages: dict[str, _Storage] = {}
        obj = _unpickle(io.BytesIO(zf.read(pickles[0])), what, storages)
        for key, storage in storages.items():
            try:
                raw = zf.read(f"{prefix}data/{key}")
            except KeyError:
                raise BundleError(f"{what}: storage {key} is missing") from None
            if len(raw) != storage.numel * storage.dtype.itemsize:
                raise BundleError(f"{what}: storage {key} has {len(raw)} bytes, expected "
                                  f"{storage.numel} x {storage.dtype.itemsize}")
            storage.array = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
    return obj, storages


def _materialise(ref: Any, name: str, what: str) -> np.ndarray:
    """A contiguous native-endian copy of a tensor view, after checking it lies inside its storage."""
    ok = (isinstance(ref, _TensorRef) and isinstance(ref.storage, _Storage) and ref.storage.array is not None
          and isinstance(ref.size, tuple) and isinstance(ref.stride, tuple) and len(ref.size) == len(ref.stride)
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                  for v in (ref.offset, *ref.size, *ref.stride)))
    if not ok:
        raise BundleError(f"{what}: entry {name!r} is not a tensor")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if 0 not in ref.size and last >= ref.storage.array.size:
        raise BundleError(f"{what}: tensor {name!r} reaches past the end of its storage")
    array = ref.storage.array
    itemsize = array.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(array[ref.offset:], shape=ref.size,
                                           strides=tuple(s * itemsize for s in ref.stride), writeable=False)
    return np.ascontiguousarray(view, dtype=array.dtype.newbyteorder("="))


def read_state_dict(data: bytes, what: str = "weight file") -> dict[str, np.ndarray]:
    """A PyTorch state dict (``torch.save(module.state_dict())``, legacy or zip format) as numpy arrays.

    Raises UnsafePickleError for any global beyond those a state dict needs, BundleError for anything else that is
    not a well-formed state dict. ``what`` names the file in error messages.
    """
    obj, _storages = (_read_zip if data[:4] == b"PK\x03\x04" else _read_legacy)(data, what)
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise BundleError(f"{what}: holds a {type(obj).__name__}, not a state dict of named tensors")
    return {name: _materialise(ref, name, what) for name, ref in obj.items()}


# --------------------------------------------------------------------------------------------------------------
# The three networks, in facenet-pytorch's layer order (facenet_pytorch/models/mtcnn.py)
# --------------------------------------------------------------------------------------------------------------

# ("conv", name, in, out, kernel) | ("prelu", name, channels) | ("pool", kernel, stride) (ceil mode)
# | ("caffe_flatten",) (N,C,H,W -> N,W,H,C -> N,-1: the converted Caffe weights' order) | ("dense", name, in, out)
# | ("softmax",) (over the channel axis)
_PNET_TRUNK = [("conv", "conv1", 3, 10, 3), ("prelu", "prelu1", 10), ("pool", 2, 2),
               ("conv", "conv2", 10, 16, 3), ("prelu", "prelu2", 16),
               ("conv", "conv3", 16, 32, 3), ("prelu", "prelu3", 32)]
_RNET_TRUNK = [("conv", "conv1", 3, 28, 3), ("prelu", "prelu1", 28), ("pool", 3, 2),
               ("conv", "conv2", 28, 48, 3), ("prelu", "prelu2", 48), ("pool", 3, 2),
               ("conv", "conv3", 48, 64, 2), ("prelu", "prelu3", 64),
               ("caffe_flatten",), ("dense", "dense4", 576, 128), ("prelu", "prelu4", 128)]
_ONET_TRUNK = [("conv", "conv1", 3, 32, 3), ("prelu", "prelu1", 32), ("pool", 3, 2),
               ("conv", "conv2", 32, 64, 3), ("prelu", "prelu2", 64), ("pool", 3, 2),
               ("conv", "conv3", 64, 64, 3), ("prelu", "prelu3", 64), ("pool", 2, 2),
               ("conv", "conv4", 64, 128, 2), ("prelu", "prelu4", 128),
               ("caffe_flatten",), ("dense", "dense5", 1152, 256), ("prelu", "prelu5", 256)]


@dataclass(frozen=True)
class NetworkSpec:
    """One MTCNN stage: input side (None: fully convolutional), trunk layers and named output heads in order."""

    input_side: int | None
    trunk: list[tuple]
    heads: dict[str, list[tuple]]


NETWORKS = {
    "pnet": NetworkSpec(None, _PNET_TRUNK, {"prob": [("conv", "conv4_1", 32, 2, 1), ("softmax",)],
                                            "reg": [("conv", "conv4_2", 32, 4, 1)]}),
    "rnet": NetworkSpec(24, _RNET_TRUNK, {"prob": [("dense", "dense5_1", 128, 2), ("softmax",)],
                                          "reg": [("dense", "dense5_2", 128, 4)]}),
    "onet": NetworkSpec(48, _ONET_TRUNK, {"prob": [("dense", "dense6_1", 256, 2), ("softmax",)],
                                          "reg": [("dense", "dense6_2", 256, 4)],
                                          "landmarks": [("dense", "dense6_3", 256, 10)]}),
}


def expected_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """The state dict a network needs: parameter name -> shape (what ``load_state_dict(strict=True)`` checks)."""
    shapes = {}
    for layer in [*spec.trunk, *(layer for head in spec.heads.values() for layer in head)]:
        if layer[0] == "conv":
            _, name, cin, cout, k = layer
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)
        elif layer[0] == "dense":
            _, name, cin, cout = layer
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin), (cout,)
        elif layer[0] == "prelu":
            shapes[f"{layer[1]}.weight"] = (layer[2],)
    return shapes


def check_state_dict(state: dict[str, np.ndarray], spec: NetworkSpec, what: str) -> None:
    """BundleError unless ``state`` has exactly the network's parameters, float32, of the right shapes, finite."""
    expected = expected_shapes(spec)
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise BundleError(f"{what}: not this network's weights (missing {missing}, unexpected {extra})")
    for name, shape in expected.items():
        array = state[name]
        if array.dtype != np.float32 or array.shape != shape:
            raise BundleError(f"{what}: {name} is {array.dtype}{list(array.shape)}, expected float32{list(shape)}")
        if not np.isfinite(array).all():
            raise BundleError(f"{what}: {name} holds NaN or infinite values")


def build_graph(name: str, state: dict[str, np.ndarray]):
    """The ONNX model of one network (``onnx.ModelProto``), checked with ``onnx.checker``."""
    from onnx import TensorProto, checker, helper, numpy_helper

    spec = NETWORKS[name]
    check_state_dict(state, spec, f"{name} weights")
    nodes, initializers = [], []

    def weight(key: str, shape: tuple[int, ...] | None = None) -> str:
        array = state[key] if shape is None else state[key].reshape(shape)
        initializers.append(numpy_helper.from_array(array, key))
        return key

    def apply(layers: list[tuple], x: str, rank: int, final: str | None = None) -> tuple[str, int]:
        for i, layer in enumerate(layers):
            op = layer[0]
            out = final if final and i == len(layers) - 1 else (
                layer[1] if op in ("conv", "prelu", "dense") else f"{op}_{len(nodes)}")
            if op == "conv":
                nodes.append(helper.make_node("Conv", [x, weight(f"{layer[1]}.weight"), weight(f"{layer[1]}.bias")],
                                              [out], kernel_shape=[layer[4]] * 2))
            elif op == "prelu":  # the slope broadcasts over channels: (C, 1, 1) after a conv, (C,) after a dense
                slope = weight(f"{layer[1]}.weight", (layer[2],) + (1,) * (rank - 2))
                nodes.append(helper.make_node("PRelu", [x, slope], [out]))
            elif op == "pool":
                nodes.append(helper.make_node("MaxPool", [x], [out], kernel_shape=[layer[1]] * 2,
                                              strides=[layer[2]] * 2, ceil_mode=1))
            elif op == "caffe_flatten":
                nodes.append(helper.make_node("Transpose", [x], [f"{out}_nwhc"], perm=[0, 3, 2, 1]))
                nodes.append(helper.make_node("Flatten", [f"{out}_nwhc"], [out], axis=1))
                rank = 2
            elif op == "dense":
                nodes.append(helper.make_node("Gemm", [x, weight(f"{layer[1]}.weight"), weight(f"{layer[1]}.bias")],
                                              [out], transB=1))
            elif op == "softmax":
                nodes.append(helper.make_node("Softmax", [x], [out], axis=1))
            else:
                raise ValueError(f"unknown layer {layer!r}")
            x = out
        return x, rank

    side = spec.input_side
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, side or "height", side or "width"])
    trunk, rank = apply(spec.trunk, "image", 4)
    outputs = []
    for head, layers in spec.heads.items():
        apply(layers, trunk, rank, final=head)
        channels = next(layer[3] for layer in layers if layer[0] in ("conv", "dense"))
        shape = ["batch", channels] + (["out_height", "out_width"] if rank == 4 else [])
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, name, [image], outputs, initializers)
    model = helper.make_model(graph, producer_name="crres_sdk.mtcnn_convert",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    checker.check_model(model, full_check=True)  # full_check also runs strict shape inference
    return model


# --------------------------------------------------------------------------------------------------------------
# Wheel and bundle
# --------------------------------------------------------------------------------------------------------------

def downloads_dir() -> Path:
    """Where downloaded archives are kept: beside the user's model bundles ($XDG_CACHE_HOME/crres/downloads)."""
    return user_models_dir().parent / "downloads"


def fetch_wheel(cache: Path | None = None) -> Path:
    """The pinned facenet-pytorch wheel in ``cache`` (default :func:`downloads_dir`), downloaded with
    ``pip download --no-deps`` when missing or not the pinned file."""
    wheel = Path(cache or downloads_dir()) / WHEEL_NAME
    if wheel.is_file() and sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info("downloading %s (weights only, --no-deps) into %s ...", WHEEL_REQUIREMENT, wheel.parent)
    with tempfile.TemporaryDirectory(dir=wheel.parent, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", WHEEL_REQUIREMENT, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        downloaded = Path(tmp) / WHEEL_NAME
        if result.returncode != 0 or not downloaded.is_file():
            raise BundleError(f"could not download {WHEEL_REQUIREMENT} ({' '.join(cmd[2:])} failed: "
                              f"{(result.stderr or result.stdout).strip()[-500:]}); download {WHEEL_NAME} "
                              "elsewhere and pass its path as `wheel`")
        _check_wheel(downloaded)
        os.replace(downloaded, wheel)  # atomic: a concurrent reader sees no wheel or the whole, checked one
    return wheel


def _check_wheel(wheel: Path) -> None:
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise BundleError(f"{wheel} has sha256 {digest}, not the pinned {WHEEL_REQUIREMENT} wheel's {WHEEL_SHA256}")


def read_wheel_weights(wheel: Path) -> dict[str, dict[str, np.ndarray]]:
    """The three state dicts in a facenet-pytorch wheel, as numpy arrays, each checked against its network."""
    weights = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name, spec in NETWORKS.items():
                member = f"facenet_pytorch/data/{name}.pt"
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise BundleError(f"{wheel} has no {member}: not a facenet-pytorch wheel") from None
                if info.file_size > MAX_WEIGHT_FILE_BYTES:
                    raise BundleError(f"{wheel}!{member} is {info.file_size} bytes, too large for MTCNN weights")
                what = f"{wheel.name}!{member}"
                state = read_state_dict(zf.read(info), what)
                check_state_dict(state, spec, what)
                weights[name] = state
    except zipfile.BadZipFile as e:
        raise BundleError(f"{wheel} is not a wheel (zip) file: {e}") from None
    return weights


def build_bundle(out_dir: Path, wheel: Path | None = None) -> Path:
    """Write the MTCNN bundle (pnet/rnet/onet.onnx + manifest.json) into ``out_dir`` and return ``out_dir``.

    ``wheel``: a local copy of the facenet-pytorch 2.6.0 wheel; None downloads it once into :func:`downloads_dir`.
    Either way its sha256 must match the pinned one. Files are written in a folder inside ``out_dir`` and moved in,
    the manifest last, so an interrupted build never leaves a manifest that lists half-written files.
    """
    out_dir = Path(out_dir)
    if wheel is None:
        wheel = fetch_wheel()
    else:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise FileNotFoundError(f"wheel {wheel} does not exist")
        _check_wheel(wheel)
    onnx = require("onnx", "building the MTCNN detector bundle")  # reading weights alone does not need it

    weights = read_wheel_weights(wheel)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        for name, state in weights.items():
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(build_graph(name, state), str(path))
            files[name] = {"path": path.name, "sha256": sha256_file(path)}
            LOGGER.info("  %s: %s (%.0f KiB)", name, out_dir / path.name, path.stat().st_size / 1024)
        manifest = {
            "format": "crres-bundle/1",
            "name": "mtcnn",
            "version": "facenet-pytorch-2.6.0",
            "task": "face-detection",
            "input": {"size": None, "color": "rgb", "mean": [127.5] * 3, "std": [128.0] * 3},
            "files": {"onnx": files},
            # Zhang et al. 2016 defaults, as facenet-pytorch uses them.
            "detector": {"thresholds": [0.6, 0.7, 0.7], "pyramid_factor": 0.709, "min_face": 12,
                         "cell_size": 12, "stride": 2, "rnet_size": 24, "onet_size": 48},
            "source": {"package": WHEEL_REQUIREMENT, "wheel_sha256": WHEEL_SHA256, "licence": "MIT",
                       "files": [f"facenet_pytorch/data/{n}.pt" for n in NETWORKS],
                       "converted_by": __name__, "opset": OPSET},
        }
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (out_dir / "manifest.json").unlink(missing_ok=True)
        for name in [*files, "manifest"]:
            filename = f"{name}.onnx" if name in files else "manifest.json"
            os.replace(Path(tmp) / filename, out_dir / filename)
    return out_dir


__all__ = ["build_bundle", "fetch_wheel", "read_wheel_weights", "read_state_dict", "build_graph",
           "downloads_dir", "UnsafePickleError", "NETWORKS", "WHEEL_SHA256"]
