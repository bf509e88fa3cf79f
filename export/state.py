"""What an export build knows: one dataclass, each field documented with the step that sets it.

``build_engine.validate`` fills the first block from the arguments; every step of the target's plan
(``export/targets.py``) reads earlier fields and sets its own. Fields marked *added to* collect one entry per
INT8 file from each quantize step (``quantize_ort``, ``quantize_openvino``) and ``tensorrt_engine``. Nothing
else lives between steps: the manifest (``export/manifest.py``) is written from this state and the arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class BuildState:
    # --- validate(): the checked arguments ------------------------------------------------------------------
    out: Path                                  #: the bundle folder (--out)
    target: dict[str, Any]                     #: export.targets.TARGETS[--target]: steps, their arguments, ...
    inputs: list[Path]                         #: the --calib image files
    bands: dict[str, float]                    #: --calib-bands: calibration weight per resolution band
    lfw_root: Path | None                      #: the LFW folder, None without LFW

    # --- load_checkpoint --------------------------------------------------------------------------------------
    ckpt: dict[str, Any] = field(default_factory=dict)   #: the training checkpoint
    ckpt_sha: str = ""                         #: its sha256
    model: Any = None                          #: its backbone (torch.nn.Module, eval mode)
    input_size: int = 0                        #: model input side, px
    norm: dict[str, Any] = field(default_factory=dict)   #: the checkpoint's normalisation (color, mean, std)

    # --- export_onnx ----------------------------------------------------------------------------------------
    fp32: Path | None = None                   #: the FP32 ONNX file
    onnx_check: dict[str, Any] | None = None   #: onnx.checker, opset and ORT-vs-torch difference

    # --- face_data ------------------------------------------------------------------------------------------
    split: Any = None                          #: export.calibration split of --calib (calibration / held out)
    hold_crops: np.ndarray | None = None       #: held-out aligned crops (parity and threshold pairs)
    hold_ids: list[str] | None = None          #: their identities (None: --calib has no identity folders)
    calib_crops: np.ndarray | None = None      #: calibration crops (quantizing targets only)
    calib_files: list[Path] | None = None      #: their files
    calib: Any = None                          #: the calibration set (degraded, normalised inputs by band)
    held: Any = None                           #: the held-out parity set (None: the target does not quantize)
    ref: np.ndarray | None = None              #: FP32 embeddings of the held-out parity set

    # --- accuracy_reference: the FP32 side of the INT8 accuracy gate ----------------------------------------
    lfw: Any = None                            #: export.lfw_parity.LfwSet when LFW gates
    lfw_fp32: dict[str, Any] | None = None     #: FP32 btm-stm accuracy per band on LFW
    small_set: Any = None                      #: export.small_face_gate.FaceSet when it gates instead
    small_fp32: dict[str, np.ndarray] | None = None     #: FP32 pair scores per band on it
    accuracy_not_run: str | None = None        #: why no accuracy gate ran (None: one did)

    # --- the quantize steps (added to) ----------------------------------------------------------------------
    files: dict[str, dict[str, str]] = field(default_factory=dict)  #: runtime -> role -> path in the bundle
    file_extra: dict[str, dict[str, Any]] = field(default_factory=dict)  #: "runtime/role" -> more manifest keys
    quant: dict[str, Any] = field(default_factory=dict)    #: parity key -> quantizer settings of the shipped file
    parity: dict[str, Any] = field(default_factory=dict)   #: parity key -> every attempt and the remedy shipped
    shipped: dict[str, tuple[Path, str]] = field(default_factory=dict)  #: "runtime/role" -> (INT8 file, backend)
    rankings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  #: flavour -> sensitivity ranking
    lfw_caches: dict[str, Any] = field(default_factory=dict)    #: "runtime/role" -> EmbeddingCache over LFW
    lfw_reports: dict[str, Any] = field(default_factory=dict)   #: "runtime/role" -> INT8 vs FP32 on LFW
    lfw_embeddings_reused: dict[str, int] = field(default_factory=dict)  #: "runtime/role" -> from disk
    small_reports: dict[str, Any] = field(default_factory=dict)  #: "runtime/role" -> INT8 vs FP32 on the small set
    calib_desc: dict[str, Any] | None = None   #: the calibration that made the ONNX Runtime INT8 file
    qdq: Path | None = None                    #: the INT8 QDQ ONNX that quantize_ort shipped

    # --- tensorrt_engine ------------------------------------------------------------------------------------
    tensorrt: dict[str, Any] | None = None     #: the engine build script, parity set, built or not

    # --- thresholds -----------------------------------------------------------------------------------------
    thresholds: dict[str, Any] | None = None   #: the manifest's thresholds block
    threshold_measured_far: dict[str, Any] | None = None  #: "runtime/role" -> measured FAR of every threshold

    # --- the driver -----------------------------------------------------------------------------------------
    timings: dict[str, float] = field(default_factory=dict)  #: step -> seconds

    @property
    def quantizes(self) -> bool:
        return bool(self.target["quantizes"])

    def add_file(self, runtime: str, role: str, path: Path) -> None:
        """Register a bundle file as ``manifest["files"][runtime][role]``."""
        self.files.setdefault(runtime, {})[role] = str(path.relative_to(self.out))
