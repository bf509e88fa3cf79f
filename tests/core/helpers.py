"""Shared helpers for the core tests: random similarity transforms and frames."""

from __future__ import annotations

import numpy as np

from crres_sdk import ARCFACE_TEMPLATE


def similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    """(2, 3) matrix of x -> scale * R(angle) x + t."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def face_landmarks(rng: np.random.Generator, frame_hw: tuple[int, int], n: int, scale=(0.3, 3.0), angle=0.6):
    """n landmark sets: the template under random similarity maps, roughly inside a frame of frame_hw."""
    h, w = frame_hw
    out = []
    for _ in range(n):
        s = rng.uniform(*scale)
        centre = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        m = similarity(s, rng.uniform(-angle, angle), 0.0, 0.0)
        out.append(apply(m, ARCFACE_TEMPLATE - 56.0) + centre)
    return np.stack(out)


def random_frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
