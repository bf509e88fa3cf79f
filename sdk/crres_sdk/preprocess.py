"""Typed Python layer over the C++ preprocessing core (``crres_sdk._core``).

Conventions (DESIGN section 4):

* Frames are uint8 ``H x W x 3`` numpy arrays, BGR by default (what OpenCV and camera apps hold). Row-strided
  views (``frame[y0:y1, x0:x1]``) are used without a copy; arrays whose pixels are not packed are rejected.
* Landmarks are ``(N, K, 2)`` (or ``(K, 2)`` for one face) image coordinates, K = 5 in the order left eye,
  right eye, nose, left mouth corner, right mouth corner; they are fitted to ``ARCFACE_TEMPLATE`` by a
  similarity transform (Umeyama, no reflection).
* Faces smaller than the crop are brought to it by one bicubic warp by default (``resample="bicubic"``, see
  :data:`Resample`); ``"matched"`` warps at the face's own scale and then upsamples, ``"bilinear"`` is the plain
  bilinear warp.
* "Resolution r" is the papers' meaning: ``degrade(crops, r)`` = antialiased bicubic down to r x r, then
  bicubic back up (PIL / ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)`` semantics).

Every function validates its arguments and raises ``TypeError``/``ValueError`` naming the bad one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from crres_sdk import _core

ColorOrder = Literal["bgr", "rgb"]
#: How a face smaller than the crop (equivalent resolution r below the crop's width) is brought to it; faces at
#: or above the crop size always take the bilinear warp. ``"bicubic"`` (default): one bicubic warp (Keys
#: a = -0.5, the kernel of :func:`degrade`'s ``F_up``) from the photo's own pixels straight to the crop.
#: ``"matched"``: warped at its own scale to an r-wide crop, then brought up with :func:`degrade`'s ``F_up``, so
#: the crop is pixel-closest to ``F_up(F_down,r(HR crop))``; its second resampling blurs, and it scores lower
#: end to end (docs/results.md, "Small-face alignment"). ``"bilinear"``: one bilinear warp at every size
#: (``cv2.warpAffine`` INTER_LINEAR, BORDER_CONSTANT 0).
Resample = Literal["bicubic", "matched", "bilinear"]
RESAMPLE_MODES: tuple[str, ...] = ("bicubic", "matched", "bilinear")

#: The ArcFace 112 x 112 five-point template, (5, 2) float64 (read-only; defined once, in the C++ core).
ARCFACE_TEMPLATE: np.ndarray = _core.arcface_template()
ARCFACE_TEMPLATE.setflags(write=False)
#: Side of the canonical crop the template is defined for.
TEMPLATE_SIZE: int = int(_core.TEMPLATE_SIZE)
#: Inter-ocular distance of the template in pixels (~35.24).
TEMPLATE_INTEROCULAR: float = float(_core.TEMPLATE_INTEROCULAR)


@dataclass(frozen=True)
class Normalization:
    """Model input convention: channel order and per-channel ``(x - mean) / std`` (in output channel order).

    A model bundle's manifest carries these; ``Normalization.arcface()`` is InsightFace's RGB (x-127.5)/128.
    """

    color: ColorOrder = "rgb"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)

    def __post_init__(self) -> None:
        _check_color(self.color, "color")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3:
                raise ValueError(f"Normalization.{name} must have 3 values, got {len(values)}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if not all(np.isfinite(self.mean)):
            raise ValueError(f"Normalization.mean must be finite, got {self.mean}")
        if not all(np.isfinite(self.std)) or any(s == 0.0 for s in self.std):
            raise ValueError(f"Normalization.std must be finite and non-zero, got {self.std}")

    @classmethod
    def arcface(cls) -> "Normalization":
        return cls()


def _check_color(value: str, name: str) -> None:
    if value not in ("bgr", "rgb"):
        raise ValueError(f"{name} must be 'bgr' or 'rgb', got {value!r}")


def _check_resample(value: str) -> str:
    if value not in RESAMPLE_MODES:
        raise ValueError(f"resample must be one of {RESAMPLE_MODES}, got {value!r}")
    return value


def _check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int, got {type(threads).__name__}")
    return int(threads)


def _output_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if np.isscalar(size) else tuple(size)  # type: ignore[misc]
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"output size {name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"output size {name} must be >= 1, got {value}")
    return int(height), int(width)


def _points(points: np.ndarray, name: str) -> np.ndarray:
    """Float coordinates as a C-contiguous float32/float64 array (ints are promoted; other types rejected)."""
    if not isinstance(points, np.ndarray):
        points = np.asarray(points)
    if points.dtype.kind in "iu":
        points = points.astype(np.float64)
    elif points.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must hold real numbers (float32/float64), got dtype {points.dtype}")
    return np.ascontiguousarray(points)


def _landmarks_batch(landmarks: np.ndarray) -> tuple[np.ndarray, bool]:
    points = _points(landmarks, "landmarks")
    if points.ndim == 2:
        return points[None], True
    return points, False


def _template_for(size: tuple[int, int], template: np.ndarray | None) -> np.ndarray | None:
    """The template in output pixels: the caller's, or ArcFace's scaled to a square output side."""
    if template is not None:
        return _points(template, "template")
    if size == (TEMPLATE_SIZE, TEMPLATE_SIZE):
        return None  # the core's own copy
    if size[0] != size[1]:
        raise ValueError(f"the default template needs a square output, got {size}; pass template=")
    return ARCFACE_TEMPLATE * (size[0] / TEMPLATE_SIZE)


def estimate_similarity(src: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` (N, 2) onto ``dst`` (default: the ArcFace template).

    Returns the (2, 3) float64 matrix in ``cv2.warpAffine`` convention. N >= 2; coincident or (for N >= 3)
    collinear source points, or non-finite coordinates, raise ``ValueError``.
    """
    dst_points = ARCFACE_TEMPLATE if dst is None else _points(dst, "dst")
    return _core.estimate_similarity(_points(src, "src"), dst_points)


def align_faces(
    image: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int | tuple[int, int] = TEMPLATE_SIZE,
    template: np.ndarray | None = None,
    input_color: ColorOrder = "bgr",
    normalization: Normalization = Normalization(),
    threads: int = 1,
    resample: Resample = "bicubic",
) -> np.ndarray:
    """Aligned, normalised model input: (N, 3, H, W) float32 NCHW, one fused pass per face.

    ``landmarks`` is (N, K, 2) or (K, 2). ``threads`` splits the batch (0 = one per hardware thread);
    the GIL is released while the core runs. ``resample``: see :data:`Resample`; a face's resolution is its
    equivalent resolution scaled to the crop (``W * eye distance / template eye distance``: 112 d / 35.24 for
    the ArcFace crop) with five landmarks, the alignment's scale otherwise.
    """
    _check_color(input_color, "input_color")
    out_size = _output_size(size)
    points, single = _landmarks_batch(landmarks)
    out = _core.align_f32(
        image, points, _template_for(out_size, template), out_size[0], out_size[1],
        list(normalization.mean), list(normalization.std), input_color != normalization.color,
        _check_threads(threads), _check_resample(resample),
    )
    return out[0] if single else out


def align_faces_uint8(
    image: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int | tuple[int, int] = TEMPLATE_SIZE,
    template: np.ndarray | None = None,
    input_color: ColorOrder = "bgr",
    output_color: ColorOrder = "bgr",
    threads: int = 1,
    resample: Resample = "bicubic",
) -> np.ndarray:
    """Aligned crops as (N, H, W, 3) uint8 (for storage or display), rounded to nearest.

    With ``resample="bicubic"`` (default) a small face is one bicubic warp straight to the crop; with
    ``resample="matched"`` its r-wide uint8 crop is brought up by PIL's BICUBIC (bit for bit), as ``degrade``
    brings up its r x r intermediate.
    """
    _check_color(input_color, "input_color")
    _check_color(output_color, "output_color")
    out_size = _output_size(size)
    points, single = _landmarks_batch(landmarks)
    out = _core.align_u8(
        image, points, _template_for(out_size, template), out_size[0], out_size[1],
        input_color != output_color, _check_threads(threads), _check_resample(resample),
    )
    return out[0] if single else out


def _matrices(matrices: np.ndarray) -> tuple[np.ndarray, bool]:
    m = _points(matrices, "matrices")
    return (m[None], True) if m.ndim == 2 else (m, False)


def warp_faces(
    image: np.ndarray,
    matrices: np.ndarray,
    *,
    size: int | tuple[int, int] = TEMPLATE_SIZE,
    input_color: ColorOrder = "bgr",
    normalization: Normalization = Normalization(),
    threads: int = 1,
    resample: Resample = "bicubic",
) -> np.ndarray:
    """Like :func:`align_faces` with caller-supplied (N, 2, 3) source->crop matrices (cv2.warpAffine's).

    A face's resolution for ``resample="bicubic"/"matched"`` is the crop width over the matrix's scale.
    """
    _check_color(input_color, "input_color")
    out_size = _output_size(size)
    m, single = _matrices(matrices)
    out = _core.warp_f32(
        image, m, out_size[0], out_size[1], list(normalization.mean), list(normalization.std),
        input_color != normalization.color, _check_threads(threads), _check_resample(resample),
    )
    return out[0] if single else out


def warp_faces_uint8(
    image: np.ndarray,
    matrices: np.ndarray,
    *,
    size: int | tuple[int, int] = TEMPLATE_SIZE,
    input_color: ColorOrder = "bgr",
    output_color: ColorOrder = "bgr",
    threads: int = 1,
    resample: Resample = "bicubic",
) -> np.ndarray:
    """Like :func:`align_faces_uint8` with caller-supplied (N, 2, 3) source->crop matrices."""
    _check_color(input_color, "input_color")
    _check_color(output_color, "output_color")
    out_size = _output_size(size)
    m, single = _matrices(matrices)
    out = _core.warp_u8(image, m, out_size[0], out_size[1], input_color != output_color, _check_threads(threads),
                        _check_resample(resample))
    return out[0] if single else out


def _image_batch(images: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """(N, H, W, C) view of (H, W), (H, W, C) or (N, H, W, C) input; returns the number of axes added."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(images).__name__}")
    if images.ndim == 2:
        return images[None, :, :, None], 2
    if images.ndim == 3:
        return images[None], 1
    return images, 0


def _strip(out: np.ndarray, added: int) -> np.ndarray:
    if added == 2:
        return out[0, :, :, 0]
    return out[0] if added == 1 else out


def resize_bicubic(images: np.ndarray, size: int | tuple[int, int], *, threads: int = 1) -> np.ndarray:
    """Antialiased bicubic resize to ``size`` = side or (height, width).

    ``images``: (H, W), (H, W, C) or (N, H, W, C), uint8 (bit-exact with PIL's BICUBIC) or float32 (torch's
    ``interpolate(mode="bicubic", antialias=True, align_corners=False)``, not clipped).
    """
    batch, added = _image_batch(images, "images")
    height, width = _output_size(size)
    return _strip(_core.resize(batch, height, width, _check_threads(threads)), added)


def degrade(
    crops: np.ndarray, sizes: int | Sequence[int] | np.ndarray, *, layout: Literal["nhwc", "nchw"] = "nhwc",
    threads: int = 1,
) -> np.ndarray:
    """``F_up(F_down,r(I))``: each crop down to r x r (antialiased bicubic) and back up to its own size.

    ``crops``: uint8 or float32, (H, W), (H, W, C) or (N, H, W, C); with ``layout="nchw"`` a float32
    (N, C, H, W) model-input batch. ``sizes``: one r for all crops or one per crop, 1 <= r <= width.
    """
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    if layout == "nchw":
        if not isinstance(crops, np.ndarray) or crops.ndim != 4:
            raise ValueError("layout='nchw' needs an (N, C, H, W) numpy array")
        n, c, h, w = crops.shape
        r = _sizes(sizes, n)
        planes = np.ascontiguousarray(crops).reshape(n * c, h, w, 1)
        out = _core.degrade(planes, np.repeat(r, c), _check_threads(threads))
        return out.reshape(n, c, h, w)
    batch, added = _image_batch(crops, "crops")
    out = _core.degrade(batch, _sizes(sizes, batch.shape[0]), _check_threads(threads))
    return _strip(out, added)


def _sizes(sizes: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    r = np.asarray(sizes)
    if r.dtype.kind not in "iu":
        raise TypeError(f"sizes must be integers, got dtype {r.dtype}")
    if r.ndim == 0:
        r = np.full(n, int(r), dtype=np.int64)
    return np.ascontiguousarray(r, dtype=np.int64)


def equivalent_resolution(landmarks: np.ndarray) -> np.ndarray | float:
    """Equivalent resolution from geometry: ``112 * d / TEMPLATE_INTEROCULAR``, d the eye distance in pixels.

    ``landmarks`` (N, K, 2) gives an (N,) float64 array; a single face (K, 2) gives a float.
    """
    points, single = _landmarks_batch(landmarks)
    out = _core.equivalent_resolution(points)
    return float(out[0]) if single else out
