"""crres training: models, margin heads, losses and degradations (PyTorch only).

One file per concern, after InsightFace's ``recognition/arcface_torch``:
``models/`` (a timm-style registry), ``heads.py``, ``losses.py``, ``degradations.py``,
``wavelet.py``. Nothing here is imported by the runtime SDK.
"""

from training.models import get_model, list_models, register_model

__all__ = ["get_model", "list_models", "register_model"]
