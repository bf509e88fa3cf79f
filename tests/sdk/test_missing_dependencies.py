"""Without OpenCV or an inference engine, crres_sdk imports and says which extra to install (simulated by blocking
the modules in sys.modules, in a fresh interpreter so this process's imports do not interfere)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crres_sdk.dependencies import MissingDependencyError, missing_message, require

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, block: tuple[str, ...]) -> subprocess.CompletedProcess:
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
    return subprocess.run([sys.executable, "-W", "always", "-c", prelude + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_without_opencv_the_sdk_imports_and_names_the_extra():
    done = python("""
        import tempfile
        import numpy as np
        import crres_sdk
        with crres_sdk.Gallery(tempfile.mkdtemp() + "/g.db", crres_sdk.ModelKey("m", "1", 4)) as g:  # numpy-only parts
            assert len(g) == 0
        crres_sdk.align_faces(np.zeros((64, 64, 3), np.uint8), crres_sdk.ARCFACE_TEMPLATE)
        for name in ("Recognizer", "FaceDetector", "VideoPipeline"):
            try:
                getattr(crres_sdk, name)
            except crres_sdk.MissingDependencyError as exc:
                assert isinstance(exc, ImportError)
                print(name, exc)
        from crres_sdk.cli import main
        sys.exit(main(["models", "list"]))  # the diagnostics need no OpenCV either
        """, block=("cv2",))
    assert done.returncode in (0, 1), done.stderr  # 1 only where a default bundle is missing here
    lines = [line for line in done.stdout.splitlines() if "is not installed" in line]
    assert len(lines) == 3 and all('pip install "crres[opencv]"' in line for line in lines), done.stdout
    assert "default set:" in done.stdout and "Traceback" not in done.stderr


def test_without_an_engine_the_import_warns_with_the_extras():
    done = python("""
        import crres_sdk
        print("imported")
        """, block=("onnxruntime", "openvino", "tensorrt"))
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout
    assert "MissingEngineWarning" in done.stderr and "pip install 'crres[ort]'" in done.stderr
    assert "crres[openvino]" in done.stderr and "crres[ort-gpu]" in done.stderr and "JetPack" in done.stderr


def test_with_an_engine_the_import_is_quiet():
    done = python("import crres_sdk\n", block=("openvino", "tensorrt"))
    assert done.returncode == 0 and "MissingEngineWarning" not in done.stderr, done.stderr


def test_fetch_without_onnx_names_the_convert_extra():
    done = python("""
        import types
        converter = types.ModuleType("crres_sdk.mtcnn_convert")
        def build_bundle(out_dir, wheel=None):
            import onnx  # what the real converter needs
        converter.build_bundle = build_bundle
        sys.modules["crres_sdk.mtcnn_convert"] = converter
        import tempfile
        from crres_sdk.cli import main
        sys.exit(main(["models", "fetch", "--dir", tempfile.mkdtemp() + "/mtcnn"]))
        """, block=("onnx",))
    assert done.returncode == 1, done.stderr
    assert 'pip install "crres[convert]"' in done.stderr and "Traceback" not in done.stderr


def test_require(monkeypatch):
    assert require("json", "tests").dumps([]) == "[]"
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingDependencyError, match=r'crres\[opencv\]') as err:
        require("cv2", "video input")
    assert "video input needs it" in str(err.value) and "JetPack" in str(err.value)
    assert "pip install somepkg" in missing_message("somepkg", "x")


def test_cli_names_the_extra_when_a_command_needs_opencv(tmp_path):
    done = python(f"""
        from crres_sdk.cli import main
        sys.exit(main(["verify", {str(tmp_path / 'a.jpg')!r}, {str(tmp_path / 'b.jpg')!r}]))
        """, block=("cv2",))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("crres: OpenCV (cv2) is not installed; crres verify needs it")
    assert 'pip install "crres[opencv]"' in done.stderr and "Traceback" not in done.stderr
