"""A straightforward MTCNN in numpy + PIL/OpenCV glue: the reference the C++ glue is checked against.

Same networks (the detector bundle's ONNX files via crres_sdk.backends), same steps and conventions as
crres_sdk.detector, written plainly: PIL's antialiased BILINEAR for the pyramid (each level from the previous
one) and candidate crops, numpy
greedy NMS, numpy box arithmetic in float64. Used by tests/test_detector.py (parity) and
benchmarks/bench_detect.py (to show the C++ core's share of the time).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from crres_sdk.detector import Detections, FaceDetector, pyramid_scales


def _normalise(rgb_u8: np.ndarray) -> np.ndarray:
    return ((rgb_u8.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None].copy()


def _nms(boxes: np.ndarray, threshold: float, mode: str) -> np.ndarray:
    order = np.argsort(-boxes[:, 4], kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        denom = area[i] + area[rest] - inter if mode == "iou" else np.minimum(area[i], area[rest])
        order = rest[inter / denom <= threshold]
    return np.array(keep, dtype=np.int64)


def _refine(boxes: np.ndarray, square: bool) -> np.ndarray:
    out = boxes.copy()
    w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
    out[:, 0:4] += out[:, 5:9] * np.stack([w, h, w, h], 1)
    out[:, 5:9] = 0
    if square:
        w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
        side = np.maximum(w, h)
        out[:, 0] += 0.5 * (w - side)
        out[:, 1] += 0.5 * (h - side)
        out[:, 2] = out[:, 0] + side
        out[:, 3] = out[:, 1] + side
    return out


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    out = []
    for x1, y1, x2, y2 in boxes[:, :4]:
        x0, y0 = math.floor(x1), math.floor(y1)
        xe, ye = max(math.ceil(x2), x0 + 1), max(math.ceil(y2), y0 + 1)
        region = np.zeros((ye - y0, xe - x0, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(xe, w), min(ye, h)
        if sx0 < sx1 and sy0 < sy1:
            region[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        out.append(_normalise(np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.BILINEAR)))[0])
    return np.stack(out)


def detect_reference(detector: FaceDetector, frame_bgr: np.ndarray) -> Detections:
    """MTCNN on `frame_bgr` using `detector`'s networks and settings, with numpy/PIL glue."""
    nets = detector._nets
    t1, t2, t3 = detector.thresholds
    rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
    h, w = rgb.shape[:2]
    stage1 = []
    level = rgb
    for scale in pyramid_scales(h, w, detector.min_face, detector.factor):
        # each level resampled from the one before (the first from the frame), as the core does
        size = (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))
        level = np.asarray(Image.fromarray(level).resize(size, Image.Resampling.BILINEAR))
        prob, reg = nets["pnet"].run({"image": _normalise(level)})
        i, j = np.nonzero(prob[0, 1] >= t1)
        boxes = np.stack([2 * j / scale, 2 * i / scale, (2 * j + 12) / scale, (2 * i + 12) / scale,
                          prob[0, 1, i, j], *reg[0][:, i, j]], 1).astype(np.float32).reshape(-1, 9)
        stage1.append(boxes[_nms(boxes, 0.5, "iou")])
    boxes = np.concatenate(stage1) if stage1 else np.zeros((0, 9), np.float32)
    if not len(boxes):
        return Detections.empty()
    boxes = _refine(boxes[_nms(boxes, 0.7, "iou")], True)

    prob, reg = nets["rnet"].run({"image": _crops(rgb, boxes, 24)})
    keep = prob[:, 1] > t2
    boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2], reg[keep]], 1)
    if not len(boxes):
        return Detections.empty()
    boxes = _refine(boxes[_nms(boxes, 0.7, "iou")], True)

    prob, reg, marks = nets["onet"].run({"image": _crops(rgb, boxes, 48)})
    keep = prob[:, 1] > t3
    boxes, marks = np.concatenate([boxes[keep, :4], prob[keep, 1:2], reg[keep]], 1), marks[keep]
    if not len(boxes):
        return Detections.empty()
    bw, bh = boxes[:, 2:3] - boxes[:, 0:1], boxes[:, 3:4] - boxes[:, 1:2]
    landmarks = np.stack([boxes[:, 0:1] + marks[:, :5] * bw, boxes[:, 1:2] + marks[:, 5:] * bh], 2)
    boxes = _refine(boxes, False)
    final = _nms(boxes, 0.7, "min")
    return Detections(boxes[final, :4].astype(np.float32), boxes[final, 4].astype(np.float32),
                      landmarks[final].astype(np.float32))
