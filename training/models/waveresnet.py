"""WaveResNet of Lu & Ebrahimi (lu2023_waveresnet_kd, Sec. II-B, Fig. 1).

"Adapted from ResNet by replacing the pooling and stride convolution layers with a low-pass
filter based on Discrete Wavelet Transform": every stride-2 convolution becomes a stride-1
convolution followed by the Haar LL filter with stride 2 (``training.wavelet.haar_ll``).
The paper does not name the depth; its teacher is "ResNet" with "the same amount of
parameters" trained with ArcFace on 112x112 MS1M (Sec. II-C-1, III-A), so we build the student
on the same IResNet as the teacher (``iresnetNN``): identical parameter count and identical
stage shapes, which the stage-1/2 wavelet similarity loss (eq. 3) needs. IResNet has no
max-pooling (stride-1 stem), so the strided convolutions are the only layers replaced.

Only the depths 18 and 50 are registered (to keep the per-model test suite short); any other
depth is ``get_model("iresnet34", wavelet=True)`` / ``get_model("iresnet100", wavelet=True)``.
"""

from __future__ import annotations

from training.models.iresnet import IResNet
from training.models.registry import register_model


@register_model
def waveresnet18(**kwargs) -> IResNet:
    return IResNet((2, 2, 2, 2), wavelet=True, **kwargs)


@register_model
def waveresnet50(**kwargs) -> IResNet:
    return IResNet((3, 4, 14, 3), wavelet=True, **kwargs)

