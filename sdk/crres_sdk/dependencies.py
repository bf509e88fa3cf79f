"""Optional runtime dependencies and the messages that say how to install them.

The base install needs numpy alone. The inference engine and OpenCV come from extras, so that a Jetson keeps the
system OpenCV (built with GStreamer, for CSI cameras) and NVIDIA's onnxruntime-gpu / TensorRT as they are:

| module | extra | what needs it |
|---|---|---|
| ``cv2`` | ``crres[opencv]`` (opencv-python-headless) | image and video I/O, the detector's pyramid, the Recognizer |
| ``onnxruntime`` | ``crres[ort]`` (CPU) or ``crres[ort-gpu]`` (CUDA) | inference (one engine is enough) |
| ``openvino`` | ``crres[openvino]`` | inference on Intel CPUs, GPUs and NPUs |
| ``onnx`` | ``crres[convert]`` | ``crres models fetch`` (building the detector bundle) |

How to install each engine (TensorRT included) is ``crres_sdk.backends.INSTALL_HINTS``; this module reuses it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

#: module -> (extra, what it is), for the messages below.
EXTRAS = {
    "cv2": ("opencv", "OpenCV"),
    "onnxruntime": ("ort", "ONNX Runtime"),
    "openvino": ("openvino", "OpenVINO"),
    "onnx": ("convert", "the onnx package"),
}


class MissingDependencyError(ImportError):
    """An optional dependency of crres is not installed; the message says how to install it."""


class MissingEngineWarning(UserWarning):
    """crres_sdk was imported where no inference engine is installed."""


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # imported without a __spec__ (a stub): present
        return sys.modules.get(module) is not None
    except ImportError:  # sys.modules[module] is None: blocked on purpose, so absent
        return False


def missing_message(module: str, purpose: str) -> str:
    """'<what> is not installed; <purpose> needs it: pip install "crres[extra]"' with the Jetson way where it applies."""
    extra, what = EXTRAS.get(module, (None, f"the {module} package"))
    install = f'pip install "crres[{extra}]"' if extra else f"pip install {module}"
    message = f"{what} ({module}) is not installed; {purpose} needs it: {install}"
    if module == "cv2":
        message += (" (on a Jetson use JetPack's OpenCV, built with GStreamer, instead: sudo apt install "
                    "nvidia-opencv, in a venv made with --system-site-packages)")
    return message


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module.split(".")[0] and exc.name != module:
            raise  # the module is there but one of its own imports failed: not ours to rename
        raise MissingDependencyError(missing_message(module, purpose)) from exc


def engine_missing_message() -> str:
    """What to install when no inference engine is present (the hints are crres_sdk.backends')."""
    from crres_sdk.backends import INSTALL_HINTS

    return "no inference engine is installed: " + "; or ".join(f"{name}: {hint}" for name, hint in INSTALL_HINTS.items())
