"""training.prepare on a real face (skimage's astronaut) plus photos it must skip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def detector_available():
    from crres_sdk.detector import find_detector_bundle
    from crres_sdk.errors import BundleError

    try:
        find_detector_bundle()
    except BundleError as exc:
        pytest.skip(f"no detector bundle: {exc}")


def test_prepare_aligns_the_best_face_and_counts_skips(detector_available, tmp_path):
    from crres_sdk import FaceDetector, align_faces_uint8

    from training.prepare import main, prepare

    bgr = np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])  # 512x512, one face
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "eileen").mkdir(parents=True)
    (src / "nobody").mkdir()
    cv2.imwrite(str(src / "eileen" / "full.png"), bgr)
    cv2.imwrite(str(src / "eileen" / "small.jpg"), cv2.resize(bgr, (256, 256), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(src / "eileen" / "mirror.jpg"), bgr[:, ::-1])
    cv2.imwrite(str(src / "nobody" / "grey.jpg"), np.full((200, 200, 3), 127, np.uint8))
    (src / "nobody" / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")

    summary = prepare(src, dst, progress=False)
    assert summary["images"] == 5
    assert summary["faces_found"] == 3 and summary["written"] == 3
    assert summary["skipped_no_face"] == 1 and summary["skipped_unreadable"] == 1
    assert summary["identities"] == 1
    outs = sorted(p.name for p in (dst / "eileen").iterdir())
    assert outs == ["full.jpg", "mirror.jpg", "small.jpg"]
    assert not (dst / "nobody").exists()

    crop = cv2.imread(str(dst / "eileen" / "full.jpg"))
    assert crop.shape == (112, 112, 3)
    # Same crop as the SDK's own detect + align of the best face (up to JPEG loss).
    faces = FaceDetector(min_face=20).detect(bgr)
    best = max(faces, key=lambda f: f.score)
    ref = align_faces_uint8(bgr, np.asarray(best.landmarks, np.float32)[None])[0]
    assert np.abs(crop.astype(float) - ref).mean() < 4.0
    # The face is centred as the template puts it: the crop differs from a random 112 px patch.
    assert np.abs(crop.astype(float) - cv2.resize(bgr, (112, 112))).mean() > 10

    # Second run: existing crops are kept; the CLI prints a summary and writes JSON.
    js = tmp_path / "s.json"
    assert main([str(src), str(dst), "--no-progress", "--json", str(js)]) == 0
    again = json.loads(js.read_text())
    assert again["skipped_existing"] == 3 and again["written"] == 0


def test_prepare_errors(tmp_path):
    from training.prepare import main

    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
