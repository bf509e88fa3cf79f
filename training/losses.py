"""Feature-level and total losses of the four training recipes (one section per paper).

Every function takes batched tensors and returns a scalar (the ``*_loss`` totals return a dict of
the total under ``"loss"`` plus its parts, for logging). Equation numbers refer to the seed texts
in ``shared/seeds/``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from training.heads import MarginHead
from training.wavelet import haar_ll


def _as_list(x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [x] if isinstance(x, torch.Tensor) else list(x)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (N, D) tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")


# --- Knoche et al. 2022, siamese cross-resolution training (ST-r, ST-M1, ST-M2), Sec. 5.2 ----------

KNOCHE_DIST_WEIGHT = 25.0  # Sec. 5.2: "multiply the feature distance loss by a factor of 25"


def cosine_feature_distance(f_hr: torch.Tensor, f_lr: torch.Tensor) -> torch.Tensor:
    """Eq. 6, ``1 - f_HR.f_LR / (|f_HR| |f_LR|)``, averaged over the batch.

    The printed eq. 6 (and eq. 2) square the norms in the denominator, which would not be a
    cosine distance; the text calls it "the cosine distance metric to match the evaluation
    protocol" and the reported distances lie in [0, 2] (Sec. 4.3), so we read it as the plain
    cosine distance.
    """
    _check_pair(f_hr, f_lr)
    return (1.0 - F.cosine_similarity(f_hr, f_lr, dim=1, eps=1e-8)).mean()


def knoche_siamese_loss(head: MarginHead, f_hr: torch.Tensor,
                        f_lr: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor,
                        dist_weight: float = KNOCHE_DIST_WEIGHT) -> dict[str, torch.Tensor]:
    """Eq. 7, ``CE_HR + CE_LR + 25 * L_dist``, with one shared (ArcFace) head.

    ``f_lr`` may be a list of LR branches (ST-M2, Sec. 6.2: "four feature distance losses ...
    each weighted with a factor of 25" and "the cross-entropy loss for each branch").
    """
    branches = _as_list(f_lr)
    ce_hr = head.loss(f_hr, labels)
    ce_lr = torch.stack([head.loss(f, labels) for f in branches]).sum()
    dist = torch.stack([cosine_feature_distance(f_hr, f) for f in branches]).sum()
    return {"loss": ce_hr + ce_lr + dist_weight * dist, "ce_hr": ce_hr, "ce_lr": ce_lr, "dist": dist}


# --- Ling et al. 2023, LogExp distance + MAug, Sec. 3.2-3.3 -----------------------------------------

def logexp_distance(x: torch.Tensor, y: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Eq. 5 (eq. 3 for p=1), ``1/(p D) log(1 + sum_i (exp(|x_i - y_i|^p) - 1))``, batch mean.

    ``log1p``/``expm1`` evaluate the same expression without cancellation for small errors,
    which is the regime of L2-normalised 512-d embeddings.
    """
    _check_pair(x, y)
    if p < 1:
        raise ValueError("p must be >= 1 (|d|^p has an infinite gradient at 0 for p < 1)")
    d = (x - y).abs().pow(p)
    per_pair = torch.log1p(torch.expm1(d).sum(dim=1)) / (p * x.shape[1])
    return per_pair.mean()


def lp_distance(x: torch.Tensor, y: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Ling Sec. 3.2, ``L_p = 1/(p D) sum_i |x_i - y_i|^p`` (L1 for p=1, L2 for p=2), batch mean: the
    distance losses LogExp is compared with in Table 4."""
    _check_pair(x, y)
    if p < 1:
        raise ValueError("p must be >= 1")
    return ((x - y).abs().pow(p).sum(dim=1) / (p * x.shape[1])).mean()


LING_DISTANCES = {"logexp": logexp_distance, "lp": lp_distance}


def ling_loss(head: MarginHead, f_hr: torch.Tensor, f_lr: torch.Tensor, labels: torch.Tensor,
              lam: float = 1.0, p: float = 1.0, distance: str = "logexp") -> dict[str, torch.Tensor]:
    """Eq. 7, ``lam * L_dist + 1/2 CE(f_HR) + 1/2 CE(f_LR)`` with a (CosFace) head.

    ``L_dist`` is LogExp on the L2-normalised embeddings (the equation above eq. 7); the CE
    terms see the raw embeddings (the head normalises them itself). lam=1 is the paper's main
    setting (Sec. 4 and the lambda ablation), p in {1, 2} its two variants. ``distance="lp"`` gives
    Table 4's L1/L2 rows (same p) for the ablation.
    """
    if distance not in LING_DISTANCES:
        raise ValueError(f"distance must be one of {sorted(LING_DISTANCES)}, got {distance!r}")
    dist = LING_DISTANCES[distance](F.normalize(f_hr, dim=1), F.normalize(f_lr, dim=1), p=p)
    ce_hr = head.loss(f_hr, labels)
    ce_lr = head.loss(f_lr, labels)
    return {"loss": lam * dist + 0.5 * ce_hr + 0.5 * ce_lr, "ce_hr": ce_hr, "ce_lr": ce_lr, "dist": dist}


# --- Lai & Lam 2021, K-way siamese with cross-resolution triplet loss, Sec. II-B ---------------------

def cross_resolution_triplet_loss(features: torch.Tensor | Sequence[torch.Tensor],
                                  labels: torch.Tensor | None = None,
                                  margin: float = 1.0) -> torch.Tensor:
    """Eq. 3-6: batch-hard triplet loss across K resolutions of N samples.

    ``features`` is (K, N, D) or a list of K (N, D) tensors, ``features[k][i] = f_i^(k)``.
    For every anchor f_i^(k): the hardest positive (eq. 4) is the farthest f_i^(l), l != k - the
    same sample at another resolution; the hardest negative (eq. 5) is the closest f_j^(l) over
    all resolutions l and samples j != i. d is the cosine distance of l2-normalised features
    (eq. 6); the loss is the mean over the N*K anchors of ``max(0, margin + p - n)`` (eq. 3),
    margin 1 as printed. The paper's batches hold one sample per subject ("512 images from 128
    subjects"); ``labels`` generalises this to batches with repeated identities: samples with
    the anchor's label count as positives at every resolution and are never negatives. With
    ``labels=None`` (or all labels distinct) this is exactly eq. 4-5.
    """
    feats = torch.stack(_as_list(features)) if not isinstance(features, torch.Tensor) else features
    if feats.dim() != 3:
        raise ValueError(f"features must be (K, N, D), got {tuple(feats.shape)}")
    k, n, _ = feats.shape
    if k < 2 or n < 2:
        raise ValueError("need at least 2 resolutions (positives) and 2 samples (negatives)")
    if labels is None:
        labels = torch.arange(n, device=feats.device)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    flat = F.normalize(feats.reshape(k * n, -1), dim=1)  # row a = f_{a % n}^{(a // n)}
    dist = 1.0 - flat @ flat.T
    lab = labels.to(feats.device).repeat(k)  # label of row a is labels[a % n]
    same = lab[:, None] == lab[None, :]
    eye = torch.eye(k * n, dtype=torch.bool, device=feats.device)
    pos_mask = same & ~eye
    neg_mask = ~same
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).amin(dim=1)
    # An anchor whose batch holds no negative (all one identity) contributes 0, as max(0, -inf).
    return F.relu(margin + hardest_pos - hardest_neg).mean()


def lai_loss(head: MarginHead, features: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor,
             lam: float = 1.0, margin: float = 1.0) -> dict[str, torch.Tensor]:
    """Eq. 7, ``L_cls + lam * L_triplet`` with ``L_cls`` the mean AM-softmax over the K branches
    (eq. 2, one shared head) and lam=1 as "empirically set" (Sec. II-B)."""
    feats = _as_list(features) if not isinstance(features, torch.Tensor) else list(features.unbind(0))
    cls = torch.stack([head.loss(f, labels) for f in feats]).mean()
    # With the paper's sampling (one image per subject) labels are distinct and this is exactly
    # eq. 4-5; with repeated identities, a same-identity sample is never taken as a negative.
    triplet = cross_resolution_triplet_loss(torch.stack(feats), labels, margin=margin)
    return {"loss": cls + lam * triplet, "cls": cls, "triplet": triplet}


# --- Lu & Ebrahimi 2023, cross-resolution KD + wavelet similarity, Sec. II-C ------------------------

LU_LAMBDA1 = 1.0   # Sec. III-A-2: "lambda_1 = 1"
LU_LAMBDA2 = 0.05  # Sec. III-A-2: "lambda_2 = 0.05"


def kd_loss(z_hr: torch.Tensor, z_lr: torch.Tensor, temperature: float,
            detach_teacher: bool = True) -> torch.Tensor:
    """Eq. 2, ``1/N sum_i T^2 KL(softmax(z_H/T) || softmax(z_L/T))`` (teacher HR, student LR).

    The paper does not state T, so it has no default here: a recipe must choose it.
    The teacher is trained first and then only transfers knowledge (Sec. II-C-1), hence detached.
    """
    _check_pair(z_hr, z_lr)
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    if detach_teacher:
        z_hr = z_hr.detach()
    log_p = F.log_softmax(z_hr / temperature, dim=1)
    log_q = F.log_softmax(z_lr / temperature, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    return temperature * temperature * kl.mean()


def wavelet_similarity_loss(stages_hr: Sequence[torch.Tensor], stages_lr: Sequence[torch.Tensor],
                            num_stages: int = 2, reduction: str = "mean",
                            detach_teacher: bool = True) -> torch.Tensor:
    """Eq. 3, ``sum_{k=1..2} || f_LL(z_H^k) - f_LL(z_L^k) ||^2`` on stage-k feature maps.

    The text says "MSELoss is applied to the low-frequency components", so the default
    ``reduction="mean"`` is the element mean per stage (torch's MSELoss), summed over the stages;
    ``reduction="sum"`` is the literal squared norm (summed over the batch too).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError("reduction must be 'mean' or 'sum'")
    if len(stages_hr) < num_stages or len(stages_lr) < num_stages:
        raise ValueError(f"need at least {num_stages} stages from both networks")
    total = 0.0
    for z_h, z_l in zip(stages_hr[:num_stages], stages_lr[:num_stages]):
        if z_h.shape != z_l.shape:
            raise ValueError(f"teacher/student stage shapes differ: {tuple(z_h.shape)} vs {tuple(z_l.shape)}")
        if detach_teacher:
            z_h = z_h.detach()
        total = total + F.mse_loss(haar_ll(z_h), haar_ll(z_l), reduction=reduction)
    return total


def lu_loss(head: MarginHead, f_lr: torch.Tensor, labels: torch.Tensor, z_hr: torch.Tensor,
            stages_hr: Sequence[torch.Tensor] | None, stages_lr: Sequence[torch.Tensor] | None, *,
            temperature: float, lambda1: float = LU_LAMBDA1,
            lambda2: float = LU_LAMBDA2) -> dict[str, torch.Tensor]:
    """Eq. 4, ``L_arcface + lambda1 L_distill + lambda2 L_wavesim`` for the LR student.

    ``head`` is the student's (ArcFace) classifier; its margin-free logits ``head(f_lr)`` are
    z_L, while ``z_hr`` are the teacher's logits for the HR image (teacher network "including
    classification layers", Sec. II-C-2). ``stages_*`` come from ``model(x, return_stages=True)``;
    both None for a backbone without wavelet stages, which drops the L_wavesim term.
    """
    arc = head.loss(f_lr, labels)
    distill = kd_loss(z_hr, head(f_lr), temperature)
    parts = {"arcface": arc, "distill": distill}
    loss = arc + lambda1 * distill
    if (stages_hr is None) != (stages_lr is None):
        raise ValueError("give both stage lists or neither")
    if stages_hr is not None:
        parts["wavesim"] = wavelet_similarity_loss(stages_hr, stages_lr)
        loss = loss + lambda2 * parts["wavesim"]
    return {"loss": loss, **parts}
