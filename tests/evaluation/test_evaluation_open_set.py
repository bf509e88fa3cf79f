"""evaluation/open_set.py on tiny synthetic data: the split, the photo shrinking, the figures, a whole run
through a real Gallery and the SDK's PlainMatcher/threshold policy (the embedder is a stand-in: no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crres_sdk import Face, Gallery, ModelKey, Normalization
from crres_sdk.matching import PlainMatcher
from crres_sdk.policy import ThresholdPolicy, face_resolution
from crres_sdk.preprocess import ARCFACE_TEMPLATE, equivalent_resolution

from evaluation import open_set as os_


def test_split_enrols_half_of_the_multi_photo_people_once_and_keeps_probes_apart():
    ids = ["a"] * 3 + ["b"] * 2 + ["c"] * 2 + ["d"] * 4 + ["e", "f", "g"]
    s = os_.build_split(ids, seed=1)
    ids = np.asarray(ids)
    enrolled = set(ids[s.gallery])
    assert len(s.gallery) == len(enrolled) == 2 and enrolled <= {"a", "b", "c", "d"}
    assert set(ids[s.known]) <= enrolled and not set(s.known) & set(s.gallery)
    assert len(s.known) == sum(np.sum(ids == e) - 1 for e in enrolled)
    assert not set(ids[s.unknown]) & enrolled and {"e", "f", "g"} <= set(ids[s.unknown])
    assert len(s.gallery) + len(s.known) + len(s.unknown) == len(ids)
    assert s.describe()["unknown_identities"] == 5
    small = os_.build_split(list(ids), seed=1, max_known=1, max_unknown=2, max_enrolled=1)
    assert len(small.gallery) == 1 and len(small.known) == 1 and len(small.unknown) == 2
    with pytest.raises(ValueError, match="at least 2"):
        os_.build_split(["a", "a", "b"])


def _photo(color, size=240, eye=60.0):
    """A flat-coloured photo with a face whose eye distance is ``eye`` px (landmarks: the template scaled)."""
    frame = np.zeros((size, size, 3), np.uint8)
    frame[:] = color
    scale = eye / 35.24
    lm = (ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(0)) * scale + size / 2
    return frame, lm


def test_shrink_photo_gives_the_face_resolution_asked_for_and_never_enlarges():
    frame, lm = _photo((10, 20, 30))
    ex, ey = int(round(lm[0, 0])), int(round(lm[0, 1]))
    frame[ey - 6:ey + 7, ex - 6:ex + 7, 0] = 255        # a 13 px dot on the left eye follows the landmarks
    r0 = float(equivalent_resolution(lm[None])[0])
    for r in (40, 16, 8):
        small, slm, s = os_.shrink_photo(frame, lm, r)
        assert float(equivalent_resolution(slm[None])[0]) == pytest.approx(r, rel=0.03)
        assert small.shape[0] == round(240 * r / r0)
        y, x = np.unravel_index(np.argmax(small[..., 0]), small.shape[:2])
        assert abs(x - slm[0, 0]) <= 1.5 and abs(y - slm[0, 1]) <= 1.5, (r, x, y, slm[0])
    same, slm, s = os_.shrink_photo(frame, lm, 500)
    assert same is frame and s == 1.0 and np.allclose(slm, lm)


class _StubRecognizer:
    """Enough of crres_sdk.Recognizer for the protocol: a real Gallery, the real PlainMatcher and threshold
    policy; the 'embedding' of a crop is a fixed random unit vector per flat colour (the identity)."""

    embedding_dim = 256
    normalization = Normalization()
    fusion = "max"
    pairing = "auto"

    def __init__(self, tmp_path):
        self.gallery = Gallery(tmp_path / "g.db", ModelKey("stub", "1", 256))
        self.fpir, self.far, self.far_rate = 0.01, "1e-3", 1e-3
        manifest = {"name": "stub", "thresholds": {
            "resolutions": [7, 112], "far": {"1e-2": [0.3, 0.3], "1e-3": [0.4, 0.4], "1e-4": [0.5, 0.5]}}}
        self.policy = ThresholdPolicy.from_manifest(manifest, None)
        self.matcher = PlainMatcher(self)

    @staticmethod
    def probe_resolution(face):
        return face_resolution(face)

    def faces_from(self, frame, landmarks):
        lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        return [Face(box=np.zeros(4, np.float32), score=1.0, landmarks=m.astype(np.float32),
                     equivalent_resolution=float(equivalent_resolution(m[None])[0])) for m in lm]

    def embed_aligned(self, crops):
        out = []
        for c in crops:
            key = tuple(int(round(v)) for v in c.reshape(3, -1)[:, c.shape[-1] * 56 + 56] * 128 + 127.5)
            v = np.random.default_rng(abs(hash(key)) % (2 ** 32)).normal(size=256)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, np.float32)

    def enroll(self, name, images, faces):
        from crres_sdk import align_faces

        face = self.faces_from(images[0], faces[0])[0]
        emb = self.embed_aligned(align_faces(images[0], face.landmarks[None].astype(np.float64)))
        return self.gallery.enroll(name, emb, [self.probe_resolution(face)])

    def match(self, embeddings, resolutions, top_k=1):
        return self.matcher.match_embeddings(embeddings, resolutions, top_k=top_k)


def test_run_scores_known_people_and_strangers_through_the_sdk_matcher(tmp_path):
    people = ["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3", "s0", "s1"]
    colours = {n: (30 + 20 * k, 200 - 15 * k, 90 + 10 * k) for k, n in enumerate(sorted(set(people)))}
    photos = [_photo(colours[n]) for n in people]
    marks = np.stack([lm for _, lm in photos])
    split = os_.build_split(people, seed=0)
    rec = _StubRecognizer(tmp_path)
    res = os_.run(rec, lambda i: photos[i][0], marks, split, resolutions=(112, 16, 5),
                  policies=("far=1e-3", "fpir=0.01"), progress=False, batch=3)
    assert res["gallery"]["enrolled"] == 2 and res["split"]["known_probes"] == 2
    hr = res["per_resolution"]["112"]["policies"]
    for name in ("far=1e-3", "fpir=0.01"):
        assert hr[name]["rank1"] == 1.0 and hr[name]["correct_match"] == 1.0 and hr[name]["wrong_match"] == 0.0
        assert hr[name]["fpir"] == 0.0 and hr[name]["too_small"] == 0.0
    assert hr["fpir=0.01"]["comparisons"] == 2 and hr["fpir=0.01"]["per_pair_far"] == pytest.approx(0.005)
    assert hr["far=1e-3"]["threshold_mean"] == pytest.approx(0.4) and hr["far=1e-3"]["comparisons"] is None
    assert res["per_resolution"]["16"]["probe_resolution_mean"] == pytest.approx(16, rel=0.05)
    tiny = res["per_resolution"]["5"]["policies"]["fpir=0.01"]
    assert tiny["too_small"] == 1.0 and tiny["correct_match"] == 0.0 and tiny["fpir"] == 0.0
    assert rec.fpir == 0.01 and rec.far == "1e-3"            # the recognizer's own policy is restored
    md = os_.report_markdown(res)
    assert "| 112 |" in md and "fpir=0.01" in md
    os_.plot(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    json.dumps(res)
    rec.gallery.close()


def test_policies_are_parsed_and_the_command_needs_lfw(tmp_path, capsys):
    assert os_.parse_policy("fpir=0.01") == {"name": "fpir=0.01", "fpir": 0.01, "far": "1e-3"}
    assert os_.parse_policy("far=1e-4")["fpir"] is None
    for bad in ("x=1", "fpir=2", "far="):
        with pytest.raises(ValueError):
            os_.parse_policy(bad)
    assert os_.main(["--lfw", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no LFW" in capsys.readouterr().err
