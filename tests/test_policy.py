"""crres_sdk.policy and crres_sdk.matching: the 1:N threshold math, the too-small rule, the typed results.

Model-free: thresholds come from hand-written manifests, probes from a Gallery of synthetic unit vectors and a
stand-in recognizer that holds only what the matchers read.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from crres_sdk import Face, Gallery, ModelKey
from crres_sdk.matching import MatchResult, PlainMatcher, decide
from crres_sdk.policy import (ThresholdPolicy, ThresholdTable, enrolment_levels, nearest_level, pair_far, parse_rate,
                              probe_resolution)

RES = [7, 14, 28, 112]


def _manifest(identification=True, tail=True):
    far = {"1e-2": [0.30, 0.25, 0.20, 0.20], "1e-3": [0.40, 0.35, 0.30, 0.30], "1e-4": [0.50, 0.45, 0.40, 0.40]}
    spec = {"metric": "cosine", "resolutions": RES, "far": far}
    if tail:
        spec["tail"] = {"model": "exponential", "u": [0.3] * 4, "p_u": [1e-2] * 4, "scale": [0.05] * 4}
    if identification:
        spec["identification"] = {"far": {k: [v + 0.1 for v in vals] for k, vals in far.items()},
                                  "tail": {"model": "exponential", "u": [0.4] * 4, "p_u": [1e-2] * 4,
                                           "scale": [0.04] * 4}}
    return {"name": "m", "thresholds": spec}


def test_pair_far_is_the_union_bound_and_close_to_the_independence_formula():
    assert pair_far(0.01, 1) == 0.01 and pair_far(0.01, 400) == pytest.approx(2.5e-5)
    for m in (1, 10, 1000, 10 ** 6):
        indep = 1 - (1 - 0.01) ** (1 / m)
        assert pair_far(0.01, m) <= indep * (1 + 1e-12) and pair_far(0.01, m) >= indep * 0.994
    # union bound: m impostor pairs each accepted with probability pair_far accept a stranger w.p. <= fpir
    rng = np.random.default_rng(0)
    m, fpir = 50, 0.05
    accepted = rng.random((20000, m)) < pair_far(fpir, m)
    assert accepted.any(axis=1).mean() <= fpir + 0.005
    assert pair_far(0.01, 0) == 0.01
    with pytest.raises(ValueError, match="fpir"):
        pair_far(0.0, 3)


def test_table_interpolates_in_log_far_and_extends_along_the_tail():
    t = ThresholdTable.from_spec(RES, _manifest()["thresholds"])
    assert t.fitted_tail and t.rates == (1e-2, 1e-3, 1e-4)
    np.testing.assert_allclose(t.at_rate(1e-3), [0.40, 0.35, 0.30, 0.30])
    np.testing.assert_allclose(t.at_rate(10 ** -2.5), [0.35, 0.30, 0.25, 0.25])      # halfway in log FAR
    np.testing.assert_allclose(t.at_rate(0.5), [0.30, 0.25, 0.20, 0.20])             # looser: never below loosest
    np.testing.assert_allclose(t.at_rate(1e-6), np.array([0.50, 0.45, 0.40, 0.40]) + 0.05 * math.log(100))
    assert t.at_rate(1e-300).max() == 1.0                                             # capped at a cosine of 1
    # across resolutions: linear in log r, clamped
    assert t.threshold(math.sqrt(7 * 14), 1e-3) == pytest.approx(0.375)
    assert t.threshold(3, 1e-3) == pytest.approx(0.40) and t.threshold(500, 1e-3) == pytest.approx(0.30)


def test_a_bundle_without_a_tail_extrapolates_with_its_last_two_rates():
    m = _manifest(identification=False, tail=False)
    t = ThresholdTable.from_spec(RES, m["thresholds"])
    assert not t.fitted_tail
    # 0.1 per decade between 1e-3 and 1e-4: 1e-6 is two decades further
    np.testing.assert_allclose(t.at_rate(1e-6), [0.70, 0.65, 0.60, 0.60])
    one = {"far": {"1e-3": [0.4] * 4}}
    np.testing.assert_allclose(ThresholdTable.from_spec(RES, one).at_rate(1e-9), [0.4] * 4)


def test_policy_uses_the_1_to_n_table_for_identification_and_the_1_to_1_table_for_verify():
    p = ThresholdPolicy.from_manifest(_manifest(), "onnx/fp32")
    assert p.identification_calibrated and p.min_resolution == 7
    t, f = p.identify_threshold(112, 0.01, 10)                     # per-pair 1e-3: the 1:N table's 0.40
    assert f == pytest.approx(1e-3) and t == pytest.approx(0.40)
    assert float(p.verify_threshold(112, 1e-3)) == pytest.approx(0.30)
    # a bigger gallery raises the threshold: 1000 templates -> 1e-5, one decade along the 1:N tail
    t2, f2 = p.identify_threshold(112, 0.01, 1000)
    assert f2 == pytest.approx(1e-5) and t2 == pytest.approx(0.50 + 0.04 * math.log(10))
    old = ThresholdPolicy.from_manifest(_manifest(identification=False), None)
    assert not old.identification_calibrated
    assert old.identify_threshold(112, 0.01, 10)[0] == pytest.approx(0.30)   # falls back to the 1:1 table
    assert p.too_small(6.9) and not p.too_small(7.0)
    assert ThresholdPolicy.from_manifest({"name": "m"}, None) is None
    by_file = _manifest()
    by_file["thresholds"]["by_file"] = {"onnx/int8": {"far": {"1e-3": [0.9] * 4}}}
    q = ThresholdPolicy.from_manifest(by_file, "onnx/int8")
    assert float(q.verify_threshold(30, 1e-3)) == pytest.approx(0.9) and not q.identification_calibrated


def test_auto_pairing_takes_the_table_with_the_higher_held_out_tar(gallery):
    m = _manifest()
    m["thresholds"]["tar"] = {"1e-3": [0.01, 0.20, 0.60, 0.90]}                    # HR vs r
    m["thresholds"]["identification"]["tar"] = {"1e-3": [0.05, 0.10, 0.50, 0.90]}  # r vs r
    p = ThresholdPolicy.from_manifest(m, None)
    assert [p.hr_pairing(r) for r in (7, 8, 14, 28, 112)] == [False, False, True, True, False]
    assert p.hr_pairing(7, "hr") and not p.hr_pairing(28, "matched")
    with pytest.raises(ValueError, match="pairing"):
        p.hr_pairing(28, "best")
    # the threshold follows the pairing: the 1:1 table for HR templates, the 1:N table for matched ones
    assert p.identify_threshold(112, 0.01, 10, hr=True)[0] == pytest.approx(0.30)
    assert p.identify_threshold(112, 0.01, 10)[0] == pytest.approx(0.40)
    # without both TAR tables (older bundles) nothing changes: matched
    assert not ThresholdPolicy.from_manifest(_manifest(), None).hr_pairing(28)
    # the matcher searches each identity's best template for an HR-paired probe
    rng = np.random.default_rng(4)
    hr_vec, low_vec = _unit(rng, 2)
    gallery.enroll("a", np.stack([hr_vec, low_vec]), [80, 14])
    rec = _Rec(gallery)
    rec.policy = p
    res = PlainMatcher(rec).match_embeddings(np.stack([hr_vec, hr_vec]), [14.0, 8.0])
    assert [r.pairing for r in res] == ["hr", "matched"]
    assert res[0].candidates[0].template_resolution == 80 and res[0].score == pytest.approx(1.0, abs=1e-6)
    assert res[1].candidates[0].template_resolution == 14
    assert res[0].threshold == pytest.approx(p.identify_threshold(14, 0.01, 1, hr=True)[0])


def test_resolution_rules():
    assert probe_resolution(80.0, 30.0) == 30.0 and probe_resolution(20.0, 30.0) == 20.0
    assert probe_resolution(300.0) == 112.0 and probe_resolution(0.2) == 1.0 and probe_resolution(math.nan) == 1.0
    assert enrolment_levels(30.0, (7, 10, 14, 20, 28, 40, 56)) == [7, 10, 14, 20, 28]
    assert enrolment_levels(28.4, (7, 28)) == [7]                       # within 0.5 px: the face's own template
    assert nearest_level([7, 14, 28, 112], 10) == 14 and nearest_level([7, 14, 28, 112], math.sqrt(98)) == 14
    assert nearest_level([7, 14, 28, 112], 50) == 28 and nearest_level([7, 14, 28, 112], 1) == 7
    assert parse_rate("1e-3", "far") == 1e-3
    for bad in (0, 1, "x", True, -0.1):
        with pytest.raises(ValueError):
            parse_rate(bad, "fpir")


def test_decide():
    from crres_sdk.gallery import Match

    c = [Match("a", 0.6, 112.0)]
    assert decide(c, 50, 0.5, has_gallery=True, too_small=False) == "match"
    assert decide(c, 50, 0.6, has_gallery=True, too_small=False) == "unknown"      # accept only when score > t
    assert decide(c, 5, 0.1, has_gallery=True, too_small=True) == "too-small"
    assert decide([], 50, 0.1, has_gallery=False, too_small=False) == "no-gallery"
    assert decide(c, 50, None, has_gallery=True, too_small=False) == "unknown"
    assert decide(c, 50, None, has_gallery=True, too_small=False, ranked=True) == "ranked"


class _Rec:
    """What PlainMatcher reads of a Recognizer."""

    def __init__(self, gallery, fpir=0.01, fusion="max"):
        self.gallery, self.fpir, self.fusion, self.far_rate = gallery, fpir, fusion, 1e-3
        self.embedding_dim = 8
        self.pairing = "auto"
        self.policy = ThresholdPolicy.from_manifest(_manifest(), None)


def _unit(rng, n, d=8):
    v = rng.normal(size=(n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def gallery(tmp_path):
    g = Gallery(tmp_path / "g.db", ModelKey("m", "1", 8))
    yield g
    g.close()


def test_plain_matcher_threshold_follows_the_gallery_size_and_photos(gallery):
    rng = np.random.default_rng(1)
    rec = _Rec(gallery)
    m = PlainMatcher(rec)
    people = {}
    for i in range(10):  # 10 identities, 2 photos each: HR template + a 14 px one per photo
        v = _unit(rng, 4)
        people[f"p{i}"] = v
        gallery.enroll(f"p{i}", v, [112, 14, 112, 14], source_hashes=[f"{i:02d}a" * 16] * 2 + [f"{i:02d}b" * 16] * 2)
    assert gallery.comparisons(112) == 20 and gallery.comparisons(14) == 20 and gallery.comparisons(112, "add") == 10
    t, f, n = m.threshold(112)
    assert n == 20 and f == pytest.approx(0.01 / 20)
    assert t == pytest.approx(ThresholdPolicy.from_manifest(_manifest(), None).identify_threshold(112, 0.01, 20)[0])
    res = m.match_embeddings(people["p3"][:1], [112.0], top_k=3)
    assert isinstance(res[0], MatchResult) and res[0].decision == "match" and res[0].identity == "p3"
    assert res[0].comparisons == 20 and res[0].per_pair_far == pytest.approx(5e-4) and res[0].fpir == 0.01
    cands, thr, decision = res[0]                                     # the legacy triple
    assert decision == "match" and thr == res[0].threshold and cands[0].identity == "p3"
    # a probe below the lowest calibrated resolution: ranked, never named
    small = m.match_embeddings(people["p3"][1:2], [5.0], top_k=3)[0]     # compared at the 14 px level
    assert small.decision == "too-small" and small.identity is None and small.candidates[0].identity == "p3"
    # fpir=None: the old per-pair rule
    rec.fpir = None
    assert m.threshold(112)[0] == pytest.approx(0.30) and m.match_embeddings(people["p3"][:1], [112.0])[0].fpir is None
    # a stranger orthogonal to everyone is unknown
    rec.fpir = 0.01
    stranger = np.zeros((1, 8), np.float32)
    stranger[0, 0] = 1
    q = m.match_embeddings(stranger, [112.0])[0]
    assert q.decision in ("unknown", "match") and (q.decision == "match") == (q.score > q.threshold)


def test_match_result_apply_fills_the_face():
    from crres_sdk.gallery import Match

    face = Face(box=np.zeros(4, np.float32), score=1.0, landmarks=np.zeros((5, 2), np.float32),
                equivalent_resolution=40.0)
    r = MatchResult([Match("a", 0.7, 40.0)], 0.5, "match", 40.0, "plain", 1e-3, 10, 0.01)
    r.apply(face)
    assert face.identity == "a" and face.match_score == 0.7 and face.decision == "match" and face.match is r
    assert face.extra["threshold"] == 0.5 and face.extra["probe_resolution"] == 40.0
    unk = MatchResult([Match("a", 0.4, 40.0)], 0.5, "unknown", 40.0)
    assert unk.identity is None and unk.score == 0.4


def test_remove_one_photo_of_an_identity(gallery):
    rng = np.random.default_rng(2)
    a, b = "a" * 64, "b" * 64
    gallery.enroll("alice", _unit(rng, 3), [112, 14, 7], source_hashes=[a] * 3)
    gallery.enroll("alice", _unit(rng, 2), [80, 14], source_hashes=[b] * 2)
    photos = gallery.photos("alice")
    assert [(p.source_hash, p.n_templates, p.resolution) for p in photos] == [(a, 3, 112.0), (b, 2, 80.0)]
    with pytest.raises(ValueError, match="8 hex"):
        gallery.remove_photo("alice", "abc")
    with pytest.raises(Exception, match="no photo"):
        gallery.remove_photo("alice", "c" * 10)
    assert gallery.remove_photo("alice", "a" * 8) == 3
    assert [p.source_hash for p in gallery.photos("alice")] == [b] and gallery.n_templates == 2
    with pytest.raises(Exception, match="only photo"):
        gallery.remove_photo("alice", b)
    assert gallery.check() == []
    log = gallery.audit_log()[-1]
    assert log.action == "remove-photo" and log.identity == "alice" and log.count == 3 and log.detail == a
    assert gallery.search(_unit(rng, 1), [112.0], top_k=1)[0][0].identity == "alice"


def test_every_grid_and_the_level_choice_come_from_the_policy_module(gallery):
    from crres_sdk import mitm, policy, preprocess, recognizer
    from crres_sdk.gallery import resolution_level

    assert recognizer.DEFAULT_GALLERY_RESOLUTIONS is policy.GALLERY_LEVELS
    assert mitm.DEFAULT_MATCH_SIZES is policy.MITM_SIZES and policy.TEMPLATE_SIZE is preprocess.TEMPLATE_SIZE == 112
    assert resolution_level([150.0, 13.6]).tolist() == policy.template_level([150.0, 13.6]).tolist()
    rng = np.random.default_rng(5)
    levels = [7, 14, 28, 112]
    gallery.enroll("a", _unit(rng, 4), levels)
    for r in (1, 7, 9.9, 10, 20, 39.6, 56, 60, 112):
        found = gallery.search(_unit(rng, 1), [float(r)], top_k=1)[0][0].template_resolution
        assert found == nearest_level(levels, r), r

