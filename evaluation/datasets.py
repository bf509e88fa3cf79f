"""Verification datasets: LFW View-2 from the raw images + pairs.txt, InsightFace ``.bin`` files, btm-stm sizes.

A :class:`PairDataset` is a set of aligned 112x112 uint8 BGR crops plus pairs ``(i, j, issame, fold)`` that
index into them, so every protocol embeds each (image, resolution) only once.

LFW is aligned once with the SDK (MTCNN ``FaceDetector`` -> 5 landmarks -> ``align_faces_uint8`` to the ArcFace
template, DESIGN §4) and the crops are cached in an ``.npz`` keyed by a hash of the inputs (pairs.txt, every
image's path and bytes, the detector bundle's manifest, the alignment settings). When MTCNN finds no face the
median landmarks of the detected faces are used (LFW deep-funneled images are 250x250 with the face centred)
and the count is recorded.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Bump when the alignment procedure changes, so stale caches are not reused.
ALIGN_VERSION = "crres-lfw-align/1"
#: MTCNN minimum face (px) when aligning LFW: its faces are ~100 px in 250 px images, so smaller hits are noise.
LFW_MIN_FACE = 40


@dataclass
class PairDataset:
    name: str
    crops: np.ndarray                 # (M, 112, 112, 3) uint8 BGR
    pair_index: np.ndarray            # (N, 2) int64 into crops
    issame: np.ndarray                # (N,) bool
    folds: np.ndarray                 # (N,) int
    image_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.crops.dtype != np.uint8 or self.crops.ndim != 4 or self.crops.shape[-1] != 3:
            raise ValueError(f"crops must be uint8 (M, H, W, 3), got {self.crops.dtype} {self.crops.shape}")
        n = len(self.issame)
        if self.pair_index.shape != (n, 2) or self.folds.shape != (n,):
            raise ValueError("pair_index, issame and folds disagree in length")
        if n and (self.pair_index.min() < 0 or self.pair_index.max() >= len(self.crops)):
            raise ValueError("pair_index points outside the crops")

    @property
    def n_pairs(self) -> int:
        return len(self.issame)


def limit_pairs(ds: PairDataset, per_fold: int) -> tuple[PairDataset, np.ndarray]:
    """The first ``ceil(per_fold/2)`` genuine and ``floor(per_fold/2)`` impostor pairs of every fold (pairs.txt
    order), for smoke runs and cheap comparisons. Also returns the kept indices into the full pair list, so
    per-pair protocol files (btm-stm sizes) can be subset alike."""
    keep = np.sort(np.concatenate([
        np.concatenate([np.flatnonzero((ds.folds == k) & ds.issame)[:(per_fold + 1) // 2],
                        np.flatnonzero((ds.folds == k) & ~ds.issame)[:per_fold // 2]])
        for k in np.unique(ds.folds)])).astype(np.int64)
    info = {**ds.info, "limited_to_pairs_per_fold": per_fold}
    return PairDataset(ds.name, ds.crops, ds.pair_index[keep], ds.issame[keep], ds.folds[keep], ds.image_names,
                       info), keep


def exclude_identities(ds: PairDataset, names: set[str]) -> tuple[PairDataset, np.ndarray]:
    """Drop every pair with an image of one of ``names`` (people a model was trained on: LFW must stay held
    out). Image names are ``<person>/<file>``. Returns the subset and the kept indices into the full pair list."""
    people = np.asarray([n.split("/")[0] for n in ds.image_names])
    if len(people) != len(ds.crops):
        raise ValueError("excluding identities needs the dataset's image names (<person>/<file>)")
    hit = np.isin(people, sorted(names))
    keep = np.flatnonzero(~(hit[ds.pair_index[:, 0]] | hit[ds.pair_index[:, 1]])).astype(np.int64)
    info = {**ds.info, "excluded_identities": sorted(set(people[hit])),
            "excluded_pairs": int(ds.n_pairs - len(keep))}
    return PairDataset(ds.name, ds.crops, ds.pair_index[keep], ds.issame[keep], ds.folds[keep], ds.image_names,
                       info), keep


# ---------------------------------------------------------------------------------------------- pairs.txt


@dataclass(frozen=True)
class LfwPair:
    name1: str
    num1: int
    name2: str
    num2: int
    issame: bool
    fold: int


def lfw_image_relpath(name: str, num: int) -> str:
    return f"{name}/{name}_{num:04d}.jpg"


def parse_pairs(path: str | Path) -> list[LfwPair]:
    """LFW View-2 ``pairs.txt``: header ``folds n``, then per fold n matched (``name a b``) then n mismatched
    (``name1 a name2 b``) lines, whitespace separated."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 2:
        raise ValueError(f"{path}: first line must be '<folds> <pairs per half-fold>'")
    try:
        n_folds, per = int(lines[0][0]), int(lines[0][1])
    except ValueError:
        raise ValueError(f"{path}: bad header {' '.join(lines[0])!r}") from None
    body = lines[1:]
    if n_folds < 1 or per < 1 or len(body) != n_folds * 2 * per:
        raise ValueError(f"{path}: header says {n_folds} folds x 2 x {per} pairs, file has {len(body)} lines")
    pairs = []
    for k, fields in enumerate(body):
        fold, matched = k // (2 * per), (k % (2 * per)) < per
        try:
            if matched:
                if len(fields) != 3:
                    raise ValueError
                pairs.append(LfwPair(fields[0], int(fields[1]), fields[0], int(fields[2]), True, fold))
            else:
                if len(fields) != 4:
                    raise ValueError
                pairs.append(LfwPair(fields[0], int(fields[1]), fields[2], int(fields[3]), False, fold))
        except ValueError:
            kind = "matched 'name a b'" if matched else "mismatched 'name1 a name2 b'"
            raise ValueError(f"{path}: line {k + 2} should be a {kind} pair, got {' '.join(fields)!r}") from None
    return pairs


def parse_size_protocol(path: str | Path, n_pairs: int | None = None) -> np.ndarray:
    """A btm-stm protocol csv (Knoche §6.3): one line of 2N comma-separated sizes; pair i uses 2i and 2i+1.

    Returns (N, 2) int64 sizes. Sizes must be integers in [1, 112].
    """
    text = Path(path).read_text().replace("\n", ",")
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{path}: sizes must be comma-separated integers") from None
    if not values or len(values) % 2:
        raise ValueError(f"{path}: need an even, non-zero number of sizes, got {len(values)}")
    sizes = np.asarray(values, dtype=np.int64).reshape(-1, 2)
    if sizes.min() < 1 or sizes.max() > 112:
        raise ValueError(f"{path}: sizes must lie in [1, 112], got {sizes.min()}..{sizes.max()}")
    if n_pairs is not None and len(sizes) != n_pairs:
        raise ValueError(f"{path}: {len(sizes)} size pairs for {n_pairs} image pairs")
    return sizes


#: Knoche §6.3 protocol names (Table 3 columns) -> btm-stm file names. Measured on the shared files: the second
#: sizes of avg_sizes span 5..112, high_res_focus 40..112 (the paper says 41..112), mid_res_focus 11..39
#: (paper: 11..40), low_res_focus 5..10; the first image is always 112.
BTM_STM_PROTOCOLS = {"all_res": "avg_sizes.csv", "high_res": "high_res_focus.csv",
                     "mid_res": "mid_res_focus.csv", "low_res": "low_res_focus.csv"}


# ------------------------------------------------------------------------------------------ LFW alignment


def _pick_face(boxes: np.ndarray, shape: tuple[int, int]) -> int:
    """The detection to keep: large and central (InsightFace's ``area - 2 * offset^2`` rule)."""
    h, w = shape
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 - w / 2, (boxes[:, 1] + boxes[:, 3]) / 2 - h / 2
    return int(np.argmax(area - 2.0 * (cx ** 2 + cy ** 2)))


def aligned_cache_key(root: Path, relpaths: Sequence[str], extra: dict, pairs_file: Path | None = None) -> str:
    """Key of a cache of aligned crops of ``root/relpath`` images: alignment version, settings, list file and
    image contents."""
    digest = hashlib.sha256()
    digest.update(ALIGN_VERSION.encode())
    digest.update(json.dumps(extra, sort_keys=True).encode())
    if pairs_file is not None:
        digest.update(pairs_file.read_bytes())
    for rel in relpaths:  # contents, not mtimes: a copied or re-mounted LFW keeps its cache (~1 s for 100 MB)
        data = (root / rel).read_bytes()
        digest.update(f"{rel}:{len(data)}:{hashlib.sha256(data).hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


def _detector_id(detector) -> str:
    """What the crops depend on besides the images: the MTCNN bundle's manifest hash (or the custom detector)."""
    from crres_sdk.bundle import BundleError
    from crres_sdk.detector import find_detector_bundle

    if detector is not None and getattr(detector, "bundle", None) is None:
        return f"custom:{type(detector).__module__}.{type(detector).__qualname__}"
    try:
        root = detector.bundle.root if detector is not None else find_detector_bundle(None)
    except BundleError:
        raise FileNotFoundError("LFW alignment needs the MTCNN detector bundle (build it with `make setup`)")
    return hashlib.sha256((Path(root) / "manifest.json").read_bytes()).hexdigest()


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "crres" / "eval"


def align_images(paths: Sequence[Path], detector=None, min_face: int = LFW_MIN_FACE, progress: bool = True,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect + align each image: (crops (M,112,112,3) uint8 BGR, landmarks (M,5,2), fell_back (M,) bool)."""
    import cv2
    from crres_sdk import FaceDetector, align_faces_uint8

    from evaluation.progress import Progress

    detector = detector or FaceDetector(min_face=min_face, estimate_resolution=False)
    frames, marks = [], np.full((len(paths), 5, 2), np.nan, np.float32)
    with Progress("detect", len(paths), enabled=progress) as bar:
        for k, path in enumerate(paths):
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise ValueError(f"cannot read image {path}")
            found = detector.detect_arrays(frame)
            if len(found.scores):
                marks[k] = found.landmarks[_pick_face(found.boxes, frame.shape[:2])]
            frames.append(frame)
            bar.update()
    fell_back = np.isnan(marks).any(axis=(1, 2))
    if fell_back.all():
        raise ValueError("no face found in any image: cannot fall back to median landmarks")
    marks[fell_back] = np.median(marks[~fell_back], axis=0)
    # ALIGN_VERSION 1 is the bilinear warp: every LFW figure in docs/results.md was measured on it. The SDK now
    # defaults to the resolution-matched warp, which changes the 3.6 % of LFW faces narrower than the crop.
    crops = np.stack([align_faces_uint8(f, m[None], resample="bilinear")[0] for f, m in zip(frames, marks)])
    return crops, marks, fell_back


def load_lfw(root: str | Path, pairs_file: str | Path | None = None, *, cache_dir: str | Path | None = None,
             min_face: int = LFW_MIN_FACE, detector=None, progress: bool = True) -> PairDataset:
    """LFW View-2 (6,000 pairs, 10 folds) aligned with crres_sdk; crops cached as npz (see module docstring).

    ``root`` holds ``images/<name>/<name>_NNNN.jpg`` (or the person folders directly) and ``pairs.txt``.
    """
    root = Path(root)
    images = root / "images" if (root / "images").is_dir() else root
    pairs_file = Path(pairs_file) if pairs_file else root / "pairs.txt"
    if not pairs_file.is_file():
        raise FileNotFoundError(f"LFW pairs file {pairs_file} not found")
    pairs = parse_pairs(pairs_file)
    relpaths = sorted({lfw_image_relpath(p.name1, p.num1) for p in pairs}
                      | {lfw_image_relpath(p.name2, p.num2) for p in pairs})
    missing = [r for r in relpaths if not (images / r).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} LFW images named in {pairs_file} are missing under {images}, "
                                f"e.g. {missing[0]}")
    extra = {"min_face": min_face, "detector": _detector_id(detector)}
    key = aligned_cache_key(images, relpaths, extra, pairs_file)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_file = cache / f"lfw_aligned_{key}.npz"
    if cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            crops, marks, fell_back = z["crops"], z["landmarks"], z["fell_back"]
            names = [str(n) for n in z["names"]]
        if names != relpaths:
            raise ValueError(f"cache {cache_file} does not match the image list; delete it")
        cached = True
    else:
        crops, marks, fell_back = align_images([images / r for r in relpaths], detector, min_face, progress)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, crops=crops, landmarks=marks, fell_back=fell_back, names=np.asarray(relpaths))
        tmp.replace(cache_file)
        cached = False
    index = {r: k for k, r in enumerate(relpaths)}
    pair_index = np.asarray([(index[lfw_image_relpath(p.name1, p.num1)], index[lfw_image_relpath(p.name2, p.num2)])
                             for p in pairs], dtype=np.int64)
    info = {"source": str(pairs_file), "images": len(relpaths), "cache": str(cache_file), "from_cache": cached,
            "detector_fallbacks": int(fell_back.sum()),
            "fallback_images": [relpaths[i] for i in np.flatnonzero(fell_back)][:50],
            "align": ALIGN_VERSION, "min_face": min_face}
    return PairDataset("lfw", crops, pair_index, np.asarray([p.issame for p in pairs]),
                       np.asarray([p.fold for p in pairs]), relpaths, info)


# --------------------------------------------------------------------------------- InsightFace .bin files


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what InsightFace verification ``.bin`` pickles hold; anything else is refused.

    Allowed globals, each replaced by a checking stand-in (the real callable is never handed to pickle):
    ``_codecs.encode`` (how protocol-2 pickles spell ``bytes``; only ``(str, 'latin1')``), ``numpy.dtype``
    (only the boolean dtype) and ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar`` (only
    numpy bool scalars, the issame flags). No persistent ids, no other module - so a ``.bin`` from the
    internet cannot run code (``__reduce__`` -> ``os.system`` fails at ``find_class``).
    """

    @staticmethod
    def _encode(text, encoding="utf-8", *rest):
        if rest or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError("_codecs.encode is only allowed as (str, 'latin1')")
        return text.encode("latin1")

    @staticmethod
    def _dtype(spec, *args):
        if spec not in ("b1", "?") or any(not isinstance(a, (bool, int)) for a in args):
            raise pickle.UnpicklingError(f"only the boolean numpy dtype is allowed, got {spec!r}")
        return np.dtype(bool)

    @staticmethod
    def _scalar(dtype, data=None):
        if not isinstance(dtype, np.dtype) or dtype != np.dtype(bool):
            raise pickle.UnpicklingError("only numpy bool scalars are allowed")
        if isinstance(data, str):
            data = data.encode("latin1")
        if not isinstance(data, bytes) or len(data) != 1 or data not in (b"\x00", b"\x01"):
            raise pickle.UnpicklingError("bad numpy bool scalar payload")
        return np.bool_(data == b"\x01")

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return self._encode
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and name == "dtype":
            return self._dtype
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return self._scalar
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a .bin file")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in .bin files")


def read_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """(list of encoded image bytes, issame (N,) bool) from an InsightFace verification ``.bin`` (no mxnet)."""
    data = Path(path).read_bytes()
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: not a safe InsightFace .bin file: {exc}") from exc
    except Exception as exc:  # truncated / corrupt
        raise ValueError(f"{path}: corrupt .bin file: {exc}") from exc
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ValueError(f"{path}: expected a (bins, issame_list) pair")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise ValueError(f"{path}: bins must be a list of encoded images (bytes)")
    if not isinstance(issame, (list, tuple)) or not all(isinstance(v, (bool, np.bool_)) or v in (0, 1)
                                                        for v in issame):
        raise ValueError(f"{path}: issame must be a list of booleans")
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: {len(bins)} images for {len(issame)} pairs (need 2 per pair)")
    return [bytes(b) for b in bins], np.asarray([bool(v) for v in issame])


def write_bin(path: str | Path, images_bgr: Sequence[np.ndarray], issame: Sequence[bool], protocol: int = 2) -> None:
    """Write an InsightFace-style ``.bin`` (JPEG bytes, issame) - for tests and for exporting our crops."""
    import cv2

    bins = []
    for img in images_bgr:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise ValueError("JPEG encoding failed")
        bins.append(buf.tobytes())
    with open(path, "wb") as f:
        pickle.dump((bins, [np.bool_(v) for v in issame]), f, protocol=protocol)


def load_bin(path: str | Path, name: str | None = None, n_folds: int = 10) -> PairDataset:
    """A ``.bin`` as a :class:`PairDataset` (crops already aligned; resized to 112 if needed; folds consecutive)."""
    import cv2
    from crres_sdk.preprocess import resize_bicubic

    bins, issame = read_bin(path)
    crops = []
    for k, b in enumerate(bins):
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: image {k} cannot be decoded")
        if img.shape[:2] != (112, 112):
            img = resize_bicubic(img, 112)
        crops.append(img)
    n = len(issame)
    folds = np.repeat(np.arange(n_folds), -(-n // n_folds))[:n]
    return PairDataset(name or Path(path).stem, np.stack(crops), np.arange(2 * n).reshape(n, 2), issame, folds,
                       [f"{k}" for k in range(2 * n)], {"source": str(path), "images": 2 * n})
