"""training/experiments: the comparison summary (mean ± half-range over seeds) and the scripts' syntax."""

import json
import subprocess
from pathlib import Path

import pytest

from training.experiments import summarize

ROOT = Path(__file__).resolve().parents[2]


def _results(hr, low, cr7):
    return {"hr": {"accuracy": hr}, "btm_stm": {"low_res": {"accuracy": low}, "all_res": {"accuracy": 0.5}},
            "fixed": {"cr": {"7": {"accuracy": cr7}, "14": {"accuracy": 0.6}}}, "lai": {"8": {"accuracy": 0.55}}}


def test_summary_is_mean_and_half_range_over_seeds(tmp_path):
    for variant, seed, res in [("bt_m", 1, _results(0.80, 0.70, 0.62)), ("bt_m", 2, _results(0.84, 0.66, 0.64)),
                               ("baseline", 1, _results(0.90, 0.55, 0.50))]:
        out = tmp_path / variant / f"seed{seed}" / "eval"
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps(res))
    summary = summarize.summarize(summarize.collect(tmp_path))
    assert summary["bt_m"]["seeds"] == 2 and summary["baseline"]["seeds"] == 1
    assert summary["bt_m"]["HR"]["mean"] == pytest.approx(82.0)
    assert summary["bt_m"]["HR"]["spread"] == pytest.approx(2.0)
    assert summary["bt_m"]["low"]["mean"] == pytest.approx(68.0)
    assert summary["baseline"]["CR7"]["spread"] == 0.0
    assert list(k for k in summary["bt_m"] if k != "seeds") == ["HR", "low", "all", "CR7", "CR14", "HRvs8"]
    table = summarize.markdown(summary)
    assert "| bt_m | 2 | 82.00 ± 2.00 | 68.00 ± 2.00 |" in table
    assert summarize.main([str(tmp_path)]) == 0 and (tmp_path / "summary.json").is_file()
    assert summarize.main([str(tmp_path / "missing")]) == 2


def test_plot_sweep_is_cr_or_else_lai_columns():
    both = {"a": {"seeds": 1, "CR7": {"mean": 60.0, "spread": 0.0}, "HRvs8": {"mean": 55.0, "spread": 0.0}}}
    assert summarize.sweep_points(both) == ("CR", {"a": [(7, 60.0, 0.0)]})
    lai = {"a": {"seeds": 2, "HR": {"mean": 90.0, "spread": 1.0}, "HRvs12": {"mean": 70.0, "spread": 1.0},
                 "HRvs8": {"mean": 60.0, "spread": 2.0}}, "b": {"seeds": 1, "HR": {"mean": 91.0, "spread": 0.0}}}
    assert summarize.sweep_points(lai) == ("HRvs", {"a": [(8, 60.0, 2.0), (12, 70.0, 1.0)]})
    assert summarize.sweep_points({"b": lai["b"]}) == ("", {})


SCRIPTS = sorted(p.name for p in (ROOT / "training" / "experiments").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_experiment_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "training" / "experiments" / script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_experiment_scripts_run_modules_that_exist(script):
    # `$PY -m NAME` lines must name an importable module (a rename once left "-m python -m evaluation").
    import importlib.util
    import re

    text = (ROOT / "training" / "experiments" / script).read_text()
    names = re.findall(r"\$\{?PY\}?\s+-m\s+(\S+)", text)
    for name in names:
        assert importlib.util.find_spec(name) is not None, f"{script}: python -m {name} names no module"


def test_compare_refuses_an_unknown_comparison(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "training" / "experiments" / "compare.sh"), "nope", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown comparison" in proc.stderr
