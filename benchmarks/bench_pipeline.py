"""End-to-end speed: 1080p frames with 1, 4 and 16 faces, and identification latency against gallery size.

Two pipelines on the same frames, the same detector networks and the same embedding model, measured in one run:
  plain   (baseline) written the usual way with OpenCV + ONNX Runtime: MTCNN with numpy/PIL glue
          (benchmarks/mtcnn_reference.py), per face cv2.estimateAffinePartial2D + cv2.warpAffine, numpy
          normalisation, one ONNX Runtime call per face, brute-force numpy cosine over every template.
  crres   crres_sdk.Recognizer.identify: the C++ core for the pyramid, MTCNN glue and fused align+normalise,
          batched embedding, gallery-side resolution matching. Run on ONNX Runtime (same runtime as the
          baseline) and on the backend ``auto`` picks here.
Frames: scikit-image's astronaut face pasted N times at 90-140 px on a noisy 1920x1080 background.
Gallery cases: identify one face against galleries of G templates (5 per identity, random unit vectors plus the
astronaut), crres vs the plain brute-force search; for search alone up to 1M templates see bench_gallery.py.

    python -m benchmarks.bench_pipeline --json bench-results/pipeline.json [--model default] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from skimage import data

from benchmarks.common import Record, fill_speedups, machine, report, time_call
from benchmarks.mtcnn_reference import detect_reference
from crres_sdk import Gallery, ModelKey, Recognizer
from crres_sdk.backends import open_model
from crres_sdk.preprocess import ARCFACE_TEMPLATE


def make_frame(n_faces: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = rng.normal(100, 20, (1080, 1920, 3)).clip(0, 255).astype(np.uint8)
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[30:230, 120:330]  # head and shoulders
    cols = int(np.ceil(np.sqrt(n_faces)))
    for i in range(n_faces):
        size = int(rng.integers(90, 140))
        patch = cv2.resize(face, (size, int(size * face.shape[0] / face.shape[1])), interpolation=cv2.INTER_AREA)
        y = 60 + (i // cols) * 250 + int(rng.integers(0, 40))
        x = 80 + (i % cols) * 420 + int(rng.integers(0, 60))
        frame[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return frame


class PlainPipeline:
    """The usual way: per-face OpenCV alignment and per-face ONNX Runtime calls, brute-force search."""

    def __init__(self, rec: Recognizer, templates: np.ndarray, names: list[str], threads: int) -> None:
        self.detector = rec.detector
        path = rec.bundle.file("onnx", "fp32")
        self.session = open_model(path, "onnxruntime", threads)
        self.input = self.session.input_names[0]
        norm = rec.normalization
        self.swap = norm.color == "rgb"
        self.mean = np.float32(norm.mean)
        self.std = np.float32(norm.std)
        self.templates, self.names = templates, names

    def identify(self, frame: np.ndarray) -> list[tuple[str, float]]:
        found = detect_reference(self.detector, frame)
        out = []
        for lm in found.landmarks:
            matrix, _ = cv2.estimateAffinePartial2D(lm.astype(np.float32), ARCFACE_TEMPLATE.astype(np.float32),
                                                    method=cv2.LMEDS)
            crop = cv2.warpAffine(frame, matrix, (112, 112), flags=cv2.INTER_LINEAR)
            if self.swap:
                crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            x = ((crop.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
            emb = self.session.run({self.input: np.ascontiguousarray(x)})[0][0]
            emb /= np.linalg.norm(emb)
            scores = self.templates @ emb
            best = int(np.argmax(scores))
            out.append((self.names[best], float(scores[best])))
        return out


def random_gallery(path: Path, key: ModelKey, n_templates: int, rng: np.random.Generator,
                   rec: Recognizer) -> tuple[np.ndarray, list[str]]:
    """A gallery of n_templates (5 per identity at 112/56/28/14/7 px) plus the astronaut, enrolled for real."""
    levels = np.array([112.0, 56.0, 28.0, 14.0, 7.0])
    all_t, all_n = [], []
    with Gallery(path, key) as g:
        for i in range(n_templates // 5):
            t = rng.normal(size=(5, key.dim)).astype(np.float32)
            t /= np.linalg.norm(t, axis=1, keepdims=True)
            g.enroll(f"id{i:07d}", t, levels)
            all_t.append(t)
            all_n += [f"id{i:07d}"] * 5
    rec.gallery = Gallery(path, key)
    rec.enroll("astronaut", [cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)])
    for rec_ in rec.gallery.templates("astronaut"):
        all_t.append(rec_.vector[None])
        all_n.append("astronaut")
    return np.concatenate(all_t), all_n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json")
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--faces", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--gallery-sizes", type=int, nargs="*", default=[1_000, 100_000])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    records: list[Record] = []
    tmp = Path(tempfile.mkdtemp(prefix="crres-bench-pipeline-"))

    recs = {"crres-onnxruntime": Recognizer(args.model, backend="onnxruntime", threads=args.threads,
                                            gallery=tmp / "small.db")}
    auto = Recognizer(args.model, backend="auto", threads=args.threads, gallery=tmp / "small.db")
    if auto.backend != "onnxruntime":
        recs[f"crres-{auto.backend}"] = auto
    base_rec = recs["crres-onnxruntime"]
    templates, names = random_gallery(tmp / "small_seed.db", base_rec.model_key, 1_000, rng, base_rec)
    for rec in recs.values():
        rec.gallery = base_rec.gallery
    plain = PlainPipeline(base_rec, templates, names, args.threads)

    for n in args.faces:
        frame = make_frame(n, seed=n)
        found = len(base_rec.identify(frame))
        hits = sum(1 for f in base_rec.identify(frame) if f.identity == "astronaut")
        m, p90 = time_call(lambda: plain.identify(frame), args.repeats, warmup=1)
        records.append(Record("pipeline_1080p", f"{n} faces", "plain-opencv-ort", args.threads, m, p90,
                              extra={"faces_found": len(plain.identify(frame)), "fps": 1 / m}))
        for name, rec in recs.items():
            m, p90 = time_call(lambda: rec.identify(frame), args.repeats, warmup=1)
            records.append(Record("pipeline_1080p", f"{n} faces", name, args.threads, m, p90,
                                  baseline="plain-opencv-ort",
                                  extra={"faces_found": found, "identified": hits, "fps": 1 / m}))

    face_frame = make_frame(1, seed=1)
    for size in args.gallery_sizes:
        path = tmp / f"g{size}.db"
        templates, names = random_gallery(path, base_rec.model_key, size, rng, base_rec)
        plain.templates, plain.names = templates, names
        m, p90 = time_call(lambda: plain.identify(face_frame), args.repeats, warmup=1)
        records.append(Record("identify_gallery", f"{len(templates)} templates", "plain-opencv-ort", args.threads,
                              m, p90))
        m, p90 = time_call(lambda: base_rec.identify(face_frame), args.repeats, warmup=1)
        best = base_rec.identify(face_frame)[0]
        records.append(Record("identify_gallery", f"{len(templates)} templates", "crres-onnxruntime", args.threads,
                              m, p90, baseline="plain-opencv-ort",
                              extra={"identity": best.identity, "score": best.match_score}))
    fill_speedups(records)
    for r in records:
        r.extra.update(machine())
        r.extra["model"] = base_rec.bundle.name
    report(records, args.json, unit="ms")


if __name__ == "__main__":
    main()
