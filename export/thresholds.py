"""Per-resolution decision thresholds at named false-accept rates, for the FP32 model and every INT8 file.

A threshold at resolution r is measured on *cross-resolution* pairs, the SDK's matching situation: a gallery
crop at 112 px against a probe crop degraded to r with ``crres_sdk.degrade`` (DESIGN section 4). Impostor pairs
(different identities) fix the threshold at each FAR; genuine pairs (same identity, different photos) give the
TAR at that threshold. Pairs are built *within* one source at a time (two datasets can hold the same person
under different labels, so cross-source pairs are never called impostors) and pooled over the sources.

Two pairings are measured at each resolution r (DESIGN section 4, "Decisions"):

* ``far`` (1:1 ``verify``): a 112 px gallery crop against a probe crop degraded to r, the pair ``verify`` sees
  when it takes the threshold at the lower of two resolutions;
* ``identification`` (1:N): the gallery crop degraded to the same r as the probe, the pair gallery-side resolution
  matching compares (enrolment stores templates of the crop degraded to every gallery level; a probe at r is
  compared with the level nearest r). Both sides degraded look more alike than HR-vs-r, so its impostor tail is
  higher and 1:1 thresholds would accept too many strangers.

Each pairing stores thresholds at FAR 1e-2 ... 1e-6 and the impostor score *tail* they come from. Where a rate
has at least :data:`MIN_EXCEEDANCES` impostor pairs above it (far * n >= 10) the threshold is the empirical one
(:func:`threshold_at_far`); stricter rates, which a few hundred held-out identities cannot measure, come from an
exponential tail P(s > t) = p_u * exp(-(t - u) / scale) fitted by maximum likelihood to the top m impostor scores
above u (m = n * 1e-3, at least 50; p_u = m / n). Cosine impostor scores are bounded and their tail decays faster
than exponential (a generalised Pareto fit, ``model="gpd"``, finds shapes -0.2 to -0.4), yet on identities it was
not fitted on the exponential tail is the better calibrated one: ``python -m export.tail_backtest`` measures
observed / predicted false accepts of 1.2 at FAR 1e-4 and 0.4-0.45 at 1e-5 for it, 1.3 and 1.4-1.8 for the
generalised Pareto tail (default ckpt-1804fcdf21d7, halves of its 205 held-out identities; ckpt-77d431664977:
1.1 and 0.4 against 1.25 and 2.0). ``tail.fitted`` says which
values came from the fit. The SDK derives a threshold at any per-pair FAR from these (the 1:N policy needs
FAR = fpir / (N k), often below 1e-6): log-linear between the listed rates, the tail beyond the strictest.

The manifest block (the SDK's Recognizer reads exactly this; bundles with only ``far`` 1e-3/1e-4 and no
``tail``/``identification`` still load, the SDK then uses ``far`` for both and extrapolates in log FAR)::

    "thresholds": {
      "metric": "cosine",                      # similarity of L2-normalised embeddings; accept when score > t
      "resolutions": [7, 10, 14, 20, 28, 40, 56, 112],
      "far": {"1e-2": [t_7, ..., t_112], "1e-3": [...], ..., "1e-6": [...]},   # FP32, 1:1 pairs (HR vs r)
      "tar": {"1e-2": [...], ...},                                              # TAR at those thresholds
      "tail": {"model": "exponential", "u": [...], "p_u": [...], "scale": [...], "exceedances": [...],
               "fitted": {"1e-2": [false, ...], ..., "1e-6": [true, ...]}},
      "identification": {"pairing": "...", "far": {...}, "tar": {...}, "tail": {...}},   # 1:N pairs (r vs r)
      "source": "<pairs used: data, identities, genuine/impostor pair counts per resolution>",
      "pairs": {"genuine": [...], "impostor": [...]},      # counts per resolution (informative)
      "by_file": {"onnx/int8": {"far": {...}, "tar": {...}, "tail": {...}, "identification": {...}}, ...}
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
from crres_sdk.preprocess import TEMPLATE_SIZE

from evaluation.far_threshold import threshold_at_far

LOG = logging.getLogger("crres.export")
RESOLUTIONS: tuple[int, ...] = (7, 10, 14, 20, 28, 40, 56, 112)
FARS: tuple[str, ...] = ("1e-2", "1e-3", "1e-4", "1e-5", "1e-6")
#: A rate is measured empirically when at least this many impostor pairs lie above its threshold, else fitted.
MIN_EXCEEDANCES = 10
#: The exponential tail is fitted to the top max(TAIL_MIN, TAIL_SHARE * n) impostor scores.
TAIL_SHARE = 1e-3
TAIL_MIN = 50
PAIRINGS = ("cross", "matched")
#: Impostor tail models :func:`fit_tail` fits. Manifests carry the exponential one (the SDK reads only that);
#: the generalised Pareto one is for comparison (``export/tail_backtest.py``).
TAIL_MODELS = ("exponential", "gpd")


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


def pair_scores(source: PairSource, embed: EmbedFn, resolution: int, pairing: str = "cross",
                with_ids: bool = False) -> tuple[np.ndarray, ...]:
    """(genuine scores, impostor scores) of gallery vs probes@resolution: every cross pair, none discarded; with
    ``with_ids`` also the (gallery, probe) identity labels of each impostor pair, shape (n_impostor, 2).

    ``pairing="cross"``: gallery crops at 112 px (1:1 verification); ``"matched"``: gallery crops degraded to the
    same resolution as the probes (1:N identification against gallery-side resolution-matched templates).
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    g = embed(source, source.gallery, TEMPLATE_SIZE if pairing == "cross" else int(resolution))
    p = embed(source, source.probes, resolution)
    scores = g @ p.T                                                       # (G, P) cosine
    same = source.identities[source.gallery][:, None] == source.identities[source.probes][None, :]
    self_pair = source.gallery[:, None] == source.probes[None, :]
    genuine, impostor = scores[same & ~self_pair].astype(np.float64), scores[~same].astype(np.float64)
    if not with_ids:
        return genuine, impostor
    gi, pi = np.nonzero(~same)
    ids = np.stack([source.identities[source.gallery][gi], source.identities[source.probes][pi]], axis=1)
    return genuine, impostor, ids


@dataclass(frozen=True)
class Tail:
    """Impostor tail above u: P(score > t) = p_u * (1 + shape * (t - u) / scale) ** (-1 / shape) for t >= u, the
    generalised Pareto law of peaks over a threshold; shape = 0 is its exponential limit
    p_u * exp(-(t - u) / scale). Shape < 0 is a bounded tail (cosine scores end at 1) ending at u - scale / shape."""

    u: float
    p_u: float
    scale: float
    exceedances: int
    shape: float = 0.0
    model: str = "exponential"

    def threshold(self, far: float) -> float:
        """The threshold whose fitted FAR is ``far`` (u for rates at or above p_u)."""
        return tail_threshold(self.u, self.p_u, self.scale, self.shape, far)

    def far(self, t: float) -> float:
        if t < self.u:
            return self.p_u
        z = (t - self.u) / self.scale
        if self.shape == 0.0:
            return self.p_u * math.exp(-z)
        base = 1.0 + self.shape * z
        return self.p_u * base ** (-1.0 / self.shape) if base > 0.0 else 0.0


def tail_threshold(u: float, p_u: float, scale: float, shape: float, far: float) -> float:
    """Inverse of :class:`Tail`'s survival function (for shape 0, what the SDK's ``crres_sdk.policy`` extrapolates
    with a manifest's ``tail.scale``)."""
    x = math.log(p_u / far)
    if x <= 0.0:
        return u
    if shape == 0.0:
        return u + scale * x
    return u + scale * math.expm1(shape * x) / shape


def fit_tail(impostor: np.ndarray, share: float = TAIL_SHARE, minimum: int = TAIL_MIN,
             model: str = "exponential") -> Tail:
    """Maximum-likelihood fit to the excesses of the top m = max(minimum, share * n) impostor scores (at most
    n - 1) over u, the (m+1)-th largest score; p_u = m / n. ``"exponential"``: scale = mean excess (floored at
    1e-6). ``"gpd"``: the generalised Pareto shape and scale (scipy.stats.genpareto, location 0), shape kept in
    [-1, 0.5] (below -1 the likelihood is unbounded)."""
    if model not in TAIL_MODELS:
        raise ValueError(f"tail model must be one of {TAIL_MODELS}, got {model!r}")
    s = np.sort(np.asarray(impostor, np.float64).ravel())
    if s.size < 2:
        raise ValueError("fit_tail needs at least 2 impostor scores")
    m = int(min(s.size - 1, max(minimum, round(share * s.size))))
    u = float(s[s.size - 1 - m])
    excess = s[s.size - m:] - u
    scale = max(float(np.mean(excess)), 1e-6)
    if model == "exponential" or m < 3 or not np.any(excess > 0):
        return Tail(u, m / s.size, scale, m, 0.0, model)
    from scipy.stats import genpareto

    shape, _, gpd_scale = genpareto.fit(excess, floc=0.0)
    shape = float(min(max(shape, -1.0), 0.5))
    return Tail(u, m / s.size, max(float(gpd_scale), 1e-6), m, round(shape, 6), model)


def thresholds_from_scores(impostor: np.ndarray, fars: Sequence[str] = FARS,
                           min_exceedances: int = MIN_EXCEEDANCES) -> dict[str, Any]:
    """Threshold per rate (empirical where far * n >= min_exceedances, else from the fitted tail), made
    non-decreasing from the loosest to the strictest rate and capped at 1 (a cosine never exceeds 1).

    Returns ``{"far": {rate: t}, "measured_far": {rate: mean(impostor > t)}, "fitted": {rate: bool},
    "tail": Tail}``.
    """
    s = np.asarray(impostor, np.float64).ravel()
    tail = fit_tail(s)
    out: dict[str, Any] = {"far": {}, "measured_far": {}, "fitted": {}, "tail": tail}
    prev = -math.inf
    for f in sorted(fars, key=float, reverse=True):  # loosest first
        rate = float(f)
        if rate * s.size >= min_exceedances:
            t = threshold_at_far(s, rate)["threshold"]
            fitted = False
        else:
            t, fitted = tail.threshold(rate), True
        t = min(max(t, prev), 1.0)
        prev = t
        out["far"][f], out["fitted"][f] = t, fitted
        out["measured_far"][f] = float(np.mean(s > t))
    return out


def _empty(fars: Sequence[str]) -> dict[str, Any]:
    return {"far": {f: [] for f in fars}, "tar": {f: [] for f in fars}, "measured_far": {f: [] for f in fars},
            "pairs": {"genuine": [], "impostor": []},
            "tail": {"model": "exponential", "u": [], "p_u": [], "scale": [], "exceedances": [],
                     "fitted": {f: [] for f in fars}}}


def compute(sources: Sequence[PairSource], embed: EmbedFn, resolutions: Sequence[int] = RESOLUTIONS,
            fars: Sequence[str] = FARS, pairings: Sequence[str] = PAIRINGS,
            min_exceedances: int = MIN_EXCEEDANCES) -> dict[str, Any]:
    """``{"far": {f: [t per r]}, "tar": {f: [...]}, "measured_far": {...}, "pairs": {...}, "tail": {...}}`` of the
    1:1 ("cross") pairs over the sources, and the same for the 1:N ("matched") pairs under ``"identification"``
    when ``pairings`` includes it."""
    if not sources:
        raise ValueError("thresholds need at least one pair source")
    results = {p: _empty(fars) for p in pairings}
    few = []
    for r in resolutions:
        for pairing, out in results.items():
            gen, imp = [], []
            for src in sources:
                g, i = pair_scores(src, embed, int(r), pairing)
                gen.append(g)
                imp.append(i)
            gen_all, imp_all = np.concatenate(gen), np.concatenate(imp)
            out["pairs"]["genuine"].append(int(gen_all.size))
            out["pairs"]["impostor"].append(int(imp_all.size))
            fit = thresholds_from_scores(imp_all, fars, min_exceedances)
            tail = fit["tail"]
            for key, v in (("u", round(tail.u, 6)), ("p_u", tail.p_u), ("scale", round(tail.scale, 6)),
                           ("exceedances", tail.exceedances)):
                out["tail"][key].append(v)
            for f in fars:
                t = fit["far"][f]
                out["far"][f].append(round(t, 6))
                out["measured_far"][f].append(fit["measured_far"][f])
                out["tail"]["fitted"][f].append(bool(fit["fitted"][f]))
                out["tar"][f].append(round(float(np.mean(gen_all > t)), 6) if gen_all.size else None)
            if pairing == pairings[0] and imp_all.size * min(float(f) for f in fars) < min_exceedances:
                few.append(f"r={r}: {imp_all.size}")
    if few:
        LOG.info("thresholds at the strictest rates come from the fitted impostor tail (impostor pairs %s)",
                 ", ".join(few))
    out = results[pairings[0]]
    if "matched" in results and pairings[0] != "matched":
        out["identification"] = results["matched"]
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


def lookup(thresholds: dict[str, Any], resolution: float, far: str = "1e-3", file: str | None = None,
           identification: bool = False) -> float:
    """Reference reader: threshold for ``resolution`` px at ``far`` for ``file`` ("runtime/role") or FP32; with
    ``identification`` the 1:N (matched-resolution) table when the block has one.

    Linear interpolation in log(resolution) between the listed resolutions, clamped at both ends.
    """
    table = thresholds
    if file is not None and file in (thresholds.get("by_file") or {}):
        table = thresholds["by_file"][file]
    if identification and "identification" in table:
        table = table["identification"]
    if far not in table["far"]:
        raise KeyError(f"no thresholds at FAR {far}; have {sorted(table['far'])}")
    rs = np.log(np.asarray(thresholds["resolutions"], np.float64))
    ts = np.asarray(table["far"][far], np.float64)
    if not resolution > 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    return float(np.interp(math.log(resolution), rs, ts))


def _table(result: dict[str, Any]) -> dict[str, Any]:
    table = {"far": result["far"], "tar": result["tar"]}
    if "tail" in result:
        table["tail"] = result["tail"]
    return table


IDENTIFICATION_PAIRING = ("gallery crop degraded to the probe's resolution r (the templates gallery-side "
                          "resolution matching compares a probe at r with) vs probe at r; at 112 both HR")


def manifest_block(fp32: dict[str, Any], by_file: dict[str, dict[str, Any]], source: str,
                   resolutions: Sequence[int] = RESOLUTIONS) -> dict[str, Any]:
    block = {"metric": "cosine", "resolutions": [int(r) for r in resolutions], **_table(fp32),
             "source": source, "pairs": fp32["pairs"], "by_file": {}}
    for key, v in by_file.items():
        block["by_file"][key] = _table(v)
        if "identification" in v:
            block["by_file"][key]["identification"] = {"pairing": IDENTIFICATION_PAIRING,
                                                       **_table(v["identification"])}
    if "identification" in fp32:
        block["identification"] = {"pairing": IDENTIFICATION_PAIRING, **_table(fp32["identification"]),
                                   "pairs": fp32["identification"]["pairs"]}
    return block
