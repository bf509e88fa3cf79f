"""crres runtime SDK: cross-resolution face recognition for edge cameras (no torch at run time)."""

from crres_sdk.bundle import ModelBundle, load_bundle
from crres_sdk.detector import FaceDetector
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
from crres_sdk.matching import MatchResult
from crres_sdk.recognizer import FaceTooSmallError, NoFaceError, Recognizer, Verification, load_image
from crres_sdk.video import IoUTracker, VideoPipeline, VideoSourceError, open_source

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
