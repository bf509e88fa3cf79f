"""The motion gate: run the face detector only where a camera's picture changed since the detector last looked.

Frigate and DeepStream run their detectors on motion regions rather than on every whole frame; this is the same
idea for MTCNN. Per camera, :class:`MotionGate` keeps a reference: the frame in grey, averaged over
``cell`` x ``cell`` pixel cells, as it was when the detector last ran over each cell. For a new frame,
:meth:`MotionGate.plan` returns

* ``None``: detect the whole frame (the first frame, a size change, more than ``max_area`` of the picture to look
  at, or ``full_every_s`` elapsed since the last whole-frame detection: a periodic safety net for changes below
  the threshold, e.g. slow drifts);
* ``[]``: nothing changed: the last detections still hold (the detector would see the same pixels);
* regions ``[(x1, y1, x2, y2), ...]``: the cells whose mean grey changed by more than ``threshold`` (0-255),
  grouped into connected blobs, each grown by ``margin`` px; a previous face that touches a region joins it
  (grown by half its width), so a face is always detected whole, never cut by a region's edge; overlapping
  regions are merged.

Faces from the last detection that touch no region are kept as they were (their pixels did not change); faces in
the regions come from detecting those crops. After the detection, :meth:`MotionGate.commit` updates the reference
where the detector looked (the whole frame, or the cells inside the regions).

Why it is safe: a cell is compared with what the detector last saw there, not with the previous frame, so slow
change accumulates until it crosses the threshold; sensor noise averages out over a cell (a 4 x 4 cell divides its
standard deviation by ~4); and every ``full_every_s`` the whole frame is detected anyway.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Cell size (px) of the motion grid: a 640x480 frame is compared as 160x120 cells.
CELL = 4
#: Pixels added around each changed blob before detecting it.
MARGIN = 32
#: Region widths and heights are rounded up to one of these (px; or to the whole frame): a few distinct crop
#: shapes, so inference backends that specialise per input shape (OpenVINO's CPU plugin caches kernels per
#: shape) keep a bounded set instead of growing with every new size.
SIZES = (32, 64, 96, 128, 192, 256, 320, 384, 448, 512, 576, 640, 768, 896, 1024, 1280, 1536, 1920, 2560, 3840)


class MotionGate:
    """The motion gate of one camera (see the module docstring)."""

    def __init__(self, threshold: float = 8.0, max_area: float = 0.5, full_every_s: float = 2.0, *,
                 cell: int = CELL, margin: int = MARGIN) -> None:
        self.threshold = float(threshold)
        self.max_area = float(max_area)
        self.full_every_s = float(full_every_s)
        self.cell = int(cell)
        self.margin = int(margin)
        self.ref: np.ndarray | None = None
        self.last_full = -float("inf")

    def small(self, image: np.ndarray) -> np.ndarray:
        """The frame in grey, averaged over cells (float32, H // cell x W // cell)."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape[:2]
        return cv2.resize(grey, (max(1, w // self.cell), max(1, h // self.cell)),
                          interpolation=cv2.INTER_AREA).astype(np.float32)

    def plan(self, image: np.ndarray, now: float, faces: list | None = None) -> tuple[list | None, np.ndarray]:
        """(regions to detect, the frame's cell image for :meth:`commit`): None = the whole frame, [] = nothing
        changed, else (x1, y1, x2, y2) int regions. ``faces``: boxes (x1, y1, x2, y2) of the last detections."""
        small = self.small(image)
        if self.ref is None or self.ref.shape != small.shape or now - self.last_full >= self.full_every_s:
            return None, small
        changed = np.abs(small - self.ref) > self.threshold
        if not changed.any():
            return [], small
        h, w = image.shape[:2]
        c, m = self.cell, self.margin
        n, _, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
        rects = [[x * c - m, y * c - m, (x + bw) * c + m, (y + bh) * c + m]
                 for x, y, bw, bh, _area in stats[1:n].tolist()]
        boxes = [] if faces is None else [[float(v) for v in b[:4]] for b in faces]
        rects = _merge(rects)
        while True:  # faces touching a region join it, whole (with half their width around them)
            grown = False
            for b in boxes:
                if any(_overlap(b, r) for r in rects):
                    pad = 0.5 * (b[2] - b[0])
                    fb = [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad]
                    if not any(_inside(fb, r) for r in rects):
                        rects = _merge(rects + [fb])
                        grown = True
            if not grown:
                break
        for _ in range(len(rects) + 1):  # quantised sizes can overlap again: merge and quantise until they do not
            rects = _merge([_quantise(r, w, h) for r in rects])
            if all(r == _quantise(r, w, h) for r in rects):
                break
        out = [tuple(int(v) for v in r) for r in rects if r[2] > r[0] and r[3] > r[1]]
        area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in out)
        if area > self.max_area * h * w:
            return None, small
        return out, small

    def commit(self, small: np.ndarray, regions: list | None, now: float) -> None:
        """The detector has looked at ``regions`` of the frame whose cell image is ``small`` (None: all of it)."""
        if regions is None or self.ref is None or self.ref.shape != small.shape:
            self.ref = small.copy()
            self.last_full = now
            return
        c = self.cell
        for x1, y1, x2, y2 in regions:  # only cells wholly inside a region were seen by the detector
            cx1, cy1 = -(-x1 // c), -(-y1 // c)
            cx2, cy2 = x2 // c, y2 // c
            if cx2 > cx1 and cy2 > cy1:
                self.ref[cy1:cy2, cx1:cx2] = small[cy1:cy2, cx1:cx2]


def _quantise(r: list, w: int, h: int) -> list:
    """``r`` clipped to the frame, its size rounded up to :data:`SIZES` (or the frame's), kept inside the frame."""
    out = []
    for lo, hi, limit in ((r[0], r[2], w), (r[1], r[3], h)):
        lo, hi = max(0, int(np.floor(lo))), min(limit, int(np.ceil(hi)))
        size = next((s for s in SIZES if s >= hi - lo), limit)
        if size >= limit:
            lo, hi = 0, limit
        else:
            lo = min(max(0, lo - (size - (hi - lo)) // 2), limit - size)
            hi = lo + size
        out.append((lo, hi))
    return [out[0][0], out[1][0], out[0][1], out[1][1]]


def _overlap(a: list, b: list) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(a: list, b: list) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def _merge(rects: list) -> list:
    """Union overlapping rectangles until none overlap."""
    rects = [list(r) for r in rects]
    merged = True
    while merged:
        merged = False
        out: list = []
        for r in rects:
            for o in out:
                if _overlap(r, o):
                    o[0], o[1] = min(o[0], r[0]), min(o[1], r[1])
                    o[2], o[3] = max(o[2], r[2]), max(o[3], r[3])
                    merged = True
                    break
            else:
                out.append(r)
        rects = out
    return rects
