"""export/small_face_gate.py: the INT8 accuracy gate on scikit-image's real LFW crops, which runs in CI.

The set, the rule, an export of the tiny test checkpoint gated on it (and the honest record when it cannot run),
and a deliberately broken INT8 file of the shipped default model that the cosine floors would let through but the
gate stops.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export import small_face_gate as gate

pytest.importorskip("skimage")
REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "models" / "crres_default"


@pytest.fixture(scope="module")
def face_set() -> gate.FaceSet:
    return gate.build(seed=0)


def test_the_set_is_100_real_faces_in_balanced_cross_resolution_pairs(face_set):
    faces = gate.load_faces()
    assert faces.shape == (100, 25, 25) and faces.dtype == np.uint8
    assert len({f.tobytes() for f in faces}) == 100 and faces.std() > 30  # 100 distinct photos, not blank
    assert face_set.crops.shape == (100 + 100 * gate.ROUNDS * len(gate.BANDS), 112, 112, 3)
    assert face_set.pairs == 2 * 100 * gate.ROUNDS * len(gate.BANDS)
    for band, (lo, hi) in gate.BANDS.items():
        first, second, same = face_set.first[band], face_set.second[band], face_set.issame[band]
        assert same.sum() == (~same).sum() == 100 * gate.ROUNDS
        assert (first < 100).all() and (second >= 100).all()  # view A at 112 against a view B
        assert lo <= face_set.sizes[band].min() and face_set.sizes[band].max() <= hi
        face_of = lambda idx: np.where(idx < 100, idx, (idx - 100) % 100)
        assert (face_of(second[same]) == first[same]).all()          # genuine: the same photo
        assert (face_of(second[~same]) != first[~same]).all()        # impostor: never the face itself
        for b in np.unique(second):  # each view B has one size, shared by its genuine and impostor pair
            assert len(np.unique(face_set.sizes[band][second == b])) == 1
    # view B is the mirrored, re-aligned photo, not a copy of view A
    assert not np.array_equal(face_set.crops[0], face_set.crops[100])
    again = gate.build(seed=0)
    assert np.array_equal(again.crops, face_set.crops) and np.array_equal(again.sizes["low"], face_set.sizes["low"])
    assert not np.array_equal(gate.build(seed=1).sizes["low"], face_set.sizes["low"])


def test_the_landmark_frame_is_what_the_detector_finds():
    from crres_sdk.errors import BundleError

    try:
        measured = gate.measure_landmarks()
    except (BundleError, FileNotFoundError) as exc:
        pytest.skip(f"no MTCNN detector bundle (crres models fetch): {exc}")
    assert np.abs(measured - gate.LANDMARKS_25).max() < 0.01


def test_sign_test_is_the_exact_binomial_tail():
    assert gate.sign_test_p(0, 0) == 1.0
    assert gate.sign_test_p(1, 0) == 0.5
    assert gate.sign_test_p(5, 0) == pytest.approx(1 / 32)
    assert gate.sign_test_p(3, 3) == pytest.approx(42 / 64)  # P(X >= 3), X ~ Binomial(6, 1/2)


def _pairs(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Scores a model decides perfectly (genuine 0.8, impostor 0.2) and the labels."""
    same = np.arange(n) % 2 == 0
    return np.where(same, 0.8, 0.2), same


def _flip(scores: np.ndarray, same: np.ndarray, k: int) -> np.ndarray:
    """Make the first k genuine pairs impostor-like (decided wrong at any threshold between the two levels)."""
    out = scores.copy()
    out[np.flatnonzero(same)[:k]] = 0.1
    return out


def test_one_lost_pair_is_noise_a_real_drop_fails_and_gains_never_fail():
    fp32, same = _pairs()
    one = gate.compare({"low": fp32}, {"low": _flip(fp32, same, 1)}, {"low": same}, tolerance_pp=0.0)
    b = one["bands"]["low"]
    assert one["passed"] and (b["lost"], b["gained"], b["drop_pp"]) == (1, 0, 0.25) and b["p_value"] == 0.5
    four = gate.compare({"low": fp32}, {"low": _flip(fp32, same, 4)}, {"low": same}, tolerance_pp=0.5)
    assert four["passed"] and four["bands"]["low"]["p_value"] == pytest.approx(1 / 16)
    five = gate.compare({"low": fp32}, {"low": _flip(fp32, same, 5)}, {"low": same}, tolerance_pp=0.5)
    assert not five["passed"] and five["bands"]["low"]["drop_pp"] == 1.25
    # significant but within the tolerance: passes (the tolerance is the size of drop that matters)
    assert gate.compare({"low": fp32}, {"low": _flip(fp32, same, 5)}, {"low": same}, tolerance_pp=2.0)["passed"]
    # INT8 better than FP32 (FP32 loses the pairs): never a failure
    better = gate.compare({"low": _flip(fp32, same, 20)}, {"low": fp32}, {"low": same}, tolerance_pp=0.0)
    assert better["passed"] and better["bands"]["low"]["gained"] == 20 and better["bands"]["low"]["drop_pp"] == -5.0


def test_each_model_is_judged_at_its_own_threshold():
    fp32, same = _pairs()
    shifted = fp32 - 0.5  # a uniform score shift changes no decision once the file has its own threshold
    r = gate.compare({"mid": fp32}, {"mid": shifted}, {"mid": same}, tolerance_pp=0.0)["bands"]["mid"]
    assert r["passed"] and r["lost"] == r["gained"] == 0 and r["int8_threshold"] < r["fp32_threshold"]
    assert r["flips_at_fp32_threshold"] == 200  # at FP32's threshold every genuine pair would flip


# ------------------------------------------------------------------------------------- export integration

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    from tests.export.test_build_engine import _make_checkpoint

    return _make_checkpoint(tmp_path_factory.mktemp("tiny_gate"))


def test_export_without_lfw_gates_int8_on_the_small_set(tiny, tmp_path):
    from crres_sdk import Recognizer
    from crres_sdk.recognizer import AccuracyGateNotRunWarning

    from export.build_engine import cpu_isa
    from tests.export.test_build_engine import _build

    crops, checkpoint = tiny
    out = tmp_path / "b"
    assert _build(checkpoint, crops, out, "onnx") == 0  # --lfw none
    m = json.loads((out / "manifest.json").read_text())
    acc = m["parity"]["accuracy_gate"]
    assert acc["set"] == gate.SET_NAME and acc["pairs"] == 800 and acc["passed"] is True
    assert acc["rule"] == gate.RULE and "not LFW accuracy" in acc["what"] and list(acc["files"]) == ["onnx/int8"]
    assert m["parity"]["lfw_accuracy"]["status"].startswith("not run")  # LFW itself was not run, and says so
    assert m["parity"]["cpu"]["isa"] == cpu_isa()["isa"]  # the CPU these figures were measured on
    ort = m["parity"]["results"]["onnxruntime"]
    assert ort["passed"] is True and ort["accuracy"] == acc["files"]["onnx/int8"]
    for band in ("low", "mid"):
        b = ort["accuracy"]["bands"][band]
        assert b["pairs"] == 400 and 50 <= b["fp32_pct"] <= 100 and 50 <= b["int8_pct"] <= 100
        assert b["drop_pp"] == pytest.approx(100 * (b["lost"] - b["gained"]) / 400)
    # The figures are the gate's own: recomputing it on the bundle's files gives the same numbers.
    again = gate.gate_files(out / "model.fp32.onnx", {"onnx/int8": (out / "model.int8.onnx", "onnxruntime")},
                            {k: m["input"][k] for k in ("color", "mean", "std")}, 112, 0.5)
    assert again["files"]["onnx/int8"] == ort["accuracy"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyGateNotRunWarning)
        Recognizer(out, backend="onnxruntime", precision="int8").close()  # gated: silent


def test_without_any_accuracy_set_the_record_says_not_run_and_the_sdk_warns(tiny, tmp_path, monkeypatch):
    from crres_sdk import Recognizer
    from crres_sdk.recognizer import AccuracyGateNotRunWarning

    from tests.export.test_build_engine import _build

    monkeypatch.setattr(gate, "available", lambda: "scikit-image is not installed (pip install scikit-image)")
    crops, checkpoint = tiny
    out = tmp_path / "nogate"
    assert _build(checkpoint, crops, out, "onnx") == 0
    m = json.loads((out / "manifest.json").read_text())
    acc = m["parity"]["accuracy_gate"]
    assert acc["set"] == "not run" and acc["passed"] is None and "scikit-image" in acc["reason"]
    ort = m["parity"]["results"]["onnxruntime"]
    assert ort["passed"] is None and ort["accuracy"]["set"] == "not run"  # cosine floors alone: never "passed"
    assert all(a["passed"] is not True for a in ort["attempts"])
    with pytest.warns(AccuracyGateNotRunWarning, match="not run .*scikit-image"):
        Recognizer(out, backend="onnxruntime", precision="int8").close()
    # An FP32 bundle has nothing to gate: the record says so, and opening its FP32 file is silent.
    fp32 = tmp_path / "fp32"
    assert _build(checkpoint, crops, fp32, "fp32") == 0
    f = json.loads((fp32 / "manifest.json").read_text())["parity"]["accuracy_gate"]
    assert f == {"set": "not run", "reason": "FP32 target: nothing is quantized", "passed": None}


def test_the_sdk_warns_for_every_int8_file_the_gate_did_not_cover():
    from crres_sdk.recognizer import AccuracyGateNotRunWarning, _warn_if_accuracy_gate_not_run

    gated = {"parity": {"accuracy_gate": {"set": "lfw", "files": ["onnx/int8", "tensorrt/qdq"]}}}
    legacy = {"parity": {"lfw_accuracy": {"status": "run", "files": {"onnx/int8": {"passed": True}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyGateNotRunWarning)
        _warn_if_accuracy_gate_not_run(gated, "onnx/int8")
        _warn_if_accuracy_gate_not_run(legacy, "onnx/int8")  # written before parity.accuracy_gate existed
    # a TensorRT engine built on the device from the gated QDQ file: its own decisions were never checked
    with pytest.warns(AccuracyGateNotRunWarning, match="not run on this file .*lfw for onnx/int8, tensorrt/qdq"):
        _warn_if_accuracy_gate_not_run(gated, "tensorrt/engine")
    with pytest.warns(AccuracyGateNotRunWarning, match=r"was not run \(--lfw none\)"):
        _warn_if_accuracy_gate_not_run({"parity": {"lfw_accuracy": {"status": "not run (--lfw none)"}}}, "onnx/int8")
    with pytest.warns(AccuracyGateNotRunWarning, match=r"not run \(no accuracy record\)"):
        _warn_if_accuracy_gate_not_run({}, "onnx/int8")


# ------------------------------------------------------------------------------ the shipped default model

def _perturbed(src: Path, dst: Path, scale: float, seed: int = 0) -> Path:
    """``src`` with Gaussian noise (sigma = scale x the tensor's largest |w|) on every int8 weight tensor."""
    model = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.int8 and w.ndim >= 2:
            noisy = w + rng.normal(0.0, scale * np.abs(w).max(), w.shape)
            init.CopyFrom(numpy_helper.from_array(np.clip(np.rint(noisy), -127, 127).astype(np.int8), init.name))
    onnx.save(model, str(dst))
    return dst


@pytest.mark.skipif(not (DEFAULT / "model.int8.onnx").is_file(), reason="no shipped models/crres_default INT8 file")
def test_shipped_int8_passes_and_a_broken_one_fails_where_cosine_floors_hold(face_set, tmp_path):
    import crres_sdk

    from export.calibration import preprocess
    from export.parity import cosine, embed

    m = json.loads((DEFAULT / "manifest.json").read_text())
    norm = {k: m["input"][k] for k in ("color", "mean", "std")}
    fp32, int8 = DEFAULT / "model.fp32.onnx", DEFAULT / "model.int8.onnx"
    broken = _perturbed(int8, tmp_path / "broken.int8.onnx", 0.05)
    report = gate.gate_files(fp32, {"onnx/int8": (int8, "onnxruntime"), "broken": (broken, "onnxruntime")},
                             norm, int(m["input"]["size"][0]), tolerance_pp=0.5)
    assert report["files"]["onnx/int8"]["passed"]
    bad = report["files"]["broken"]
    assert not bad["passed"] and bad["bands"]["low"]["drop_pp"] > 0.5 and bad["bands"]["low"]["p_value"] < 0.05
    # The build's cosine floors (defaults 0.95 mean, 0.85 1st percentile) on these same faces would pass it.
    for band in gate.BANDS:
        faces = crres_sdk.degrade(np.ascontiguousarray(face_set.crops[face_set.second[band]]), face_set.sizes[band])
        x = preprocess(faces, norm)
        c = cosine(embed(fp32, x), embed(broken, x))
        assert c.mean() >= 0.95 and np.percentile(c, 1) >= 0.85, (band, c.mean(), np.percentile(c, 1))
