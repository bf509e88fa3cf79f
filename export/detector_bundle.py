"""Build the MTCNN face-detector bundle (P-Net, R-Net, O-Net as ONNX + manifest) for crres_sdk.FaceDetector.

Weights: the MIT-licensed ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` inside the ``facenet-pytorch==2.6.0``
wheel on PyPI (converted by its authors from the original MTCNN of Zhang et al. 2016). The wheel is fetched with
``pip download --no-deps`` (its torch pin forbids installing it), the three state dicts are read straight from
the zip with ``torch.load(weights_only=True)`` into this file's own network definitions, and exported to ONNX:
P-Net with dynamic batch/height/width, R-Net and O-Net with a dynamic batch. The weights are never committed;
``make setup`` runs this when the bundle is missing.

    python export/detector_bundle.py --out models/mtcnn
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

WHEEL_REQUIREMENT = "facenet-pytorch==2.6.0"
WHEEL_NAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
OPSET = 17


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2; face probability + box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / non-face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(image)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    """Refine net on 24x24 candidates."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(image)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The converted weights expect the original (Caffe, column-major) flattening order: N, W, H, C.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    """Output net on 48x48 candidates: probability, box offsets and 5 landmarks (x1..x5, y1..y5 in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(image)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


# name -> (network, input side (None: dynamic), output names, dynamic axes)
NETWORKS = {
    "pnet": (PNet, None, ["prob", "reg"], {"image": {0: "batch", 2: "height", 3: "width"}}),
    "rnet": (RNet, 24, ["prob", "reg"], {"image": {0: "batch"}}),
    "onet": (ONet, 48, ["prob", "reg", "landmarks"], {"image": {0: "batch"}}),
}


def fetch_wheel(cache: Path) -> Path:
    wheel = cache / WHEEL_NAME
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"downloading {WHEEL_REQUIREMENT} (weights only, --no-deps) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_REQUIREMENT,
                        "-d", str(cache)], check=True)
    if not wheel.is_file():
        raise FileNotFoundError(f"pip did not produce {wheel}")
    return wheel


def load_networks(wheel: Path) -> dict[str, nn.Module]:
    nets = {}
    with zipfile.ZipFile(wheel) as zf:
        for name, (cls, *_rest) in NETWORKS.items():
            state = torch.load(io.BytesIO(zf.read(f"facenet_pytorch/data/{name}.pt")), weights_only=True)
            net = cls()
            net.load_state_dict(state, strict=True)
            nets[name] = net.eval()
    return nets


def check_against_torch(net: nn.Module, path: Path, side: int | None, atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - torch| over random inputs of two shapes; raises when above atol."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, h, w in ((1, side or 12, side or 12), (3, side or 57, side or 41)):
        x = torch.rand(batch, 3, h, w) * 2 - 1
        with torch.no_grad():
            expected = [t.numpy() for t in net(x)]
        got = session.run(None, {"image": x.numpy()})
        worst = max(worst, max(float(np.abs(g - e).max()) for g, e in zip(got, expected)))
    if worst > atol:
        raise RuntimeError(f"{path.name}: ONNX Runtime differs from torch by {worst:.2e} > {atol}")
    return worst


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_bundle(nets: dict[str, nn.Module], out: Path, wheel: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, net in nets.items():
        _cls, side, outputs, dynamic = NETWORKS[name]
        example = torch.zeros(2, 3, side or 31, side or 37)
        path = out / f"{name}.onnx"
        start = time.perf_counter()
        # TorchScript exporter (deprecated, still exact here): opset 17, named dynamic axes, no onnxscript.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, (example,), str(path), input_names=["image"], output_names=outputs,
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        worst = check_against_torch(net, path, side)
        print(f"  {name}: {path} ({path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - start:.1f} s, "
              f"max |onnx - torch| = {worst:.1e})")
        files[name] = {"path": path.name, "sha256": sha256(path)}
    manifest = {
        "format": "crres-bundle/1",
        "name": "mtcnn",
        "version": "facenet-pytorch-2.6.0",
        "task": "face-detection",
        "input": {"size": None, "color": "rgb", "mean": [127.5] * 3, "std": [128.0] * 3},
        "files": {"onnx": files},
        # Zhang et al. 2016 defaults, as facenet-pytorch uses them.
        "detector": {"thresholds": [0.6, 0.7, 0.7], "pyramid_factor": 0.709, "min_face": 12,
                     "cell_size": 12, "stride": 2, "rnet_size": 24, "onet_size": 48},
        "source": {"package": WHEEL_REQUIREMENT, "wheel_sha256": sha256(wheel), "licence": "MIT",
                   "files": [f"facenet_pytorch/data/{n}.pt" for n in NETWORKS],
                   "converted_by": "export/detector_bundle.py", "opset": OPSET},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/mtcnn"), help="bundle folder to write")
    parser.add_argument("--wheel", type=Path, help="use this facenet-pytorch wheel instead of downloading it")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "crres-wheels",
                        help="where the downloaded wheel is kept")
    args = parser.parse_args()
    wheel = args.wheel or fetch_wheel(args.cache)
    if not wheel.is_file():
        parser.error(f"--wheel {wheel} does not exist")
    print(f"building the MTCNN bundle from {wheel.name} into {args.out}")
    export_bundle(load_networks(wheel), args.out, wheel)
    print(f"wrote {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
