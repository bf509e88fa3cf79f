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
