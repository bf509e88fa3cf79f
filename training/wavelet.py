"""Haar discrete wavelet transform, low-pass (LL) band only.

Lu & Ebrahimi (lu2023_waveresnet_kd, Sec. II-B) define the WaveConv operation as
``x_LL = (f_LL * x) downsampled by 2``, a stride-2 convolution with the 2-D DWT low-pass
filter; the same ``f_LL`` is applied to feature maps in the wavelet similarity loss (eq. 3).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def haar_ll(x: torch.Tensor) -> torch.Tensor:
    """LL sub-band of a one-level orthonormal 2-D Haar DWT of an NCHW tensor.

    The orthonormal Haar low-pass filter is ``[1, 1] / sqrt(2)`` per axis, so the separable
    2-D filter is ``[[1, 1], [1, 1]] / 2`` applied with stride 2: ``LL = (a + b + c + d) / 2``
    for each 2x2 block, i.e. twice the 2x2 average. Expressed as ``avg_pool2d * 2`` because
    that is one ONNX op (AveragePool) that every runtime and INT8 toolchain supports.
    Odd heights/widths drop the last row/column, as a stride-2 convolution without padding does.
    """
    if x.dim() != 4:
        raise ValueError(f"haar_ll expects an NCHW tensor, got shape {tuple(x.shape)}")
    return F.avg_pool2d(x, kernel_size=2, stride=2) * 2.0


class HaarLL(nn.Module):
    """Module form of :func:`haar_ll` (the WaveConv low-pass filter, stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return haar_ll(x)
