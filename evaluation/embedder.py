"""Model runners behind one interface, so every model kind is evaluated by the same code.

``open_embedder(path)`` accepts

* an ONNX / OpenVINO IR file, run through ``crres_sdk.backends.open_model`` (FP32 and INT8 QDQ models alike);
  normalisation defaults to InsightFace's RGB ``(x - 127.5) / 128`` unless given;
* a model bundle folder (``manifest.json``, task ``face-embedding``): normalisation from the manifest;
* a training checkpoint (``.pt``/``.pth``/``.ckpt``): ``torch.load(weights_only=True)`` of a dict. Keys read
  (first match wins; documented contract with ``training/train.py``)::

      model name:   "model_name" | "arch" | "model" (when a str) | "config"["model"]
      model kwargs: "model_kwargs" | "kwargs" | "config"["model_kwargs"]     (default {})
      weights:      "state_dict" | "model_state_dict" | "model_state" | "model" (when a dict) | "weights"
      input:        "normalization" | "normalisation" | "input" -> {"color", "mean", "std"} (default arcface)
      optional:     "embedding_dim", "input_size" (checked against the built model)

  ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes are stripped from state-dict keys.

Every embedder takes aligned uint8 BGR crops ``(N, H, W, 3)`` and returns float32 ``(N, D)`` embeddings
(not normalised). Models whose ONNX batch dimension is fixed at 1 (the reference model is 1x3x112x112) are run
one crop at a time; others in batches of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from crres_sdk.preprocess import Normalization, resize_bicubic

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")


def preprocess(crops: np.ndarray, normalization: Normalization, input_size: int) -> np.ndarray:
    """uint8 BGR (N, H, W, 3) -> float32 NCHW in the model's colour order and normalisation."""
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be uint8 (N, H, W, 3) BGR, got {crops.dtype} {crops.shape}")
    if crops.shape[1:3] != (input_size, input_size):
        crops = resize_bicubic(np.ascontiguousarray(crops), input_size)
    x = crops.astype(np.float32)
    if normalization.color == "rgb":
        x = x[..., ::-1]
    x = (x - np.asarray(normalization.mean, np.float32)) / np.asarray(normalization.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class Embedder:
    """Base class: ``embed(crops) -> (N, D) float32``; subclasses implement ``_run(nchw_batch)``."""

    name: str = "model"
    kind: str = "?"
    input_size: int = 112
    normalization: Normalization = Normalization()
    batch_size: int = 64
    fixed_batch: int | None = None   # set when the model only accepts this batch size

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, crops: np.ndarray) -> np.ndarray:
        x = preprocess(crops, self.normalization, self.input_size)
        step = self.fixed_batch or self.batch_size
        outs = [np.asarray(self._run(x[i:i + step]), dtype=np.float32).reshape(len(x[i:i + step]), -1)
                for i in range(0, len(x), step)]
        if not outs:
            return np.zeros((0, 0), np.float32)
        out = np.concatenate(outs)
        if not np.isfinite(out).all():
            raise FloatingPointError(f"{self.name} produced NaN/inf embeddings")
        return out

    def describe(self) -> dict:
        n = self.normalization
        return {"name": self.name, "kind": self.kind, "input_size": self.input_size,
                "normalization": {"color": n.color, "mean": list(n.mean), "std": list(n.std)},
                "batch": self.fixed_batch or self.batch_size}


def onnx_fixed_batch(path: Path) -> int | None:
    """The static batch size of an ONNX model's first input, or None when it is dynamic/unknown."""
    if path.suffix.lower() != ".onnx":
        return None
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - onnx missing or unreadable here: the runtime will tell
        return None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        return None
    dim0 = inputs[0].type.tensor_type.shape.dim[0]
    return int(dim0.dim_value) if dim0.HasField("dim_value") and dim0.dim_value > 0 else None


class SessionEmbedder(Embedder):
    """ONNX Runtime / OpenVINO session from ``crres_sdk.backends`` (FP32 or INT8 files alike)."""

    kind = "session"

    def __init__(self, path: str | Path, *, backend: str = "auto", threads: int | None = None,
                 normalization: Normalization | None = None, input_size: int = 112, batch_size: int = 64,
                 name: str | None = None) -> None:
        from crres_sdk.backends import open_model

        path = Path(path)
        self.path = path
        self.session = open_model(path, backend=backend, threads=threads)
        self.backend = self.session.backend
        self.input_name = self.session.input_names[0]
        self.normalization = normalization or Normalization.arcface()
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.fixed_batch = onnx_fixed_batch(path)
        self.name = name or path.stem
        self.kind = f"{path.suffix.lstrip('.').lower() or 'model'}:{self.backend}"

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.fixed_batch is not None and len(x) != self.fixed_batch:
            if self.fixed_batch != 1:
                raise ValueError(f"model {self.path} has a fixed batch of {self.fixed_batch}")
            return np.concatenate([self._run(x[i:i + 1]) for i in range(len(x))])
        try:
            return self.session.run({self.input_name: x})[0]
        except Exception:
            # A fixed batch dimension onnx could not tell us about (e.g. an OpenVINO IR): fall back to one by one.
            if len(x) == 1 or self.fixed_batch == 1:
                raise
            self.fixed_batch = 1
            return self._run(x)


class TorchEmbedder(Embedder):
    """A ``torch.nn.Module`` (eval mode, no grad) behind the same interface."""

    kind = "torch"

    def __init__(self, model, *, normalization: Normalization | None = None, input_size: int | None = None,
                 batch_size: int = 64, name: str = "torch-model") -> None:
        import torch

        self.torch = torch
        self.model = model.eval()
        self.normalization = normalization or Normalization.arcface()
        self.input_size = int(input_size or getattr(model, "input_size", 112))
        self.batch_size = int(batch_size)
        self.name = name

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(x))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().numpy()


def _normalization_from(spec: Any) -> Normalization | None:
    if spec is None:
        return None
    if isinstance(spec, Normalization):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"normalisation must be a mapping with color/mean/std, got {type(spec).__name__}")
    color = spec.get("color", spec.get("colour", "rgb"))
    return Normalization(color=color, mean=tuple(spec.get("mean", (127.5,) * 3)),
                         std=tuple(spec.get("std", (128.0,) * 3)))


def _first(d: Mapping, keys: tuple[str, ...], kind: type | tuple[type, ...]) -> Any:
    for key in keys:
        if isinstance(d.get(key), kind):
            return d[key]
    config = d.get("config")
    if isinstance(config, Mapping):
        for key in keys:
            if isinstance(config.get(key), kind):
                return config[key]
    return None


def load_checkpoint_embedder(path: str | Path, *, normalization: Normalization | None = None,
                             batch_size: int = 64) -> TorchEmbedder:
    """Build the registered model a training checkpoint names and load its weights (see module docstring)."""
    import torch

    from training.models import get_model

    path = Path(path)
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a weights-only torch checkpoint: {exc}") from exc
    if not isinstance(ckpt, Mapping):
        raise TypeError(f"{path}: checkpoint must be a dict, got {type(ckpt).__name__}")
    name = _first(ckpt, ("model_name", "arch", "model"), str)
    if name is None:
        raise ValueError(f"{path}: checkpoint names no model (expected a 'model_name', 'arch' or 'model' string; "
                         f"keys: {sorted(ckpt)})")
    kwargs = dict(_first(ckpt, ("model_kwargs", "kwargs"), Mapping) or {})
    state = _first(ckpt, ("state_dict", "model_state_dict", "model_state", "model", "weights"), Mapping)
    if state is None:
        raise ValueError(f"{path}: checkpoint holds no state dict (keys: {sorted(ckpt)})")
    model = get_model(name, **kwargs)
    clean = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        clean[key] = value
    missing, unexpected = model.load_state_dict(clean, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key in ("embedding_dim", "input_size"):
        if isinstance(ckpt.get(key), int) and ckpt[key] != getattr(model, key):
            raise ValueError(f"{path}: checkpoint says {key}={ckpt[key]}, model has {getattr(model, key)}")
    norm = normalization or _normalization_from(
        _first(ckpt, ("normalization", "normalisation", "input"), Mapping))
    return TorchEmbedder(model, normalization=norm, batch_size=batch_size, name=f"{name}:{path.stem}")


def load_bundle_embedder(root: str | Path, *, backend: str = "auto", threads: int | None = None,
                         batch_size: int = 64, precision: str = "auto") -> SessionEmbedder:
    """The file of a face-embedding bundle the SDK's Recognizer would run on ``backend`` at ``precision``
    (``crres_sdk.recognizer.choose_model_file``: INT8 when there is one), with the manifest's normalisation and
    input size; its name says which file (e.g. ``crres_default-ckpt-...:onnx/int8``)."""
    from crres_sdk.backends import resolve_backend
    from crres_sdk.bundle import load_bundle
    from crres_sdk.recognizer import choose_model_file

    bundle = load_bundle(root, task="face-embedding")
    backend = resolve_backend(backend)
    choice = choose_model_file(bundle.manifest["files"], backend, precision)
    if choice is None:
        raise ValueError(f"bundle {root} has no {precision} file for {backend}")
    _, runtime, role = choice
    size = bundle.manifest["input"].get("size") or [112, 112]
    return SessionEmbedder(bundle.file(runtime, role), backend=backend, threads=threads,
                           normalization=bundle.normalization, input_size=int(size[0]), batch_size=batch_size,
                           name=f"{bundle.name}-{bundle.version}:{runtime}/{role}")


def checkpoint_session_embedder(torch_embedder: TorchEmbedder, *, backend: str, threads: int | None = None,
                                name: str = "checkpoint") -> SessionEmbedder:
    """A checkpoint's network exported to FP32 ONNX (the exporter's own, training/onnx_export.py) and run on
    ``backend``: several times faster than eager torch on a CPU, for evaluating many training runs. The ONNX
    file lives only while the session is built."""
    import tempfile

    from training.onnx_export import export_embedding_onnx

    with tempfile.TemporaryDirectory(prefix="crres-eval-") as tmp:
        onnx_path = Path(tmp) / f"{name}.onnx"
        export_embedding_onnx(torch_embedder.model, torch_embedder.input_size, onnx_path)
        emb = SessionEmbedder(onnx_path, backend=backend, threads=threads,
                              normalization=torch_embedder.normalization, input_size=torch_embedder.input_size,
                              batch_size=torch_embedder.batch_size, name=f"{torch_embedder.name}:{backend}")
    return emb


def open_embedder(path: str | Path, *, backend: str = "auto", threads: int | None = None,
                  normalization: Normalization | None = None, batch_size: int = 64,
                  precision: str = "auto") -> Embedder:
    """Checkpoint, bundle folder (the file at ``precision``, as the SDK picks it) or ONNX/IR file -> Embedder."""
    path = Path(path)
    if path.is_dir():
        if normalization is not None:
            raise ValueError("a bundle's normalisation comes from its manifest; do not pass one")
        return load_bundle_embedder(path, backend=backend, threads=threads, batch_size=batch_size,
                                    precision=precision)
    if not path.is_file():
        raise FileNotFoundError(f"model {path} does not exist")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        torch_embedder = load_checkpoint_embedder(path, normalization=normalization, batch_size=batch_size)
        if backend == "auto":
            return torch_embedder
        return checkpoint_session_embedder(torch_embedder, backend=backend, threads=threads, name=path.stem)
    return SessionEmbedder(path, backend=backend, threads=threads, normalization=normalization,
                           batch_size=batch_size)


def normalization_from_args(color: str | None, mean: str | None, std: str | None) -> Normalization | None:
    """CLI helper: ``--color rgb --mean 127.5 --std 128`` (one value or three, comma-separated)."""
    if color is None and mean is None and std is None:
        return None

    def three(text: str | None, default: float) -> tuple[float, float, float]:
        if text is None:
            return (default,) * 3
        values = [float(v) for v in text.split(",")]
        if len(values) == 1:
            values *= 3
        if len(values) != 3:
            raise ValueError(f"need 1 or 3 comma-separated values, got {text!r}")
        return tuple(values)  # type: ignore[return-value]

    return Normalization(color=color or "rgb", mean=three(mean, 127.5), std=three(std, 128.0))


__all__ = [
    "Embedder",
    "SessionEmbedder",
    "TorchEmbedder",
    "load_bundle_embedder",
    "load_checkpoint_embedder",
    "normalization_from_args",
    "onnx_fixed_batch",
    "open_embedder",
    "preprocess",
]
