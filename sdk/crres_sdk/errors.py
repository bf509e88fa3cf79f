"""Exceptions the SDK raises beyond TypeError/ValueError for bad arguments."""


class BundleError(ValueError):
    """A model bundle is missing, malformed, or does not match its manifest (wrong hash, unsafe path)."""


class BackendUnavailableError(ImportError):
    """The requested inference backend (OpenVINO, TensorRT, a CUDA provider) is not installed here."""
