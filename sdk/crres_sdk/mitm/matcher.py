"""``MitmMatcher`` (Fig. 1): the whole method around any ``embed(crops_uint8_bgr) -> (N, D)`` callable. Gallery
templates are made once at enrolment from the degradation chains (:mod:`~crres_sdk.mitm.chains`) at each of
``DEFAULT_MATCH_SIZES``; a probe's hypotheses (:mod:`~crres_sdk.mitm.hypotheses`) are embedded as
:class:`ProbeTemplates` and scored against them with :mod:`~crres_sdk.mitm.fusion`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from crres_sdk.mitm._checks import _check_batch, _check_image
from crres_sdk.mitm.chains import _check_kernel_scaling, apply_chain, enumerate_chains, match_resolution
from crres_sdk.mitm.degradations import DEFAULT_KERNEL_SCALING, DEGRADATIONS, DEGRADATION_NAMES, KERNEL_REFERENCE
from crres_sdk.mitm.fusion import FUSIONS, _REDUCE, _centred_unit, fuse
from crres_sdk.mitm.hypotheses import (
    BLUR_LEVELS, MAX_BLUR_SIGMA, SR_SCALES, SuperResolver, blur_sigmas, probe_hypotheses, probe_lowres,
)
from crres_sdk.policy import MITM_SIZES


# -------------------------------------------------------------------------------------------- the matcher

#: Probe-side sizes (px) gallery templates are precomputed at: k x r for r the probe resolution and k the SR
#: scale is matched to the nearest in log (sizes >= the network input all collapse onto it, Sec. 4.2).
DEFAULT_MATCH_SIZES = MITM_SIZES  # the grid lives with the other resolution rules (crres_sdk.policy)

Embedder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ProbeTemplates:
    """A probe's hypothesis templates: ``templates[s, m]`` for SR scale ``scales[s]`` and blur level m; the
    gallery templates to compare with scale s are those made at ``sizes[s]`` px."""

    resolution: int
    scales: tuple[int, ...]
    sizes: tuple[int, ...]
    templates: np.ndarray      # (S, M, D) float32


class MitmMatcher:
    """Meet-in-the-middle matching around any face embedder.

    Args:
        embed: ``embed(crops)`` with crops uint8 ``(N, input_size, input_size, 3)`` BGR aligned faces, returning
            ``(N, D)`` templates (e.g. ``Recognizer.embed_crops_uint8``).
        sr: ``sr(crops, scale)`` -> uint8 ``(N, h*scale, w*scale, 3)`` (e.g. :class:`OnnxSuperResolver`); None =
            bicubic upsampling.
        scales: SR magnifications of the probe (Sec. 3.4: 2, 4, 8).
        blur_levels / max_sigma: multi-hypothesis SR (Sec. 3.3: 16 levels, sigma 0..1).
        chains: gallery degradation chains; None = all 1463 of ``enumerate_chains(3)``. Each enrolment image
            costs ``(len(chains) + include_original) * len(match_sizes)`` embeddings.
        include_original: also keep the undegraded image as a gallery hypothesis (resolution matching alone).
        match_sizes: probe-side sizes gallery templates are precomputed at (``input_size`` is always added).
        fusion / blur_fusion: see ``FUSIONS`` and ``fuse``.
        seed: chain i of an enrolment image draws its random parameters from ``default_rng([seed, i])``.
        batch_size: crops per ``embed`` call.
        kernel_scaling / kernel_reference: Table 1's blur lengths scaled with the chain's image ("image", read
            at ``kernel_reference`` px) or in pixels at every step ("literal"); see ``apply_chain``.
    """

    def __init__(self, embed: Embedder, sr: SuperResolver | None = None, *, scales: Sequence[int] = SR_SCALES,
                 blur_levels: int = BLUR_LEVELS, max_sigma: float = MAX_BLUR_SIGMA,
                 chains: Iterable[Sequence[str]] | None = None, include_original: bool = True,
                 match_sizes: Sequence[int] = DEFAULT_MATCH_SIZES, fusion: str = "smax_sadd",
                 blur_fusion: str = "max", input_size: int = 112, seed: int = 0, batch_size: int = 128,
                 kernel_scaling: str = DEFAULT_KERNEL_SCALING, kernel_reference: int = KERNEL_REFERENCE) -> None:
        if not callable(embed):
            raise TypeError("embed must be callable: embed(uint8 (N, S, S, 3) crops) -> (N, D)")
        if sr is not None and not callable(sr):
            raise TypeError("sr must be None or callable: sr(uint8 (N, h, w, 3) crops, scale) -> crops")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if blur_fusion not in _REDUCE:
            raise ValueError(f"blur_fusion must be 'max' or 'add', got {blur_fusion!r}")
        for value, what in ((input_size, "input_size"), (batch_size, "batch_size")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be an int >= 1, got {value!r}")
        self.scales = tuple(int(k) for k in scales)
        if not self.scales or any(k < 1 for k in self.scales) or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must be distinct ints >= 1, got {list(scales)}")
        blur_sigmas(blur_levels, max_sigma)  # validates both
        _check_kernel_scaling(kernel_scaling, kernel_reference)
        self.kernel_scaling, self.kernel_reference = kernel_scaling, int(kernel_reference)
        self.blur_levels, self.max_sigma = blur_levels, float(max_sigma)
        self.chains = [tuple(c) for c in (enumerate_chains(3) if chains is None else chains)]
        for c in self.chains:
            if not c or any(name not in DEGRADATIONS for name in c):
                raise ValueError(f"every chain must be a non-empty sequence of {DEGRADATION_NAMES}, got {c!r}")
        if not self.chains and not include_original:
            raise ValueError("no gallery hypotheses: give chains or include_original=True")
        self.include_original = bool(include_original)
        sizes = {int(s) for s in match_sizes if 1 <= int(s) < input_size} | {input_size}
        self.match_sizes = tuple(sorted(sizes))
        self.embed_fn, self.sr = embed, sr
        self.fusion, self.blur_fusion = fusion, blur_fusion
        self.input_size, self.seed, self.batch_size = input_size, int(seed), batch_size
        self._store: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._stacked: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] | None = None

    # --------------------------------------------------------------------------------------- embedding

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, D) float32 templates of uint8 (N, S, S, 3) crops, batched, checked, L2-normalised."""
        crops = _check_batch(crops)
        outs = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            emb = np.asarray(self.embed_fn(chunk), np.float32)
            if emb.ndim != 2 or len(emb) != len(chunk) or emb.shape[1] < 2:
                raise ValueError(f"embed returned shape {emb.shape} for {len(chunk)} crops; expected (N, D)")
            outs.append(emb)
        out = np.concatenate(outs)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if not np.all(np.isfinite(out)) or np.any(norms == 0):
            raise ValueError("embed produced a non-finite or zero template")
        return out / norms

    # ---------------------------------------------------------------------------------------- gallery

    def gallery_hypotheses(self, crop: np.ndarray) -> list[np.ndarray]:
        """The degraded hypotheses of one enrolment crop (eq. 1): the original (when kept), then each chain."""
        crop = _check_image(crop, "crop")
        out = [crop.copy()] if self.include_original else []
        out += [apply_chain(crop, chain, [self.seed, i], kernel_scaling=self.kernel_scaling,
                            kernel_reference=self.kernel_reference) for i, chain in enumerate(self.chains)]
        return out

    def gallery_templates(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Templates of every hypothesis of every crop, resolution-matched to every match size.

        ``crops``: one (H, W, 3) or (N, H, W, 3) uint8 BGR aligned crop(s). Returns ``(templates, sizes)``:
        (K, D) float32 L2-normalised and (K,) int64 px, K = N x hypotheses x len(match_sizes).
        """
        crops = np.asarray(crops)
        crops = _check_batch(crops[None] if crops.ndim == 3 else crops)
        templates, sizes = [], []
        for crop in crops:
            hyps = self.gallery_hypotheses(crop)
            for size in self.match_sizes:
                batch = np.stack([match_resolution(h, size, self.input_size) for h in hyps])
                templates.append(self.embed(batch))
                sizes.append(np.full(len(hyps), size, np.int64))
        return np.concatenate(templates), np.concatenate(sizes)

    # ------------------------------------------------------------------------------------------ probe

    def size_for(self, target: float) -> int:
        """The match size nearest ``target`` px in log (targets >= input_size -> input_size)."""
        if target >= self.input_size:
            return self.input_size
        sizes = np.array(self.match_sizes, np.float64)
        return int(sizes[np.argmin(np.abs(np.log(sizes) - math.log(max(target, 1.0))))])

    def probe_templates(self, crop: np.ndarray, resolution: float) -> ProbeTemplates:
        """Multi-hypothesis, multi-scale templates of an aligned probe crop whose information is ``resolution``
        px (its equivalent/effective resolution): down to r x r, 16 blur levels, SR x each scale, embed."""
        lr = probe_lowres(crop, resolution)
        r = lr.shape[1]
        images = probe_hypotheses(lr, self.sr, self.scales, self.blur_levels, self.max_sigma, self.input_size)
        s, m = images.shape[:2]
        t = self.embed(images.reshape(s * m, *images.shape[2:]))
        return ProbeTemplates(r, self.scales, tuple(self.size_for(k * r) for k in self.scales),
                              t.reshape(s, m, -1))

    # ---------------------------------------------------------------------------------------- scoring

    def _gallery_tensor(self, probe: ProbeTemplates, templates: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """(S, N, D): an identity's templates at each probe scale's match size."""
        groups = [templates[sizes == size] for size in probe.sizes]
        counts = {len(g) for g in groups}
        if 0 in counts or len(counts) != 1:
            missing = [size for size, g in zip(probe.sizes, groups) if not len(g)]
            raise ValueError(f"gallery templates lack match size(s) {missing} px (have {sorted(set(sizes.tolist()))});"
                             " were they made with the same match_sizes?")
        return np.stack(groups)

    def score(self, probe: ProbeTemplates, templates: np.ndarray, sizes: np.ndarray) -> float:
        """The fused similarity of a probe with one identity's gallery templates (from ``gallery_templates``)."""
        templates, sizes = self._check_gallery(templates, sizes, probe)
        return fuse(probe.templates, self._gallery_tensor(probe, templates, sizes), self.fusion, self.blur_fusion)

    def scores(self, probe: ProbeTemplates,
               gallery: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, float]:
        """Fused similarity of a probe with every identity: ``gallery`` maps name -> (templates, sizes); None =
        the identities ``enroll`` stored. Score-level fusions run as one matrix product per scale."""
        if gallery is not None:
            names = list(gallery)
            items = [self._check_gallery(*gallery[n], probe) for n in names]
        else:
            names = list(self._store)
            items = [self._store[n] for n in names]
        if not names:
            return {}
        if items[0][0].shape[1] != probe.templates.shape[2]:
            raise ValueError(f"gallery templates have D={items[0][0].shape[1]}, the probe's have "
                             f"{probe.templates.shape[2]}")
        if self.fusion not in ("smax_sadd", "s_max", "s_add"):
            return {n: fuse(probe.templates, self._gallery_tensor(probe, t, s), self.fusion, self.blur_fusion)
                    for n, (t, s) in zip(names, items)}
        gallery_op, scale_op = {"smax_sadd": ("max", "add"), "s_max": ("max", "max"), "s_add": ("add", "add")}[
            self.fusion]
        blur_op = "max" if self.fusion == "s_max" else self.blur_fusion
        zp = _centred_unit(probe.templates.astype(np.float64))
        per_scale = []
        for s, size in enumerate(probe.sizes):
            zg, offsets = self._stack(size, names, items, gallery is None)
            r = zp[s] @ zg.T                                          # (M, N_total)
            if gallery_op == "max":
                red = np.maximum.reduceat(r, offsets[:-1], axis=1)
            else:
                red = np.add.reduceat(r, offsets[:-1], axis=1) / np.diff(offsets)
            per_scale.append(_REDUCE[blur_op](red, axis=0))          # (identities,)
        fused = _REDUCE[scale_op](np.stack(per_scale), axis=0)
        return {n: float(v) for n, v in zip(names, fused)}

    def _stack(self, size: int, names: list[str], items: list[tuple[np.ndarray, np.ndarray]],
               cached: bool) -> tuple[np.ndarray, np.ndarray]:
        if cached and self._stacked is not None and size in self._stacked:
            zg, offsets, cached_names = self._stacked[size]
            if cached_names == names:
                return zg, offsets
        groups = [t[s == size] for t, s in items]
        if any(len(g) == 0 for g in groups):
            bad = [n for n, g in zip(names, groups) if not len(g)]
            raise ValueError(f"identities {bad} have no gallery templates at match size {size} px")
        zg = _centred_unit(np.concatenate(groups).astype(np.float64))
        offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])])
        if cached:
            if self._stacked is None:
                self._stacked = {}
            self._stacked[size] = (zg, offsets, list(names))
        return zg, offsets

    def _check_gallery(self, templates: np.ndarray, sizes: np.ndarray,
                       probe: ProbeTemplates | None = None) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(templates, np.float32)
        s = np.asarray(sizes).reshape(-1)
        if t.ndim != 2 or len(t) != len(s) or len(t) == 0:
            raise ValueError(f"gallery templates must be (K, D) with K sizes, got {t.shape} and {s.shape}")
        if probe is not None and t.shape[1] != probe.templates.shape[2]:
            raise ValueError(f"gallery templates have D={t.shape[1]}, the probe's have {probe.templates.shape[2]}")
        if s.dtype.kind not in "iuf" or not np.all(np.isfinite(s)):
            raise ValueError("gallery sizes must be finite numbers")
        return t, np.rint(s).astype(np.int64)  # sizes read back as float px (a gallery's resolutions)

    # -------------------------------------------------------------------------------- in-memory gallery

    def enroll(self, name: str, crops: np.ndarray) -> int:
        """Precompute and keep ``name``'s gallery templates (appending to earlier ones); returns their count."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        t, s = self.gallery_templates(crops)
        if name in self._store:
            old_t, old_s = self._store[name]
            if old_t.shape[1] != t.shape[1]:
                raise ValueError(f"embed changed dimension: {old_t.shape[1]} -> {t.shape[1]}")
            t, s = np.concatenate([old_t, t]), np.concatenate([old_s, s])
        elif self._store and next(iter(self._store.values()))[0].shape[1] != t.shape[1]:
            raise ValueError("embed's dimension differs from the enrolled identities'")
        self._store[name] = (t, s)
        self._stacked = None
        return len(t)

    def remove(self, name: str) -> None:
        if name not in self._store:
            raise KeyError(f"no identity {name!r} enrolled")
        del self._store[name]
        self._stacked = None

    @property
    def identities(self) -> list[str]:
        return list(self._store)

    def identify(self, crop: np.ndarray, resolution: float, top_k: int = 1) -> list[tuple[str, float]]:
        """Nearest-neighbour identification (Sec. 3.4): the top-k (name, fused score), best first."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if not self._store:
            return []
        scores = self.scores(self.probe_templates(crop, resolution))
        return sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]
