"""Rank-k / CMC on constructed cases and the LFW gallery/probe layout builder."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.identification import (
    Layout,
    build_lfw_layout,
    cmc,
    evaluate_layout,
    probe_ranks,
    rank_k,
)


def test_ranks_and_cmc_on_a_constructed_case():
    gallery = np.eye(4)                                  # identities a, b, c, d on the axes
    labels = ["a", "b", "c", "d"]
    probes = np.array([
        [1.0, 0.1, 0.0, 0.0],    # a: rank 1
        [0.9, 0.5, 0.0, 0.0],    # b: a scores higher -> rank 2
        [0.5, 0.4, 0.3, 0.6],    # c: d, a, b higher -> rank 4
        [0.0, 0.0, 0.2, 0.9],    # d: rank 1
    ])
    ranks = probe_ranks(probes, gallery, ["a", "b", "c", "d"], labels)
    assert ranks.tolist() == [1, 2, 4, 1]
    assert cmc(ranks, 4).tolist() == [0.5, 0.75, 0.75, 1.0]
    assert rank_k(ranks, (1, 2)) == {"rank1": 0.5, "rank2": 0.75}


def test_probe_of_unknown_identity_and_duplicate_gallery_are_errors():
    with pytest.raises(ValueError, match="no gallery identity"):
        probe_ranks(np.eye(2), np.eye(2), ["a", "z"], ["a", "b"])
    with pytest.raises(ValueError, match="one template per identity"):
        probe_ranks(np.eye(2), np.eye(2), ["a", "a"], ["a", "a"])


def test_build_lfw_layout_and_evaluate_with_an_oracle_embedder():
    names = ["Ann/Ann_0002.jpg", "Ann/Ann_0001.jpg", "Bob/Bob_0001.jpg", "Cid/Cid_0001.jpg", "Cid/Cid_0002.jpg",
             "Cid/Cid_0003.jpg"]
    crops = np.zeros((6, 112, 112, 3), np.uint8)
    for k, name in enumerate(names):          # the crop's value encodes its identity
        crops[k] = {"Ann": 40, "Bob": 120, "Cid": 200}[name.split("/")[0]]
    layout = build_lfw_layout(crops, names, [8, 112])
    assert [i for i, r in zip(layout.identities, layout.roles) if r == "gallery"] == ["Ann", "Cid"]   # Bob: 1 image
    assert layout.roles.count("probe") == 2 * 3                                                       # 3 probes x 2 r
    assert sorted({r for r in layout.resolutions if r is not None}) == [8, 112]

    def oracle(c):  # one-hot of the identity encoded in the pixels (flat images survive degradation)
        v = c.reshape(len(c), -1).mean(axis=1)
        return np.stack([np.abs(v - 40) < 5, np.abs(v - 200) < 5], axis=1).astype(float) + 1e-3

    out = evaluate_layout(Layout(layout.crops, layout.identities, layout.roles, layout.resolutions), oracle)
    assert out["gallery_size"] == 2 and out["all"]["rank1"] == 1.0
    assert set(out["per_resolution"]) == {"8", "112"}
    assert out["per_resolution"]["8"]["cmc"] == [1.0, 1.0]
