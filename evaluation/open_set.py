"""Open-set identification on LFW, end to end through the SDK (issue 18, item 3).

    python -m evaluation.open_set --lfw ../shared/data/lfw --out runs/open_set \
        [--model default] [--resolutions 112,40,24,16,12,8] [--policies far=1e-3,fpir=0.01] [--max-unknown N]

Protocol. Among LFW's identities with several photos, a random half (``--seed``) is enrolled from one photo each
(the gallery); their other photos are the *known* probes; every photo of every other identity (the rest of
the multi-photo people and all single-photo people) is an *unknown* probe. Each probe photo is shrunk as a
whole (``cv2.INTER_AREA``) so that its face has resolution r (112 x eye distance / 35.24 = r; a face already at
or below r keeps its size) and aligned from its HR landmarks scaled with it; the SDK then does what it does with
a camera frame: :meth:`Recognizer.faces_from` (effective-resolution estimate), resolution-matched alignment,
embedding, and :meth:`Recognizer.match` against the SQLite gallery built by :meth:`Recognizer.enroll` (HR
template + templates degraded to every gallery level), with the thresholds the SDK uses under each policy:

* ``far=X``: the per-pair rule of before (``Recognizer(fpir=None, far=X)``): the threshold for r at FAR X;
* ``fpir=X``: the 1:N rule (``Recognizer(fpir=X)``): FAR = X / M, M = templates compared (N identities x k).

Per r and policy: rank-1 (known probes whose best candidate is right, thresholds aside), correct-match (known
probes named correctly), wrong-match (known probes named as someone else), FPIR (unknown probes named at all),
too-small (probes below the lowest calibrated resolution: never named), mean threshold and probe resolution.
Landmarks come from the aligned-crop cache of ``evaluation.datasets.load_lfw`` (MTCNN on the HR
photos). Writes ``open_set.json``, ``open_set.md`` and ``open_set.png`` (FPIR and correct-match against r).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESOLUTIONS = (112, 40, 24, 16, 12, 8)
DEFAULT_POLICIES = ("far=1e-3", "fpir=0.01")
TEMPLATE_EYE_DISTANCE = 35.24
CROP = 112


@dataclass
class OpenSetSplit:
    """Indices into the image list: one gallery photo per enrolled identity, known and unknown probes."""

    identities: list[str]          # identity of every image
    gallery: np.ndarray            # (G,) one image per enrolled identity
    known: np.ndarray              # probes of enrolled identities (never their gallery photo)
    unknown: np.ndarray            # probes of identities not enrolled

    def describe(self) -> dict[str, int]:
        ids = np.asarray(self.identities)
        return {"images": len(ids), "enrolled_identities": len(self.gallery), "known_probes": len(self.known),
                "unknown_probes": len(self.unknown),
                "unknown_identities": int(len(np.unique(ids[self.unknown]))) if len(self.unknown) else 0}


def build_split(identities: Sequence[str], seed: int = 0, max_known: int | None = None,
                max_unknown: int | None = None, max_enrolled: int | None = None) -> OpenSetSplit:
    """Enrol a random half of the identities with >= 2 images (their first photo in a random order), the rest
    are known probes; every image of every other identity is an unknown probe. ``max_*`` subsample probes and
    (smoke runs) the enrolled identities, whose other identities then become strangers."""
    ids = np.asarray(list(identities))
    names, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    multi = np.flatnonzero(counts >= 2)
    if len(multi) < 2:
        raise ValueError("the open-set protocol needs at least 2 identities with several images")
    rng = np.random.default_rng(seed)
    enrolled = np.zeros(len(names), bool)
    enrolled[rng.permutation(multi)[: min(len(multi) // 2, max_enrolled or len(multi))]] = True
    gallery, known = [], []
    for who in np.flatnonzero(enrolled):
        imgs = rng.permutation(np.flatnonzero(inverse == who))
        gallery.append(int(imgs[0]))
        known.extend(int(i) for i in imgs[1:])
    unknown = np.flatnonzero(~enrolled[inverse])
    known = np.sort(np.asarray(known, np.int64))
    if max_known is not None and len(known) > max_known:
        known = np.sort(rng.choice(known, max_known, replace=False))
    if max_unknown is not None and len(unknown) > max_unknown:
        unknown = np.sort(rng.choice(unknown, max_unknown, replace=False))
    return OpenSetSplit(list(ids), np.asarray(gallery, np.int64), known, unknown.astype(np.int64))


def shrink_photo(frame: np.ndarray, landmarks: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The photo shrunk as a whole so its face has resolution ``r`` (never enlarged), with its landmarks mapped
    by the same scale (pixel centres: x' = (x + 0.5) s - 0.5). Returns (frame, landmarks, scale)."""
    import cv2

    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    r0 = CROP * float(np.linalg.norm(lm[0] - lm[1])) / TEMPLATE_EYE_DISTANCE
    s = min(1.0, float(r) / r0)
    if s >= 1.0:
        return frame, lm, 1.0
    h, w = frame.shape[:2]
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    sx, sy = size[0] / w, size[1] / h  # the exact scale of the rounded size
    return small, (lm + 0.5) * np.array([sx, sy]) - 0.5, min(sx, sy)


def probe_embeddings(rec: Any, load: Callable[[int], np.ndarray], landmarks: np.ndarray, indices: np.ndarray,
                     r: float, batch: int = 64, progress: bool = True) -> dict[str, np.ndarray]:
    """SDK embeddings of the photos ``indices`` shrunk to face size r: ``{"embeddings", "resolutions",
    "equivalent", "effective"}`` (resolutions = what the SDK matches at)."""
    from crres_sdk import align_faces

    from evaluation.progress import Progress

    emb = np.zeros((len(indices), rec.embedding_dim), np.float32)
    res, eq, eff = (np.zeros(len(indices)) for _ in range(3))
    pending: list[np.ndarray] = []
    start = 0
    with Progress(f"open-set r={r:g}", len(indices), enabled=progress) as bar:
        for k, i in enumerate(indices):
            frame, lm, _ = shrink_photo(load(int(i)), landmarks[i], r)
            face = rec.faces_from(frame, lm[None])[0]
            res[k] = rec.probe_resolution(face)
            eq[k] = face.equivalent_resolution
            eff[k] = np.nan if face.effective_resolution is None else face.effective_resolution
            pending.append(align_faces(frame, face.landmarks[None].astype(np.float64),
                                       normalization=rec.normalization))
            if len(pending) == batch or k == len(indices) - 1:
                emb[start:k + 1] = rec.embed_aligned(np.concatenate(pending))
                start, pending = k + 1, []
            bar.update()
    return {"embeddings": emb, "resolutions": res, "equivalent": eq, "effective": eff}


def parse_policy(text: str) -> dict[str, Any]:
    kind, _, value = text.partition("=")
    kind = kind.strip()
    if kind not in ("far", "fpir") or not value:
        raise ValueError(f"a policy is far=RATE or fpir=RATE, got {text!r}")
    rate = float(value)
    if not 0 < rate < 1:
        raise ValueError(f"{text!r}: the rate must lie in (0, 1)")
    return {"name": f"{kind}={value.strip()}", "fpir": rate if kind == "fpir" else None,
            "far": value.strip() if kind == "far" else "1e-3"}


def score_policy(rec: Any, probes: dict[str, np.ndarray], truth: Sequence[str | None]) -> dict[str, Any]:
    """Decisions of ``rec.match`` (under the recognizer's current policy) for probes with known identities
    (``truth[i]``) or strangers (None): the protocol's figures."""
    results = rec.match(probes["embeddings"], probes["resolutions"], top_k=1)
    known = np.asarray([t is not None for t in truth])
    top = [r.candidates[0].identity if r.candidates else None for r in results]
    named = np.asarray([r.decision == "match" for r in results])
    right = np.asarray([t is not None and t == p for t, p in zip(truth, top)])
    small = np.asarray([r.decision == "too-small" for r in results])
    thr = np.asarray([np.nan if r.threshold is None else r.threshold for r in results], np.float64)
    comps = [r.comparisons for r in results if r.comparisons is not None]
    n_known, n_unknown = int(known.sum()), int((~known).sum())

    def rate(mask: np.ndarray, n: int) -> float | None:
        return None if n == 0 else float(mask.sum() / n)

    return {"known_probes": n_known, "unknown_probes": n_unknown,
            "rank1": rate(right & known, n_known),
            "correct_match": rate(named & right & known, n_known),
            "wrong_match": rate(named & ~right & known, n_known),
            "fpir": rate(named & ~known, n_unknown),
            "too_small": rate(small, len(results)),
            "threshold_mean": None if np.all(np.isnan(thr)) else float(np.nanmean(thr)),
            "comparisons": None if not comps else int(np.median(comps)),
            "per_pair_far": None if not comps else float(np.median([r.per_pair_far for r in results
                                                                    if r.per_pair_far is not None]))}


def enrol_gallery(rec: Any, load: Callable[[int], np.ndarray], landmarks: np.ndarray, split: OpenSetSplit,
                  progress: bool = True) -> dict[str, Any]:
    """Enrol each gallery identity from its one photo at full size through ``Recognizer.enroll``."""
    from evaluation.progress import Progress

    refused = []
    with Progress("open-set gallery", len(split.gallery), enabled=progress) as bar:
        for i in split.gallery:
            name = split.identities[i]
            try:
                rec.enroll(name, [load(int(i))], faces=[landmarks[i]])
            except ValueError as exc:  # e.g. below the enrolment minimum: what the SDK would refuse
                refused.append(f"{name}: {exc}")
            bar.update()
    return {"enrolled": len(rec.gallery), "templates": rec.gallery.n_templates, "refused": refused}


def run(rec: Any, load: Callable[[int], np.ndarray], landmarks: np.ndarray, split: OpenSetSplit,
        resolutions: Sequence[float] = RESOLUTIONS, policies: Sequence[str] = DEFAULT_POLICIES,
        progress: bool = True, batch: int = 64) -> dict[str, Any]:
    """The whole protocol with ``rec`` (a Recognizer with an empty gallery): figures per r and policy."""
    from crres_sdk.policy import parse_rate

    pols = [parse_policy(p) for p in policies]
    t0 = time.perf_counter()
    enrol = enrol_gallery(rec, load, landmarks, split, progress)
    enrolled = set(rec.gallery)
    probes = np.concatenate([split.known, split.unknown])
    truth = [split.identities[i] if split.identities[i] in enrolled else None for i in probes]
    out: dict[str, Any] = {"split": split.describe(), "gallery": enrol, "resolutions": [float(r) for r in resolutions],
                           "policies": [p["name"] for p in pols], "per_resolution": {}}
    saved = (rec.fpir, rec.far, rec.far_rate)
    try:
        for r in resolutions:
            emb = probe_embeddings(rec, load, landmarks, probes, r, batch, progress)
            row: dict[str, Any] = {"probe_resolution_mean": float(np.mean(emb["resolutions"])),
                                   "equivalent_mean": float(np.mean(emb["equivalent"])),
                                   "effective_mean": None if np.all(np.isnan(emb["effective"])) else
                                   float(np.nanmean(emb["effective"])), "policies": {}}
            for p in pols:
                rec.fpir, rec.far, rec.far_rate = p["fpir"], p["far"], parse_rate(p["far"], "far")
                row["policies"][p["name"]] = score_policy(rec, emb, truth)
            out["per_resolution"][f"{r:g}"] = row
    finally:
        rec.fpir, rec.far, rec.far_rate = saved
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def report_markdown(res: dict[str, Any]) -> str:
    lines = [f"Split: {res['split']}; gallery templates {res['gallery']['templates']} "
             f"({len(res['gallery']['refused'])} refused).", "",
             "| r | probe r (mean) | policy | rank-1 | correct-match | wrong-match | FPIR | too-small | threshold "
             "(mean) | M | per-pair FAR |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"

    for r, row in res["per_resolution"].items():
        for name, m in row["policies"].items():
            thr = "-" if m["threshold_mean"] is None else f"{m['threshold_mean']:.3f}"
            far = "-" if m["per_pair_far"] is None else f"{m['per_pair_far']:.2g}"
            lines.append(f"| {r} | {row['probe_resolution_mean']:.1f} | {name} | {pct(m['rank1'])} | "
                         f"{pct(m['correct_match'])} | {pct(m['wrong_match'])} | {pct(m['fpir'])} | "
                         f"{pct(m['too_small'])} | {thr} | {m['comparisons'] or '-'} | {far} |")
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [float(r) for r in res["per_resolution"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in res["policies"]:
        for ax, key in zip(axes, ("fpir", "correct_match")):
            ys = [100 * (res["per_resolution"][k]["policies"][name][key] or 0) for k in res["per_resolution"]]
            ax.plot(rs, ys, marker="o", label=name)
    axes[0].axhline(2.0, color="grey", ls="--", lw=1, label="target 2 %")
    for ax, title in zip(axes, ("strangers named (FPIR, %)", "known probes named correctly (%)")):
        ax.set(xscale="log", xlabel="face resolution r (px)", title=title)
        ax.set_xticks(rs)
        ax.set_xticklabels([f"{r:g}" for r in rs])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_lfw_landmarks(root: Path, cache_dir: Path | None = None, progress: bool = True,
                       ) -> tuple[list[str], np.ndarray, Path]:
    """(relative image paths, HR landmarks (M, 5, 2), images folder) from the LFW aligned-crop cache."""
    from evaluation.datasets import load_lfw

    ds = load_lfw(root, cache_dir=cache_dir, progress=progress)
    with np.load(ds.info["cache"], allow_pickle=False) as z:
        marks = z["landmarks"].astype(np.float64)
        names = [str(n) for n in z["names"]]
    images = root / "images" if (root / "images").is_dir() else root
    return names, marks, images


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.open_set", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--lfw", type=Path, default=None, help="LFW folder (default ../shared/data/lfw)")
    p.add_argument("--model", default="default", help="SDK model bundle: 'default', a name or a folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resolutions", default=",".join(str(r) for r in RESOLUTIONS))
    p.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                   help="comma-separated far=RATE (per-pair, the old rule) and fpir=RATE (1:N) policies")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-known", type=int, default=None, help="subsample known probes (default all)")
    p.add_argument("--max-unknown", type=int, default=None, help="subsample unknown probes (default all)")
    p.add_argument("--max-enrolled", type=int, default=None,
                   help="enrol at most N identities (smoke runs; changes the gallery size the thresholds follow)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-estimator", action="store_true", help="match at the geometric resolution only")
    p.add_argument("--pairing", default="auto", choices=("auto", "matched", "hr"),
                   help="which gallery templates a probe is compared with (Recognizer's pairing)")
    p.add_argument("--gallery-levels", default=None,
                   help="comma-separated gallery levels below 112 px enrolment also stores (default the SDK's "
                        "GALLERY_LEVELS); 'none' = HR templates only, every probe matched against them")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import cv2
    from crres_sdk import Recognizer

    args = build_parser().parse_args(argv)
    root = args.lfw or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw"
    if not (root / "pairs.txt").is_file():
        print(f"error: no LFW at {root} (needs pairs.txt and images/); pass --lfw", file=sys.stderr)
        return 2
    names, marks, images = load_lfw_landmarks(root, args.cache_dir, not args.quiet)
    split = build_split([n.split("/")[0] for n in names], args.seed, args.max_known, args.max_unknown,
                        args.max_enrolled)

    def load(i: int) -> np.ndarray:
        frame = cv2.imread(str(images / names[i]), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"cannot read {images / names[i]}")
        return frame

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        levels = {} if args.gallery_levels is None else {"gallery_resolutions": () if args.gallery_levels == "none"
                                                          else [int(v) for v in args.gallery_levels.split(",")]}
        rec = Recognizer(args.model, backend="onnxruntime", threads=args.threads, gallery=Path(tmp) / "g.db",
                         estimate_resolution=False if args.no_estimator else None, pairing=args.pairing, **levels)
        try:
            res = run(rec, load, marks, split, [float(r) for r in args.resolutions.split(",")],
                      [p for p in args.policies.split(",") if p], progress=not args.quiet)
            res["model"] = {"name": rec.bundle.name, "version": rec.bundle.version, "file": rec.model_file,
                            "identification_table": bool(rec.policy and rec.policy.identification_calibrated),
                            "threshold_source": (rec.bundle.manifest.get("thresholds") or {}).get("source", "")[:300]}
            res["estimator"] = rec.estimator is not None
            res["gallery_levels"] = list(rec.gallery_resolutions)
            res["pairing"] = rec.pairing
        finally:
            rec.close()
    res["command"] = " ".join(["python -m evaluation.open_set", *(argv if argv is not None else sys.argv[1:])])
    (args.out / "open_set.json").write_text(json.dumps(res, indent=1))
    md = report_markdown(res)
    (args.out / "open_set.md").write_text(md)
    plot(res, args.out / "open_set.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
