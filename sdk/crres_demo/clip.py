"""Synthetic CCTV clips from one real face photo: the person walks away until the face is a few pixels across.

    from crres_demo.clip import render_receding_clip
    clip = render_receding_clip(photo_bgr, landmarks)     # 5-point landmarks of the face in the photo
    clip.frames[i], clip.face_px[i], clip.boxes[i], clip.landmarks[i]

What is rendered, and what is not:

* **Face size** is measured as the papers' resolution r in the template sense: ``r = 112 * d / 35.24`` with d
  the inter-ocular distance in frame pixels (:func:`crres_sdk.equivalent_resolution` of the true landmarks).
  For a face shaped like the template it is also the side, in frame pixels, of the square the aligned
  112 x 112 crop covers (the astronaut's crop square is 0.91 r: her mouth sits lower than the template's).
  Sizes fall geometrically from ``start_px`` to ``end_px`` (equal numbers of frames per halving of size; a
  schedule chosen for the demo, not a walker's physics).
* **The person** is a soft-edged head-and-shoulders cut-out of the photo (ellipses sized by the photo's eye
  distance, the torso fading out downwards), scaled about the scene's vanishing point, as a camera sees
  someone walk straight away from it. Antialiasing: the nearest level of a Gaussian pyramid (``cv2.pyrDown``)
  at or above twice the target scale, then a Gaussian prefilter of ``sigma = 0.5 * sqrt(k**2 - 1)`` for the
  remaining shrink factor k, then bilinear warping. No pose, lighting or motion-blur change: only distance
  changes.
* **The scene** is procedural (a wall with low-frequency texture, doors/windows, a floor with perspective
  lines), fixed by ``seed`` and identical in every frame: a static camera.
* **Camera effects**, per frame: :func:`crres_demo.camera.camera_effects` (optical blur, sensor noise, JPEG)
  with ``blur_sigma``, ``noise_sigma``, ``shot_gain`` and ``jpeg_quality``. All random draws come from
  ``numpy.random.default_rng(seed)``, so a clip is a pure function of its arguments.

Ground truth per frame: the true face size (``face_px``), the true 5-point ``landmarks`` and ``boxes``, the
axis-aligned square the aligned crop covers (what :meth:`Recognizer.faces_from` takes a box to mean).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from crres_demo.camera import camera_effects
from crres_sdk.preprocess import ARCFACE_TEMPLATE, TEMPLATE_INTEROCULAR, TEMPLATE_SIZE, estimate_similarity

__all__ = ["SyntheticClip", "receding_sizes", "render_receding_clip", "render_scene"]


@dataclass
class SyntheticClip:
    """Frames (uint8 BGR) and their ground truth; see the module docstring."""

    frames: list[np.ndarray]
    face_px: np.ndarray        # (T,) true face size r (template sense), px
    boxes: np.ndarray          # (T, 4) [x1, y1, x2, y2]: the square the aligned 112 x 112 crop covers
    landmarks: np.ndarray      # (T, 5, 2) true landmarks in frame pixels
    fps: float
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the frames as an mp4v video; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = self.frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cannot write {path} with the mp4v codec")
        try:
            for frame in self.frames:
                writer.write(frame)
        finally:
            writer.release()
        return path


def receding_sizes(n_frames: int, start_px: float = 112.0, end_px: float = 8.0) -> np.ndarray:
    """(n_frames,) sizes falling geometrically from ``start_px`` to ``end_px`` (both included)."""
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 2:
        raise ValueError(f"n_frames must be an int >= 2, got {n_frames!r}")
    if not (math.isfinite(start_px) and math.isfinite(end_px) and start_px > end_px >= 2):
        raise ValueError(f"sizes must satisfy start_px > end_px >= 2, got {start_px!r} -> {end_px!r}")
    return np.geomspace(float(start_px), float(end_px), int(n_frames))


def render_scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A plain indoor scene (uint8 BGR): textured wall, doors/windows, floor with perspective lines."""
    if width < 32 or height < 32:
        raise ValueError(f"scene must be at least 32 x 32, got {width} x {height}")
    rng = np.random.default_rng(seed)
    horizon = _horizon(height)
    wall_colour = rng.uniform(150, 200, 3)
    floor_colour = rng.uniform(70, 110, 3)
    scene = np.empty((height, width, 3), np.float32)
    ramp = np.linspace(1.05, 0.9, height, dtype=np.float32)[:, None, None]
    scene[:] = wall_colour.astype(np.float32) * ramp
    scene[horizon:] = floor_colour.astype(np.float32) * ramp[horizon:]
    # Low-frequency blotches (paint, dirt, uneven light) and fine grain.
    blotch = cv2.resize(rng.normal(0, 10, (max(height // 40, 2), max(width // 40, 2))).astype(np.float32),
                        (width, height), interpolation=cv2.INTER_CUBIC)
    scene += blotch[..., None]
    # Doors and windows on the wall, away from the middle third where the person walks.
    for _ in range(int(rng.integers(3, 6))):
        w = int(rng.uniform(0.06, 0.14) * width)
        h = int(rng.uniform(0.25, 0.5) * horizon)
        x = int(rng.choice([rng.uniform(0.02, 0.3), rng.uniform(0.62, 0.9)]) * width)
        y = int(horizon - h - rng.uniform(0, 0.25) * horizon)
        shade = rng.uniform(0.55, 1.25)
        cv2.rectangle(scene, (x, max(y, 0)), (x + w, horizon), (wall_colour * shade).tolist(), -1)
        cv2.rectangle(scene, (x, max(y, 0)), (x + w, horizon), (wall_colour * 0.45).tolist(), 2)
    # Floor tiles converging to a vanishing point.
    vx = width * 0.55
    for k in range(-12, 13):
        cv2.line(scene, (int(vx), horizon), (int(vx + k * width * 0.18), height), (floor_colour * 0.7).tolist(), 1,
                 cv2.LINE_AA)
    for k in range(1, 8):
        y = int(horizon + (height - horizon) * (k / 8) ** 1.8)
        cv2.line(scene, (0, y), (width, y), (floor_colour * 0.75).tolist(), 1, cv2.LINE_AA)
    cv2.line(scene, (0, horizon), (width, horizon), (wall_colour * 0.4).tolist(), 2)
    scene += rng.normal(0, 2.0, scene.shape).astype(np.float32)
    return np.clip(scene, 0, 255).astype(np.uint8)


def _horizon(height: int) -> int:
    return int(height * 0.62)


def _person_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Soft head-and-shoulders mask (float32 in [0, 1]) of a photo, sized by its eye distance."""
    eyes = landmarks[:2]
    centre = eyes.mean(0)
    d = float(np.linalg.norm(eyes[1] - eyes[0]))
    mask = np.zeros(shape, np.float32)
    for (dx, dy), (ax, ay) in (((0.0, 0.45), (1.8, 2.4)), ((0.0, 2.9), (0.9, 1.2)), ((0.0, 6.6), (4.6, 4.2))):
        cv2.ellipse(mask, (int(round(centre[0] + dx * d)), int(round(centre[1] + dy * d))),
                    (int(round(ax * d)), int(round(ay * d))), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    # Fade the torso out downwards: the photo has no legs, so the cut-out ends softly rather than in a hard edge.
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    fade = np.clip((centre[1] + 9.0 * d - rows) / (4.0 * d), 0.0, 1.0)
    return cv2.GaussianBlur(mask, (0, 0), max(0.12 * d, 0.5)) * fade


def render_receding_clip(photo: np.ndarray, landmarks: np.ndarray, *, n_frames: int = 60,
                         start_px: float = 112.0, end_px: float = 8.0, size: tuple[int, int] = (640, 360),
                         fps: float = 10.0, blur_sigma: float = 0.8, noise_sigma: float = 2.0,
                         shot_gain: float = 0.03, jpeg_quality: int = 70, seed: int = 0) -> SyntheticClip:
    """Render the clip (see the module docstring).

    Args:
        photo: uint8 H x W x 3 BGR photo of one person.
        landmarks: (5, 2) landmarks of the face in the photo (left eye, right eye, nose, mouth corners).
        n_frames, start_px, end_px: the size schedule (:func:`receding_sizes`).
        size: (width, height) of the frames.
        fps: nominal frame rate (timestamps of the clip and of a written video).
        blur_sigma, noise_sigma, shot_gain, jpeg_quality: camera effects (:func:`camera_effects`).
        seed: fixes the scene and every frame's noise.
    """
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3 \
            or photo.shape[0] < 16 or photo.shape[1] < 16:
        raise ValueError("photo must be a uint8 H x W x 3 BGR array of at least 16 x 16")
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be a finite (5, 2) array, got shape {lm.shape}")
    d_photo = float(np.linalg.norm(lm[1] - lm[0]))
    if d_photo < 4:
        raise ValueError(f"the photo's eyes are {d_photo:.1f} px apart; need a face of at least 4 px eye distance")
    width, height = (int(v) for v in size)
    if width < 64 or height < 64:
        raise ValueError(f"size must be at least 64 x 64, got {size}")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps!r}")
    sizes = receding_sizes(n_frames, start_px, end_px)
    if start_px > min(width, height):
        raise ValueError(f"a {start_px:g} px face does not fit in a {width} x {height} frame")

    scene = render_scene(width, height, seed).astype(np.float32)
    horizon = _horizon(height)
    vanishing = np.array([width * 0.55, float(horizon)])
    # The eye centre of the first (largest) frame; every frame is the photo scaled about the vanishing point,
    # which is what a camera sees of a person walking straight away from it (camera a little below eye level).
    s0 = (sizes[0] * TEMPLATE_INTEROCULAR / TEMPLATE_SIZE) / d_photo
    first_eyes = np.array([width * 0.40, horizon - 0.55 * sizes[0]])
    # Photo: an antialiased pyramid (each level a 2x shrink), RGBA with the soft person mask as alpha.
    rgba = np.dstack([photo.astype(np.float32), _person_mask(photo.shape[:2], lm)])
    pyramid = [rgba]
    while min(pyramid[-1].shape[:2]) >= 32:
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    eye_centre = lm[:2].mean(0)
    rng = np.random.default_rng(seed + 1)
    frames, boxes, marks = [], [], []
    for r in sizes:
        s = (r * TEMPLATE_INTEROCULAR / TEMPLATE_SIZE) / d_photo  # photo px -> frame px
        eyes_at = vanishing + (first_eyes - vanishing) * (s / s0)
        level = min(max(int(math.floor(math.log2(1.0 / s))) - 1, 0), len(pyramid) - 1) if s < 1 else 0
        src = pyramid[level]
        s_level = s * 2 ** level
        k = 1.0 / s_level
        sigma = 0.5 * math.sqrt(k * k - 1.0) if k > 1.0 else 0.0
        if sigma > 0.05:
            src = cv2.GaussianBlur(src, (0, 0), sigma)
        centre_level = eye_centre / 2 ** level  # pyrDown: level pixel i samples source pixel 2i
        m = np.array([[s_level, 0.0, eyes_at[0] - s_level * centre_level[0]],
                      [0.0, s_level, eyes_at[1] - s_level * centre_level[1]]])
        warped = cv2.warpAffine(src, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = warped[..., 3:4]
        composite = np.clip(scene * (1.0 - alpha) + warped[..., :3] * alpha, 0, 255)
        frames.append(camera_effects(composite, rng, blur_sigma=blur_sigma, noise_sigma=noise_sigma,
                                     shot_gain=shot_gain, jpeg_quality=jpeg_quality))
        frame_lm = (lm - eye_centre) * s + eyes_at
        marks.append(frame_lm)
        boxes.append(_crop_square(frame_lm))
    return SyntheticClip(
        frames=frames, face_px=sizes.copy(), boxes=np.array(boxes), landmarks=np.array(marks), fps=float(fps),
        settings={"n_frames": int(n_frames), "start_px": float(start_px), "end_px": float(end_px),
                  "size": [width, height], "fps": float(fps), "blur_sigma": blur_sigma, "noise_sigma": noise_sigma,
                  "shot_gain": shot_gain, "jpeg_quality": int(jpeg_quality), "seed": int(seed)})


def _crop_square(landmarks: np.ndarray) -> np.ndarray:
    """[x1, y1, x2, y2] of the axis-aligned square with the aligned crop's centre and side."""
    m = estimate_similarity(landmarks, ARCFACE_TEMPLATE)  # frame -> template
    scale = math.hypot(m[0, 0], m[1, 0])
    a = m[:, :2]
    centre = np.linalg.solve(a, np.array([TEMPLATE_SIZE / 2, TEMPLATE_SIZE / 2]) - m[:, 2])
    half = TEMPLATE_SIZE / scale / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
