"""Network bodies shared by every agent: observation -> feature vector.

Each encoder computes its own output size from the observation shape (a dummy forward pass, as SB3's
NatureCNN does), so heads never hard-code it. Configs name them through `encoder.name`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected body for vector observations (classic control, one-hot tabular states)."""

    def __init__(self, obs_shape: tuple[int, ...], hidden_sizes: tuple[int, ...] = (120, 84)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(obs_shape)
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.net = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float())


class NatureCNN(nn.Module):
    """The convolutional body of Mnih et al. (2015): 3 conv layers + a 512-unit layer.

    Takes uint8 pixels (B, C, H, W) and scales them to [0, 1] itself, so the replay and the env keep
    uint8 (4x less memory and bandwidth than float32).
    """

    def __init__(self, obs_shape: tuple[int, ...], features_dim: int = 512):
        super().__init__()
        channels = obs_shape[0]
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *obs_shape)).shape[1]  # 3136 for (4, 84, 84)
        self.fc = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())
        self.output_dim = features_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()  # (B, 4, 84, 84)
        return self.fc(self.conv(x))  # (B, 512)


ENCODERS = {"mlp": MLP, "nature_cnn": NatureCNN}


def make_encoder(name: str, obs_shape: tuple[int, ...], hidden_sizes: tuple[int, ...] = (120, 84)) -> nn.Module:
    """Build the encoder a config names; `auto` picks NatureCNN for images (C, H, W), MLP otherwise."""
    if name == "auto":
        name = "nature_cnn" if len(obs_shape) == 3 else "mlp"
    if name == "nature_cnn":
        if len(obs_shape) != 3 or min(obs_shape[1:]) < 36:
            raise ValueError(f"encoder nature_cnn needs image observations (C, H, W) of at least 36x36, got {obs_shape}: use encoder.name=mlp")
        return NatureCNN(obs_shape)
    return MLP(obs_shape, hidden_sizes)
