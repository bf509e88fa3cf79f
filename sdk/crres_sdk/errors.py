"""Exceptions the SDK raises beyond TypeError/ValueError for bad arguments."""


class BundleError(ValueError):
    """A model bundle is missing, malformed, or does not match its manifest (wrong hash, unsafe path)."""


class BackendUnavailableError(ImportError):
    """The requested inference backend (OpenVINO, TensorRT, a CUDA provider) is not installed here."""


class FaceGeometryError(ValueError):
    """A caller-supplied face cannot be a face in this frame: its aligned crop lies mostly outside the frame, or
    its landmarks/box are degenerate or absurdly large or small."""


class ImageTooLargeError(ValueError):
    """An image has more pixels than the SDK's documented limit (see ``crres_sdk.detector.MAX_IMAGE_PIXELS``)."""
