"""crres runtime SDK: cross-resolution face recognition for edge cameras (no torch at run time).

``import crres_sdk`` needs numpy alone (preprocessing core, bundles, gallery). The names that need OpenCV
(``Recognizer``, ``FaceDetector``, ``VideoPipeline``, ...) are imported on first use, so a missing OpenCV is
reported there, naming the extra that installs it; a missing inference engine is reported once, at import.

Layout: :mod:`~crres_sdk.preprocess` is the typed layer over the C++ core ``_core`` (alignment, degradation, the
template); :mod:`~crres_sdk.detector`, :mod:`~crres_sdk.estimator` and :mod:`~crres_sdk.recognizer` detect, measure
and recognise faces, deciding with :mod:`~crres_sdk.policy` (resolution grids, thresholds),
:mod:`~crres_sdk.matching` and :mod:`~crres_sdk.mitm` (meet-in-the-middle); :mod:`~crres_sdk.backends` and
:mod:`~crres_sdk.bundle` run model bundles on ONNX Runtime, OpenVINO or TensorRT. Packages: ``gallery/`` (the
SQLite gallery, one module per concern), ``video/`` (sources, tracking, accumulation, the pipeline, events) and
``serve/`` (``crres serve``, an extra); :mod:`~crres_sdk.cli` is the ``crres`` command. The demo's synthetic
footage and camera model are the separate package ``crres_demo``, shipped beside this one; the runtime never
imports it (only the test cameras of ``serve/simulate.py`` do, lazily).
"""

import importlib
import warnings
from typing import TYPE_CHECKING

from crres_sdk.bundle import ModelBundle, load_bundle
from crres_sdk.backends import available_backends
from crres_sdk.dependencies import MissingDependencyError, MissingEngineWarning, engine_missing_message, missing_message
from crres_sdk.errors import BackendUnavailableError, BundleError
from crres_sdk.estimator import ResolutionEstimator
from crres_sdk.face import Face
from crres_sdk.gallery import (
    AuditEntry,
    DuplicateIdentity,
    Gallery,
    GalleryError,
    GalleryKeyError,
    GalleryModelMismatch,
    IdentityInfo,
    Match,
    ModelKey,
    TemplateRecord,
    UnknownIdentity,
    generate_key,
    write_key_file,
)
from crres_sdk.matching import MatchResult
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

if TYPE_CHECKING:
    from crres_sdk.detector import FaceDetector
    from crres_sdk.recognizer import FaceTooSmallError, NoFaceError, Recognizer, Verification, load_image
    from crres_sdk.video import IoUTracker, VideoPipeline, VideoSourceError, open_source

#: Public names whose modules import OpenCV: name -> module, imported on first access.
_NEEDS_OPENCV = {
    "FaceDetector": "crres_sdk.detector",
    "FaceTooSmallError": "crres_sdk.recognizer",
    "NoFaceError": "crres_sdk.recognizer",
    "Recognizer": "crres_sdk.recognizer",
    "Verification": "crres_sdk.recognizer",
    "load_image": "crres_sdk.recognizer",
    "IoUTracker": "crres_sdk.video",
    "VideoPipeline": "crres_sdk.video",
    "VideoSourceError": "crres_sdk.video",
    "open_source": "crres_sdk.video",
}


def __getattr__(name: str):
    module = _NEEDS_OPENCV.get(name)
    if module is None:
        raise AttributeError(f"module 'crres_sdk' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name != "cv2":
            raise
        raise MissingDependencyError(missing_message("cv2", f"crres_sdk.{name}")) from exc
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NEEDS_OPENCV))


if not available_backends():
    warnings.warn(f"crres_sdk: {engine_missing_message()}", MissingEngineWarning, stacklevel=2)

__version__ = "0.1.0"

__all__ = [
    "AuditEntry",
    "IoUTracker",
    "TemplateRecord",
    "VideoPipeline",
    "VideoSourceError",
    "generate_key",
    "open_source",
    "write_key_file",
    "BackendUnavailableError",
    "BundleError",
    "MissingDependencyError",
    "MissingEngineWarning",
    "DuplicateIdentity",
    "Face",
    "FaceDetector",
    "Gallery",
    "GalleryError",
    "GalleryKeyError",
    "GalleryModelMismatch",
    "IdentityInfo",
    "Match",
    "ModelBundle",
    "ModelKey",
    "NoFaceError",
    "FaceTooSmallError",
    "MatchResult",
    "Recognizer",
    "ResolutionEstimator",
    "UnknownIdentity",
    "Verification",
    "load_bundle",
    "load_image",
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
