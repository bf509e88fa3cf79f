"""The 20-layer ResNet of Lai & Lam (lai2021_deep_siamese_cr_triplet, Sec. II-A, Fig. 2).

Sec. II-A: "we use the ResNet architecture adopted from [6]" (SphereFace, Liu et al. 2017),
"20 convolutional layers", 3x3 kernels, stride-1 convolutions inside residual units,
"downsampling is performed by the 3x3 convolutional layers with stride 2", "each convolutional
layer is followed by the PReLU", "F denotes a fully connected layer", input 128x128.
Fig. 2 itself is not in our seed text; the widths and repeats below are SphereFace-20's
(``sphereface_model.prototxt``): stages of 64/128/256/512 channels, each a stride-2 conv
followed by 1/2/4/1 residual units of two conv+PReLU, i.e. 4 + 2*(1+2+4+1) = 20 conv layers,
then FC-512. SphereFace has no batch normalisation; ``batch_norm=True`` is our optional
addition for stability, off by default to stay with the paper.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.models.registry import register_model


class SphereResidual(nn.Module):
    """x + PReLU(conv(PReLU(conv(x)))): SphereFace adds after the second PReLU."""

    def __init__(self, channels: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers.append(nn.Conv2d(channels, channels, 3, 1, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.PReLU(channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LaiResNet20(nn.Module):
    """SphereFace-20 style network; ``input_size`` 128 (paper) or 112 (our canonical crop)."""

    widths = (64, 128, 256, 512)
    repeats = (1, 2, 4, 1)

    def __init__(self, num_features: int = 512, input_size: int = 128, batch_norm: bool = False) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {input_size}")
        self.input_size = input_size
        self.embedding_dim = num_features
        stages = []
        in_c = 3
        for width, n in zip(self.widths, self.repeats):
            down: list[nn.Module] = [nn.Conv2d(in_c, width, 3, 2, 1, bias=not batch_norm)]
            if batch_norm:
                down.append(nn.BatchNorm2d(width))
            down.append(nn.PReLU(width))
            stages.append(nn.Sequential(*down, *[SphereResidual(width, batch_norm) for _ in range(n)]))
            in_c = width
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        spatial = input_size // 16
        self.fc = nn.Linear(512 * spatial * spatial, num_features)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        # SphereFace's prototxt: Xavier for the stride-2 convs and the FC, Gaussian std 0.01 for
        # convs inside residual units, so each unit starts close to the identity - this is what
        # lets the network train without batch normalisation.
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            for m in stage.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            nn.init.xavier_uniform_(stage[0].weight)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        s4 = self.stage4(s3)
        x = self.fc(torch.flatten(s4, 1))
        if return_stages:
            return x, [s1, s2, s3, s4]
        return x


@register_model
def lai_resnet20(**kwargs) -> LaiResNet20:
    return LaiResNet20(**kwargs)
