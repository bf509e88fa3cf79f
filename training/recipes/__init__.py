"""Training recipes, one small Python file per method: ``get_recipe(name, **overrides)``.

| recipe | paper | what |
|---|---|---|
| ``baseline`` | Knoche et al. 2022, Sec. 3.1 | ArcFace on HR only |
| ``bt_r`` | Knoche Sec. 5.1 | half of every batch at one resolution r |
| ``bt_m`` | Knoche Sec. 6.2 | half of every batch at r in {7,14,28,56,112} |
| ``st_r`` | Knoche Sec. 5.2 | siamese HR + r, cosine distance x25 |
| ``st_m1`` | Knoche Sec. 6.2 | siamese HR + r in {7,14,28,56} per sample |
| ``st_m2`` | Knoche Sec. 6.2 | five branches 112/56/28/14/7, four distances x25 |
| ``maug_logexp_p1`` / ``_p2`` | Ling et al. 2023, Sec. 3-4 | MAug 7:14:20 = 1:1:2, LogExp p=1/2, CosFace |
| ``lai_siamese_triplet`` | Lai & Lam 2021, Sec. II-III | HR/16/12/8 siamese, AM-softmax + CR triplet |
| ``lu_teacher`` | Lu & Ebrahimi 2023, Sec. III-A | the HR ResNet teacher for ``wave_kd`` |
| ``wave_kd`` | Lu & Ebrahimi 2023, Sec. II-C, III-A | WaveResNet student, KD + wavelet similarity |
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from training.recipes.base import Recipe

__all__ = ["Recipe", "get_recipe", "list_recipes"]


def list_recipes() -> list[str]:
    here = __path__  # noqa: F821 - package attribute
    return sorted(m.name for m in pkgutil.iter_modules(here) if m.name != "base")


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The recipe ``name`` with fields replaced by ``overrides`` (None values are ignored)."""
    if name not in list_recipes():
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(list_recipes())}")
    config = importlib.import_module(f"training.recipes.{name}").config
    if not isinstance(config, Recipe):
        raise TypeError(f"training/recipes/{name}.py must define config = Recipe(...)")
    return config.replace(**{k: v for k, v in overrides.items() if v is not None})
