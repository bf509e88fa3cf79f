"""The core releases the GIL while it works, so a camera app's other Python threads keep running."""

import threading
import time

import numpy as np

from crres_sdk import align_faces, degrade

from .helpers import face_landmarks, random_frame


def _python_runs_during(call) -> bool:
    window = {}

    def worker():
        window["start"] = time.perf_counter()
        call()
        window["end"] = time.perf_counter()

    ticks = []
    thread = threading.Thread(target=worker)
    thread.start()
    while thread.is_alive():
        ticks.append(time.perf_counter())
    thread.join()
    # Ticks well inside the call's window can only happen if the call let go of the GIL.
    margin = 0.1 * (window["end"] - window["start"])
    return any(window["start"] + margin < t < window["end"] - margin for t in ticks)


def test_align_releases_the_gil():
    rng = np.random.default_rng(0)
    frame = random_frame(rng, 720, 1280)
    landmarks = face_landmarks(rng, (720, 1280), 3000)
    assert _python_runs_during(lambda: align_faces(frame, landmarks))


def test_degrade_releases_the_gil():
    crops = np.random.default_rng(1).integers(0, 256, (600, 112, 112, 3), dtype=np.uint8)
    assert _python_runs_during(lambda: degrade(crops, 9))
