"""Per-resolution decision thresholds at named false-accept rates, for the FP32 model and every INT8 file.

A threshold at resolution r is measured on *cross-resolution* pairs, the SDK's matching situation: a gallery
crop at 112 px against a probe crop degraded to r with ``crres_sdk.degrade`` (DESIGN section 4). Impostor pairs
(different identities) fix the threshold at each FAR; genuine pairs (same identity, different photos) give the
TAR at that threshold. Pairs are built *within* one source at a time (two datasets can hold the same person
under different labels, so cross-source pairs are never called impostors) and pooled over the sources.

The manifest block (the SDK's Recognizer reads exactly this)::

    "thresholds": {
      "metric": "cosine",                      # similarity of L2-normalised embeddings; accept when score > t
      "resolutions": [7, 10, 14, 20, 28, 40, 56, 112],
      "far": {"1e-3": [t_7, ..., t_112], "1e-4": [...]},   # FP32 model (files.onnx.fp32)
      "tar": {"1e-3": [...], "1e-4": [...]},               # TAR at those thresholds
      "source": "<pairs used: data, identities, genuine/impostor pair counts per resolution>",
      "pairs": {"genuine": [...], "impostor": [...]},      # counts per resolution (informative)
      "by_file": {"onnx/int8": {"far": {...}, "tar": {...}}, "openvino/int8_xml": {...}, "tensorrt/qdq": {...}}
    }

``by_file`` keys are ``"<runtime>/<role>"`` exactly as in ``manifest["files"]``; a reader uses
``by_file[f"{runtime}/{role}"]`` when present, else the top-level FP32 values, and interpolates linearly in
log(resolution) between the listed resolutions, clamped at the ends (:func:`lookup` is the reference).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LOG = logging.getLogger("crres.export")
RESOLUTIONS: tuple[int, ...] = (7, 10, 14, 20, 28, 40, 56, 112)
FARS: tuple[str, ...] = ("1e-3", "1e-4")
HR = 112


@dataclass
class PairSource:
    """Aligned crops of one dataset with identity labels.

    ``gallery`` indexes the crops used at 112 px, ``probes`` those degraded to each resolution; an impostor pair
    is (gallery g, probe p) with different identities, a genuine pair the same identity and g != p.
    """

    name: str
    crops: np.ndarray                  # (M, 112, 112, 3) uint8 BGR, aligned
    identities: np.ndarray             # (M,) int labels
    gallery: np.ndarray                # indices into crops
    probes: np.ndarray                 # indices into crops
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.identities = np.asarray(self.identities)
        self.gallery = np.asarray(self.gallery, np.int64)
        self.probes = np.asarray(self.probes, np.int64)
        if self.crops.ndim != 4 or self.crops.dtype != np.uint8:
            raise ValueError(f"{self.name}: crops must be uint8 (M, H, W, 3), got {self.crops.dtype} "
                             f"{self.crops.shape}")
        if self.identities.shape != (len(self.crops),):
            raise ValueError(f"{self.name}: one identity label per crop needed")
        for what in ("gallery", "probes"):
            idx = getattr(self, what)
            if idx.size == 0 or idx.min() < 0 or idx.max() >= len(self.crops):
                raise ValueError(f"{self.name}: {what} must be non-empty indices into the crops")
        if len(np.unique(self.identities)) < 2:
            raise ValueError(f"{self.name}: impostor pairs need at least 2 identities")


#: embed(source, indices, resolution) -> (len(indices), D) unit-norm embeddings of those crops at that resolution
EmbedFn = Callable[[PairSource, np.ndarray, int], np.ndarray]


def pair_scores(source: PairSource, embed: EmbedFn, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(genuine scores, impostor scores) of gallery@112 vs probes@resolution: every cross pair, none discarded."""
    g = embed(source, source.gallery, HR)
    p = embed(source, source.probes, resolution)
    scores = g @ p.T                                                       # (G, P) cosine
    same = source.identities[source.gallery][:, None] == source.identities[source.probes][None, :]
    self_pair = source.gallery[:, None] == source.probes[None, :]
    return scores[same & ~self_pair].astype(np.float64), scores[~same].astype(np.float64)


def threshold_at_far(impostor: np.ndarray, far: float) -> tuple[float, float]:
    """The lowest threshold t (among impostor scores) with measured FAR = mean(impostor > t) <= far.

    With k = floor(far * n) the threshold is the (k+1)-th largest impostor score; when k = 0 (fewer than 1/far
    impostor pairs) it is the largest score, i.e. FAR 0 on this data. Returns (threshold, measured FAR).
    """
    s = np.asarray(impostor, np.float64).ravel()
    if s.size == 0:
        raise ValueError("threshold_at_far needs impostor scores")
    if not 0 < far < 1:
        raise ValueError(f"far must lie in (0, 1), got {far}")
    k = int(math.floor(far * s.size + 1e-9))
    k = min(k, s.size - 1)
    t = float(np.partition(s, s.size - 1 - k)[s.size - 1 - k])
    return t, float(np.mean(s > t))


def compute(sources: Sequence[PairSource], embed: EmbedFn, resolutions: Sequence[int] = RESOLUTIONS,
            fars: Sequence[str] = FARS) -> dict[str, Any]:
    """``{"far": {f: [t per r]}, "tar": {f: [...]}, "measured_far": {...}, "pairs": {...}}`` over the sources."""
    if not sources:
        raise ValueError("thresholds need at least one pair source")
    out: dict[str, Any] = {"far": {f: [] for f in fars}, "tar": {f: [] for f in fars},
                           "measured_far": {f: [] for f in fars}, "pairs": {"genuine": [], "impostor": []}}
    few = []
    for r in resolutions:
        gen, imp = [], []
        for src in sources:
            g, i = pair_scores(src, embed, int(r))
            gen.append(g)
            imp.append(i)
        gen_all, imp_all = np.concatenate(gen), np.concatenate(imp)
        out["pairs"]["genuine"].append(int(gen_all.size))
        out["pairs"]["impostor"].append(int(imp_all.size))
        for f in fars:
            t, measured = threshold_at_far(imp_all, float(f))
            out["far"][f].append(round(t, 6))
            out["measured_far"][f].append(measured)
            out["tar"][f].append(round(float(np.mean(gen_all > t)), 6) if gen_all.size else None)
        if imp_all.size * min(float(f) for f in fars) < 10:
            few.append(f"r={r}: {imp_all.size}")
    if few:
        LOG.warning("FAR %s rests on fewer than 10 impostor false accepts (impostor pairs %s): use more identities",
                    min(fars, key=float), ", ".join(few))
    return out


def describe_sources(sources: Sequence[PairSource], counts: dict[str, list[int]],
                     resolutions: Sequence[int]) -> str:
    parts = []
    for s in sources:
        n_id = len(np.unique(s.identities[np.concatenate([s.gallery, s.probes])]))
        parts.append(f"{s.name}: {s.description}; {len(s.gallery)} gallery crops at 112 px vs {len(s.probes)} "
                     f"probe crops degraded to r with crres_sdk.degrade, {n_id} identities")
    per_r = ", ".join(f"r={r}: {g}/{i}" for r, g, i in zip(resolutions, counts["genuine"], counts["impostor"]))
    return ("cross-resolution pairs (gallery 112 px vs probe at r), impostor = different identity within one "
            f"source. {' | '.join(parts)}. Genuine/impostor pairs per resolution: {per_r}")


def lookup(thresholds: dict[str, Any], resolution: float, far: str = "1e-3", file: str | None = None) -> float:
    """Reference reader: threshold for ``resolution`` px at ``far`` for ``file`` ("runtime/role") or FP32.

    Linear interpolation in log(resolution) between the listed resolutions, clamped at both ends.
    """
    table = thresholds
    if file is not None and file in (thresholds.get("by_file") or {}):
        table = thresholds["by_file"][file]
    if far not in table["far"]:
        raise KeyError(f"no thresholds at FAR {far}; have {sorted(table['far'])}")
    rs = np.log(np.asarray(thresholds["resolutions"], np.float64))
    ts = np.asarray(table["far"][far], np.float64)
    if not resolution > 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    return float(np.interp(math.log(resolution), rs, ts))


def manifest_block(fp32: dict[str, Any], by_file: dict[str, dict[str, Any]], source: str,
                   resolutions: Sequence[int] = RESOLUTIONS) -> dict[str, Any]:
    return {"metric": "cosine", "resolutions": [int(r) for r in resolutions], "far": fp32["far"],
            "tar": fp32["tar"], "source": source, "pairs": fp32["pairs"],
            "by_file": {k: {"far": v["far"], "tar": v["tar"]} for k, v in by_file.items()}}
