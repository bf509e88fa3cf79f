"""Cross-resolution verification protocols over a :class:`PairDataset`.

Resolution r means ``F_up,112(F_down,r(I))`` (Knoche §3.3 eq. 1; DESIGN §4), computed by the SDK's C++ core
(``crres_sdk.degrade``, bit-exact with PIL's antialiased bicubic) on the aligned uint8 crops.

* ``fixed`` sweeps (Knoche §3.4, §4.2 Fig. 5): for each r, *cross-resolution* (CR) - one image of each pair at
  r, the other at 112 - evaluated in both orders (I1 degraded / I2 degraded) and the two 10-fold accuracies
  averaged; *equal-resolution* (ER) - both images at r.
* ``btm_stm`` (Knoche §6.3, Table 3): per-pair sizes from the protocol csv (first image 112, second degraded).
* ``lai`` (Lai & Lam 2021 §IV-A, Table I): the first image of each pair is the HR gallery, the second the LR
  query at 8/12/16/20 px (they use 128 px crops; we use our 112 px canonical crop).

Embeddings are cached per (image, resolution), so HR embeddings and the degraded ones are computed once and
shared by every protocol. With ``flip=True`` each embedding is ``e(x) + e(flip(x))`` (InsightFace's TTA).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from crres_sdk.preprocess import TEMPLATE_SIZE
from evaluation.datasets import PairDataset
from evaluation.embedder import Embedder
from evaluation.progress import Progress
from evaluation.verification import evaluate_scores, l2_normalize

LAI_RESOLUTIONS = (8, 12, 16, 20)
#: Resolutions for Knoche Fig. 7-style distance distributions (a subset of the sweep when present).
FIG7_RESOLUTIONS = (5, 7, 14, 28, 56)


class EmbeddingCache:
    """Unit-norm embeddings of ``dataset.crops`` at any resolution, computed lazily once per (image, r)."""

    def __init__(self, crops: np.ndarray, embedder: Embedder, *, flip: bool = False, chunk: int = 256,
                 progress: bool = True, threads: int = 1) -> None:
        self.crops, self.embedder, self.flip = crops, embedder, flip
        self.chunk, self.progress, self.threads = chunk, progress, threads
        self._store: dict[int, dict[int, np.ndarray]] = {}
        self.computed = 0

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Unit-norm embeddings of arbitrary crops with this cache's embedder and flip setting (not cached)."""
        return self._embed(crops)

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        e = self.embedder.embed(crops)
        if self.flip:
            e = e + self.embedder.embed(np.ascontiguousarray(crops[:, :, ::-1]))
        return l2_normalize(e).astype(np.float32)

    def get(self, index: np.ndarray, sizes: np.ndarray | int) -> np.ndarray:
        """Embeddings (len(index), D) of crops ``index`` at ``sizes`` (one per row or one for all)."""
        from crres_sdk import degrade

        index = np.asarray(index, dtype=np.int64).ravel()
        sizes = np.broadcast_to(np.asarray(sizes, dtype=np.int64), index.shape)
        todo: dict[int, list[int]] = {}
        for r in np.unique(sizes):
            have = self._store.setdefault(int(r), {})
            need = sorted({int(i) for i in index[sizes == r]} - have.keys())
            if need:
                todo[int(r)] = need
        total = sum(len(v) for v in todo.values())
        if total:
            with Progress(f"embed {self.embedder.name}", total, enabled=self.progress) as bar:
                for r, need in todo.items():
                    for start in range(0, len(need), self.chunk):
                        ids = need[start:start + self.chunk]
                        crops = self.crops[ids]
                        if r < crops.shape[1]:
                            crops = degrade(np.ascontiguousarray(crops), r, threads=self.threads)
                        for i, e in zip(ids, self._embed(crops)):
                            self._store[r][i] = e
                        self.computed += len(ids)
                        bar.update(len(ids))
        return np.stack([self._store[int(r)][int(i)] for i, r in zip(index, sizes)])


def pair_scores(cache: EmbeddingCache, ds: PairDataset, sizes1, sizes2) -> np.ndarray:
    """Cosine similarity of every pair with image 1 at ``sizes1`` and image 2 at ``sizes2``."""
    a = cache.get(ds.pair_index[:, 0], sizes1)
    b = cache.get(ds.pair_index[:, 1], sizes2)
    return np.sum(a * b, axis=1)


def _summary(scores: np.ndarray, ds: PairDataset, keep_distances: bool) -> dict:
    report = evaluate_scores(scores, ds.issame, ds.folds).to_dict()
    if keep_distances:
        report["_distances"] = (1.0 - scores).astype(np.float32)
    return report


def evaluate_hr(cache: EmbeddingCache, ds: PairDataset, keep_distances: bool = True) -> dict:
    """Both images at 112 px: the standard LFW protocol."""
    return _summary(pair_scores(cache, ds, TEMPLATE_SIZE, TEMPLATE_SIZE), ds, keep_distances)


def evaluate_fixed(cache: EmbeddingCache, ds: PairDataset, resolutions: Iterable[int], modes=("cr", "er"),
                   keep_distances: bool = True) -> dict:
    """Fixed-resolution sweep (Knoche §3.4): ``{"cr": {r: ...}, "er": {r: ...}}``.

    CR accuracy at r is the mean of the two orders' 10-fold accuracies (Knoche §3.4, last paragraph); the
    distance statistics and threshold are averaged over both orders as well.
    """
    out: dict = {m: {} for m in modes}
    for r in resolutions:
        r = int(r)
        if not 1 <= r <= TEMPLATE_SIZE:
            raise ValueError(f"resolution must be in [1, {TEMPLATE_SIZE}], got {r}")
        if "cr" in modes:
            first = _summary(pair_scores(cache, ds, r, TEMPLATE_SIZE), ds, keep_distances)
            second = _summary(pair_scores(cache, ds, TEMPLATE_SIZE, r), ds, keep_distances)
            merged = {"accuracy": (first["accuracy"] + second["accuracy"]) / 2,
                      "std": (first["std"] + second["std"]) / 2,
                      "best_distance_threshold": (first["kfold"]["distance_threshold_mean"]
                                                  + second["kfold"]["distance_threshold_mean"]) / 2,
                      "genuine_distance_mean": (first["genuine_distance_mean"] + second["genuine_distance_mean"]) / 2,
                      "impostor_distance_mean": (first["impostor_distance_mean"]
                                                 + second["impostor_distance_mean"]) / 2,
                      "first_degraded": first, "second_degraded": second}
            if keep_distances:
                merged["_distances"] = np.concatenate([first.pop("_distances"), second.pop("_distances")])
                merged["_issame"] = np.concatenate([ds.issame, ds.issame])
            out["cr"][r] = merged
        if "er" in modes:
            er = _summary(pair_scores(cache, ds, r, r), ds, keep_distances)
            er["best_distance_threshold"] = er["kfold"]["distance_threshold_mean"]
            if keep_distances:
                er["_issame"] = ds.issame
            out["er"][r] = er
    return out


def evaluate_size_protocol(cache: EmbeddingCache, ds: PairDataset, sizes: np.ndarray) -> dict:
    """Per-pair sizes (btm-stm, Knoche §6.3): ``sizes`` (N, 2) gives each pair's two image resolutions."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.shape != (ds.n_pairs, 2):
        raise ValueError(f"need ({ds.n_pairs}, 2) sizes, got {sizes.shape}")
    result = _summary(pair_scores(cache, ds, sizes[:, 0], sizes[:, 1]), ds, keep_distances=False)
    result["size_range"] = [int(sizes[:, 1].min()), int(sizes[:, 1].max())]
    return result


def evaluate_lai(cache: EmbeddingCache, ds: PairDataset, resolutions: Sequence[int] = LAI_RESOLUTIONS) -> dict:
    """Lai & Lam §IV-A: first image HR (gallery), second at r (query) - one order only, unlike Knoche's CR."""
    return {int(r): _summary(pair_scores(cache, ds, TEMPLATE_SIZE, int(r)), ds, keep_distances=False) for r in resolutions}


def strip_private(obj):
    """Drop the ``_``-prefixed numpy payloads (per-pair distances) before writing JSON."""
    if isinstance(obj, dict):
        return {str(k): strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj
