"""The export targets, Ultralytics-exporter style: one table of target -> steps (in order) and their arguments.

Every target loads the checkpoint, exports and checks the FP32 ONNX, prepares the face data (calibration set
when it quantizes, held-out parity/threshold crops always) and the FP32 side of the INT8 accuracy gate
(``accuracy_reference``: LFW's btm-stm accuracy with ``--lfw``, else the small real face set's scores); it ends
with the per-resolution thresholds and the manifest. The table lists what comes in between. ``files`` roles
are ``manifest["files"][runtime][role]``: onnx/fp32, onnx/int8, openvino/int8_xml + int8_bin, tensorrt/qdq,
tensorrt/build_script, tensorrt/engine (the SDK relies on these names).
"""

from __future__ import annotations

import importlib.util

COMMON_STEPS = ("load_checkpoint", "export_onnx", "face_data", "accuracy_reference")
FINAL_STEPS = ("thresholds", "manifest")

TARGETS: dict[str, dict] = {
    "fp32": {
        "description": "FP32 ONNX only (no quantization): the default shipped model, with thresholds",
        "steps": COMMON_STEPS + FINAL_STEPS,
        "args": {},
        "quantizes": False,
        "requires": ("onnx", "onnxruntime"),
    },
    "onnx": {
        "description": "ONNX Runtime: FP32 ONNX + static INT8 QDQ (uint8 activations, per-channel int8 weights)",
        "steps": COMMON_STEPS + ("quantize_ort",) + FINAL_STEPS,
        "args": {"quantize_ort": {"flavour": "cpu", "file": "model.int8.onnx"}},
        "quantizes": True,
        "requires": ("onnx", "onnxruntime"),
    },
    "x86": {
        "description": "x86 CPU: the onnx target plus an OpenVINO INT8 IR quantized with NNCF",
        "steps": COMMON_STEPS + ("quantize_ort", "quantize_openvino") + FINAL_STEPS,
        "args": {"quantize_ort": {"flavour": "cpu", "file": "model.int8.onnx"},
                 "quantize_openvino": {"file": "model.int8.xml"}},
        "quantizes": True,
        "requires": ("onnx", "onnxruntime", "openvino", "nncf"),
    },
    "jetson": {
        "description": "Jetson/TensorRT 10: explicit-quantization QDQ ONNX (symmetric int8) + build_engine.sh "
                       "(trtexec); the engine itself is built on the device (or here when tensorrt imports)",
        "steps": COMMON_STEPS + ("quantize_ort", "tensorrt_engine") + FINAL_STEPS,
        "args": {"quantize_ort": {"flavour": "tensorrt", "file": "model.qdq.onnx"},
                 "tensorrt_engine": {"script": "build_engine.sh", "engine": "model.int8.engine"}},
        "quantizes": True,
        "requires": ("onnx", "onnxruntime"),
    },
}


def missing_requirements(target: str) -> list[str]:
    return [m for m in TARGETS[target]["requires"] if importlib.util.find_spec(m) is None]
