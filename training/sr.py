"""sr-edsr: train the face super-resolution network of the meet-in-the-middle method (Grm et al. 2023, Sec. 3.3)
and export it for the SDK (``crres_sdk.mitm.OnnxSuperResolver``).

    python -m training.sr --data ../shared/data/train/celeba --scale 4 --out runs/sr4

What it does, and where it comes from:

* Network: EDSR (``training.models.edsr``; ``--config baseline`` = 16 blocks x 64 features as EDSR-baseline).
* Data: aligned ``--hr-size`` (112) face crops (any folder tree of images, e.g. the shared CelebA crops), random
  horizontal flips. The paper trains on VGGFace2 at higher resolution; here HR is the canonical 112 crop, so
  x2 / x4 / x8 learn 56 -> 112, 28 -> 112 and 14 -> 112 (the SR nets are fully convolutional and run on any
  probe size in the SDK).
* LR inputs ("a degradation (downsampling) pipeline", Sec. 3.3): ``--degradation bicubic`` (default) is the
  project's one definition of resolution, antialiased bicubic down by k (``F.interpolate(..., antialias=True)``,
  PIL-exact in the SDK core), rounded to 8-bit levels as a camera frame would be; ``--degradation lu`` first
  applies Lu & Ebrahimi's blur / noise / JPEG model (each with p = 0.5, ``training.degradations.lu_degradation``).
* Optimisation as EDSR (Lim et al. Sec. 4.1): L1 loss, Adam (beta 0.9 / 0.999, eps 1e-8), lr 1e-4 halved every
  2e5 steps, batch 16.
* Output in ``--out``: ``checkpoint.pt`` (every ``--ckpt-every`` steps and at the end; ``--resume`` continues
  it), ``train_log.csv`` (loss, lr, speed; validation PSNR of the SR output and of bicubic upsampling on held-out
  crops), ``sr_x{k}.onnx`` (batch, height and width dynamic; checked against torch with ONNX Runtime) and
  ``sr_x{k}.json`` (I/O convention, sha256, figures, the command).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from training import onnx_export
from training.checkpoint import save_atomic
from training.degradations import lu_degradation
from training.models.edsr import CONFIGS, SCALES, edsr
from training.train import CsvLog

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: The model I/O, written to sr_x{k}.json and assumed by crres_sdk.mitm.OnnxSuperResolver.
IO = {"color": "rgb", "range": [0.0, 1.0], "layout": "NCHW", "input": "lr", "output": "sr",
      "dynamic": ["batch", "height", "width"]}


RESUME_KEYS = ("model", "model_config", "optimizer", "scheduler", "generator", "step", "epoch")


def load_resume_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an sr-edsr ``checkpoint.pt`` for ``--resume`` with ``weights_only=True``.

    A checkpoint is untrusted input: a full unpickle would run any ``__reduce__`` payload it carries. Everything
    :func:`main` saves is tensors and primitives, so the safe loader reads it; anything else is refused with
    SystemExit before a byte of it runs.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"--resume {path}: no such file") from None
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip/torch file), EOFError, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise SystemExit(f"--resume {path}: refusing to load, not a plain tensors-and-primitives sr-edsr "
                         f"checkpoint ({type(exc).__name__}: {first})") from None
    missing = [k for k in RESUME_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise SystemExit(f"--resume {path} is not an sr-edsr checkpoint (missing {', '.join(missing)})")
    return ckpt


# ------------------------------------------------------------------------------------------------- data

def list_images(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise SystemExit(f"--data {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SystemExit(f"no images under {root}")
    return files


class CropDataset(Dataset):
    """uint8 (3, S, S) RGB crops from files; ``flip`` mirrors half of them (EDSR's augmentation, faces are
    symmetric enough for horizontal flips only)."""

    def __init__(self, files: list[Path], size: int = 112, flip: bool = True) -> None:
        self.files, self.size, self.flip = files, size, flip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        bgr = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {self.files[i]}")
        if bgr.shape[:2] != (self.size, self.size):
            interp = cv2.INTER_AREA if bgr.shape[0] > self.size else cv2.INTER_CUBIC
            bgr = cv2.resize(bgr, (self.size, self.size), interpolation=interp)
        rgb = bgr[:, :, ::-1]
        if self.flip and np.random.random() < 0.5:   # seeded per worker by torch's DataLoader
            rgb = rgb[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def quantise(x: torch.Tensor) -> torch.Tensor:
    """To 8-bit levels in [0, 1], as the uint8 frames the SDK gets."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def make_lr(hr: torch.Tensor, scale: int, degradation: str = "bicubic",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """LR input for an HR batch (float RGB [0, 1], (N, 3, H, W), H and W divisible by ``scale``)."""
    n, _, h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not divisible by the scale {scale}")
    if degradation == "bicubic":
        lr = F.interpolate(hr, (h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    elif degradation == "lu":
        lr, _ = lu_degradation(hr, sizes=torch.full((n,), w // scale), generator=generator, upsample=False)
    else:
        raise ValueError(f"degradation must be 'bicubic' or 'lu', got {degradation!r}")
    return quantise(lr)


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean PSNR (dB) over the batch, on RGB in [0, 1]."""
    mse = ((x.clamp(0, 1) - y) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


# ------------------------------------------------------------------------------------------- training

@torch.no_grad()
def validate(model: torch.nn.Module, hr: torch.Tensor, scale: int, degradation: str, device: torch.device,
             seed: int, batch: int = 32) -> dict[str, float]:
    """PSNR of the model and of bicubic upsampling on fixed held-out LR inputs (same generator every time)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    sr_db, bic_db, n = 0.0, 0.0, 0
    for start in range(0, len(hr), batch):
        x = hr[start:start + batch].to(device, torch.float32) / 255
        lr = make_lr(x.cpu(), scale, degradation, generator).to(device)
        sr_db += psnr(model(lr), x) * len(x)
        bic_db += psnr(bicubic_up(lr, scale), x) * len(x)
        n += len(x)
    model.train(was_training)
    return {"val_psnr": sr_db / n, "val_psnr_bicubic": bic_db / n}


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, lr_size: int = 14) -> Path:
    """ONNX with dynamic batch / height / width, opset 17 (input ``lr``, output ``sr``)."""
    model = model.eval().cpu()
    return onnx_export.export_onnx(model, (torch.rand(2, 3, lr_size, lr_size),), path, input_names=["lr"],
                                   output_names=["sr"], dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                                                                      "sr": {0: "batch", 2: "height", 3: "width"}})


def check_onnx(model: torch.nn.Module, path: Path, lr: torch.Tensor) -> float:
    """Max |ONNX Runtime - torch| on ``lr`` (a batch other than the export sample's size)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model.eval().cpu()(lr).numpy()
    got = session.run(None, {"lr": lr.numpy()})[0]
    return float(np.abs(got - want).max())


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc="sr-edsr", dynamic_ncols=True, file=sys.stderr)
    except ImportError:
        return None


def train(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.hr_size % args.scale:
        raise SystemExit(f"--hr-size {args.hr_size} is not divisible by --scale {args.scale}")

    files = list_images(args.data)
    order = np.random.default_rng(args.seed).permutation(len(files))
    files = [files[i] for i in order]
    if args.limit:
        files = files[:args.limit + args.val]
    if len(files) <= args.val:
        raise SystemExit(f"{len(files)} images: not enough for --val {args.val} plus training")
    val_files, train_files = files[:args.val], files[args.val:]
    val_hr = torch.stack([CropDataset(val_files, args.hr_size, flip=False)[i] for i in range(len(val_files))]) \
        if val_files else None
    print(f"sr-edsr x{args.scale}: {len(train_files)} training crops, {len(val_files)} held out, from {args.data}; "
          f"device {device}", flush=True)

    model = edsr(args.scale, args.config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.lr_step, gamma=0.5)
    generator = torch.Generator().manual_seed(args.seed)
    step, epoch = 0, 0
    if args.resume:
        ckpt = load_resume_checkpoint(args.resume)
        if ckpt["model_config"] != model.config:
            raise SystemExit(f"--resume {args.resume} holds {ckpt['model_config']}, not {model.config}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        generator.set_state(ckpt["generator"])
        step, epoch = ckpt["step"], ckpt["epoch"]
        print(f"resumed from {args.resume} at step {step}", flush=True)
    log = CsvLog(out / "train_log.csv", append=bool(args.resume))

    def save() -> None:
        save_atomic({"model": model.state_dict(), "model_config": model.config, "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "step": step,
                      "epoch": epoch, "io": IO, "degradation": args.degradation, "args": vars(args)},
                     out / "checkpoint.pt")

    dataset = CropDataset(train_files, args.hr_size)
    bar = _progress(args.steps, step, args.progress)
    model.train()
    start, window, running = time.perf_counter(), time.perf_counter(), 0.0
    done_in_window = 0
    while step < args.steps:
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                            drop_last=len(dataset) >= args.batch_size, num_workers=args.workers,
                            generator=torch.Generator().manual_seed(args.seed + epoch))
        for hr_u8 in loader:
            hr = hr_u8.to(torch.float32) / 255
            lr = make_lr(hr, args.scale, args.degradation, generator).to(device)
            hr = hr.to(device)
            loss = (model(lr) - hr).abs().mean()     # L1, as EDSR
            if not torch.isfinite(loss):
                raise SystemExit(f"non-finite loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            value = loss.item()
            running += value
            done_in_window += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
            last = step >= args.steps
            if step % args.log_every == 0 or last:
                now = time.perf_counter()
                row = {"step": step, "epoch": epoch, "loss_l1": running / done_in_window,
                       "lr": optimizer.param_groups[0]["lr"], "sec_per_step": (now - window) / done_in_window,
                       "val_psnr": "", "val_psnr_bicubic": "", "time": round(now - start, 2)}
                if val_hr is not None and (step % args.val_every == 0 or last):
                    row.update(validate(model, val_hr, args.scale, args.degradation, device, args.seed + 1))
                log.log(row)
                if bar is None:
                    print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                                   if v != ""), flush=True)
                running, done_in_window, window = 0.0, 0, time.perf_counter()
            if step % args.ckpt_every == 0 or last:
                save()
            if last:
                break
        epoch += 1
    if bar is not None:
        bar.close()

    figures = validate(model, val_hr, args.scale, args.degradation, device, args.seed + 1) if val_hr is not None \
        else {}
    onnx_path = export_onnx(model, out / f"sr_x{args.scale}.onnx")
    sample_lr = make_lr(torch.rand(3, 3, args.hr_size, args.hr_size), args.scale, "bicubic")
    onnx_diff = check_onnx(model, onnx_path, sample_lr)
    info = {"task": "face-super-resolution", "method": "EDSR (Lim et al. 2017) for Grm et al. 2023 Sec. 3.3",
            "scale": args.scale, "model_config": model.config, "io": IO, "hr_size": args.hr_size,
            "degradation": args.degradation, "data": str(args.data), "train_crops": len(train_files),
            "val_crops": len(val_files), "steps": step, "batch_size": args.batch_size, "lr": args.lr,
            "seed": args.seed, "onnx_max_abs_diff_vs_torch": onnx_diff,
            "file": onnx_path.name, "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
            "command": "python -m training.sr " + " ".join(sys.argv[1:]), **figures}
    (out / f"sr_x{args.scale}.json").write_text(json.dumps(info, indent=2) + "\n")
    model.to(device)
    print(json.dumps(info, indent=2), flush=True)
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.sr", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder tree of aligned face crops")
    p.add_argument("--scale", type=int, required=True, choices=SCALES)
    p.add_argument("--out", required=True, help="run folder (checkpoint, log, sr_x<k>.onnx)")
    p.add_argument("--config", default="baseline", choices=sorted(CONFIGS))
    p.add_argument("--degradation", default="bicubic", choices=("bicubic", "lu"))
    p.add_argument("--hr-size", type=int, default=112)
    p.add_argument("--steps", type=int, default=300_000, help="optimisation steps in all (EDSR: 3e5)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-step", type=int, default=200_000, help="halve the learning rate every this many steps")
    p.add_argument("--val", type=int, default=256, help="held-out crops for the validation PSNR")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--limit", type=int, default=0, help="use at most this many training crops (0: all)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=2000)
    p.add_argument("--resume", default=None, help="checkpoint.pt to continue")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("steps", "batch_size", "log_every", "ckpt_every", "val_every", "lr_step"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.val < 0 or args.limit < 0 or args.workers < 0 or not math.isfinite(args.lr) or args.lr <= 0:
        raise SystemExit("--val, --limit and --workers must be >= 0 and --lr > 0")
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
