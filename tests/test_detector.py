"""MTCNN detector: real faces, sizes down to the minimum, empty scenes, bad input, and parity of the C++ glue
with the numpy/PIL reference (benchmarks/mtcnn_reference.py).

Parity tolerance: boxes and landmarks within 1e-2 px and scores within 1e-5 of the reference (the two share
networks and resampling definitions; only float32-vs-float64 box arithmetic differs)."""

import cv2
import numpy as np
import pytest

from benchmarks.mtcnn_reference import detect_reference
from crres_sdk.backends import available_backends
from crres_sdk.bundle import load_bundle
from crres_sdk.detector import Detections, FaceDetector, find_detector_bundle, pyramid_scales
from crres_sdk.errors import BundleError
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr


try:
    find_detector_bundle()
    HAVE_BUNDLE = True
except BundleError:
    HAVE_BUNDLE = False
needs_bundle = pytest.mark.skipif(not HAVE_BUNDLE, reason="detector bundle missing: run `make setup`")



@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut():
    return astronaut_bgr()


def _face_at_width(frame: np.ndarray, width_px: float) -> np.ndarray:
    """The astronaut's face (box ~84 px wide at full size) shrunk to ~width_px on a grey canvas."""
    face = frame[40:200, 150:290]
    s = width_px / 84.0
    small = cv2.resize(face, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    canvas = np.full((small.shape[0] + 60, small.shape[1] + 80, 3), 128, np.uint8)
    canvas[30:30 + small.shape[0], 40:40 + small.shape[1]] = small
    return canvas


@needs_bundle
def test_finds_the_astronaut_with_landmarks_in_place(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    np.testing.assert_allclose(face.landmarks, ASTRONAUT_LANDMARKS, atol=5.0)
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lx < nx < rx and max(ly, ry) < ny < min(mly, mry)  # eyes above nose above mouth, left to right
    x1, y1, x2, y2 = face.box
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))
    eye_distance = np.hypot(rx - lx, ry - ly)
    assert face.equivalent_resolution == pytest.approx(112 * eye_distance / 35.24, rel=1e-3)


@needs_bundle
@pytest.mark.parametrize("width", [80, 40, 24, 16, 12])
def test_face_is_found_down_to_the_minimum_size(detector, astronaut, width):
    faces = detector.detect(_face_at_width(astronaut, width))
    assert len(faces) == 1
    assert faces[0].width == pytest.approx(width, rel=0.25)


@needs_bundle
def test_min_face_below_12_upsamples_and_finds_smaller_faces(astronaut):
    assert pyramid_scales(100, 100, 6, 0.709)[0] == 2.0          # the first level is the frame at x2
    tiny = _face_at_width(astronaut, 6)
    assert len(FaceDetector(min_face=12, estimate_resolution=False).detect(tiny)) == 0
    found = FaceDetector(min_face=6, estimate_resolution=False).detect(tiny)
    assert len(found) == 1 and found[0].width == pytest.approx(6, rel=0.25)
    # on a frame near max_pixels the upsampling shrinks so the first level stays within it
    d = FaceDetector(min_face=6, estimate_resolution=False, max_pixels=200 * 200)
    seen = []
    d._detect_arrays = lambda frame, min_face: seen.append(min_face) or Detections.empty()
    d.detect_arrays(np.zeros((200, 200, 3), np.uint8))
    d.detect_arrays(np.zeros((100, 100, 3), np.uint8))
    assert seen == [pytest.approx(12.0), pytest.approx(6.0)]


@needs_bundle
def test_larger_min_face_skips_small_faces(astronaut):
    assert len(FaceDetector(min_face=40).detect(_face_at_width(astronaut, 16))) == 0
    assert len(FaceDetector(min_face=40).detect(_face_at_width(astronaut, 60))) == 1


@needs_bundle
def test_nothing_in_blank_or_noise(detector):
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert detector.detect(np.full((240, 320, 3), 200, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than any face


@needs_bundle
def test_two_faces(detector, astronaut):
    pair = np.ascontiguousarray(np.hstack([astronaut, astronaut[:, ::-1]]))
    faces = detector.detect(pair)
    assert len(faces) == 2
    assert sorted(f.box[0] < 512 for f in faces) == [False, True]


@needs_bundle
@pytest.mark.parametrize(
    "frame, error, words",
    [
        (np.zeros((64, 64), np.uint8), ValueError, "(H, W, 3)"),
        (np.zeros((0, 64, 3), np.uint8), ValueError, "image is empty"),
        (np.zeros((64, 64, 3), np.float32), TypeError, "image must be uint8"),
        (np.zeros((64, 64, 4), np.uint8), ValueError, "3 channels"),
        ("frame.jpg", TypeError, "numpy.ndarray"),
    ],
)
def test_bad_frames(detector, frame, error, words):
    with pytest.raises(error, match=__import__("re").escape(words)):
        detector.detect(frame)


def test_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="min_face must be >= 6"):
        FaceDetector(min_face=5)
    with pytest.raises(TypeError, match="min_face must be an int"):
        FaceDetector(min_face=12.5)
    with pytest.raises(BundleError, match="make setup"):
        FaceDetector(bundle=tmp_path)
    if HAVE_BUNDLE:
        with pytest.raises(ValueError, match="thresholds must be 3 probabilities"):
            FaceDetector(thresholds=(0.6, 0.7))
        with pytest.raises(ValueError, match="backend must be"):
            FaceDetector(backend="cuda-magic")


@needs_bundle
def test_tampered_bundle_is_refused(tmp_path):
    import shutil

    shutil.copytree(find_detector_bundle(), tmp_path / "b")
    with open(tmp_path / "b" / "rnet.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(BundleError, match="does not match its sha256"):
        load_bundle(tmp_path / "b")


def test_pyramid_scales():
    scales = pyramid_scales(480, 640, 12, 0.709)
    assert scales[0] == 1.0 and all(b == pytest.approx(a * 0.709) for a, b in zip(scales, scales[1:]))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert pyramid_scales(480, 640, 24, 0.709)[0] == 0.5
    assert pyramid_scales(10, 10, 12, 0.709) == []


# ---- parity of the C++ glue with the numpy reference -----------------------------------------------------

@needs_bundle
@pytest.mark.parametrize("width", [None, 40, 14])
def test_core_glue_matches_reference(detector, astronaut, width):
    frame = astronaut if width is None else _face_at_width(astronaut, width)
    ours, ref = detector.detect_arrays(frame), detect_reference(detector, frame)
    assert len(ours.scores) == len(ref.scores) >= 1
    np.testing.assert_allclose(ours.boxes, ref.boxes, atol=1e-2)
    np.testing.assert_allclose(ours.landmarks, ref.landmarks, atol=1e-2)
    np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-5)


@needs_bundle
@pytest.mark.parametrize("backend", available_backends())
def test_every_installed_backend_gives_the_same_faces(astronaut, backend):
    reference = FaceDetector(backend="onnxruntime", estimate_resolution=False).detect_arrays(astronaut)
    other = FaceDetector(backend=backend, estimate_resolution=False)
    assert other.backend == backend
    found = other.detect_arrays(astronaut)
    assert len(found.scores) == len(reference.scores) == 1
    np.testing.assert_allclose(found.boxes, reference.boxes, atol=0.05)
    np.testing.assert_allclose(found.landmarks, reference.landmarks, atol=0.05)
