"""Calibration and parity data: aligned 112x112 crops degraded to a stratified set of resolutions.

``--calib DIR`` is a folder of aligned crops or raw photos (``DIR/*.png`` or ``DIR/<identity>/*.jpg``). The files
are split deterministically (by ``seed``) into a calibration part and a held-out part (whole identities when the
folder has identity sub-folders, see :func:`split_for_export`); every calibration sample is one crop degraded by
``crres_sdk.degrade`` (THE resolution definition) to a resolution drawn from bands that cover 5..112 px (default:
a third each in low 5-10, mid 11-40, high 41-112, the btm-stm focus ranges). The held-out crops give the parity
set (each crop degraded into every band) and the threshold pairs. An image that is not 112x112 is taken as a raw
photo: its face is detected and aligned with crres_sdk.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crres_sdk
import cv2
import numpy as np

LOG = logging.getLogger("crres.export")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: Resolution bands (inclusive), after the btm-stm low/mid/high focus protocols (Knoche 6.3).
BANDS: dict[str, tuple[int, int]] = {"low": (5, 10), "mid": (11, 40), "high": (41, 112)}
DEFAULT_BAND_WEIGHTS = {"low": 1 / 3, "mid": 1 / 3, "high": 1 / 3}
#: Fewer distinct crops than this draws a warning (the same face at many resolutions is a narrow set).
MIN_UNIQUE_CROPS = 100


@dataclass
class FaceSet:
    """Model-ready float32 NCHW inputs with the resolution each was degraded to."""

    inputs: np.ndarray
    resolutions: np.ndarray
    sources: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        counts = {b: int(((self.resolutions >= lo) & (self.resolutions <= hi)).sum()) for b, (lo, hi) in BANDS.items()}
        return {"samples": len(self.inputs), "unique_crops": len(set(self.sources)), "per_band": counts,
                "resolution_min": int(self.resolutions.min()), "resolution_max": int(self.resolutions.max())}


def list_crops(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--calib {root} is not a folder")
    files = sorted(Path(d) / f for d, _, names in os.walk(root, followlinks=True) for f in names
                   if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."))
    if not files:
        raise ValueError(f"--calib {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}), flat or in identity "
                         "sub-folders")
    return files


class _Aligner:
    """Raw photos -> aligned crops with crres_sdk: MTCNN, the large central face, ArcFace-template alignment."""

    def __init__(self) -> None:
        self._detector = None

    def __call__(self, img: np.ndarray, size: int) -> np.ndarray | None:
        if self._detector is None:
            self._detector = crres_sdk.FaceDetector(backend="onnxruntime", estimate_resolution=False)
        found = self._detector.detect_arrays(img)
        if len(found.scores) == 0:
            return None
        b = found.boxes
        h, w = img.shape[:2]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        off = ((b[:, 0] + b[:, 2]) / 2 - w / 2) ** 2 + ((b[:, 1] + b[:, 3]) / 2 - h / 2) ** 2
        k = int(np.argmax(area - 2.0 * off))  # InsightFace's rule, as evaluation/ uses for LFW
        return crres_sdk.align_faces_uint8(img, found.landmarks[k], size=size)


def load_faces(files: list[Path], size: int = 112, align: bool = True) -> tuple[np.ndarray, list[Path]]:
    """(N, size, size, 3) uint8 BGR crops and the files they came from.

    A ``size`` x ``size`` image is taken as an aligned crop; any other image as a raw photo, aligned with
    ``crres_sdk`` (photos where no face is found are skipped with a warning). ``align=False`` refuses them.
    """
    aligner = _Aligner()
    crops, kept, skipped = [], [], []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot decode {f}")
        if img.shape[:2] != (size, size):
            if not align:
                raise ValueError(f"{f} is {img.shape[1]}x{img.shape[0]}, not an aligned {size}x{size} crop")
            img = aligner(img, size)
            if img is None:
                skipped.append(f)
                continue
        crops.append(img)
        kept.append(f)
    if skipped:
        LOG.warning("no face found in %d of %d photos (skipped), e.g. %s", len(skipped), len(files), skipped[0])
    if not crops:
        raise ValueError(f"no usable faces in {len(files)} image(s), e.g. {files[0]}")
    return np.stack(crops), kept


def preprocess(crops_bgr: np.ndarray, normalisation: dict[str, Any]) -> np.ndarray:
    """uint8 BGR NHWC -> float32 NCHW model input per the checkpoint's normalisation."""
    x = crops_bgr[..., ::-1] if normalisation["color"] == "rgb" else crops_bgr
    mean = np.asarray(normalisation["mean"], np.float32)
    std = np.asarray(normalisation["std"], np.float32)
    x = (x.astype(np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def draw_resolutions(n: int, rng: np.random.Generator, weights: dict[str, float] | None = None) -> np.ndarray:
    """``n`` resolutions, stratified: ``round(n * weight)`` per band, uniform integers inside each band."""
    weights = dict(weights or DEFAULT_BAND_WEIGHTS)
    unknown = set(weights) - set(BANDS)
    if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"band weights must be non-negative over {list(BANDS)}, got {weights}")
    total = sum(weights.values())
    counts = {b: round(n * weights.get(b, 0) / total) for b in BANDS}
    # fix rounding so the counts add up to n, adjusting the heaviest band
    heaviest = max(BANDS, key=lambda b: weights.get(b, 0))
    counts[heaviest] += n - sum(counts.values())
    res = np.concatenate([rng.integers(lo, hi + 1, counts[b]) for b, (lo, hi) in BANDS.items()]).astype(np.int64)
    return rng.permutation(res)


def identity_labels(files: list[Path], root: str | Path) -> list[str] | None:
    """The identity sub-folder of every file (``root/<identity>/...``), or None for a flat folder / one identity."""
    root = Path(root)
    labels = []
    for f in files:
        parts = Path(f).relative_to(root).parts
        if len(parts) < 2:
            return None
        labels.append(parts[0])
    return labels if len(set(labels)) >= 2 else None


@dataclass
class Split:
    """Calibration files and held-out files (parity + threshold pairs), with the held-out identities if known."""

    calib: list[Path]
    holdout: list[Path]
    holdout_identities: list[str] | None
    by_identity: bool

    def describe(self) -> dict[str, Any]:
        ids = self.holdout_identities
        return {"calibration_files": len(self.calib), "held_out_files": len(self.holdout),
                "split": "by identity (held-out identities never calibrate)" if self.by_identity else "by file",
                "held_out_identities": len(set(ids)) if ids else None}


def split_for_export(files: list[Path], root: str | Path, seed: int, *, calib_max: int,
                     holdout_fraction: float = 0.25, min_holdout: int = 4, holdout_max: int = 512,
                     per_identity: int = 4) -> Split:
    """Deterministic split of ``--calib`` into calibration and held-out files.

    With identity sub-folders (>= 3 identities) whole identities are held out, at most ``per_identity`` files
    each (more identities -> more impostor combinations for the thresholds), until ``holdout_fraction`` of the
    files (at least ``min_holdout``, at most ``holdout_max``, at least 2 identities) are held out; otherwise files
    are split at random. The calibration side keeps at most ``calib_max`` files (a seeded sample).
    """
    labels = identity_labels(files, root)
    rng = np.random.default_rng([seed, 0])
    target = min(holdout_max, max(min_holdout, round(len(files) * holdout_fraction)))
    if labels is not None and len(set(labels)) >= 3:
        by_id: dict[str, list[Path]] = {}
        for f, lab in zip(files, labels):
            by_id.setdefault(lab, []).append(f)
        order = [sorted(by_id)[i] for i in rng.permutation(len(by_id))]
        hold: list[Path] = []
        hold_ids: list[str] = []
        taken = 0
        for ident in order[:-1]:  # at least one identity stays for calibration
            if len(hold) >= target and taken >= 2:
                break
            group = by_id[ident]
            pick = sorted(group[i] for i in rng.permutation(len(group))[:per_identity])
            hold += pick
            hold_ids += [ident] * len(pick)
            taken += 1
        held = set(hold_ids)
        calib = [f for f, lab in zip(files, labels) if lab not in held]
        by_identity = True
    else:
        calib, hold = split_files(files, seed, holdout_fraction, min_holdout)
        if len(hold) > holdout_max:
            hold = sorted(hold[i] for i in rng.permutation(len(hold))[:holdout_max])
        label_of = dict(zip(files, labels)) if labels is not None else None
        hold_ids = [label_of[f] for f in hold] if label_of is not None else None
        by_identity = False
    if len(calib) > calib_max:
        calib = sorted(calib[i] for i in rng.permutation(len(calib))[:calib_max])
    return Split(calib, hold, hold_ids, by_identity)


def split_files(files: list[Path], seed: int, holdout_fraction: float = 0.25, min_holdout: int = 4
                ) -> tuple[list[Path], list[Path]]:
    """Deterministic split into (calibration, held-out parity) files; both non-empty (needs >= 2 files)."""
    if len(files) < 2:
        raise ValueError(f"need at least 2 calibration crops (one is held out for parity), got {len(files)}")
    order = np.random.default_rng(seed).permutation(len(files))
    n_hold = min(len(files) - 1, max(min_holdout, round(len(files) * holdout_fraction)))
    hold = sorted(files[i] for i in order[:n_hold])
    calib = sorted(files[i] for i in order[n_hold:])
    return calib, hold


def build_calibration_set(crops: np.ndarray, names: list[Path], size: int, normalisation: dict[str, Any],
                          seed: int, weights: dict[str, float] | None = None) -> FaceSet:
    """``size`` samples: crops cycled (shuffled, so repeats only when there are fewer crops than samples),
    each degraded to its own stratified resolution."""
    rng = np.random.default_rng([seed, 1])
    unique = len(crops)
    if unique < MIN_UNIQUE_CROPS:
        LOG.warning("calibration set has only %d distinct crops (< %d recommended); INT8 ranges may not "
                    "generalise - use more faces", unique, MIN_UNIQUE_CROPS)
    if size < 3 * 32:
        LOG.warning("--calib-size %d is small (< 96, about 32 per resolution band)", size)
    idx = np.concatenate([rng.permutation(unique) for _ in range(-(-size // unique))])[:size]
    res = draw_resolutions(size, rng, weights)
    degraded = crres_sdk.degrade(np.ascontiguousarray(crops[idx]), res)
    return FaceSet(preprocess(degraded, normalisation), res, [str(names[i]) for i in idx])


def build_parity_set(crops: np.ndarray, names: list[Path], normalisation: dict[str, Any], seed: int,
                     per_band: int | None = None, target_per_band: int = 300) -> FaceSet:
    """Every held-out crop at ``per_band`` distinct resolutions drawn in each band (default: enough for about
    ``target_per_band`` samples per band, 1 to 3 per crop)."""
    if per_band is None:
        per_band = int(min(3, max(1, -(-target_per_band // max(len(crops), 1)))))
    rng = np.random.default_rng([seed, 2])
    reps, res = [], []
    for i in range(len(crops)):
        for lo, hi in BANDS.values():
            rs = rng.choice(np.arange(lo, hi + 1), size=min(per_band, hi - lo + 1), replace=False)
            reps.extend([i] * len(rs))
            res.extend(int(r) for r in rs)
    res_arr = np.asarray(res, np.int64)
    degraded = crres_sdk.degrade(np.ascontiguousarray(crops[reps]), res_arr)
    return FaceSet(preprocess(degraded, normalisation), res_arr, [str(names[i]) for i in reps])
