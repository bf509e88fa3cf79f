"""The one resolution and threshold policy every matcher uses (DESIGN section 4, "Resolution" and "Decisions").

Resolution
    A face is matched at its *probe resolution*: the blind effective-resolution estimate when one ran, never above
    the geometric equivalent resolution (a crop cannot carry more than its pixels), clipped to [1, crop size]
    (:func:`probe_resolution`; the canonical crop's side is :data:`crres_sdk.preprocess.TEMPLATE_SIZE`, the highest
    resolution a face can be matched at). Enrolment stores the HR template at the face's own probe resolution and one
    template of the crop degraded to every gallery level below it (:func:`enrolment_levels`); a probe at r is
    compared with each identity's templates at the level nearest r in log r, ties to the higher level
    (:func:`nearest_level`, what :class:`crres_sdk.Gallery` searches). The grids: gallery levels
    :data:`GALLERY_LEVELS`, threshold resolutions from the manifest (``thresholds.resolutions``), meet-in-the-middle
    match sizes :data:`MITM_SIZES`.

Thresholds
    1:1 ``verify`` decides at a per-pair false-accept rate ``far`` at the lower of the two resolutions, from the
    manifest's 1:1 table (gallery 112 px vs probe at r). 1:N identification decides at a false positive
    identification rate ``fpir``: a stranger compared with M gallery templates (N identities x k templates each at
    the level the probe is matched at; N with S_add fusion, one fused score per identity) is falsely named when
    any of the M impostor scores exceeds the threshold. By the union bound P(any) <= M * FAR, whatever the
    dependence between the scores, so the per-pair rate is ``FAR = fpir / M`` (:func:`pair_far`); for fpir <= 0.01
    it is at most ~0.5 % stricter than the independence formula 1 - (1 - fpir)^(1/M), and unlike that formula it
    needs no assumption about how one probe's scores against k photos of a person (or N people) co-vary. The threshold at that FAR comes from the manifest's 1:N table (gallery templates
    degraded to r vs probe at r, what resolution-matched search compares) when the bundle has one, else from the
    1:1 table: log-linear in FAR between the listed rates, beyond the strictest by the fitted exponential tail
    (``tail.scale``) or, for bundles without a tail, the slope of the last two rates in log FAR; looser than the
    loosest listed rate the loosest threshold (never extrapolated towards accepting more). Across resolutions,
    linear in log r between the listed resolutions. A face below the lowest calibrated resolution gets no name
    (decision ``"too-small"``: its impostor scores were never measured, and grow as faces shrink).

Pairing
    Which gallery templates a probe at r is compared with (:func:`hr_pairing`): ``"matched"`` = each identity's
    templates at the level nearest r (both sides at r; the 1:N table), ``"hr"`` = each identity's best-resolution
    template (gallery HR vs probe at r; the 1:1 table, which measures exactly those pairs). ``"auto"`` (default)
    takes, per r, the pairing whose table has the higher TAR at :data:`PAIRING_FAR` on the manifest's held-out
    calibration identities: a network trained to map low-resolution faces onto its HR embeddings (Knoche's
    ST-M1, Lu's KD) is better served by HR templates at mid resolutions, while at the smallest sizes both sides
    at r agree better. Bundles without both TAR tables keep ``"matched"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from crres_sdk.errors import BundleError
from crres_sdk.preprocess import TEMPLATE_SIZE

#: Resolutions (px) at which enrolment also stores templates of the degraded HR crop (gallery-side matching).
GALLERY_LEVELS: tuple[int, ...] = (7, 10, 14, 20, 28, 40, 56)
#: Meet-in-the-middle match sizes (Grm et al.): the gallery hypotheses and probe SR targets.
MITM_SIZES: tuple[int, ...] = (14, 20, 28, 40, 56, 80, 112)
#: Enrolment refuses faces whose probe resolution is below this (px) unless configured otherwise: a template of
#: a face this small is a poor reference for every later probe.
MIN_ENROLL_RESOLUTION = 24.0
#: Decisions a match can end in.
DECISIONS = ("match", "unknown", "too-small", "no-gallery", "ranked")
#: Which gallery templates a probe is compared with (module docstring, "Pairing").
PAIRINGS = ("auto", "matched", "hr")
#: The per-pair rate whose held-out TAR chooses the pairing: the strictest rate measured on many genuine pairs.
PAIRING_FAR = "1e-3"


def probe_resolution(equivalent: float, effective: float | None = None, crop_size: int = TEMPLATE_SIZE) -> float:
    """What a face is matched at: the effective estimate when present, capped by the equivalent (geometric)
    resolution, clipped to [1, crop_size]."""
    r = float(equivalent) if effective is None else min(float(effective), float(equivalent))
    if not math.isfinite(r):
        r = 1.0
    return float(min(max(r, 1.0), crop_size))


def face_resolution(face: Any) -> float:
    """:func:`probe_resolution` of a :class:`crres_sdk.Face`."""
    return probe_resolution(face.equivalent_resolution, face.effective_resolution)


def enrolment_levels(own: float, levels: Sequence[int] = GALLERY_LEVELS) -> list[int]:
    """The gallery levels an enrolment face at resolution ``own`` is also stored at: those below it by > 0.5 px."""
    return [int(r) for r in sorted(levels) if r < own - 0.5]


def template_level(resolution: float | np.ndarray) -> np.ndarray:
    """The gallery level a template made at this resolution is filed under: whole pixels in [1, crop size]."""
    return np.minimum(np.maximum(np.rint(np.asarray(resolution, np.float64)), 1.0), float(TEMPLATE_SIZE))


def level_preference(levels: Sequence[float] | np.ndarray, r: float) -> np.ndarray:
    """Indices of ``levels`` from the best for a probe at ``r`` to the worst: nearest in log resolution first,
    ties to the higher level. The gallery search takes, per identity, the first level it has templates at."""
    lv = np.asarray(levels, np.float64)
    dist = np.round(np.abs(np.log(lv) - math.log(max(float(r), 1e-9))), 12)
    return np.lexsort((-lv, dist))


def nearest_level(levels: Sequence[float] | np.ndarray, r: float) -> float:
    """The level nearest ``r`` in log resolution, ties to the higher (the rule the gallery search applies)."""
    return float(np.asarray(levels, np.float64)[level_preference(levels, r)[0]])


def pair_far(fpir: float, comparisons: int) -> float:
    """Per-pair false-accept rate that keeps a stranger's chance of being named below ``fpir`` against
    ``comparisons`` impostor scores: fpir / M (the union bound; see the module docstring)."""
    if not 0.0 < fpir < 1.0:
        raise ValueError(f"fpir must lie in (0, 1), got {fpir!r}")
    return float(fpir) / max(int(comparisons), 1)


def parse_rate(value: Any, what: str) -> float:
    """A rate in (0, 1) from a number or a string like ``"1e-3"``."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a rate in (0, 1) like 1e-3, got {value!r}") from None
    if isinstance(value, bool) or not 0.0 < rate < 1.0:
        raise ValueError(f"{what} must be a rate in (0, 1), got {value!r}")
    return rate


@dataclass(frozen=True)
class ThresholdTable:
    """Thresholds per resolution at several per-pair false-accept rates, and the tail slope beyond them."""

    resolutions: tuple[float, ...]
    rates: tuple[float, ...]                 # loosest first (decreasing)
    values: np.ndarray                       # (len(rates), len(resolutions)), non-decreasing down the rates
    slopes: np.ndarray                       # (len(resolutions),) dt / d ln(1/FAR) beyond the strictest rate
    fitted_tail: bool                        # slopes from the manifest's fitted tail (else from the last two rates)
    tar: np.ndarray | None = None            # (len(resolutions),) held-out TAR at PAIRING_FAR, when listed

    @classmethod
    def from_spec(cls, resolutions: Sequence[float], table: Mapping[str, Any]) -> "ThresholdTable":
        far = table.get("far") or {}
        if not far:
            raise BundleError("a threshold table needs at least one false-accept rate")
        items = sorted(((float(k), v) for k, v in far.items()), key=lambda kv: -kv[0])
        rates = tuple(k for k, _ in items)
        values = np.asarray([v for _, v in items], np.float64)
        if values.shape != (len(rates), len(resolutions)) or not np.all(np.isfinite(values)):
            raise BundleError("thresholds do not match their resolutions")
        tail = table.get("tail")
        if tail and tail.get("scale") is not None:
            slopes, fitted = np.asarray(tail["scale"], np.float64), True
        elif len(rates) >= 2:
            slopes, fitted = (values[-1] - values[-2]) / math.log(rates[-2] / rates[-1]), False
        else:
            slopes, fitted = np.zeros(len(resolutions)), False
        tar = (table.get("tar") or {}).get(PAIRING_FAR)
        tar = None if tar is None or len(tar) != len(resolutions) else np.asarray(tar, np.float64)
        return cls(tuple(float(r) for r in resolutions), rates, values, np.maximum(slopes, 0.0), fitted, tar)

    def at_rate(self, far: float) -> np.ndarray:
        """Thresholds at every listed resolution for per-pair rate ``far`` (capped at 1)."""
        rates = self.rates
        if far >= rates[0]:
            out = self.values[0]
        elif far <= rates[-1]:
            out = self.values[-1] + self.slopes * math.log(rates[-1] / far)
        else:
            x = -math.log(far)
            xs = -np.log(np.asarray(rates))
            out = np.array([np.interp(x, xs, self.values[:, j]) for j in range(len(self.resolutions))])
        return np.minimum(out, 1.0)

    def threshold(self, resolution: float | np.ndarray, far: float) -> np.ndarray:
        """Threshold(s) at ``resolution`` px (linear in log r between the listed ones, clamped) and rate ``far``."""
        return self.across_resolutions(resolution, self.at_rate(far))

    def across_resolutions(self, resolution: float | np.ndarray, values: np.ndarray) -> np.ndarray:
        """``values`` listed per resolution, at ``resolution`` px: linear in log r, clamped to the listed range."""
        lr = np.log(np.asarray(self.resolutions))
        r = np.clip(np.log(np.maximum(np.asarray(resolution, np.float64), 1.0)), lr[0], lr[-1])
        return np.interp(r, lr, values)


@dataclass(frozen=True)
class ThresholdPolicy:
    """The manifest's thresholds for one model file: 1:1 (``verification``) and 1:N (``identification``) tables."""

    verification: ThresholdTable
    identification: ThresholdTable
    identification_calibrated: bool          # False: the bundle has no 1:N table and the 1:1 table stands in

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], file_key: str | None) -> "ThresholdPolicy | None":
        spec = manifest.get("thresholds")
        if not spec:
            return None
        table = (spec.get("by_file") or {}).get(file_key, spec) if file_key else spec
        res = spec["resolutions"]
        try:
            ver = ThresholdTable.from_spec(res, table)
            ident_spec = table.get("identification") or (spec.get("identification") if table is spec else None)
            ident = ThresholdTable.from_spec(res, ident_spec) if ident_spec else ver
        except BundleError as exc:
            raise BundleError(f"model {manifest.get('name')!r}: {exc}") from None
        return cls(ver, ident, bool(ident_spec))

    @property
    def min_resolution(self) -> float:
        """The lowest calibrated resolution: below it no face is named."""
        return self.verification.resolutions[0]

    def too_small(self, resolution: float) -> bool:
        return float(resolution) < self.min_resolution - 1e-9

    def verify_threshold(self, resolution: float | np.ndarray, far: float) -> np.ndarray:
        return self.verification.threshold(resolution, far)

    def hr_pairing(self, resolution: float, pairing: str = "auto") -> bool:
        """Whether a probe at ``resolution`` is compared with the gallery's HR templates (module docstring,
        "Pairing"): ``"auto"`` when the 1:1 table's held-out TAR there beats the 1:N table's."""
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        if pairing != "auto":
            return pairing == "hr"
        ver, ident = self.verification, self.identification
        if not self.identification_calibrated or ver.tar is None or ident.tar is None:
            return False
        return bool(ver.across_resolutions(resolution, ver.tar) > ident.across_resolutions(resolution, ident.tar))

    def identify_threshold(self, resolution: float, fpir: float, comparisons: int,
                           hr: bool = False) -> tuple[float, float]:
        """(threshold, per-pair FAR) for a probe at ``resolution`` against ``comparisons`` gallery templates,
        from the 1:N table, or the 1:1 table when the probe is compared with HR templates (``hr``)."""
        f = pair_far(fpir, comparisons)
        table = self.verification if hr else self.identification
        return float(table.threshold(resolution, f)), f


__all__ = ["DECISIONS", "GALLERY_LEVELS", "MIN_ENROLL_RESOLUTION", "MITM_SIZES", "PAIRINGS", "PAIRING_FAR",
           "ThresholdPolicy", "ThresholdTable", "enrolment_levels", "face_resolution", "level_preference",
           "nearest_level", "pair_far", "parse_rate", "probe_resolution", "template_level"]
