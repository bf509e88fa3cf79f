"""Meet-in-the-middle ablation (Grm et al. 2023, Table 2 / Table 3) on an SCface-like layout built from LFW
(issue 9).

    python -m training.experiments.mitm_eval --lfw ../shared/data/lfw \
        --model ../shared/models/reference_mobilefacenet_128d.onnx --model models/crres_default \
        --sr runs/sr/x2 runs/sr/x4 runs/sr/x8 --identities 150 --chains 32 --out runs/mitm/eval

Layout (SCface d1 in spirit: one high-quality gallery image per subject, low-quality surveillance probes of
about 22 x 29 px; Sec. 4.1): ``--identities`` LFW persons with two or more images (drawn with ``--seed``), the
first image (sorted) of each as its gallery image, up to ``--probes-per-identity`` of the others as probes. Every
probe is brought down to a resolution drawn from ``--probe-res`` (16..24 px) and passed through a camera (blur,
read + shot noise, JPEG; ``evaluation.mitm.camera_probe``), then upsampled back to a 112 crop, as the
SDK sees a small face after alignment. Images are detected and aligned with the SDK (MTCNN, the LFW procedure of
``evaluation.datasets``) and cached in ``--cache-dir``.

For each ``--model`` (a bare ONNX file, ``(x - 127.5) / 128`` RGB unless --color/--mean/--std, or a bundle
folder) one ``crres_sdk.mitm.MitmMatcher`` makes the gallery templates (the undegraded crop + ``--chains``
degradation chains of eq. 1, ``sample_chains(n, --seed)``, at every match size) and the probe templates (16 blur
hypotheses x SR x2/x4/x8, Sec. 3.3), and every Table 2 row and Table 3 fusion is scored from them
(``evaluation.mitm.ablation_scores``). ``--bicubic-too`` scores the probes a second time with bicubic
upsampling standing in for the SR network (does the learned SR help?). Impostor (non-mated) scores of the
fused default (``smax_sadd``) and of the plain baseline give decision thresholds at FAR 1e-2 / 1e-3 per probe
size band.

``--kernel-scaling literal`` (default; the issue-9 runs) keeps Table 1's blur kernels in pixels after every x2
downsampling; ``image`` scales them with the chain's image (issue 17, docs/mitm.md).

Writes ``results.json`` and ``report.md`` into ``--out`` and prints the tables. Deterministic for a given seed.
Runs on one thread (ONNX Runtime intra-op threads = ``--threads``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from crres_sdk.mitm import DEFAULT_MATCH_SIZES, SR_SCALES
from evaluation.far_threshold import threshold_at_far
from evaluation.mitm import (
    MULTISCALE_FUSIONS,
    ablation_scores,
    camera_probe,
    pair_hypothesis_scores,
    rank1,
)

REPO = Path(__file__).resolve().parents[2]
BANDS = ((16, 18), (19, 21), (22, 24))
FARS = (1e-2, 1e-3)
#: The SDK's match sizes (crres_sdk.mitm.DEFAULT_MATCH_SIZES) that a probe of >= 14 px can reach at SR x2 and up
#: (k x r >= 28, crres_sdk.mitm.MitmMatcher.size_for): the camera probes here are 16-24 px, so gallery hypotheses
#: at the smaller sizes would never be compared and are not made.
REACHABLE_MATCH_SIZES = tuple(s for s in DEFAULT_MATCH_SIZES if s >= min(SR_SCALES) * 14)


# ------------------------------------------------------------------------------------------------- layout

def select_layout(lfw: Path, identities: int, probes_per_identity: int, seed: int) -> tuple[list[str], list[dict]]:
    """Relpaths of the images to align and the rows (identity, gallery or probe) drawn from LFW's pairs.txt set."""
    from evaluation.datasets import lfw_image_relpath, parse_pairs

    pairs = parse_pairs(lfw / "pairs.txt")
    names = sorted({lfw_image_relpath(p.name1, p.num1) for p in pairs} | {lfw_image_relpath(p.name2, p.num2)
                                                                          for p in pairs})
    by_person: dict[str, list[str]] = {}
    for rel in names:
        by_person.setdefault(rel.split("/")[0], []).append(rel)
    eligible = sorted(p for p, imgs in by_person.items() if len(imgs) >= 2)
    if identities > len(eligible):
        raise SystemExit(f"--identities {identities}: LFW's pairs.txt images have only {len(eligible)} persons "
                         "with two or more images")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, identities, replace=False).tolist())
    rows = []
    for person in chosen:
        imgs = sorted(by_person[person])
        rows.append({"identity": person, "path": imgs[0], "role": "gallery"})
        others = imgs[1:]
        pick = sorted(rng.choice(len(others), min(probes_per_identity, len(others)), replace=False).tolist())
        rows += [{"identity": person, "path": others[i], "role": "probe"} for i in pick]
    return sorted({r["path"] for r in rows}), rows


def aligned_crops(lfw: Path, relpaths: list[str], cache_dir: Path, progress: bool) -> dict[str, np.ndarray]:
    """SDK-aligned 112 crops of the given LFW images, cached by (images and their bytes, alignment, detector)."""
    from evaluation.datasets import LFW_MIN_FACE, _detector_id, align_images, aligned_cache_key

    images = lfw / "images" if (lfw / "images").is_dir() else lfw
    key = aligned_cache_key(images, relpaths, {"min_face": LFW_MIN_FACE, "detector": _detector_id(None)})
    cache = cache_dir / f"lfw_subset_aligned_{key}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            crops = z["crops"]
    else:
        crops, _, fell_back = align_images([images / r for r in relpaths], min_face=LFW_MIN_FACE, progress=progress)
        print(f"aligned {len(relpaths)} images ({int(fell_back.sum())} with median landmarks: no face found)",
              flush=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, crops=crops)
    return dict(zip(relpaths, crops))


def make_probes(rows: list[dict], crops: dict[str, np.ndarray], res_range: tuple[int, int], seed: int,
                camera: bool = True) -> list[dict]:
    """Every probe row with its degraded crop; probe i draws from ``default_rng([seed, 1, i])`` (the same
    resolutions with and without the camera). ``camera=False``: the plain F_up(F_down,r) of the other papers."""
    from crres_sdk import degrade

    probes = []
    for i, row in enumerate(r for r in rows if r["role"] == "probe"):
        rng = np.random.default_rng([seed, 1, i])
        r = int(rng.integers(res_range[0], res_range[1] + 1))
        if camera:
            crop, settings = camera_probe(crops[row["path"]], r, rng)
        else:
            crop, settings = degrade(crops[row["path"]][None], r)[0], {"resolution": r}
        probes.append({**row, **settings, "crop": crop})
    return probes


# ------------------------------------------------------------------------------------------------ scoring

def band_of(r: int) -> str:
    for lo, hi in BANDS:
        if lo <= r <= hi:
            return f"{lo}-{hi}"
    return "other"


def chain_table(per_chain: list[np.ndarray], chains: list[tuple[str, ...]], true: np.ndarray) -> dict | None:
    """Rank-1 of "+gallery degradations" at x2 with the undegraded image and one chain at a time, per chain and
    averaged over the chains that use each Table 1 function (``--per-chain``)."""
    if not per_chain:
        return None
    arr = np.stack(per_chain)                                   # (probes, H, identities)
    base = rank1(arr[:, 0], true)                               # the undegraded image alone = resmatch_x2
    rows = [{"chain": "+".join(c), "rank1": rank1(arr[:, h + 1], true)} for h, c in enumerate(chains)]
    funcs = sorted({f for c in chains for f in c})
    by_func = {f: float(np.mean([r["rank1"] for r, c in zip(rows, chains) if f in c])) for f in funcs}
    return {"undegraded_only": base, "chains": sorted(rows, key=lambda r: r["rank1"]),
            "mean_by_function": dict(sorted(by_func.items(), key=lambda kv: kv[1])),
            "chains_per_function": {f: sum(f in c for c in chains) for f in funcs}}


def evaluate_model(model: str, args: argparse.Namespace, gallery: list[dict], probes: list[dict],
                   crops: dict[str, np.ndarray]) -> dict:
    from crres_sdk.mitm import MitmMatcher, OnnxSuperResolver, bicubic_sr, sample_chains

    from evaluation.embedder import normalization_from_args, open_embedder
    from evaluation.progress import Progress

    is_bundle = Path(model).is_dir()
    embedder = open_embedder(model, backend="onnxruntime", threads=args.threads, batch_size=args.batch_size,
                             normalization=None if is_bundle else normalization_from_args(args.color, args.mean,
                                                                                          args.std))
    sr_variants = {}
    if args.sr:
        sr_variants["learned"] = OnnxSuperResolver.from_dir(*args.sr, backend="onnxruntime", threads=args.threads)
    if not args.sr or args.bicubic_too:
        sr_variants["bicubic"] = bicubic_sr
    chains = sample_chains(args.chains, args.seed) if args.chains else []
    matcher = MitmMatcher(embedder.embed, None, chains=chains, match_sizes=args.match_sizes, seed=args.seed,
                          batch_size=64, blur_levels=args.blur_levels, kernel_scaling=args.kernel_scaling)
    sizes, hyps = matcher.match_sizes, len(chains) + 1
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    bank_list = []
    with Progress(f"gallery templates ({hyps} hypotheses x {len(sizes)} sizes)", len(gallery),
                  enabled=args.progress) as bar:
        for row in gallery:
            t, s = matcher.gallery_templates(crops[row["path"]])
            if not np.array_equal(s, np.repeat(sizes, hyps)):
                raise RuntimeError("unexpected gallery template layout")
            bank_list.append(t.reshape(len(sizes), hyps, -1))
            bar.update()
    bank_arr = np.stack(bank_list, axis=1)                           # (sizes, I, H, D)
    bank = {size: bank_arr[k] for k, size in enumerate(sizes)}
    hr = bank[matcher.input_size][:, 0]                              # the undegraded 112 crop
    timing["gallery_s"] = time.perf_counter() - t0

    ident_index = {row["identity"]: k for k, row in enumerate(gallery)}
    true = np.asarray([ident_index[p["identity"]] for p in probes])
    probe_res = np.asarray([p["resolution"] for p in probes])
    base_emb = matcher.embed(np.stack([p["crop"] for p in probes]))  # baseline: the upsampled probe as it is
    scores: dict[str, np.ndarray] = {"baseline_cosine": base_emb @ hr.T.astype(np.float64)}
    zb = base_emb - base_emb.mean(1, keepdims=True)
    zh = hr - hr.mean(1, keepdims=True)
    scores["baseline_corr"] = (zb / np.linalg.norm(zb, axis=1, keepdims=True)) @ \
        (zh / np.linalg.norm(zh, axis=1, keepdims=True)).T
    per_chain: list[np.ndarray] = []
    for variant, sr in sr_variants.items():
        matcher.sr = sr
        t0 = time.perf_counter()
        rows: dict[str, list[np.ndarray]] = {}
        with Progress(f"probe templates, SR {variant}", len(probes), enabled=args.progress) as bar:
            for p in probes:
                pt = matcher.probe_templates(p["crop"], p["resolution"])
                for name, v in ablation_scores(pt.templates, pt.sizes, pt.scales, bank, hr).items():
                    rows.setdefault(name, []).append(v)
                if args.per_chain and variant == next(iter(sr_variants)) and 2 in pt.scales:
                    s2 = pt.scales.index(2)     # the x2 scale: where gallery degradations matter most (Sec. 4.2)
                    per_chain.append(pair_hypothesis_scores(pt.templates[s2], bank[pt.sizes[s2]]))
                bar.update()
        timing[f"probes_{variant}_s"] = time.perf_counter() - t0
        for name, v in rows.items():
            # The first variant (learned SR when given) owns the plain row names; a second one is suffixed.
            scores[name if variant == next(iter(sr_variants)) else f"{name}@{variant}"] = np.stack(v)

    # Rank-1 per row: all probes and per probe-size band.
    bands = np.asarray([band_of(int(r)) for r in probe_res])
    band_names = [f"{lo}-{hi}" for lo, hi in BANDS if np.any(bands == f"{lo}-{hi}")]
    table = {}
    def correct(sc: np.ndarray) -> np.ndarray:
        t = sc[np.arange(len(true)), true]
        others = sc.copy()
        others[np.arange(len(true)), true] = -np.inf
        return t > others.max(axis=1)

    base_ok = correct(scores["baseline_cosine"])
    for name, sc in scores.items():
        ok = correct(sc)
        table[name] = {"all": rank1(sc, true), **{b: rank1(sc[bands == b], true[bands == b]) for b in band_names},
                       # paired with the baseline (same probes): right only here / right only with the baseline
                       "gained_vs_baseline": int(np.sum(ok & ~base_ok)), "lost_vs_baseline": int(np.sum(~ok & base_ok))}

    # Thresholds from the impostor (non-mated) comparisons, and the mated acceptance at each.
    mated = np.zeros_like(scores["baseline_cosine"], dtype=bool)
    mated[np.arange(len(true)), true] = True
    thresholds = {}
    for name in ("baseline_cosine", "smax_sadd", "smax_sadd@bicubic"):
        if name not in scores:
            continue
        sc = scores[name]
        thresholds[name] = {}
        for band in ["all", *band_names]:
            keep = np.ones(len(true), bool) if band == "all" else bands == band
            imp, gen = sc[keep][~mated[keep]], sc[keep][mated[keep]]
            thresholds[name][band] = {
                "genuine": int(len(gen)),
                "impostor_quantiles": {q: float(np.quantile(imp, float(q))) for q in ("0.5", "0.9", "0.99")},
                "far": {f"{far:g}": {**threshold_at_far(imp, far),
                                     "tar": float(np.mean(gen > threshold_at_far(imp, far)["threshold"]))}
                        for far in FARS}}
    return {"model": {**embedder.describe(), "path": str(model)},
            "sr": {"models": [str(s) for s in args.sr or []], "variants": list(sr_variants)},
            "chains": len(chains), "gallery_hypotheses": hyps, "match_sizes": list(sizes),
            "kernel_scaling": matcher.kernel_scaling,
            "scales": list(matcher.scales), "blur_levels": matcher.blur_levels,
            "embeddings": {"gallery": int(len(gallery) * hyps * len(sizes)),
                           "probes": int(len(probes) * (1 + len(sr_variants) * len(matcher.scales)
                                                        * matcher.blur_levels))},
            "rank1": table, "thresholds": thresholds, "per_chain_x2": chain_table(per_chain, chains, true),
            "timing_s": {k: round(v, 1) for k, v in timing.items()},
            "_scores": scores, "_true": true, "_bands": bands}


# ------------------------------------------------------------------------------------ LFW btm-stm verification

def verify_btm_stm(model: str, args: argparse.Namespace) -> dict:
    """Knoche's btm-stm protocol ``--verify`` (first image 112 px, second degraded with F_up(F_down,r)) on
    ``--verify-pairs-per-fold`` pairs of every LFW fold (half genuine): 10-fold accuracy of the plain cosine and
    of the meet-in-the-middle scores (gallery side = the 112 px image, probe side = the degraded one)."""
    from crres_sdk import degrade
    from crres_sdk.mitm import MitmMatcher, OnnxSuperResolver, sample_chains

    from evaluation.datasets import BTM_STM_PROTOCOLS, lfw_image_relpath, parse_pairs, parse_size_protocol
    from evaluation.embedder import normalization_from_args, open_embedder
    from evaluation.progress import Progress
    from evaluation.verification import kfold_accuracy

    pairs = parse_pairs(args.lfw / "pairs.txt")
    sizes = parse_size_protocol(args.lfw / "btm_stm" / BTM_STM_PROTOCOLS[args.verify], len(pairs))
    issame = np.asarray([p.issame for p in pairs])
    folds = np.asarray([p.fold for p in pairs])
    half = args.verify_pairs_per_fold // 2
    keep = np.sort(np.concatenate([np.concatenate([np.flatnonzero((folds == k) & issame)[:half],
                                                   np.flatnonzero((folds == k) & ~issame)[:half]])
                                   for k in np.unique(folds)]))
    rel = [(lfw_image_relpath(pairs[i].name1, pairs[i].num1), lfw_image_relpath(pairs[i].name2, pairs[i].num2))
           for i in keep]
    crops = aligned_crops(args.lfw, sorted({r for pair in rel for r in pair}), args.cache_dir, args.progress)
    is_bundle = Path(model).is_dir()
    embedder = open_embedder(model, backend="onnxruntime", threads=args.threads, batch_size=args.batch_size,
                             normalization=None if is_bundle else normalization_from_args(args.color, args.mean,
                                                                                          args.std))
    sr = OnnxSuperResolver.from_dir(*args.sr, backend="onnxruntime", threads=args.threads) if args.sr else None
    chains = sample_chains(args.chains, args.seed) if args.chains else []
    # Probes of 5..10 px reach k x r = 10..80 px: the SDK's full list of match sizes.
    matcher = MitmMatcher(embedder.embed, sr, chains=chains, match_sizes=DEFAULT_MATCH_SIZES, seed=args.seed,
                          batch_size=64, blur_levels=args.blur_levels, kernel_scaling=args.kernel_scaling)
    gallery_cache: dict[str, tuple[dict, np.ndarray]] = {}
    rows: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    with Progress(f"btm-stm {args.verify} pairs", len(keep), enabled=args.progress) as bar:
        for (a, b), i in zip(rel, keep):
            if a not in gallery_cache:
                t, s = matcher.gallery_templates(crops[a])
                bank = {int(size): t[s == size][None] for size in matcher.match_sizes}
                gallery_cache[a] = (bank, bank[matcher.input_size][:, 0])
            bank, hr = gallery_cache[a]
            r = int(sizes[i, 1])
            probe_crop = degrade(crops[b][None], r)[0] if r < 112 else crops[b]
            plain = matcher.embed(probe_crop[None])[0]
            rows.setdefault("baseline_cosine", []).append(float(plain @ hr[0]))
            pt = matcher.probe_templates(probe_crop, r)
            for name, v in ablation_scores(pt.templates, pt.sizes, pt.scales, bank, hr).items():
                rows.setdefault(name, []).append(float(v[0]))
            bar.update()
    y, f = issame[keep], folds[keep]
    acc = {name: kfold_accuracy(np.asarray(v), y, f) for name, v in rows.items()}
    return {"protocol": args.verify, "pairs": int(len(keep)), "pairs_per_fold": args.verify_pairs_per_fold,
            "probe_sizes": [int(sizes[keep, 1].min()), int(sizes[keep, 1].max())], "chains": len(chains),
            "match_sizes": list(matcher.match_sizes), "sr": [str(x) for x in args.sr or []],
            "time_s": round(time.perf_counter() - t0, 1),
            "accuracy": {name: {"mean": a.accuracy, "std": a.std} for name, a in acc.items()}}


# ------------------------------------------------------------------------------------------------ report

def table2(result: dict, suffix: str = "") -> list[str]:
    """Markdown rows in the order of Table 2 (rank-1 %, all probes)."""
    r1 = result["rank1"]
    scales = result["scales"]

    def cell(name: str) -> str:
        name = name + suffix if not name.startswith("baseline") else name
        return f"{100 * r1[name]['all']:.1f}" if name in r1 else "-"

    head = "| row | " + " | ".join(f"{k}x" for k in scales) + " |"
    lines = [head, "|---|" + "---|" * len(scales),
             f"| baseline (bicubic to 112, cosine) | {cell('baseline_cosine')} (no SR) |" + " |" * (len(scales) - 1),
             f"| baseline (bicubic to 112, correlation) | {cell('baseline_corr')} |" + " |" * (len(scales) - 1)]
    for label, key in (("+SR single hypothesis", "sr_single"), ("+SR multi hypothesis (16 blurs)", "sr_multi"),
                       ("+resolution matching", "resmatch"), ("+gallery degradations", "gallerydeg")):
        lines.append(f"| {label} | " + " | ".join(cell(f"{key}_x{k}") for k in scales) + " |")
    lines += ["", "| multi-scale fusion | rank-1 % |", "|---|---|"]
    lines += [f"| {f} | {cell(f)} |" for f in MULTISCALE_FUSIONS]
    return lines


def band_table(result: dict, names: list[str]) -> list[str]:
    bands = [b for b in next(iter(result["rank1"].values())) if b[0].isdigit()]
    lines = ["| row | all | " + " | ".join(f"{b} px" for b in bands) + " | gained / lost vs baseline |",
             "|---|---|" + "---|" * len(bands) + "---|"]
    for n in names:
        if n in result["rank1"]:
            v = result["rank1"][n]
            lines.append(f"| {n} | {100 * v['all']:.1f} | " + " | ".join(f"{100 * v[b]:.1f}" for b in bands)
                         + f" | +{v['gained_vs_baseline']} / -{v['lost_vs_baseline']} |")
    return lines


def threshold_table(result: dict) -> list[str]:
    lines = ["| scores | band | impostors | t @ FAR 1e-2 (TAR) | t @ FAR 1e-3 (TAR) |", "|---|---|---|---|---|"]
    for name, per_band in result["thresholds"].items():
        for band, v in per_band.items():
            cells = []
            for far in ("0.01", "0.001"):
                f = v["far"][far]
                mark = "" if f["estimable"] else " (n < 1/FAR)"
                cells.append(f"{f['threshold']:.4f} ({100 * f['tar']:.1f} %){mark}")
            lines.append(f"| {name} | {band} | {v['far']['0.01']['impostors']} | {cells[0]} | {cells[1]} |")
    return lines


def write_report(results: dict, out: Path) -> str:
    lines = [f"# Meet-in-the-middle ablation on LFW (SCface-like layout)", "",
             f"`{results['command']}`", "", f"Layout: {json.dumps(results['layout'])}", ""]
    for res in results["models"]:
        lines += [f"## {res['model']['name']}", "",
                  f"{res['gallery_hypotheses']} gallery hypotheses (undegraded + {res['chains']} chains) x "
                  f"{len(res['match_sizes'])} match sizes {res['match_sizes']}; probes: {res['blur_levels']} blur "
                  f"levels x SR {res['scales']}; SR: {', '.join(res['sr']['variants'])}; "
                  f"time {res['timing_s']}", "", f"Table 2 rows (rank-1 %, SR: {res['sr']['variants'][0]}):", ""]
        lines += table2(res)
        if "bicubic" in res["sr"]["variants"] and "learned" in res["sr"]["variants"]:
            lines += ["", "Same with bicubic upsampling instead of the SR network:", ""]
            lines += table2(res, "@bicubic")
        lines += ["", "Per probe size band (rank-1 %):", ""]
        lines += band_table(res, ["baseline_cosine", "sr_single_x8", "sr_multi_x2", "resmatch_x2", "gallerydeg_x2",
                                  "smax_sadd", "t_add", "t_concat", "smax_sadd@bicubic", "t_concat@bicubic"])
        lines += ["", "Thresholds on impostor (non-mated probe x identity) scores:", ""]
        lines += threshold_table(res) + [""]
        pc = res.get("per_chain_x2")
        if pc:
            lines += ["Gallery degradations one chain at a time (x2, S_max over the undegraded image and that "
                      f"chain; undegraded alone {100 * pc['undegraded_only']:.1f} %), mean rank-1 % of the chains "
                      "that use each function:", "", "| function | chains | mean rank-1 % |", "|---|---|---|"]
            lines += [f"| {f} | {pc['chains_per_function'][f]} | {100 * v:.1f} |"
                      for f, v in pc["mean_by_function"].items()]
            lines += ["", "| chain | rank-1 % |", "|---|---|"]
            lines += [f"| {r['chain']} | {100 * r['rank1']:.1f} |" for r in pc["chains"]] + [""]
    for ver in results.get("verification", []):
        lines += [f"## LFW btm-stm {ver['protocol']}, {ver['pairs']} pairs, {ver['model']}", "",
                  "| scores | 10-fold accuracy % |", "|---|---|"]
        lines += [f"| {n} | {100 * a['mean']:.2f} ± {100 * a['std']:.2f} |" for n, a in ver["accuracy"].items()]
        lines.append("")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--lfw", type=Path, required=True, help="LFW folder with images/ and pairs.txt")
    p.add_argument("--model", action="append", required=True, help="ONNX file or bundle folder (repeatable)")
    p.add_argument("--sr", nargs="*", default=None, help="folders with sr_x{2,4,8}.onnx (none: bicubic stand-in)")
    p.add_argument("--bicubic-too", action="store_true", help="also score the probes with bicubic 'SR'")
    p.add_argument("--identities", type=int, default=150)
    p.add_argument("--probes-per-identity", type=int, default=2)
    p.add_argument("--probe-res", type=int, nargs=2, default=(16, 24), metavar=("MIN", "MAX"))
    p.add_argument("--camera", choices=("on", "off"), default="on",
                   help="probe camera effects (blur, noise, JPEG) after the downsampling, or none")
    p.add_argument("--per-chain", action="store_true",
                   help="also rank-1 at x2 with the undegraded image plus one chain at a time")
    p.add_argument("--chains", type=int, default=32, help="degradation chains per gallery image (of 1463)")
    p.add_argument("--match-sizes", type=int, nargs="+", default=list(REACHABLE_MATCH_SIZES))
    p.add_argument("--kernel-scaling", choices=("image", "literal"), default="literal",
                   help="Table 1 blur kernels scaled with the chain's image (crres_sdk.mitm.apply_chain) or in "
                        "pixels at every step as the paper's text reads (the issue-9 runs)")
    p.add_argument("--blur-levels", type=int, default=16, help="probe blur hypotheses, sigma 0..1 (paper: 16)")
    p.add_argument("--color", choices=("rgb", "bgr"), help="input colour order of a bare ONNX model")
    p.add_argument("--mean", help="input mean of a bare ONNX model (default 127.5)")
    p.add_argument("--std", help="input std of a bare ONNX model (default 128)")
    p.add_argument("--verify", choices=("all_res", "high_res", "mid_res", "low_res"),
                   help="also run this LFW btm-stm protocol on a subset of pairs (plain vs meet-in-the-middle)")
    p.add_argument("--verify-pairs-per-fold", type=int, default=20, help="pairs of each of the 10 folds")
    p.add_argument("--skip-identification", action="store_true", help="only the --verify protocol")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1, help="crops per embedding call (1 was fastest on one "
                                                                "thread here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=REPO / "runs" / "mitm" / "cache")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.identities < 2 or args.probes_per_identity < 1 or args.chains < 0:
        raise SystemExit("--identities must be >= 2, --probes-per-identity >= 1, --chains >= 0")
    if not 1 <= args.probe_res[0] <= args.probe_res[1] < 112:
        raise SystemExit("--probe-res MIN MAX must satisfy 1 <= MIN <= MAX < 112")
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"command": "python -m training.experiments.mitm_eval " + " ".join(sys.argv[1:] if argv is None
                                                                                    else argv), "models": []}
    if args.verify:
        results["verification"] = []
        for model in args.model:
            print(f"btm-stm {args.verify}, model {model}", flush=True)
            ver = verify_btm_stm(model, args)
            ver["model"] = str(model)
            results["verification"].append(ver)
            (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
            for name in ("baseline_cosine", "gallerydeg_x2", *MULTISCALE_FUSIONS):
                a = ver["accuracy"][name]
                print(f"  {name:<22} {100 * a['mean']:.2f} +- {100 * a['std']:.2f}", flush=True)
        if args.skip_identification:
            print(f"wrote {args.out / 'results.json'}")
            return 0
    relpaths, rows = select_layout(args.lfw, args.identities, args.probes_per_identity, args.seed)
    crops = aligned_crops(args.lfw, relpaths, args.cache_dir, args.progress)
    gallery = [r for r in rows if r["role"] == "gallery"]
    probes = make_probes(rows, crops, tuple(args.probe_res), args.seed, camera=args.camera == "on")
    res = np.asarray([p["resolution"] for p in probes])
    layout = {"identities": len(gallery), "probes": len(probes), "probe_res": list(args.probe_res),
              "probes_per_band": {b: int(np.sum([band_of(int(r)) == b for r in res]))
                                  for b in [f"{lo}-{hi}" for lo, hi in BANDS]},
              "seed": args.seed, "source": "LFW pairs.txt images", "camera": "blur U(0.3,1.0) px, read noise "
              "U(1,4) grey levels + shot gain 0.03, JPEG quality U{40..90}, at the probe's size"
              if args.camera == "on" else "off: F_up(F_down,r) only"}
    print(f"layout: {json.dumps(layout)}", flush=True)
    results["layout"] = layout
    for model in args.model:
        print(f"model {model}", flush=True)
        res = evaluate_model(model, args, gallery, probes, crops)
        np.savez_compressed(args.out / f"scores_{Path(model).stem}.npz", true=res.pop("_true"),
                            bands=res.pop("_bands"), **res.pop("_scores"))
        results["models"].append(res)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print("\n".join(table2(res)), flush=True)
    results["total_s"] = round(time.perf_counter() - start, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(write_report(results, args.out))
    print(f"wrote {args.out / 'results.json'} and report.md in {results['total_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
