"""crres runtime SDK: cross-resolution face recognition for edge cameras (no torch at run time)."""

from crres_sdk.preprocess import (
    ARCFACE_TEMPLATE,
    TEMPLATE_INTEROCULAR,
    TEMPLATE_SIZE,
    Normalization,
    align_faces,
    align_faces_uint8,
    degrade,
    equivalent_resolution,
    estimate_similarity,
    resize_bicubic,
    warp_faces,
    warp_faces_uint8,
)

__version__ = "0.1.0"

__all__ = [
    "ARCFACE_TEMPLATE",
    "TEMPLATE_INTEROCULAR",
    "TEMPLATE_SIZE",
    "Normalization",
    "align_faces",
    "align_faces_uint8",
    "degrade",
    "equivalent_resolution",
    "estimate_similarity",
    "resize_bicubic",
    "warp_faces",
    "warp_faces_uint8",
    "__version__",
]
