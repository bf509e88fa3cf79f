"""The 11 gallery degradation functions of Grm et al. 2023 (Sec. 3.2, Table 1), ``DEGRADATIONS`` in the paper's
order, with Table 1's parameters and our documented choices where it gives none: noise, colour and brightness
jitter, motion / Gaussian / disk blur (kernels and the ``kernel_scale`` that ``kernel_scaling="image"`` applies),
perspective, shear, down-up and patch shuffle. Each maps a uint8 ``H x W x 3`` image to one of the same size,
deterministically for a given generator state; ``apply_degradation`` runs one by name."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import cv2
import numpy as np

from crres_sdk.mitm._checks import _check_image, _rng, _to_u8
from crres_sdk.preprocess import degrade


# ------------------------------------------------------------------------------- Table 1: degradation functions
# Each takes (uint8 H x W x 3 BGR, numpy Generator) and returns uint8 H x W x 3; random parameters come from rng.

NOISE_VARIANCE = 0.02      # Table 1: "mean 0 and variance 0.02" (on intensities in [0, 1], as skimage's random_noise)
MOTION_WINDOW = 20         # Table 1: "Horizontal motion blur ... window size 20"
GAUSSIAN_SIGMA, GAUSSIAN_WINDOW = 1.1, 5   # Table 1: "sigma 1.1 and window size 5"
DISK_RADIUS = 5            # Table 1: "Disk blur with radius 5"
# Not given in Table 1 (our choices, documented in docs/mitm.md):
HUE_SHIFT = 0.05           # colour jitter: hue shift ~ U(-0.05, 0.05) of the hue circle (+-18 degrees)
SATURATION_RANGE = (0.5, 1.5)    # colour jitter: saturation scaled by U(0.5, 1.5)
BRIGHTNESS_RANGE = (0.6, 1.4)    # brightness jitter: intensities scaled by U(0.6, 1.4) ...
CONTRAST_RANGE = (0.6, 1.4)      # ... then contrast about the mean grey level scaled by U(0.6, 1.4)
PERSPECTIVE_SHIFT = 0.1    # each corner moves by up to 10 % of the side, independently in x and y
SHEAR_RANGE = 0.2          # horizontal shear x' = x + s (y - cy), s ~ U(-0.2, 0.2) (about +-11 degrees)
DOWN_UP_FACTOR = (2.0, 4.0)      # down-up: to side / U(2, 4), then back (crres_sdk.preprocess.degrade)
PATCH_SIZE = 2             # patch shuffle: the 2 x 2 patches of Kang et al. [20], each permuted


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, var: float = NOISE_VARIANCE) -> np.ndarray:
    """Additive Gaussian noise, mean 0, variance ``var`` on [0, 1] intensities (Table 1 row 1), clipped."""
    img, rng = _check_image(img), _rng(rng)
    x = img.astype(np.float64) / 255.0
    return _to_u8((x + rng.normal(0.0, math.sqrt(var), img.shape)) * 255.0)


def speckle_noise(img: np.ndarray, rng: np.random.Generator, var: float = NOISE_VARIANCE) -> np.ndarray:
    """Multiplicative Gaussian noise ``x + x n``, n ~ N(0, var) on [0, 1] intensities (Table 1 row 2)."""
    img, rng = _check_image(img), _rng(rng)
    x = img.astype(np.float64) / 255.0
    return _to_u8((x + x * rng.normal(0.0, math.sqrt(var), img.shape)) * 255.0)


def color_jitter(img: np.ndarray, rng: np.random.Generator, hue: float = HUE_SHIFT,
                 saturation: tuple[float, float] = SATURATION_RANGE) -> np.ndarray:
    """Random hue shift and saturation scaling in HSV (Table 1 row 3); V (the max channel) is kept."""
    img, rng = _check_image(img), _rng(rng)
    dh = rng.uniform(-hue, hue) * 360.0
    fs = rng.uniform(*saturation)
    hsv = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)   # H in [0, 360), S, V in [0, 1]
    hsv[..., 0] = np.mod(hsv[..., 0] + dh, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * fs, 0.0, 1.0)
    return _to_u8(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255.0)


def brightness_jitter(img: np.ndarray, rng: np.random.Generator, brightness: tuple[float, float] = BRIGHTNESS_RANGE,
                      contrast: tuple[float, float] = CONTRAST_RANGE) -> np.ndarray:
    """Random brightness (x b) then contrast ((x - m) c + m, m the mean grey level) (Table 1 row 4)."""
    img, rng = _check_image(img), _rng(rng)
    b = rng.uniform(*brightness)
    c = rng.uniform(*contrast)
    x = img.astype(np.float64) * b
    grey = x[..., 0] * 0.114 + x[..., 1] * 0.587 + x[..., 2] * 0.299     # BGR -> luma weights
    m = grey.mean()
    return _to_u8((x - m) * c + m)


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    out = cv2.filter2D(img.astype(np.float32), -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return _to_u8(out)


# Kernel scaling. Table 1 gives the blur kernels in pixels ("window size 20", "sigma 1.1 and window size 5",
# "radius 5") without the image size they were meant for, and eq. 1 applies the later steps of a chain after x2
# downsampling ("the length of the combination determines the number of downsampling that occur between each
# degradation"). Read literally (``kernel_scaling="literal"``) the same 20 px window blurs a 112, a 56 and a 28 px
# image: 18 %, 36 % and 71 % of the face (the default: on LFW it won at 5-10 px, the only band where MITM paid).
# ``kernel_scaling="image"`` (our deviation, docs/mitm.md) reads the sizes
# as pixels of a ``kernel_reference`` px image (112: the network-input crop every template is made from, Sec. 3.1)
# and scales every length by (the chain's current width / kernel_reference), so a blur covers the same part of
# the face at every step of the chain.
KERNEL_SCALINGS = ("image", "literal")
DEFAULT_KERNEL_SCALING = "literal"   # measured better where MITM pays (5-10 px), docs/mitm.md issue 17
KERNEL_REFERENCE = 112     # px: the image size Table 1's kernel lengths are read in (kernel_scaling="image")


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"kernel_scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def motion_window(kernel_scale: float = 1.0, window: int = MOTION_WINDOW) -> int:
    """The box length at ``kernel_scale``: ``window`` x scale rounded to whole pixels, at least 1."""
    return max(1, _round_half_up(window * _check_scale(kernel_scale)))


def motion_kernel(window: int = MOTION_WINDOW) -> np.ndarray:
    """(1, window) horizontal box kernel summing to 1."""
    return np.full((1, window), 1.0 / window)


def motion_blur(img: np.ndarray, rng: np.random.Generator, window: int = MOTION_WINDOW, *,
                kernel_scale: float = 1.0) -> np.ndarray:
    """Horizontal motion blur with a ``window``-pixel box (Table 1 row 5), ``motion_window(kernel_scale)`` long
    when scaled; deterministic (rng unused)."""
    img = _check_image(img)
    _rng(rng)
    return _filter(img, motion_kernel(motion_window(kernel_scale, window)))


def gaussian_kernel(sigma: float = GAUSSIAN_SIGMA, window: int = GAUSSIAN_WINDOW) -> np.ndarray:
    """(window, window) sampled isotropic Gaussian summing to 1."""
    ax = np.arange(window) - (window - 1) / 2
    g = np.exp(-ax ** 2 / (2 * sigma ** 2))
    k = np.outer(g, g)
    return k / k.sum()


def gaussian_params(kernel_scale: float = 1.0, sigma: float = GAUSSIAN_SIGMA,
                    window: int = GAUSSIAN_WINDOW) -> tuple[float, int]:
    """(sigma, window) at ``kernel_scale``: sigma x scale; the window's half-width (window - 1) / 2 x scale
    rounded up to whole pixels, at least 1 (so the truncation stays at ~1.8 sigma, as Table 1's 5 taps at 1.1)."""
    s = _check_scale(kernel_scale)
    half = max(1, int(math.ceil((window - 1) / 2 * s - 1e-9)))
    return sigma * s, 2 * half + 1


def gaussian_blur(img: np.ndarray, rng: np.random.Generator, sigma: float = GAUSSIAN_SIGMA,
                  window: int = GAUSSIAN_WINDOW, *, kernel_scale: float = 1.0) -> np.ndarray:
    """Gaussian blur, sigma 1.1, window 5 (Table 1 row 6), ``gaussian_params(kernel_scale)`` when scaled;
    deterministic (rng unused)."""
    img = _check_image(img)
    _rng(rng)
    return _filter(img, gaussian_kernel(*gaussian_params(kernel_scale, sigma, window)))


def disk_kernel(radius: float = DISK_RADIUS) -> np.ndarray:
    """(2 floor(r) + 1)^2 flat disk {x^2 + y^2 <= r^2} summing to 1 (r may be fractional; r < 1: one tap)."""
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
    n = int(math.floor(radius + 1e-9))
    ax = np.arange(-n, n + 1)
    k = (ax[:, None] ** 2 + ax[None, :] ** 2 <= radius ** 2 + 1e-9).astype(np.float64)
    return k / k.sum()


def disk_blur(img: np.ndarray, rng: np.random.Generator, radius: float = DISK_RADIUS, *,
              kernel_scale: float = 1.0) -> np.ndarray:
    """Disk (pillbox) blur of radius 5 (Table 1 row 7), radius 5 x ``kernel_scale`` when scaled; deterministic
    (rng unused)."""
    img = _check_image(img)
    _rng(rng)
    return _filter(img, disk_kernel(radius * _check_scale(kernel_scale)))


#: The Table 1 functions whose parameters are lengths in pixels, scaled by ``kernel_scaling="image"``.
SCALED_BLURS = ("motion_blur", "gaussian_blur", "disk_blur")


def perspective_matrix(shape: tuple[int, ...], rng: np.random.Generator,
                       max_shift: float = PERSPECTIVE_SHIFT) -> np.ndarray:
    """3 x 3 homography moving each image corner by up to ``max_shift`` of the side in x and y."""
    h, w = shape[:2]
    src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    shift = rng.uniform(-max_shift, max_shift, (4, 2)) * np.array([w - 1, h - 1])
    return cv2.getPerspectiveTransform(src, (src + shift).astype(np.float32))


def perspective(img: np.ndarray, rng: np.random.Generator, max_shift: float = PERSPECTIVE_SHIFT) -> np.ndarray:
    """Random perspective transform (Table 1 row 8): ``perspective_matrix``, bilinear, replicated border."""
    img, rng = _check_image(img), _rng(rng)
    m = perspective_matrix(img.shape, rng, max_shift)
    return cv2.warpPerspective(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def shear(img: np.ndarray, rng: np.random.Generator, max_shear: float = SHEAR_RANGE) -> np.ndarray:
    """Random horizontal shear about the centre, x' = x + s (y - cy), s ~ U(-0.2, 0.2) (Table 1 row 9)."""
    img, rng = _check_image(img), _rng(rng)
    s = rng.uniform(-max_shear, max_shear)
    cy = (img.shape[0] - 1) / 2
    m = np.float64([[1.0, s, -s * cy], [0.0, 1.0, 0.0]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def down_up_size(width: int, rng: np.random.Generator, factor: tuple[float, float] = DOWN_UP_FACTOR) -> int:
    """The intermediate width of ``down_up``: round(width / U(factor)), at least 1."""
    return max(1, int(round(width / rng.uniform(*factor))))


def down_up(img: np.ndarray, rng: np.random.Generator, factor: tuple[float, float] = DOWN_UP_FACTOR) -> np.ndarray:
    """Downscale by U(2, 4) then upscale back to the original size (Table 1 row 10), i.e. the SDK's
    ``F_up(F_down,r)`` (``crres_sdk.preprocess.degrade``) at r = ``down_up_size``."""
    img, rng = _check_image(img), _rng(rng)
    return degrade(img, down_up_size(img.shape[1], rng, factor))


def patch_shuffle(img: np.ndarray, rng: np.random.Generator, patch: int = PATCH_SIZE) -> np.ndarray:
    """Patch shuffle (Table 1 row 11, Kang et al. [20]): the pixels of every non-overlapping ``patch x patch``
    block are permuted by a random permutation of their own (rows/columns past the last full block kept)."""
    img, rng = _check_image(img), _rng(rng)
    h, w = img.shape[:2]
    hb, wb = h // patch, w // patch
    if hb == 0 or wb == 0:
        return img.copy()
    out = img.copy()
    blocks = out[:hb * patch, :wb * patch].reshape(hb, patch, wb, patch, 3).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(hb * wb, patch * patch, 3)
    perm = rng.permuted(np.tile(np.arange(patch * patch), (hb * wb, 1)), axis=1)
    shuffled = np.take_along_axis(blocks, perm[:, :, None], axis=1)
    out[:hb * patch, :wb * patch] = shuffled.reshape(hb, wb, patch, patch, 3).transpose(0, 2, 1, 3, 4).reshape(
        hb * patch, wb * patch, 3)
    return out


#: Table 1, in the paper's order.
DEGRADATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "speckle_noise": speckle_noise,
    "color_jitter": color_jitter,
    "brightness_jitter": brightness_jitter,
    "motion_blur": motion_blur,
    "gaussian_blur": gaussian_blur,
    "disk_blur": disk_blur,
    "perspective": perspective,
    "shear": shear,
    "down_up": down_up,
    "patch_shuffle": patch_shuffle,
}
DEGRADATION_NAMES: tuple[str, ...] = tuple(DEGRADATIONS)


def apply_degradation(img: np.ndarray, name: str, seed: int | Sequence[int] = 0) -> np.ndarray:
    """One Table 1 function by name, its random parameters drawn from ``numpy.random.default_rng(seed)``."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATION_NAMES)}")
    return DEGRADATIONS[name](img, np.random.default_rng(seed))
