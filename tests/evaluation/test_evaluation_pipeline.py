"""Embedders (fixed-batch-1 ONNX, dynamic ONNX, torch checkpoint) and a tiny end-to-end run with plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from evaluation.datasets import write_bin
from evaluation.embedder import (
    SessionEmbedder,
    onnx_fixed_batch,
    open_embedder,
    preprocess,
)

DIM = 16


def tiny_onnx(path, batch, seed=0):
    """Conv 3->4 (8x8, stride 8) -> Flatten -> MatMul to 16-d: a random projection of a downsampled crop."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (4, 3, 8, 8)).astype(np.float32), "w")
    m = numpy_helper.from_array(rng.normal(0, 0.1, (4 * 14 * 14, DIM)).astype(np.float32), "m")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], strides=[8, 8]),
             helper.make_node("Flatten", ["c"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "m"], ["output"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [batch, 3, 112, 112])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, DIM])], [w, m])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _crops(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_fixed_batch_1_model_runs_one_crop_at_a_time_and_matches_the_dynamic_model(tmp_path):
    fixed = SessionEmbedder(tiny_onnx(tmp_path / "b1.onnx", 1), backend="onnxruntime", batch_size=8)
    dynamic = SessionEmbedder(tiny_onnx(tmp_path / "bn.onnx", "N"), backend="onnxruntime", batch_size=8)
    assert fixed.fixed_batch == 1 and dynamic.fixed_batch is None
    crops = _crops(5)
    # The fixed model really refuses a batch of 5 ...
    with pytest.raises(Exception, match="(?i)dimension|shape|index"):  # ORT raises its own error types
        fixed.session.run({"input": preprocess(crops, fixed.normalization, 112)})
    calls = []
    run = fixed.session.run
    fixed.session.run = lambda feeds: calls.append(len(feeds["input"])) or run(feeds)
    out = fixed.embed(crops)
    assert calls == [1] * 5
    assert out.shape == (5, DIM)
    np.testing.assert_allclose(out, dynamic.embed(crops), rtol=1e-5, atol=1e-5)


def test_preprocess_matches_the_arcface_convention():
    crops = _crops(2)
    from crres_sdk.preprocess import Normalization

    x = preprocess(crops, Normalization.arcface(), 112)
    expect = (crops[..., ::-1].astype(np.float32) - 127.5) / 128.0
    np.testing.assert_allclose(x, expect.transpose(0, 3, 1, 2), atol=1e-6)
    with pytest.raises(ValueError):
        preprocess(crops.astype(np.float32), Normalization.arcface(), 112)


def test_torch_checkpoint_embedder_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    from training.models import get_model

    model = get_model("mobilefacenet").eval()
    ckpt = {"model_name": "mobilefacenet", "model_kwargs": {}, "embedding_dim": model.embedding_dim,
            "input_size": 112, "normalization": {"color": "rgb", "mean": [127.5] * 3, "std": [128.0] * 3},
            "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(ckpt, tmp_path / "m.pt")
    emb = open_embedder(tmp_path / "m.pt", batch_size=2)
    crops = _crops(3)
    with torch.inference_mode():
        ref = model(torch.from_numpy(preprocess(crops, emb.normalization, 112))).numpy()
    np.testing.assert_allclose(emb.embed(crops), ref, rtol=1e-4, atol=1e-5)
    # --backend onnxruntime on a checkpoint: the same network exported to ONNX, same normalisation.
    session = open_embedder(tmp_path / "m.pt", backend="onnxruntime", threads=1, batch_size=2)
    assert session.kind == "onnx:onnxruntime" and session.normalization == emb.normalization
    np.testing.assert_allclose(session.embed(crops), ref, rtol=1e-3, atol=1e-4)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "noname.pt")
    with pytest.raises(ValueError, match="names no model"):
        open_embedder(tmp_path / "noname.pt")
    ckpt["embedding_dim"] = 3
    torch.save(ckpt, tmp_path / "baddim.pt")
    with pytest.raises(ValueError, match="embedding_dim"):
        open_embedder(tmp_path / "baddim.pt")


def _identity_image(seed, noise_seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:112, 0:112] / 112.0
    f = rng.uniform(1, 4, (3, 2))
    img = np.stack([np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy)) for c in range(3)], -1)
    img += np.random.default_rng(1000 + noise_seed).normal(0, 0.15, img.shape)
    return np.clip((img + 1) * 127.5, 0, 255).astype(np.uint8)


def test_tiny_end_to_end_run_writes_json_markdown_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    import cv2

    from evaluation.cli import main

    images, issame = [], []
    for fold in range(10):
        for k in range(4):          # 2 genuine then 2 impostor pairs per fold
            ident = fold * 10 + k
            same = k < 2
            images += [_identity_image(ident, 2 * ident), _identity_image(ident if same else ident + 500, 2 * ident + 1)]
            issame.append(same)
    write_bin(tmp_path / "tiny.bin", images, issame)
    rows = []
    for ident in range(3):
        for role, n in (("gallery", 0), ("probe", 1), ("probe", 2)):
            name = f"{ident}_{n}.png"
            cv2.imwrite(str(tmp_path / name), _identity_image(ident, 50 + 3 * ident + n))
            rows.append({"identity": ident, "path": name, "role": role, "resolution": "" if n == 1 else 14})
    with open(tmp_path / "layout.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["identity", "path", "role", "resolution"])
        writer.writeheader(); writer.writerows(rows)
    model = tiny_onnx(tmp_path / "tiny.onnx", 1)
    out = tmp_path / "out"
    rc = main(["--model", str(model), "--bin", str(tmp_path / "tiny.bin"), "--protocols",
               "hr,fixed,lai,identification", "--resolutions", "7,14,56", "--ident-manifest",
               str(tmp_path / "layout.csv"), "--backend", "onnxruntime", "--quiet", "--out", str(out)])
    assert rc == 0
    for name in ("results.json", "report.md", "accuracy_vs_resolution.png", "distance_vs_resolution.png",
                 "threshold_vs_resolution.png", "distance_distributions.png", "roc_hr.png", "cmc.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    res = json.loads((out / "results.json").read_text())
    assert sorted(res["fixed"]["cr"], key=int) == ["7", "14", "56"] and set(res["fixed"]) == {"cr", "er"}
    assert set(res["lai"]) == {"8", "12", "16", "20"}
    assert 0.5 <= res["hr"]["accuracy"] <= 1.0
    cr = res["fixed"]["cr"]["14"]
    assert cr["accuracy"] == pytest.approx((cr["first_degraded"]["accuracy"] + cr["second_degraded"]["accuracy"]) / 2)
    assert res["identification"]["per_resolution"]["native"]["probes"] == 3
    assert "| 112 px (HR) |" in (out / "report.md").read_text()
    # Fixed-batch ONNX went through the one-at-a-time path; 40 HR + 3 x 80 degraded crops + Lai's 4 x 40.
    assert res["model"]["batch"] == 1
    assert res["embeddings_computed"] == 80 + 3 * 80 + 4 * 40


def test_onnx_fixed_batch_reader(tmp_path):
    assert onnx_fixed_batch(tiny_onnx(tmp_path / "a.onnx", 1)) == 1
    assert onnx_fixed_batch(tiny_onnx(tmp_path / "b.onnx", "batch")) is None


def test_embedding_cache_degrades_with_the_sdk_and_computes_each_image_resolution_once(tmp_path):
    from crres_sdk import degrade

    from evaluation.datasets import PairDataset
    from evaluation.protocols import EmbeddingCache, evaluate_fixed
    from evaluation.verification import l2_normalize

    emb = SessionEmbedder(tiny_onnx(tmp_path / "bn.onnx", "N"), backend="onnxruntime")
    crops = _crops(20, seed=3)
    cache = EmbeddingCache(crops, emb, progress=False)
    got = cache.get(np.array([4, 2, 4]), np.array([14, 112, 14]))
    np.testing.assert_allclose(got[0], l2_normalize(emb.embed(degrade(crops[4:5], 14)))[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], l2_normalize(emb.embed(crops[2:3]))[0], rtol=1e-5, atol=1e-6)
    assert cache.computed == 2
    ds = PairDataset("t", crops, np.arange(20).reshape(10, 2), np.tile([True, False], 5), np.arange(10))
    res = evaluate_fixed(cache, ds, [7], keep_distances=False)
    # Cached so far: crop 4 at 14, crop 2 at 112. CR needs all 20 crops at 7 and at 112 (both orders), ER the
    # same 20 at 7: 20 + 19 new embeddings.
    assert cache.computed == 2 + 20 + 19
    er = res["er"][7]
    a, b = cache.get(ds.pair_index[:, 0], 7), cache.get(ds.pair_index[:, 1], 7)
    assert er["genuine_distance_mean"] == pytest.approx(float(1 - np.sum(a * b, 1)[ds.issame].mean()), rel=1e-5)


def test_limit_pairs_keeps_both_classes_in_every_fold():
    from evaluation.datasets import PairDataset, limit_pairs

    issame = np.tile(np.r_[np.ones(6, bool), np.zeros(6, bool)], 10)   # LFW order: matched first
    ds = PairDataset("t", _crops(2), np.zeros((120, 2), np.int64), issame, np.repeat(np.arange(10), 12))
    small, keep = limit_pairs(ds, 4)
    assert small.n_pairs == 40
    np.testing.assert_array_equal(small.issame, ds.issame[keep])
    for k in range(10):
        assert small.issame[small.folds == k].tolist() == [True, True, False, False]


def test_cli_reports_bad_input_as_errors(tmp_path, capsys):
    import pickle

    from evaluation.cli import main

    model = tiny_onnx(tmp_path / "tiny.onnx", 1)
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([b"x", b"y"], [__import__("os").system]), protocol=2))
    assert main(["--model", str(model), "--bin", str(tmp_path / "evil.bin"), "--out", str(tmp_path / "o")]) == 2
    assert "refusing to load global" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "none.onnx"), "--bin", str(tmp_path / "evil.bin"),
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["--model", str(model), "--lfw", str(tmp_path / "nolfw"), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit):
        main(["--model", str(model), "--bin", "x.bin", "--resolutions", "0,7", "--out", "o"])


def test_a_bundle_folder_is_measured_through_the_file_the_sdk_runs():
    """Evaluating a bundle measures the file Recognizer would open for that backend (INT8 where present), not the
    manifest's first file; --precision fp32 picks the FP32 one."""
    from crres_sdk.backends import available_backends
    from crres_sdk.recognizer import Recognizer, choose_model_file

    bundle = Path(__file__).resolve().parents[2] / "models" / "crres_default"
    if not (bundle / "manifest.json").is_file():
        pytest.skip("no default bundle")
    files = {"onnx": {"fp32": {}, "int8": {}}, "openvino": {"int8_xml": {}}}
    assert choose_model_file(files, "onnxruntime") == ("int8", "onnx", "int8")
    assert choose_model_file(files, "onnxruntime", "fp32") == ("fp32", "onnx", "fp32")
    assert choose_model_file(files, "openvino") == ("int8", "openvino", "int8_xml")
    assert choose_model_file({"onnx": {"fp32": {}}}, "openvino", "int8") is None
    for backend in available_backends():
        rec = Recognizer(bundle, backend=backend)
        emb = open_embedder(bundle, backend=backend, threads=1)
        assert emb.name.endswith(f":{rec.model_file}") and emb.path == rec.bundle.file(*rec.model_file.split("/"))
        rec.close()
    assert open_embedder(bundle, backend="onnxruntime", precision="fp32").name.endswith(":onnx/fp32")
