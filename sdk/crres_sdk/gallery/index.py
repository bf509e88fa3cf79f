"""The in-memory search index: one snapshot of the templates grouped by resolution level and identity, the
level each identity is compared at for a probe resolution, S_max / S_add fusion with numpy, the exact FAISS
path for large S_max batches, and the rule by which ``backend="auto"`` picks between them."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from crres_sdk.errors import BackendUnavailableError
from crres_sdk.gallery.records import Match, resolution_level
from crres_sdk.policy import level_preference

#: ``backend="auto"`` uses FAISS for S_max only for batches of at least FAISS_MIN_PROBES probes against a gallery
#: whose largest resolution level holds at least FAISS_MIN_TEMPLATES templates: flat search is memory-bound for
#: both, and FAISS paid only for probe batches on levels this large (benchmarks/bench_gallery.py measures it).
FAISS_MIN_TEMPLATES = 200_000
FAISS_MIN_PROBES = 16
_PROBE_CHUNK_ELEMENTS = 1 << 24  # bound on probes x templates scores held at once (64 MiB of float32)


@dataclass
class _Block:
    """Templates of one resolution level, rows grouped by identity."""

    level: float
    matrix: np.ndarray  # (n, D) float32, C-contiguous
    starts: np.ndarray  # (m,) first row of each identity segment
    counts: np.ndarray  # (m,) rows per segment
    seg_ident: np.ndarray  # (m,) identity index per segment
    row_ident: np.ndarray  # (n,) identity index per row
    row_resolution: np.ndarray  # (n,) px each row's template was made at (its level rounds and caps this)
    faiss_index: Any = None


class _Index:
    """In-memory search structure built from one consistent snapshot of the gallery."""

    def __init__(self, generation: int, names: list[str], ident: np.ndarray, resolutions: np.ndarray,
                 vectors: np.ndarray):
        self.generation = generation
        self.names = names
        self.n_templates = len(ident)
        levels_t = resolution_level(resolutions)
        self.levels, level_idx = np.unique(levels_t, return_inverse=True)
        self.has_level = np.zeros((len(names), len(self.levels)), bool)
        self.has_level[ident, level_idx] = True
        self.level_counts = np.zeros((len(names), len(self.levels)), np.int64)  # templates per identity and level
        np.add.at(self.level_counts, (ident, level_idx), 1)
        self._comparisons: dict[bytes, int] = {}
        self.blocks = [self._block(lv, vectors, ident, resolutions, level_idx == j)
                       for j, lv in enumerate(self.levels)]
        self._all: _Block | None = None  # match="all": built from the level blocks on first use
        self._per_identity: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # built on first use
        self.lock = threading.Lock()

    @staticmethod
    def _block(level: float, vectors: np.ndarray, ident: np.ndarray, resolutions: np.ndarray,
               mask: np.ndarray) -> _Block:
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(ident[rows], kind="stable")]
        row_ident = ident[rows]
        starts = np.flatnonzero(np.r_[True, row_ident[1:] != row_ident[:-1]]) if len(rows) else np.zeros(0, int)
        counts = np.diff(np.r_[starts, len(rows)])
        return _Block(float(level), np.ascontiguousarray(vectors[rows]), starts, counts, row_ident[starts], row_ident,
                      np.asarray(resolutions, np.float64)[rows])

    def all_block(self) -> _Block:
        with self.lock:
            if self._all is None:
                if self.blocks:
                    vectors = np.concatenate([b.matrix for b in self.blocks])
                    ident = np.concatenate([b.row_ident for b in self.blocks])
                    res = np.concatenate([b.row_resolution for b in self.blocks])
                else:
                    vectors, ident, res = np.zeros((0, 1), np.float32), np.zeros(0, np.int64), np.zeros(0)
                self._all = self._block(math.nan, vectors, ident, res, np.ones(len(ident), bool))
            return self._all

    def per_identity(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{name: (templates (n, D), resolutions (n,))} of every identity with templates, as read-only views of
        one stacked copy: for matchers that score an identity's whole template set (meet-in-the-middle)."""
        block = self.all_block()  # takes the lock itself: not held here
        with self.lock:
            if self._per_identity is None:
                matrix, res = block.matrix.view(), block.row_resolution.view()
                matrix.flags.writeable = res.flags.writeable = False  # one copy shared by every caller
                self._per_identity = {
                    self.names[who]: (matrix[start:start + n], res[start:start + n])
                    for who, start, n in zip(block.seg_ident.tolist(), block.starts.tolist(), block.counts.tolist())}
            return self._per_identity

    def max_block_rows(self) -> int:
        return max((len(b.row_ident) for b in self.blocks), default=0)

    def chosen_levels(self, r: float) -> np.ndarray:
        """Per identity, the index of its level nearest ``r`` in log-resolution (ties: the higher level)."""
        order = level_preference(self.levels, r)  # the one rule (crres_sdk.policy)
        return order[np.argmax(self.has_level[:, order], axis=1)]

    def comparisons(self, r: float, fusion: str) -> int:
        """Impostor scores one probe at ``r`` is compared with: every identity's templates at its level nearest r
        (S_max: each template is a score the best of which counts), or one per identity (S_add: one mean)."""
        if not len(self.names) or not len(self.levels):
            return 0
        if fusion == "add":
            return int(np.count_nonzero(self.has_level.any(axis=1)))
        order = level_preference(self.levels, r)
        key = order.tobytes()  # every r with the same preference order has the same count: computed once
        got = self._comparisons.get(key)
        if got is None:
            chosen = order[np.argmax(self.has_level[:, order], axis=1)]
            got = self._comparisons[key] = int(self.level_counts[np.arange(len(self.names)), chosen].sum())
        return got

    def faiss_for(self, block: _Block) -> Any:
        with self.lock:
            if block.faiss_index is None:
                import faiss

                index = faiss.IndexFlatIP(block.matrix.shape[1])
                index.add(block.matrix)
                block.faiss_index = index
            return block.faiss_index

    def search(self, probes: np.ndarray, res: np.ndarray | None, top_k: int, fusion: str,
               backend: str) -> list[list[Match]]:
        n_ident = len(self.names)
        if n_ident == 0:
            return [[] for _ in range(len(probes))]
        if res is None:  # match="all"
            groups = {(): (np.arange(len(probes)), None)}
        else:
            groups: dict[tuple, tuple[list[int], np.ndarray]] = {}
            cache: dict[float, np.ndarray] = {}
            for i, r in enumerate(res.tolist()):
                if r not in cache:
                    cache[r] = self.chosen_levels(r)
                key = cache[r].tobytes()
                if key not in groups:
                    groups[key] = ([], cache[r])
                groups[key][0].append(i)
        results: list[list[Match]] = [[] for _ in range(len(probes))]
        for rows, chosen in groups.values():
            rows = np.asarray(rows)
            if chosen is None:
                parts = [(self.all_block(), None)]
            else:
                parts = [(self.blocks[j], chosen) for j in np.unique(chosen)]
            if backend == "faiss" and fusion == "max":
                cands = self._faiss_candidates(probes[rows], parts, top_k)
                for out_i, cand in zip(rows, cands):
                    cand.sort(key=lambda m: -m.score)
                    results[out_i] = cand[:top_k]
                continue
            scores = np.full((len(rows), n_ident), -np.inf, np.float32)
            level_of = np.zeros(n_ident)
            for block, ch in parts:
                seg = np.arange(len(block.seg_ident)) if ch is None else np.flatnonzero(
                    ch[block.seg_ident] == np.searchsorted(self.levels, block.level))
                if len(seg) == 0:
                    continue
                fused = self._fuse(probes[rows], block, fusion)
                scores[:, block.seg_ident[seg]] = fused[:, seg]
                level_of[block.seg_ident[seg]] = block.level
            k = min(top_k, n_ident)
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_ident else np.tile(np.arange(n_ident),
                                                                                            (len(rows), 1))
            for out_i, cand, s in zip(rows, top, scores):
                cand = cand[np.argsort(-s[cand], kind="stable")]
                results[out_i] = [Match(self.names[c], float(s[c]), float(level_of[c])) for c in cand
                                  if np.isfinite(s[c])]
        return results

    @staticmethod
    def _fuse(probes: np.ndarray, block: _Block, fusion: str) -> np.ndarray:
        n = len(block.row_ident)
        chunk = max(1, _PROBE_CHUNK_ELEMENTS // max(n, 1))
        out = np.empty((len(probes), len(block.starts)), np.float32)
        for a in range(0, len(probes), chunk):
            s = probes[a:a + chunk] @ block.matrix.T
            if fusion == "max":
                out[a:a + chunk] = np.maximum.reduceat(s, block.starts, axis=1)
            else:
                out[a:a + chunk] = np.add.reduceat(s, block.starts, axis=1) / block.counts
        return out

    def _faiss_candidates(self, probes: np.ndarray, parts: list, top_k: int) -> list[list[Match]]:
        """Exact S_max top-k per level with FAISS: the first k distinct eligible identities in template order."""
        cands: list[list[Match]] = [[] for _ in range(len(probes))]
        for block, ch in parts:
            n = len(block.row_ident)
            if n == 0:
                continue
            eligible = None if ch is None else ch == np.searchsorted(self.levels, block.level)
            want = min(top_k, len(block.seg_ident) if eligible is None else int(eligible[block.seg_ident].sum()))
            if want == 0:
                continue
            index = self.faiss_for(block)
            todo = np.arange(len(probes))
            kk = min(n, top_k * int(block.counts.max()))
            while len(todo):
                dist, idx = index.search(probes[todo], kk)
                again = []
                for p, drow, irow in zip(todo, dist, idx):
                    seen: set[int] = set()
                    found = []
                    for d, t in zip(drow.tolist(), irow.tolist()):
                        if t < 0:
                            break
                        who = int(block.row_ident[t])
                        if who in seen or (eligible is not None and not eligible[who]):
                            continue
                        seen.add(who)
                        found.append(Match(self.names[who], float(d), block.level))
                        if len(found) == want:
                            break
                    if len(found) < want and kk < n:
                        again.append(p)
                    else:
                        cands[p].extend(found)
                todo = np.asarray(again, int)
                kk = min(n, kk * 4)
        return cands


def auto_backend(level_rows: int, n_probes: int) -> str:
    """``backend="auto"``'s choice for S_max (FAISS assumed installed): see FAISS_MIN_TEMPLATES."""
    return "faiss" if level_rows >= FAISS_MIN_TEMPLATES and n_probes >= FAISS_MIN_PROBES else "numpy"


def _check_backend(backend: str) -> str:
    if backend not in ("auto", "numpy", "faiss"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'faiss', got {backend!r}")
    if backend == "faiss":
        _import_faiss()
    return backend


def _faiss_available() -> bool:
    try:
        _import_faiss()
    except BackendUnavailableError:
        return False
    return True


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise BackendUnavailableError("the FAISS gallery backend needs faiss-cpu: pip install 'crres[faiss]'") from exc
    return faiss
