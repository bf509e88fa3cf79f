"""The INT8 parity gate and the one "try remedies until it passes" loop, parametrised by the quantiser.

:func:`evaluate` gates one INT8 candidate: cosine parity on the held-out crops per band, then (when that passes)
the accuracy gate, on LFW or else the small real face set (export/small_face_gate.py). :func:`search` quantizes
the candidates a :class:`Quantiser` proposes, in order, until one passes, records every attempt in
``state.parity`` and ships the first that passes (or writes ``parity_report.json`` and raises ParityError).
The two quantisers are ONNX Runtime static QDQ (:class:`OrtQuantiser`, the onnx/x86/jetson targets) and OpenVINO
NNCF (:class:`OpenVinoQuantiser`); each proposes its remedies in its own order (export/README.md).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.manifest import calibration_description, write_failure
from export.state import BuildState

LOG = logging.getLogger("crres.export")
LOW_RES_WEIGHTS = {"low": 0.5, "mid": 0.3, "high": 0.2}
#: Sensitivity-ranked mixed precision: numbers of most-sensitive layers kept FP32, tried in this order.
MIXED_PRECISION_STEPS = (2, 4, 8, 16)
#: Share of the weighted layers (Conv/Gemm/MatMul) that must stay INT8 whatever the remedy.
MIN_INT8_SHARE = 0.4
#: Calibration samples the sensitivity ranking runs on (stratified: the calibration set is shuffled).
RANKING_SAMPLES = 48


class ExportError(Exception):
    """A build failure with a message meant for the user."""


class ParityError(ExportError):
    pass


@dataclass
class Attempt:
    """One INT8 candidate: how it is quantized and which remedy that is."""

    remedy: str                                  #: "none" for the plain first attempt
    method: str | None = None                    #: ORT calibration method (None: OpenVINO)
    preset: str | None = None                    #: NNCF preset (None: ONNX Runtime)
    exclude: list[str] = field(default_factory=list)   #: nodes kept FP32
    weights: dict[str, float] | None = None      #: calibration band weights (None: --calib-bands)
    sensitive: list[str] | None = None           #: the sensitivity-ranked share of ``exclude``


# --- the gate ---------------------------------------------------------------------------------------------
def lfw_cache(args: argparse.Namespace, st: BuildState, path: Path, backend: str, file_key: str):
    """An LFW EmbeddingCache for this model file, pre-filled from an earlier build's disk store if any."""
    from export import lfw_parity

    cache = lfw_parity.make_cache(path, backend, st.norm, st.lfw.ds.crops, st.input_size, progress=not args.quiet)
    reused = lfw_parity.load_store(cache, lfw_parity.store_path(path, backend, st.norm, st.lfw))
    if reused:
        LOG.info("%s: %d LFW embeddings reused from an earlier build", file_key, reused)
    st.lfw_embeddings_reused[file_key] = reused
    return cache


def evaluate(args: argparse.Namespace, st: BuildState, path: Path, backend: str, file_key: str,
             att: Attempt) -> dict[str, Any]:
    """Cosine parity on the held-out crops, then (when it passes) the accuracy gate: LFW, else the small face
    set. ``passed``: True = every gate passed, False = one failed, None = cosine passed and no accuracy gate
    could run (accepted, but never recorded as passed)."""
    from export import lfw_parity, small_face_gate
    from export.parity import band_report, cosine, embed, format_report

    a = args
    t0 = time.perf_counter()
    rep = band_report(cosine(st.ref, embed(path, st.held.inputs, backend=backend)), st.held.resolutions,
                      a.cosine_floor, a.cosine_p1_floor)
    record: dict[str, Any] = {"remedy": att.remedy, "calibration_method": att.method,
                              "nodes_kept_fp32": list(att.exclude), "report": rep, "passed": rep["passed"]}
    if att.sensitive:
        record["sensitive_layers_kept_fp32"] = att.sensitive
    LOG.info("%s attempt (%s)\n%s", file_key, att.remedy, format_report(f"{file_key} on {backend}", rep))
    if rep["passed"] and st.lfw is not None:
        cache = lfw_cache(args, st, path, backend, file_key)
        cmp = lfw_parity.compare(st.lfw_fp32, lfw_parity.accuracy(cache, st.lfw), a.tolerance_pp)
        LOG.info("%s", lfw_parity.format_report(file_key, cmp))
        record["accuracy"] = {"set": "lfw", **cmp}
        record["passed"] = cmp["passed"]
        if cmp["passed"]:
            st.lfw_caches[file_key] = cache
            st.lfw_reports[file_key] = cmp
            # kept now, not only after the thresholds: a later step may still fail, and the rebuild reuses it
            lfw_parity.save_store(cache, lfw_parity.store_path(path, backend, st.norm, st.lfw))
    elif rep["passed"] and st.small_set is not None:
        cache = lfw_parity.make_cache(path, backend, st.norm, st.small_set.crops, st.input_size, progress=False)
        cmp = small_face_gate.compare(st.small_fp32, small_face_gate.scores(cache, st.small_set),
                                      st.small_set.issame, a.tolerance_pp)
        LOG.info("%s", small_face_gate.format_report(file_key, cmp))
        record["accuracy"] = cmp
        record["passed"] = cmp["passed"]
        if cmp["passed"]:
            st.small_reports[file_key] = cmp
    elif rep["passed"]:
        record["accuracy"] = {"set": "not run", "reason": st.accuracy_not_run}
        record["passed"] = None
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record


def margin(report: dict[str, Any]) -> float:
    """How far the worst band is above its floors (negative: below)."""
    return min(min(b["cosine_mean"] - report["floor_mean"], b["cosine_p1"] - report["floor_p1"])
               for b in report["bands"].values())


# --- sensitivity-ranked mixed precision -------------------------------------------------------------------
def ranking(args: argparse.Namespace, st: BuildState, flavour: str, pre: Path,
            qdq: Path | None = None) -> list[dict[str, Any]]:
    """Sensitivity ranking of the all-INT8 model of this flavour (computed once per build)."""
    from export.quantize import quantize_ort
    from export.sensitivity import rank_nodes

    if flavour in st.rankings:
        return st.rankings[flavour]
    tmp = None
    if qdq is None:
        tmp = qdq = st.out / f"_ranking_{flavour}.onnx"
        quantize_ort(pre, qdq, st.calib.inputs, args.calib_method, flavour=flavour)
    t0 = time.perf_counter()
    ranked = rank_nodes(pre, qdq, st.calib.inputs[:RANKING_SAMPLES])
    if tmp is not None:
        tmp.unlink(missing_ok=True)
    LOG.info("sensitivity ranking (%s, %d layers, %.1f s), most sensitive: %s", flavour, len(ranked),
             time.perf_counter() - t0, ", ".join(f"{r['name']} ({r['score_db']:.1f} dB)" for r in ranked[:5]))
    st.rankings[flavour] = ranked
    return ranked


def mixed_precision_sets(ranked: list[dict[str, Any]], fixed: list[str],
                         max_fp32_layers: int) -> list[tuple[int, list[str]]]:
    """(k, the k most sensitive layers not already in ``fixed``) for k in MIXED_PRECISION_STEPS.

    At most ``max_fp32_layers`` extra layers, and at least MIN_INT8_SHARE of the weighted layers stay INT8
    (keeping everything FP32 would pass any parity check and ship an FP32 model labelled INT8)."""
    names = [r["name"] for r in ranked if r["name"] not in set(fixed)]
    room = len(ranked) - math.ceil(MIN_INT8_SHARE * len(ranked)) - len(set(fixed) & {r["name"] for r in ranked})
    limit = max(0, min(max_fp32_layers, room, len(names)))
    out, seen = [], 0
    for k in MIXED_PRECISION_STEPS:
        k = min(k, limit)
        if k > seen:
            out.append((k, names[:k]))
            seen = k
    return out


# --- the quantisers ---------------------------------------------------------------------------------------
class Quantiser:
    """What :func:`search` needs of a quantiser: its remedies in order, how to make one candidate file, what to
    do with a rejected one, and how to ship the one that passed."""

    key: str         #: its key in the manifest's parity results and quantization settings
    file_key: str    #: the INT8 file's "runtime/role"
    backend: str     #: the runtime that evaluates its candidates

    def __init__(self, args: argparse.Namespace, st: BuildState) -> None:
        self.args, self.st = args, st

    def attempts(self, tried: list[dict[str, Any]]) -> Iterator[Attempt]:
        """The remedy plan, lazily: later attempts may use what ``tried`` measured."""
        raise NotImplementedError

    def quantize(self, k: int, att: Attempt, inputs) -> tuple[Path, dict[str, Any]]:
        """Candidate ``k``'s file and the quantizer's settings."""
        raise NotImplementedError

    def rejected(self, k: int, path: Path) -> None:
        """Candidate ``k`` failed the gate."""

    def recorded_ranking(self) -> list[dict[str, Any]] | None:
        """The sensitivity ranking the parity results record (None: none)."""
        return None

    def close(self) -> None:
        """The search is over (passed or not): remove working files."""

    def ship(self, path: Path, info: dict[str, Any], att: Attempt) -> None:
        """Put the passing candidate in the bundle and register its files."""
        raise NotImplementedError


class OrtQuantiser(Quantiser):
    """ONNX Runtime static INT8 QDQ: ``flavour`` "cpu" (onnx/int8) or "tensorrt" (symmetric, tensorrt/qdq)."""

    def __init__(self, args: argparse.Namespace, st: BuildState, flavour: str, file: str) -> None:
        from export.quantize import pre_process, sensitive_nodes

        super().__init__(args, st)
        self.flavour, self.target = flavour, st.out / file
        self.key = "onnxruntime" if flavour == "cpu" else "tensorrt_qdq"
        self.file_key = "onnx/int8" if flavour == "cpu" else "tensorrt/qdq"
        self.backend = args.eval_backend
        self.pre = pre_process(st.fp32, st.out / "_preprocessed.onnx")
        self.fixed = sensitive_nodes(self.pre)

    def attempts(self, tried: list[dict[str, Any]]) -> Iterator[Attempt]:
        from export.quantize import CALIB_METHODS

        a, fixed = self.args, self.fixed
        first = a.calib_method
        yield Attempt("none", method=first)
        if a.no_remedies:
            return
        others = [m for m in ("percentile", "entropy", "minmax") if m != first and m in CALIB_METHODS]
        for m in others:
            yield Attempt(f"{m} calibration", method=m)
        for m in [first] + others:
            yield Attempt(f"{m} calibration, first conv + embedding layer kept FP32", method=m, exclude=fixed)
        best = max(tried, key=lambda t: margin(t["report"]))["calibration_method"]
        for k, nodes in mixed_precision_sets(ranking(a, self.st, self.flavour, self.pre), fixed, a.max_fp32_layers):
            yield Attempt(f"{best} calibration, first conv + embedding layer + {k} most sensitive layers kept "
                          "FP32 (sensitivity-ranked mixed precision)", method=best,
                          exclude=sorted(set(fixed) | set(nodes)), sensitive=nodes)
        yield Attempt(f"{first} calibration, FP32 first conv + embedding layer, calibration weighted to low "
                      "resolution", method=first, exclude=fixed, weights=LOW_RES_WEIGHTS)

    def quantize(self, k: int, att: Attempt, inputs) -> tuple[Path, dict[str, Any]]:
        from export.quantize import quantize_ort

        tmp = self.st.out / f"_attempt{k}.onnx"
        return tmp, quantize_ort(self.pre, tmp, inputs, att.method, flavour=self.flavour, exclude=att.exclude)

    def rejected(self, k: int, path: Path) -> None:
        if k == 0 and not self.args.no_remedies:
            ranking(self.args, self.st, self.flavour, self.pre, path)  # rank on the all-INT8 model just measured
        path.unlink()

    def recorded_ranking(self) -> list[dict[str, Any]] | None:
        ranked = self.st.rankings.get(self.flavour)
        return None if ranked is None else ranked[:32]

    def close(self) -> None:
        self.pre.unlink(missing_ok=True)

    def ship(self, path: Path, info: dict[str, Any], att: Attempt) -> None:
        st = self.st
        path.replace(self.target)
        for f in st.out.glob("_attempt*.onnx"):
            f.unlink()
        st.calib_desc = calibration_description(self.args, st, att.weights or st.bands, att.method)
        st.qdq = self.target
        st.add_file("onnx" if self.flavour == "cpu" else "tensorrt", "int8" if self.flavour == "cpu" else "qdq",
                    self.target)
        st.shipped[self.file_key] = (self.target, self.backend)
        LOG.info("%s: %s (remedy: %s)", self.target.name, "parity passed", att.remedy)


class OpenVinoQuantiser(Quantiser):
    """OpenVINO INT8 IR quantized by NNCF (openvino/int8_xml + int8_bin), evaluated on OpenVINO."""

    key, file_key, backend = "openvino", "openvino/int8_xml", "openvino"

    def __init__(self, args: argparse.Namespace, st: BuildState, file: str) -> None:
        from export.quantize import sensitive_nodes

        super().__init__(args, st)
        self.xml = st.out / file
        self.fixed = sensitive_nodes(st.fp32)

    def attempts(self, tried: list[dict[str, Any]]) -> Iterator[Attempt]:
        a, st, fixed = self.args, self.st, self.fixed
        yield Attempt("none", preset="performance")
        if a.no_remedies:
            return
        # NNCF's default preset quantizes activations symmetrically; PReLU nets' are not centred on zero
        yield Attempt("NNCF mixed preset (asymmetric activations)", preset="mixed")
        yield Attempt("mixed preset, first conv + embedding layer kept FP32", preset="mixed", exclude=fixed)
        pre = st.out / "_preprocessed_ov.onnx"
        if "cpu" not in st.rankings:
            from export.quantize import pre_process

            pre_process(st.fp32, pre)
        try:
            ranked = ranking(a, st, "cpu", pre)
        finally:
            pre.unlink(missing_ok=True)
        for k, nodes in mixed_precision_sets(ranked, fixed, a.max_fp32_layers):
            yield Attempt(f"mixed preset, first conv + embedding layer + {k} most sensitive layers kept FP32 "
                          "(sensitivity-ranked mixed precision, ranked on the ONNX Runtime INT8 model)",
                          preset="mixed", exclude=sorted(set(fixed) | set(nodes)), sensitive=nodes)
        yield Attempt("mixed preset, first conv + embedding layer kept FP32, calibration weighted to low "
                      "resolution", preset="mixed", exclude=fixed, weights=LOW_RES_WEIGHTS)

    def quantize(self, k: int, att: Attempt, inputs) -> tuple[Path, dict[str, Any]]:
        from export.quantize import quantize_openvino

        info = quantize_openvino(self.st.fp32, self.xml, inputs, subset_size=self.args.calib_size,
                                 ignored=att.exclude or None, preset=att.preset)
        if att.weights is not None:
            info["calibration_bands"] = att.weights
        return self.xml, info

    def ship(self, path: Path, info: dict[str, Any], att: Attempt) -> None:
        self.st.add_file("openvino", "int8_xml", path)
        self.st.add_file("openvino", "int8_bin", path.with_suffix(".bin"))
        self.st.shipped[self.file_key] = (path, self.backend)


# --- the loop ---------------------------------------------------------------------------------------------
def search(args: argparse.Namespace, st: BuildState, q: Quantiser) -> None:
    """Quantize ``q``'s candidates in order until one passes the gate; record every attempt in
    ``st.parity[q.key]`` and ship the first that passes, or write parity_report.json and raise ParityError."""
    from export.calibration import build_calibration_set

    tried: list[dict[str, Any]] = []
    chosen = None
    try:
        for k, att in enumerate(q.attempts(tried)):
            calib = st.calib
            if att.weights is not None:
                calib = build_calibration_set(st.calib_crops, st.calib_files, args.calib_size, st.norm, args.seed,
                                              att.weights)
            path, info = q.quantize(k, att, calib.inputs)
            record = evaluate(args, st, path, q.backend, q.file_key, att)
            tried.append(record)
            if record["passed"] is not False:
                chosen = (path, info, att, record)
                break
            q.rejected(k, path)
    finally:
        q.close()
    entry = st.parity[q.key] = {"file": q.file_key, "backend": q.backend, "attempts": tried}
    ranked = q.recorded_ranking()
    if ranked is not None:
        entry["sensitivity_ranking"] = ranked
    if chosen is None:
        write_failure(st)
        raise ParityError(f"INT8 parity failed for {q.key} after {len(tried)} attempt(s); see "
                          f"{st.out / 'parity_report.json'}")
    path, info, att, record = chosen
    entry.update(remedy_used=att.remedy, passed=record["passed"], bands=record["report"]["bands"],
                 accuracy=record["accuracy"])
    if att.sensitive:
        entry["sensitive_layers_kept_fp32"] = att.sensitive
    st.quant[q.key] = info
    q.ship(path, info, att)
