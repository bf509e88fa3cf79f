"""Input checks shared by the meet-in-the-middle modules: a uint8 ``H x W x 3`` image (``_check_image``), a
uint8 ``(N, H, W, 3)`` batch (``_check_batch``), a ``numpy.random.Generator`` argument (``_rng``) and the clip-and-round
back to uint8 (``_to_u8``). Private to :mod:`crres_sdk.mitm`; nothing here knows the paper."""

from __future__ import annotations

import numpy as np


# ------------------------------------------------------------------------------------------------ input checks


def _check_image(img: np.ndarray, name: str = "img") -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"{name} must be H x W x 3 with H, W >= 2, got shape {img.shape}")
    return np.ascontiguousarray(img)


def _check_batch(crops: np.ndarray, name: str = "crops") -> np.ndarray:
    if not isinstance(crops, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(crops).__name__}")
    if crops.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {crops.dtype}")
    if crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[0] < 1 or min(crops.shape[1:3]) < 1:
        raise ValueError(f"{name} must be (N, H, W, 3) with N >= 1, got shape {crops.shape}")
    return np.ascontiguousarray(crops)


def _rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
