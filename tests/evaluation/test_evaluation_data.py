"""pairs.txt and btm-stm parsing, the InsightFace .bin reader (round trip and malicious-pickle refusal)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluation.datasets import (
    BTM_STM_PROTOCOLS,
    load_bin,
    parse_pairs,
    parse_size_protocol,
    read_bin,
    write_bin,
)

SHARED_LFW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "lfw"

PAIRS = """2\t2
Ann\t1\t2
Bob\t3\t4
Ann\t1\tBob\t2
Cid\t1\tDee\t11
Cid\t1\t3
Dee\t2\t11
Bob\t1\tCid\t2
Eve\t1\tAnn\t2
"""


def test_parse_pairs_folds_and_order(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS)
    pairs = parse_pairs(path)
    assert len(pairs) == 8
    assert [p.fold for p in pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.issame for p in pairs] == [True, True, False, False] * 2
    assert (pairs[3].name1, pairs[3].num1, pairs[3].name2, pairs[3].num2) == ("Cid", 1, "Dee", 11)
    assert (pairs[5].name1, pairs[5].num1, pairs[5].name2, pairs[5].num2) == ("Dee", 2, "Dee", 11)


@pytest.mark.parametrize("bad", [
    PAIRS.replace("2\t2\n", "2\t3\n", 1),                # header disagrees with the line count
    PAIRS.replace("Ann\t1\t2", "Ann\t1\tX\t2", 1),       # mismatched-pair line where a matched one belongs
    PAIRS.replace("Bob\t3\t4", "Bob\tx\t4", 1),          # non-integer image number
    "",
])
def test_parse_pairs_rejects_malformed_files(tmp_path, bad):
    path = tmp_path / "pairs.txt"
    path.write_text(bad)
    with pytest.raises(ValueError):
        parse_pairs(path)


def test_parse_size_protocol(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("112,7,112,56,112,112\n")
    assert parse_size_protocol(path).tolist() == [[112, 7], [112, 56], [112, 112]]
    with pytest.raises(ValueError, match="3 size pairs for 4"):
        parse_size_protocol(path, n_pairs=4)
    for bad in ("112,7,112", "112,0", "112,113", "112,a"):
        path.write_text(bad)
        with pytest.raises(ValueError):
            parse_size_protocol(path)


@pytest.mark.skipif(not (SHARED_LFW / "btm_stm").is_dir(), reason="needs ../shared LFW btm_stm files")
def test_shared_btm_stm_files_match_the_paper_ranges():
    ranges = {"all_res": (5, 112), "high_res": (40, 112), "mid_res": (11, 39), "low_res": (5, 10)}
    for name, fname in BTM_STM_PROTOCOLS.items():
        sizes = parse_size_protocol(SHARED_LFW / "btm_stm" / fname, 6000)
        assert (sizes[:, 0] == 112).all()
        assert (sizes[:, 1].min(), sizes[:, 1].max()) == ranges[name]


def _images(n, seed=0):
    # Smooth images (JPEG keeps them close; random noise would not survive chroma subsampling).
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:112, 0:112] / 112.0
    out = []
    for _ in range(n):
        f = rng.uniform(1, 3, 3)
        img = np.stack([np.sin(2 * np.pi * (f[c] * xx + yy * c)) for c in range(3)], -1)
        out.append(((img + 1) * 127.5).astype(np.uint8))
    return out


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_round_trip(tmp_path, protocol):
    imgs = _images(6)
    issame = [True, False, True]
    path = tmp_path / "tiny.bin"
    write_bin(path, imgs, issame, protocol=protocol)
    bins, flags = read_bin(path)
    assert len(bins) == 6 and flags.tolist() == issame
    ds = load_bin(path, n_folds=3)
    assert ds.crops.shape == (6, 112, 112, 3) and ds.pair_index.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert ds.folds.tolist() == [0, 1, 2]
    # JPEG at quality 95: close to the originals, not equal.
    assert np.abs(ds.crops[0].astype(int) - imgs[0]).mean() < 4


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_reader_refuses_code_execution(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([b"x", b"y"], [_Evil(marker)]), protocol=protocol))
    # The plain unpickler would run it (proves the payload is real) ...
    pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    # ... ours refuses at find_class, before anything runs.
    with pytest.raises(ValueError, match="refusing to load global"):
        read_bin(path)
    assert not marker.exists()


def test_bin_reader_restricts_the_allowed_globals(tmp_path):
    path = tmp_path / "bad.bin"
    # _codecs.encode with an encoding other than latin1 is refused.
    import _codecs

    class Enc:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "utf-8"))

    path.write_bytes(pickle.dumps(([Enc(), b"y"], [True]), protocol=2))
    with pytest.raises(ValueError, match="latin1"):
        read_bin(path)
    # numpy arrays (numpy.core.multiarray._reconstruct) are not what .bin files hold.
    path.write_bytes(pickle.dumps(([np.zeros(3), b"y"], [True]), protocol=2))
    with pytest.raises(ValueError, match="refusing"):
        read_bin(path)
    # Structure is checked too.
    path.write_bytes(pickle.dumps(([b"x"], [True]), protocol=2))
    with pytest.raises(ValueError, match="2 per pair"):
        read_bin(path)
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError):
        read_bin(path)


class _StubDetector:
    """Finds a face (fixed landmarks shifted by the image's mean colour) except in images that are all black."""

    bundle = None

    def __init__(self):
        self.calls = 0

    def detect_arrays(self, frame):
        from crres_sdk.detector import Detections
        from crres_sdk.preprocess import ARCFACE_TEMPLATE

        self.calls += 1
        if frame.max() == 0:
            return Detections.empty()
        shift = float(frame.mean()) / 10.0
        marks = (np.asarray(ARCFACE_TEMPLATE, np.float32) * 2.0 + 10.0 + shift)[None]
        return Detections(np.array([[0, 0, 250, 250]], np.float32), np.array([0.99], np.float32), marks)


def test_load_lfw_aligns_falls_back_to_median_landmarks_and_caches(tmp_path):
    import cv2

    from evaluation.datasets import load_lfw

    root = tmp_path / "lfw"
    people = {"Ann": 3, "Bob": 2, "Cid": 1}
    for person, n in people.items():
        (root / "images" / person).mkdir(parents=True)
        for k in range(1, n + 1):
            value = 0 if (person, k) == ("Bob", 2) else 40 * k + len(person)
            cv2.imwrite(str(root / "images" / person / f"{person}_{k:04d}.jpg"),
                        np.full((250, 250, 3), value, np.uint8))
    (root / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t1\tCid\t1\nBob\t1\t2\nBob\t2\tAnn\t3\n")
    det = _StubDetector()
    ds = load_lfw(root, cache_dir=tmp_path / "cache", detector=det, progress=False)
    assert det.calls == 6 and ds.crops.shape == (6, 112, 112, 3)
    assert ds.info["detector_fallbacks"] == 1 and ds.info["fallback_images"] == ["Bob/Bob_0002.jpg"]
    assert ds.issame.tolist() == [True, False, True, False] and ds.folds.tolist() == [0, 0, 1, 1]
    names = [ds.image_names[i] for i in ds.pair_index[3]]
    assert names == ["Bob/Bob_0002.jpg", "Ann/Ann_0003.jpg"]
    # Second load: from the cache, no detection, identical crops.
    again = load_lfw(root, cache_dir=tmp_path / "cache", detector=det, progress=False)
    assert det.calls == 6 and again.info["from_cache"] and np.array_equal(again.crops, ds.crops)
    # The key is the images' contents, not their times: a fresh copy (new mtimes) is still a cache hit.
    copy = shutil.copytree(root, tmp_path / "lfw_copy", copy_function=shutil.copyfile)
    os.utime(copy / "images" / "Ann" / "Ann_0001.jpg", (1e9, 1e9))
    assert load_lfw(copy, cache_dir=tmp_path / "cache", detector=det, progress=False).info["from_cache"]
    assert det.calls == 6
    # Changing an image changes the key: detection runs again.
    cv2.imwrite(str(root / "images" / "Cid" / "Cid_0001.jpg"), np.full((250, 250, 3), 7, np.uint8))
    load_lfw(root, cache_dir=tmp_path / "cache", detector=det, progress=False)
    assert det.calls == 12


def test_exclude_identities_drops_every_pair_showing_a_trained_person():
    from evaluation.datasets import PairDataset, exclude_identities

    crops = np.zeros((5, 8, 8, 3), np.uint8)
    names = ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg", "Cy/Cy_0001.jpg", "Cy/Cy_0002.jpg"]
    pairs = np.array([[0, 1], [3, 4], [0, 2], [2, 3], [1, 3]])
    ds = PairDataset("t", crops, pairs, np.array([1, 1, 0, 0, 0], bool), np.arange(5), names)
    kept, index = exclude_identities(ds, {"Bob", "Nobody"})
    assert index.tolist() == [0, 1, 4]              # the two pairs with a Bob image are gone, order kept
    assert kept.info["excluded_identities"] == ["Bob"] and kept.info["excluded_pairs"] == 2
    assert kept.issame.tolist() == [True, True, False]
    assert exclude_identities(ds, set())[1].tolist() == [0, 1, 2, 3, 4]
