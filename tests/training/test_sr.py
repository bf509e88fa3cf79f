"""sr-edsr (Grm et al. 2023 Sec. 3.3 face SR): the EDSR architecture per scale, its LR pipeline against the SDK's
one definition of resolution, that L1 training reduces the loss, ONNX export = torch (also through the SDK's
OnnxSuperResolver), and the training entry point end to end on a few crops (a smoke run, not a trained model)."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from crres_sdk.mitm import OnnxSuperResolver
from crres_sdk.preprocess import align_faces_uint8, resize_bicubic
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr
from training import sr
from training.models.edsr import EDSR, edsr

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def face_rgb() -> np.ndarray:
    return np.ascontiguousarray(align_faces_uint8(astronaut_bgr(), ASTRONAUT_LANDMARKS)[:, :, ::-1])


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_edsr_shapes(scale):
    model = edsr(scale, "small").eval()
    with torch.no_grad():
        y = model(torch.rand(2, 3, 14, 10))
    assert y.shape == (2, 3, 14 * scale, 10 * scale)
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in model.modules()) == int(np.log2(scale))


def test_edsr_baseline_matches_published_size():
    # EDSR-baseline x2 (16 blocks, 64 features): 1,369,859 parameters in the EDSR reference implementation.
    assert sum(p.numel() for p in edsr(2, "baseline").parameters()) == 1_369_859
    with pytest.raises(ValueError):
        EDSR(3)
    with pytest.raises(ValueError):
        edsr(2, "huge")


def test_make_lr_is_the_sdk_resolution(face_rgb):
    hr = torch.from_numpy(face_rgb).permute(2, 0, 1)[None].float() / 255
    for k in (2, 4, 8):
        lr = sr.make_lr(hr, k)
        assert lr.shape == (1, 3, 112 // k, 112 // k)
        ours = lr[0].permute(1, 2, 0).numpy().astype(np.float64) * 255
        core = resize_bicubic(face_rgb.astype(np.float32), 112 // k)           # the core's float path (no rounding)
        assert np.abs(ours - np.round(ours)).max() < 1e-3                       # 8-bit levels
        assert np.abs(ours - np.clip(core, 0, 255)).max() <= 0.5 + 1e-2         # = the core, then rounded
    lu = sr.make_lr(hr.repeat(4, 1, 1, 1), 4, "lu", torch.Generator().manual_seed(0))
    assert lu.shape == (4, 3, 28, 28) and torch.equal(lu, torch.round(lu * 255) / 255)
    with pytest.raises(ValueError):
        sr.make_lr(hr[..., :110, :110], 4)
    with pytest.raises(ValueError):
        sr.make_lr(hr, 4, "jpeg")


def test_l1_steps_reduce_loss_on_a_fixed_batch(face_rgb):
    torch.manual_seed(0)
    crops = [cv2.resize(np.roll(face_rgb, s, axis=1), (32, 32), interpolation=cv2.INTER_AREA) for s in (0, 9, 17, 30)]
    hr = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    lr = sr.make_lr(hr, 2)
    model = edsr(2, "small", n_resblocks=2, n_feats=16)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = (model(lr) - hr).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0], losses


def test_onnx_export_matches_torch(tmp_path, face_rgb):
    torch.manual_seed(0)
    model = edsr(2, "small").eval()
    path = sr.export_onnx(model, tmp_path / "sr_x2.onnx")
    lr = torch.rand(3, 3, 17, 11)                       # batch and size unlike the export sample
    assert sr.check_onnx(model, path, lr) < 1e-4
    # through the SDK (no torch there): uint8 BGR in, uint8 BGR out
    resolver = OnnxSuperResolver({2: path}, backend="onnxruntime")
    small_bgr = np.ascontiguousarray(resize_bicubic(face_rgb, 20)[None, :, :, ::-1])
    got = resolver(small_bgr, 2)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(small_bgr[..., ::-1])).permute(0, 3, 1, 2).float() / 255
        want = (model(x).clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy()[..., ::-1]
    assert got.shape == (1, 40, 40, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1


def test_training_entry_point_smoke(tmp_path, face_rgb):
    data = tmp_path / "data" / "id0"
    data.mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(data / f"{i}.png"), np.roll(face_rgb[:, :, ::-1], 7 * i, axis=1))
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "data"), "--scale", "4", "--out", str(out), "--config", "small", "--steps", "2",
            "--batch-size", "2", "--val", "2", "--workers", "0", "--log-every", "1", "--val-every", "2",
            "--no-progress"]
    assert sr.main(args) == 0
    info = json.loads((out / "sr_x4.json").read_text())
    assert info["scale"] == 4 and info["steps"] == 2 and info["onnx_max_abs_diff_vs_torch"] < 1e-4
    assert info["val_psnr_bicubic"] > 20 and info["io"]["color"] == "rgb"
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [r["step"] for r in rows] == ["1", "2"] and rows[1]["val_psnr"] != ""
    assert sr.main(args[:-1] + ["--steps", "3", "--resume", str(out / "checkpoint.pt"), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3
    assert OnnxSuperResolver.from_dir(out, backend="onnxruntime").scales == (4,)
    with pytest.raises(SystemExit):
        sr.main(args[:-1] + ["--resume", str(out / "checkpoint.pt"), "--config", "baseline"])
