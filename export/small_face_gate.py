"""INT8 accuracy gate on a small real face set that ships with scikit-image (runs anywhere, CI included).

What the set is. ``skimage.data.lfw_subset()`` holds 100 real LFW face crops (25x25 grayscale; the other 100 images
are non-faces and are not used). They carry no identity labels. Each face is aligned to the model's template with
``crres_sdk`` (one fixed set of five landmarks in the 25x25 frame: :data:`LANDMARKS_25`) at its own scale, about
28 px of equivalent resolution, and brought to 112 by the SDK's resolution-matched warp (:data:`RESAMPLE`, kept
when the SDK's default became one bicubic warp, so gate figures stay comparable across bundles), so view A of face i is
the 28 px face. View B is the same photo mirrored, its alignment jittered (rotation, scale, shift), degraded with
``crres_sdk.degrade`` to a size drawn in the band. Pairs per band: genuine (A_i, B_i at r) and impostor (A_i,
B_j at r, j a fixed derangement of i), 100 + 100 per round, :data:`ROUNDS` rounds with fresh sizes and jitter.

What it is not. Not LFW accuracy, nor any verification benchmark: a genuine pair is one photo against its own
mirrored, degraded copy (easier than two photos of a person), the impostor labels assume the 100 crops are 100
different people (skimage does not say; LFW's most frequent people could appear twice), and no face is larger than
~28 px, so only the low (5-10) and mid (11-24) bands are covered. It answers one question: does INT8 change the
verification decisions of this model on real faces? The two larger real faces the dependencies ship
(``skimage.data.astronaut()``, matplotlib's ``grace_hopper.jpg``) are two identities, too few for a band.

The rule. Each model (FP32, INT8) gets its own accuracy-maximising threshold per band (the SDK uses each file's
own thresholds, manifest ``thresholds.by_file``). A pair is *lost* when FP32 decides it right and INT8 wrong,
*gained* the other way round. A band fails when INT8's net loss is more than ``tolerance_pp`` points of the
band's pairs AND more than chance explains: the one-sided exact sign test (McNemar) on the discordant pairs gives
p < :data:`ALPHA` for "INT8 loses at least this many of them". With 400 pairs a band, one to four lost pairs
and none gained pass (p >= 0.0625); five fail (p = 0.031, 1.25 pp).

    python -m export.small_face_gate --bundle models/crres_default [--file onnx/int8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from crres_sdk.preprocess import TEMPLATE_SIZE

SET_NAME = "skimage-lfw-subset"
#: Five landmarks (left eye, right eye, nose, mouth corners) of the lfw_subset faces in their 25x25 frame: the
#: median over the 100 faces of crres_sdk's MTCNN landmarks (:func:`measure_landmarks` reproduces it; every face
#: was detected, spread between faces ~1-2 px). One fixed frame: the crops are centred alike by LFW's cropping.
LANDMARKS_25 = np.array([[6.42, 8.92], [15.17, 8.58], [10.66, 13.81], [7.59, 18.42], [14.84, 18.01]])
#: Edge pixels replicated around each 25x25 crop so the aligned 112 crop has no black border.
PAD = 12
BANDS: dict[str, tuple[int, int]] = {"low": (5, 10), "mid": (11, 24)}
ROUNDS = 2
ALPHA = 0.05
N_FACES = 100
#: The alignment the views are made with (resolution-matched: the gate measured the shipped bundles so).
RESAMPLE = "matched"
DESCRIPTION = (f"{SET_NAME}: scikit-image's 100 real LFW face crops (25x25 grayscale, ~28 px equivalent "
               "resolution, no identity labels) aligned with crres_sdk; genuine = a face against its own mirrored, "
               "jitter-aligned copy degraded to the band, impostor = against another face's such copy. It tests "
               "whether INT8 changes verification decisions on real faces; it is not LFW accuracy.")
RULE = ("per band, each model at its own accuracy-maximising threshold: fail when INT8's net loss of correctly "
        f"decided pairs exceeds tolerance_pp AND the one-sided exact sign test on the discordant pairs gives p < "
        f"{ALPHA}")


@dataclass
class FaceSet:
    crops: np.ndarray                                   # (2 * N_FACES, 112, 112, 3) uint8 BGR: views A, then B
    first: dict[str, np.ndarray]                        # band -> index of view A per pair (TEMPLATE_SIZE)
    second: dict[str, np.ndarray]                       # band -> index of view B per pair
    sizes: dict[str, np.ndarray]                        # band -> resolution of view B per pair
    issame: dict[str, np.ndarray]                       # band -> genuine?
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        return int(sum(len(v) for v in self.issame.values()))


def available() -> str | None:
    """None when the set can be built here, else why not (scikit-image is in the checkout's dev group)."""
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        return "scikit-image is not installed (pip install scikit-image)"
    return None


def load_faces() -> np.ndarray:
    """The 100 face crops of ``skimage.data.lfw_subset()`` as (100, 25, 25) uint8 (its last 100 are non-faces)."""
    from skimage.data import lfw_subset

    data = lfw_subset()
    return np.clip(np.rint(data[:N_FACES] * 255.0), 0, 255).astype(np.uint8)


def _padded_bgr(face: np.ndarray) -> np.ndarray:
    g = np.pad(face, PAD, mode="edge")
    return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))


def _jitter(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small random similarity about the landmarks' centre: +-6 degrees, +-5 % scale, +-0.5 px shift."""
    angle = np.deg2rad(rng.uniform(-6.0, 6.0))
    scale = rng.uniform(0.95, 1.05)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    centre = points.mean(0)
    return (points - centre) @ np.array([[c, s], [-s, c]]) + centre + rng.uniform(-0.5, 0.5, 2)


def build(seed: int = 0, faces: np.ndarray | None = None) -> FaceSet:
    """The pairs described in the module docstring (deterministic for a seed)."""
    from crres_sdk import align_faces_uint8

    faces = load_faces() if faces is None else faces
    n = len(faces)
    rng = np.random.default_rng([seed, 17])
    points = LANDMARKS_25 + PAD
    width = 25 + 2 * PAD
    mirrored = points.copy()
    mirrored[:, 0] = (width - 1) - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # a mirrored left eye is the right eye
    view_a = []
    for face in faces:
        img = _padded_bgr(face)
        view_a.append(align_faces_uint8(img, points, resample=RESAMPLE))
    shift = 1 + rng.permutation(n - 1)[0]  # impostor partner j = (i + shift) mod n: never i itself
    first, second, sizes, issame = {}, {}, {}, {}
    crops = list(view_a)
    for band, (lo, hi) in BANDS.items():
        f, s, r, same = [], [], [], []
        for _ in range(ROUNDS):
            base = len(crops)
            for face in faces:
                img = np.ascontiguousarray(_padded_bgr(face)[:, ::-1])
                crops.append(align_faces_uint8(img, _jitter(mirrored, rng), resample=RESAMPLE))
            size = rng.integers(lo, hi + 1, n)
            idx = np.arange(n)
            f += [idx, idx]
            s += [base + idx, base + (idx + shift) % n]
            r += [size, size[(idx + shift) % n]]  # each view B keeps one size in both of its pairs
            same += [np.ones(n, bool), np.zeros(n, bool)]
        first[band], second[band] = np.concatenate(f), np.concatenate(s)
        sizes[band], issame[band] = np.concatenate(r), np.concatenate(same)
    info = {"set": SET_NAME, "faces": n, "rounds": ROUNDS, "seed": seed, "pad_px": PAD,
            "equivalent_resolution_px": round(float(TEMPLATE_SIZE * np.linalg.norm(LANDMARKS_25[1] - LANDMARKS_25[0])
                                                    / 35.24), 1),
            "bands": {b: {"range": list(v), "pairs": int(len(issame[b])), "genuine": int(issame[b].sum())}
                      for b, v in BANDS.items()}}
    return FaceSet(np.stack(crops), first, second, sizes, issame, info)


def scores(cache, fs: FaceSet) -> dict[str, np.ndarray]:
    """Cosine score of every pair per band (``cache``: evaluation.protocols.EmbeddingCache on fs.crops)."""
    out = {}
    for band in fs.issame:
        a = cache.get(fs.first[band], TEMPLATE_SIZE)  # the crop width: EmbeddingCache does not degrade it
        b = cache.get(fs.second[band], fs.sizes[band])
        out[band] = np.sum(a * b, axis=1).astype(np.float64)
    return out


def best_threshold(s: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of ``score > threshold``; midpoints between sorted scores."""
    u = np.unique(s)
    cand = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    acc = ((s[None, :] > cand[:, None]) == issame[None, :]).mean(1)
    k = int(np.argmax(acc))
    return float(cand[k]), float(acc[k])


def sign_test_p(lost: int, gained: int) -> float:
    """P(at least ``lost`` of the lost + gained discordant pairs go against INT8 | each way equally likely)."""
    n = lost + gained
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(lost, n + 1)) / 2.0 ** n)


def compare(fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], issame: dict[str, np.ndarray],
            tolerance_pp: float, alpha: float = ALPHA) -> dict[str, Any]:
    """Per band: both accuracies, lost/gained pairs, the sign test and the verdict of the rule (:data:`RULE`)."""
    bands = {}
    for band, same in issame.items():
        t_fp, acc_fp = best_threshold(fp32[band], same)
        t_q, acc_q = best_threshold(int8[band], same)
        ok_fp, ok_q = (fp32[band] > t_fp) == same, (int8[band] > t_q) == same
        lost, gained = int((ok_fp & ~ok_q).sum()), int((~ok_fp & ok_q).sum())
        drop = 100.0 * (lost - gained) / len(same)
        p = sign_test_p(lost, gained)
        bands[band] = {"pairs": int(len(same)), "fp32_pct": round(100 * acc_fp, 3), "int8_pct": round(100 * acc_q, 3),
                       "fp32_threshold": round(t_fp, 5), "int8_threshold": round(t_q, 5),
                       "lost": lost, "gained": gained, "drop_pp": round(drop, 3), "p_value": round(p, 5),
                       "flips_at_fp32_threshold": int(((int8[band] > t_fp) != (fp32[band] > t_fp)).sum()),
                       "passed": not (drop > tolerance_pp and p < alpha)}
    return {"set": SET_NAME, "tolerance_pp": tolerance_pp, "alpha": alpha, "bands": bands,
            "passed": all(b["passed"] for b in bands.values())}


def format_report(label: str, report: dict[str, Any]) -> str:
    lines = [f"{SET_NAME} accuracy {label}: {'PASS' if report['passed'] else 'FAIL'} "
             f"(fail: drop > {report['tolerance_pp']} pp and sign-test p < {report['alpha']})"]
    for band, b in report["bands"].items():
        lines.append(f"  {band:<4} n={b['pairs']} fp32 {b['fp32_pct']:6.2f}  int8 {b['int8_pct']:6.2f}  lost "
                     f"{b['lost']} gained {b['gained']} drop {b['drop_pp']:+.2f} pp p={b['p_value']:.3f} "
                     f"{'ok' if b['passed'] else 'TOO LARGE'}")
    return "\n".join(lines)


def measure_landmarks(detector=None) -> np.ndarray:
    """Median MTCNN landmarks of the 100 faces in the 25x25 frame (reproduces :data:`LANDMARKS_25`; needs the
    detector bundle, ``crres models fetch``): each face padded by 12 edge pixels and upsampled x4 bicubic."""
    import cv2

    from crres_sdk.detector import FaceDetector

    det = detector or FaceDetector(estimate_resolution=False, threads=1)
    found = []
    for face in load_faces():
        up = cv2.resize(_padded_bgr(face), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        d = det.detect_arrays(up)
        if len(d.scores):
            found.append(d.landmarks[0] / 4.0 - PAD)
    return np.median(np.asarray(found), axis=0)


def gate_files(fp32: Path, int8: dict[str, tuple[Path, str]], normalisation: dict[str, Any], input_size: int,
               tolerance_pp: float, backend: str = "onnxruntime", seed: int = 0) -> dict[str, Any]:
    """The whole gate for an FP32 file and INT8 files ``{"runtime/role": (path, backend)}`` (the CLI's work)."""
    from export.lfw_parity import make_cache

    fs = build(seed)
    t0 = time.perf_counter()
    ref = scores(make_cache(fp32, backend, normalisation, fs.crops, input_size, progress=False), fs)
    files = {}
    for key, (path, file_backend) in int8.items():
        got = scores(make_cache(path, file_backend, normalisation, fs.crops, input_size, progress=False), fs)
        files[key] = compare(ref, got, fs.issame, tolerance_pp)
    return {"data": fs.info, "what": DESCRIPTION, "rule": RULE, "files": files,
            "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.small_face_gate", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="a model bundle with onnx/fp32 and at least one INT8 file")
    p.add_argument("--file", action="append", help="INT8 file key (runtime/role); default: every INT8 file")
    p.add_argument("--backend", default="onnxruntime", help="runtime for the ONNX files (default onnxruntime)")
    p.add_argument("--tolerance-pp", type=float, default=0.5)
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    from crres_sdk.bundle import load_bundle

    from export.manifest import cpu_isa

    why = available()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    bundle = load_bundle(args.bundle, task="face-embedding")
    m = bundle.manifest
    int8_keys = [f"{rt}/{role}" for rt, roles in m["files"].items() for role in roles
                 if (rt, role) in (("onnx", "int8"), ("openvino", "int8_xml"), ("tensorrt", "qdq"))]
    keys = args.file or int8_keys
    if not keys:
        print(f"error: {args.bundle} has no INT8 file", file=sys.stderr)
        return 2
    int8 = {k: (bundle.file(*k.split("/")), "openvino" if k.startswith("openvino/") else args.backend) for k in keys}
    norm = {"color": m["input"]["color"], "mean": m["input"]["mean"], "std": m["input"]["std"]}
    report = gate_files(bundle.file("onnx", "fp32"), int8, norm, int(m["input"]["size"][0]), args.tolerance_pp,
                        args.backend)
    report.update(bundle=str(Path(args.bundle).resolve()), cpu=cpu_isa())
    for key, r in report["files"].items():
        print(format_report(key, r))
    print(f"cpu: {report['cpu']['model']} ({' '.join(report['cpu']['isa'])}); {report['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all(r["passed"] for r in report["files"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
