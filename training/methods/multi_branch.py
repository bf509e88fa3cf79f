"""Siamese methods whose branches all run the trained network (weights shared, one forward so BatchNorm sees
them together): Knoche's ST-M (knoche2022 Sec. 3.3, eq. 7), Ling's MAug + LogExp (ling2023 Sec. 3.2-3.3), Lai &
Lam's 4-way siamese + cross-resolution triplet (lai2021 Sec. II-B)."""

from __future__ import annotations

import torch

from training import degradations as D
from training import losses as L
from training.methods.registry import register_method


def _branches(ctx, x, gen) -> list[torch.Tensor]:
    """The degraded partners of the HR batch, as the recipe's sampler says."""
    r = ctx.recipe
    with torch.no_grad():
        if r.sampler == "fixed_branches":
            return [D.degrade(x, s) for s in r.sampler_kwargs["sizes"]]
        if r.sampler == "lai":
            kw = r.sampler_kwargs
            return D.lai_branches(x, tuple(kw.get("sizes", D.LAI_SIZES)), kw.get("mode", "bilinear"))[1:]
        return [D.degrade_batch(x, ctx.lr_sizes(x.shape[0], x.shape[-1], gen))]


def _features(ctx, x, gen) -> list[torch.Tensor]:
    branches = _branches(ctx, x, gen)
    return list(ctx.embed(torch.cat([x] + branches)).split(x.shape[0]))


@register_method("siamese", paper="knoche2022 Sec. 3.3, eq. 7")
def siamese_step(ctx, x, flipped, labels, gen, index):
    feats = _features(ctx, x, gen)
    return L.knoche_siamese_loss(ctx.head, feats[0], feats[1:], labels, **ctx.recipe.loss_kwargs)


@register_method("ling", paper="ling2023 Sec. 3.2-3.3")
def ling_step(ctx, x, flipped, labels, gen, index):
    feats = _features(ctx, x, gen)
    return L.ling_loss(ctx.head, feats[0], feats[1], labels, **ctx.recipe.loss_kwargs)


@register_method("lai", paper="lai2021 Sec. II-B, eq. 1-4")
def lai_step(ctx, x, flipped, labels, gen, index):
    return L.lai_loss(ctx.head, _features(ctx, x, gen), labels, **ctx.recipe.loss_kwargs)
