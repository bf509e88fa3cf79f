"""The serve engine with a stand-in recognizer (no model): every due camera's faces go to the embedder in one
batch, tracks give start/update/end events, a named face whose IoU track breaks continues its track, unknown
tracks are grouped."""

from __future__ import annotations

import time

import numpy as np

from crres_sdk.face import Face
from crres_sdk.gallery import Match
from crres_sdk.preprocess import Normalization
from crres_sdk.recognizer import Recognizer, landmarks_from_boxes
from crres_sdk.serve.cameras import Frame
from crres_sdk.serve.config import CameraConfig, parse_config
from crres_sdk.serve.engine import Engine


class FakeRecognizer:
    """Faces where the frame says (a box per frame), embeddings that say who: grey 50 = alice, 200 = unknown."""

    normalization = Normalization()
    gallery = None
    probe_resolution = staticmethod(Recognizer.probe_resolution)

    def __init__(self):
        self.batches = []

    def detect(self, frame):
        x = 2.0 * float(frame[0, 0, 1])  # the box's left edge (/2) is written into the frame
        box = np.array([x, 100.0, x + 80.0, 180.0])
        lm = landmarks_from_boxes(box[None])[0]
        return [Face(box=box.astype(np.float32), score=0.99, landmarks=lm.astype(np.float32),
                     equivalent_resolution=80.0)]

    def embed_aligned(self, crops):
        self.batches.append(len(crops))
        bright = crops.mean(axis=(1, 2, 3)) > 0  # normalised: grey 200 > 127.5 > grey 50
        return np.stack([np.array([0.0, 1.0]) if b else np.array([1.0, 0.0]) for b in bright]).astype(np.float32)

    def match(self, emb, res, top_k=1):
        out = []
        for e in emb:
            if e[0] > 0.5:
                out.append(([Match("alice", 0.9, 112.0)], 0.5, "match"))
            else:
                out.append(([Match("alice", 0.1, 112.0)], 0.5, "unknown"))
        return out

    def threshold_at(self, r):
        return np.array(0.5)


class Reader:
    def __init__(self, name):
        self.name = name
        self.config = CameraConfig(name, "fake", max_fps=1000)
        self.frame = None

    def put(self, seq, grey, x):
        img = np.full((360, 640, 3), grey, np.uint8)
        img[0, 0, 1] = x // 2
        self.frame = Frame(seq, time.time(), img)

    def latest(self, after_seq=0):
        return self.frame if self.frame is not None and self.frame.seq > after_seq else None

    def status(self):
        return {"name": self.name, "state": "streaming"}


def test_cameras_share_batches_and_tracks_give_events():
    cfg = parse_config({"recognition": {"min_track_frames": 2, "track_timeout_s": 0.5}, "events": {"keep": 100}})
    rec = FakeRecognizer()
    readers = {"a": Reader("a"), "b": Reader("b")}
    published = []
    engine = Engine(rec, readers, cfg, publish=published.append)
    xs = [20, 140, 260, 380]  # the face jumps: no IoU overlap between any two frames, but stays near
    for i, x in enumerate(xs):
        readers["a"].put(i + 1, 50, x)    # alice
        readers["b"].put(i + 1, 200, x)   # someone unknown
        for cam in engine.cams.values():
            cam.next_due = 0.0
        assert engine.step()
    assert rec.batches == [2, 2, 2, 2]  # one embedding batch for both cameras' faces, every step
    a_events = [e for e in published if e["camera"] == "a"]
    assert [e["event"] for e in a_events] == ["start"]  # named at once, and her broken tracks continue it
    assert a_events[0]["identity"] == "alice" and a_events[0]["label"] == "alice"
    assert a_events[0]["decision"] == "match" and a_events[0]["threshold"] == 0.5
    assert engine.counters["tracks_continued"] == 3
    b_events = [e for e in published if e["camera"] == "b"]
    assert b_events == []  # unknown tracks of one frame each: no event (min_track_frames=2)
    readers["b"].put(10, 200, 380)
    engine.cams["b"].next_due = 0.0
    engine.step()  # now b's track at x=380 has its second frame
    b_events = [e for e in published if e["camera"] == "b"]
    assert [e["event"] for e in b_events] == ["start"] and b_events[0]["label"] == "unknown"
    readers["a"].put(11, 50, 20)  # she appears again far from where her track was: a new appearance
    engine.cams["a"].next_due = 0.0
    engine.step()
    a_events = [e for e in published if e["camera"] == "a"]
    assert [e["event"] for e in a_events] == ["start", "start"] and a_events[0]["track"] != a_events[1]["track"]
    engine._expire(time.time() + 10)
    ends = [e for e in published if e["event"] == "end"]
    assert sorted(e["camera"] for e in ends) == ["a", "a", "b"]
    a_end = next(e for e in ends if e["track"] == a_events[0]["track"])
    assert a_end["frames"] == 4
    groups = engine.unknown_groups()
    assert len(groups) == 1 and groups[0]["cameras"] == ["b"] and groups[0]["crops"] >= 1
    assert [e["id"] for e in engine.recent_events()] == sorted(e["id"] for e in published)


# ------------------------------------------------------------------------------------------ re-identification


class ScoredRecognizer(FakeRecognizer):
    """Like FakeRecognizer, but alice's score is set by the test (threshold 0.5) and the face's size (its box
    width) by the frame: pixel [0, 1, 1] holds the width / 2."""

    def __init__(self, score=0.9):
        super().__init__()
        self.score = score
        self.embedded = 0

    def detect(self, frame):
        x = 2.0 * float(frame[0, 0, 1])
        w = 2.0 * float(frame[0, 1, 1]) or 80.0
        box = np.array([x, 100.0, x + w, 100.0 + w])
        lm = landmarks_from_boxes(box[None])[0]
        return [Face(box=box.astype(np.float32), score=0.99, landmarks=lm.astype(np.float32),
                     equivalent_resolution=float(min(w, 112.0)))]

    def embed_aligned(self, crops):
        self.embedded += len(crops)
        return super().embed_aligned(crops)

    def match(self, emb, res, top_k=1):
        return [([Match("alice", self.score, 112.0)], 0.5, "match" if self.score >= 0.5 else "unknown")
                for _ in emb]


def _run_frames(engine, reader, rec, n, x=20, widths=None):
    for i in range(n):
        reader.put(reader.seq + 1, 50, x)
        reader.seq += 1
        if widths is not None:
            img = reader.frame.image
            img[0, 1, 1] = widths[i] // 2
        engine.cams[reader.name].next_due = 0.0
        assert engine.step()


def _engine(rec, **recognition):
    cfg = parse_config({"recognition": {"track_timeout_s": 60, **recognition}})
    reader = Reader("a")
    reader.seq = 0
    published = []
    return Engine(rec, {"a": reader}, cfg, publish=published.append), reader, published


def test_confident_named_track_is_embedded_every_n_frames():
    rec = ScoredRecognizer(score=0.9)   # (0.9 - 0.5) / (1 - 0.5) = 0.8 of the way: confident
    engine, reader, published = _engine(rec, reidentify_every=4, reidentify_margin=0.3, motion_gate=False)
    _run_frames(engine, reader, rec, 9)   # a still face: one track
    # frame 1 (new track), then every 4th frame seen since: frames 1, 5, 9
    assert rec.embedded == 3
    assert engine.counters["embeddings_skipped"] == 6
    st = next(iter(engine.cams["a"].tracks.values()))
    assert st.frames == 9 and st.template.count == 3
    assert [e["event"] for e in published] == ["start"]
    # faces of skipped frames still carry the track's verdict (live view, /api/cameras)
    face = engine.cams["a"].last_faces[0]
    assert face.identity == "alice" and face.decision == "match"


def test_unsure_or_unknown_tracks_are_embedded_every_frame():
    rec = ScoredRecognizer(score=0.6)   # named, but only 0.2 of the way from 0.5 to 1: not confident at 0.3
    engine, reader, _ = _engine(rec, reidentify_every=4, reidentify_margin=0.3, motion_gate=False)
    _run_frames(engine, reader, rec, 6)
    assert rec.embedded == 6 and engine.counters["embeddings_skipped"] == 0
    rec2 = ScoredRecognizer(score=0.2)  # unknown
    engine, reader, _ = _engine(rec2, reidentify_every=4, motion_gate=False)
    _run_frames(engine, reader, rec2, 6)
    assert rec2.embedded == 6


def test_a_growing_face_is_embedded_again_and_every_1_means_always():
    rec = ScoredRecognizer(score=0.9)
    engine, reader, _ = _engine(rec, reidentify_every=100, reidentify_growth=1.25, motion_gate=False)
    # widths 40, 42, 44 (< 1.25 x 40 = 50), 52 (grown: embed), 54, 56, 66 (> 1.25 x 52: embed)
    _run_frames(engine, reader, rec, 7, widths=[40, 42, 44, 52, 54, 56, 66])
    assert rec.embedded == 3
    rec = ScoredRecognizer(score=0.9)
    engine, reader, _ = _engine(rec, reidentify_every=1, motion_gate=False)
    _run_frames(engine, reader, rec, 5)
    assert rec.embedded == 5


def test_a_decision_change_is_seen_at_the_next_reidentification():
    rec = ScoredRecognizer(score=0.9)
    engine, reader, published = _engine(rec, reidentify_every=3, motion_gate=False)
    _run_frames(engine, reader, rec, 2)          # embedded at frame 1, frame 2 skipped
    rec.score = 0.1                              # the track now matches nobody (e.g. another person took it)
    _run_frames(engine, reader, rec, 1)          # frame 3: still within 3 frames of the last embedding
    assert [e["event"] for e in published] == ["start"]
    _run_frames(engine, reader, rec, 1)          # frame 4: re-identified, the change is reported
    assert [e["event"] for e in published] == ["start", "update"]
    assert published[-1]["decision"] == "unknown" and published[-1]["identity"] is None
    _run_frames(engine, reader, rec, 3)          # unknown now: embedded every frame
    assert rec.embedded == 2 + 3
