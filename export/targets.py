"""The export targets, Ultralytics-exporter style: one table of target -> steps (in order) and their arguments.

Every target first exports and checks the FP32 ONNX and builds the calibration/parity sets; the table lists
what follows. ``files`` names the bundle entries the target writes (``manifest["files"][runtime][role]``).
"""

from __future__ import annotations

import importlib.util

COMMON_STEPS = ("load_checkpoint", "export_onnx", "calibration_data")

TARGETS: dict[str, dict] = {
    "onnx": {
        "description": "ONNX Runtime: FP32 ONNX + static INT8 QDQ (uint8 activations, per-channel int8 weights)",
        "steps": COMMON_STEPS + ("quantize_ort", "manifest"),
        "args": {"quantize_ort": {"flavour": "cpu", "file": "model.int8.onnx"}},
        "requires": ("onnx", "onnxruntime"),
    },
    "x86": {
        "description": "x86 CPU: the onnx target plus an OpenVINO INT8 IR quantized with NNCF",
        "steps": COMMON_STEPS + ("quantize_ort", "quantize_openvino", "manifest"),
        "args": {"quantize_ort": {"flavour": "cpu", "file": "model.int8.onnx"},
                 "quantize_openvino": {"file": "model.int8.xml"}},
        "requires": ("onnx", "onnxruntime", "openvino", "nncf"),
    },
    "jetson": {
        "description": "Jetson/TensorRT 10: explicit-quantization QDQ ONNX (symmetric int8) + build_engine.sh "
                       "(trtexec); the engine itself is built on the device (or here when tensorrt imports)",
        "steps": COMMON_STEPS + ("quantize_ort", "tensorrt_engine", "manifest"),
        "args": {"quantize_ort": {"flavour": "tensorrt", "file": "model.qdq.onnx"},
                 "tensorrt_engine": {"script": "build_engine.sh", "engine": "model.int8.engine"}},
        "requires": ("onnx", "onnxruntime"),
    },
}


def missing_requirements(target: str) -> list[str]:
    return [m for m in TARGETS[target]["requires"] if importlib.util.find_spec(m) is None]
