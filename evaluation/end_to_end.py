"""End-to-end cross-resolution verification (issue 18, item 2): the second photo of each pair shrunk *as a whole*.

The crop protocols degrade an aligned 112 px crop (``F_up(F_down,r(crop))``). A camera sees something else: the
whole scene at low resolution, from which the SDK aligns the face. Here the second image of every LFW pair is
shrunk as a whole (``cv2.INTER_AREA``) so that its face has resolution r (the pair's size from the btm-stm
protocol file; a face already at or below r keeps its size), then

* ``landmarks`` (a): aligned by the SDK (``align_faces_uint8`` with its default small-face warp) from its HR
  landmarks scaled with the photo, i.e. perfect localisation;
* ``detector`` (b): found by the SDK's MTCNN (``FaceDetector``, 12 px minimum face) in the shrunk photo and aligned
  from its landmarks; the detection nearest the true face is used (eye midpoint within half an eye distance),
  and a pair whose face is not found is a *miss*, reported separately and counted as a failure in
  ``accuracy_with_misses`` = accuracy on the found pairs x share found.

The first image stays the HR crop, as in btm-stm. Accuracy is LFW's 10-fold protocol on the pairs scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crres_sdk.preprocess import TEMPLATE_SIZE
from evaluation.datasets import PairDataset
from evaluation.progress import Progress
from evaluation.verification import evaluate_scores, l2_normalize

MODES = ("landmarks", "detector")


def locate(found_landmarks: np.ndarray, true_landmarks: np.ndarray) -> int | None:
    """Index of the detection whose eye midpoint is nearest the true one, if within half the true eye distance."""
    if len(found_landmarks) == 0:
        return None
    true_mid = true_landmarks[:2].mean(0)
    eye = float(np.linalg.norm(true_landmarks[0] - true_landmarks[1]))
    dist = np.linalg.norm(found_landmarks[:, :2].mean(1) - true_mid, axis=1)
    k = int(np.argmin(dist))
    return k if dist[k] <= 0.5 * eye else None


def second_image_crops(load: Callable[[int], np.ndarray], landmarks: np.ndarray, images: np.ndarray,
                       sizes: np.ndarray, mode: str, detector: Any = None,
                       progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Aligned uint8 crops (N, 112, 112, 3) of image ``images[i]`` shrunk to face size ``sizes[i]`` and whether
    its face was found (always, for ``mode="landmarks"``). Each (image, size) is processed once."""
    from crres_sdk import align_faces_uint8

    from evaluation.open_set import shrink_photo

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "detector" and detector is None:
        from crres_sdk import FaceDetector

        detector = FaceDetector(estimate_resolution=False)
    images, sizes = np.asarray(images, np.int64), np.asarray(sizes, np.int64)
    keys = sorted(set(zip(images.tolist(), sizes.tolist())))
    done: dict[tuple[int, int], tuple[np.ndarray, bool]] = {}
    with Progress(f"end-to-end {mode}", len(keys), enabled=progress) as bar:
        for i, r in keys:
            frame, lm, _ = shrink_photo(load(i), landmarks[i], r)
            ok = True
            if mode == "detector":
                found = detector.detect_arrays(frame)
                k = locate(found.landmarks, lm)
                ok = k is not None
                lm = found.landmarks[k].astype(np.float64) if ok else lm
            crop = align_faces_uint8(frame, lm[None].astype(np.float64))[0] if ok else \
                np.zeros((112, 112, 3), np.uint8)
            done[(i, r)] = (crop, ok)
            bar.update()
    crops = np.stack([done[(i, r)][0] for i, r in zip(images.tolist(), sizes.tolist())])
    found = np.asarray([done[(i, r)][1] for i, r in zip(images.tolist(), sizes.tolist())])
    return crops, found


def evaluate(cache: Any, ds: PairDataset, crops: np.ndarray, found: np.ndarray) -> dict[str, Any]:
    """10-fold accuracy of (first image HR crop, second image end-to-end crop) over the pairs whose face was
    found; misses counted as failures in ``accuracy_with_misses``."""
    a = cache.get(ds.pair_index[:, 0], TEMPLATE_SIZE)
    b = np.zeros_like(a)
    if found.any():
        b[found] = l2_normalize(cache.embed_crops(np.ascontiguousarray(crops[found])))
    scores = np.sum(a * b, axis=1)
    if not found.any():
        return {"accuracy": None, "accuracy_with_misses": 0.0, "misses": int(len(found)), "miss_rate": 1.0,
                "n_pairs": int(len(found))}
    rep = evaluate_scores(scores[found], ds.issame[found], ds.folds[found]).to_dict()
    share = float(found.mean())
    return {**rep, "accuracy_with_misses": rep["accuracy"] * share, "misses": int((~found).sum()),
            "miss_rate": 1.0 - share, "misses_genuine": int((~found & ds.issame).sum())}


def evaluate_btm_stm(cache: Any, ds: PairDataset, load: Callable[[int], np.ndarray], landmarks: np.ndarray,
                     sizes_by_protocol: dict[str, np.ndarray], modes: Sequence[str] = MODES,
                     progress: bool = True, detector: Any = None) -> dict[str, Any]:
    """``{mode: {protocol: figures}}`` for the btm-stm size protocols (sizes (N, 2); the second column is r)."""
    out: dict[str, Any] = {}
    for mode in modes:
        out[mode] = {}
        for name, sizes in sizes_by_protocol.items():
            sizes = np.asarray(sizes, np.int64)
            crops, found = second_image_crops(load, landmarks, ds.pair_index[:, 1], sizes[:, 1], mode, detector,
                                              progress)
            out[mode][name] = {**evaluate(cache, ds, crops, found),
                               "size_range": [int(sizes[:, 1].min()), int(sizes[:, 1].max())]}
    return out


def evaluate_fixed(cache: Any, ds: PairDataset, load: Callable[[int], np.ndarray], landmarks: np.ndarray,
                   resolutions: Sequence[int], modes: Sequence[str] = ("landmarks",), progress: bool = True,
                   detector: Any = None) -> dict[str, Any]:
    """Every pair at one r at a time: first image HR crop, second at r, by the crop protocol (``degrade`` of the
    aligned crop, Lai & Lam's HR-vs-LR order) and end to end per mode. ``{r: {"crop": ..., mode: ...,
    "gap_pp": {mode: crop - end-to-end accuracy, pp}}}``."""
    from evaluation.protocols import pair_scores

    out: dict[str, Any] = {}
    for r in resolutions:
        r = int(r)
        crop = evaluate_scores(pair_scores(cache, ds, TEMPLATE_SIZE, r), ds.issame, ds.folds)
        row: dict[str, Any] = {"crop": crop.to_dict()}
        sizes = np.full(ds.n_pairs, r)
        for mode in modes:
            crops, found = second_image_crops(load, landmarks, ds.pair_index[:, 1], sizes, mode, detector, progress)
            row[mode] = evaluate(cache, ds, crops, found)
        row["gap_pp"] = {m: None if row[m]["accuracy"] is None else
                         round(100 * (row["crop"]["accuracy"] - row[m]["accuracy"]), 2) for m in modes}
        out[str(r)] = row
    return out

