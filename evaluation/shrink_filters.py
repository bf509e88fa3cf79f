"""Where the end-to-end gap comes from (issue 18, item 2): the shrinking filter or the alignment.

The crop protocol degrades the aligned HR crop with antialiased bicubic (``degrade``); the end-to-end protocol
shrinks the whole photo with ``cv2.INTER_AREA`` (a box filter, what a sensor's pixel area does) and aligns the
small face at its own scale (resolution-matched warp). Their accuracies differ by 2 pp at 12-16 px. Four ways of
making the second image of every LFW pair, at each fixed r:

* ``crop_bicubic``  the crop protocol: ``degrade(HR crop, r)``;
* ``crop_area``     the HR crop shrunk to r with INTER_AREA, then the same bicubic ``F_up``;
* ``photo_area``    the end-to-end protocol (a) as it was: photo shrunk with INTER_AREA, aligned by the SDK's
  resolution-matched warp (``resample="matched"``);
* ``photo_bicubic`` the photo shrunk with antialiased bicubic (``resize_bicubic``), aligned the same way;
* ``photo_area_{bilinear,cubic,lanczos}`` the INTER_AREA photo warped straight to the 112 crop in one
  resampling by ``cv2.warpAffine`` (bilinear: the SDK before resolution matching).

crop_bicubic vs crop_area isolates the filter on the crop; photo_bicubic vs photo_area the filter on the photo;
crop_* vs photo_* with the same filter isolates the alignment. Each variant also reports its RMS pixel error
against crop_bicubic (grey levels). Run::

    python -m evaluation.shrink_filters --lfw ../shared/data/lfw --model models/crres_default --r 8,12,16,24 --out runs/eval/shrink
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

VARIANTS = ("crop_bicubic", "crop_area", "photo_area", "photo_bicubic", "photo_area_bilinear", "photo_area_cubic",
            "photo_area_lanczos", "photo_area_keys05")
#: Direct warps (one resampling, small photo straight to the 112 crop) with OpenCV's interpolations.
DIRECT = {"photo_area_bilinear": "INTER_LINEAR", "photo_area_cubic": "INTER_CUBIC",
          "photo_area_lanczos": "INTER_LANCZOS4"}


def keys_warp(frame: np.ndarray, src_to_dst: np.ndarray, size: int, a: float) -> np.ndarray:
    """Bicubic (Keys ``a``) warp of a uint8 image to a size x size crop, border replicated: a numpy reference for
    kernels OpenCV does not offer (its INTER_CUBIC is a = -0.75)."""
    m = np.vstack([src_to_dst, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(m)[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]

    def weights(t: np.ndarray) -> list[np.ndarray]:
        def k(d):
            d = np.abs(d)
            return np.where(d < 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                            np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
        return [k(t + 1), k(t), k(1 - t), k(2 - t)]

    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    wx, wy = weights(sx - x0), weights(sy - y0)
    h, w = frame.shape[:2]
    img = frame.astype(np.float64)
    out = np.zeros((size, size, frame.shape[2]))
    for j in range(4):
        yy = np.clip(y0 - 1 + j, 0, h - 1)
        for i in range(4):
            xx = np.clip(x0 - 1 + i, 0, w - 1)
            out += (wy[j] * wx[i])[..., None] * img[yy, xx]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def shrink(frame: np.ndarray, landmarks: np.ndarray, r: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The photo shrunk so its face has resolution r, by ``method`` ("area" or "bicubic"), and its landmarks."""
    from crres_sdk import resize_bicubic
    from evaluation.open_set import shrink_photo

    small, lm, _ = shrink_photo(frame, landmarks, r)
    if method == "bicubic" and small.shape != frame.shape:
        small = resize_bicubic(np.ascontiguousarray(frame), small.shape[:2])
    elif method != "area":
        raise ValueError(f"method must be 'area' or 'bicubic', got {method!r}")
    return small, lm


def second_crops(variant: str, crops: np.ndarray, load, landmarks: np.ndarray, images: np.ndarray,
                 r: int) -> np.ndarray:
    """uint8 (N, 112, 112, 3) crops of ``images`` at resolution r made the ``variant`` way."""
    import cv2

    from crres_sdk import align_faces_uint8, degrade, estimate_similarity, resize_bicubic

    hr = np.ascontiguousarray(crops[images])
    if variant == "crop_bicubic":
        return degrade(hr, r)
    if variant == "crop_area":
        small = np.stack([cv2.resize(c, (r, r), interpolation=cv2.INTER_AREA) for c in hr])
        return resize_bicubic(small, hr.shape[1:3])
    method = "bicubic" if variant == "photo_bicubic" else "area"
    out = np.empty_like(hr)
    for k, i in enumerate(images.tolist()):
        frame, lm = shrink(load(i), landmarks[i], r, method)
        if variant == "photo_area_keys05":
            out[k] = keys_warp(frame, estimate_similarity(lm), hr.shape[1], -0.5)
        elif variant in DIRECT:
            m = estimate_similarity(lm)
            out[k] = cv2.warpAffine(frame, m, hr.shape[1:3][::-1], flags=getattr(cv2, DIRECT[variant]),
                                    borderMode=cv2.BORDER_REPLICATE)
        else:  # the resolution-matched warp these variants measured, whatever the SDK's default is now
            out[k] = align_faces_uint8(frame, lm[None].astype(np.float64), resample="matched")[0]
    return out


def photo_folder(root: Path) -> tuple[list[Path], np.ndarray, np.ndarray, np.ndarray]:
    """Photos under ``root/<identity>/*.jpg`` with one clear face each: (paths, identity ids, landmarks (N, 5, 2),
    HR aligned crops (N, 112, 112, 3)). Landmarks from the SDK's MTCNN at full resolution (largest face)."""
    import cv2

    from crres_sdk import FaceDetector, align_faces_uint8

    detector = FaceDetector(estimate_resolution=False)
    paths, ids, marks, crops = [], [], [], []
    for k, person in enumerate(sorted(d for d in root.iterdir() if d.is_dir())):
        for path in sorted(person.glob("*.jpg")):
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            found = detector.detect_arrays(frame)
            if len(found.boxes) == 0:
                continue
            j = int(np.argmax((found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])))
            lm = found.landmarks[j].astype(np.float64)
            paths.append(path)
            ids.append(k)
            marks.append(lm)
            crops.append(align_faces_uint8(frame, lm[None])[0])
    return paths, np.asarray(ids), np.stack(marks), np.stack(crops)


def photo_folder_scores(emb_gallery: np.ndarray, emb_probe: np.ndarray, ids: np.ndarray,
                        gallery: np.ndarray) -> dict:
    """Rank-1 (probe vs one HR photo per identity) and the ROC AUC of all probe-vs-gallery pairs."""
    probes = np.setdiff1d(np.arange(len(ids)), gallery)
    sims = emb_probe[probes] @ emb_gallery[gallery].T
    same = ids[probes][:, None] == ids[gallery][None, :]
    rank1 = float(np.mean(same[np.arange(len(probes)), np.argmax(sims, axis=1)]))
    gen, imp = np.sort(sims[same]), sims[~same]
    auc = float(np.mean(np.searchsorted(gen, imp, side="right") / len(gen)))  # P(impostor >= genuine)
    return {"rank1": rank1, "auc": 1.0 - auc, "probes": int(len(probes)), "identities": int(len(gallery))}


def main_photo_folder(args: argparse.Namespace, variants: list[str]) -> int:
    import cv2

    from evaluation.embedder import open_embedder
    from evaluation.verification import l2_normalize

    paths, ids, marks, crops = photo_folder(args.photo_folder)
    embedder = open_embedder(args.model, threads=args.threads)
    emb_hr = l2_normalize(embedder.embed(crops))
    gallery = np.asarray([int(np.flatnonzero(ids == k)[0]) for k in np.unique(ids)])
    images = np.arange(len(paths))

    def load(i: int) -> np.ndarray:
        return cv2.imread(str(paths[i]), cv2.IMREAD_COLOR)

    out: dict = {"photos": len(paths), "per_r": {}}
    for r in (int(v) for v in args.r.split(",")):
        row = {}
        for variant in variants:
            emb = l2_normalize(embedder.embed(second_crops(variant, crops, load, marks, images, r)))
            row[variant] = photo_folder_scores(emb_hr, emb, ids, gallery)
            print(f"r={r:3d} {variant:20s} rank-1 {100 * row[variant]['rank1']:.2f}  AUC {row[variant]['auc']:.4f}",
                  file=sys.stderr, flush=True)
        out["per_r"][str(r)] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shrink_filters_photos.json").write_text(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    import cv2

    from evaluation import datasets, protocols
    from evaluation.embedder import open_embedder
    from evaluation.verification import evaluate_scores, l2_normalize

    p = argparse.ArgumentParser(prog="python -m evaluation.shrink_filters", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lfw", type=Path)
    src.add_argument("--photo-folder", type=Path, help="photos as <folder>/<identity>/*.jpg (e.g. a set disjoint "
                                                      "from LFW to choose on): rank-1 and AUC instead of LFW pairs")
    p.add_argument("--model", required=True, help="bundle folder, checkpoint or ONNX file")
    p.add_argument("--r", default="8,12,16,24", help="comma-separated face sizes")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--limit-pairs", type=int, default=None, help="N pairs of every fold (smoke runs)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        p.error(f"--variants must be a subset of {VARIANTS}")
    if args.photo_folder is not None:
        return main_photo_folder(args, variants)

    ds = datasets.load_lfw(args.lfw)
    if args.limit_pairs:
        ds, _ = datasets.limit_pairs(ds, args.limit_pairs)
    with np.load(ds.info["cache"], allow_pickle=False) as z:
        marks = z["landmarks"].astype(np.float64)
    root = args.lfw / "images" if (args.lfw / "images").is_dir() else args.lfw

    def load(i: int) -> np.ndarray:
        return cv2.imread(str(root / ds.image_names[i]), cv2.IMREAD_COLOR)

    cache = protocols.EmbeddingCache(ds.crops, open_embedder(args.model, threads=args.threads), progress=False)
    first = cache.get(ds.pair_index[:, 0], 112)
    # each second image once, whatever the number of pairs it is in
    images = np.unique(ds.pair_index[:, 1])
    where = np.searchsorted(images, ds.pair_index[:, 1])
    out: dict = {"pairs": int(ds.n_pairs), "images": int(len(images)), "per_r": {}}
    for r in (int(v) for v in args.r.split(",")):
        row: dict = {}
        reference = second_crops("crop_bicubic", ds.crops, load, marks, images, r).astype(np.float64)
        for variant in variants:
            crops = second_crops(variant, ds.crops, load, marks, images, r)
            rms = float(np.sqrt(np.mean((crops - reference) ** 2)))
            emb = l2_normalize(cache.embed_crops(np.ascontiguousarray(crops)))
            scores = np.sum(first * emb[where], axis=1)
            acc = evaluate_scores(scores, ds.issame, ds.folds).to_dict()
            row[variant] = {"accuracy": acc["accuracy"], "std": acc["std"], "rms_vs_crop_bicubic": rms}
            print(f"r={r:3d} {variant:14s} acc {100 * acc['accuracy']:.2f} +- {100 * acc['std']:.2f}  "
                  f"rms vs crop_bicubic {rms:.2f}", file=sys.stderr, flush=True)
        out["per_r"][str(r)] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shrink_filters.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
