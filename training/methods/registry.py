"""The method registry: a recipe's ``method`` names one ``Method`` (what a training step computes).

A method is a function ``step(ctx, x, flipped, labels, gen, index) -> {"loss": ..., parts}`` over the augmented
batch ``x`` (RGB in [0, 1], ``flipped`` marks the crops ``TrainStep`` mirrored), with ``ctx`` the
``training.train.TrainStep`` that owns the networks and draws degradations (``ctx.embed``, ``ctx.degrade``,
``ctx.lr_sizes``, ``ctx.head``, ``ctx.recipe``). It declares what the run must give it, so ``train()`` prepares
exactly that and ``TrainStep`` refuses a run that lacks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

StepFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Method:
    name: str
    step: StepFn
    paper: str                        # where the loss comes from
    needs_teacher: bool = False       # a teacher checkpoint (recipe.teacher), run forward every step
    needs_cache: bool = False         # the pretrained network's cached embeddings (training.teacher_cache)
    needs_teacher_head: bool = False  # a frozen classifier at the pretrained class means
    needs_index: bool = False         # the batch's dataset indices (to read the cache)


_METHODS: dict[str, Method] = {}


def register_method(name: str, *, paper: str, **needs: bool) -> Callable[[StepFn], StepFn]:
    def wrap(fn: StepFn) -> StepFn:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        _METHODS[name] = Method(name, fn, paper, **needs)
        return fn
    return wrap


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return _METHODS[name]


def list_methods() -> list[str]:
    return sorted(_METHODS)
