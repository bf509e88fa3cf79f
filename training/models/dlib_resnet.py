"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network of dlib's ``dnn_face_recognition_ex.cpp`` (``anet_type``), layer for layer, so the public-domain
(CC0 1.0) weights that dlib's author trained on ~3M faces load unchanged (``training/dlib_serialization.py``):

* input: a 150x150 RGB chip, ``(pixel - mean_rgb) / 256`` (``input_rgb_image_sized<150>``);
* stem: conv 7x7/2 (32, no padding) -> affine -> ReLU -> max-pool 3x3/2 (no padding);
* five levels of residual blocks (conv 3x3 -> affine -> ReLU -> conv 3x3 -> affine, + shortcut, ReLU):
  3 x 32, 4 x 64, 3 x 128, 3 x 256, 1 x 256; the first block of every level but the first downsamples with
  a stride-2 unpadded conv while its shortcut is a 2x2/2 average pool. dlib's ``add_prev`` adds tensors of
  different shapes by zero-padding each to the larger size (channels 32 -> 64, and 3x3 + 4x4 at the 256 level);
* global average pool -> fully connected 256 -> 128, no bias. 29 convolutions in all.

``affine`` is dlib's inference form of batch normalisation (a per-channel scale and shift); it stays a learnable
scale and shift when fine-tuning, which keeps small CPU batches free of batch-statistics noise.

``dlib_resnet`` (registered) is what training, evaluation and export use: it takes the project's canonical
input (the 112x112 ArcFace-template crop, RGB, ``(x - 127.5) / 128``) and maps it into dlib's chip with one
fixed similarity transform (``CHIP_FROM_TEMPLATE``), so data, degradation ("resolution r" in template pixels),
the SDK's alignment and INT8 calibration stay exactly as for every other model. ``DlibResNet`` alone takes
dlib's own 150x150 chips and is what the parity test compares with dlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from crres_sdk.preprocess import TEMPLATE_SIZE
from training.dlib_serialization import (DlibFormatError, DlibNetwork, affine_weights, conv_weights, fc_weights,
                                         read_network_file)
from training.models.registry import register_model

CHIP_SIZE = 150
#: dlib's input_rgb_image mean (the .dat file stores the same values; the reader checks them).
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
#: (channels, blocks) per level, from the input outwards; every level after the first starts by downsampling.
LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))

#: 2x3 similarity from 112 ArcFace-template pixels to dlib 150-chip pixels (pixel centres at integers), fitted by
#: ``training/experiments/dlib_chip_geometry.py`` from dlib's own 5-point landmarks and chip definition
#: (``get_face_chip_details(shape, 150, 0.25)``) on 388 aligned CelebA training crops, never LFW
#: (docs/results/dlib_chip_geometry.json). Scale 1.466, rotation 0.36 deg; the chip's bottom 17 rows (the chin)
#: lie below the 112 crop and are filled with dlib's mean colour.
CHIP_FROM_TEMPLATE = np.array([[1.465996, -0.009127, -7.008389],
                               [0.009127, 1.465996, -31.817866]], dtype=np.float64)


class Affine(nn.Module):
    """dlib's ``affine_`` in CONV_MODE: y = gamma[c] * x + beta[c]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib ``add_prev``: the sum over the larger shape, each input zero-padded at the end of every axis."""
    if a.shape[1:] == b.shape[1:]:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class DlibBlock(nn.Module):
    """``ares`` / ``ares_down``: relu(block(x) + shortcut(x)), block = conv-affine-relu-conv-affine."""

    def __init__(self, in_channels: int, channels: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=0 if downsample else 1)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.affine2 = Affine(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_zero_padded(out, shortcut))


class DlibResNet(nn.Module):
    """The network on dlib's 150x150 chip; input already ``(pixel - mean_rgb) / 256``, RGB."""

    def __init__(self, embedding_dim: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.affine1 = Affine(32)
        levels = []
        in_channels = 32
        for i, (channels, blocks) in enumerate(LEVELS):
            level = [DlibBlock(in_channels, channels, downsample=i > 0)]
            level += [DlibBlock(channels, channels, downsample=False) for _ in range(blocks - 1)]
            levels.append(nn.Sequential(*level))
            in_channels = channels
        self.levels = nn.ModuleList(levels)
        self.fc = nn.Linear(in_channels, embedding_dim, bias=False)

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        x = F.max_pool2d(F.relu(self.affine1(self.conv1(x))), 3, 2)
        stages = []
        for level in self.levels:
            x = level(x)
            stages.append(x)
        emb = self.fc(x.mean(dim=(2, 3)))
        # Stages at strides 4, 8, 16, 32 of the chip (the last, 1-block level is the embedding's input).
        return (emb, stages[:4]) if return_stages else emb

    def modules_in_dlib_order(self) -> list[tuple[str, nn.Module]]:
        """(kind, module) in the order dlib stores layers that carry weights: stem, then per block."""
        order: list[tuple[str, nn.Module]] = [("con", self.conv1), ("affine", self.affine1)]
        for level in self.levels:
            for block in level:
                order += [("con", block.conv1), ("affine", block.affine1),
                          ("con", block.conv2), ("affine", block.affine2)]
        order.append(("fc", self.fc))
        return order

    def load_dlib(self, net: DlibNetwork) -> "DlibResNet":
        """Copy a parsed dlib network's weights in; shapes and the layer sequence must match exactly."""
        if net.input_size != (CHIP_SIZE, CHIP_SIZE):
            raise DlibFormatError(f"expected a {CHIP_SIZE}x{CHIP_SIZE} input layer, got {net.input_size}")
        if not np.allclose(net.input_mean_rgb, DLIB_MEAN_RGB, atol=1e-3):
            raise DlibFormatError(f"unexpected input mean {net.input_mean_rgb}")
        weighted = [layer for layer in net.layers if layer.kind in ("con", "affine", "fc")]
        targets = self.modules_in_dlib_order()
        if [layer.kind for layer in weighted] != [kind for kind, _ in targets]:
            raise DlibFormatError("the file's layer sequence is not dlib_face_recognition_resnet_model_v1's")
        with torch.no_grad():
            for layer, (kind, module) in zip(weighted, targets):
                if kind == "con":
                    weight, bias = conv_weights(layer)
                    if bias is None or weight.shape != tuple(module.weight.shape):
                        raise DlibFormatError(f"conv shape {weight.shape} != {tuple(module.weight.shape)}")
                    module.weight.copy_(torch.from_numpy(weight))
                    module.bias.copy_(torch.from_numpy(bias))
                elif kind == "affine":
                    gamma, beta = affine_weights(layer)
                    if gamma.shape != tuple(module.weight.shape):
                        raise DlibFormatError(f"affine shape {gamma.shape} != {tuple(module.weight.shape)}")
                    module.weight.copy_(torch.from_numpy(gamma))
                    module.bias.copy_(torch.from_numpy(beta))
                else:
                    matrix = fc_weights(layer)
                    if matrix.shape != tuple(module.weight.shape):
                        raise DlibFormatError(f"fc shape {matrix.shape} != {tuple(module.weight.shape)}")
                    module.weight.copy_(torch.from_numpy(matrix))
        return self


def chip_sampling_grid(chip_from_template: np.ndarray = CHIP_FROM_TEMPLATE) -> torch.Tensor:
    """``F.grid_sample`` grid (1, 150, 150, 2) that reads each chip pixel from the 112 template crop."""
    m = np.vstack([chip_from_template, [0.0, 0.0, 1.0]])
    template_from_chip = np.linalg.inv(m)[:2]
    v, u = np.meshgrid(np.arange(CHIP_SIZE, dtype=np.float64), np.arange(CHIP_SIZE, dtype=np.float64),
                       indexing="ij")
    src = np.stack([u, v, np.ones_like(u)], axis=-1) @ template_from_chip.T      # (150, 150, 2) template px
    grid = (src + 0.5) / TEMPLATE_SIZE * 2.0 - 1.0                                # align_corners=False
    return torch.from_numpy(grid[None].astype(np.float32))


class DlibResNetOnTemplate(nn.Module):
    """``dlib_resnet``: the dlib network behind the project's 112 crop contract."""

    #: Spatial sizes of ``return_stages``' four maps (on the 150 chip: strides 4, 8, 16, 32, with dlib's
    #: unpadded strided convolutions), declared because they are not the 112 input's 2**k grid.
    stage_sizes = (35, 17, 8, 4)

    def __init__(self, embedding_dim: int = 128) -> None:
        super().__init__()
        self.input_size = TEMPLATE_SIZE
        self.embedding_dim = embedding_dim
        self.net = DlibResNet(embedding_dim)
        # Project input (p - 127.5) / 128 -> dlib input (p - mean) / 256, per channel: x * 0.5 + offset.
        offset = [(127.5 - m) / 256.0 for m in DLIB_MEAN_RGB]
        self.register_buffer("input_offset", torch.tensor(offset).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("grid", chip_sampling_grid(), persistent=False)

    def load_dlib_file(self, path: str | Path) -> "DlibResNetOnTemplate":
        """Initialise from ``dlib_face_recognition_resnet_model_v1.dat`` (read without dlib)."""
        if self.embedding_dim != 128:
            raise ValueError(f"dlib's pretrained embedding is 128-d, this model's is {self.embedding_dim}")
        self.net.load_dlib(read_network_file(path))
        return self

    def to_chip(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 0.5 + self.input_offset
        grid = self.grid.expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        return self.net(self.to_chip(x), return_stages=return_stages)


@register_model
def dlib_resnet(num_features: int = 128) -> DlibResNetOnTemplate:
    """dlib's ResNet on the 112 template (random weights; recipes initialise it with ``init="dlib"``)."""
    return DlibResNetOnTemplate(num_features)
