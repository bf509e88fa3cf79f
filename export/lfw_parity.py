"""INT8 vs FP32 verification accuracy on shared LFW, per btm-stm protocol (Knoche section 6.3).

The LFW View-2 pairs (6,000, 10 folds) with the btm-stm sizes: the first image of every pair at 112 px, the
second degraded to the protocol's size (low 5-10, mid 11-39, high 40-112, all 5-112). The crops are aligned
once with crres_sdk and cached by ``evaluation.datasets.load_lfw`` (``~/.cache/crres/eval``);
embeddings come from ``evaluation.protocols.EmbeddingCache`` - one per model file, each (image,
resolution) embedded once and shared by the four protocols and by the threshold pairs (export/thresholds.py),
in batches of 64 on the chosen backend. The accuracy is 10-fold cross-validated per model (its own thresholds).
Each shipped file's LFW embeddings are also kept on disk (``~/.cache/crres/eval/export_lfw_emb_<key>.npz``, key =
sha256 of the model file(s), backend, normalisation and the aligned-crop cache), so building another target of
the same checkpoint re-embeds nothing for the FP32 model, nor for an INT8 file that comes out byte-identical.
A band fails when INT8 accuracy is more than ``tolerance_pp`` percentage points below FP32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOG = logging.getLogger("crres.export")
#: band -> btm-stm protocol name (evaluation.datasets.BTM_STM_PROTOCOLS keys)
BAND_PROTOCOLS = {"low": "low_res", "mid": "mid_res", "high": "high_res", "all": "all_res"}


@dataclass
class LfwSet:
    ds: Any                                   # evaluation.datasets.PairDataset
    sizes: dict[str, np.ndarray]              # band -> (N, 2) sizes
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def identities(self) -> np.ndarray:
        names = [n.split("/")[0] for n in self.ds.image_names]
        _, labels = np.unique(names, return_inverse=True)
        return labels


def default_root(repo: Path) -> Path | None:
    root = repo.parent / "shared" / "data" / "lfw"
    return root if (root / "pairs.txt").is_file() else None


def _limit(ds, sizes: dict[str, np.ndarray], per_fold: int):
    """``evaluation.datasets.limit_pairs``, with the btm-stm sizes of the kept pairs."""
    from evaluation.datasets import limit_pairs

    sub, keep = limit_pairs(ds, per_fold)
    return sub, {b: s[keep] for b, s in sizes.items()}


def load(root: str | Path, *, pairs_per_fold: int | None = None, progress: bool = True) -> LfwSet:
    """LFW View-2 aligned (cached) + the four btm-stm size files; ``pairs_per_fold`` subsamples (smoke runs)."""
    from evaluation.datasets import BTM_STM_PROTOCOLS, load_lfw, parse_size_protocol

    root = Path(root)
    t0 = time.perf_counter()
    ds = load_lfw(root, progress=progress)
    btm = root / "btm_stm"
    sizes = {}
    for band, proto in BAND_PROTOCOLS.items():
        f = btm / BTM_STM_PROTOCOLS[proto]
        if not f.is_file():
            raise FileNotFoundError(f"btm-stm protocol file {f} is missing")
        sizes[band] = parse_size_protocol(f, ds.n_pairs)
    if pairs_per_fold is not None:
        ds, sizes = _limit(ds, sizes, pairs_per_fold)
    info = {"root": str(root.resolve()), "pairs": int(ds.n_pairs), "images": int(len(ds.crops)),
            "aligned_crops_cache": ds.info.get("cache"), "from_cache": ds.info.get("from_cache"),
            "detector_fallbacks": ds.info.get("detector_fallbacks"), "protocols": {
                b: {"file": BTM_STM_PROTOCOLS[p], "second_image_sizes": [int(s[:, 1].min()), int(s[:, 1].max())]}
                for b, p in BAND_PROTOCOLS.items() for s in [sizes[b]]},
            "load_s": round(time.perf_counter() - t0, 2)}
    LOG.info("LFW: %d pairs over %d aligned images (%s)", ds.n_pairs, len(ds.crops),
             "cached crops" if ds.info.get("from_cache") else "aligned now, cached")
    return LfwSet(ds, sizes, info)


def make_cache(model_path: Path, backend: str, normalisation: dict[str, Any], crops: np.ndarray,
               input_size: int = 112, progress: bool = True, threads: int | None = None):
    from crres_sdk.preprocess import Normalization

    from evaluation.embedder import SessionEmbedder
    from evaluation.protocols import EmbeddingCache

    norm = Normalization(color=normalisation["color"], mean=tuple(normalisation["mean"]),
                         std=tuple(normalisation["std"]))
    embedder = SessionEmbedder(model_path, backend=backend, threads=threads, normalization=norm,
                               input_size=input_size, batch_size=64, name=model_path.name)
    return EmbeddingCache(crops, embedder, chunk=256, progress=progress, threads=2)


STORE_VERSION = "crres-export-lfw-embeddings/1"


def store_path(model_path: Path, backend: str, normalisation: dict[str, Any], lfw: LfwSet) -> Path:
    """Where a model file's LFW embeddings are kept between builds (see the module docstring)."""
    from evaluation.datasets import default_cache_dir

    h = hashlib.sha256(STORE_VERSION.encode())
    h.update(json.dumps([backend, normalisation], sort_keys=True).encode())
    files = [model_path] + ([model_path.with_suffix(".bin")] if model_path.suffix == ".xml" else [])
    for f in files:
        h.update(hashlib.sha256(f.read_bytes()).digest())
    h.update(Path(str(lfw.ds.info.get("cache"))).name.encode())
    return default_cache_dir() / f"export_lfw_emb_{h.hexdigest()[:24]}.npz"


def load_store(cache, path: Path) -> int:
    """Fill an EmbeddingCache from ``path`` (if it exists); returns the number of embeddings loaded."""
    if not path.is_file():
        return 0
    try:
        with np.load(path, allow_pickle=False) as z:
            n = 0
            for key in z.files:
                if key.startswith("i"):
                    r = int(key[1:])
                    idx, emb = z[key], z[f"e{r}"]
                    cache._store.setdefault(r, {}).update(zip(idx.tolist(), emb))
                    n += len(idx)
    except (OSError, ValueError, KeyError) as exc:  # unreadable: recompute
        LOG.warning("ignoring LFW embedding cache %s (%s)", path, exc)
        return 0
    return n


def save_store(cache, path: Path) -> None:
    arrays = {}
    for r, table in cache._store.items():
        if table:
            idx = np.fromiter(table.keys(), np.int64, len(table))
            arrays[f"i{r}"], arrays[f"e{r}"] = idx, np.stack([table[i] for i in idx.tolist()])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def accuracy(cache, lfw: LfwSet) -> dict[str, Any]:
    """Per band: 10-fold accuracy (percent), std, and the seconds spent (embedding included)."""
    from evaluation.protocols import evaluate_size_protocol

    out: dict[str, Any] = {}
    for band, sizes in lfw.sizes.items():
        t0 = time.perf_counter()
        before = cache.computed
        r = evaluate_size_protocol(cache, lfw.ds, sizes)
        out[band] = {"accuracy_pct": round(100.0 * r["accuracy"], 3), "std_pct": round(100.0 * r["std"], 3),
                     "embedded": int(cache.computed - before), "seconds": round(time.perf_counter() - t0, 2)}
    return out


def compare(fp32: dict[str, Any], int8: dict[str, Any], tolerance_pp: float) -> dict[str, Any]:
    bands = {}
    for band, ref in fp32.items():
        got = int8[band]["accuracy_pct"]
        drop = round(ref["accuracy_pct"] - got, 3)
        bands[band] = {"fp32_pct": ref["accuracy_pct"], "int8_pct": got, "drop_pp": drop,
                       "passed": bool(drop <= tolerance_pp)}
    return {"tolerance_pp": tolerance_pp, "bands": bands, "passed": all(b["passed"] for b in bands.values())}


def format_report(label: str, report: dict[str, Any]) -> str:
    lines = [f"LFW btm-stm accuracy {label}: {'PASS' if report['passed'] else 'FAIL'} "
             f"(max drop {report['tolerance_pp']} pp)"]
    for band, b in report["bands"].items():
        lines.append(f"  {band:<4} fp32 {b['fp32_pct']:6.2f}  int8 {b['int8_pct']:6.2f}  drop {b['drop_pp']:+.2f} pp "
                     f"{'ok' if b['passed'] else 'TOO LARGE'}")
    return "\n".join(lines)
