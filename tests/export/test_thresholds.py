"""export/thresholds.py: threshold at FAR, cross-resolution pair construction, pooling, the reference reader."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from export import thresholds as th


def _threshold(s, far):
    """(threshold, measured FAR) of the one threshold_at_far export uses."""
    r = th.threshold_at_far(s, far)
    return r["threshold"], r["accepted"] / r["impostors"]


def test_threshold_at_far_picks_the_k_plus_1_th_largest_impostor_score():
    s = np.arange(1000) / 1000.0                      # 0.000 .. 0.999
    t, measured = _threshold(s, 1e-2)        # k = 10 accepted impostors allowed
    assert t == pytest.approx(0.989) and measured == pytest.approx(0.010)
    t, measured = _threshold(s, 1e-4)        # fewer than 1/far impostors: FAR 0 at the maximum
    assert t == pytest.approx(0.999) and measured == 0.0
    with pytest.raises(ValueError, match="far must lie"):
        th.threshold_at_far(s, 0.0)
    with pytest.raises(ValueError, match="impostor scores"):
        th.threshold_at_far(np.array([]), 1e-3)


@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=300), st.floats(1e-4, 0.5))
def test_threshold_is_the_lowest_impostor_score_meeting_the_far(scores, far):
    s = np.asarray(scores)
    t, measured = _threshold(s, far)
    assert measured == np.mean(s > t) and measured <= far + 1e-12
    assert t in s
    # any lower impostor score as threshold would accept too many (or t is already the smallest score)
    lower = s[s < t]
    if lower.size:
        assert np.mean(s > lower.max()) > far


def _source(identities, name="s"):
    ids = np.asarray(identities)
    crops = np.zeros((len(ids), 2, 2, 3), np.uint8)
    idx = np.arange(len(ids))
    return th.PairSource(name, crops, ids, idx, idx, "test")


def test_pair_scores_are_every_cross_pair_minus_self_pairs():
    src = _source([0, 0, 1, 1, 2])
    rng = np.random.default_rng(0)
    table = {r: rng.normal(size=(5, 3)) for r in (7, 112)}

    def embed(source, index, r):
        return table[r][index]

    gen, imp = th.pair_scores(src, embed, 7)
    full = table[112] @ table[7].T
    same = np.equal.outer(src.identities, src.identities)
    assert len(gen) == 4 and len(imp) == 16            # 2 + 2 genuine (no self pairs), 25 - 9 impostors
    assert np.allclose(np.sort(gen), np.sort(full[same & ~np.eye(5, dtype=bool)]))
    assert np.allclose(np.sort(imp), np.sort(full[~same]))


def test_compute_pools_sources_without_cross_source_pairs():
    a, b = _source([0, 1, 2, 3], name="a"), _source([0, 0, 1, 1, 2, 2], name="b")
    rng = np.random.default_rng(1)
    emb = {(n, r): rng.normal(size=(len(s.crops), 8)) for n, s in (("a", a), ("b", b)) for r in (7, 14, 112)}
    emb = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in emb.items()}   # unit norm: cosines

    def embed(source, index, r):
        return emb[(source.name, r)][index]

    out = th.compute([a, b], embed, resolutions=(7, 14), fars=("1e-1",), min_exceedances=1)
    # a: 4x4 - 4 same = 12 impostors, 0 genuine; b: 36 - 12 same-id = 24 impostors, 6 genuine
    assert out["pairs"] == {"genuine": [6, 6], "impostor": [36, 36]}
    for k, r in enumerate((7, 14)):
        imp = np.concatenate([th.pair_scores(s, embed, r)[1] for s in (a, b)])
        gen = th.pair_scores(b, embed, r)[0]
        t = th.threshold_at_far(imp, 0.1)["threshold"]
        assert out["far"]["1e-1"][k] == pytest.approx(t, abs=1e-6)
        assert out["tar"]["1e-1"][k] == pytest.approx(np.mean(gen > t), abs=1e-6)
        assert out["tail"]["fitted"]["1e-1"][k] is False
        # the 1:N table pairs the gallery degraded to the probe's resolution
        imp_m = np.concatenate([th.pair_scores(s, embed, r, "matched")[1] for s in (a, b)])
        assert out["identification"]["far"]["1e-1"][k] == pytest.approx(th.threshold_at_far(imp_m, 0.1)["threshold"], abs=1e-6)


def test_lookup_interpolates_in_log_resolution_and_prefers_the_file_entry():
    block = th.manifest_block({"far": {"1e-3": [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.5]},
                               "tar": {"1e-3": [1.0] * 8}, "pairs": {"genuine": [1] * 8, "impostor": [1] * 8}},
                              {"onnx/int8": {"far": {"1e-3": [0.4] * 8}, "tar": {"1e-3": [1.0] * 8}}}, "test")
    assert block["resolutions"] == [7, 10, 14, 20, 28, 40, 56, 112] and block["metric"] == "cosine"
    assert th.lookup(block, 7) == pytest.approx(0.1) and th.lookup(block, 10) == pytest.approx(0.2)
    assert th.lookup(block, math.sqrt(70)) == pytest.approx(0.15)          # geometric midpoint of 7 and 10
    assert th.lookup(block, 4) == pytest.approx(0.1) and th.lookup(block, 300) == pytest.approx(0.5)  # clamped
    assert th.lookup(block, 9, file="onnx/int8") == pytest.approx(0.4)
    assert th.lookup(block, 7, file="openvino/int8_xml") == pytest.approx(0.1)  # no entry: the FP32 values
    with pytest.raises(KeyError, match="1e-4"):
        th.lookup(block, 7, far="1e-4")
    with pytest.raises(ValueError, match="resolution"):
        th.lookup(block, 0)


def test_pair_source_rejects_bad_input():
    with pytest.raises(ValueError, match="2 identities"):
        _source([0, 0, 0])
    with pytest.raises(ValueError, match="one identity label per crop"):
        th.PairSource("x", np.zeros((3, 2, 2, 3), np.uint8), np.array([0, 1]), [0], [0])
    with pytest.raises(ValueError, match="probes must be non-empty"):
        th.PairSource("x", np.zeros((2, 2, 2, 3), np.uint8), np.array([0, 1]), [0], [])


def test_exponential_tail_fit_recovers_the_scale_and_is_conservative_for_a_gaussian_tail():
    rng = np.random.default_rng(3)
    expo = 0.2 + rng.exponential(0.05, 200_000)
    tail = th.fit_tail(expo)
    assert tail.exceedances == 200 and tail.p_u == pytest.approx(1e-3)
    assert tail.scale == pytest.approx(0.05, rel=0.2)
    assert tail.far(tail.threshold(1e-6)) == pytest.approx(1e-6)
    # Gaussian impostor cosines (sd 0.1): the fitted threshold at 1e-5 / 1e-6 lies above the true quantile
    gauss = rng.normal(0.0, 0.1, 200_000)
    out = th.thresholds_from_scores(gauss)
    assert out["fitted"] == {"1e-2": False, "1e-3": False, "1e-4": False, "1e-5": True, "1e-6": True}
    assert out["far"]["1e-5"] >= 0.1 * 4.2649 and out["far"]["1e-6"] >= 0.1 * 4.7534   # N(0,1) upper quantiles
    assert out["far"]["1e-2"] == pytest.approx(th.threshold_at_far(gauss, 1e-2)["threshold"])
    values = [out["far"][f] for f in th.FARS]
    assert values == sorted(values) and values[-1] <= 1.0


def test_gpd_tail_fit_recovers_a_bounded_tail_and_inverts_its_own_survival_function():
    rng = np.random.default_rng(5)
    # Generalised Pareto excesses with shape -0.3, scale 0.02 (bounded at 0.02 / 0.3 above u) by inversion
    xi, sigma = -0.3, 0.02
    excess = sigma / xi * ((1.0 - rng.random(100_000)) ** (-xi) - 1.0)
    tail = th.fit_tail(np.concatenate([0.5 + excess, rng.uniform(-0.2, 0.49, 99_900_000 // 1000)]),
                       share=0.5, minimum=50, model="gpd")
    assert tail.model == "gpd" and tail.shape == pytest.approx(xi, abs=0.03)
    assert tail.scale == pytest.approx(sigma, rel=0.05)
    for far in (1e-3, 1e-5, 1e-7):
        assert tail.far(tail.threshold(far)) == pytest.approx(far, rel=1e-6)
    assert tail.threshold(1e-12) < tail.u - tail.scale / tail.shape       # never past the tail's end point
    # shape -> 0 is the exponential tail
    assert th.tail_threshold(0.3, 1e-3, 0.05, 1e-9, 1e-6) == pytest.approx(th.tail_threshold(0.3, 1e-3, 0.05, 0.0, 1e-6))
    with pytest.raises(ValueError, match="tail model"):
        th.fit_tail(excess, model="weibull")


def test_tail_backtest_is_calibrated_when_the_tail_model_is_true():
    """Impostor scores whose tail is exactly exponential: the exponential model's out-of-sample observed /
    predicted false accepts is ~1, which is what the backtest of a real bundle is compared against."""
    from export.tail_backtest import backtest

    rng = np.random.default_rng(9)
    n_ids, n = 40, 400_000
    ids = rng.integers(0, n_ids, size=(n, 2))
    ids = ids[ids[:, 0] != ids[:, 1]]
    imp = 0.2 + rng.exponential(0.05, len(ids))
    tables = {"cross": [(np.zeros(1), imp, ids)]}
    report = backtest(tables, n_ids, seed=0)
    ratio = report["exponential"]["summary"]["1e-4"]["ratio"]
    assert 0.7 < ratio < 1.4, ratio


def test_fitted_thresholds_are_capped_at_a_cosine_of_one():
    out = th.thresholds_from_scores(np.linspace(0.5, 0.99, 1000))    # 1000 pairs: 1e-3 and stricter fitted
    assert out["fitted"]["1e-2"] is False and out["fitted"]["1e-3"] is True
    assert max(out["far"].values()) == 1.0


def _block():
    rng = np.random.default_rng(4)
    emb = {r: rng.normal(size=(40, 8)) for r in th.RESOLUTIONS}
    emb = {r: v / np.linalg.norm(v, axis=1, keepdims=True) for r, v in emb.items()}
    src = _source(np.repeat(np.arange(10), 4))
    fp32 = th.compute([src], lambda s, i, r: emb[r][i])
    return th.manifest_block(fp32, {"onnx/int8": fp32}, "test")


def test_manifest_block_carries_the_tail_and_the_1_to_n_table_and_the_sdk_accepts_it():
    from crres_sdk.bundle import _validate_thresholds

    block = _block()
    assert set(block["far"]) == set(th.FARS) and block["tail"]["model"] == "exponential"
    assert set(block["identification"]["far"]) == set(th.FARS)
    assert "identification" in block["by_file"]["onnx/int8"]
    for table in (block, block["identification"]):
        assert all(len(v) == 8 for v in (*table["far"].values(), table["tail"]["u"], table["tail"]["scale"]))
    assert th.lookup(block, 14, "1e-5", identification=True) == block["identification"]["far"]["1e-5"][2]

    def fail(msg):
        raise ValueError(msg)

    _validate_thresholds(block, fail)
    old = {"metric": "cosine", "resolutions": [7, 112], "far": {"1e-3": [0.4, 0.5], "1e-4": [0.5, 0.6]}}
    _validate_thresholds(old, fail)                                   # a bundle of before the tail still loads


@pytest.mark.parametrize("change, text", [
    (lambda b: b["tail"].update(model="gpd"), "tail.model"),
    (lambda b: b["tail"].update(scale=[0.0] * 8), "tail.scale"),
    (lambda b: b["tail"].update(u=[0.1] * 3), "tail.u"),
    (lambda b: b["identification"]["tail"].update(p_u=[2.0] * 8), "identification.tail.p_u"),
    (lambda b: b["identification"]["far"].update({"1e-6": [-0.5] * 8}), "identification.far"),
    (lambda b: b["tail"]["fitted"].update({"1e-7": [True] * 8}), "fitted"),
    (lambda b: b["by_file"]["onnx/int8"]["identification"]["far"].update({"1e-2": [1.0] * 8}), "stricter"),
])
def test_the_sdk_refuses_a_bad_tail_or_1_to_n_table(change, text):
    from crres_sdk.bundle import _validate_thresholds

    block = _block()
    change(block)

    def fail(msg):
        raise ValueError(msg)

    with pytest.raises(ValueError, match=text):
        _validate_thresholds(block, fail)
