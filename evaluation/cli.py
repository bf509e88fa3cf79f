"""Cross-resolution evaluation of a face-embedding model (issue 5).

    python -m evaluation --model CHECKPOINT|BUNDLE|MODEL.onnx --lfw DIR \
        --protocols hr,btm_stm,fixed,lai,identification --resolutions 5,7,14,28,56 --out DIR

or ``--bin FILE.bin`` (InsightFace verification file, read without mxnet or arbitrary unpickling) instead of
``--lfw``. Protocols (paper sections next to the code in evaluation/protocols.py):

  hr              both images at 112 px (LFW View-2, 10-fold, Knoche §3.4)
  fixed           fixed-resolution sweep over --resolutions, cross-resolution (both orders averaged) and
                  equal-resolution (--modes cr,er)
  btm_stm         Knoche §6.3 / Table 3 protocols all_res, high_res, mid_res, low_res from --btm-stm DIR
                  (default <lfw>/btm_stm)
  lai             Lai & Lam §IV-A: first image HR, second at 8/12/16/20 px
  identification  rank-k / CMC on a gallery/probe layout: --ident-manifest FILE, or built from LFW
                  (identities with >= 2 images; first image gallery, others probes at --ident-resolutions)
  btm_stm_e2e     the btm-stm protocols end to end (LFW only): the second photo shrunk as a whole to face size r,
                  (a) aligned from its scaled HR landmarks, (b) found by the SDK's detector (misses reported and
                  counted as failures); evaluation/end_to_end.py
  fixed_e2e       every pair with the second photo shrunk as a whole to each of --lai-resolutions, aligned from
                  its scaled HR landmarks, next to the crop protocol at the same r (HR vs r)
  open_set        open-set identification through the SDK (LFW, needs a bundle --model): see
                  evaluation/open_set.py (python -m evaluation.open_set for its options)

Writes results.json, report.md and PNG figures into --out and prints a summary table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from evaluation.datasets import LFW_MIN_FACE

PROTOCOLS = ("hr", "fixed", "btm_stm", "lai", "identification", "btm_stm_e2e", "fixed_e2e", "open_set")
DEFAULT_RESOLUTIONS = "5,7,8,10,12,14,16,20,28,40,56"


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(not 1 <= v <= 112 for v in values):
        raise argparse.ArgumentTypeError(f"resolutions must be integers in [1, 112], got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True, help="training checkpoint (.pt/.pth/.ckpt), bundle folder or .onnx/.xml")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lfw", type=Path, help="LFW folder with images/ and pairs.txt")
    src.add_argument("--bin", type=Path, help="InsightFace verification .bin file")
    p.add_argument("--pairs", type=Path, help="pairs file (default <lfw>/pairs.txt)")
    p.add_argument("--protocols", default="hr,btm_stm,fixed", help=f"comma-separated subset of {','.join(PROTOCOLS)}")
    p.add_argument("--resolutions", type=_ints, default=_ints(DEFAULT_RESOLUTIONS), help="sweep resolutions")
    p.add_argument("--modes", default="cr,er", help="fixed sweep modes: cr, er or cr,er")
    p.add_argument("--btm-stm", type=Path, help="folder with the btm-stm csv files (default <lfw>/btm_stm)")
    p.add_argument("--lai-resolutions", type=_ints, default=[8, 12, 16, 20])
    p.add_argument("--ident-manifest", type=Path, help="gallery/probe CSV/JSON manifest (see identification.py)")
    p.add_argument("--ident-align", action="store_true", help="detect+align manifest images (else aligned crops)")
    p.add_argument("--ident-resolutions", type=_ints, default=[8, 12, 16, 20, 28, 112])
    p.add_argument("--flip", action="store_true", help="flip test-time augmentation (e(x) + e(flip x))")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"),
                   help="for a bundle folder: which of its files (auto: INT8 where the backend has one, as the SDK)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "openvino"),
                   help="runtime for ONNX/IR files; for a checkpoint, auto = eager torch, else the network is "
                        "exported to FP32 ONNX and run there (faster on a CPU)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: backend's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--color", choices=("rgb", "bgr"), help="input colour order for a bare ONNX model")
    p.add_argument("--mean", help="input mean for a bare ONNX model: one value or r,g,b (default 127.5)")
    p.add_argument("--std", help="input std for a bare ONNX model: one value or r,g,b (default 128)")
    p.add_argument("--cache-dir", type=Path, help="aligned-crop cache (default ~/.cache/crres/eval)")
    p.add_argument("--min-face", type=int, default=LFW_MIN_FACE, help="MTCNN min face for LFW alignment")
    p.add_argument("--e2e-min-face", type=int, default=None,
                   help="the SDK detector's min_face in the end-to-end detector mode (default the detector's 12; "
                        "6-11 upsample the frame)")
    p.add_argument("--limit-pairs", type=int, default=None,
                   help="evaluate only N pairs of every fold, half genuine (smoke runs; not comparable with papers)")
    p.add_argument("--exclude-identities", metavar="NAMES|@FILE",
                   help="drop LFW pairs showing any of these people (comma-separated, or @FILE one per line), "
                        "e.g. the LFW people a model was trained on")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> dict:
    from evaluation import datasets, identification, protocols, report
    from evaluation.embedder import normalization_from_args, open_embedder
    from evaluation.verification import roc_curve

    start = time.time()
    protos = [s.strip() for s in args.protocols.split(",") if s.strip()]
    unknown = set(protos) - set(PROTOCOLS)
    if unknown:
        raise SystemExit(f"error: unknown protocol(s) {sorted(unknown)}; choose from {PROTOCOLS}")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or set(modes) - {"cr", "er"}:
        raise SystemExit(f"error: --modes must be cr, er or cr,er, got {args.modes!r}")
    progress = not args.quiet
    embedder = open_embedder(args.model, backend=args.backend, threads=args.threads,
                             normalization=normalization_from_args(args.color, args.mean, args.std),
                             batch_size=args.batch_size, precision=args.precision)
    if args.lfw is not None:
        ds = datasets.load_lfw(args.lfw, args.pairs, cache_dir=args.cache_dir, min_face=args.min_face,
                               progress=progress)
    else:
        ds = datasets.load_bin(args.bin)
    full_pairs = ds.n_pairs
    kept_pairs = None  # indices into the full pair list, so per-pair protocol files can be subset alike
    if args.exclude_identities:
        spec = args.exclude_identities
        text = Path(spec[1:]).read_text() if spec.startswith("@") else spec.replace(",", "\n")
        ds, kept_pairs = datasets.exclude_identities(ds, {n.strip() for n in text.splitlines() if n.strip()})
    if args.limit_pairs:
        if kept_pairs is not None:
            raise SystemExit("error: --limit-pairs and --exclude-identities do not combine")
        ds, kept_pairs = datasets.limit_pairs(ds, args.limit_pairs)
    cache = protocols.EmbeddingCache(ds.crops, embedder, flip=args.flip, progress=progress)
    results: dict = {"model": {**embedder.describe(), "path": str(args.model)},
                     "dataset": {"name": ds.name, "pairs": ds.n_pairs, "full_pairs": full_pairs, **ds.info},
                     "flip": args.flip, "protocols": protos, "_issame": ds.issame}

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    if "hr" in protos or "fixed" in protos:
        say("protocol hr")
        results["hr"] = protocols.evaluate_hr(cache, ds)
        far, tar, _ = roc_curve(1.0 - results["hr"]["_distances"], ds.issame)
        keep = np.unique(np.linspace(0, len(far) - 1, min(len(far), 400)).astype(int))
        results["hr_roc"] = {"far": far[keep].tolist(), "tar": tar[keep].tolist()}
    if "btm_stm" in protos or "btm_stm_e2e" in protos:
        folder = args.btm_stm or (args.lfw / "btm_stm" if args.lfw else None)
        if folder is None or not folder.is_dir():
            raise SystemExit("error: btm_stm needs --btm-stm DIR (or --lfw DIR with a btm_stm/ folder)")
        results["btm_stm"], all_sizes = {}, {}
        for name, fname in datasets.BTM_STM_PROTOCOLS.items():
            say(f"protocol btm_stm {name}")
            sizes = datasets.parse_size_protocol(folder / fname, full_pairs)
            if kept_pairs is not None:  # the same pairs --limit-pairs kept, each with its own sizes
                sizes = sizes[kept_pairs]
            all_sizes[name] = sizes
            results["btm_stm"][name] = {"file": fname, **protocols.evaluate_size_protocol(cache, ds, sizes)}
        if "btm_stm_e2e" in protos:
            results["btm_stm_e2e"] = _e2e(args, ds, cache, progress, sizes=all_sizes)
    if "fixed_e2e" in protos:
        say(f"protocol fixed_e2e at {args.lai_resolutions}")
        results["fixed_e2e"] = _e2e(args, ds, cache, progress, fixed=args.lai_resolutions)
    if "open_set" in protos:
        results["open_set"] = _open_set(args, progress)
    if "fixed" in protos:
        say(f"protocol fixed {modes} at {args.resolutions}")
        results["fixed"] = protocols.evaluate_fixed(cache, ds, args.resolutions, modes)
    if "lai" in protos:
        say("protocol lai")
        results["lai"] = protocols.evaluate_lai(cache, ds, args.lai_resolutions)
    if "identification" in protos:
        say("protocol identification")
        if args.ident_manifest:
            layout = identification.load_layout(args.ident_manifest, align=args.ident_align)
        else:
            if not ds.image_names or "/" not in ds.image_names[0]:
                raise SystemExit("error: identification needs --ident-manifest or LFW (--lfw) for the built layout")
            layout = identification.build_lfw_layout(ds.crops, ds.image_names, args.ident_resolutions)

        results["identification"] = {"layout": layout.name,
                                     **identification.evaluate_layout(layout, cache.embed_crops, progress=progress)}
    results["embeddings_computed"] = cache.computed
    results["seconds"] = time.time() - start
    written = report.write_report(results, args.out, title=embedder.name, plots=not args.no_plots)
    results["written"] = written
    return results


def _e2e(args: argparse.Namespace, ds, cache, progress: bool, sizes: dict | None = None,
         fixed: list[int] | None = None) -> dict:
    """btm-stm sizes or fixed r with the second photo shrunk as a whole (evaluation/end_to_end.py)."""
    import cv2

    from evaluation import end_to_end

    if args.lfw is None or "cache" not in ds.info:
        raise SystemExit("error: the end-to-end protocols need --lfw (the photos and their landmarks)")
    with np.load(ds.info["cache"], allow_pickle=False) as z:
        marks = z["landmarks"].astype(np.float64)
    images = args.lfw / "images" if (args.lfw / "images").is_dir() else args.lfw

    def load(i: int) -> np.ndarray:
        return cv2.imread(str(images / ds.image_names[i]), cv2.IMREAD_COLOR)

    detector = None
    if args.e2e_min_face is not None:
        from crres_sdk import FaceDetector

        detector = FaceDetector(min_face=args.e2e_min_face, estimate_resolution=False)
    if fixed is not None:
        return end_to_end.evaluate_fixed(cache, ds, load, marks, fixed, progress=progress, detector=detector)
    return end_to_end.evaluate_btm_stm(cache, ds, load, marks, sizes, progress=progress, detector=detector)


def _open_set(args: argparse.Namespace, progress: bool) -> dict:
    from evaluation import open_set

    if args.lfw is None or not (Path(args.model) / "manifest.json").is_file() and not str(args.model) == "default":
        raise SystemExit("error: open_set needs --lfw and a model bundle folder (or 'default') as --model")
    out = args.out / "open_set"
    argv = ["--lfw", str(args.lfw), "--model", str(args.model), "--out", str(out)] + (["--quiet"] if not progress
                                                                                      else [])
    if open_set.main(argv) != 0:
        raise SystemExit("error: the open_set protocol failed")
    import json

    return json.loads((out / "open_set.json").read_text())


def summary_lines(results: dict) -> list[str]:
    lines = [(f"model {results['model']['name']} on {results['dataset']['name']} "
              f"({results['dataset']['pairs']} pairs, fallbacks {results['dataset'].get('detector_fallbacks', '-')})")]
    if "hr" in results:
        lines.append(f"  HR 112 px: {100 * results['hr']['accuracy']:.2f} ± {100 * results['hr']['std']:.2f}")
    for name, res in results.get("btm_stm", {}).items():
        lines.append(f"  btm-stm {name}: {100 * res['accuracy']:.2f} ± {100 * res['std']:.2f}")
    for mode, per in results.get("btm_stm_e2e", {}).items():
        lines.append(f"  btm-stm end to end ({mode}): " + ", ".join(
            f"{name} {100 * (res['accuracy'] or 0):.2f} (misses {res['misses']}, with misses "
            f"{100 * res['accuracy_with_misses']:.2f})" for name, res in per.items()))
    if "fixed_e2e" in results:
        lines.append("  fixed r, crop vs end to end (landmarks): " + ", ".join(
            f"{r}: {100 * row['crop']['accuracy']:.2f} vs {100 * row['landmarks']['accuracy']:.2f}"
            for r, row in results["fixed_e2e"].items()))
    for r, row in (results.get("open_set") or {}).get("per_resolution", {}).items():
        lines.append(f"  open-set r={r}: " + ", ".join(f"{p}: FPIR {100 * (m['fpir'] or 0):.1f} % correct "
                                                       f"{100 * (m['correct_match'] or 0):.1f} %"
                                                       for p, m in row["policies"].items()))
    for mode, per_r in results.get("fixed", {}).items():
        lines.append(f"  {mode.upper()}: " + ", ".join(f"{r}:{100 * v['accuracy']:.1f}" for r, v in per_r.items()))
    if "lai" in results:
        lines.append("  Lai HR-vs-LR: " + ", ".join(f"{r}:{100 * v['accuracy']:.2f}"
                                                    for r, v in results["lai"].items()))
    if "identification" in results:
        ident = results["identification"]
        lines.append("  identification rank-1: " + ", ".join(
            f"{k}:{100 * v['rank1']:.1f}" for k, v in ident["per_resolution"].items()))
    lines.append(f"  {results['embeddings_computed']} embeddings, {results['seconds']:.0f} s -> "
                 f"{results['written']['json']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
