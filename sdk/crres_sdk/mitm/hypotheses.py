"""Probe hypotheses (Sec. 3.3): the low-resolution probe (``probe_lowres``), its 16 Gaussian-blurred versions of
sigma 0..1 (``blur_sigmas``, ``blur_hypotheses``), each super-resolved x2/x4/x8 by any ``SuperResolver`` callable
(``probe_hypotheses``), with bicubic upsampling (``bicubic_sr``) standing in when there is none."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import cv2
import numpy as np

from crres_sdk.mitm._checks import _check_batch, _check_image
from crres_sdk.preprocess import resize_bicubic


# ------------------------------------------------------------------------------ Sec. 3.3: probe hypotheses

BLUR_LEVELS = 16          # Sec. 3.3: "we generate 16 versions of the input images"
MAX_BLUR_SIGMA = 1.0      # "... using a Gaussian kernel with sigma = 0 through sigma = 1"
SR_SCALES = (2, 4, 8)     # Sec. 3.3/3.4: x2, x4, x8


def probe_lowres(crop: np.ndarray, resolution: float) -> np.ndarray:
    """The probe at its own resolution: an aligned (upsampled) crop brought down to r x r (antialiased bicubic)."""
    crop = _check_image(crop, "crop")
    if not isinstance(resolution, (int, float, np.integer, np.floating)) or not math.isfinite(resolution) \
            or resolution < 1:
        raise ValueError(f"resolution must be a finite number >= 1, got {resolution!r}")
    r = int(min(round(float(resolution)), crop.shape[1]))
    return resize_bicubic(crop, (max(1, int(round(crop.shape[0] * r / crop.shape[1]))), r))


def blur_sigmas(levels: int = BLUR_LEVELS, max_sigma: float = MAX_BLUR_SIGMA) -> np.ndarray:
    """The ``levels`` sigmas 0 .. max_sigma, evenly spaced (Sec. 3.3)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    if not (isinstance(max_sigma, (int, float)) and math.isfinite(max_sigma) and max_sigma >= 0):
        raise ValueError(f"max_sigma must be a finite number >= 0, got {max_sigma!r}")
    return np.linspace(0.0, float(max_sigma), levels)


def gaussian_blur_sigma(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a (2 ceil(3 sigma) + 1)-wide kernel; sigma 0 returns a copy."""
    if sigma <= 0:
        return img.copy()
    k = 2 * int(math.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(img, (k, k), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def blur_hypotheses(lr: np.ndarray, levels: int = BLUR_LEVELS, max_sigma: float = MAX_BLUR_SIGMA) -> np.ndarray:
    """(levels, h, w, 3) uint8: the low-resolution probe blurred with each of ``blur_sigmas`` (Sec. 3.3)."""
    lr = _check_image(lr, "lr")
    return np.stack([gaussian_blur_sigma(lr, s) for s in blur_sigmas(levels, max_sigma)])


def bicubic_sr(crops: np.ndarray, scale: int) -> np.ndarray:
    """The stand-in SR callable: antialiased bicubic upsampling by ``scale`` (no learned prior)."""
    crops = _check_batch(crops)
    return resize_bicubic(crops, (crops.shape[1] * scale, crops.shape[2] * scale))


SuperResolver = Callable[[np.ndarray, int], np.ndarray]


def _run_sr(sr: SuperResolver, crops: np.ndarray, scale: int) -> np.ndarray:
    out = sr(crops, scale)
    want = (len(crops), crops.shape[1] * scale, crops.shape[2] * scale, 3)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != want:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"sr(crops, {scale}) must return uint8 {want}, got {got}")
    return out


def probe_hypotheses(lr: np.ndarray, sr: SuperResolver | None = None, scales: Sequence[int] = SR_SCALES,
                     levels: int = BLUR_LEVELS, max_sigma: float = MAX_BLUR_SIGMA,
                     out_size: int = 112) -> np.ndarray:
    """(len(scales), levels, out_size, out_size, 3) uint8: every blur hypothesis of the low-resolution probe
    ``lr`` super-resolved by each scale (``sr(crops, scale)``, bicubic when None), then resized to the
    network input ``out_size`` (Sec. 3.3; the probe at scale k carries k x its own size, Sec. 3.4)."""
    blurred = blur_hypotheses(lr, levels, max_sigma)
    sr = bicubic_sr if sr is None else sr
    return np.stack([resize_bicubic(_run_sr(sr, blurred, int(k)), (out_size, out_size)) for k in scales])
