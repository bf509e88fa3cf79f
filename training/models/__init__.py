"""Face embedding backbones behind one registry.

Every model maps an ``(N, 3, S, S)`` float tensor (``S = model.input_size``) to an
``(N, model.embedding_dim)`` embedding, and ``model(x, return_stages=True)`` returns
``(embedding, [stage1, stage2, stage3, stage4])`` feature maps for feature-level losses
(the wavelet similarity loss of Lu & Ebrahimi uses stages 1 and 2).
"""

from training.models.registry import get_model, list_models, register_model

# Imported for their @register_model side effects.
from training.models import dlib_resnet, iresnet, lai_resnet, mobilefacenet, tiny, waveresnet  # noqa: E402,F401

__all__ = ["get_model", "list_models", "register_model"]
