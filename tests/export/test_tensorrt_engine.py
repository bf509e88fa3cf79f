"""The TensorRT path without TensorRT: the direct build, the SDK's TensorRTSession, the engine's registration in the
manifest, backend="auto" and the device parity check, against the recording fakes in fake_tensorrt/ (README
there: they check the calls, and run the engine's ONNX file with ONNX Runtime; no TensorRT numerics here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from crres_sdk import backends
from crres_sdk.bundle import load_bundle
from crres_sdk.errors import BackendUnavailableError
from export import tensorrt_engine as te

FAKES = Path(__file__).parent / "fake_tensorrt"
SIZE = 8


@pytest.fixture
def fake_trt(monkeypatch):
    """Import the fakes as ``tensorrt`` and ``cuda.bindings.runtime`` at a TensorRT version; forget them after."""
    def forget():
        for name in [m for m in sys.modules if m == "tensorrt" or m == "cuda" or m.startswith("cuda.")]:
            sys.modules.pop(name)

    def load(version: str = "10.3.0"):
        forget()
        monkeypatch.setenv("FAKE_TENSORRT_VERSION", version)
        monkeypatch.syspath_prepend(str(FAKES))
        import tensorrt
        from cuda.bindings import runtime

        runtime.reset()
        tensorrt.CALLS.clear()
        return tensorrt, runtime

    yield load
    forget()


def tiny_onnx(path: Path) -> Path:
    """image (N, 3, 8, 8) -> embedding (N, 6): a conv and a global pool, enough to check data movement."""
    w = np.random.default_rng(0).normal(size=(6, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["embedding"])],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 6])],
        [onnx.numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("version, flags", [("8.5.2", 1), ("8.6.1", 1), ("10.3.0", 0)])
def test_direct_build_passes_explicit_batch_on_8x_only(fake_trt, tmp_path, version, flags):
    trt, _ = fake_trt(version)
    model = tiny_onnx(tmp_path / "m.onnx")
    assert te.network_flags(trt) == flags
    te.build_engine(trt, model, tmp_path / "m.engine", "image", SIZE)
    assert ("create_network", flags) in trt.CALLS
    assert not [c for c in trt.CALLS if c[0] == "deprecated"]
    assert ("set_shape", "image", (1, 3, SIZE, SIZE), (8, 3, SIZE, SIZE), (32, 3, SIZE, SIZE)) in trt.CALLS
    assert ("build_serialized_network", ["FP16", "INT8"]) in trt.CALLS
    assert (tmp_path / "m.engine").read_bytes().startswith(trt.MAGIC)


def test_the_old_implicit_batch_network_fails_on_8x(fake_trt, tmp_path):
    trt, _ = fake_trt("8.6.1")
    network = trt.Builder(trt.Logger()).create_network(0)  # what build_engine.py did before
    parser = trt.OnnxParser(network, trt.Logger())
    assert not parser.parse(tiny_onnx(tmp_path / "m.onnx").read_bytes())
    assert "explicit batch" in parser.get_error(0)


def _engine(trt, tmp_path: Path) -> tuple[Path, Path]:
    model = tiny_onnx(tmp_path / "m.onnx")
    return model, te.build_engine(trt, model, tmp_path / "m.engine", "image", SIZE)


def test_tensorrt_session_binds_copies_runs_and_frees(fake_trt, tmp_path):
    trt, cudart = fake_trt()
    model, engine = _engine(trt, tmp_path)
    reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    sess = backends.open_model(engine)  # auto: a .engine file runs on TensorRT
    assert isinstance(sess, backends.TensorRTSession) and sess.device == "cuda" and sess.trt_version == "10.3.0"
    assert sess.input_names == ["image"] and sess.output_names == ["embedding"]
    assert ("cudaSetDevice", 0) in cudart.CALLS
    x = np.random.default_rng(1).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32)
    out = sess.run({"image": x})
    np.testing.assert_allclose(out[0], reference.run(None, {"image": x})[0], rtol=1e-6)
    names = [c[0] for c in cudart.CALLS]
    assert names.index("cudaMemcpyAsync") < names.index("cudaStreamSynchronize")
    assert ("cudaMemcpyAsync", "cudaMemcpyHostToDevice", x.nbytes) in cudart.CALLS
    assert ("cudaMemcpyAsync", "cudaMemcpyDeviceToHost", 4 * 6 * 4) in cudart.CALLS
    assert ("set_input_shape", "image", (4, 3, SIZE, SIZE)) in trt.CALLS
    # a larger batch grows the buffers, a float64 batch is converted to the engine's dtype
    big = np.random.default_rng(2).normal(size=(32, 3, SIZE, SIZE))
    np.testing.assert_allclose(sess.run({"image": big})[0],
                               reference.run(None, {"image": big.astype(np.float32)})[0], rtol=1e-5)
    assert sum(1 for c in cudart.CALLS if c[0] == "cudaFree") == 2
    with pytest.raises(ValueError, match="outside the engine's optimisation profile"):
        sess.run({"image": np.zeros((33, 3, SIZE, SIZE), np.float32)})
    with pytest.raises(ValueError, match="missing inputs"):
        sess.run({"x": x})
    sess.close()
    assert cudart.MEMORY == {} and cudart.STREAMS == set()


def test_engines_of_another_version_or_an_old_tensorrt_are_refused(fake_trt, tmp_path, monkeypatch):
    trt, _ = fake_trt("10.3.0")
    _, engine = _engine(trt, tmp_path)
    fake_trt("10.4.1")
    with pytest.raises(BackendUnavailableError, match="rebuild it on this device"):
        backends.TensorRTSession(engine)
    fake_trt("8.4.3")
    with pytest.raises(BackendUnavailableError, match="too old"):
        backends.TensorRTSession(engine)
    fake_trt("10.3.0")
    with pytest.raises(ValueError, match="tensorrt backend runs on a CUDA device"):
        backends.open_model(engine, "tensorrt", device="cpu")


def test_auto_picks_a_registered_engine_of_this_tensorrt_on_a_gpu_device(fake_trt):
    fake_trt("10.3.0")
    engine = {"path": "model.int8.engine", "sha256": "0" * 64, "tensorrt": "10.3.7"}
    assert backends.auto_backends("auto", engine)[0] == "tensorrt"
    assert backends.auto_backends("cuda:0", engine)[0] == "tensorrt"
    assert "tensorrt" not in backends.auto_backends("cpu", engine)  # an explicit CPU stays on the CPU
    assert "tensorrt" not in backends.auto_backends("auto", None)
    ok, why = backends.engine_runs_here({**engine, "tensorrt": "8.6.1"})
    assert not ok and "rebuild it" in why
    assert "tensorrt" not in backends.auto_backends("auto", {**engine, "tensorrt": "8.6.1"})


def test_missing_engines_say_what_to_install(monkeypatch):
    monkeypatch.setattr(backends, "_importable", lambda name: False)
    with pytest.raises(BackendUnavailableError, match=r"crres\[ort\]"):
        backends.resolve_backend("auto")
    with pytest.raises(BackendUnavailableError, match="cuda-python"):
        backends.resolve_backend("tensorrt")
    with pytest.raises(BackendUnavailableError, match=r'pip install "crres\[tensorrt\]" \(cuda-python\)'):
        backends.cuda_runtime()
    assert not backends.engine_runs_here({"tensorrt": "10.3"})[0]


# --- the jetson bundle on a fake device ---------------------------------------------------------------------
FAKE_TRTEXEC = '''#!{python}
"""Fake trtexec: checks the command line build_engine.sh gives it and builds with the fake TensorRT."""
import sys
from pathlib import Path

args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
assert {{"--int8", "--fp16"}} <= set(sys.argv[1:]), sys.argv
shapes = [tuple(int(v) for v in args[k].split(":")[1].split("x")) for k in ("minShapes", "optShapes", "maxShapes")]
name = args["minShapes"].split(":")[0]
sys.path.insert(0, {repo!r})
import tensorrt as trt
from export import tensorrt_engine as te

te.build_engine(trt, Path(args["onnx"]), Path(args["saveEngine"]), name, shapes[0][-1],
                tuple(s[0] for s in shapes))
print("&&&& PASSED fake trtexec")
'''


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory) -> tuple[Path, Path]:
    from tests.export.test_build_engine import _make_checkpoint

    return _make_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def jetson_bundle(trained_tiny, tmp_path_factory) -> Path:
    from export.build_engine import main

    crops, checkpoint = trained_tiny
    out = tmp_path_factory.mktemp("jetson") / "bundle"
    assert main(["--target", "jetson", "--checkpoint", str(checkpoint), "--calib", str(crops), "--out", str(out),
                 "--calib-size", "96", "--lfw", "none"]) == 0
    return out


def _device_env(tmp_path: Path) -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    trtexec = bin_dir / "trtexec"
    trtexec.write_text(FAKE_TRTEXEC.format(python=sys.executable, repo=str(repo)))
    trtexec.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": sys.executable,
            "PYTHONPATH": str(FAKES), "FAKE_TENSORRT_VERSION": "10.3.0"}


def _copy(bundle: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(bundle, dst)
    return dst


def test_jetson_bundle_ships_the_device_tool_and_parity_set(jetson_bundle):
    bundle = load_bundle(jetson_bundle)
    script = bundle.file("tensorrt", "build_script").read_text()
    assert "@" not in script.replace("$@", "") and "trt_tool.py register" in script and "trt_tool.py parity" in script
    assert "--minShapes=image:1x3x" in script and "WANT=10" in script
    assert bundle.file("tensorrt", "tool").read_text() == Path(te.__file__).read_text()
    data = np.load(bundle.file("tensorrt", "parity_set"), allow_pickle=False)
    assert set(data["bands"].tolist()) == {"low", "mid", "high"} and len(data["inputs"]) == len(data["fp32"])
    assert "engine" not in bundle.manifest["files"]["tensorrt"]


def test_export_builds_and_lists_the_engine_where_tensorrt_imports(trained_tiny, fake_trt, tmp_path):
    """The exporter's direct build (TensorRT's Python builder) on a machine where TensorRT imports."""
    from export.build_engine import main

    trt, _ = fake_trt("10.3.0")
    crops, checkpoint = trained_tiny
    out = tmp_path / "bundle"
    assert main(["--target", "jetson", "--checkpoint", str(checkpoint), "--calib", str(crops), "--out", str(out),
                 "--calib-size", "96", "--lfw", "none"]) == 0
    assert ("create_network", 0) in trt.CALLS
    m = load_bundle(out).manifest
    entry = m["files"]["tensorrt"]["engine"]
    assert entry["tensorrt"] == "10.3.0" and entry["gpu"] == "Fake Orin (nvgpu)" and entry["built_with"] == "tensorrt-python"
    assert m["export"]["tensorrt"]["built"] is True
    assert te.check_parity(out)["passed"]  # through the SDK's TensorRTSession on the fakes
    # Recognizer(): device "auto" takes the registered engine; an explicit CPU keeps to the CPU engines.
    from crres_sdk import Recognizer

    with pytest.warns(UserWarning, match="accuracy gate was not run"):  # built with --lfw none
        assert Recognizer(model=out, detector=None).backend == "tensorrt"
    assert Recognizer(model=out, detector=None, device="cpu").backend in ("openvino", "onnxruntime")


@pytest.mark.parametrize("builder", ["trtexec", "python"])
def test_build_engine_sh_registers_the_engine_and_parity_passes(jetson_bundle, tmp_path, builder):
    bundle_dir = _copy(jetson_bundle, tmp_path / "b")
    env = {**_device_env(tmp_path), **({"BUILDER": "python"} if builder == "python" else {})}
    done = subprocess.run(["sh", str(bundle_dir / "build_engine.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "trt_tool.py parity" in done.stdout and "registered model.int8.engine" in done.stdout
    bundle = load_bundle(bundle_dir)  # hashes checked, the engine's too
    entry = bundle.manifest["files"]["tensorrt"]["engine"]
    assert entry["tensorrt"] == "10.3.0" and entry["gpu"] == "Fake Orin (nvgpu)" and entry["compute_capability"] == "8.7"
    assert entry["built_with"] == ("trtexec" if builder == "trtexec" else "tensorrt-python")
    assert bundle.manifest["export"]["tensorrt"]["built"] is True
    parity = subprocess.run([sys.executable, str(bundle_dir / "trt_tool.py"), "parity", str(bundle_dir)], env=env,
                            capture_output=True, text=True)
    assert parity.returncode == 0, parity.stderr + parity.stdout
    report = json.loads((bundle_dir / te.REPORT_FILE).read_text())
    assert report["passed"] and set(report["vs_fp32"]["bands"]) == {"low", "mid", "high"}
    # the fake engine runs the QDQ file itself: it matches the stored QDQ embeddings
    assert min(b["cosine_min"] for b in report["vs_qdq_onnxruntime"]["bands"].values()) > 0.9999


def test_register_refuses_a_wrong_version_and_a_signed_bundle(jetson_bundle, tmp_path):
    bundle_dir = _copy(jetson_bundle, tmp_path / "b")
    env = {**_device_env(tmp_path), "FAKE_TENSORRT_VERSION": "8.6.1"}
    done = subprocess.run(["sh", str(bundle_dir / "build_engine.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "TensorRT 8.6.1 on this device, the bundle was made for TensorRT 10" in done.stderr
    (bundle_dir / "model.int8.engine").write_bytes(b"engine")
    (bundle_dir / "manifest.sig").write_text("{}")
    gpu = {"gpu": "Fake", "compute_capability": "8.7"}
    with pytest.raises(ValueError, match="--signing-key"):
        te.register_engine(bundle_dir, builder="trtexec", tensorrt_version="10.3.0", gpu=gpu)
    te.register_engine(bundle_dir, builder="trtexec", tensorrt_version="10.3.0", gpu=gpu, drop_signature=True)
    assert not (bundle_dir / "manifest.sig").exists()
    assert load_bundle(bundle_dir).manifest["files"]["tensorrt"]["engine"]["tensorrt"] == "10.3.0"
    (bundle_dir / "model.int8.engine").write_bytes(b"another engine")  # replaced after registration
    with pytest.raises(Exception, match="sha256"):
        load_bundle(bundle_dir)
