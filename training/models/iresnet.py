"""IResNet-18/34/50/100 as in InsightFace ``recognition/arcface_torch/backbones/iresnet.py``.

ArcFace (Deng et al. 2019) "improved" ResNet for 112x112 aligned faces: a stride-1 3x3 stem (no
max-pool, so a 112 crop ends at 7x7 instead of 4x4), BN-Conv-BN-PReLU-Conv-BN basic blocks, and
the "E" output head BN -> Dropout -> FC -> BN producing the embedding. Knoche et al.
(knoche2022, Sec. 3.1) and Ling et al. (ling2023, Sec. 4 "Implementation Details") train this
family (ResNet-34/50 "as proposed in ArcFace"; Knoche et al. use dropout 0.5 before the FC, Sec.
3.1, so their recipe passes ``dropout=0.5``; arcface_torch's default is 0). ``wavelet=True`` turns it into the WaveResNet of
Lu & Ebrahimi (see ``waveresnet.py``), so teacher and student share every other line of code.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.models.registry import register_model
from training.wavelet import HaarLL


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style basic block: BN-Conv-BN-PReLU-Conv-BN (+ shortcut), no final ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, wavelet: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        if wavelet and stride == 2:
            # Lu & Ebrahimi Sec. II-B: the stride-2 convolution becomes a stride-1 convolution
            # followed by the Haar low-pass filter f_LL with stride 2 (WaveConv).
            self.conv2 = nn.Sequential(conv3x3(planes, planes, 1), HaarLL())
        else:
            self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """IResNet backbone; ``forward(x)`` -> embedding, ``forward(x, return_stages=True)`` adds stages."""

    def __init__(self, layers: tuple[int, int, int, int], num_features: int = 512,
                 dropout: float = 0.0, input_size: int = 112, wavelet: bool = False,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 (four stride-2 stages), got {input_size}")
        self.input_size = input_size
        self.embedding_dim = num_features
        self.wavelet = wavelet
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(64, layers[0], stride=2)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        # Not inplace (arcface_torch uses inplace=True) so the flattened stage-4 map is never
        # overwritten under autograd when callers also keep the stages.
        self.dropout = nn.Dropout(p=dropout)
        spatial = input_size // 16
        self.fc = nn.Linear(512 * spatial * spatial, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        # arcface_torch freezes the embedding BN scale at 1 (only its shift is learnt).
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)  # arcface_torch's initialisation
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.constant_(m.bn3.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            if self.wavelet and stride == 2:
                # f_LL then a 1x1 conv: both are linear, and a 1x1 conv commutes with the
                # per-channel spatial Haar filter, so this equals the strided shortcut with its
                # subsampling replaced by f_LL (Lu & Ebrahimi Sec. II-B) at 1/4 of the cost.
                downsample = nn.Sequential(HaarLL(), conv1x1(self.inplanes, planes, 1),
                                           nn.BatchNorm2d(planes, eps=1e-05))
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride),
                                           nn.BatchNorm2d(planes, eps=1e-05))
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample, wavelet=self.wavelet)]
        self.inplanes = planes
        layers += [IBasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        x = self.prelu(self.bn1(self.conv1(x)))
        s1 = self.layer1(x)
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        s4 = self.layer4(s3)
        x = self.bn2(s4)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        x = self.features(x)
        if return_stages:
            return x, [s1, s2, s3, s4]
        return x


@register_model
def iresnet18(**kwargs) -> IResNet:
    return IResNet((2, 2, 2, 2), **kwargs)


@register_model
def iresnet34(**kwargs) -> IResNet:
    return IResNet((3, 4, 6, 3), **kwargs)


@register_model
def iresnet50(**kwargs) -> IResNet:
    return IResNet((3, 4, 14, 3), **kwargs)


@register_model
def iresnet100(**kwargs) -> IResNet:
    return IResNet((3, 13, 30, 3), **kwargs)
