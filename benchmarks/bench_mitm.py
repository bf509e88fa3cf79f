"""Meet-in-the-middle matching cost per probe and per enrolment image, against plain matching (issue 9).

Both sides use the same embedding model through crres_sdk.Recognizer.embed_crops_uint8 (what
Recognizer(matching="mitm") hands to its MitmMatcher). Cases, measured in the same run:

  mitm_probe   probe-side work for one aligned probe crop of --resolution px:
               plain          (baseline) one embedding of the 112 crop
               mitm-bicubic   MitmMatcher.probe_templates, bicubic upsampling as SR: 16 blur levels x 3 scales =
                              48 embeddings (Grm et al. Sec. 3.3)
               mitm-sr        the same with the face-SR models of --sr (ONNX Runtime/OpenVINO): + 48 SR runs
  mitm_score   scoring one probe against a gallery of N identities (random unit templates of the real layout):
               plain          (baseline) one template per identity at the probe's level: matmul + top-5
               mitm           MitmMatcher.scores(probe, gallery) as Recognizer(matching="mitm") calls it: per
                              scale the (48/3 x N (chains + 1)) correlation matrix, S_max then S_add
               mitm-cached    the same on a matcher's own enrolled store (stacked templates kept between probes)
  mitm_enrol   templates of one enrolment crop:
               plain          (baseline) what plain enrolment embeds: the crop + its degraded versions at the
                              default gallery resolutions
               mitm           MitmMatcher.gallery_templates: (chains + 1) x match sizes embeddings

    python -m benchmarks.bench_mitm --json bench-results/mitm.json --sr runs/sr/x2 runs/sr/x4 runs/sr/x8
"""

from __future__ import annotations

import argparse
import os
import sys


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the records to this JSON file")
    p.add_argument("--model", default="default", help="model bundle name or folder (default: the shipped one)")
    p.add_argument("--sr", nargs="*", default=None, help="folders with sr_x{2,4,8}.onnx (python -m training.sr)")
    p.add_argument("--resolution", type=int, default=20, help="probe resolution (px)")
    p.add_argument("--gallery-sizes", type=int, nargs="+", default=[10, 100], help="identities")
    p.add_argument("--chains", type=int, default=50, help="degradation chains per enrolment image (Recognizer's "
                                                          "default mitm_chains)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--enrol-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="inference and BLAS threads")
    return p.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:  # thread counts must be set before numpy loads its BLAS
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from benchmarks.common import Record, fill_speedups, machine, report, time_call  # noqa: E402
from crres_sdk import Recognizer, degrade  # noqa: E402
from crres_sdk.mitm import MitmMatcher, OnnxSuperResolver, sample_chains  # noqa: E402
from crres_sdk.preprocess import align_faces_uint8  # noqa: E402


def probe_crop(rec: Recognizer, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's aligned face (HR) and the same degraded to ``resolution`` px (an aligned small face)."""
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[..., ::-1])
    faces = rec.detector.detect_arrays(photo)
    crop = align_faces_uint8(photo, faces.landmarks[:1].astype(np.float64))[0]
    return crop, degrade(crop[None], resolution)[0]


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    args = ARGS
    rec = Recognizer(args.model, threads=args.threads, backend="onnxruntime")
    embed = rec.embed_crops_uint8
    chains = sample_chains(args.chains) if args.chains else []
    matcher = MitmMatcher(embed, None, chains=chains)
    hr, probe = probe_crop(rec, args.resolution)
    common = {"model": f"{rec.bundle.name}-{rec.bundle.version}", "dim": rec.embedding_dim,
              "resolution_px": args.resolution, "chains": len(chains), "match_sizes": list(matcher.match_sizes),
              "blur_levels": matcher.blur_levels, "scales": list(matcher.scales), **machine()}
    records: list[Record] = []
    t = args.threads

    # Probe side.
    case = f"{args.resolution} px probe"
    med, p90 = time_call(lambda: embed(probe[None]), args.repeats)
    records.append(Record("mitm_probe", case, "plain", t, med, p90, extra={**common, "embeddings": 1}))
    impls = [("mitm-bicubic", None)]
    if args.sr:
        impls.append(("mitm-sr", OnnxSuperResolver.from_dir(*args.sr, backend="onnxruntime", threads=t)))
    n_probe = matcher.blur_levels * len(matcher.scales)
    for name, sr in impls:
        matcher.sr = sr
        med, p90 = time_call(lambda: matcher.probe_templates(probe, args.resolution), args.repeats, warmup=1)
        extra = {**common, "embeddings": n_probe, "sr_runs": n_probe if sr is not None else 0,
                 "sr_models": [str(s) for s in args.sr] if sr is not None else None}
        records.append(Record("mitm_probe", case, name, t, med, p90, "plain", extra=extra))
    templates = matcher.probe_templates(probe, args.resolution)
    print("  probe side: done", file=sys.stderr, flush=True)

    # Scoring against N identities (random unit templates in the enrolment layout).
    rng = np.random.default_rng(0)
    dim = rec.embedding_dim
    hyps = len(chains) + 1
    sizes = np.repeat(np.asarray(matcher.match_sizes), hyps)
    plain_probe = unit_rows(rng, 1, dim)[0]
    for n in args.gallery_sizes:
        case = f"{n} identities"
        plain_gallery = unit_rows(rng, n, dim)
        gallery = {f"id{i}": (unit_rows(rng, len(sizes), dim), sizes) for i in range(n)}

        def plain():
            s = plain_gallery @ plain_probe
            return np.argpartition(-s, min(5, n - 1))[:5]

        extra = {**common, "identities": n, "templates_per_identity": int(len(sizes))}
        med, p90 = time_call(plain, args.repeats)
        records.append(Record("mitm_score", case, "plain", t, med, p90, extra={**extra, "templates_per_identity": 1}))
        med, p90 = time_call(lambda: matcher.scores(templates, gallery), args.repeats, warmup=1)
        records.append(Record("mitm_score", case, "mitm", t, med, p90, "plain", extra=extra))
        store = MitmMatcher(embed, None, chains=chains)
        store._store = dict(gallery)   # what enroll() keeps, without the embedding cost
        med, p90 = time_call(lambda: store.scores(templates), args.repeats, warmup=1)
        records.append(Record("mitm_score", case, "mitm-cached", t, med, p90, "plain", extra=extra))
        del gallery, store
        print(f"  {case}: done", file=sys.stderr, flush=True)

    # Enrolment of one crop.
    levels = [r for r in rec.gallery_resolutions]
    crops = np.concatenate([hr[None], degrade(np.repeat(hr[None], len(levels), 0), np.array(levels))])
    med, p90 = time_call(lambda: embed(crops), args.enrol_repeats, warmup=1)
    records.append(Record("mitm_enrol", "1 crop", "plain", t, med, p90,
                          extra={**common, "embeddings": len(crops)}))
    med, p90 = time_call(lambda: matcher.gallery_templates(hr), args.enrol_repeats, warmup=1)
    records.append(Record("mitm_enrol", "1 crop", "mitm", t, med, p90, "plain",
                          extra={**common, "embeddings": int(len(sizes))}))

    fill_speedups(records)
    report(records, args.json, unit="ms")


if __name__ == "__main__":
    main()
