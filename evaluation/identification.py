"""Closed-set identification: one HR gallery image per identity, probes at several resolutions, rank-k + CMC.

This is the SCface / AR-LQ style of evaluation (Lai & Lam 2021 §IV-B report rank-1 on SCface with a mugshot
gallery and surveillance probes at three distances). A layout is a small manifest - CSV with a header or a
JSON list of records - with one row per image::

    identity,path,role,resolution
    001,gallery/001.png,gallery,
    001,probe/001_d1.png,probe,        # native resolution (real LR probe)
    001,probe/001_d1.png,probe,16      # synthetic: F_up(F_down,16(crop)) of the aligned crop

``path`` is relative to the manifest; images are aligned 112x112 crops, or raw images that are detected and
aligned with crres_sdk when ``align=True``. ``build_lfw_layout`` makes such a layout from LFW: identities with
>= 2 images, the first (sorted) as gallery and the others as probes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.verification import l2_normalize

DEFAULT_RANKS = (1, 5, 10)


def probe_ranks(probe_emb: np.ndarray, gallery_emb: np.ndarray, probe_labels: Sequence, gallery_labels: Sequence,
                ) -> np.ndarray:
    """1-based rank of each probe's true identity among the gallery by cosine similarity.

    Rank = 1 + number of gallery identities scoring *strictly* higher than the true one (ties are resolved in
    the probe's favour). Every probe identity must be in the gallery (closed set) exactly once.
    """
    g_labels = list(gallery_labels)
    if len(set(g_labels)) != len(g_labels):
        raise ValueError("gallery must hold one template per identity")
    where = {lab: k for k, lab in enumerate(g_labels)}
    missing = [lab for lab in probe_labels if lab not in where]
    if missing:
        raise ValueError(f"{len(missing)} probes have no gallery identity, e.g. {missing[0]!r}")
    sims = l2_normalize(probe_emb) @ l2_normalize(gallery_emb).T
    true = np.asarray([where[lab] for lab in probe_labels])
    true_sim = sims[np.arange(len(true)), true]
    return 1 + np.sum(sims > true_sim[:, None], axis=1)


def cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """Cumulative match characteristic: ``cmc[k-1]`` = fraction of probes with rank <= k, k = 1..max_rank."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no probes")
    return np.asarray([(ranks <= k).mean() for k in range(1, max_rank + 1)])


def rank_k(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_RANKS) -> dict[str, float]:
    ranks = np.asarray(ranks)
    return {f"rank{k}": float((ranks <= k).mean()) for k in ks}


@dataclass
class Layout:
    """Crops (M, 112, 112, 3) uint8 BGR + per-row identity, role and resolution (None = native)."""

    crops: np.ndarray
    identities: list[str]
    roles: list[str]
    resolutions: list[int | None]
    name: str = "layout"

    def __post_init__(self) -> None:
        n = len(self.crops)
        if not (len(self.identities) == len(self.roles) == len(self.resolutions) == n):
            raise ValueError("layout columns disagree in length")
        bad = {r for r in self.roles if r not in ("gallery", "probe")}
        if bad:
            raise ValueError(f"role must be 'gallery' or 'probe', got {sorted(bad)}")


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.suffix.lower() == ".json":
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise ValueError(f"{path}: JSON manifest must be a list of records")
    else:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or not all(row.get(c) not in (None, "") for c in ("identity", "path", "role")):
            raise ValueError(f"{path}: row {k + 1} needs identity, path and role")
    return rows


def load_layout(manifest: str | Path, *, align: bool = False, detector=None) -> Layout:
    """Read a manifest and its images (see module docstring)."""
    import cv2
    from crres_sdk.preprocess import resize_bicubic

    manifest = Path(manifest)
    rows = read_manifest(manifest)
    if align:
        from crres_sdk import FaceDetector

        detector = detector or FaceDetector(estimate_resolution=False)
    crops, ids, roles, res = [], [], [], []
    for row in rows:
        img = cv2.imread(str(manifest.parent / row["path"]), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{manifest}: cannot read {row['path']}")
        if align:
            from crres_sdk import align_faces_uint8

            found = detector.detect_arrays(img)
            if not len(found.scores):
                raise ValueError(f"{manifest}: no face found in {row['path']}")
            img = align_faces_uint8(img, found.landmarks[:1])[0]
        elif img.shape[:2] != (112, 112):
            img = resize_bicubic(img, 112)
        r = row.get("resolution")
        crops.append(img)
        ids.append(str(row["identity"]))
        roles.append(str(row["role"]))
        res.append(None if r in (None, "") else int(r))
    return Layout(np.stack(crops), ids, roles, res, manifest.stem)


def build_lfw_layout(crops: np.ndarray, image_names: Sequence[str], probe_resolutions: Sequence[int]) -> Layout:
    """Gallery/probe layout from LFW crops named ``<person>/<person>_NNNN.jpg``: persons with >= 2 images; the
    first image (sorted) is the gallery, every other image is a probe at each of ``probe_resolutions``."""
    by_person: dict[str, list[int]] = {}
    for k, name in enumerate(image_names):
        by_person.setdefault(name.split("/")[0], []).append(k)
    rows_idx, ids, roles, res = [], [], [], []
    for person, idx in sorted(by_person.items()):
        if len(idx) < 2:
            continue
        idx = sorted(idx, key=lambda k: image_names[k])
        rows_idx.append(idx[0]); ids.append(person); roles.append("gallery"); res.append(None)
        for k in idx[1:]:
            for r in probe_resolutions:
                rows_idx.append(k); ids.append(person); roles.append("probe"); res.append(int(r))
    if not rows_idx:
        raise ValueError("no identity has two or more images")
    return Layout(crops[np.asarray(rows_idx)], ids, roles, res, "lfw-identification")


def evaluate_layout(layout: Layout, embed, *, ks: Sequence[int] = DEFAULT_RANKS, max_rank: int = 20,
                    progress: bool = False) -> dict:
    """Rank-k and CMC per probe resolution (and over all probes). ``embed(crops) -> (N, D)`` unit-norm rows."""
    from crres_sdk import degrade

    from evaluation.progress import Progress

    roles = np.asarray(layout.roles)
    g = np.flatnonzero(roles == "gallery")
    p = np.flatnonzero(roles == "probe")
    if not len(g) or not len(p):
        raise ValueError("layout needs gallery and probe rows")
    bar = Progress("identify (images)", len(layout.crops), enabled=progress)
    gallery = embed(layout.crops[g])
    bar.update(len(g))
    g_labels = [layout.identities[i] for i in g]
    groups: dict[str, list[int]] = {}
    for i in p:
        r = layout.resolutions[i]
        groups.setdefault("native" if r is None else str(r), []).append(int(i))
    out: dict = {"gallery_size": len(g), "probes": len(p), "per_resolution": {}}
    max_rank = min(max_rank, len(g))
    all_ranks = []
    for key in sorted(groups, key=lambda s: (s == "native", int(s) if s.isdigit() else 0)):
        idx = groups[key]
        crops = layout.crops[idx]
        if key != "native" and int(key) < crops.shape[1]:
            crops = degrade(np.ascontiguousarray(crops), int(key))
        ranks = probe_ranks(embed(crops), gallery, [layout.identities[i] for i in idx], g_labels)
        all_ranks.append(ranks)
        bar.update(len(idx))
        out["per_resolution"][key] = {"probes": len(idx), **rank_k(ranks, ks),
                                      "cmc": [float(v) for v in cmc(ranks, max_rank)]}
    bar.__exit__(None, None, None)
    ranks = np.concatenate(all_ranks)
    out["all"] = {"probes": len(ranks), **rank_k(ranks, ks), "cmc": [float(v) for v in cmc(ranks, max_rank)]}
    return out
