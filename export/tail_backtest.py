"""How well each impostor-tail model of ``export/thresholds.py`` predicts false accepts it was not fitted on.

The thresholds at rates a few hundred held-out identities cannot measure (FAR 1e-5, 1e-6, and the per-pair rates
of the 1:N policy, fpir / M) come from a tail fitted to the top impostor scores. This re-embeds a bundle's
held-out crops (``--calib`` split exactly as ``export/build_engine.py`` split it, by
``export.calibration.split_for_export`` with the manifest's seed and ``--holdout-max``) through every ONNX file of
the bundle, splits the held-out identities in two halves, fits each tail model to one half's impostor scores and
applies its thresholds at rates beyond that half's empirical reach (FAR 1e-4, 1e-5) to the other half's impostor
pairs. Summed over resolutions, both pairings (1:1 and 1:N tables) and both directions, observed / predicted false
accepts says whether a model is conservative (< 1: fewer strangers accepted than promised) or optimistic (> 1: the
promise broken) on identities it has not seen.

    python -m export.tail_backtest --bundle models/crres_default --calib runs/data/dlib_ft/holdout \
        --holdout-max 800 --out runs/tail_backtest/crres_default
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from export import thresholds as th

LOG = logging.getLogger("crres.export")
#: Rates the backtest extrapolates to (each half measures ~1.6e5 impostor pairs per table).
BACKTEST_FARS = ("1e-4", "1e-5")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.tail_backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="bundle folder (manifest.json + ONNX files)")
    p.add_argument("--calib", required=True, help="the --calib folder the bundle was built with (identity folders)")
    p.add_argument("--holdout-max", type=int, required=True, help="the build's --holdout-max")
    p.add_argument("--seed", type=int, default=None, help="the build's --seed (default: the manifest's)")
    p.add_argument("--out", required=True, help="folder for the scores cache and report.json")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "openvino"))
    return p.parse_args(argv)


def held_out(calib: str, seed: int, holdout_max: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(aligned crops, identity labels, identity names) of the build's held-out split of ``calib`` (calib_max only
    bounds the calibration side, drawn after the held-out one, so any value gives the build's held-out files)."""
    from export.calibration import list_crops, load_faces, split_for_export

    split = split_for_export(list_crops(calib), calib, seed, calib_max=10**9, holdout_max=holdout_max)
    if split.holdout_identities is None or not split.by_identity:
        raise SystemExit(f"--calib {calib}: needs identity sub-folders (held-out identities set thresholds)")
    crops, files = load_faces(split.holdout, 112)
    label_of = dict(zip(split.holdout, split.holdout_identities))
    names, labels = np.unique([label_of[f] for f in files], return_inverse=True)
    return crops, labels, list(names)


def score_tables(bundle: Path, manifest: dict, crops: np.ndarray, labels: np.ndarray, backend: str,
                 cache: Path) -> dict[str, dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]]:
    """{file key: {pairing: [(genuine, impostor, impostor identity pairs) per resolution]}}, cached in ``cache`` per
    file content (the manifest's sha256), so another bundle or export in the same folder is scored afresh."""
    from export.lfw_parity import make_cache

    out: dict[str, dict[str, list]] = {}
    idx = np.arange(len(crops))
    src = th.PairSource("calib-holdout", crops, labels, idx, idx, "held-out identities")
    for runtime, roles in manifest["files"].items():
        if runtime != "onnx":
            continue
        for role, entry in roles.items():
            key = f"{runtime}/{role}"
            path = cache / f"scores_{role}_{entry['sha256'][:16]}.npz"
            if path.exists():
                z = np.load(path)
                out[key] = {p: [(z[f"{p}_{r}_g"], z[f"{p}_{r}_i"], z[f"{p}_{r}_ids"]) for r in th.RESOLUTIONS]
                            for p in th.PAIRINGS}
                continue
            t0 = time.perf_counter()
            emb = make_cache(bundle / entry["path"], backend, manifest["input"], crops, progress=False)
            tables, arrays = {}, {}
            for pairing in th.PAIRINGS:
                rows = []
                for r in th.RESOLUTIONS:
                    g, i, ids = th.pair_scores(src, lambda s, ix, rr: emb.get(ix, rr), r, pairing, with_ids=True)
                    rows.append((g, i, ids))
                    arrays.update({f"{pairing}_{r}_g": g, f"{pairing}_{r}_i": i, f"{pairing}_{r}_ids": ids})
                tables[pairing] = rows
            np.savez_compressed(path, **arrays)
            LOG.info("%s: scored in %.0f s", key, time.perf_counter() - t0)
            out[key] = tables
    return out


def backtest(tables: dict[str, list], n_ids: int, seed: int) -> dict[str, Any]:
    """Per tail model: observed and predicted false accepts on the other half, per rate, summed."""
    rng = np.random.default_rng([seed, 11])
    half = np.zeros(n_ids, bool)
    half[rng.permutation(n_ids)[: n_ids // 2]] = True
    report: dict[str, Any] = {}
    for model in th.TAIL_MODELS:
        rows = []
        for pairing, per_r in tables.items():
            for r, (_, imp, ids) in zip(th.RESOLUTIONS, per_r):
                a = half[ids[:, 0]] & half[ids[:, 1]]
                b = ~half[ids[:, 0]] & ~half[ids[:, 1]]
                for fit_on, test_on in ((a, b), (b, a)):
                    tail = th.fit_tail(imp[fit_on], model=model)
                    test = imp[test_on]
                    for f in BACKTEST_FARS:
                        t = tail.threshold(float(f))
                        rows.append({"pairing": pairing, "r": r, "far": f, "fit_pairs": int(fit_on.sum()),
                                     "test_pairs": int(test.size), "threshold": t,
                                     "predicted": float(f) * test.size, "observed": int(np.sum(test > t)),
                                     "shape": tail.shape})
        summary = {}
        for f in BACKTEST_FARS:
            sel = [x for x in rows if x["far"] == f]
            pred = sum(x["predicted"] for x in sel)
            obs = sum(x["observed"] for x in sel)
            summary[f] = {"predicted": round(pred, 1), "observed": obs, "ratio": round(obs / pred, 3),
                          "tables_over_2x": sum(x["observed"] > 2 * x["predicted"] + 2 for x in sel),
                          "tables": len(sel)}
            for pairing in tables:
                part = [x for x in sel if x["pairing"] == pairing]
                summary[f][pairing] = round(sum(x["observed"] for x in part) / sum(x["predicted"] for x in part), 3)
        report[model] = {"summary": summary, "rows": rows}
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    a = parse_args(argv)
    bundle, out = Path(a.bundle), Path(a.out)
    manifest = json.loads((bundle / "manifest.json").read_text())
    seed = a.seed if a.seed is not None else int(manifest["calibration"]["seed"])
    out.mkdir(parents=True, exist_ok=True)
    crops, labels, names = held_out(a.calib, seed, a.holdout_max)
    LOG.info("held-out: %d crops of %d identities", len(crops), len(names))
    scores = score_tables(bundle, manifest, crops, labels, a.backend, out)
    report: dict[str, Any] = {"bundle": str(bundle), "crops": len(crops), "identities": len(names), "backtest": {}}
    for key, tables in scores.items():
        bt = report["backtest"][key] = backtest(tables, len(names), seed)
        for model, res in bt.items():
            for f, s in res["summary"].items():
                print(f"{key} {model:12s} FAR {f}: observed {s['observed']:5d} / predicted {s['predicted']:8.1f} "
                      f"= {s['ratio']:.3f} (1:1 {s['cross']:.3f}, 1:N {s['matched']:.3f}; tables over 2x + 2: "
                      f"{s['tables_over_2x']} of {s['tables']})")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
