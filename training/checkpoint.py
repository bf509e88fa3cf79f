"""Training checkpoints: the one place that writes, reads and rebuilds them.

A checkpoint is a plain dict of tensors and primitives saved with ``torch.save``; ``training.train`` writes
``OUT/last.pt`` (with optimizer and RNG state, for resuming) and ``OUT/final.pt`` (what evaluation and export
read), ``training.pretrained`` writes an untouched pretrained network in the same format. Keys: ``format``
(:data:`CHECKPOINT_FORMAT`), ``format_version``, ``model_name``, ``model_kwargs``, ``state_dict``, ``head_name``,
``head_kwargs``, ``num_classes``, ``head_state_dict``, the recipe, the input normalisation and the training
position. Checkpoints are untrusted input and are only ever read with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from training.heads import get_head
from training.models import get_model

CHECKPOINT_FORMAT = "crres-training-checkpoint"
CHECKPOINT_VERSION = 1
#: Where a checkpoint keeps its model input convention (``training.data.NORMALIZATION``: color, mean, std, as
#: ``crres_sdk.Normalization`` holds them). The key keeps the spelling every checkpoint so far was written with;
#: read it with :func:`checkpoint_normalization`, which also takes the SDK's spelling.
NORMALIZATION_KEY = "normalisation"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``: tensors and primitives only).

    Checkpoints are untrusted input: a pickle that would construct arbitrary objects (e.g. one
    with a ``__reduce__`` payload) is refused with ``ValueError`` before anything runs.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError) as exc:
        raise ValueError(f"refusing to load {path}: not a plain tensors-and-primitives checkpoint "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a crres training checkpoint (format {CHECKPOINT_FORMAT!r})")
    if ckpt.get("format_version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path} has checkpoint format version {ckpt['format_version']}, newer than "
                         f"this code's {CHECKPOINT_VERSION}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The backbone a checkpoint holds (what is deployed and evaluated), weights loaded strictly, eval mode."""
    model = get_model(ckpt["model_name"], **ckpt["model_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def head_from_checkpoint(ckpt: dict[str, Any], embedding_dim: int) -> nn.Module:
    """The training head (margin classifier) a checkpoint holds, for a backbone of ``embedding_dim``, weights
    loaded strictly, eval mode."""
    head = get_head(ckpt["head_name"], embedding_dim, ckpt["num_classes"], **ckpt["head_kwargs"])
    head.load_state_dict(ckpt["head_state_dict"])
    return head.eval()


def checkpoint_normalization(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The model input convention a checkpoint records (a copy), under :data:`NORMALIZATION_KEY` or spelled
    ``"normalization"``."""
    for key in (NORMALIZATION_KEY, "normalization"):
        if isinstance(ckpt.get(key), dict):
            return dict(ckpt[key])
    raise KeyError(f"checkpoint records no input normalization (keys: {sorted(ckpt)})")


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "NORMALIZATION_KEY", "checkpoint_normalization",
           "head_from_checkpoint", "load_checkpoint", "model_from_checkpoint", "save_atomic"]
