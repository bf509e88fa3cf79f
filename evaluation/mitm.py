"""Meet-in-the-middle ablation scoring (Grm et al. 2023, Sec. 4.2, Tables 2-3) for closed-set identification.

``crres_sdk.mitm`` scores one probe against one identity at a time (``fuse``) or with the one fusion a
``MitmMatcher`` is set to. An ablation needs every Table 2 row and every Table 3 fusion for every (probe,
identity) pair, from one set of templates. This module computes them all from

* ``probe``: (S, M, D) L2-normalised probe templates of one probe (SR scale s, blur level m; from
  ``MitmMatcher.probe_templates``) and ``probe_sizes``, the gallery match size of each scale;
* ``bank``: {match size: (I, H, D)} gallery templates of I identities, H hypotheses each (hypothesis 0 is the
  undegraded image, then the degradation chains; ``MitmMatcher.gallery_templates`` of one crop reshaped
  to (sizes, H, D));
* ``hr``: (I, D) gallery templates of the undegraded 112 px crop (for the rows without resolution matching),

as one matrix product per scale. ``tests/training/test_mitm_eval.py`` checks every fusion against
``crres_sdk.mitm.fuse``. Also here: the camera degradation of a synthetic surveillance probe and rank-1 (the
impostor-score threshold at a false-accept rate is ``evaluation.far_threshold``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: The fusions of the "+Multi-scale Accumulation" row of Table 2 and of Table 3 (names of crres_sdk.mitm.FUSIONS).
MULTISCALE_FUSIONS = ("smax_sadd", "s_max", "s_add", "t_add", "t_concat", "probe_t_add+s_add",
                      "probe_t_add+s_max", "gallery_t_add+s_add", "gallery_t_add+s_max")


def _centred_unit(t: np.ndarray) -> np.ndarray:
    """Eq. 3 (correlation) = dot product of templates centred on their own mean and scaled to unit length."""
    z = np.asarray(t, np.float64)
    z = z - z.mean(axis=-1, keepdims=True)
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of one template a (D,) with each row of b (..., D)."""
    return _centred_unit(b) @ _centred_unit(a)


def ablation_scores(probe: np.ndarray, probe_sizes: Sequence[int], scales: Sequence[int],
                    bank: Mapping[int, np.ndarray], hr: np.ndarray, hr_size: int = 112) -> dict[str, np.ndarray]:
    """Scores of one probe against every identity, (I,) per row of Table 2 / fusion of Table 3.

    Rows per SR scale k (Table 2, each builds on the one before; correlation similarity, eq. 3):

    * ``sr_single_x{k}``: the probe super-resolved x k, no blur (sigma 0), against the HR gallery crop;
    * ``sr_multi_x{k}``: S_max over the 16 blur hypotheses (Sec. 3.3), HR gallery crop;
    * ``resmatch_x{k}``: the same against the gallery crop resized to the probe's k x r (Sec. 3.2 end);
    * ``gallerydeg_x{k}``: S_max over blur hypotheses and every gallery hypothesis at k x r (Sec. 3.2, Fig. 4c).

    Multi-scale rows (all scales, all hypotheses): every name of ``MULTISCALE_FUSIONS``, defined as
    ``crres_sdk.mitm.fuse`` defines it (``s_add``: mean over gallery hypotheses, max over blur levels, mean over
    scales; ``smax_sadd``: max over (blur, gallery) per scale, then mean over scales, Sec. 4.2 last paragraph).
    """
    p = np.asarray(probe, np.float64)
    s_count, m_count, d = p.shape
    if len(probe_sizes) != s_count or len(scales) != s_count:
        raise ValueError(f"probe has {s_count} scales but {len(probe_sizes)} sizes and {len(scales)} scale factors")
    zp = _centred_unit(p)                                              # (S, M, D)
    zhr = _centred_unit(hr)                                            # (I, D)
    g = np.stack([np.asarray(bank[int(size)], np.float64) for size in probe_sizes])   # (S, I, H, D)
    zg = _centred_unit(g)
    out: dict[str, np.ndarray] = {}
    per_scale_max, per_scale_add = [], []
    for s, k in enumerate(scales):
        r_hr = zp[s] @ zhr.T                                           # (M, I)
        out[f"sr_single_x{k}"] = r_hr[0]                               # blur level 0 = sigma 0 = the probe itself
        out[f"sr_multi_x{k}"] = r_hr.max(axis=0)
        r = np.einsum("md,ihd->mih", zp[s], zg[s])                     # (M, I, H)
        out[f"resmatch_x{k}"] = r[:, :, 0].max(axis=0)                 # hypothesis 0 = the undegraded gallery crop
        best = r.max(axis=(0, 2))
        out[f"gallerydeg_x{k}"] = best
        per_scale_max.append(best)
        per_scale_add.append(r.mean(axis=2).max(axis=0))               # S_add over gallery, blur rule max
    per_scale_max, per_scale_add = np.stack(per_scale_max), np.stack(per_scale_add)   # (S, I)
    out["smax_sadd"] = per_scale_max.mean(axis=0)
    out["s_max"] = per_scale_max.max(axis=0)
    out["s_add"] = per_scale_add.mean(axis=0)

    # Template fusions (eqs. 4-5) sum the L2-normalised templates as they are, then correlate.
    p_sum = p.reshape(-1, d).sum(axis=0)                               # T_add over every probe hypothesis
    g_sum = g.sum(axis=(0, 2))                                         # (I, D): T_add over scales and hypotheses
    out["t_add"] = _corr_rows(p_sum, g_sum)
    p_cat = p.sum(axis=1).reshape(-1)                                  # eq. 5: per-scale sums, concatenated
    g_cat = g.sum(axis=2).transpose(1, 0, 2).reshape(g.shape[1], -1)   # (I, S*D)
    out["t_concat"] = _corr_rows(p_cat, g_cat)
    r_pt = np.einsum("sihd,d->sih", zg, _centred_unit(p_sum))          # r(T_add(P), G[s, h])
    out["probe_t_add+s_add"] = r_pt.mean(axis=(0, 2))
    out["probe_t_add+s_max"] = r_pt.max(axis=(0, 2))
    r_gt = np.einsum("smd,id->smi", zp, _centred_unit(g_sum))          # r(P[s, m], T_add(G))
    out["gallery_t_add+s_add"] = r_gt.mean(axis=(0, 1))
    out["gallery_t_add+s_max"] = r_gt.max(axis=(0, 1))
    return out


def pair_hypothesis_scores(probe_scale: np.ndarray, bank_scale: np.ndarray) -> np.ndarray:
    """(H, I): for each gallery hypothesis h, S_max over the blur levels and over {undegraded, h} only, i.e. the
    "+gallery degradations" row with one chain at a time (which Table 1 chains help, which win false maxima).
    ``probe_scale``: (M, D) templates of one SR scale; ``bank_scale``: (I, H, D), hypothesis 0 undegraded."""
    r = np.einsum("md,ihd->mih", _centred_unit(probe_scale), _centred_unit(bank_scale))   # (M, I, H)
    best = r.max(axis=0)                                                                    # (I, H)
    return np.maximum(best[:, :1], best).T


def rank1(scores: np.ndarray, true_index: np.ndarray) -> float:
    """Closed-set rank-1: the fraction of probes whose true identity scores strictly highest (ties count as
    misses, so a constant score cannot look good). ``scores``: (probes, identities)."""
    scores = np.asarray(scores)
    true = scores[np.arange(len(scores)), true_index]
    others = scores.copy()
    others[np.arange(len(scores)), true_index] = -np.inf
    return float(np.mean(true > others.max(axis=1)))


def camera_probe(crop: np.ndarray, resolution: int, rng: np.random.Generator, *,
                 blur_sigma: tuple[float, float] = (0.3, 1.0), noise_sigma: tuple[float, float] = (1.0, 4.0),
                 jpeg_quality: tuple[int, int] = (40, 90), out_size: int = 112) -> tuple[np.ndarray, dict]:
    """A synthetic surveillance probe from an aligned HR crop: antialiased bicubic down to ``resolution`` px
    (the project's one definition of resolution), then the camera at that size (``crres_demo.camera.
    camera_effects``: Gaussian optical blur, read + shot noise, JPEG), then bicubic back up to ``out_size`` as
    an aligned crop of a small face is. Blur sigma, noise sigma and JPEG quality are drawn uniformly from the
    given ranges with ``rng``; returns the crop and the drawn settings."""
    from crres_demo.camera import camera_effects
    from crres_sdk.preprocess import resize_bicubic

    settings = {"resolution": int(resolution), "blur_sigma": float(rng.uniform(*blur_sigma)),
                "noise_sigma": float(rng.uniform(*noise_sigma)),
                "jpeg_quality": int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))}
    lr = resize_bicubic(np.ascontiguousarray(crop), (int(resolution), int(resolution)))
    lr = camera_effects(lr, rng, blur_sigma=settings["blur_sigma"], noise_sigma=settings["noise_sigma"],
                        jpeg_quality=settings["jpeg_quality"])
    return resize_bicubic(lr, (out_size, out_size)), settings
