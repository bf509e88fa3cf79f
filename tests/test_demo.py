"""`make demo` end to end: examples/demo.py in a subprocess on the default model (skipped without one), plus the
events a real Recognizer writes through VideoPipeline on a tiny synthetic clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crres_sdk.errors import BundleError
from crres_sdk.recognizer import find_model_bundle

ROOT = Path(__file__).resolve().parents[1]


def _default_model() -> Path:
    try:
        return find_model_bundle("default")
    except BundleError as exc:
        pytest.skip(f"no default embedding model bundle ({exc})")


def test_demo_end_to_end(tmp_path):
    _default_model()
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(out), "--frames", "16",
                           "--distractors", "4", "--quiet"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("demo.mp4", "demo_boxes.mp4", "events.jsonl", "events_boxes.jsonl", "summary.json"):
        assert (out / name).stat().st_size > 0, name
        assert str(out / name) in proc.stdout  # the demo says where its files are
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert len(rows) == 16 and rows[0]["face_px"] == 112 and rows[-1]["face_px"] == 8
    assert summary["gallery"]["identities"] == 1 + sum(d["enrolled"] for d in summary["gallery"]["distractors"])
    # The first frame shows the enrolled person at 112 px: both paths must find and recognise her.
    assert rows[0]["detected"]
    assert rows[0]["detector"]["identity"] == "astronaut"
    assert rows[0]["boxes"]["identity"] == "astronaut"
    # An 8 px face is beyond MTCNN (12 px window); the caller-supplied boxes path still scores it against the
    # gallery and decides by the manifest's threshold at its resolution: match exactly when score > threshold,
    # and a match can only name the person shown.
    last = rows[-1]["boxes"]
    assert not rows[-1]["detected"]
    assert isinstance(last["score"], float) and -1.0 <= last["score"] <= 1.0
    assert isinstance(last["threshold"], float)
    # below the lowest calibrated resolution (7 px, effective) the SDK names nobody: "too-small"
    assert last["decision"] in ("too-small", "match" if last["score"] > last["threshold"] else "unknown")
    assert (last["identity"] is not None) == (last["decision"] == "match")
    assert last["identity"] in (None, "astronaut")
    assert last["astronaut_score"] is not None and last["best_distractor_score"] is not None
    assert summary["detection"]["lost_below_px"] is not None
    # Events: JSON lines with a start, a face per detected frame and an end that is the run's summary.
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    faces = [e for e in events if e["type"] == "face"]
    assert len(faces) >= summary["detection"]["frames_with_face"]
    assert events[-1]["frames_processed"] == 16
    box_faces = [json.loads(line) for line in (out / "events_boxes.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "face" for e in box_faces) == 16
    if summary["files"]["plot"] is not None:
        assert (out / "score_vs_size.png").stat().st_size > 10_000
    import cv2
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    cap.release()


def test_pipeline_with_real_model_on_a_tiny_clip(tmp_path):
    model = _default_model()
    from crres_demo.clip import render_receding_clip
    from crres_sdk import Recognizer
    from crres_sdk.video import FrameSource, VideoPipeline
    from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr

    with Recognizer(model, gallery=tmp_path / "g.db") as rec:
        rec.enroll("astronaut", astronaut_bgr())
        clip = render_receding_clip(astronaut_bgr(), ASTRONAUT_LANDMARKS, n_frames=4, start_px=112, end_px=60,
                                    size=(320, 240))
        events = tmp_path / "e.jsonl"
        summary = VideoPipeline(rec).run(FrameSource(clip.frames, fps=clip.fps), events=events, progress=False)
    faces = [json.loads(line) for line in events.read_text().splitlines()]
    faces = [e for e in faces if e["type"] == "face"]
    assert [e["frame"] for e in faces] == [0, 1, 2, 3]           # one face per frame, 112 -> 60 px
    assert {e["track_id"] for e in faces} == {1}
    assert faces[0]["identity"] == "astronaut" and faces[0]["decision"] == "match"
    for e in faces:
        box = np.array(e["box"])
        assert 0 < e["equivalent_resolution"] <= 140 and e["probe_resolution"] <= e["equivalent_resolution"]
        assert box[2] > box[0] and box[3] > box[1]
        assert e["track"]["frames"] == e["frame"] + 1
    assert summary["tracks"][0]["faces"] == 4
