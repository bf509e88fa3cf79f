"""evaluation.mitm (the Table 2 / Table 3 ablation scoring of issue 9) agrees with crres_sdk.mitm.fuse,
its rank-1 and synthetic-probe helpers and evaluation.far_threshold do what they say. Random templates
only: fast, no data."""

from __future__ import annotations

import numpy as np
import pytest

from crres_sdk import mitm
from evaluation.far_threshold import threshold_at_far
from evaluation.mitm import (
    MULTISCALE_FUSIONS,
    ablation_scores,
    camera_probe,
    pair_hypothesis_scores,
    rank1,
)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    scales, sizes = (2, 4, 8), (28, 56, 112)
    s, m, i, h, d = 3, 5, 4, 6, 16
    probe = unit(rng.normal(size=(s, m, d)))
    bank = {size: unit(rng.normal(size=(i, h, d))) for size in (28, 40, 56, 112)}
    hr = bank[112][:, 0]
    return probe, sizes, scales, bank, hr, ablation_scores(probe, sizes, scales, bank, hr)


def test_multiscale_rows_equal_sdk_fuse(case):
    probe, sizes, scales, bank, hr, out = case
    assert set(MULTISCALE_FUSIONS) <= set(mitm.FUSIONS)
    for method in MULTISCALE_FUSIONS:
        for ident in range(len(hr)):
            g = np.stack([bank[size][ident] for size in sizes])          # (S, H, D) as MitmMatcher builds it
            assert out[method][ident] == pytest.approx(mitm.fuse(probe, g, method), abs=1e-9), method


def test_per_scale_rows_follow_table2(case):
    probe, sizes, scales, bank, hr, out = case
    for s, k in enumerate(scales):
        for ident in range(len(hr)):
            r_hr = mitm.correlation_similarity(probe[s], hr[ident])           # (M,)
            assert out[f"sr_single_x{k}"][ident] == pytest.approx(r_hr[0])
            assert out[f"sr_multi_x{k}"][ident] == pytest.approx(r_hr.max())
            r = mitm.correlation_similarity(probe[s], bank[sizes[s]][ident])  # (M, H)
            assert out[f"resmatch_x{k}"][ident] == pytest.approx(r[:, 0].max())
            assert out[f"gallerydeg_x{k}"][ident] == pytest.approx(r.max())
    # each step only adds hypotheses to a max: never lower than the step before on the same gallery image
    assert np.all(out["sr_multi_x2"] >= out["sr_single_x2"] - 1e-12)
    assert np.all(out["gallerydeg_x4"] >= out["resmatch_x4"] - 1e-12)


def test_pair_hypothesis_scores(case):
    probe, sizes, scales, bank, hr, out = case
    per = pair_hypothesis_scores(probe[0], bank[sizes[0]])                  # (H, I)
    assert per.shape == (bank[sizes[0]].shape[1], len(hr))
    np.testing.assert_allclose(per[0], out["resmatch_x2"])                 # {undegraded} alone
    np.testing.assert_allclose(per.max(axis=0), out["gallerydeg_x2"])      # the max over all of them
    r = mitm.correlation_similarity(probe[0], bank[sizes[0]][1][[0, 3]])  # identity 1, hypotheses 0 and 3
    assert per[3, 1] == pytest.approx(r.max())


def test_ablation_scores_rejects_mismatched_scales(case):
    probe, sizes, scales, bank, hr, _ = case
    with pytest.raises(ValueError, match="scales"):
        ablation_scores(probe, sizes[:2], scales, bank, hr)


def test_rank1_counts_ties_as_misses():
    scores = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.7]])
    assert rank1(scores, np.array([0, 0, 1])) == pytest.approx(2 / 3)


def test_threshold_at_far():
    imp = np.arange(1000) / 1000.0                       # 0.000 .. 0.999
    t = threshold_at_far(imp, 1e-2)
    assert t["threshold"] == pytest.approx(0.989) and t["accepted"] == 10 and t["estimable"]
    assert threshold_at_far(imp, 1e-3)["accepted"] == 1
    assert not threshold_at_far(imp[:100], 1e-3)["estimable"]
    with pytest.raises(ValueError):
        threshold_at_far(np.array([]), 1e-2)


def test_camera_probe_is_seeded_and_low_resolution():
    rng = np.random.default_rng(0)
    crop = np.ascontiguousarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))
    a, sa = camera_probe(crop, 16, np.random.default_rng([1, 2]))
    b, sb = camera_probe(crop, 16, np.random.default_rng([1, 2]))
    assert a.shape == (112, 112, 3) and a.dtype == np.uint8 and sa == sb
    np.testing.assert_array_equal(a, b)
    assert sa["resolution"] == 16 and 0.3 <= sa["blur_sigma"] <= 1.0 and 40 <= sa["jpeg_quality"] <= 90
    # a 16 px face holds far less detail than the random 112 px crop
    assert np.abs(np.diff(a.astype(float), axis=1)).mean() < 0.3 * np.abs(np.diff(crop.astype(float), axis=1)).mean()


def test_select_layout_from_pairs(tmp_path):
    from training.experiments.mitm_eval import select_layout

    lines = ["1 2", "A 1 2", "B 1 3", "A 1 C 1", "B 2 D 1"]   # 1 fold x 2 matched + 2 mismatched pairs
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    relpaths, rows = select_layout(tmp_path, identities=2, probes_per_identity=1, seed=0)
    assert {r["identity"] for r in rows} == {"A", "B"}                   # C and D have one image each
    gallery = {r["identity"]: r["path"] for r in rows if r["role"] == "gallery"}
    assert gallery == {"A": "A/A_0001.jpg", "B": "B/B_0001.jpg"}
    assert sum(r["role"] == "probe" for r in rows) == 2 and len(relpaths) == 4
    assert select_layout(tmp_path, 2, 1, 0) == (relpaths, rows)           # seeded
    with pytest.raises(SystemExit):
        select_layout(tmp_path, identities=3, probes_per_identity=1, seed=0)


def test_reachable_match_sizes_map_probes_as_the_sdk_grid_does():
    """The experiment's smaller grid is the SDK's, less the sizes a >= 14 px probe never reaches: every SR scale
    of such a probe is matched at the same size as with the SDK's full grid."""
    from training.experiments.mitm_eval import REACHABLE_MATCH_SIZES

    assert REACHABLE_MATCH_SIZES == (28, 40, 56, 80, 112)
    assert set(REACHABLE_MATCH_SIZES) <= set(mitm.DEFAULT_MATCH_SIZES)
    embed = lambda x: np.zeros((len(x), 4), np.float32)  # noqa: E731
    full = mitm.MitmMatcher(embed, chains=[])
    reduced = mitm.MitmMatcher(embed, chains=[], match_sizes=REACHABLE_MATCH_SIZES)
    for r in range(14, 113):
        for k in full.scales:
            assert reduced.size_for(k * r) == full.size_for(k * r), (r, k)
