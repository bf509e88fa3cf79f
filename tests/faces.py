"""A real face for tests: scikit-image's astronaut (ships with scikit-image) and its hand-annotated landmarks."""

import numpy as np
from skimage import data

#: Left eye, right eye, nose tip, left and right mouth corners, in image pixels (annotated by hand).
ASTRONAUT_LANDMARKS = np.array([[204.3, 101.0], [246.0, 102.7], [226.0, 125.0], [206.7, 141.7], [244.0, 140.0]])


def astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])
