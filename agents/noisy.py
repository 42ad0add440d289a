"""Noisy linear layers with factorised Gaussian noise (Fortunato et al. 2018, "Noisy Networks for Exploration").

y = (mu_w + sigma_w * eps_w) x + (mu_b + sigma_b * eps_b), with eps_w = f(eps_out) f(eps_in)^T and eps_b = f(eps_out),
f(x) = sign(x) sqrt(|x|), eps_in ~ N(0, I_p), eps_out ~ N(0, I_q): p + q Gaussian draws per layer instead of p * q.
The noise comes from torch's global RNG (seeded by torch.manual_seed, saved in checkpoints), so runs reproduce.
Train mode adds the noise; eval mode uses the mean weights mu only (Kaixhin's and CleanRL's Rainbow).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def signed_sqrt(x: torch.Tensor) -> torch.Tensor:
    """f(x) = sign(x) sqrt(|x|), which scales the factorised noise (Fortunato et al. 2018, section 3)."""
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """nn.Linear with learned, factorised Gaussian noise on its weights and bias. Initialisation as in the paper's
    section 3.2: mu ~ U(-1/sqrt(p), 1/sqrt(p)) and sigma = sigma0 / sqrt(p), p = in_features. The noise eps is a
    buffer outside the state_dict: reset_noise() draws a new one, and a checkpoint holds only mu and sigma."""

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound, sigma = 1 / math.sqrt(in_features), sigma0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma))
        self.register_buffer("weight_epsilon", torch.zeros(out_features, in_features), persistent=False)
        self.register_buffer("bias_epsilon", torch.zeros(out_features), persistent=False)
        self.reset_noise()

    @torch.no_grad()
    def reset_noise(self) -> None:
        """Draw eps_in, then eps_out, from torch's global CPU RNG (the state a checkpoint saves, on a GPU too)."""
        device = self.weight_mu.device
        eps_in = signed_sqrt(torch.randn(self.in_features)).to(device)  # (p,)
        eps_out = signed_sqrt(torch.randn(self.out_features)).to(device)  # (q,)
        self.weight_epsilon.copy_(torch.outer(eps_out, eps_in))  # (q, p)
        self.bias_epsilon.copy_(eps_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * self.weight_epsilon  # (q, p)
        bias = self.bias_mu + self.bias_sigma * self.bias_epsilon  # (q,)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def reset_noise(module: nn.Module) -> None:
    """New noise for every NoisyLinear in `module` (a no-op for a network without one)."""
    for m in module.modules():
        if isinstance(m, NoisyLinear):
            m.reset_noise()
