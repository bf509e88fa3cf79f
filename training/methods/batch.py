"""Batch-level degradation (knoche2022 Sec. 3: BT-R, BT-M, ST-R; the HR baseline): one branch, cross-entropy."""

from __future__ import annotations

import torch

from training.methods.registry import register_method


@register_method("batch", paper="knoche2022 Sec. 3.1-3.2")
def batch_step(ctx, x, flipped, labels, gen, index):
    with torch.no_grad():
        x = ctx.degrade(x, ctx.lr_sizes(x.shape[0], x.shape[-1], gen), gen)
    ce = ctx.head.loss(ctx.embed(x), labels)
    return {"loss": ce, "ce": ce}
