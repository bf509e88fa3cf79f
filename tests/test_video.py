"""Video pipeline pieces: sources, the IoU tracker, resolution-weighted track templates, synthetic CCTV clips and
the events file. Everything except the last test runs without any model (constructed boxes and vectors)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from crres_demo.camera import camera_effects
from crres_demo.clip import receding_sizes, render_receding_clip, render_scene
from crres_sdk import equivalent_resolution
from crres_sdk.gallery import Match
from crres_sdk.recognizer import landmarks_from_boxes
from crres_sdk.video import (FrameSource, IoUTracker, TrackTemplate, VideoPipeline, VideoSourceError,
                             gstreamer_available, iou_matrix, open_source, resolution_weight)
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr


def box(cx: float, cy: float, side: float = 20.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


# ------------------------------------------------------------------------------------------------ tracker


def test_iou_matrix_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == pytest.approx(1.0)
    assert iou[0, 2] == 0.0
    assert iou[1, 1] == pytest.approx(4 / 100)


def test_tracker_keeps_ids_of_two_crossing_faces():
    # Two faces walk towards each other at 10 px/frame and cross between frames 7 and 8: at frame 8 face B is 5 px
    # from where A was, A is 10 px from it, so only the velocity prediction keeps the ids apart.
    def walk(tracker: IoUTracker) -> tuple[list[int], list[int]]:
        ids_a, ids_b = [], []
        for f in range(17):
            a, b = box(100 + 10 * f, 100), box(255 - 10 * f, 102)
            flip = f % 2 == 1  # detection order must not matter
            tracks = tracker.update([b, a] if flip else [a, b])
            ta, tb = (tracks[1], tracks[0]) if flip else (tracks[0], tracks[1])
            ids_a.append(ta.track_id)
            ids_b.append(tb.track_id)
        return ids_a, ids_b

    ids_a, ids_b = walk(IoUTracker(iou_threshold=0.3, max_age=2, min_hits=2))
    assert set(ids_a) == {1} and set(ids_b) == {2}
    # Without motion prediction the same greedy association swaps them at the crossing (so the test means it).
    ids_a, ids_b = walk(IoUTracker(iou_threshold=0.3, max_age=2, min_hits=2, motion=False))
    assert ids_a[:8] == [1] * 8 and ids_a[8] == 2


def test_tracker_survives_missed_frames_then_drops_track():
    tracker = IoUTracker(iou_threshold=0.3, max_age=2, min_hits=2)
    first = tracker.update([box(50, 50)])[0]
    assert first.track_id == 1 and not first.confirmed  # one hit < min_hits
    assert tracker.update([box(53, 50)])[0].confirmed
    assert tracker.update([]) == []                     # missed frame 1 (zero detections work)
    assert tracker.update(np.zeros((0, 4))) == []       # missed frame 2
    back = tracker.update([box(65, 50)])[0]             # predicted at 53 + 3 * 3 = 62: IoU 0.74
    assert back.track_id == 1 and back.misses == 0 and back.confirmed
    for _ in range(3):                                  # 3 misses > max_age 2: dropped
        tracker.update([])
    assert tracker.tracks == []
    assert tracker.update([box(65, 50)])[0].track_id == 2  # ids are never reused


def test_tracker_new_faces_get_new_ids_and_far_boxes_never_match():
    tracker = IoUTracker()
    t1 = tracker.update([box(50, 50)])
    t2 = tracker.update([box(51, 50), box(300, 300)])
    assert t2[0].track_id == t1[0].track_id == 1
    assert t2[1].track_id == 2 and t2[1].hits == 1
    t3 = tracker.update([box(200, 50)])                 # IoU 0 with both: a third face
    assert t3[0].track_id == 3
    tracker.reset()
    assert tracker.tracks == [] and tracker.update([box(0, 0)])[0].track_id == 1


def test_tracker_greedy_takes_highest_iou_first():
    tracker = IoUTracker(iou_threshold=0.1, motion=False)
    tracker.update([[0, 0, 10, 10]])
    # Both boxes overlap the track; the one with the higher IoU (0.81 vs 0.43) takes it.
    tracks = tracker.update([[3, 0, 13, 10], [0, 0, 9, 9]])
    assert tracks[1].track_id == 1 and tracks[0].track_id == 2


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), [[0, 0, 0, 10]], [[0, 0, np.nan, 10]], [[5, 5, 1, 10]]])
def test_tracker_rejects_bad_boxes(bad):
    with pytest.raises(ValueError):
        IoUTracker().update(bad)


@pytest.mark.parametrize("kwargs", [{"iou_threshold": 0}, {"max_age": -1}, {"min_hits": 0}, {"min_hits": 1.5},
                                    {"velocity_smoothing": 2}])
def test_tracker_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        IoUTracker(**kwargs)


# ---------------------------------------------------------------------------------------- accumulation


def test_track_template_is_the_resolution_weighted_mean_direction():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(3, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    r = np.array([100.0, 20.0, 7.0])
    tmpl = TrackTemplate(16)
    for v, ri in zip(e, r):
        tmpl.add(v * 3.0, ri)  # scale is ignored: embeddings are re-normalised
    w = r / 112
    expected = (w[:, None] * e).sum(0)
    np.testing.assert_allclose(tmpl.template, expected / np.linalg.norm(expected), atol=1e-6)
    assert tmpl.resolution == pytest.approx((w * r).sum() / w.sum())  # = sum r^2 / sum r = 81.9
    assert tmpl.resolution == pytest.approx((100**2 + 20**2 + 7**2) / 127)
    assert tmpl.count == 3


def test_track_template_high_resolution_frames_dominate():
    hr, lr = np.zeros(4), np.zeros(4)
    hr[0], lr[1] = 1.0, 1.0
    tmpl = TrackTemplate(4)
    tmpl.add(hr, 112.0)
    for _ in range(4):
        tmpl.add(lr, 7.0)
    # 1 frame at weight 1 vs 4 frames at 1/16: the HR direction keeps cos = 1 / sqrt(1 + 0.25^2).
    assert tmpl.template[0] == pytest.approx(1 / math.sqrt(1 + 0.25**2), abs=1e-6)
    assert tmpl.resolution == pytest.approx((112 + 4 * 7 * 7 / 112) / (1 + 4 / 16))
    # Resolutions outside [1, 112] are clipped both in the weight and in the accumulated resolution.
    assert resolution_weight(500.0) == 1.0 and resolution_weight(0.5) == pytest.approx(1 / 112)
    big = TrackTemplate(4)
    big.add(hr, 300.0)
    assert big.resolution == 112.0


def test_track_template_rejects_bad_input():
    tmpl = TrackTemplate(4)
    with pytest.raises(ValueError):
        tmpl.template  # noqa: B018 - empty
    with pytest.raises(ValueError):
        tmpl.add(np.zeros(4), 50)
    with pytest.raises(ValueError):
        tmpl.add(np.ones(5), 50)
    with pytest.raises(ValueError):
        tmpl.add(np.ones(4), float("nan"))
    tmpl.add(np.array([1.0, 0, 0, 0]), 20)
    tmpl.add(np.array([-1.0, 0, 0, 0]), 20)
    with pytest.raises(ValueError, match="cancel"):
        tmpl.template  # noqa: B018


class _FakeGallery:
    def __len__(self) -> int:
        return 1


class TableRecognizer:
    """A stand-in with the Recognizer's interface whose "embedding" of a face is a fixed vector per track
    position, so the pipeline's bookkeeping (tracking, accumulation, match inputs, events) can be checked
    exactly. It is not inference and no test presents it as such."""

    gallery = _FakeGallery()
    bundle = None

    def __init__(self, vectors: dict[int, np.ndarray], threshold: float = 0.5) -> None:
        self.vectors = vectors
        self.threshold = threshold
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def detect(self, frame):
        raise AssertionError("the tests supply faces")

    def faces_from(self, frame, boxes):
        from crres_sdk import Face
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        lms = landmarks_from_boxes(boxes)
        return [Face(box=b.astype(np.float32), score=1.0, landmarks=lm, equivalent_resolution=float(
            equivalent_resolution(lm))) for b, lm in zip(boxes, lms)]

    def embed(self, frame, faces):
        return np.stack([self.vectors[int(frame[0, 0, 0])][i] for i in range(len(faces))]).astype(np.float32)

    @staticmethod
    def probe_resolution(face):
        return min(face.equivalent_resolution, 112.0)

    def match(self, embeddings, resolutions, top_k=1):
        self.calls.append((np.asarray(embeddings), np.asarray(resolutions)))
        out = []
        for e in embeddings:
            score = float(e[0])  # the gallery holds one identity, "alice", along axis 0
            out.append(([Match("alice", score, 112.0)], self.threshold,
                        "match" if score >= self.threshold else "unknown"))
        return out


def test_pipeline_accumulates_per_track_and_writes_events(tmp_path):
    # One face whose crop square shrinks from 112 to 80 px; frame i's pixel [0,0,0] = i picks its vector.
    # Frame 0 looks like alice (axis 0); later, smaller frames look like someone else (axis 1).
    sides = [112.0, 100.0, 90.0, 80.0]
    vectors = {0: [np.array([1.0, 0.0])]}
    for i in range(1, 4):
        vectors[i] = [np.array([0.0, 1.0])]
    frames = []
    for i in range(4):
        f = np.zeros((200, 200, 3), np.uint8)
        f[0, 0, 0] = i
        frames.append(f)
    boxes = [[[100 - s / 2, 100 - s / 2, 100 + s / 2, 100 + s / 2]] for s in sides]
    rec = TableRecognizer(vectors, threshold=0.6)
    pipe = VideoPipeline(rec, tracker=IoUTracker(min_hits=1),
                         faces=lambda i, frame: boxes[i])
    events = tmp_path / "events.jsonl"
    seen: list[dict] = []
    summary = pipe.run(FrameSource(frames, fps=5.0), events=events, progress=False, on_event=seen.append)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["type"] for e in seen] == [e["type"] for e in lines]  # the callback sees every event
    assert [e["type"] for e in lines] == ["start", "face", "track", "face", "face", "track", "face", "end"]
    faces = [e for e in lines if e["type"] == "face"]
    assert [f["frame"] for f in faces] == [0, 1, 2, 3]
    assert [f["time"] for f in faces] == [0.0, 0.2, 0.4, 0.6]
    assert {f["track_id"] for f in faces} == {1}
    # Accumulated template after k frames: w0*e0 + sum w_i*e1 normalised; its score is its axis-0 component.
    w = np.array([equivalent_resolution(landmarks_from_boxes(np.array(b))[0]) for b in boxes]) / 112
    np.testing.assert_allclose(w * 112, sides)  # a box's side is its equivalent resolution
    for k, f in enumerate(faces):
        s0, s1 = w[0], w[1:k + 1].sum()
        assert f["track"]["score"] == pytest.approx(s0 / math.hypot(s0, s1), abs=1e-4)
        assert f["track"]["frames"] == k + 1
        assert f["track"]["candidates"] == [["alice", f["track"]["score"]]]
        r = w[:k + 1] * 112
        assert f["track"]["resolution"] == pytest.approx((w[:k + 1] * r).sum() / w[:k + 1].sum(), abs=1e-3)
        assert f["score"] == pytest.approx(1.0 if k == 0 else 0.0)  # single-frame scores
        assert f["decision"] == ("match" if k == 0 else "unknown")
        assert f["box"] == pytest.approx(boxes[k][0], abs=0.01)
        assert set(f) >= {"equivalent_resolution", "effective_resolution", "threshold", "candidates", "confirmed"}
    # Track scores 1, 0.747, 0.510, 0.385 against 0.6: the decision flips at frame 2, recorded as "track" events.
    track_events = [e for e in lines if e["type"] == "track"]
    assert track_events[0]["previous"] is None and track_events[0]["decision"] == "match"
    assert track_events[1]["previous"] == ["match", "alice"] and track_events[1]["decision"] == "unknown"
    # Each processed frame makes one match call with the single-frame and the accumulated probes.
    assert all(len(emb) == 2 for emb, _ in rec.calls)
    assert lines[-1]["frames_processed"] == summary["frames_processed"] == 4
    assert summary["tracks"][0]["changes"] == 2 and summary["tracks"][0]["decision"] == "unknown"


def test_pipeline_every_n_and_zero_faces(tmp_path):
    frames = [np.zeros((64, 64, 3), np.uint8) for _ in range(7)]
    rec = TableRecognizer({0: []})
    pipe = VideoPipeline(rec, every_n=3, faces=lambda i, frame: None)
    out = tmp_path / "out.mp4"
    summary = pipe.run(frames, events=tmp_path / "e.jsonl", output_video=out, progress=False)
    assert summary["frames_read"] == 7 and summary["frames_processed"] == 3 and summary["faces"] == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    cap.release()
    assert pipe.run(frames, max_frames=2, progress=False)["frames_read"] == 2


def test_pipeline_rejects_bad_arguments():
    rec = TableRecognizer({})
    with pytest.raises(TypeError):
        VideoPipeline(object())
    with pytest.raises(ValueError):
        VideoPipeline(rec, every_n=0)
    with pytest.raises(TypeError):
        VideoPipeline(rec, tracker="sort")
    with pytest.raises(ValueError):
        VideoPipeline(rec).run([np.zeros((8, 8), np.uint8)], progress=False)
    with pytest.raises(ValueError):
        VideoPipeline(rec).run([np.zeros((8, 8, 3), np.uint8)], max_frames=0, progress=False)


# ----------------------------------------------------------------------------------------------- sources


def test_file_source_round_trip_and_timestamps(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    with open_source(str(path)) as src:
        assert src.fps == pytest.approx(10.0) and src.frame_count == 5 and (src.width, src.height) == (64, 48)
        got = list(src)
    assert [i for i, _, _ in got] == [0, 1, 2, 3, 4]
    assert [t for _, t, _ in got] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [int(round(f.mean())) for _, _, f in got] == pytest.approx([0, 40, 80, 120, 160], abs=3)
    assert open_source(path).frame_count == 5  # a Path works too


def test_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4"))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoSourceError, match="cannot read"):
        open_source(corrupt)
    with pytest.raises(TypeError):
        open_source(3.5)
    with pytest.raises(TypeError):
        open_source(True)
    with pytest.raises(ValueError):
        open_source(-1)
    with pytest.raises(ValueError):
        FrameSource([], fps=0)
    with pytest.raises(VideoSourceError, match="cannot open stream"):
        open_source("rtsp://user:secret@127.0.0.1:9/none", open_timeout_s=2.0)
    with pytest.raises(VideoSourceError) as info:
        open_source("rtsp://user:secret@127.0.0.1:9/none", open_timeout_s=2.0)
    assert "secret" not in str(info.value)


def test_gstreamer_pipeline_needs_gstreamer():
    pipeline = "videotestsrc num-buffers=3 ! videoconvert ! video/x-raw,format=BGR ! appsink"
    if gstreamer_available():
        with open_source(pipeline) as src:
            assert len(list(src)) == 3
    else:
        with pytest.raises(VideoSourceError, match="GStreamer"):
            open_source(pipeline)


def test_camera_index_that_does_not_exist():
    with pytest.raises(VideoSourceError, match="cannot open camera 97"):
        open_source("97")


# -------------------------------------------------------------------------------------------- synthetic


def test_receding_sizes():
    s = receding_sizes(9, 112, 7)
    assert s[0] == 112 and s[-1] == pytest.approx(7)
    np.testing.assert_allclose(s[1:] / s[:-1], (7 / 112) ** (1 / 8))  # geometric
    with pytest.raises(ValueError):
        receding_sizes(1)
    with pytest.raises(ValueError):
        receding_sizes(5, 8, 112)


@pytest.fixture(scope="module")
def small_clip():
    return render_receding_clip(astronaut_bgr(), ASTRONAUT_LANDMARKS, n_frames=8, size=(320, 240), seed=3)


def test_synthetic_clip_ground_truth(small_clip):
    clip = small_clip
    assert len(clip) == 8 and clip.frames[0].shape == (240, 320, 3) and clip.frames[0].dtype == np.uint8
    assert clip.face_px[0] == 112 and clip.face_px[-1] == pytest.approx(8)
    assert np.all(np.diff(clip.face_px) < 0)
    # The ground-truth size is the equivalent resolution of the ground-truth landmarks.
    np.testing.assert_allclose(equivalent_resolution(clip.landmarks), clip.face_px, rtol=1e-9)
    sides = clip.boxes[:, 2] - clip.boxes[:, 0]
    np.testing.assert_allclose(sides, clip.boxes[:, 3] - clip.boxes[:, 1])
    assert np.all(np.diff(sides) < 0)
    # Landmarks lie inside their crop square and inside the frame.
    assert np.all(clip.landmarks[..., 0] > clip.boxes[:, None, 0]) and np.all(clip.landmarks[..., 0] < clip.boxes[:, None, 2])
    assert np.all(clip.landmarks >= 0) and np.all(clip.landmarks[..., 0] < 320) and np.all(clip.landmarks[..., 1] < 240)


def test_synthetic_face_is_where_the_ground_truth_says(small_clip):
    # The face was rendered from the photo by the same similarity as the landmarks: the frame's face region,
    # warped back into the photo's frame, matches the photo there (up to blur/noise/JPEG).
    clip = small_clip
    photo = astronaut_bgr().astype(np.float32)
    lm = clip.landmarks[0]
    s = np.linalg.norm(lm[1] - lm[0]) / np.linalg.norm(ASTRONAUT_LANDMARKS[1] - ASTRONAUT_LANDMARKS[0])
    t = lm.mean(0) - s * ASTRONAUT_LANDMARKS.mean(0)
    inv = cv2.invertAffineTransform(np.array([[s, 0, t[0]], [0, s, t[1]]]))
    back = cv2.warpAffine(clip.frames[0].astype(np.float32), inv, (512, 512), flags=cv2.INTER_LINEAR)
    region = (slice(80, 150), slice(190, 260))  # eyes to mouth of the photo
    err = np.abs(back[region] - cv2.GaussianBlur(photo, (0, 0), 1.0)[region]).mean()
    shifted = np.abs(back[region] - cv2.GaussianBlur(photo, (0, 0), 1.0)[80:150, 200:270]).mean()
    assert err < 12 and err < 0.6 * shifted


def test_synthetic_clip_is_deterministic_by_seed(small_clip):
    again = render_receding_clip(astronaut_bgr(), ASTRONAUT_LANDMARKS, n_frames=8, size=(320, 240), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(small_clip.frames, again.frames))
    other = render_receding_clip(astronaut_bgr(), ASTRONAUT_LANDMARKS, n_frames=8, size=(320, 240), seed=4)
    assert not np.array_equal(small_clip.frames[3], other.frames[3])
    np.testing.assert_array_equal(small_clip.landmarks, other.landmarks)  # geometry does not depend on the seed


def test_camera_effects_and_scene():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = camera_effects(flat, rng, blur_sigma=0, noise_sigma=5.0, shot_gain=0.0, jpeg_quality=100)
    assert 3.5 < noisy.astype(np.float32).std() < 6.5
    clean = camera_effects(flat, rng, blur_sigma=1.0, noise_sigma=0, shot_gain=0, jpeg_quality=90)
    assert np.abs(clean.astype(int) - 128).max() <= 2
    edge = np.zeros((32, 32, 3), np.uint8)
    edge[:, 16:] = 255
    blurred = camera_effects(edge, rng, blur_sigma=2.0, noise_sigma=0, shot_gain=0, jpeg_quality=100)
    assert 60 < blurred[16, 15, 0] < 195  # the edge is spread over several pixels
    assert render_scene(128, 96, seed=1).shape == (96, 128, 3)
    assert np.array_equal(render_scene(128, 96, seed=1), render_scene(128, 96, seed=1))
    with pytest.raises(ValueError):
        camera_effects(flat, rng, jpeg_quality=0)


def test_synthetic_rejects_bad_input():
    photo = astronaut_bgr()
    with pytest.raises(ValueError):
        render_receding_clip(photo[..., 0], ASTRONAUT_LANDMARKS)
    with pytest.raises(ValueError):
        render_receding_clip(photo, ASTRONAUT_LANDMARKS[:4])
    with pytest.raises(ValueError):
        render_receding_clip(photo, ASTRONAUT_LANDMARKS, size=(100, 100))  # a 112 px face does not fit
    with pytest.raises(ValueError):
        render_receding_clip(photo, np.full((5, 2), np.nan))


def test_clip_written_to_file_reads_back_through_open_source(small_clip, tmp_path):
    path = small_clip.write(tmp_path / "clip.mp4")
    with open_source(path) as src:
        frames = [f for _, _, f in src]
    assert len(frames) == len(small_clip)
    assert np.abs(frames[0].astype(int) - small_clip.frames[0].astype(int)).mean() < 6  # mp4v is lossy
