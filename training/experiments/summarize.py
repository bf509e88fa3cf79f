"""Tabulate one comparison of ``compare.sh``: mean ± spread over seeds of every variant, per protocol.

    python -m training.experiments.summarize runs/compare/knoche

Reads ``<root>/<variant>/seed<k>/eval/results.json`` (``python -m evaluation``) and prints a Markdown
table (accuracy in %, mean ± half the range over seeds: with two seeds, each seed lies at one end) plus the
number of seeds. Columns: HR, the btm-stm protocols, the fixed cross-resolution sweep, Lai & Lam's HR-vs-LR
resolutions, whichever the runs have. Also writes ``summary.json`` and ``cr_sweep.png`` (the CR sweep, or
the HR-vs-LR one where the runs have no CR sweep) into the root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BTM_ORDER = ("low_res", "mid_res", "high_res", "all_res")


def run_metrics(results: dict) -> dict[str, float]:
    """{column: accuracy in %} of one evaluation."""
    out: dict[str, float] = {}
    if "hr" in results:
        out["HR"] = 100 * results["hr"]["accuracy"]
    for name in BTM_ORDER:
        if name in results.get("btm_stm", {}):
            out[name.replace("_res", "")] = 100 * results["btm_stm"][name]["accuracy"]
    for r, res in sorted(results.get("fixed", {}).get("cr", {}).items(), key=lambda kv: int(kv[0])):
        out[f"CR{r}"] = 100 * res["accuracy"]
    for r, res in sorted(results.get("lai", {}).items(), key=lambda kv: int(kv[0])):
        out[f"HRvs{r}"] = 100 * res["accuracy"]
    return out


def collect(root: Path) -> dict[str, list[dict[str, float]]]:
    """{variant: [metrics of each seed]} for every finished evaluation under ``root``."""
    found: dict[str, list[dict[str, float]]] = {}
    for path in sorted(root.glob("*/seed*/eval/results.json")):
        found.setdefault(path.parents[2].name, []).append(run_metrics(json.loads(path.read_text())))
    return found


def summarize(found: dict[str, list[dict[str, float]]]) -> dict[str, dict]:
    """{variant: {"seeds": n, column: {"mean", "spread", "values"}}}; spread = (max - min) / 2."""
    out: dict[str, dict] = {}
    for variant, runs in found.items():
        cols = [c for c in runs[0] if all(c in r for r in runs)]
        row: dict = {"seeds": len(runs)}
        for c in cols:
            v = np.array([r[c] for r in runs])
            row[c] = {"mean": float(v.mean()), "spread": float((v.max() - v.min()) / 2), "values": v.tolist()}
        out[variant] = row
    return out


def markdown(summary: dict[str, dict]) -> str:
    cols: list[str] = []
    for row in summary.values():
        cols += [c for c in row if c != "seeds" and c not in cols]
    lines = ["| variant | seeds | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for variant, row in summary.items():
        cells = [f"{row[c]['mean']:.2f} ± {row[c]['spread']:.2f}" if c in row else "-" for c in cols]
        lines.append(f"| {variant} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_points(summary: dict[str, dict]) -> tuple[str, dict[str, list[tuple[int, float, float]]]]:
    """The resolution sweep to plot: the CR columns, or Lai & Lam's HR-vs-r columns where no run has CR ones.

    Returns (column prefix, {variant: [(r, mean, spread), ...]}), variants without that sweep left out.
    """
    for prefix in ("CR", "HRvs"):
        sweep = {v: sorted((int(c[len(prefix):]), row[c]["mean"], row[c]["spread"])
                           for c in row if c.startswith(prefix) and c[len(prefix):].isdigit())
                 for v, row in summary.items()}
        sweep = {v: pts for v, pts in sweep.items() if pts}
        if sweep:
            return prefix, sweep
    return "", {}


def plot(summary: dict[str, dict], path: Path) -> bool:
    prefix, sweep = sweep_points(summary)
    if not sweep:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, pts in sweep.items():
        r, m, s = (np.array(x) for x in zip(*pts))
        ax.errorbar(r, m, yerr=s, marker="o", capsize=3, label=variant)
    ax.set_xscale("log")
    ax.set_xticks(sorted({p[0] for pts in sweep.values() for p in pts}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("probe resolution r (px), other image 112 px" if prefix == "CR"
                  else "query resolution r (px), HR gallery (Lai & Lam's setting)")
    ax.set_ylabel("LFW accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="one comparison's folder, e.g. runs/compare/knoche")
    args = p.parse_args(argv)
    found = collect(args.root)
    if not found:
        print(f"error: no */seed*/eval/results.json under {args.root}", file=sys.stderr)
        return 2
    summary = summarize(found)
    (args.root / "summary.json").write_text(json.dumps(summary, indent=1))
    print(markdown(summary))
    if plot(summary, args.root / "cr_sweep.png"):
        print(f"\nplot: {args.root / 'cr_sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
