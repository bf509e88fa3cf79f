"""dlib's face recognition ResNet: the serialisation reader, the torch port and its chip geometry.

* The reader is checked on byte patterns of dlib's own encodings and on a whole network file this test writes
  with random weights (every weight must come back in its place).
* The port is checked against dlib itself (``pip install ".[dlib-check]"``, the prebuilt ``dlib-bin``) on a
  real face chip; it skips without dlib or without the fetched weights (``make pretrained``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.dlib_serialization import (INPUT_RGB, DlibFormatError, DlibReader, DlibWriter, read_network)
from training.models import get_model
from training.models.dlib_resnet import (CHIP_FROM_TEMPLATE, CHIP_SIZE, DLIB_MEAN_RGB, DlibResNet,
                                         add_zero_padded)

torch.set_num_threads(2)


# --- primitive encodings ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, value", [
    (b"\x01\x0d", 13),                 # the length of "loss_metric_2" in the real file's header
    (b"\x01\x00", 0),
    (b"\x81\x1c", -28),                # sign bit 0x80 with one magnitude byte
    (b"\x03\x0a\xd7\xa3", 0xA3D70A),   # three little-endian bytes
])
def test_integers_decode_like_dlib(raw, value):
    assert DlibReader(raw).int() == value
    assert DlibWriter().int(value).getvalue() == raw


def test_floats_are_mantissa_times_two_to_the_exponent():
    # loss_metric_'s margin in dlib_face_recognition_resnet_model_v1.dat: 0xA3D70A * 2**-28 = 0.04
    assert DlibReader(b"\x03\x0a\xd7\xa3\x81\x1c").float() == pytest.approx(0.04, abs=1e-9)
    for value in (122.782, -3.5e-7, 1.0, 0.0):
        assert DlibReader(DlibWriter().float(value).getvalue()).float() == value


def test_tensor_roundtrip_and_bad_streams():
    data = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    assert np.array_equal(DlibReader(DlibWriter().tensor(data).getvalue()).tensor(), data)
    with pytest.raises(DlibFormatError, match="runs past the end"):
        DlibReader(DlibWriter().tensor(data).getvalue()[:-4]).tensor()
    with pytest.raises(DlibFormatError, match="bad integer header"):
        DlibReader(b"\x09\x00").int()
    with pytest.raises(DlibFormatError, match="bad bool"):
        DlibReader(b"x").bool()
    with pytest.raises(DlibFormatError, match="version"):
        DlibReader(DlibWriter().int(3).getvalue()).tensor()


# --- a whole network file, written here ------------------------------------------------------------------------

def _layer_state(w: DlibWriter, input_level: bool = False) -> None:
    w.bool(True).bool(True).bool(False)
    for _ in range(3):
        w.tensor(np.zeros((0, 0, 0, 0), np.float32))
    if input_level:
        w.int(1)


def _write_con(w: DlibWriter, conv: torch.nn.Conv2d) -> None:
    weight = conv.weight.detach().numpy()
    bias = conv.bias.detach().numpy()
    n, k, kh, kw = weight.shape
    w.string("con_4").tensor(np.concatenate([weight.ravel(), bias]).reshape(1, -1, 1, 1))
    w.int(n).int(kh).int(kw).int(conv.stride[0]).int(conv.stride[1]).int(conv.padding[0]).int(conv.padding[1])
    w.alias_tensor((n, k, kh, kw)).alias_tensor((1, n, 1, 1))
    for _ in range(4):
        w.float(1.0)


def _write_affine(w: DlibWriter, affine) -> None:
    g, b = affine.weight.detach().numpy(), affine.bias.detach().numpy()
    w.string("affine_").tensor(np.concatenate([g, b]).reshape(1, -1, 1, 1))
    w.alias_tensor((1, g.size, 1, 1)).alias_tensor((1, g.size, 1, 1)).int(0)


def _write_network(net: DlibResNet) -> bytes:
    """dlib's layout of anet_type: loss, wrapper versions, input layer, then layer details from the input out."""
    w = DlibWriter()
    w.int(1).string("loss_metric_2").float(0.04).float(0.6)
    for _ in range(150):
        w.int(2)
    w.int(3).string(INPUT_RGB)
    for m in DLIB_MEAN_RGB:
        w.float(m)
    w.int(CHIP_SIZE).int(CHIP_SIZE)

    def simple(kind: str) -> None:
        w.string(kind)
        _layer_state(w)

    _write_con(w, net.conv1)
    _layer_state(w, input_level=True)
    _write_affine(w, net.affine1)
    _layer_state(w)
    simple("relu_")
    w.string("max_pool_2").int(3).int(3).int(2).int(2).int(0).int(0)
    _layer_state(w)
    for level in net.levels:
        for block in level:
            for conv, affine in ((block.conv1, block.affine1), (block.conv2, block.affine2)):
                _write_con(w, conv)
                _layer_state(w)
                _write_affine(w, affine)
                _layer_state(w)
                if conv is block.conv1:
                    simple("relu_")
            if block.downsample:
                w.string("avg_pool_2").int(2).int(2).int(2).int(2).int(0).int(0)
                _layer_state(w)
            simple("add_prev_")
            simple("relu_")
    w.string("avg_pool_2").int(0).int(0).int(1).int(1).int(0).int(0)
    _layer_state(w)
    fc = net.fc.weight.detach().numpy()                      # (out, in); dlib stores in x out
    w.string("fc_2").int(fc.shape[0]).int(fc.shape[1]).tensor(fc.T.reshape(1, -1, 1, 1))
    w.alias_tensor((fc.shape[1], fc.shape[0], 1, 1)).alias_tensor((0, 0, 0, 0)).int(1)
    for _ in range(4):
        w.float(1.0)
    _layer_state(w)
    return w.getvalue()


def test_reader_puts_every_weight_of_a_written_network_in_its_place():
    torch.manual_seed(3)
    source = DlibResNet()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    parsed = read_network(_write_network(source))
    assert parsed.input_size == (150, 150)
    assert parsed.loss["distance_threshold"] == pytest.approx(0.6)
    assert sum(layer.kind == "con" for layer in parsed.layers) == 29
    loaded = DlibResNet().load_dlib(parsed)
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_reader_refuses_a_truncated_or_foreign_file():
    data = _write_network(DlibResNet())
    with pytest.raises(DlibFormatError):
        read_network(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="loss"):
        read_network(DlibWriter().int(1).string("loss_multiclass_log_").getvalue())


def test_zero_padded_add_matches_dlib_add_prev_semantics():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 4, 4, 4), 2.0)
    out = add_zero_padded(a, b)
    assert out.shape == (1, 4, 4, 4)
    assert torch.all(out[:, :2, :3, :3] == 3) and torch.all(out[:, 2:] == 2) and torch.all(out[:, :2, 3, :] == 2)


def test_the_template_model_samples_dlibs_chip_like_warp_affine():
    """The in-network 112 -> 150 chip map is cv2.warpAffine's bilinear warp with CHIP_FROM_TEMPLATE."""
    import cv2

    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.uniform(0, 255, (112, 112, 3)).astype(np.float32), (0, 0), 2.0)
    model = get_model("dlib_resnet")
    x = torch.from_numpy((crop - 127.5) / 128.0).permute(2, 0, 1)[None]
    chip = model.to_chip(x)[0].permute(1, 2, 0).numpy() * 256.0 + np.array(DLIB_MEAN_RGB, np.float32)
    ref = cv2.warpAffine(crop, CHIP_FROM_TEMPLATE, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=DLIB_MEAN_RGB)
    inside = cv2.warpAffine(np.ones((112, 112), np.float32), CHIP_FROM_TEMPLATE, (CHIP_SIZE, CHIP_SIZE)) > 0.999
    assert inside.mean() > 0.8
    assert np.abs(chip - ref)[inside].max() < 0.05
    # Scale and rotation as fitted from dlib's own landmarks (docs/results/dlib_chip_geometry.json).
    assert math.hypot(CHIP_FROM_TEMPLATE[0, 0], CHIP_FROM_TEMPLATE[1, 0]) == pytest.approx(1.466, abs=1e-3)


# --- against dlib itself ---------------------------------------------------------------------------------------

def test_torch_forward_equals_dlib_compute_face_descriptor():
    dlib = pytest.importorskip("dlib", reason="dlib-bin not installed (pip install '.[dlib-check]')")
    from skimage import data

    from training.pretrained import pretrained_file

    try:
        weights = pretrained_file("dlib_face_recognition_resnet_v1")
        landmarks = pretrained_file("dlib_shape_predictor_5")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmarks))
    chips = []
    for image in (data.astronaut(), np.ascontiguousarray(data.astronaut()[:, ::-1])):
        for rect in detector(image, 1):
            chips.append(dlib.get_face_chip(image, predictor(image, rect), size=150, padding=0.25))
    assert len(chips) >= 2
    recogniser = dlib.face_recognition_model_v1(str(weights))
    reference = np.array([np.array(recogniser.compute_face_descriptor(c)) for c in chips])
    net = get_model("dlib_resnet").load_dlib_file(weights).net.eval()
    x = (torch.from_numpy(np.stack(chips)).float().permute(0, 3, 1, 2)
         - torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1)) / 256.0
    with torch.no_grad():
        ours = net(x).numpy()
    assert np.abs(ours - reference).max() < 1e-5
    assert np.linalg.norm(reference[0] - reference[1]) > 1e-3  # two different chips, not one checked twice
