"""Blind effective-resolution estimator: a tiny CNN reading an aligned 112x112 crop and predicting log2(r).

Self-supervised (issue 3): every training crop is degraded with the shared definition
(``training.degradations.degrade_batch``: antialiased bicubic down to r x r and back up) to a known r drawn
log-uniformly from [5, 112]; the network regresses log2(r) with an L1 loss. A third of the crops also get
mild sensor noise (sigma <= 3/255), which must not read as resolution. The crop convention is the SDK's
model input: RGB, (x - 127.5) / 128, so the estimator runs on the same tensor the recogniser gets.

    python -m training.resolution_estimator --data ../shared/data/train/celeba --out models/resolution_estimator
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from training.degradations import degrade_batch
from training.onnx_export import export_onnx

R_MIN, R_MAX = 5, 112
MEAN, STD = 127.5, 128.0


class ResolutionNet(nn.Module):
    """Four stride-2 3x3 conv blocks (16-32-64-64), global average pooling, linear -> log2(r)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def load_crops(root: Path, limit: int, seed: int) -> np.ndarray:
    """Up to `limit` aligned crops (uint8 RGB, N x 112 x 112 x 3) from an identity-folder dataset."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no images under {root}")
    rng = np.random.default_rng(seed)
    files = [files[i] for i in rng.permutation(len(files))[:limit]]
    crops = np.empty((len(files), 112, 112, 3), np.uint8)
    for i, path in enumerate(files):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None or image.shape[:2] != (112, 112):
            raise SystemExit(f"{path} is not a 112 x 112 aligned crop")
        crops[i] = image[:, :, ::-1]
    return crops


def sample_sizes(n: int, generator: torch.Generator, groups: int = 8) -> torch.Tensor:
    """Log-uniform r in [R_MIN, R_MAX], shared by n / groups consecutive samples (fewer resize calls)."""
    u = torch.rand(groups, generator=generator)
    r = torch.exp(math.log(R_MIN) + u * (math.log(R_MAX) - math.log(R_MIN))).round().long()
    return r.repeat_interleave(math.ceil(n / groups))[:n]


def make_batch(crops_u8: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = crops_u8.permute(0, 3, 1, 2).float()
    flip = torch.rand(len(x), generator=generator) < 0.5
    x[flip] = x[flip].flip(3)
    sizes = sample_sizes(len(x), generator)
    x = degrade_batch(x, sizes)
    noisy = torch.rand(len(x), generator=generator) < 1 / 3
    sigma = torch.rand(len(x), generator=generator) * 3.0
    x = x + noisy[:, None, None, None] * sigma[:, None, None, None] * torch.randn(x.shape, generator=generator)
    x = (x.clamp(0, 255).round() - MEAN) / STD  # what an 8-bit frame would carry
    return x, torch.log2(sizes.float())


def train(crops: np.ndarray, steps: int, batch: int, lr: float, seed: int, log_every: int = 100) -> ResolutionNet:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(crops)
    model = ResolutionNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        idx = torch.randint(len(data), (batch,), generator=generator)
        x, target = make_batch(data[idx], generator)
        loss = (model(x) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps}  L1(log2 r) {running / log_every:.3f}  "
                  f"{(time.perf_counter() - start) / step:.2f} s/step", flush=True)
            running = 0.0
    return model.eval()


@torch.no_grad()
def evaluate(model: ResolutionNet, crops: np.ndarray, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    x, target = make_batch(torch.from_numpy(crops), generator)
    err = (model(x) - target).abs()
    return {"val_l1_log2": float(err.mean()), "val_median_abs_log2": float(err.median()), "val_crops": len(crops)}


def export_bundle(model: ResolutionNet, out: Path, info: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "estimator.onnx"
    export_onnx(model, (torch.zeros(2, 3, 112, 112),), path, input_names=["image"], output_names=["log2_resolution"],
                dynamic_axes={"image": {0: "batch"}})
    manifest = {
        "format": "crres-bundle/1",
        "name": "resolution-estimator",
        "version": info["version"],
        "task": "resolution-estimation",
        "input": {"size": [112, 112], "color": "rgb", "mean": [MEAN] * 3, "std": [STD] * 3},
        "output": {"name": "log2_resolution", "range_px": [R_MIN, R_MAX]},
        "files": {"onnx": {"estimator": {"path": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}},
        "training": info,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="identity folders of aligned 112x112 crops")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    parser.add_argument("--limit", type=int, default=8000, help="crops to load (the rest is not needed)")
    parser.add_argument("--val", type=int, default=512, help="held-out crops for the validation figure")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    crops = load_crops(args.data, args.limit + args.val, args.seed)
    train_crops, val_crops = crops[args.val:], crops[:args.val]
    print(f"{len(train_crops)} training crops, {len(val_crops)} held out, from {args.data}")
    model = train(train_crops, args.steps, args.batch_size, args.lr, args.seed)
    info = {"version": f"r{R_MIN}-{R_MAX}-s{args.steps}-seed{args.seed}", "data": str(args.data.name),
            "crops": len(train_crops), "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "seed": args.seed, "command": "python -m training.resolution_estimator --data DATA --out OUT " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("data", "out")),
            **evaluate(model, val_crops, args.seed + 1)}
    export_bundle(model, args.out, info)
    print(json.dumps(info, indent=2))
    print(f"wrote {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
