"""The camera model of the synthetic material: what a cheap CCTV camera does to the light that reaches it.

    from crres_demo.camera import camera_effects
    frame = camera_effects(scene_bgr, numpy.random.default_rng(0))

In this order: optical blur (Gaussian PSF, ``blur_sigma`` px), sensor noise (read noise ``noise_sigma`` grey
levels plus shot noise of variance ``shot_gain * I``), JPEG compression at ``jpeg_quality`` (OpenCV's encoder).
Every random draw comes from the generator passed in, so the output is a pure function of the inputs and the
generator's state.

Two users: the demo's receding clip (:mod:`crres_demo.clip`, every frame) and the synthetic surveillance probes
of the meet-in-the-middle evaluation (``evaluation.mitm.camera_probe``, at the probe's size). Not the gallery
degradations of meet-in-the-middle (``crres_sdk.mitm.degradations``, Grm et al. Table 1) nor the torch training
degradations (``training/degradations.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["camera_effects"]


def camera_effects(frame: np.ndarray, rng: np.random.Generator, *, blur_sigma: float = 0.8,
                   noise_sigma: float = 2.0, shot_gain: float = 0.03, jpeg_quality: int = 70) -> np.ndarray:
    """Optical blur, sensor noise (read + shot), then JPEG compression (see the module docstring)."""
    if blur_sigma < 0 or noise_sigma < 0 or shot_gain < 0:
        raise ValueError("blur_sigma, noise_sigma and shot_gain must be >= 0")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality!r}")
    x = frame.astype(np.float32)
    if blur_sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), blur_sigma)
    if noise_sigma > 0 or shot_gain > 0:
        std = np.sqrt(noise_sigma ** 2 + shot_gain * np.clip(x, 0, 255))
        x = x + rng.standard_normal(x.shape, dtype=np.float32) * std
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)
