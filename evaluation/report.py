"""Analyses as the papers plot them, as PNG + JSON + Markdown.

* accuracy vs resolution, CR and ER (Knoche Fig. 5 / Fig. 1);
* mean genuine / impostor cosine distance vs resolution, CR solid, ER dashed (Knoche Fig. 6);
* best (10-fold mean) distance threshold vs resolution, CR (Knoche Fig. 11);
* distance distributions per resolution, genuine vs impostor, CR left / ER right, HR in the middle (Fig. 7);
* ROC at HR; CMC per probe resolution for identification.

matplotlib is imported lazily (Agg backend); without it the JSON and Markdown are still written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluation.protocols import FIG7_RESOLUTIONS, strip_private


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def distance_quantiles(distances: np.ndarray, issame: np.ndarray) -> dict:
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]
    out = {}
    for key, mask in (("genuine", issame), ("impostor", ~issame)):
        d = distances[mask]
        out[key] = {f"q{int(q * 100)}": float(np.quantile(d, q)) for q in qs} if len(d) else {}
    return out


def plot_all(results: dict, out_dir: Path, title: str) -> list[str]:
    """Write the figures the results allow; returns the file names written."""
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    fixed = results.get("fixed")

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        written.append(name)

    if fixed:
        modes = [m for m in ("cr", "er") if fixed.get(m)]
        style = {"cr": "-", "er": "--"}
        if "hr" in results:   # at 112 px CR and ER are both the HR protocol: close the curves there
            hr_point = {"accuracy": results["hr"]["accuracy"],
                        "genuine_distance_mean": results["hr"]["genuine_distance_mean"],
                        "impostor_distance_mean": results["hr"]["impostor_distance_mean"],
                        "best_distance_threshold": results["hr"]["kfold"]["distance_threshold_mean"]}
            fixed = {m: {112: hr_point, **fixed[m]} for m in modes}
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in modes:
            rs = sorted(fixed[m])
            ax.plot(rs, [100 * fixed[m][r]["accuracy"] for r in rs], style[m], marker="o", label=m.upper())
        ax.set(xlabel="resolution r [px]", ylabel="10-fold accuracy [%]", title=f"{title}: accuracy (Knoche Fig. 5)")
        ax.grid(alpha=0.3); ax.legend()
        save(fig, "accuracy_vs_resolution.png")

        fig, ax = plt.subplots(figsize=(6, 4))
        for m in modes:
            rs = sorted(fixed[m])
            ax.plot(rs, [fixed[m][r]["genuine_distance_mean"] for r in rs], style[m], marker="o", color="C0",
                    label=f"genuine {m.upper()}")
            ax.plot(rs, [fixed[m][r]["impostor_distance_mean"] for r in rs], style[m], marker="^", color="C1",
                    label=f"impostor {m.upper()}")
        ax.set(xlabel="resolution r [px]", ylabel="mean cosine distance",
               title=f"{title}: mean distances (Knoche Fig. 6)")
        ax.grid(alpha=0.3); ax.legend()
        save(fig, "distance_vs_resolution.png")

        fig, ax = plt.subplots(figsize=(6, 4))
        for m in modes:
            rs = sorted(fixed[m])
            ax.plot(rs, [fixed[m][r]["best_distance_threshold"] for r in rs], style[m], marker="o", label=m.upper())
        ax.set(xlabel="resolution r [px]", ylabel="best distance threshold (10-fold mean)",
               title=f"{title}: thresholds (Knoche Fig. 11)")
        ax.grid(alpha=0.3); ax.legend()
        save(fig, "threshold_vs_resolution.png")

        fixed = results["fixed"]
        hr = results.get("hr", {})
        if "_distances" in hr and any("_distances" in v for m in modes for v in fixed[m].values()):
            available = sorted(set(fixed.get("cr", {})) | set(fixed.get("er", {})))
            chosen = [r for r in FIG7_RESOLUTIONS if r in available] or available[:5]
            panels = ([("CR", r, fixed["cr"][r]) for r in chosen if r in fixed.get("cr", {})]
                      + [("HR", 112, {**hr, "_issame": results["_issame"]})]
                      + [("ER", r, fixed["er"][r]) for r in reversed(chosen) if r in fixed.get("er", {})])
            fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(panels) + 1), 4))
            for k, (mode, r, res) in enumerate(panels):
                d, y = res["_distances"], res["_issame"]
                for part, mask, color, side in (("genuine", y, "C0", -0.2), ("impostor", ~y, "C1", 0.2)):
                    if mask.any():
                        vp = ax.violinplot(d[mask], positions=[k + side], widths=0.38, showmedians=True)
                        for body in vp["bodies"]:
                            body.set_facecolor(color); body.set_alpha(0.6)
                        for part_name in ("cbars", "cmins", "cmaxes", "cmedians"):
                            if part_name in vp:
                                vp[part_name].set_color(color)
            ax.set_xticks(range(len(panels)), [f"{m}\n{r}px" for m, r, _ in panels])
            ax.set(ylabel="cosine distance", title=f"{title}: distance distributions (Knoche Fig. 7)")
            ax.plot([], [], color="C0", label="genuine"); ax.plot([], [], color="C1", label="impostor")
            ax.legend(); ax.grid(alpha=0.3, axis="y")
            save(fig, "distance_distributions.png")

    if "hr_roc" in results:
        roc = results["hr_roc"]
        fig, ax = plt.subplots(figsize=(5, 4))
        far = np.maximum(np.asarray(roc["far"]), 1e-5)
        ax.semilogx(far, np.asarray(roc["tar"]))
        ax.set(xlabel="FAR", ylabel="TAR", title=f"{title}: ROC at 112 px", xlim=(1e-4, 1))
        ax.grid(alpha=0.3)
        save(fig, "roc_hr.png")

    ident = results.get("identification")
    if ident:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, res in ident["per_resolution"].items():
            ax.plot(range(1, len(res["cmc"]) + 1), [100 * v for v in res["cmc"]], marker=".", label=f"{key} px")
        ax.set(xlabel="rank", ylabel="identification rate [%]", title=f"{title}: CMC (HR gallery)")
        ax.grid(alpha=0.3); ax.legend(fontsize=7)
        save(fig, "cmc.png")
    return written


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def markdown(results: dict, figures: list[str]) -> str:
    lines = [f"# Evaluation: {results['model']['name']} on {results['dataset']['name']}", ""]
    ds = results["dataset"]
    lines += [(f"- pairs: {ds.get('pairs')}, images: {ds.get('images')}, detector fallbacks (median landmarks): "
               f"{ds.get('detector_fallbacks', '-')}"), f"- model: `{json.dumps(results['model'])}`",
              (f"- flip TTA: {results['flip']}, embeddings computed: {results.get('embeddings_computed')}, "
               f"wall time: {results.get('seconds', 0):.0f} s"), ""]
    rows = []
    if "hr" in results:
        rows.append(("112 px (HR)", results["hr"]))
    for name, res in results.get("btm_stm", {}).items():
        rows.append((f"btm-stm {name}", res))
    if rows:
        lines += ["| protocol | accuracy % (10-fold mean ± std) | TAR@FAR1e-2 | TAR@FAR1e-3 | best dist. threshold |",
                  "|---|---|---|---|---|"]
        for name, res in rows:
            t = res["tar_at_far"]
            lines.append(f"| {name} | {_pct(res['accuracy'])} ± {100 * res['std']:.2f} | {_pct(t['0.01']['tar'])} | "
                         f"{_pct(t['0.001']['tar'])} | {res['kfold']['distance_threshold_mean']:.3f} |")
        lines.append("")
    fixed = results.get("fixed")
    if fixed:
        rs = sorted(set(fixed.get("cr", {})) | set(fixed.get("er", {})), key=int)
        lines += ["Fixed-resolution sweep (Knoche §3.4; CR = one image at r, both orders averaged; ER = both at r):",
                  "", "| r px | CR acc % | ER acc % | CR gen/imp dist | ER gen/imp dist | CR thr | ER thr |",
                  "|---|---|---|---|---|---|---|"]
        for r in rs:
            cr, er = fixed.get("cr", {}).get(r), fixed.get("er", {}).get(r)
            lines.append(
                f"| {r} | {_pct(cr and cr['accuracy'])} | {_pct(er and er['accuracy'])} | "
                + (f"{cr['genuine_distance_mean']:.3f}/{cr['impostor_distance_mean']:.3f}" if cr else "-") + " | "
                + (f"{er['genuine_distance_mean']:.3f}/{er['impostor_distance_mean']:.3f}" if er else "-") + " | "
                + (f"{cr['best_distance_threshold']:.3f}" if cr else "-") + " | "
                + (f"{er['best_distance_threshold']:.3f}" if er else "-") + " |")
        lines.append("")
    if "lai" in results:
        lai = results["lai"]
        lines += ["Lai & Lam LFW setting (first image HR gallery, second LR query):", "",
                  "| " + " | ".join(f"{r} px" for r in lai) + " |", "|" + "---|" * len(lai),
                  "| " + " | ".join(_pct(v["accuracy"]) for v in lai.values()) + " |", ""]
    ident = results.get("identification")
    if ident:
        lines += [f"Identification (gallery {ident['gallery_size']} identities, {ident['probes']} probes):", "",
                  "| probe r | probes | rank-1 % | rank-5 % | rank-10 % |", "|---|---|---|---|---|"]
        for key, res in list(ident["per_resolution"].items()) + [("all", ident["all"])]:
            lines.append(f"| {key} | {res['probes']} | {_pct(res.get('rank1'))} | {_pct(res.get('rank5'))} | "
                         f"{_pct(res.get('rank10'))} |")
        lines.append("")
    if figures:
        lines += ["Figures: " + ", ".join(f"[{f}]({f})" for f in figures), ""]
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | Path, title: str | None = None, plots: bool = True) -> dict:
    """results.json (small: no per-pair arrays), figures, report.md. Returns {"json", "markdown", "figures"}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fixed = results.get("fixed", {})
    for mode in fixed.values():
        for res in mode.values():
            if "_distances" in res:
                res["distance_quantiles"] = distance_quantiles(res["_distances"], res["_issame"])
    figures: list[str] = []
    if plots:
        try:
            figures = plot_all(results, out_dir, title or results["model"]["name"])
        except ImportError:
            print("matplotlib is not installed: skipping plots (pip install matplotlib)")
    results["figures"] = figures
    clean = strip_private(results)
    (out_dir / "results.json").write_text(json.dumps(clean, indent=1))
    (out_dir / "report.md").write_text(markdown(clean, figures))
    return {"json": str(out_dir / "results.json"), "markdown": str(out_dir / "report.md"), "figures": figures}
