"""The recipe record: everything a training run needs besides the data.

A recipe is a small Python file in this folder defining ``config = Recipe(...)`` (one per method,
like arcface_torch's ``configs/*.py``). Hyper-parameters carry the paper section they come from;
where a paper is silent the comment says so and names our choice.

Schedules are *relative*: ``lr_milestones`` are fractions of the run's total optimisation steps
(the paper's epoch or iteration milestones divided by its run length), so a short run on our
small data keeps the paper's shape (e.g. Knoche's "/10 after epoch 9 and 13 of 16" becomes
[9/16, 13/16] of whatever ``--epochs`` gives). ``batch_size`` is the *global* batch (the paper's);
under ``torchrun`` every process takes ``batch_size // world_size`` samples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any



@dataclass
class Recipe:
    name: str
    paper: str
    method: str                                   # training.methods registry name
    model: str                                    # registry name (training.models)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    head: str = "arcface"                         # training.heads.get_head name
    head_kwargs: dict[str, Any] = field(default_factory=dict)   # s, m
    batch_size: int = 128                         # global batch
    epochs: int = 16
    # Length of the schedule in optimiser steps; None: epochs x steps per epoch. Lets methods with several
    # branches per sample run at the same compute as one-branch methods (same steps, same images per step).
    steps: int | None = None
    optimizer: str = "sgd"                        # "sgd" | "adamw"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: list[float] = field(default_factory=list)  # fractions of total steps
    lr_gamma: float = 0.1
    warmup_fraction: float = 0.0                  # linear warm-up over this fraction of steps
    clip_grad_norm: float | None = 5.0
    # Degradation of the training batch (training.degradations); see train.py for each sampler.
    sampler: str = "none"
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    # Camera degradation mixed into the degraded samples: Lu & Ebrahimi's blur, noise and JPEG, each with this
    # probability, before the resolution degradation (training.degradations.lu_degradation); 0 = resolution only.
    camera_p: float = 0.0
    # Photometric augmentation, on the device, before degradation.
    flip: bool = True
    color_jitter: float = 0.0                     # max relative brightness/saturation change
    # Distillation (wave_kd): the teacher is a final checkpoint of training.train.
    teacher: str | None = None
    # Pretrained initialisation (training.pretrained.INITIALISERS), e.g. "dlib"; also caches its embeddings.
    init: str | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Primitive-only copy (lists, dicts, str, numbers, None) for ``weights_only`` checkpoints."""
        return _primitive(dataclasses.asdict(self))

    def replace(self, **overrides: Any) -> "Recipe":
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise KeyError(f"unknown recipe field(s) {unknown}; fields: {sorted(names)}")
        new = dataclasses.replace(self, **overrides)
        new.validate()
        return new

    def validate(self) -> None:
        from training.methods import list_methods  # registry imports degradations/losses, not recipes

        if self.method not in list_methods():
            raise ValueError(f"recipe {self.name!r}: method must be one of {list_methods()}, got {self.method!r}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (BatchNorm and the triplet loss need pairs)")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.steps is not None and self.steps < 1:
            raise ValueError("steps must be >= 1 (or None for epochs x steps per epoch)")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ValueError("lr_milestones are fractions of the run in (0, 1)")


def _primitive(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _primitive(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_primitive(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"recipe value {x!r} is not a primitive")
