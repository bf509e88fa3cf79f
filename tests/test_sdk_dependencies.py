"""The runtime SDK imports and detects with numpy + OpenCV + ONNX Runtime alone: never torch, never OpenVINO, never
the demo package crres_demo (which needs no torch either)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
for name in ("torch", "openvino", "onnx", "PIL", "skimage"):
    sys.modules[name] = None  # any import of these now raises ImportError
import numpy as np
import crres_sdk
from crres_sdk.backends import available_backends
frame = np.zeros((120, 160, 3), np.uint8)
crres_sdk.align_faces(frame, crres_sdk.ARCFACE_TEMPLATE)
try:
    detector = crres_sdk.FaceDetector(backend="auto")
except crres_sdk.BundleError:
    print("no-bundle")
else:
    assert detector.backend == "onnxruntime", detector.backend
    detector.detect(frame)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
assert "crres_demo" not in sys.modules  # the demo package ships beside the SDK; the runtime never imports it
import crres_demo.clip  # ... and it needs no torch either (it is in the wheel)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
print("ok")
"""


def test_sdk_runs_without_torch_or_openvino():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_asking_for_a_missing_backend_is_a_clear_error():
    script = ("import sys; sys.modules['openvino'] = None\n"
              "import crres_sdk.backends as b\n"
              "try:\n    b.resolve_backend('openvino')\nexcept b.BackendUnavailableError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "pip install 'crres[openvino]'" in done.stdout
