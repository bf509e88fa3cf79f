"""Synthetic resolution degradations, batched on the tensor's device (GPU in training).

ONE definition of "resolution r" (DESIGN.md Sec. 4; Knoche et al. eq. 1 / Sec. 3.3):
``degrade(x, r) = F_up,S(F_down,r(x))`` - antialiased bicubic down to r x r, then antialiased
bicubic back up to the original S x S. ``antialias=True`` on both calls makes torch use Keys'
cubic with a = -0.5 with the support widened by the scale factor, i.e. PIL's BICUBIC, which the
C++ core (``crres_sdk.preprocess.degrade``) reproduces; ``tests/training/test_degradations.py``
holds the two together. ``r == S`` is the identity (the core copies such an axis, too).

Every sampler returns a ``(N,)`` int64 tensor of per-sample sizes in which ``hr_size`` means "left
at full resolution", and ``degrade_batch(x, sizes)`` applies them, one interpolate pair per
distinct size. Images are float NCHW; the Lu & Ebrahimi model (noise, JPEG) expects [0, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

#: Knoche et al. Sec. 6.2, BT-M: "a different resolution in {7, 14, 28, 56, 112}", equal probability.
BTM_SIZES = (7, 14, 28, 56, 112)
#: Knoche et al. ST-M1's LR branch {7, 14, 28, 56}; Ling et al. call it PAug (Table 4).
PAUG_SIZES = (7, 14, 28, 56)
#: Ling et al. Sec. 4: "7 px: 14 px: 20 px = 1:1:2" (MAug).
MAUG_SIZES, MAUG_WEIGHTS = (7, 14, 20), (1.0, 1.0, 2.0)
#: Lai & Lam Sec. II-B: branches of 16, 12 and 8 px beside the 128 px HR branch.
LAI_SIZES = (16, 12, 8)


def degraded_side(side: int, width: int, r: int) -> int:
    """Height of the low-resolution image when the width goes to r (same rounding as the C++ core)."""
    if side == width:
        return r
    return max(1, (side * r + width // 2) // width)


def degrade(x: torch.Tensor, r: int, mode: str = "bicubic") -> torch.Tensor:
    """``F_up(F_down,r(x))`` for a whole (N, C, H, W) float batch at one resolution r (1 <= r <= W)."""
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"expected a float (N, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    h, w = x.shape[-2:]
    r = int(r)
    if not 1 <= r <= w:
        raise ValueError(f"resolution r={r} is outside [1, {w}]")
    if r == w:
        return x
    small = F.interpolate(x, (degraded_side(h, w, r), r), mode=mode, antialias=True, align_corners=False)
    return F.interpolate(small, (h, w), mode=mode, antialias=True, align_corners=False)


def degrade_batch(x: torch.Tensor, sizes: torch.Tensor | Sequence[int], mode: str = "bicubic") -> torch.Tensor:
    """Degrade sample i to ``sizes[i]``; one down/up pair per distinct size, on x's device."""
    sizes = torch.as_tensor(sizes, dtype=torch.int64).cpu()
    if sizes.shape != (x.shape[0],):
        raise ValueError(f"sizes must have shape ({x.shape[0]},), got {tuple(sizes.shape)}")
    out = x.clone()
    for r in sizes.unique().tolist():
        if r == x.shape[-1]:
            continue
        idx = (sizes == r).nonzero().flatten().to(x.device)
        out[idx] = degrade(x[idx], r, mode)
    return out


# --- samplers -------------------------------------------------------------------------------------

def _pick(n: int, fraction: float, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of exactly round(n * fraction) distinct samples."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must lie in [0, 1]")
    return torch.randperm(n, generator=generator)[: int(round(n * fraction))]


def _choice(n: int, values: Sequence[int], weights: Sequence[float] | None,
            generator: torch.Generator | None) -> torch.Tensor:
    w = torch.ones(len(values)) if weights is None else torch.as_tensor(weights, dtype=torch.float)
    idx = torch.multinomial(w, n, replacement=True, generator=generator)
    return torch.as_tensor(values, dtype=torch.int64)[idx]


def sample_bt_r(n: int, r: int, fraction: float = 0.5, hr_size: int = 112,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """BT-r (Knoche Sec. 5.1): "randomly select half of the images per batch" and reduce them to r."""
    sizes = torch.full((n,), hr_size, dtype=torch.int64)
    sizes[_pick(n, fraction, generator)] = r
    return sizes


def sample_bt_m(n: int, fraction: float = 0.5, hr_size: int = 112, sizes: Sequence[int] = BTM_SIZES,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """BT-M (Knoche Sec. 6.2): the BT-r half of the batch, each at r uniform in {7,14,28,56,112}.

    112 is in the set as printed, so about a fifth of the selected half stays at full resolution.
    """
    out = torch.full((n,), hr_size, dtype=torch.int64)
    idx = _pick(n, fraction, generator)
    out[idx] = _choice(len(idx), sizes, None, generator)
    return out


def sample_maug(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """MAug (Ling Sec. 3.3/4): every HR image's LR partner at 7/14/20 px with ratio 1:1:2."""
    return _choice(n, MAUG_SIZES, MAUG_WEIGHTS, generator)


def sample_paug(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """PAug (Ling Table 4) = ST-M1's LR branch (Knoche Sec. 6.2): uniform in {7, 14, 28, 56}."""
    return _choice(n, PAUG_SIZES, None, generator)


def sample_uniform_range(n: int, lo: int = 8, hi: int | None = None, hr_size: int = 112,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Lai & Lam's baseline (Sec. III): "randomly downsampled between 8x8 and 128x128" on their
    128 px crops; ``hi`` defaults to ``hr_size`` (an r above the crop size is no reduction)."""
    hi = hr_size if hi is None else hi
    if not 1 <= lo <= hi <= hr_size:
        raise ValueError(f"need 1 <= lo <= hi <= hr_size, got {lo}, {hi}, {hr_size}")
    return torch.randint(lo, hi + 1, (n,), generator=generator)


def lai_branches(x: torch.Tensor, sizes: Sequence[int] = LAI_SIZES, mode: str = "bilinear") -> list[torch.Tensor]:
    """The K = 4 Siamese inputs of Lai & Lam (Sec. II-B): HR plus 16, 12, 8 px versions.

    Sec. III: "the bilinear kernel is used as the upsampling and downsampling operator", hence the
    default; antialias=True as everywhere else (the paper does not say whether theirs was).
    """
    return [x] + [degrade(x, r, mode) for r in sizes]


# --- Lu & Ebrahimi degradation model (Sec. II-D, Fig. 2) ------------------------------------------

def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size, size) normalised isotropic Gaussian kernels."""
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(ax[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k = g[:, :, None] * g[:, None, :]
    return k / k.sum(dim=(1, 2), keepdim=True)


def motion_kernels(length: torch.Tensor, angle: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size, size) normalised linear motion-blur kernels: a centred segment of the given length
    (pixels) and angle (radians), rasterised with a 1-pixel-wide tent around the segment."""
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    along = xx * c + yy * s
    across = -xx * s + yy * c
    half = (length / 2)[:, None, None]
    beyond = (along.abs() - half).clamp_min(0)
    k = (1 - torch.sqrt(across**2 + beyond**2)).clamp_min(0)
    return k / k.sum(dim=(1, 2), keepdim=True)


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-sample blur of (N, C, H, W) by (N, k, k) kernels in one grouped convolution (reflect pad)."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    weight = kernels.to(x)[:, None].repeat_interleave(c, dim=0)  # (N*C, 1, k, k)
    xp = F.pad(x.reshape(1, n * c, h, w), (k // 2,) * 4, mode="reflect")
    return F.conv2d(xp, weight, groups=n * c).reshape(n, c, h, w)


_JPEG_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)
_JPEG_CHROMA = torch.full((8, 8), 99.0)
_JPEG_CHROMA[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]],
                                    dtype=torch.float32)


def _dct_matrix() -> torch.Tensor:
    i = torch.arange(8, dtype=torch.float32)
    m = torch.cos((2 * i[None, :] + 1) * i[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m  # orthonormal DCT-II: coefficients = M @ block @ M.T


def _quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IJG quality scaling (libjpeg ``jpeg_quality_scaling``, as PIL uses): (N, 8, 8) tables."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None]
    luma = ((_JPEG_LUMA * scale + 50) / 100).floor().clamp(1, 255)
    chroma = ((_JPEG_CHROMA * scale + 50) / 100).floor().clamp(1, 255)
    return luma, chroma


def _blockwise(plane: torch.Tensor, table: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Quantise then dequantise the 8x8 DCT of every block of (N, H, W) (H, W multiples of 8)."""
    n, h, w = plane.shape
    blocks = plane.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coef = m @ blocks @ m.T
    t = table.to(plane)[:, None, None]
    coef = torch.round(coef / t) * t
    return (m.T @ coef @ m).permute(0, 1, 3, 2, 4).reshape(n, h, w)


def jpeg_approx(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """On-device approximation of baseline JPEG at per-sample IJG ``quality`` for RGB in [0, 1].

    Does what a JPEG encoder + decoder does to pixels: 8-bit levels, RGB -> YCbCr (JFIF), 4:2:0
    chroma subsampling (2x2 mean), 8x8 DCT, quantisation with the IJG tables scaled by quality,
    and the inverse. It differs from libjpeg/PIL in details: float DCT instead of libjpeg's integer
    "islow" DCT, bilinear instead of libjpeg's "fancy" chroma upsampling, and no rounding between
    stages; the entropy coding it omits is lossless. ``test_degradations`` compares it with PIL.
    """
    n, c, h, w = x.shape
    if c != 3:
        raise ValueError("jpeg_approx needs RGB input")
    ph, pw = (-h) % 16, (-w) % 16
    img = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    img = torch.round(img.clamp(0, 1) * 255)
    r, g, b = img.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    luma_t, chroma_t = _quant_tables(quality.to(torch.float32))
    m = _dct_matrix().to(x)
    y = _blockwise(y - 128, luma_t, m) + 128
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2) - 128
    cb_s = _blockwise(chroma[:, 0], chroma_t, m)
    cr_s = _blockwise(chroma[:, 1], chroma_t, m)
    chroma = F.interpolate(torch.stack([cb_s, cr_s], 1), scale_factor=2, mode="bilinear", align_corners=False)
    cb, cr = chroma.unbind(1)
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    out = torch.round(out.clamp(0, 255)) / 255
    return out[..., :h, :w]


def lu_degradation(x: torch.Tensor, sizes: torch.Tensor | Sequence[int] | None = None, p: float = 0.5,
                   size_range: tuple[int, int] = (7, 112), generator: torch.Generator | None = None,
                   upsample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Lu & Ebrahimi's degradation model (Sec. II-D, Fig. 2) for RGB images in [0, 1].

    Each of blur, noise and JPEG is applied independently with probability ``p`` = 0.5 ("the
    probability of applying each corruption ... is set to 0.5"), in that order, then the image is
    bicubic-downsampled to its size and (``upsample``) brought back to the input size, as their
    student is trained on "LR images ... upsampled to the same size as HR images" (Sec. III-A-2).
    The paper gives no corruption parameters or size distribution; ours, all documented choices:
    blur is Gaussian (sigma ~ U(0.5, 3)) or linear motion (length ~ U(3, 11) px, any angle) with
    equal odds, noise is Gaussian with sigma ~ U(1, 25)/255, JPEG quality ~ U{30..95}
    (``jpeg_approx``), and r ~ U{size_range} when ``sizes`` is not given.
    Returns ``(images, sizes)``.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError("lu_degradation expects an (N, 3, H, W) RGB batch")
    n, _, h, w = x.shape
    if sizes is None:
        lo, hi = size_range
        if not 1 <= lo <= hi <= w:
            raise ValueError(f"size_range must lie within [1, {w}]")
        sizes = torch.randint(lo, hi + 1, (n,), generator=generator)
    sizes = torch.as_tensor(sizes, dtype=torch.int64).cpu()
    out = x
    ksize = 21  # covers 3 sigma of sigma = 3 and the longest motion kernel
    apply_blur, apply_noise, apply_jpeg = (_rand(n, generator) < p for _ in range(3))
    use_motion = _rand(n, generator) < 0.5
    sigma = 0.5 + 2.5 * _rand(n, generator)
    length = 3 + 8 * _rand(n, generator)
    angle = math.pi * _rand(n, generator)
    noise_sigma = (1 + 24 * _rand(n, generator)) / 255
    quality = torch.randint(30, 96, (n,), generator=generator)
    noise = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)

    if apply_blur.any():
        kernels = torch.where(use_motion[:, None, None], motion_kernels(length, angle, ksize),
                              gaussian_kernels(sigma, ksize))
        idx = apply_blur.nonzero().flatten()
        out = out.clone()
        out[idx.to(x.device)] = blur(out[idx.to(x.device)], kernels[idx])
    if apply_noise.any():
        scale = (noise_sigma * apply_noise).to(x)[:, None, None, None]
        out = (out + scale * noise.to(x)).clamp(0, 1)
    if apply_jpeg.any():
        idx = apply_jpeg.nonzero().flatten()
        out = out.clone()
        out[idx.to(x.device)] = jpeg_approx(out[idx.to(x.device)], quality[idx])
    if upsample:
        out = degrade_batch(out, sizes, mode="bicubic")
    else:
        if sizes.unique().numel() != 1:
            raise ValueError("upsample=False needs a single size for the whole batch")
        r = int(sizes[0])
        out = F.interpolate(out, (degraded_side(h, w, r), r), mode="bicubic", antialias=True, align_corners=False)
    return out, sizes
