"""Margin-based softmax heads on a weight-normalised classifier.

Each head holds class centres ``W`` (C x D) and computes ``cos(theta_j) = <f/|f|, W_j/|W_j|>``;
the target-class logit gets the margin, every logit is scaled by ``s``. One head instance can be
called on several resolution branches (Lai & Lam's "shared classifier", Sec. II; Knoche et al.'s
weight-shared siamese branches, Sec. 5.2), since it keeps no per-call state.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class MarginHead(nn.Module):
    """Base class: normalised linear classifier; subclasses define the target-logit margin."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float, m: float) -> None:
        super().__init__()
        if embedding_dim <= 0 or num_classes <= 1:
            raise ValueError("need embedding_dim > 0 and num_classes > 1")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.s = float(s)
        self.m = float(m)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)  # arcface_torch PartialFC initialisation

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, C) cosine similarities between embeddings and class centres."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"expected (N, {self.embedding_dim}) embeddings, got {tuple(embeddings.shape)}")
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1)).clamp(-1.0, 1.0)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        """Map the target-class cosine to its margin-penalised value (before scaling)."""
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled logits ``s * cos``; with ``labels`` the target logit carries the margin.

        Without labels (inference, or logits for distillation) no margin is applied.
        """
        cos = self.cosine(embeddings)
        if labels is None:
            return self.s * cos
        labels = labels.long()
        if labels.shape != (cos.shape[0],):
            raise ValueError(f"labels must have shape ({cos.shape[0]},), got {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        target = cos.gather(1, labels[:, None])
        logits = cos.scatter(1, labels[:, None], self.margin(target))
        return self.s * logits

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean softmax cross-entropy of the margin logits (ArcFace eq. 1 / AM-softmax eq. 1)."""
        return F.cross_entropy(self(embeddings, labels), labels.long())


class ArcFace(MarginHead):
    """Additive angular margin: target logit ``s * cos(theta + m)`` (Deng et al. 2019).

    Defaults s=64, m=0.5 are ArcFace's; Knoche et al. set "all training parameters according to
    [3]" (knoche2022 Sec. 3.1) and Lu & Ebrahimi use this loss (lu2023 eq. 1) without other values.
    Where ``theta + m > pi`` the angle would wrap and *raise* the logit, so (as arcface_torch's
    CombinedMarginLoss does) the target logit becomes ``cos(theta) - m * sin(m)`` there instead.
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__(embedding_dim, num_classes, s, m)
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.threshold = math.cos(math.pi - m)  # theta < pi - m  <=>  cos(theta) > cos(pi - m)
        self.fallback = math.sin(math.pi - m) * m

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        # clamp_min keeps sqrt's gradient finite at cos = +-1 (zero gradient there instead of inf).
        sin_target = (1.0 - cos_target * cos_target).clamp_min(1e-12).sqrt()
        cos_theta_m = cos_target * self.cos_m - sin_target * self.sin_m  # cos(theta + m)
        return torch.where(cos_target > self.threshold, cos_theta_m, cos_target - self.fallback)


class CosFace(MarginHead):
    """Additive cosine margin: target logit ``s * (cos(theta) - m)`` (Wang et al. 2018).

    Defaults s=48, m=0.4 are Ling et al.'s (ling2023 Sec. 4, "Implementation Details").
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 48.0, m: float = 0.4) -> None:
        super().__init__(embedding_dim, num_classes, s, m)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target - self.m


class AMSoftmax(CosFace):
    """AM-softmax, the same additive cosine margin (lai2021 eq. 1: ``s * (w_y^T f - m)``).

    Defaults s=30, m=0.35 are Lai & Lam's (lai2021 Sec. III) and the AM-softmax paper's.
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 30.0, m: float = 0.35) -> None:
        super().__init__(embedding_dim, num_classes, s, m)


HEADS: dict[str, type[MarginHead]] = {"arcface": ArcFace, "cosface": CosFace, "amsoftmax": AMSoftmax}


def get_head(name: str, embedding_dim: int, num_classes: int, **kwargs) -> MarginHead:
    """Build a head by name (``arcface``, ``cosface``, ``amsoftmax``); kwargs override s and m."""
    try:
        cls = HEADS[name]
    except KeyError:
        raise KeyError(f"unknown head {name!r}; available: {', '.join(sorted(HEADS))}") from None
    return cls(embedding_dim, num_classes, **kwargs)
