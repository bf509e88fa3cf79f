"""Meet-in-the-middle (Grm et al. 2023) in the LFW verification protocol of docs/results.md section 5 (issue 17).

    python -m evaluation.mitm_verification --lfw ../shared/data/lfw \
        --model runs/dlib_pretrained/final.pt --model models/crres_default \
        --pairs-per-fold 20 --chains 16 --blur-levels 4 --threads 1 --out runs/mitm17/verify

The protocol is ``python -m evaluation``'s ``hr`` and ``btm_stm`` (LFW View-2, our MTCNN alignment and its cached
crops, ``evaluation.datasets.load_lfw``): the first photo of a pair at 112 px, the second at 112 px (hr)
or degraded with ``F_up(F_down,r)`` to the btm-stm size of that pair (all/high/mid/low), 10-fold accuracy with
the threshold fitted on the other nine folds. Meet-in-the-middle costs tens of embeddings per pair, so it runs on
a fixed subset: ``--pairs-per-fold`` pairs of every fold, the first half genuine and half impostor in pairs.txt
order (``evaluation.datasets.limit_pairs``, the subset ``python -m evaluation --limit-pairs N`` takes).
Every model is scored on that subset twice, plainly (cosine of the two embeddings, ``protocols.pair_scores``)
and with meet-in-the-middle, so each comparison is like for like; the plain figures can be checked with
``python -m evaluation --model M --lfw DIR --protocols hr,btm_stm --limit-pairs N``.

Meet-in-the-middle here (``crres_sdk.mitm``): the first photo is the gallery (the undegraded crop plus
``--chains`` degradation chains of eq. 1, ``sample_chains(n, --seed)``, resolution-matched to each probe scale,
Sec. 3.2), the second the probe (brought down to its own size r, ``--blur-levels`` Gaussian blurs sigma 0..1,
upsampled x2/x4/x8, Sec. 3.3); the pair's score is a fusion of the correlation similarities (eq. 3, Sec. 3.4).
Every Table 2 row and Table 3 fusion comes from the same templates (``evaluation.mitm.
ablation_scores``); the report leads with the SDK's default ``smax_sadd`` (Sec. 4.2's best). Gallery chains
are made with each ``--kernel-scaling`` (``image``: Table 1's blur lengths scaled with the chain's image;
``literal``: in pixels at every step) from the same probe templates. Without ``--sr`` folders the SR network is
bicubic upsampling (``crres_sdk.mitm.bicubic_sr``): "train nothing".

Writes ``results.json`` (accuracies, paired decision changes against the plain score, the command, timing) and
``scores.npz`` (every pair's scores) into ``--out`` and prints a table per model. One thread by default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

PROTOCOL_ORDER = ("hr", "all_res", "high_res", "mid_res", "low_res")
#: Score rows printed first: the plain cosine, the paper's pipeline (SDK default), the best earlier fusion at
#: 16-24 px, and resolution matching alone (no gallery degradation) at x2.
HEADLINE_ROWS = ("plain", "smax_sadd", "t_concat", "resmatch_x2", "gallerydeg_x2")


def fold_decisions(scores: np.ndarray, issame: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Per-pair correct/incorrect under 10-fold evaluation (the threshold of pair i's fold fitted on the other
    folds, as ``kfold_accuracy``), so two score rows can be compared pair by pair."""
    from evaluation.verification import best_threshold

    ok = np.zeros(len(scores), bool)
    for k in np.unique(folds):
        test = folds == k
        thr, _ = best_threshold(scores[~test], issame[~test])
        ok[test] = (scores[test] > thr) == issame[test]
    return ok


class GalleryBank:
    """Gallery templates of one crop per kernel scaling, computed lazily per match size; identical
    resolution-matched images (chains without a blur after the first step are the same in both scalings) are
    embedded once."""

    def __init__(self, matchers: dict, embed) -> None:
        self.matchers, self.embed = matchers, embed
        self._hyps: dict[tuple[str, int], list[np.ndarray]] = {}
        self._bank: dict[tuple[str, int, int], np.ndarray] = {}
        self._by_bytes: dict[bytes, np.ndarray] = {}
        self.embedded = 0

    def templates(self, scaling: str, image: int, crop: np.ndarray, size: int) -> np.ndarray:
        """(H, D): hypothesis 0 the undegraded crop, then each chain, matched to ``size`` px."""
        from crres_sdk.mitm import match_resolution

        key = (scaling, image, size)
        if key not in self._bank:
            matcher = self.matchers[scaling]
            hyps = self._hyps.get((scaling, image))
            if hyps is None:
                hyps = self._hyps[(scaling, image)] = matcher.gallery_hypotheses(crop)
            imgs = [match_resolution(h, size, matcher.input_size) for h in hyps]
            digests = [hashlib.sha1(im.tobytes()).digest() for im in imgs]
            todo = sorted({d: i for i, d in enumerate(digests) if d not in self._by_bytes}.values())
            if todo:
                for i, t in zip(todo, matcher.embed(np.stack([imgs[i] for i in todo]))):
                    self._by_bytes[digests[i]] = t
                self.embedded += len(todo)
            self._bank[key] = np.stack([self._by_bytes[d] for d in digests])
        return self._bank[key]

    def drop_image(self, image: int) -> None:
        """Forget one crop's hypothesis images (the templates stay)."""
        for key in [k for k in self._hyps if k[1] == image]:
            del self._hyps[key]


def evaluate_model(model: str, ds, sizes: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    from crres_sdk import degrade
    from crres_sdk.mitm import MitmMatcher, OnnxSuperResolver, sample_chains

    from evaluation.embedder import normalization_from_args, open_embedder
    from evaluation.mitm import ablation_scores
    from evaluation.progress import Progress
    from evaluation.protocols import EmbeddingCache, pair_scores
    from evaluation.verification import kfold_accuracy

    is_bundle = Path(model).is_dir()
    embedder = open_embedder(model, backend=args.backend, threads=args.threads, batch_size=args.batch_size,
                             normalization=None if is_bundle else normalization_from_args(args.color, args.mean,
                                                                                          args.std))
    sr = OnnxSuperResolver.from_dir(*args.sr, backend="onnxruntime", threads=args.threads) if args.sr else None
    chains = sample_chains(args.chains, args.seed) if args.chains else []
    matchers = {mode: MitmMatcher(embedder.embed, sr, chains=chains, blur_levels=args.blur_levels,
                                  seed=args.seed, batch_size=args.batch_size, kernel_scaling=mode)
                for mode in args.kernel_scaling}
    first = next(iter(matchers.values()))
    bank = GalleryBank(matchers, first.embed)
    cache = EmbeddingCache(ds.crops, embedder, progress=False, threads=args.threads)
    t_start = time.perf_counter()

    rows: dict[str, dict[str, list[float]]] = {p: {} for p in sizes}
    probe_embeddings = 0
    gallery_images = ds.pair_index[:, 0]
    last_use = {int(g): i for i, g in enumerate(gallery_images)}
    with Progress(f"{embedder.name}: pairs x {len(sizes)} protocols", ds.n_pairs, enabled=args.progress) as bar:
        for i, (g, p) in enumerate(ds.pair_index):
            g, p = int(g), int(p)
            for proto, sz in sizes.items():
                r = int(sz[i, 1])
                probe_crop = ds.crops[p] if r >= 112 else degrade(ds.crops[p][None], r, threads=args.threads)[0]
                pt = first.probe_templates(probe_crop, r)
                probe_embeddings += pt.templates.shape[0] * pt.templates.shape[1]
                for mode in matchers:
                    per_size = {s: bank.templates(mode, g, ds.crops[g], s)[None] for s in set(pt.sizes)}
                    hr = bank.templates(mode, g, ds.crops[g], first.input_size)[:1]        # the undegraded crop
                    for name, v in ablation_scores(pt.templates, pt.sizes, pt.scales, per_size, hr).items():
                        key = name if len(matchers) == 1 else f"{name}@{mode}"
                        rows[proto].setdefault(key, []).append(float(v[0]))
            if last_use[g] == i:
                bank.drop_image(g)
            bar.update()
    mitm_s = time.perf_counter() - t_start

    t0 = time.perf_counter()
    for proto, sz in sizes.items():
        rows[proto]["plain"] = pair_scores(cache, ds, sz[:, 0], sz[:, 1]).astype(float).tolist()
    plain_s = time.perf_counter() - t0

    accuracy, scores = {}, {}
    for proto in sizes:
        plain_ok = fold_decisions(np.asarray(rows[proto]["plain"]), ds.issame, ds.folds)
        accuracy[proto] = {}
        for name, values in rows[proto].items():
            s = np.asarray(values)
            scores[f"{proto}/{name}"] = s.astype(np.float32)
            res = kfold_accuracy(s, ds.issame, ds.folds)
            ok = fold_decisions(s, ds.issame, ds.folds)
            accuracy[proto][name] = {"accuracy": res.accuracy, "std": res.std,
                                     # the same pairs, decided right only with this row / only with plain
                                     "gained_vs_plain": int(np.sum(ok & ~plain_ok)),
                                     "lost_vs_plain": int(np.sum(~ok & plain_ok))}
    return {"model": {**embedder.describe(), "path": str(model)}, "chains": len(chains),
            "chain_names": ["+".join(c) for c in chains], "kernel_scaling": list(matchers),
            "blur_levels": first.blur_levels, "scales": list(first.scales), "match_sizes": list(first.match_sizes),
            "sr": [str(s) for s in args.sr] if args.sr else "bicubic",
            "embeddings": {"gallery": bank.embedded, "probe": probe_embeddings, "plain": cache.computed},
            "timing_s": {"mitm": round(mitm_s, 1), "plain": round(plain_s, 1)},
            "accuracy": accuracy, "_scores": scores}


def table(result: dict, protocols: list[str]) -> list[str]:
    acc = result["accuracy"]
    names = list(next(iter(acc.values())))
    head = [n for n in names if n.split("@")[0] in HEADLINE_ROWS]
    head.sort(key=lambda n: (HEADLINE_ROWS.index(n.split("@")[0]), n))
    rest = sorted(n for n in names if n not in head)
    lines = ["| scores | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for n in head + rest:
        cells = []
        for p in protocols:
            a = acc[p][n]
            delta = "" if n == "plain" else f" (+{a['gained_vs_plain']}/-{a['lost_vs_plain']})"
            cells.append(f"{100 * a['accuracy']:.2f} ± {100 * a['std']:.2f}{delta}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    from evaluation.datasets import LFW_MIN_FACE

    p = argparse.ArgumentParser(prog="python -m evaluation.mitm_verification",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--lfw", type=Path, required=True, help="LFW folder with images/, pairs.txt and btm_stm/")
    p.add_argument("--model", action="append", required=True, help="checkpoint, bundle folder or ONNX (repeatable)")
    p.add_argument("--protocols", default=",".join(PROTOCOL_ORDER),
                   help=f"comma-separated subset of {','.join(PROTOCOL_ORDER)}")
    p.add_argument("--pairs-per-fold", type=int, default=20, help="pairs of each of the 10 folds, half genuine")
    p.add_argument("--chains", type=int, default=16, help="degradation chains per gallery image (of 1463)")
    p.add_argument("--blur-levels", type=int, default=16, help="probe blur hypotheses, sigma 0..1 (paper: 16)")
    p.add_argument("--kernel-scaling", default="literal,image",
                   help="gallery blur kernels: image (scaled with the chain's image), literal, or both")
    p.add_argument("--sr", nargs="*", default=None, help="folders with sr_x{2,4,8}.onnx (none: bicubic)")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "openvino"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--color", choices=("rgb", "bgr"), help="input colour order of a bare ONNX model")
    p.add_argument("--mean", help="input mean of a bare ONNX model")
    p.add_argument("--std", help="input std of a bare ONNX model")
    p.add_argument("--cache-dir", type=Path, help="aligned-crop cache (default ~/.cache/crres/eval)")
    p.add_argument("--min-face", type=int, default=LFW_MIN_FACE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    from evaluation import datasets

    args = build_parser().parse_args(argv)
    protocols = [s.strip() for s in args.protocols.split(",") if s.strip()]
    if not protocols or set(protocols) - set(PROTOCOL_ORDER):
        raise SystemExit(f"error: --protocols must be a subset of {','.join(PROTOCOL_ORDER)}")
    args.kernel_scaling = [s.strip() for s in args.kernel_scaling.split(",") if s.strip()]
    if not args.kernel_scaling or set(args.kernel_scaling) - {"image", "literal"}:
        raise SystemExit("error: --kernel-scaling must be image, literal or image,literal")
    if args.pairs_per_fold < 2 or args.chains < 0 or args.blur_levels < 1:
        raise SystemExit("error: --pairs-per-fold >= 2, --chains >= 0, --blur-levels >= 1")
    start = time.perf_counter()
    full = datasets.load_lfw(args.lfw, cache_dir=args.cache_dir, min_face=args.min_face, progress=args.progress)
    ds, kept = datasets.limit_pairs(full, args.pairs_per_fold)
    sizes = {}
    for proto in protocols:
        if proto == "hr":
            sizes[proto] = np.full((ds.n_pairs, 2), 112, np.int64)
        else:
            all_sizes = datasets.parse_size_protocol(args.lfw / "btm_stm" / datasets.BTM_STM_PROTOCOLS[proto],
                                                     full.n_pairs)
            sizes[proto] = all_sizes[kept]
            if not np.all(sizes[proto][:, 0] == 112):
                raise SystemExit(f"error: {proto}: the first image of every pair must be at 112 px")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m evaluation.mitm_verification " + " ".join(sys.argv[1:] if argv is None else argv)
    results = {"command": command, "subset": {"pairs": ds.n_pairs, "pairs_per_fold": args.pairs_per_fold,
                                              "genuine": int(ds.issame.sum()), "rule": "limit_pairs: first half "
                                              "genuine, half impostor of every fold in pairs.txt order",
                                              "pair_indices_sha1": hashlib.sha1(kept.tobytes()).hexdigest()},
               "dataset": {k: v for k, v in ds.info.items() if k != "fallback_images"},
               "protocols": protocols, "models": []}
    all_scores = {"pair_indices": kept, "issame": ds.issame, "folds": ds.folds,
                  **{f"sizes/{p}": s[:, 1] for p, s in sizes.items()}}
    for k, model in enumerate(args.model):
        print(f"model {model}", flush=True)
        res = evaluate_model(model, ds, sizes, args)
        all_scores.update({f"m{k}/{name}": v for name, v in res.pop("_scores").items()})
        results["models"].append(res)
        results["seconds"] = round(time.perf_counter() - start, 1)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        np.savez_compressed(args.out / "scores.npz", **all_scores)
        print(f"\n## {res['model']['name']} ({ds.n_pairs} pairs, 10-fold accuracy %, gained/lost pairs vs plain)\n")
        print("\n".join(table(res, protocols)), flush=True)
    print(f"wrote {args.out / 'results.json'} and scores.npz in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
