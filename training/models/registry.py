"""timm-style model registry: ``@register_model`` on a factory, ``get_model(name, **kw)``."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name; duplicate names are an error."""
    name = fn.__name__
    if name in _MODEL_FACTORIES:
        raise ValueError(f"model {name!r} is already registered")
    _MODEL_FACTORIES[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODEL_FACTORIES)


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments go to its factory."""
    try:
        factory = _MODEL_FACTORIES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    model = factory(**kwargs)
    # Every model must tell data loading, export and the SDK manifest what it expects.
    for attr in ("input_size", "embedding_dim"):
        if not isinstance(getattr(model, attr, None), int):
            raise TypeError(f"model {name!r} does not record an integer {attr!r}")
    return model
