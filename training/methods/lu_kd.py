"""Lu & Ebrahimi's distillation (lu2023 Sec. II-C, eq. 4): an HR teacher checkpoint run forward every step, the
student on the degraded crop, ArcFace + KD (eq. 2) + wavelet similarity of stages 1-2 (eq. 3)."""

from __future__ import annotations

import torch

from training import degradations as D
from training import losses as L
from training.methods.registry import register_method


def lu_degraded(ctx, x, gen) -> torch.Tensor:
    """Sec. II-D: blur / noise / JPEG, then r ~ U{size_range}, back up to the crop (sampler_kwargs p, size_range)."""
    kw = ctx.recipe.sampler_kwargs
    return D.lu_degradation(x, p=kw.get("p", 0.5), size_range=tuple(kw.get("size_range", (7, x.shape[-1]))),
                            generator=gen)[0]


@register_method("lu_kd", paper="lu2023 Sec. II-C, eq. 4", needs_teacher=True)
def lu_kd_step(ctx, x, flipped, labels, gen, index):
    teacher, teacher_head = ctx.teacher
    kw = dict(ctx.recipe.loss_kwargs)
    with torch.no_grad():
        emb_t, stages_t = ctx.embed(x, teacher, stages=True)
        z_hr = teacher_head(emb_t)
        x_lr = lu_degraded(ctx, x, gen)
    emb_s, stages_s = ctx.embed(x_lr, stages=True)
    return L.lu_loss(ctx.head, emb_s, labels, z_hr, stages_t, stages_s, temperature=kw.pop("temperature"), **kw)
