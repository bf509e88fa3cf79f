"""Per-sample resolution samplers, by the name a recipe's ``sampler`` gives (``training.degradations``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from training import degradations as D

SizeSampler = Callable[[int, int, dict[str, Any], torch.Generator], torch.Tensor]

#: name -> (batch size n, HR size, sampler_kwargs, generator) -> (n,) int64 sizes
SIZE_SAMPLERS: dict[str, SizeSampler] = {
    "none": lambda n, hr, kw, gen: torch.full((n,), hr, dtype=torch.int64),
    "bt_r": lambda n, hr, kw, gen: D.sample_bt_r(n, int(kw.get("r", 14)), kw.get("fraction", 0.5), hr, gen),
    "bt_m": lambda n, hr, kw, gen: D.sample_bt_m(n, kw.get("fraction", 0.5), hr,
                                                 tuple(kw.get("sizes", D.BTM_SIZES)), gen),
    "st_r": lambda n, hr, kw, gen: torch.full((n,), int(kw.get("r", 14)), dtype=torch.int64),
    "paug": lambda n, hr, kw, gen: D.sample_paug(n, gen),
    "maug": lambda n, hr, kw, gen: D.sample_maug(n, gen),
    "uniform": lambda n, hr, kw, gen: D.sample_uniform_range(n, int(kw.get("lo", 8)), kw.get("hi"), hr, gen),
}


def sample_sizes(sampler: str, n: int, hr: int, kwargs: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    if sampler not in SIZE_SAMPLERS:
        raise ValueError(f"sampler {sampler!r} does not give one size per sample "
                         f"(those that do: {', '.join(sorted(SIZE_SAMPLERS))})")
    return SIZE_SAMPLERS[sampler](n, hr, kwargs, gen)
