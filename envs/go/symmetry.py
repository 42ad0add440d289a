"""The 8 symmetries of the square board (the dihedral group D4) as index tables, for data augmentation.

Go's rules and its score are invariant under rotating and reflecting the board, so a position and its 8
images have the same value and corresponding best moves (AlphaGo Zero samples one at random for each network
evaluation, Silver et al. 2017). Table g maps the transformed board back to the original one:
`gather_index(size)[g][q]` is the original point shown at point q of image g (pass, N*N, maps to itself), so

    image = x[..., gather_index[g]]           # planes (..., N*N[+1]) or legal masks (..., N*N+1)
    original_action = gather_index[g][q]      # a move q chosen on the image, played on the real board.

g = 0 is the identity; g = 1..3 rotate by 90, 180, 270 degrees; g = 4..7 are those four mirrored left-right.
"""

from __future__ import annotations

from functools import cache

import torch

COUNT = 8


@cache
def _table(size: int) -> torch.Tensor:
    grid = torch.arange(size * size).view(size, size)
    images = [torch.rot90(grid, k) for k in range(4)]
    images += [torch.fliplr(image) for image in images]
    return torch.stack([torch.cat([image.reshape(-1), torch.tensor([size * size])]) for image in images])  # (8, A+1)


def gather_index(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(8, N*N+1) int64: row g holds, for each point q of image g, the original point it shows (pass last)."""
    return _table(size).to(device)


def transform(x: torch.Tensor, g: torch.Tensor, size: int) -> torch.Tensor:
    """Image g[b] of each row b of x: planes (B, C, N, N) or masks/logits/probabilities (B, N*N+1)."""
    index = gather_index(size, x.device)[g]  # (B, A+1)
    if x.dim() == 4:
        B, C = x.shape[:2]
        flat = x.reshape(B, C, size * size)
        return flat.gather(2, index[:, None, :-1].expand(B, C, -1)).view_as(x)
    return x.gather(1, index)


def original_action(action: torch.Tensor, g: torch.Tensor, size: int) -> torch.Tensor:
    """The real board's move (B,) for a move (B,) chosen on image g (B,)."""
    return gather_index(size, action.device)[g].gather(1, action.view(-1, 1)).view(-1)


@cache
def _inverse(size: int) -> torch.Tensor:
    return _table(size).argsort(1)


def inverse_index(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(8, N*N+1) int64: row g holds, for each original point p, the point of image g that shows it."""
    return _inverse(size).to(device)


class Averaged(torch.nn.Module):
    """A board network read on all 8 images of each position and averaged: test-time augmentation.

    net: planes (M, C, N, N) -> (logits (M, N*N+1), value (M,)), e.g. agents.ppo.ActorCritic. Averaged(net, N) has
    the same signature: the probabilities of the 8 images (mapped back to the real board's points) are averaged and
    returned as their log, the values averaged. The result is the same for a position and for each of its images,
    up to their point order, and costs 8 forward passes (one batch of 8M)."""

    def __init__(self, net: torch.nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, size

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        M = obs.shape[0]
        g = torch.arange(COUNT, device=obs.device).repeat_interleave(M)  # image g of row b at g*M+b
        logits, value = self.net(transform(obs.repeat(COUNT, 1, 1, 1), g, self.size))
        probs = (
            logits.float().softmax(1).gather(1, inverse_index(self.size, obs.device)[g])
        )  # on the real board's points
        probs = probs.view(COUNT, M, -1).mean(0)
        return probs.clamp_min(1e-30).log(), value.float().view(COUNT, M).mean(0)
