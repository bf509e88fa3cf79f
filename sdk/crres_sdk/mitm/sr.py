"""``OnnxSuperResolver``: runs the face-SR models ``python -m training.sr`` exports (``sr_x{k}.onnx``) on any SDK
backend, as the ``sr(crops, scale)`` callable that :mod:`~crres_sdk.mitm.hypotheses` and ``MitmMatcher`` take."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from crres_sdk.mitm._checks import _check_batch, _to_u8


# ----------------------------------------------------------------------------------- SR models in the SDK

class OnnxSuperResolver:
    """Runs exported face-SR models (``python -m training.sr``: ``sr_x{k}.onnx``) on any SDK backend.

    Model I/O (what ``training.sr`` exports): input ``(N, 3, h, w)`` float32 RGB in [0, 1], output
    ``(N, 3, k h, k w)``; batch, height and width dynamic. ``resolver(crops, scale)`` takes and returns uint8
    ``(N, h, w, 3)`` images in ``color`` order (BGR by default, like every SDK image).
    """

    def __init__(self, models: Mapping[int, str | Path], *, backend: str = "auto", threads: int | None = None,
                 device: str = "cpu", color: str = "bgr") -> None:
        from crres_sdk.backends import open_model

        if not isinstance(models, Mapping) or not models:
            raise ValueError("models must be a non-empty mapping scale -> .onnx path")
        if color not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
        self.color = color
        self._sessions = {}
        for scale, path in models.items():
            if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
                raise ValueError(f"scales must be ints >= 1, got {scale!r}")
            self._sessions[int(scale)] = open_model(path, backend, threads, device=device)

    @classmethod
    def from_dir(cls, *folders: str | Path, **kwargs) -> "OnnxSuperResolver":
        """Every ``sr_x{k}.onnx`` in the given folders (e.g. ``runs/sr2 runs/sr4 runs/sr8``)."""
        models: dict[int, Path] = {}
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise FileNotFoundError(f"SR model folder {folder} does not exist")
            for path in sorted(folder.glob("sr_x*.onnx")):
                try:
                    models[int(path.stem[len("sr_x"):])] = path
                except ValueError:
                    continue
        if not models:
            raise FileNotFoundError(f"no sr_x<k>.onnx in {', '.join(map(str, folders))}; export one with "
                                    "python -m training.sr --data DIR --scale 4 --out runs/sr4")
        return cls(models, **kwargs)

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(sorted(self._sessions))

    def __call__(self, crops: np.ndarray, scale: int) -> np.ndarray:
        if scale not in self._sessions:
            raise ValueError(f"no SR model for x{scale}; have x{', x'.join(map(str, self.scales))}")
        crops = _check_batch(crops)
        x = crops[..., ::-1] if self.color == "bgr" else crops
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
        session = self._sessions[scale]
        y = session.run({session.input_names[0]: x})[0]
        n, _, h, w = x.shape
        if y.shape != (n, 3, h * scale, w * scale):
            raise ValueError(f"SR model x{scale} returned {y.shape} for input {x.shape}")
        out = _to_u8(np.asarray(y).transpose(0, 2, 3, 1) * 255.0)
        return np.ascontiguousarray(out[..., ::-1] if self.color == "bgr" else out)
