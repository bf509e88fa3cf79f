"""Methods whose HR side is the frozen pretrained network, read from its cached embeddings of every crop and its
flip (``training.teacher_cache``), so they cost no teacher forward per step (issue 17)."""

from __future__ import annotations

import torch

from training import losses as L
from training.methods.lu_kd import lu_degraded
from training.methods.registry import register_method


def cached_hr(ctx, flipped: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The frozen network's embedding of each (possibly flipped) crop."""
    idx = index.cpu()
    cache = ctx.cache
    return torch.where(flipped.cpu()[:, None], cache["hr_flip"][idx], cache["hr"][idx])


@register_method("frozen_siamese", paper="knoche2022 Sec. 6.2, eq. 7", needs_cache=True, needs_index=True)
def frozen_siamese_step(ctx, x, flipped, labels, gen, index):
    """Knoche eq. 7 with the frozen network as the HR branch: f_HR is its cached embedding of the same crop; the
    trained network sees the crop at a sampled resolution (112 included, so its own HR embedding stays tied to
    the teacher's)."""
    with torch.no_grad():
        f_hr = cached_hr(ctx, flipped, index)
        x_lr = ctx.degrade(x, ctx.lr_sizes(x.shape[0], x.shape[-1], gen), gen)
    f_lr = ctx.embed(x_lr)
    return L.knoche_siamese_loss(ctx.head, f_hr.to(f_lr), f_lr, labels, **ctx.recipe.loss_kwargs)


@register_method("frozen_kd", paper="lu2023 Sec. II-C, eq. 2 and 4 without L_wavesim", needs_cache=True,
                 needs_teacher_head=True, needs_index=True)
def frozen_kd_step(ctx, x, flipped, labels, gen, index):
    """Lu & Ebrahimi eq. 4 with the frozen network and its class-mean head as the HR teacher: its logits come from
    the cached embedding of the same crop. No wavelet term: dlib's ResNet has no wavelet stages (Sec. II-B)."""
    with torch.no_grad():
        z_hr = ctx.teacher_head(cached_hr(ctx, flipped, index).to(x))
        x_lr = lu_degraded(ctx, x, gen)
    kw = dict(ctx.recipe.loss_kwargs)
    return L.lu_loss(ctx.head, ctx.embed(x_lr), labels, z_hr, None, None, temperature=kw.pop("temperature"), **kw)
