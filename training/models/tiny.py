"""``tiny_test_net``: a few-thousand-parameter network for fast CPU tests of the training loop.

Not a face model - never train a deliverable with it. Four stride-2 conv-BN-PReLU stages (so it
honours the registry contract: stage k at stride 2^k, ``return_stages``), then Linear -> BN1d.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.models.registry import register_model


class TinyTestNet(nn.Module):
    def __init__(self, num_features: int = 32, width: int = 8, input_size: int = 112,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {input_size}")
        self.input_size = input_size
        self.embedding_dim = num_features
        chans = [3, width, width * 2, width * 2, width * 4]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1, bias=False),
                          nn.BatchNorm2d(chans[i + 1]), nn.PReLU(chans[i + 1]))
            for i in range(4))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(chans[-1] * (input_size // 16) ** 2, num_features)
        self.bn = nn.BatchNorm1d(num_features)

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        stages = []
        for stage in self.stages:
            x = stage(x)
            stages.append(x)
        emb = self.bn(self.fc(self.dropout(torch.flatten(x, 1))))
        return (emb, stages) if return_stages else emb


@register_model
def tiny_test_net(**kwargs) -> TinyTestNet:
    return TinyTestNet(**kwargs)
