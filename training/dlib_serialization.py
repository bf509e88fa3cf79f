"""Reader (and a small writer, for tests) of dlib's serialisation, enough for a ``loss_metric`` ResNet.

dlib writes a network as nested layers (``dlib/dnn/core.h``): each ``add_layer`` writes its version and
then its *subnetwork* first, so the stream holds the versions of every wrapper from the outermost inwards,
then the input layer, then each layer's details on the way back out (innermost first). Tag and skip layers
write only their version. Primitive encodings (``dlib/serialize.h``, ``dlib/dnn/tensor.h``):

* integers: one byte ``size | 0x80 if negative``, then ``size`` little-endian magnitude bytes;
* ``float``/``double``: integer mantissa then integer exponent, value = mantissa * 2**exponent;
* ``bool``: the character ``'1'`` or ``'0'``; ``std::string``: integer length, then the bytes;
* ``tensor`` (version 2): four integers (num_samples, k, nr, nc), then little-endian IEEE float32 data;
* ``alias_tensor`` (version 1): four integers, no data (a view into the layer's ``params``).

Nothing here executes code from the file: it only reads numbers and names.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """The stream is not the dlib serialisation this reader understands."""


@dataclass
class DlibLayer:
    """One layer's details as stored: its type name, parameters and the scalar fields that matter."""

    kind: str
    params: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    fields: dict = field(default_factory=dict)


class DlibReader:
    """Sequential reader over dlib's primitive encodings."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)
        self.size = len(data)

    def _read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise DlibFormatError(f"unexpected end of stream at byte {self.tell()} (wanted {n} bytes)")
        return data

    def tell(self) -> int:
        return self.stream.tell()

    def peek(self, n: int) -> bytes:
        pos = self.tell()
        data = self.stream.read(n)
        self.stream.seek(pos)
        return data

    def int(self) -> int:
        head = self._read(1)[0]
        size, negative = head & 0x0F, bool(head & 0x80)
        if size == 0 or size > 8 or head & 0x70:
            raise DlibFormatError(f"bad integer header 0x{head:02x} at byte {self.tell() - 1}")
        value = int.from_bytes(self._read(size), "little")
        return -value if negative else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        # float_details uses these exponents for the special values.
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        ch = self._read(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.tell() - 1}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        if not 0 <= n <= 1 << 20:
            raise DlibFormatError(f"implausible string length {n}")
        return self._read(n).decode("ascii")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise DlibFormatError(f"negative tensor shape {shape}")
        count = math.prod(shape)
        if 4 * count > self.size - self.tell():
            raise DlibFormatError(f"tensor of shape {shape} runs past the end of the stream")
        return np.frombuffer(self._read(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version}, expected 1")
        return tuple(self.int() for _ in range(4))


class DlibWriter:
    """The inverse encodings, so tests can build small files of their own."""

    def __init__(self) -> None:
        self.out = io.BytesIO()

    def int(self, value: int) -> "DlibWriter":
        magnitude = abs(int(value))
        raw = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
        self.out.write(bytes([len(raw) | (0x80 if value < 0 else 0)]) + raw)
        return self

    def float(self, value: float) -> "DlibWriter":
        mantissa, exponent = math.frexp(value)
        m = int(round(mantissa * (1 << 53)))
        return self.int(m).int(exponent - 53)

    def bool(self, value: bool) -> "DlibWriter":
        self.out.write(b"1" if value else b"0")
        return self

    def string(self, value: str) -> "DlibWriter":
        self.int(len(value))
        self.out.write(value.encode("ascii"))
        return self

    def tensor(self, array: np.ndarray) -> "DlibWriter":
        shape = (list(array.shape) + [1, 1, 1, 1])[:4] if array.ndim < 4 else list(array.shape)
        self.int(2)
        for d in shape:
            self.int(d)
        self.out.write(np.ascontiguousarray(array, dtype="<f4").tobytes())
        return self

    def alias_tensor(self, shape: tuple[int, int, int, int]) -> "DlibWriter":
        self.int(1)
        for d in shape:
            self.int(d)
        return self

    def getvalue(self) -> bytes:
        return self.out.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Layer details (dlib/dnn/layers.h, input.h, loss.h)

def _read_layer_details(r: DlibReader) -> DlibLayer:
    kind = r.string()
    if kind == "con_4":
        params = r.tensor().reshape(-1)
        fields = {"num_filters": r.int(), "nr": r.int(), "nc": r.int(), "stride_y": r.int(), "stride_x": r.int(),
                  "padding_y": r.int(), "padding_x": r.int(), "filters": r.alias_tensor(), "biases": r.alias_tensor()}
        for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            fields[name] = r.float()
        return DlibLayer("con", params, fields)
    if kind == "affine_":
        params = r.tensor().reshape(-1)
        fields = {"gamma": r.alias_tensor(), "beta": r.alias_tensor(), "mode": r.int()}
        return DlibLayer("affine", params, fields)
    if kind == "relu_":
        return DlibLayer("relu")
    if kind in ("max_pool_2", "avg_pool_2"):
        fields = {"nr": r.int(), "nc": r.int(), "stride_y": r.int(), "stride_x": r.int(),
                  "padding_y": r.int(), "padding_x": r.int()}
        return DlibLayer(kind[:-2], fields=fields)
    if kind == "fc_2":
        fields = {"num_outputs": r.int(), "num_inputs": r.int()}
        params = r.tensor().reshape(-1)
        fields.update(weights=r.alias_tensor(), biases=r.alias_tensor(), bias_mode=r.int())
        for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            fields[name] = r.float()
        return DlibLayer("fc", params, fields)
    if kind == "add_prev_":
        return DlibLayer("add_prev")
    raise DlibFormatError(f"unsupported dlib layer {kind!r} at byte {r.tell()}")


def _skip_layer_state(r: DlibReader, input_level: bool) -> None:
    """The per-layer training state after the details: three bools and three (normally empty) tensors."""
    for _ in range(3):
        r.bool()
    for _ in range(3):  # x_grad, cached_output, params_grad (grad_final at the input level)
        r.tensor()
    if input_level:  # add_layer over the input layer (version 3) also stores its sample expansion factor
        r.int()


INPUT_RGB = "input_rgb_image_sized"


@dataclass
class DlibNetwork:
    """A parsed metric-learning network: input normalisation, layers from the input outwards, loss settings."""

    input_mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]
    loss: dict


def read_network(data: bytes) -> DlibNetwork:
    """Parse a ``loss_metric`` network whose input layer is ``input_rgb_image_sized``."""
    r = DlibReader(data)
    if r.int() != 1:
        raise DlibFormatError("not a dlib add_loss_layer (version 1 expected)")
    loss_kind = r.string()
    if loss_kind != "loss_metric_2":
        raise DlibFormatError(f"unsupported loss {loss_kind!r}; only loss_metric_2 networks are read")
    loss = {"margin": r.float(), "distance_threshold": r.float()}
    # Versions of the wrappers, outermost first, until the input layer's name appears.
    wrappers = 0
    marker = bytes([1, len(INPUT_RGB)]) + INPUT_RGB.encode()
    while r.peek(len(marker)) != marker:
        version = r.int()
        if version not in (1, 2, 3):
            raise DlibFormatError(f"unexpected layer version {version} at byte {r.tell()}")
        wrappers += 1
        if wrappers > 10_000:
            raise DlibFormatError("no input layer found")
    r.string()
    mean = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    layers = []
    while r.tell() < r.size:
        layer = _read_layer_details(r)
        _skip_layer_state(r, input_level=not layers)
        layers.append(layer)
    return DlibNetwork(input_mean_rgb=mean, input_size=size, layers=layers, loss=loss)


def read_network_file(path: str | Path) -> DlibNetwork:
    return read_network(Path(path).read_bytes())


def conv_weights(layer: DlibLayer) -> tuple[np.ndarray, np.ndarray | None]:
    """(weight (out, in, kh, kw), bias or None) of a ``con`` layer, from its params and alias shapes."""
    if layer.kind != "con":
        raise DlibFormatError(f"expected a con layer, got {layer.kind}")
    fshape, bshape = layer.fields["filters"], layer.fields["biases"]
    nw = math.prod(fshape)
    weight = layer.params[:nw].reshape(fshape)
    nb = math.prod(bshape)
    bias = layer.params[nw:nw + nb].reshape(-1) if nb else None
    if nw + nb != layer.params.size:
        raise DlibFormatError(f"con params hold {layer.params.size} values, aliases want {nw + nb}")
    return weight, bias


def affine_weights(layer: DlibLayer) -> tuple[np.ndarray, np.ndarray]:
    if layer.kind != "affine":
        raise DlibFormatError(f"expected an affine layer, got {layer.kind}")
    n = math.prod(layer.fields["gamma"])
    if layer.params.size != 2 * n:
        raise DlibFormatError(f"affine params hold {layer.params.size} values, expected {2 * n}")
    return layer.params[:n].copy(), layer.params[n:].copy()


def fc_weights(layer: DlibLayer) -> np.ndarray:
    """The (num_outputs, num_inputs) matrix of a bias-free ``fc`` layer (dlib stores inputs x outputs)."""
    if layer.kind != "fc":
        raise DlibFormatError(f"expected an fc layer, got {layer.kind}")
    n_in, n_out = layer.fields["num_inputs"], layer.fields["num_outputs"]
    if math.prod(layer.fields["biases"]) != 0:
        raise DlibFormatError("fc layer with a bias: only fc_no_bias is supported")
    if layer.params.size != n_in * n_out:
        raise DlibFormatError(f"fc params hold {layer.params.size} values, expected {n_in * n_out}")
    return layer.params.reshape(n_in, n_out).T.copy()

