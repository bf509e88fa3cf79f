"""The motion gate (crres_sdk.serve.motion) and the engine's use of it: the detector sees only what changed since
it last looked, faces elsewhere are kept, a face touching a change is detected again whole, and whole frames are
detected first, periodically and when most of the picture changed. Behaviour only, no timing."""

from __future__ import annotations

import time

import numpy as np

from crres_sdk.detector import Detections
from crres_sdk.face import Face
from crres_sdk.gallery import Match
from crres_sdk.preprocess import Normalization
from crres_sdk.recognizer import Recognizer, landmarks_from_boxes
from crres_sdk.serve.cameras import Frame
from crres_sdk.serve.config import CameraConfig, parse_config
from crres_sdk.serve.engine import Engine
from crres_sdk.serve.motion import SIZES, MotionGate

H, W = 480, 640


def scene(seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    base = np.tile(np.linspace(40, 160, W, dtype=np.float32)[None, :, None], (H, 1, 3))
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def with_square(img, x, y, size=40, value=230):
    out = img.copy()
    out[y:y + size, x:x + size] = value
    return out


def test_first_frame_whole_then_nothing_when_only_noise_changes():
    gate = MotionGate(threshold=8, max_area=0.5, full_every_s=100)
    regions, small = gate.plan(scene(0), 0.0)
    assert regions is None                       # nothing seen yet: the whole frame
    gate.commit(small, regions, 0.0)
    regions, small = gate.plan(scene(1), 0.1)    # another frame of sensor noise (sigma 2)
    assert regions == []


def test_a_change_gives_a_region_around_it_of_a_quantised_size():
    gate = MotionGate(threshold=8, max_area=0.5, full_every_s=100)
    gate.commit(gate.plan(scene(0), 0.0)[1], None, 0.0)
    regions, _ = gate.plan(with_square(scene(1), 300, 200), 0.1)
    assert len(regions) == 1
    x1, y1, x2, y2 = regions[0]
    assert x1 <= 300 - 16 and y1 <= 200 - 16 and x2 >= 340 + 16 and y2 >= 240 + 16   # the change and a margin
    assert (x2 - x1) in SIZES and (y2 - y1) in SIZES
    assert (x2 - x1) * (y2 - y1) < 0.2 * H * W


def test_a_previous_face_touching_a_change_joins_the_region_whole():
    gate = MotionGate(threshold=8, max_area=0.5, full_every_s=100)
    gate.commit(gate.plan(scene(0), 0.0)[1], None, 0.0)
    face = [330.0, 180.0, 450.0, 300.0]          # a 120 px face; only its left edge area changes
    regions, _ = gate.plan(with_square(scene(1), 300, 200, size=40), 0.1, [face])
    assert len(regions) == 1
    x1, y1, x2, y2 = regions[0]
    assert x1 <= face[0] and y1 <= face[1] and x2 >= face[2] and y2 >= face[3]
    far = [20.0, 20.0, 80.0, 80.0]               # a face elsewhere does not join
    regions, _ = gate.plan(with_square(scene(1), 300, 200, size=40), 0.1, [far])
    assert not (regions[0][0] <= far[0] and regions[0][1] <= far[1])


def test_periodic_and_large_changes_detect_the_whole_frame():
    gate = MotionGate(threshold=8, max_area=0.5, full_every_s=2.0)
    gate.commit(gate.plan(scene(0), 0.0)[1], None, 0.0)
    assert gate.plan(scene(1), 1.0)[0] == []
    assert gate.plan(scene(1), 2.5)[0] is None    # the safety net: whole frame every full_every_s
    bright = np.clip(scene(1).astype(np.int16) + 40, 0, 255).astype(np.uint8)
    assert gate.plan(bright, 1.0)[0] is None      # most of the picture changed (lights)
    assert gate.plan(scene(1).copy()[:240], 1.0)[0] is None   # another frame size


def test_slow_change_accumulates_against_what_the_detector_last_saw():
    gate = MotionGate(threshold=8, max_area=0.5, full_every_s=100)
    base = scene(0, noise=0)
    gate.commit(gate.plan(base, 0.0)[1], None, 0.0)
    found = None
    for step in range(1, 6):                      # +3 grey levels a frame in one patch: under the threshold per frame
        img = base.copy()
        img[200:260, 300:360] = np.clip(base[200:260, 300:360].astype(np.int16) + 3 * step, 0, 255)
        regions, small = gate.plan(img, 0.1 * step)
        gate.commit(small, regions, 0.1 * step)
        if regions:
            found = step
            break
    assert found == 3                             # 9 > 8 against the reference, not 3 against the last frame


# ------------------------------------------------------------------------------------------ the engine with it


class SquareDetector:
    """Finds bright (>= 220) squares: one face per 8-connected bright blob. Records the crop shapes it saw."""

    estimator = None

    def __init__(self):
        self.shapes = []

    def detect_arrays(self, image):
        import cv2

        self.shapes.append(image.shape[:2])
        mask = (image.min(axis=2) >= 220).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, a in stats[1:n].tolist() if a >= 100],
                         np.float32).reshape(-1, 4)
        if not len(boxes):
            return Detections.empty()
        marks = landmarks_from_boxes(boxes.astype(np.float64)).astype(np.float32)
        return Detections(boxes, np.full(len(boxes), 0.99, np.float32), marks)


class GatedRecognizer:
    normalization = Normalization()
    gallery = None
    probe_resolution = staticmethod(Recognizer.probe_resolution)

    def __init__(self):
        self.detector = SquareDetector()
        self.full = 0

    def detect(self, frame):
        self.full += 1
        d = self.detector.detect_arrays(frame)
        return [Face(box=b, score=float(s), landmarks=m, equivalent_resolution=40.0)
                for b, s, m in zip(d.boxes, d.scores, d.landmarks)]

    def embed_aligned(self, crops):
        return np.tile(np.array([[1.0, 0.0]], np.float32), (len(crops), 1))

    def match(self, emb, res, top_k=1):
        return [([Match("alice", 0.9, 112.0)], 0.5, "match") for _ in emb]

    def threshold_at(self, r):
        return np.array(0.5)


class Reader:
    def __init__(self, name):
        self.name = name
        self.config = CameraConfig(name, "fake", max_fps=1000)
        self.frame = None
        self.seq = 0

    def put(self, img):
        self.seq += 1
        self.frame = Frame(self.seq, time.time(), img)

    def latest(self, after_seq=0):
        return self.frame if self.frame is not None and self.frame.seq > after_seq else None

    def status(self):
        return {"name": self.name, "state": "streaming"}


def step(engine, reader, img):
    reader.put(img)
    engine.cams[reader.name].next_due = 0.0
    assert engine.step()
    return sorted([float(v) for v in f.box] for f in engine.cams[reader.name].last_faces)


def test_engine_detects_only_changes_and_keeps_the_other_faces():
    rec = GatedRecognizer()
    cfg = parse_config({"recognition": {"motion_gate": True, "full_detect_every_s": 3600, "track_timeout_s": 60}})
    reader = Reader("a")
    engine = Engine(rec, {"a": reader}, cfg)
    rec.full = 0  # the warm-up's detection
    rec.detector.shapes.clear()
    still = with_square(scene(0), 60, 60)                       # a face that stays
    faces = step(engine, reader, with_square(still, 300, 200))  # and one that will move
    assert rec.full == 1 and faces == [[60, 60, 100, 100], [300, 200, 340, 240]]
    rec.detector.shapes.clear()
    faces = step(engine, reader, with_square(still, 300, 200))
    assert rec.detector.shapes == [] and rec.full == 1          # nothing changed: no detection at all
    assert faces == [[60, 60, 100, 100], [300, 200, 340, 240]]  # the same faces, the same tracks
    faces = step(engine, reader, with_square(still, 310, 204))  # the second face moves a little
    assert rec.full == 1 and len(rec.detector.shapes) == 1
    h, w = rec.detector.shapes[0]
    assert h * w < 0.25 * H * W                                  # a crop around the change, not the frame
    assert faces == [[60, 60, 100, 100], [310, 204, 350, 244]]  # found in frame coordinates, the still one kept
    tracks = engine.cams["a"].tracks
    assert len(tracks) == 2 and all(st.frames == 3 for st in tracks.values())
    assert engine.counters["detect_full"] == 1 and engine.counters["detect_skipped"] == 1
    assert engine.counters["detect_regions"] == 1


def test_engine_without_the_gate_detects_every_frame_whole():
    rec = GatedRecognizer()
    cfg = parse_config({"recognition": {"motion_gate": False}})
    reader = Reader("a")
    engine = Engine(rec, {"a": reader}, cfg)
    rec.full = 0
    img = with_square(scene(0), 300, 200)
    for _ in range(3):
        step(engine, reader, img)
    assert rec.full == 3 and engine.counters["detect_skipped"] == 0
