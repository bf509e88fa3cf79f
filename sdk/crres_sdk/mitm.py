"""Meet-in-the-middle matching (Grm, Oezata, Struc, Ekenel 2023): degrade the gallery, super-resolve the probe,
match resolutions and fuse over hypotheses and scales. Training-free; numpy + OpenCV only (never torch).

Paper: ``shared/seeds/grm2023_meet_in_the_middle.txt``. What each part implements:

* **Gallery degradations** (Sec. 3.2, Table 1): the 11 functions ``DEGRADATIONS`` with the stated parameters
  (noise variance 0.02, motion window 20, Gaussian sigma 1.1 / window 5, disk radius 5); where Table 1 gives no
  parameter ("randomly change hue and saturation", "random perspective/shear", the down-up factor, the patch
  size) ours are documented on each function. Every function maps a uint8 ``H x W x 3`` image to one of the same
  size, deterministically for a given ``numpy.random.Generator`` state. The three blurs' pixel sizes stay in
  pixels at every chain step by default (``kernel_scaling="literal"``, the paper's text); ``"image"`` scales them
  with the chain's current image, read at 112 px (our deviation; see ``apply_chain`` and docs/mitm.md).
* **Chains** (eq. 1, Fig. 2): every path of length 1..3 through the 11 options (``enumerate_chains``: 11 + 11^2 +
  11^3 = 1463), with a x2 antialiased bicubic downsampling (``crres_sdk.preprocess.resize_bicubic``, the SDK's one
  definition of resolution) between consecutive steps: ``G_H = rho3(down2(rho2(down2(rho1(G)))))``.
* **Resolution matching** (Sec. 3.2 end, Sec. 4.2): a gallery hypothesis is resized to the size of the
  (super-resolved) probe, then to the recognition network's input size (``match_resolution``).
* **Multi-hypothesis face hallucination** (Sec. 3.3): 16 versions of the low-resolution probe blurred with a
  Gaussian of sigma 0..1, each super-resolved x2/x4/x8 by an SR callable (``OnnxSuperResolver`` runs the EDSR
  models ``python -m training.sr`` exports; without one, bicubic upsampling stands in).
* **Fusion** (Sec. 3.4, eqs. 3-5, Fig. 4, Tables 2-3): correlation similarity, T_add, T_concat, S_add, S_max and
  their combinations; the default ``"smax_sadd"`` is the paper's best (Sec. 4.2 last paragraph): S_max over the
  gallery hypotheses (and, per Sec. 3.3, over the probe's blur hypotheses), then S_add over the probe scales.

``MitmMatcher`` puts it together around any ``embed(crops_uint8_bgr) -> (N, D)`` callable; gallery templates
are computed once at enrolment (``gallery_templates``: flat ``(K, D)`` templates with the ``(K,)`` matched size
each was made at, which is what :class:`crres_sdk.Gallery` stores), so a probe costs blur_levels x scales SR
runs and embeddings.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from crres_sdk.policy import MITM_SIZES
from crres_sdk.preprocess import degrade, resize_bicubic

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


# ------------------------------------------------------------------------------------------ eq. 1: chains

def enumerate_chains(max_len: int = 3, names: Sequence[str] = DEGRADATION_NAMES) -> list[tuple[str, ...]]:
    """Every chain of 1..max_len degradations (Fig. 2: l options at each step, so sum_k l^k paths; 1463 for
    l = 11, max_len = 3), by length, then in Table 1 order."""
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
    names = tuple(names)
    unknown = [n for n in names if n not in DEGRADATIONS]
    if unknown or not names:
        raise ValueError(f"names must be a non-empty subset of {DEGRADATION_NAMES}, got {list(names)}")
    return [chain for k in range(1, max_len + 1) for chain in itertools.product(names, repeat=k)]


def count_chains(max_len: int = 3, n_functions: int = len(DEGRADATION_NAMES)) -> int:
    """sum_{k=1..max_len} l^k, the size of ``enumerate_chains``."""
    return sum(n_functions ** k for k in range(1, max_len + 1))


def sample_chains(n: int, seed: int = 0, max_len: int = 3) -> list[tuple[str, ...]]:
    """``n`` distinct chains drawn uniformly from ``enumerate_chains(max_len)`` (cheaper enrolment), in order."""
    chains = enumerate_chains(max_len)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(chains):
        raise ValueError(f"n must be an int in [1, {len(chains)}], got {n!r}")
    idx = np.sort(np.random.default_rng(seed).choice(len(chains), n, replace=False))
    return [chains[i] for i in idx]


def downsample2(img: np.ndarray) -> np.ndarray:
    """The ``down_s`` of eq. 1: x2 antialiased bicubic downsampling (sides rounded half up)."""
    h, w = img.shape[:2]
    return resize_bicubic(img, (max(1, (h + 1) // 2), max(1, (w + 1) // 2)))


def _check_kernel_scaling(kernel_scaling: str, kernel_reference: int) -> None:
    if kernel_scaling not in KERNEL_SCALINGS:
        raise ValueError(f"kernel_scaling must be one of {KERNEL_SCALINGS}, got {kernel_scaling!r}")
    if isinstance(kernel_reference, bool) or not isinstance(kernel_reference, (int, np.integer)) \
            or kernel_reference < 1:
        raise ValueError(f"kernel_reference must be an int >= 1, got {kernel_reference!r}")


def apply_chain(img: np.ndarray, chain: Sequence[str], seed: int | Sequence[int] = 0, *,
                kernel_scaling: str = DEFAULT_KERNEL_SCALING, kernel_reference: int = KERNEL_REFERENCE) -> np.ndarray:
    """Eq. 1: ``rho_k(down2(... down2(rho_1(G))))``; a chain of length k returns an image 2^(k-1) times smaller.

    The random parameters of all steps come, in order, from one ``numpy.random.default_rng(seed)``; the empty
    chain returns a copy of ``img`` (the undegraded gallery image). ``kernel_scaling="image"``: the blurs of
    ``SCALED_BLURS`` run with ``kernel_scale = current width / kernel_reference`` (1, 1/2, 1/4 along a chain on a
    112 px crop); ``"literal"``: Table 1's pixel sizes at every step, as the paper's text reads.
    """
    img = _check_image(img)
    _check_kernel_scaling(kernel_scaling, kernel_reference)
    if isinstance(chain, str) or not all(isinstance(c, str) for c in chain):
        raise TypeError(f"chain must be a sequence of degradation names, got {chain!r}")
    unknown = [c for c in chain if c not in DEGRADATIONS]
    if unknown:
        raise ValueError(f"unknown degradation(s) {unknown}; known: {', '.join(DEGRADATION_NAMES)}")
    rng = np.random.default_rng(seed)
    out = img.copy()
    for step, name in enumerate(chain):
        if step:
            out = downsample2(out)
            if min(out.shape[:2]) < 2:
                raise ValueError(f"image {img.shape[:2]} is too small for a chain of {len(chain)} steps")
        if kernel_scaling == "image" and name in SCALED_BLURS:
            out = DEGRADATIONS[name](out, rng, kernel_scale=out.shape[1] / kernel_reference)
        else:
            out = DEGRADATIONS[name](out, rng)
    return out


# ---------------------------------------------------------------------------------- resolution matching

def match_resolution(img: np.ndarray, size: int, out_size: int = 112) -> np.ndarray:
    """Sec. 3.2/4.2 resolution matching: resize to the probe's ``size`` (px, the width; antialiased bicubic),
    then to the recognition network's ``out_size``. A ``size`` at or above ``out_size`` resizes straight to
    ``out_size`` (the paper's 8x = 192 px case: above the network input there is nothing to match)."""
    img = _check_image(img)
    for value, what in ((size, "size"), (out_size, "out_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what} must be an int >= 1, got {value!r}")
    h, w = img.shape[:2]
    if size < out_size:
        img = resize_bicubic(img, (max(1, int(round(h * size / w))), int(size)))
    return resize_bicubic(img, (out_size, out_size))


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


# ------------------------------------------------------------------------------------ Sec. 3.4: fusion

def _centred_unit(t: np.ndarray) -> np.ndarray:
    z = t - t.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    if np.any(norm == 0) or not np.all(np.isfinite(norm)):
        raise ValueError("correlation similarity is undefined for a constant or non-finite template")
    return z / norm


def correlation_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Eq. 3, Pearson correlation of templates: ``(a - mean a) . (b - mean b) / (|a - mean a| |b - mean b|)``,
    the means taken over each template's D elements. (D,) x (D,) -> float; (M, D) x (N, D) -> (M, N)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.ndim not in (1, 2) or b64.ndim not in (1, 2) or a64.shape[-1] != b64.shape[-1] or a64.shape[-1] < 2:
        raise ValueError(f"templates must be (D,) or (N, D) with the same D >= 2, got {a64.shape} and {b64.shape}")
    r = _centred_unit(np.atleast_2d(a64)) @ _centred_unit(np.atleast_2d(b64)).T
    if a64.ndim == 1 and b64.ndim == 1:
        return float(r[0, 0])
    if a64.ndim == 1:
        return r[0]
    return r[:, 0] if b64.ndim == 1 else r


def t_add(templates: np.ndarray) -> np.ndarray:
    """Eq. 4: the element-wise sum of all hypothesis templates, (..., D) -> (D,)."""
    t = np.asarray(templates, np.float64)
    return t.reshape(-1, t.shape[-1]).sum(axis=0)


def t_concat(templates: np.ndarray) -> np.ndarray:
    """Eq. 5: T_add within each scale, then the per-scale sums concatenated: (S, M, D) -> (S * D,)."""
    t = np.asarray(templates, np.float64)
    if t.ndim != 3:
        raise ValueError(f"t_concat needs (scales, hypotheses, D) templates, got shape {t.shape}")
    return t.sum(axis=1).reshape(-1)


def s_add(scores: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Score addition (sum rule, Kittler et al. [24]), computed as the mean: the same ranking as the sum when
    every identity has the same number of hypotheses (the paper's one gallery image per subject), fair when
    they differ, and a score in [-1, 1] that a threshold can apply to."""
    return np.mean(scores, axis=axis)


def s_max(scores: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Score max: the best pair of hypotheses decides (Sec. 3.4)."""
    return np.max(scores, axis=axis)


_REDUCE = {"max": s_max, "add": s_add}

#: Fusion modes of Table 2 / Table 3 / Sec. 4.2, for probe templates P (S, M, D) and gallery templates G (S, N, D)
#: (G[s]: the gallery hypotheses resolution-matched to probe scale s), R[s, m, n] = r(P[s, m], G[s, n]) (eq. 3).
FUSIONS = (
    "smax_sadd",             # sum_s over scales of max over (m, n) of R[s] (Sec. 4.2: S_max then S_add; default)
    "s_max",                 # max over s, m, n of R (Table 2, S_max)
    "s_add",                 # mean over n, then the blur rule over m, mean over s (Table 2, S_add)
    "t_add",                 # r(T_add(P), T_add(G)) (eq. 4 on both sides; Fig. 4a; Table 2, T_add)
    "t_concat",              # r(T_concat(P), T_concat(G)) (eq. 5; Table 2, T_concat)
    "probe_t_add+s_add",     # r(T_add(P), G[s, n]) averaged over (s, n) (Table 3, upper, S_add)
    "probe_t_add+s_max",     # ... max over (s, n) (Table 3, upper, S_max)
    "gallery_t_add+s_add",   # r(P[s, m], T_add(G)) averaged over (s, m) (Table 3, lower, S_add)
    "gallery_t_add+s_max",   # ... max over (s, m) (Table 3, lower, S_max)
)


def _check_pg(probe: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(probe, np.float64), np.asarray(gallery, np.float64)
    if p.ndim != 3 or g.ndim != 3 or p.shape[0] != g.shape[0] or p.shape[2] != g.shape[2] or 0 in p.shape \
            or 0 in g.shape:
        raise ValueError(f"probe must be (S, M, D) and gallery (S, N, D) with the same S and D, got {p.shape} "
                         f"and {g.shape}")
    return p, g


def similarity_tensor(probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """R[s, m, n] = r(P[s, m], G[s, n]) (eq. 3), each probe scale against the gallery matched to it."""
    p, g = _check_pg(probe, gallery)
    return np.einsum("smd,snd->smn", _centred_unit(p), _centred_unit(g))


def fuse_scores(r: np.ndarray, gallery: str = "max", blur: str = "max", scales: str = "add") -> float:
    """Two-stage score fusion of Fig. 4c on R (S, M, N): reduce the gallery hypotheses n, then the probe's blur
    hypotheses m (Sec. 3.3 picks the best: "max"), then the scales s, each by "max" (S_max) or "add" (S_add)."""
    for value, what in ((gallery, "gallery"), (blur, "blur"), (scales, "scales")):
        if value not in _REDUCE:
            raise ValueError(f"{what} must be 'max' or 'add', got {value!r}")
    r = np.asarray(r, np.float64)
    if r.ndim != 3 or 0 in r.shape:
        raise ValueError(f"r must be a non-empty (S, M, N) array, got shape {r.shape}")
    return float(_REDUCE[scales](_REDUCE[blur](_REDUCE[gallery](r, axis=2), axis=1), axis=0))


def fuse(probe: np.ndarray, gallery: np.ndarray, method: str = "smax_sadd", blur: str = "max") -> float:
    """One similarity between a probe's templates (S, M, D) and a gallery image's (S, N, D); see ``FUSIONS``.
    ``blur``: how the probe's blur hypotheses combine in the score-level modes ("max", Sec. 3.3, or "add")."""
    if method not in FUSIONS:
        raise ValueError(f"method must be one of {FUSIONS}, got {method!r}")
    p, g = _check_pg(probe, gallery)
    if method == "smax_sadd":
        return fuse_scores(similarity_tensor(p, g), "max", blur, "add")
    if method == "s_max":
        return fuse_scores(similarity_tensor(p, g), "max", "max", "max")
    if method == "s_add":
        return fuse_scores(similarity_tensor(p, g), "add", blur, "add")
    if method == "t_add":
        return float(correlation_similarity(t_add(p), t_add(g)))
    if method == "t_concat":
        return float(correlation_similarity(t_concat(p), t_concat(g)))
    side, rule = method.split("+")
    if side == "probe_t_add":
        scores = correlation_similarity(g.reshape(-1, g.shape[-1]), t_add(p))
    else:
        scores = correlation_similarity(p.reshape(-1, p.shape[-1]), t_add(g))
    return float(_REDUCE[rule[2:]](scores))


# -------------------------------------------------------------------------------------------- the matcher

#: Probe-side sizes (px) gallery templates are precomputed at: k x r for r the probe resolution and k the SR
#: scale is matched to the nearest in log (sizes >= the network input all collapse onto it, Sec. 4.2).
DEFAULT_MATCH_SIZES = MITM_SIZES  # the grid lives with the other resolution rules (crres_sdk.policy)

Embedder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ProbeTemplates:
    """A probe's hypothesis templates: ``templates[s, m]`` for SR scale ``scales[s]`` and blur level m; the
    gallery templates to compare with scale s are those made at ``sizes[s]`` px."""

    resolution: int
    scales: tuple[int, ...]
    sizes: tuple[int, ...]
    templates: np.ndarray      # (S, M, D) float32


class MitmMatcher:
    """Meet-in-the-middle matching around any face embedder.

    Args:
        embed: ``embed(crops)`` with crops uint8 ``(N, input_size, input_size, 3)`` BGR aligned faces, returning
            ``(N, D)`` templates (e.g. ``Recognizer.embed_crops_uint8``).
        sr: ``sr(crops, scale)`` -> uint8 ``(N, h*scale, w*scale, 3)`` (e.g. :class:`OnnxSuperResolver`); None =
            bicubic upsampling.
        scales: SR magnifications of the probe (Sec. 3.4: 2, 4, 8).
        blur_levels / max_sigma: multi-hypothesis SR (Sec. 3.3: 16 levels, sigma 0..1).
        chains: gallery degradation chains; None = all 1463 of ``enumerate_chains(3)``. Each enrolment image
            costs ``(len(chains) + include_original) * len(match_sizes)`` embeddings.
        include_original: also keep the undegraded image as a gallery hypothesis (resolution matching alone).
        match_sizes: probe-side sizes gallery templates are precomputed at (``input_size`` is always added).
        fusion / blur_fusion: see ``FUSIONS`` and ``fuse``.
        seed: chain i of an enrolment image draws its random parameters from ``default_rng([seed, i])``.
        batch_size: crops per ``embed`` call.
        kernel_scaling / kernel_reference: Table 1's blur lengths scaled with the chain's image ("image", read
            at ``kernel_reference`` px) or in pixels at every step ("literal"); see ``apply_chain``.
    """

    def __init__(self, embed: Embedder, sr: SuperResolver | None = None, *, scales: Sequence[int] = SR_SCALES,
                 blur_levels: int = BLUR_LEVELS, max_sigma: float = MAX_BLUR_SIGMA,
                 chains: Iterable[Sequence[str]] | None = None, include_original: bool = True,
                 match_sizes: Sequence[int] = DEFAULT_MATCH_SIZES, fusion: str = "smax_sadd",
                 blur_fusion: str = "max", input_size: int = 112, seed: int = 0, batch_size: int = 128,
                 kernel_scaling: str = DEFAULT_KERNEL_SCALING, kernel_reference: int = KERNEL_REFERENCE) -> None:
        if not callable(embed):
            raise TypeError("embed must be callable: embed(uint8 (N, S, S, 3) crops) -> (N, D)")
        if sr is not None and not callable(sr):
            raise TypeError("sr must be None or callable: sr(uint8 (N, h, w, 3) crops, scale) -> crops")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if blur_fusion not in _REDUCE:
            raise ValueError(f"blur_fusion must be 'max' or 'add', got {blur_fusion!r}")
        for value, what in ((input_size, "input_size"), (batch_size, "batch_size")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be an int >= 1, got {value!r}")
        self.scales = tuple(int(k) for k in scales)
        if not self.scales or any(k < 1 for k in self.scales) or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must be distinct ints >= 1, got {list(scales)}")
        blur_sigmas(blur_levels, max_sigma)  # validates both
        _check_kernel_scaling(kernel_scaling, kernel_reference)
        self.kernel_scaling, self.kernel_reference = kernel_scaling, int(kernel_reference)
        self.blur_levels, self.max_sigma = blur_levels, float(max_sigma)
        self.chains = [tuple(c) for c in (enumerate_chains(3) if chains is None else chains)]
        for c in self.chains:
            if not c or any(name not in DEGRADATIONS for name in c):
                raise ValueError(f"every chain must be a non-empty sequence of {DEGRADATION_NAMES}, got {c!r}")
        if not self.chains and not include_original:
            raise ValueError("no gallery hypotheses: give chains or include_original=True")
        self.include_original = bool(include_original)
        sizes = {int(s) for s in match_sizes if 1 <= int(s) < input_size} | {input_size}
        self.match_sizes = tuple(sorted(sizes))
        self.embed_fn, self.sr = embed, sr
        self.fusion, self.blur_fusion = fusion, blur_fusion
        self.input_size, self.seed, self.batch_size = input_size, int(seed), batch_size
        self._store: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._stacked: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] | None = None

    # --------------------------------------------------------------------------------------- embedding

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, D) float32 templates of uint8 (N, S, S, 3) crops, batched, checked, L2-normalised."""
        crops = _check_batch(crops)
        outs = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            emb = np.asarray(self.embed_fn(chunk), np.float32)
            if emb.ndim != 2 or len(emb) != len(chunk) or emb.shape[1] < 2:
                raise ValueError(f"embed returned shape {emb.shape} for {len(chunk)} crops; expected (N, D)")
            outs.append(emb)
        out = np.concatenate(outs)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if not np.all(np.isfinite(out)) or np.any(norms == 0):
            raise ValueError("embed produced a non-finite or zero template")
        return out / norms

    # ---------------------------------------------------------------------------------------- gallery

    def gallery_hypotheses(self, crop: np.ndarray) -> list[np.ndarray]:
        """The degraded hypotheses of one enrolment crop (eq. 1): the original (when kept), then each chain."""
        crop = _check_image(crop, "crop")
        out = [crop.copy()] if self.include_original else []
        out += [apply_chain(crop, chain, [self.seed, i], kernel_scaling=self.kernel_scaling,
                            kernel_reference=self.kernel_reference) for i, chain in enumerate(self.chains)]
        return out

    def gallery_templates(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Templates of every hypothesis of every crop, resolution-matched to every match size.

        ``crops``: one (H, W, 3) or (N, H, W, 3) uint8 BGR aligned crop(s). Returns ``(templates, sizes)``:
        (K, D) float32 L2-normalised and (K,) int64 px, K = N x hypotheses x len(match_sizes).
        """
        crops = np.asarray(crops)
        crops = _check_batch(crops[None] if crops.ndim == 3 else crops)
        templates, sizes = [], []
        for crop in crops:
            hyps = self.gallery_hypotheses(crop)
            for size in self.match_sizes:
                batch = np.stack([match_resolution(h, size, self.input_size) for h in hyps])
                templates.append(self.embed(batch))
                sizes.append(np.full(len(hyps), size, np.int64))
        return np.concatenate(templates), np.concatenate(sizes)

    # ------------------------------------------------------------------------------------------ probe

    def size_for(self, target: float) -> int:
        """The match size nearest ``target`` px in log (targets >= input_size -> input_size)."""
        if target >= self.input_size:
            return self.input_size
        sizes = np.array(self.match_sizes, np.float64)
        return int(sizes[np.argmin(np.abs(np.log(sizes) - math.log(max(target, 1.0))))])

    def probe_templates(self, crop: np.ndarray, resolution: float) -> ProbeTemplates:
        """Multi-hypothesis, multi-scale templates of an aligned probe crop whose information is ``resolution``
        px (its equivalent/effective resolution): down to r x r, 16 blur levels, SR x each scale, embed."""
        lr = probe_lowres(crop, resolution)
        r = lr.shape[1]
        images = probe_hypotheses(lr, self.sr, self.scales, self.blur_levels, self.max_sigma, self.input_size)
        s, m = images.shape[:2]
        t = self.embed(images.reshape(s * m, *images.shape[2:]))
        return ProbeTemplates(r, self.scales, tuple(self.size_for(k * r) for k in self.scales),
                              t.reshape(s, m, -1))

    # ---------------------------------------------------------------------------------------- scoring

    def _gallery_tensor(self, probe: ProbeTemplates, templates: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """(S, N, D): an identity's templates at each probe scale's match size."""
        groups = [templates[sizes == size] for size in probe.sizes]
        counts = {len(g) for g in groups}
        if 0 in counts or len(counts) != 1:
            missing = [size for size, g in zip(probe.sizes, groups) if not len(g)]
            raise ValueError(f"gallery templates lack match size(s) {missing} px (have {sorted(set(sizes.tolist()))});"
                             " were they made with the same match_sizes?")
        return np.stack(groups)

    def score(self, probe: ProbeTemplates, templates: np.ndarray, sizes: np.ndarray) -> float:
        """The fused similarity of a probe with one identity's gallery templates (from ``gallery_templates``)."""
        templates, sizes = self._check_gallery(templates, sizes, probe)
        return fuse(probe.templates, self._gallery_tensor(probe, templates, sizes), self.fusion, self.blur_fusion)

    def scores(self, probe: ProbeTemplates,
               gallery: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, float]:
        """Fused similarity of a probe with every identity: ``gallery`` maps name -> (templates, sizes); None =
        the identities ``enroll`` stored. Score-level fusions run as one matrix product per scale."""
        if gallery is not None:
            names = list(gallery)
            items = [self._check_gallery(*gallery[n], probe) for n in names]
        else:
            names = list(self._store)
            items = [self._store[n] for n in names]
        if not names:
            return {}
        if items[0][0].shape[1] != probe.templates.shape[2]:
            raise ValueError(f"gallery templates have D={items[0][0].shape[1]}, the probe's have "
                             f"{probe.templates.shape[2]}")
        if self.fusion not in ("smax_sadd", "s_max", "s_add"):
            return {n: fuse(probe.templates, self._gallery_tensor(probe, t, s), self.fusion, self.blur_fusion)
                    for n, (t, s) in zip(names, items)}
        gallery_op, scale_op = {"smax_sadd": ("max", "add"), "s_max": ("max", "max"), "s_add": ("add", "add")}[
            self.fusion]
        blur_op = "max" if self.fusion == "s_max" else self.blur_fusion
        zp = _centred_unit(probe.templates.astype(np.float64))
        per_scale = []
        for s, size in enumerate(probe.sizes):
            zg, offsets = self._stack(size, names, items, gallery is None)
            r = zp[s] @ zg.T                                          # (M, N_total)
            if gallery_op == "max":
                red = np.maximum.reduceat(r, offsets[:-1], axis=1)
            else:
                red = np.add.reduceat(r, offsets[:-1], axis=1) / np.diff(offsets)
            per_scale.append(_REDUCE[blur_op](red, axis=0))          # (identities,)
        fused = _REDUCE[scale_op](np.stack(per_scale), axis=0)
        return {n: float(v) for n, v in zip(names, fused)}

    def _stack(self, size: int, names: list[str], items: list[tuple[np.ndarray, np.ndarray]],
               cached: bool) -> tuple[np.ndarray, np.ndarray]:
        if cached and self._stacked is not None and size in self._stacked:
            zg, offsets, cached_names = self._stacked[size]
            if cached_names == names:
                return zg, offsets
        groups = [t[s == size] for t, s in items]
        if any(len(g) == 0 for g in groups):
            bad = [n for n, g in zip(names, groups) if not len(g)]
            raise ValueError(f"identities {bad} have no gallery templates at match size {size} px")
        zg = _centred_unit(np.concatenate(groups).astype(np.float64))
        offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])])
        if cached:
            if self._stacked is None:
                self._stacked = {}
            self._stacked[size] = (zg, offsets, list(names))
        return zg, offsets

    def _check_gallery(self, templates: np.ndarray, sizes: np.ndarray,
                       probe: ProbeTemplates | None = None) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(templates, np.float32)
        s = np.asarray(sizes).reshape(-1)
        if t.ndim != 2 or len(t) != len(s) or len(t) == 0:
            raise ValueError(f"gallery templates must be (K, D) with K sizes, got {t.shape} and {s.shape}")
        if probe is not None and t.shape[1] != probe.templates.shape[2]:
            raise ValueError(f"gallery templates have D={t.shape[1]}, the probe's have {probe.templates.shape[2]}")
        if s.dtype.kind not in "iuf" or not np.all(np.isfinite(s)):
            raise ValueError("gallery sizes must be finite numbers")
        return t, np.rint(s).astype(np.int64)  # sizes read back as float px (a gallery's resolutions)

    # -------------------------------------------------------------------------------- in-memory gallery

    def enroll(self, name: str, crops: np.ndarray) -> int:
        """Precompute and keep ``name``'s gallery templates (appending to earlier ones); returns their count."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        t, s = self.gallery_templates(crops)
        if name in self._store:
            old_t, old_s = self._store[name]
            if old_t.shape[1] != t.shape[1]:
                raise ValueError(f"embed changed dimension: {old_t.shape[1]} -> {t.shape[1]}")
            t, s = np.concatenate([old_t, t]), np.concatenate([old_s, s])
        elif self._store and next(iter(self._store.values()))[0].shape[1] != t.shape[1]:
            raise ValueError("embed's dimension differs from the enrolled identities'")
        self._store[name] = (t, s)
        self._stacked = None
        return len(t)

    def remove(self, name: str) -> None:
        if name not in self._store:
            raise KeyError(f"no identity {name!r} enrolled")
        del self._store[name]
        self._stacked = None

    @property
    def identities(self) -> list[str]:
        return list(self._store)

    def identify(self, crop: np.ndarray, resolution: float, top_k: int = 1) -> list[tuple[str, float]]:
        """Nearest-neighbour identification (Sec. 3.4): the top-k (name, fused score), best first."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if not self._store:
            return []
        scores = self.scores(self.probe_templates(crop, resolution))
        return sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]


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
