"""AlphaGo Zero's policy and value heads on a board encoder's per-point features (PPO's heads=alphazero)."""

from __future__ import annotations

import torch
from torch import nn


class BoardHead(nn.Module):
    """AlphaGo Zero's heads (Silver et al. 2017, Methods) on a tower's per-point features (B, C, H, W): a 1x1
    convolution to `filters` planes -> batch norm -> ReLU -> linear to `out` (the policy: 2 planes, N*N+1 logits),
    or -> linear to `hidden` -> ReLU -> linear to `out` (the value: 1 plane, 256 hidden, 1 output). The 1x1
    convolution keeps each point's own features, so the linear layer reads 2*N*N numbers instead of C*N*N."""

    def __init__(self, spatial_shape: tuple[int, int, int], filters: int, out: int, hidden: int = 0):
        super().__init__()
        channels, height, width = spatial_shape
        self.conv, self.bn = nn.Conv2d(channels, filters, 1, bias=False), nn.BatchNorm2d(filters)
        inputs = filters * height * width
        self.fc = (
            nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, out))
            if hidden
            else nn.Linear(inputs, out)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(h))).flatten(1))
