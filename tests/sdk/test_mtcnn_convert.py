"""The torch-free MTCNN bundle converter (crres_sdk.mtcnn_convert, issue 21 item 2).

* The converter never imports torch: a subprocess with torch blocked builds the bundle, byte-identical to the
  one built here (the files and their sha256s are reproducible).
* Its restricted unpickler refuses every global a state dict does not need (``os.system`` included) without
  running it, in both torch.save formats, and reads what torch.save writes (views, strides, dtypes) exactly.
* Parity: the ONNX graphs match facenet-pytorch's own networks (its ``mtcnn.py`` from the wheel, weights loaded by
  torch) on random and real inputs, and FaceDetector finds the same faces on the astronaut with the converted
  bundle as with a bundle exported from those networks by ``torch.onnx.export``.

The wheel comes from ``~/.cache/crres/downloads`` (downloaded once with pip); tests that need it skip without it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap
import types
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest

from crres_sdk.bundle import load_bundle, sha256_file
from crres_sdk.errors import BundleError
from crres_sdk.mtcnn_convert import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    NETWORKS,
    UnsafePickleError,
    build_bundle,
    check_state_dict,
    fetch_wheel,
    read_state_dict,
    read_wheel_weights,
)
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def wheel() -> Path:
    try:
        return fetch_wheel()
    except BundleError as e:
        pytest.skip(f"the facenet-pytorch wheel is not cached and cannot be downloaded: {e}")


@pytest.fixture(scope="module")
def bundle(wheel, tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("converted") / "mtcnn", wheel)


# ---------------------------------------------------------------------------------------------- no torch needed

def test_builds_without_torch_and_reproducibly(wheel, bundle, tmp_path):
    out = tmp_path / "mtcnn"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        from pathlib import Path
        from crres_sdk.mtcnn_convert import build_bundle
        build_bundle(Path({str(out)!r}), Path({str(wheel)!r}))
        print(sorted(m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert json.loads((out / "manifest.json").read_text()) == json.loads((bundle / "manifest.json").read_text())


def test_bundle_is_what_the_detector_loads(bundle, wheel):
    loaded = load_bundle(bundle, task="face-detection")  # checks the manifest and every sha256
    assert sorted(loaded.manifest["files"]["onnx"]) == ["onet", "pnet", "rnet"]
    assert loaded.manifest["source"]["wheel_sha256"] == sha256_file(wheel)
    for name, spec in NETWORKS.items():
        session = ort.InferenceSession(str(loaded.file("onnx", name)), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == list(spec.heads)
        side = spec.input_side or 31
        outputs = session.run(None, {"image": np.zeros((3, 3, side, side), np.float32)})
        assert all(o.shape[0] == 3 for o in outputs)


def test_build_refuses_a_wrong_or_missing_wheel(tmp_path):
    fake = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    fake.write_bytes(b"not the pinned wheel")
    with pytest.raises(BundleError, match="sha256"):
        build_bundle(tmp_path / "out", fake)
    with pytest.raises(FileNotFoundError):
        build_bundle(tmp_path / "out", tmp_path / "absent.whl")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_build_names_the_extra_when_onnx_is_missing(wheel, tmp_path, monkeypatch):
    from crres_sdk.dependencies import MissingDependencyError

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"crres\[convert\]"):
        build_bundle(tmp_path / "out", wheel)
    assert not (tmp_path / "out" / "manifest.json").exists()


# ---------------------------------------------------------------------------------------- the restricted unpickler

def _zip_pt(pickled: bytes, storages: dict[str, bytes] | None = None) -> bytes:
    """A .pt file in torch.save's zip layout around a given pickle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickled)
        zf.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", raw)
    return buf.getvalue()


def _legacy_pt(pickled: bytes) -> bytes:
    """A .pt file in torch.save's legacy layout (magic, protocol, sys info, then the object's pickle)."""
    header = [LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}]
    return b"".join(pickle.dumps(obj, protocol=2) for obj in header) + pickled


def _call_pickle(module: str, name: str, arg: str) -> bytes:
    """A protocol-0 pickle that calls module.name(arg) when unpickled."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def test_the_payload_is_live(tmp_path):
    """An unrestricted unpickler does run the payload, so the refusals below are real refusals."""
    marker = tmp_path / "pwned"
    pickle.loads(_call_pickle("os", "system", f"touch {marker}"))
    assert marker.exists()


@pytest.mark.parametrize("layout", [_zip_pt, _legacy_pt])
@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("torch", "load"),
                                         ("torch._utils", "_rebuild_parameter")])
def test_unpickler_refuses_other_globals(tmp_path, layout, module, name):
    marker = tmp_path / "pwned"
    data = layout(_call_pickle(module, name, f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        read_state_dict(data, "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("target,attribute,value", [
    (b"ctorch._utils\n_rebuild_tensor_v2\n", "__defaults__", b"K\x01\x85"),  # a default argument of the rebuilder
    (b"ctorch\nFloatStorage\n", "dtype", b"X\x01\x00\x00\x00O"),  # the dtype a float storage stands for
    (b"ccollections\nOrderedDict\n", "__init__", b"N"),  # the container class
])
def test_a_pickle_cannot_alter_the_allowed_globals(target, attribute, value):
    """BUILD with slot state (setattr) aimed at an allowed global fails, and the next file reads as before."""
    name = attribute.encode()
    build = b"\x80\x02" + target + b"N}X" + struct.pack("<I", len(name)) + name + value + b"s\x86b."
    with pytest.raises(BundleError, match="not a readable"):
        read_state_dict(_zip_pt(build))
    storage = np.arange(4, dtype="<f4").tobytes()
    got = read_state_dict(_zip_pt(_tensor_pickle(4, 4), {"0": storage}))["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [0, 1, 2, 3])


def test_wheel_reader_refuses_a_payload(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(evil, "w") as zf:
        for name in NETWORKS:
            zf.writestr(f"facenet_pytorch/data/{name}.pt", _zip_pt(_call_pickle("os", "system", f"touch {marker}")))
    with pytest.raises(UnsafePickleError, match="pnet.pt.*os.system"):
        read_wheel_weights(evil)
    assert not marker.exists()


def _tensor_pickle(numel: int, size: int, offset: int = 0) -> bytes:
    """A hand-written state dict {'w': tensor} over a float storage of ``numel`` elements (protocol 2)."""
    def text(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    ordered_dict = b"ccollections\nOrderedDict\n)R"
    pid = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + b"J" + struct.pack(
        "<i", numel) + b"tQ"
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"J" + struct.pack("<i", offset)
              + b"J" + struct.pack("<i", size) + b"\x85K\x01\x85\x89" + ordered_dict + b"tR")
    return b"\x80\x02" + ordered_dict + text("w") + tensor + b"s."


def test_unpickler_checks_views_and_storages():
    storage = np.arange(4, dtype="<f4").tobytes()
    np.testing.assert_array_equal(read_state_dict(_zip_pt(_tensor_pickle(4, 3, 1), {"0": storage}))["w"], [1, 2, 3])
    with pytest.raises(BundleError, match="past the end"):
        read_state_dict(_zip_pt(_tensor_pickle(4, 8), {"0": storage}))
    with pytest.raises(BundleError, match="past the end"):
        read_state_dict(_zip_pt(_tensor_pickle(4, 4, 1), {"0": storage}))
    with pytest.raises(BundleError, match="bytes"):
        read_state_dict(_zip_pt(_tensor_pickle(5, 4), {"0": storage}))
    with pytest.raises(BundleError, match="missing"):
        read_state_dict(_zip_pt(_tensor_pickle(4, 4)))
    with pytest.raises(BundleError, match="not a state dict"):
        read_state_dict(_zip_pt(pickle.dumps([1, 2], protocol=2)))


def test_reads_what_torch_saves():
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = OrderedDict(base=base, view=base[1:, ::2], transposed=base.t(), float64=torch.randn(3, dtype=torch.float64),
                        int64=torch.arange(5), flags=torch.tensor([True, False]), empty=torch.zeros(0, 3))
    for zip_format in (True, False):
        buf = io.BytesIO()
        torch.save(state, buf, _use_new_zipfile_serialization=zip_format)
        got = read_state_dict(buf.getvalue())
        assert list(got) == list(state)
        for key, tensor in state.items():
            assert got[key].dtype == tensor.numpy().dtype and got[key].flags.c_contiguous
            np.testing.assert_array_equal(got[key], tensor.numpy())


def test_refuses_truncated_and_wrong_weights(wheel):
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read("facenet_pytorch/data/pnet.pt")
    state = read_state_dict(data)
    check_state_dict(state, NETWORKS["pnet"], "pnet")
    with pytest.raises(BundleError, match="truncated"):
        read_state_dict(data[:-100])
    with pytest.raises(BundleError, match="PyTorch"):
        read_state_dict(data[:1000])
    with pytest.raises(BundleError, match="missing"):
        check_state_dict({k: v for k, v in state.items() if k != "conv2.bias"}, NETWORKS["pnet"], "pnet")
    with pytest.raises(BundleError, match="float32"):
        check_state_dict({**state, "conv1.weight": state["conv1.weight"][:5]}, NETWORKS["pnet"], "pnet")
    with pytest.raises(BundleError, match="NaN"):
        check_state_dict({**state, "prelu1.weight": np.full(10, np.nan, np.float32)}, NETWORKS["pnet"], "pnet")
    with pytest.raises(BundleError, match="missing"):
        check_state_dict(state, NETWORKS["rnet"], "rnet")


# ----------------------------------------------------------------------------------- parity with facenet-pytorch

#: facenet-pytorch's forward returns (reg, prob) and (reg, landmarks, prob); the bundle's order is NETWORKS' heads.
FACENET_OUTPUTS = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"), "onet": ("reg", "landmarks", "prob")}


@pytest.fixture(scope="module")
def facenet(wheel, tmp_path_factory):
    """facenet-pytorch's own PNet/RNet/ONet (its mtcnn.py from the wheel), weights loaded by torch.load."""
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("facenet")
    with zipfile.ZipFile(wheel) as zf:
        for member in ["facenet_pytorch/models/mtcnn.py", *(f"facenet_pytorch/data/{n}.pt" for n in NETWORKS)]:
            zf.extract(member, root)
    with pytest.MonkeyPatch.context() as mp:
        # mtcnn.py imports its detection helpers (which need torchvision); the networks do not use them.
        for package in ("facenet_pytorch", "facenet_pytorch.models", "facenet_pytorch.models.utils"):
            module = types.ModuleType(package)
            module.__path__ = []
            mp.setitem(sys.modules, package, module)
        helpers = types.ModuleType("facenet_pytorch.models.utils.detect_face")
        helpers.detect_face = helpers.extract_face = None
        mp.setitem(sys.modules, helpers.__name__, helpers)
        spec = importlib.util.spec_from_file_location("facenet_pytorch.models.mtcnn",
                                                      root / "facenet_pytorch" / "models" / "mtcnn.py")
        mtcnn = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mtcnn)
        nets = {"pnet": mtcnn.PNet(), "rnet": mtcnn.RNet(), "onet": mtcnn.ONet()}
    return torch, {name: net.eval() for name, net in nets.items()}


def _run_facenet(facenet, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    torch, nets = facenet
    with torch.no_grad():
        return {k: v.numpy() for k, v in zip(FACENET_OUTPUTS[name], nets[name](torch.from_numpy(x)))}


def _run_onnx(bundle: Path, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(bundle / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": x})))


def _normalise(rgb: np.ndarray) -> np.ndarray:
    return ((rgb.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]


def _real_inputs(name: str) -> np.ndarray:
    """The astronaut as the detector feeds each stage: whole pyramid levels for P-Net, face and background crops
    for R-Net/O-Net."""
    rgb = astronaut_bgr()[:, :, ::-1]
    if name == "pnet":
        return _normalise(cv2.resize(rgb, (154, 154), interpolation=cv2.INTER_AREA))
    side = NETWORKS[name].input_side
    (x0, y0), (x1, y1) = ASTRONAUT_LANDMARKS.min(0), ASTRONAUT_LANDMARKS.max(0)
    face = (int(x0 - 25), int(y0 - 35), int(x1 + 25), int(y1 + 25))
    boxes = [face, (0, 0, 100, 100), (300, 300, 420, 420), (face[0] + 8, face[1] - 6, face[2] + 8, face[3] - 6)]
    return np.concatenate([_normalise(cv2.resize(rgb[t:b, l:r], (side, side), interpolation=cv2.INTER_AREA))
                           for l, t, r, b in boxes])


@pytest.mark.parametrize("name", list(NETWORKS))
def test_onnx_matches_facenet_pytorch(bundle, facenet, name):
    rng = np.random.default_rng(21)
    side = NETWORKS[name].input_side
    inputs = [rng.uniform(-1, 1, (1, 3, side or 12, side or 12)), rng.uniform(-1, 1, (3, 3, side or 57, side or 41)),
              _real_inputs(name)]
    worst = 0.0
    for x in inputs:
        x = x.astype(np.float32)
        expected, got = _run_facenet(facenet, name, x), _run_onnx(bundle, name, x)
        assert got.keys() == expected.keys()
        for head in got:
            assert got[head].shape == expected[head].shape
            worst = max(worst, float(np.abs(got[head] - expected[head]).max()))
    assert worst <= 1e-5, f"{name}: max |onnx - facenet-pytorch| = {worst:.2e}"
    if name != "pnet":  # the face crop is a face to both, the background crop is not (real weights, real image)
        prob = _run_onnx(bundle, name, _real_inputs(name).astype(np.float32))["prob"][:, 1]
        assert prob[0] > 0.9 and prob[1] < 0.5


def _torch_exported_bundle(facenet, converted: Path, out: Path) -> Path:
    """The converted bundle's manifest with files exported from facenet-pytorch's networks by torch.onnx.export."""
    torch, nets = facenet

    class InBundleOrder(torch.nn.Module):
        def __init__(self, net, name):
            super().__init__()
            self.net, self.order = net, [FACENET_OUTPUTS[name].index(h) for h in NETWORKS[name].heads]

        def forward(self, image):
            outputs = self.net(image)
            return tuple(outputs[i] for i in self.order)

    shutil.copytree(converted, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for name, spec in NETWORKS.items():
        path = out / f"{name}.onnx"
        axes = {0: "batch", 2: "height", 3: "width"} if spec.input_side is None else {0: "batch"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(InBundleOrder(nets[name], name), (torch.zeros(2, 3, spec.input_side or 31,
                                                                            spec.input_side or 37),),
                              str(path), input_names=["image"], output_names=list(spec.heads),
                              dynamic_axes={"image": axes}, opset_version=17, dynamo=False)
        manifest["files"]["onnx"][name]["sha256"] = sha256_file(path)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_detector_finds_the_same_face_with_both_bundles(bundle, facenet, tmp_path):
    from crres_sdk.detector import FaceDetector

    exported = _torch_exported_bundle(facenet, bundle, tmp_path / "torch_exported")
    assert sha256_file(exported / "onet.onnx") != sha256_file(bundle / "onet.onnx")  # really a different file
    frame = astronaut_bgr()
    found = {}
    for label, path in (("converted", bundle), ("torch", exported)):
        detector = FaceDetector(bundle=path, backend="onnxruntime", estimate_resolution=False, threads=1)
        found[label] = detector.detect_arrays(frame)
    ours, theirs = found["converted"], found["torch"]
    assert len(ours.scores) >= 1 and len(ours.scores) == len(theirs.scores)
    np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-3)
    np.testing.assert_allclose(ours.landmarks, theirs.landmarks, atol=1e-3)
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5)
    assert np.abs(ours.landmarks[0] - ASTRONAUT_LANDMARKS).max() < 6  # and it is her face, where annotated


def test_export_script_front_end(wheel, bundle, tmp_path, capsys):
    """export/detector_bundle.py (what make setup runs) builds the same bundle and reports a bad wheel as an error."""
    from export.detector_bundle import main

    assert main(["--out", str(tmp_path / "mtcnn"), "--wheel", str(wheel)]) == 0
    assert (tmp_path / "mtcnn" / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    assert main(["--out", str(tmp_path / "bad"), "--wheel", str(tmp_path / "mtcnn" / "manifest.json")]) == 1
    assert "sha256" in capsys.readouterr().err
