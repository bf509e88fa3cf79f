"""EDSR (Lim et al., CVPR-W 2017, "Enhanced deep residual networks for single image super-resolution"), the
face-SR network of the meet-in-the-middle paper (Grm et al. 2023, Sec. 3.3: "a variant of the EDSR ...
trained exclusively on face images", x2 / x4 / x8).

Architecture as EDSR: mean shift, 3x3 head conv, ``n_resblocks`` residual blocks (conv-ReLU-conv, no batch norm,
output scaled by ``res_scale``), a 3x3 conv and a global skip, then an upsampler of log2(scale) x (conv to 4F,
PixelShuffle(2)), a 3x3 conv to RGB and the mean added back. I/O (what ``training.sr`` exports and
``crres_sdk.mitm.OnnxSuperResolver`` runs): ``(N, 3, h, w)`` float RGB in [0, 1] -> ``(N, 3, k h, k w)``,
not clamped.

Not in the face-embedding registry: that registry's contract is ``embedding_dim``/``input_size`` and an
embedding output; an SR net has neither, so it has this small factory of its own (``edsr(scale, config)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

#: (n_resblocks, n_feats, res_scale). "baseline" and "paper" are EDSR's two published sizes (Sec. 3.1/Table 1
#: of Lim et al.: 16 blocks x 64 features; 32 x 256 with residual scaling 0.1); "small" is ours, for CPU runs.
CONFIGS = {
    "baseline": (16, 64, 1.0),
    "paper": (32, 256, 0.1),
    "small": (8, 32, 1.0),
}
SCALES = (2, 4, 8)
#: EDSR's RGB mean (DIV2K), subtracted at the input and added at the output.
RGB_MEAN = (0.4488, 0.4371, 0.4040)


class ResBlock(nn.Module):
    def __init__(self, n_feats: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    def __init__(self, scale: int = 4, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        if n_resblocks < 1 or n_feats < 1:
            raise ValueError("n_resblocks and n_feats must be >= 1")
        self.scale = scale
        self.config = {"scale": scale, "n_resblocks": n_resblocks, "n_feats": n_feats, "res_scale": res_scale}
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1))
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))
        up = []
        for _ in range(int(math.log2(scale))):
            up += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2)]
        self.tail = nn.Sequential(*up, nn.Conv2d(n_feats, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x - self.mean)
        x = x + self.body(x)
        return self.tail(x) + self.mean


def edsr(scale: int = 4, config: str = "baseline", **overrides) -> EDSR:
    """An EDSR for ``scale`` in {2, 4, 8} with a named size (``CONFIGS``); keyword overrides win."""
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
    n_resblocks, n_feats, res_scale = CONFIGS[config]
    kwargs = {"n_resblocks": n_resblocks, "n_feats": n_feats, "res_scale": res_scale, **overrides}
    return EDSR(scale, **kwargs)
