"""export/build_engine.py on a tiny model: every target available here, parity gate, remedies, manifest, errors.

The model is ``tiny_test_net`` (16-d embedding) trained for 4 steps of the baseline recipe on synthetic identities
(``training.data.make_synthetic_identities``), so it is a real training checkpoint, not random weights.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from crres_sdk.backends import open_model
from crres_sdk.bundle import load_bundle
from crres_sdk.errors import BundleError

from export import thresholds as th
from export.build_engine import main
from export.calibration import (
    BANDS,
    build_calibration_set,
    draw_resolutions,
    list_crops,
    load_faces,
)
from training.data import NORMALIZATION, make_synthetic_identities
from training.recipes import get_recipe
from training.train import train

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
HAS_OPENVINO_NNCF = all(importlib.util.find_spec(m) for m in ("openvino", "nncf"))


def _make_checkpoint(root: Path) -> tuple[Path, Path]:
    """A tiny_test_net trained for 4 steps on synthetic identities (8 x 6) and crops of 8 other identities
    (8 x 6, never trained on, as a real --calib folder): (crops, final.pt)."""
    train_crops = make_synthetic_identities(root / "train", num_ids=8, per_id=6, seed=0)
    crops = make_synthetic_identities(root / "crops", num_ids=8, per_id=6, seed=1, prefix="held")
    recipe = get_recipe("baseline", model="tiny_test_net", model_kwargs={"num_features": 16}, batch_size=8, epochs=1)
    train(recipe, train_crops, root / "run", max_steps=4, progress=False)
    return crops, root / "run" / "final.pt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return _make_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def crops(trained) -> Path:
    return trained[0]


@pytest.fixture(scope="module")
def checkpoint(trained) -> Path:
    return trained[1]


def _build(checkpoint: Path, crops: Path, out: Path, target: str = "onnx", *extra: str) -> int:
    lfw = [] if "--lfw" in extra else ["--lfw", "none"]  # the default is ../shared LFW when present: slow
    return main(["--target", target, "--checkpoint", str(checkpoint), "--calib", str(crops), "--out", str(out),
                 "--calib-size", "96", *lfw, *extra])


@pytest.fixture(scope="module")
def onnx_bundle(checkpoint, crops, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle_onnx")
    assert _build(checkpoint, crops, out) == 0
    return out


def test_onnx_target_writes_a_valid_bundle_that_passes_parity(onnx_bundle):
    bundle = load_bundle(onnx_bundle, task="face-embedding")
    m = bundle.manifest
    assert m["format"] == "crres-bundle/1" and m["embedding_dim"] == 16
    assert m["input"]["size"] == [112, 112] and m["input"]["color"] == NORMALIZATION["color"]
    assert m["input"]["mean"] == NORMALIZATION["mean"] and m["input"]["std"] == NORMALIZATION["std"]
    assert set(m["files"]["onnx"]) == {"fp32", "int8"}
    assert m["export"]["onnx"]["opset"] >= 17 and m["export"]["onnx"]["max_abs_diff_vs_torch"] < 1e-3
    assert set(m["export"]["timings_s"]) >= {"load_checkpoint", "export_onnx", "face_data", "quantize_ort",
                                             "thresholds"}
    assert m["calibration"]["size"] == 96 and set(m["calibration"]["set"]["per_band"]) == set(BANDS)
    ort = m["parity"]["results"]["onnxruntime"]
    assert ort["passed"] and set(ort["bands"]) == set(BANDS)
    assert m["parity"]["cpu"]["machine"] and isinstance(m["parity"]["cpu"]["isa"], list)
    for band in ort["bands"].values():
        assert band["cosine_mean"] >= m["parity"]["floor_mean"] and band["cosine_p1"] >= m["parity"]["floor_p1"]
    # Both files: fixed names, dynamic batch, INT8 really quantized.
    for role in ("fp32", "int8"):
        sess = open_model(bundle.file("onnx", role), "onnxruntime")
        assert sess.input_names == ["image"] and sess.output_names == ["embedding"]
        for n in (1, 3):
            assert sess.run({"image": np.zeros((n, 3, 112, 112), np.float32)})[0].shape == (n, 16)
    ops = {n.op_type for n in onnx.load(str(bundle.file("onnx", "int8"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_manifest_thresholds_follow_the_schema_and_recompute_independently(onnx_bundle, crops):
    import crres_sdk

    from export.calibration import preprocess, split_for_export

    bundle = load_bundle(onnx_bundle, task="face-embedding")
    t = bundle.manifest["thresholds"]
    assert t["metric"] == "cosine" and t["resolutions"] == [7, 10, 14, 20, 28, 40, 56, 112]
    assert set(t["far"]) == set(t["tar"]) == {"1e-2", "1e-3", "1e-4", "1e-5", "1e-6"}
    assert all(len(v) == 8 for v in [*t["far"].values(), *t["tar"].values()])
    assert set(t["identification"]["far"]) == set(t["far"]) and len(t["tail"]["u"]) == 8
    assert "identification" in t["by_file"]["onnx/int8"]
    files = bundle.manifest["files"]
    assert set(t["by_file"]) == {"onnx/int8"}
    assert all(k.split("/")[1] in files[k.split("/")[0]] for k in t["by_file"])
    assert "calib-holdout" in t["source"] and "36/96" in t["source"]  # 3 held-out identities x 4 crops
    # Recompute r=14 by brute force: every held-out 112 px crop vs every other held-out crop degraded to 14 px.
    split = split_for_export(list_crops(crops), crops, seed=0, calib_max=96)
    faces, kept = load_faces(split.holdout)
    ids = [p.parent.name for p in kept]
    for key, role in (("fp32", "fp32"), ("onnx/int8", "int8")):
        sess = open_model(bundle.file("onnx", role), "onnxruntime")
        run = lambda c: sess.run({"image": preprocess(c, NORMALIZATION)})[0]
        hr, lr = run(faces), run(crres_sdk.degrade(faces, 14))
        hr /= np.linalg.norm(hr, axis=1, keepdims=True)
        lr /= np.linalg.norm(lr, axis=1, keepdims=True)
        imp = [hr[i] @ lr[j] for i in range(len(ids)) for j in range(len(ids)) if ids[i] != ids[j]]
        gen = [hr[i] @ lr[j] for i in range(len(ids)) for j in range(len(ids)) if ids[i] == ids[j] and i != j]
        table = t if key == "fp32" else t["by_file"][key]
        # 96 impostor pairs: FAR 1e-3 rests on no false accept, so it comes from the tail fitted to the top 50
        tail = th.fit_tail(np.asarray(imp))
        t_fit = min(1.0, tail.threshold(1e-3))
        assert table["tail"]["fitted"]["1e-3"][2] and table["far"]["1e-3"][2] == pytest.approx(t_fit, abs=2e-5)
        assert table["tar"]["1e-3"][2] == pytest.approx(np.mean(np.asarray(gen) > t_fit), abs=1e-6)
        assert table["far"]["1e-2"][2] <= table["far"]["1e-3"][2]


def test_fp32_target_builds_the_default_model_bundle(checkpoint, crops, tmp_path):
    assert _build(checkpoint, crops, tmp_path / "f", "fp32") == 0
    bundle = load_bundle(tmp_path / "f", task="face-embedding")
    m = bundle.manifest
    assert m["files"] == {"onnx": {"fp32": m["files"]["onnx"]["fp32"]}}
    assert m["input"] == {"size": [112, 112], "color": "rgb", "mean": [127.5] * 3, "std": [128.0] * 3,
                          "layout": "NCHW", "name": "image"}
    assert m["embedding_dim"] == 16 and m["recipe"]["name"] == "baseline" and m["data"]["training"]["identities"] == 8
    assert m["thresholds"]["by_file"] == {} and len(m["thresholds"]["far"]["1e-3"]) == 8
    assert "quantize_ort" not in m["export"]["timings_s"] and m["calibration"] is None
    assert m["parity"]["note"] == "FP32 target: nothing is quantized"
    assert not list((tmp_path / "f").glob("*int8*"))


def test_training_identities_never_set_a_threshold(checkpoint, crops, tmp_path, capsys):
    """--calib = the checkpoint's own training folder: its identities are left out of the thresholds (their
    impostor scores are too low), so with no LFW there is no threshold source and the build is refused."""
    train_crops = crops.parent / "train"
    assert _build(checkpoint, train_crops, tmp_path / "t", "fp32") == 1
    assert "the checkpoint was not trained on" in capsys.readouterr().err
    # Trained and new identities in one folder: only the new ones of the held-out split set the thresholds.
    from export.calibration import split_for_export

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for d in [*train_crops.iterdir(), *crops.iterdir()]:
        (mixed / d.name).symlink_to(d.resolve(), target_is_directory=True)
    split = split_for_export(list_crops(mixed), mixed, seed=0, calib_max=96)
    held = sorted(set(split.holdout_identities))
    new = [i for i in held if i.startswith("held_")]
    assert len(new) >= 2 and len(new) < len(held)  # the split of this folder holds out both kinds
    assert _build(checkpoint, mixed, tmp_path / "m", "fp32") == 0
    source = load_bundle(tmp_path / "m", task="face-embedding").manifest["thresholds"]["source"]
    assert f"{len(held) - len(new)} of its identities are among the checkpoint's 8 training identities" in source
    per_id = [split.holdout_identities.count(i) for i in new]  # held-out crops of each new identity
    n = sum(per_id)
    genuine, impostor = sum(c * (c - 1) for c in per_id), n * n - sum(c * c for c in per_id)
    assert f"r=14: {genuine}/{impostor}," in source


def test_tampered_bundle_is_refused(onnx_bundle, tmp_path):
    import shutil

    copy = shutil.copytree(onnx_bundle, tmp_path / "b")
    with open(copy / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(copy, task="face-embedding")


def test_jetson_target_writes_symmetric_qdq_and_trtexec_script(checkpoint, crops, tmp_path):
    assert _build(checkpoint, crops, tmp_path / "j", "jetson") == 0
    bundle = load_bundle(tmp_path / "j", task="face-embedding")
    script = bundle.file("tensorrt", "build_script").read_text()
    assert "trtexec" in script and "--int8" in script and "--fp16" in script and "--saveEngine=" in script
    assert "--onnx=model.qdq.onnx" in script and "WANT=10" in script
    proto = onnx.load(str(bundle.file("tensorrt", "qdq")))
    inits = {i.name: i for i in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert zero_points and all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)
    assert all(not onnx.numpy_helper.to_array(z).any() for z in zero_points)  # symmetric
    assert bundle.manifest["export"]["tensorrt"]["built"] is False  # tensorrt is not installable here
    assert bundle.manifest["parity"]["results"]["tensorrt_qdq"]["passed"]


@pytest.mark.skipif(not HAS_OPENVINO_NNCF, reason="openvino is needed for --eval-backend openvino")
def test_eval_backend_openvino_runs_the_onnx_files_there(checkpoint, crops, tmp_path):
    assert _build(checkpoint, crops, tmp_path / "j", "jetson", "--eval-backend", "openvino") == 0
    m = load_bundle(tmp_path / "j", task="face-embedding").manifest
    assert m["parity"]["results"]["tensorrt_qdq"]["backend"] == "openvino"
    assert m["thresholds"]["backend"] == m["thresholds"]["by_file"]["tensorrt/qdq"]["backend"] == "openvino"
    assert m["export"]["evaluation_backend"] == "openvino"


@pytest.mark.skipif(not HAS_OPENVINO_NNCF, reason="openvino and nncf are needed for the x86 target")
def test_x86_target_adds_an_openvino_int8_ir(checkpoint, crops, tmp_path):
    assert _build(checkpoint, crops, tmp_path / "x", "x86") == 0
    bundle = load_bundle(tmp_path / "x", task="face-embedding")
    assert set(bundle.manifest["files"]) == {"onnx", "openvino"}
    xml = bundle.file("openvino", "int8_xml")
    assert "FakeQuantize" in xml.read_text()
    sess = open_model(xml, "openvino")
    assert sess.run({sess.input_names[0]: np.zeros((2, 3, 112, 112), np.float32)})[0].shape == (2, 16)
    assert bundle.manifest["parity"]["results"]["openvino"]["passed"]
    assert set(bundle.manifest["thresholds"]["by_file"]) == {"onnx/int8", "openvino/int8_xml"}

    # A cosine floor between ORT's and OpenVINO's plain INT8: OpenVINO alone walks its remedy list, in order.
    res = bundle.manifest["parity"]["results"]
    worst = {k: min(b["cosine_mean"] for b in res[k]["attempts"][0]["report"]["bands"].values())
             for k in ("onnxruntime", "openvino")}
    if not worst["onnxruntime"] > worst["openvino"] + 2e-4:
        pytest.skip(f"OpenVINO INT8 is not below ORT INT8 on this model: {worst}")
    floor = (worst["onnxruntime"] + worst["openvino"]) / 2
    code = _build(checkpoint, crops, tmp_path / "x2", "x86", "--cosine-floor", f"{floor:.6f}",
                  "--cosine-p1-floor", "-1")
    report = tmp_path / "x2" / ("manifest.json" if code == 0 else "parity_report.json")
    data = json.loads(report.read_text())
    ov = (data["parity"]["results"] if code == 0 else data["parity"])["openvino"]
    remedies = [a["remedy"] for a in ov["attempts"]]
    plan = ["none", "NNCF mixed preset (asymmetric activations)", "first conv + embedding layer kept FP32",
            "most sensitive layers kept FP32", "calibration weighted to low resolution"]
    assert remedies[0] == "none" and remedies[1] == plan[1] and len(remedies) >= 2
    assert all(r == "none" or any(p in r for p in plan) for r in remedies)
    if code == 0:
        assert ov["passed"] and ov["remedy_used"] == remedies[-1] != "none"
    else:
        assert "low resolution" in remedies[-1] and any("most sensitive" in r for r in remedies)


def test_parity_miss_tries_remedies_then_fails_without_a_manifest(checkpoint, crops, tmp_path, capsys):
    out = tmp_path / "fail"
    assert _build(checkpoint, crops, out, "onnx", "--cosine-floor", "0.999999", "--cosine-p1-floor", "0.999999") == 1
    assert "parity failed" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()
    attempts = json.loads((out / "parity_report.json").read_text())["parity"]["onnxruntime"]["attempts"]
    remedies = [a["remedy"] for a in attempts]
    assert remedies[0] == "none" and any("entropy" in r for r in remedies) and any("percentile" in r for r in remedies)
    assert any("kept FP32" in r for r in remedies) and "low resolution" in remedies[-1]
    assert not list(out.glob("_attempt*")) and not list(out.glob("_ranking*"))
    # Sensitivity-ranked mixed precision: ranked on the all-INT8 model, reported, and never all layers FP32.
    report = json.loads((out / "parity_report.json").read_text())["parity"]["onnxruntime"]
    ranking = report["sensitivity_ranking"]
    assert len(ranking) == 5 and [r["score_db"] for r in ranking] == sorted(r["score_db"] for r in ranking)
    mixed = [a for a in attempts if "most sensitive" in a["remedy"]]
    assert mixed and all(a["sensitive_layers_kept_fp32"] for a in mixed)
    ranked_names = [r["name"] for r in ranking]
    for a in mixed:
        k = len(a["sensitive_layers_kept_fp32"])
        fixed = [n for n in a["nodes_kept_fp32"] if n not in a["sensitive_layers_kept_fp32"]]
        assert a["sensitive_layers_kept_fp32"] == [n for n in ranked_names if n not in fixed][:k]
        assert len([n for n in a["nodes_kept_fp32"] if n in ranked_names]) <= 3  # >= 40% of 5 layers stay INT8

    # A floor that plain INT8 misses but a remedy meets: the build passes and says which remedy it used.
    worst = [min(b["cosine_p1"] for b in a["report"]["bands"].values()) for a in attempts]
    assert max(worst[1:]) > worst[0] + 2e-5, worst
    floor = (worst[0] + max(worst[1:])) / 2
    out2 = tmp_path / "remedy"
    assert _build(checkpoint, crops, out2, "onnx", "--cosine-p1-floor", f"{floor:.6f}") == 0
    parity = load_bundle(out2, task="face-embedding").manifest["parity"]["results"]["onnxruntime"]
    assert parity["passed"] and parity["remedy_used"] != "none" and len(parity["attempts"]) >= 2


def test_no_remedies_flag_fails_on_first_miss(checkpoint, crops, tmp_path):
    out = tmp_path / "nr"
    assert _build(checkpoint, crops, out, "onnx", "--cosine-floor", "0.999999", "--no-remedies") == 1
    attempts = json.loads((out / "parity_report.json").read_text())["parity"]["onnxruntime"]["attempts"]
    assert len(attempts) == 1


@pytest.mark.parametrize("change, message", [
    ({"--target": "tpu"}, "--target must be one of"),
    ({"--checkpoint": "/nonexistent/final.pt"}, "--checkpoint /nonexistent/final.pt does not exist"),
    ({"--calib": "EMPTY"}, "holds no images"),
    ({"--calib": "/nonexistent/crops"}, "is not a folder"),
    ({"--calib-method": "kl"}, "--calib-method must be one of"),
    ({"--calib-size": "2"}, "--calib-size must be >= 8"),
    ({"--cosine-floor": "1.5"}, "--cosine-floor must lie in"),
    ({"--calib-bands": "low=1,tiny=2"}, "--calib-bands expects"),
    ({"--out": "NONEMPTY"}, "is not empty"),
    ({"--trt-version": "10; rm -rf /"}, "--trt-version must look like"),
])
def test_arguments_are_validated_up_front(change, message, checkpoint, crops, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    args = {"--target": "onnx", "--checkpoint": str(checkpoint), "--calib": str(crops), "--out": str(tmp_path / "o")}
    args.update({k: {"EMPTY": str(tmp_path / "empty"), "NONEMPTY": str(tmp_path / "full")}.get(v, v)
                 for k, v in change.items()})
    assert main([x for kv in args.items() for x in kv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_thresholds_need_identities_or_lfw(checkpoint, crops, tmp_path, capsys):
    import shutil

    flat = tmp_path / "flat"
    flat.mkdir()
    for k, f in enumerate(list_crops(crops)[:10]):
        shutil.copy(f, flat / f"{k}.png")
    assert _build(checkpoint, flat, tmp_path / "o", "onnx") == 2
    assert "thresholds need identities" in capsys.readouterr().err
    assert _build(checkpoint, crops, tmp_path / "o", "onnx", "--lfw", str(tmp_path)) == 2
    assert "is not an LFW folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_tensorrt_version_mismatch_is_refused(checkpoint, crops, tmp_path, capsys, monkeypatch):
    import types

    from export.build_engine import ExportError, check_tensorrt_version

    check_tensorrt_version("10.3.0", "10")
    check_tensorrt_version("10.3.0", "10.3")
    for have, want in (("8.6.1", "10"), ("10.3.0", "10.4"), ("100.0", "10")):
        with pytest.raises(ExportError, match=f"tensorrt {have} is installed"):
            check_tensorrt_version(have, want)
    # The build refuses before touching a builder: a stand-in module carrying only a version string.
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "8.6.1"
    fake.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake)
    assert _build(checkpoint, crops, tmp_path / "j", "jetson") == 1
    err = capsys.readouterr().err
    assert "tensorrt 8.6.1 is installed but the engine is meant for TensorRT 10" in err
    assert not (tmp_path / "j" / "manifest.json").exists()


def test_non_checkpoint_file_is_refused(crops, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    assert main(["--target", "onnx", "--checkpoint", str(bad), "--calib", str(crops), "--out",
                 str(tmp_path / "o")]) == 1
    assert "not a crres training checkpoint" in capsys.readouterr().err


def test_calibration_resolutions_are_stratified_and_deterministic(crops, caplog):
    rng = lambda s: np.random.default_rng(s)
    r = draw_resolutions(300, rng(0))
    assert r.min() >= 5 and r.max() <= 112 and len(r) == 300
    for lo, hi in BANDS.values():
        assert ((r >= lo) & (r <= hi)).sum() == 100
    assert np.array_equal(r, draw_resolutions(300, rng(0))) and not np.array_equal(r, draw_resolutions(300, rng(1)))
    low = draw_resolutions(100, rng(0), {"low": 1.0, "mid": 0.0, "high": 0.0})
    assert low.max() <= 10
    faces, names = load_faces(list_crops(crops))
    assert faces.shape == (48, 112, 112, 3) and len(names) == 48
    with caplog.at_level(logging.WARNING, logger="crres.export"):
        a = build_calibration_set(faces, names, 40, NORMALIZATION, seed=3)
    assert "distinct crops" in caplog.text and "--calib-size 40 is small" in caplog.text
    b = build_calibration_set(faces, names, 40, NORMALIZATION, seed=3)
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.resolutions, b.resolutions)
    assert a.inputs.shape == (40, 3, 112, 112) and a.inputs.dtype == np.float32


def test_split_holds_out_whole_identities_deterministically(tmp_path):
    from export.calibration import identity_labels, split_for_export

    files = []
    for i in range(12):
        (tmp_path / f"id{i:02d}").mkdir()
        for j in range(3 + i % 4):
            f = tmp_path / f"id{i:02d}" / f"{j}.png"
            f.touch()
            files.append(f)
    sp = split_for_export(files, tmp_path, seed=5, calib_max=1000, holdout_max=10)
    held = set(sp.holdout_identities)
    assert sp.by_identity and len(held) >= 2 and 10 <= len(sp.holdout) <= 10 + 3
    assert not held & {f.parent.name for f in sp.calib}                     # identities never in both
    assert all(sp.holdout_identities.count(i) <= 4 for i in held)          # at most 4 crops per identity
    assert [f.parent.name for f in sp.holdout] == sp.holdout_identities
    assert len(sp.calib) == sum(1 for f in files if f.parent.name not in held)
    again = split_for_export(files, tmp_path, seed=5, calib_max=1000, holdout_max=10)
    assert again == sp and split_for_export(files, tmp_path, seed=6, calib_max=1000, holdout_max=10) != sp
    assert len(split_for_export(files, tmp_path, seed=5, calib_max=7, holdout_max=10).calib) == 7
    flat = [tmp_path / f"{k}.png" for k in range(20)]
    assert identity_labels(flat, tmp_path) is None
    sp = split_for_export(flat, tmp_path, seed=0, calib_max=1000)
    assert not sp.by_identity and sp.holdout_identities is None and len(sp.holdout) == 5
    assert not set(sp.holdout) & set(sp.calib) and len(sp.holdout) + len(sp.calib) == 20


def test_photo_without_a_face_is_skipped_or_refused(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((200, 150, 3), np.uint8))
    with pytest.raises(ValueError, match="not an aligned 112x112 crop"):
        load_faces(list_crops(tmp_path), align=False)
    if not (REPO / "models" / "mtcnn" / "manifest.json").is_file():
        pytest.skip("the MTCNN bundle (make setup) is needed to align raw photos")
    with pytest.raises(ValueError, match="no usable faces"):
        load_faces(list_crops(tmp_path))


@pytest.mark.skipif(not (SHARED / "data" / "lfw" / "images").is_dir(), reason="needs ../shared LFW photos")
def test_raw_photos_are_aligned_with_the_sdk(tmp_path):
    if not (REPO / "models" / "mtcnn" / "manifest.json").is_file():
        pytest.skip("the MTCNN bundle (make setup) is needed to align raw photos")
    photos = sorted((SHARED / "data" / "lfw" / "images").rglob("*.jpg"))[:4]
    faces, kept = load_faces(photos)
    assert faces.shape[1:] == (112, 112, 3) and faces.dtype == np.uint8 and len(kept) >= 3
    assert faces.std() > 10  # real image content, not an empty warp


def test_entropy_calibration_is_not_minmax_in_disguise(onnx_bundle, crops, tmp_path):
    # onnxruntime's Entropy defaults (128 bins, 128 quantized bins) leave one candidate threshold, the full range;
    # export/quantize.py widens the histogram so the KL search has a choice.
    from onnx import numpy_helper

    from export.quantize import pre_process, quantize_ort

    x = np.random.default_rng(0).normal(size=(48, 3, 112, 112)).astype(np.float32)
    pre = pre_process(onnx_bundle / "model.fp32.onnx", tmp_path / "pre.onnx")
    scales = {}
    for method in ("minmax", "entropy"):
        quantize_ort(pre, tmp_path / f"{method}.onnx", x, method)
        graph = onnx.load(str(tmp_path / f"{method}.onnx")).graph
        scales[method] = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("_scale")}
    assert any(not np.allclose(v, scales["entropy"][k]) for k, v in scales["minmax"].items())


def test_cpu_isa_reads_the_int8_relevant_flags():
    from export.build_engine import cpu_isa

    info = cpu_isa("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse4_2 avx2 fma avx512f avx512_vnni\n"
                   "processor\t: 1\nflags\t\t: fpu\n")
    assert info["model"] == "AMD EPYC 9B14" and info["isa"] == ["sse4_2", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert cpu_isa("Features\t: fp asimd asimddp\n")["isa"] == ["asimd", "asimddp"]  # aarch64 spelling
