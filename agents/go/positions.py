"""The replay of expert iteration (agents/alphazero.py): the most recent self-play positions in a ring buffer, and
the batches drawn from it, each shown under a random one of the board's 8 symmetries (envs/go/symmetry.py).

A position is stored as its last k boards and the colour to move (the network's planes are rebuilt per batch, as
GoEnv builds them), with its policy target (the root's visit distribution) and value target (the game's result from
the mover's view). Checkpoints keep it as .npy files (np.load without pickle), so --resume continues exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from agents.go.selfplay import Positions
from envs.go import symmetry
from envs.go.env import observation_planes

_ARRAYS = ("boards", "turn", "policy", "value")


def augment(planes: torch.Tensor, policy: torch.Tensor, g: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Image g[b] of each position: planes (B, C, N, N) and their policy (B, N*N+1) moved alike, so that the
    probability of a point goes with the stone pattern around it (pass stays last)."""
    return symmetry.transform(planes, g, size), symmetry.transform(policy, g, size)


class PositionReplay:
    """The last `capacity` positions (oldest overwritten first)."""

    def __init__(self, capacity: int, history: int, size: int):
        self.capacity, self.size, self.added = capacity, size, 0
        A = size * size
        self.boards = np.zeros((capacity, history, A), np.int8)
        self.turn = np.zeros(capacity, np.int8)
        self.policy = np.zeros((capacity, A + 1), np.float32)
        self.value = np.zeros(capacity, np.float32)

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    def add(self, positions: Positions) -> None:
        slots = (self.added + np.arange(len(positions.turn))) % self.capacity
        for name in _ARRAYS:
            getattr(self, name)[slots] = getattr(positions, name)
        self.added += len(positions.turn)

    def sample(
        self, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """batch_size positions drawn uniformly (with replacement), each under a random symmetry: planes
        (B, 2k+1, N, N) float32, policy (B, N*N+1), value (B,), on `device`."""
        rows = torch.randint(len(self), (batch_size,), generator=generator).numpy()
        g = torch.randint(symmetry.COUNT, (batch_size,), generator=generator)
        planes = torch.from_numpy(
            observation_planes(torch.from_numpy(self.boards[rows]), torch.from_numpy(self.turn[rows]), self.size)
        )
        planes, policy = augment(planes, torch.from_numpy(self.policy[rows]), g, self.size)
        return planes.to(device), policy.to(device), torch.from_numpy(self.value[rows]).to(device)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name)[: len(self)])
        (folder / "meta.json").write_text(json.dumps({"added": self.added, "capacity": self.capacity}))

    def load(self, folder: Path) -> None:
        """This replay's contents from `folder` (save's); a ValueError names a missing, corrupt or mis-shaped file."""
        try:
            meta = json.loads((folder / "meta.json").read_text())
            stored = min(int(meta["added"]), int(meta["capacity"]))
            if meta["capacity"] != self.capacity:
                raise ValueError(f"capacity {meta['capacity']}, this run's buffer_size is {self.capacity}")
            for name in _ARRAYS:
                array = np.load(folder / f"{name}.npy", allow_pickle=False)
                target = getattr(self, name)
                if array.shape != (stored, *target.shape[1:]):
                    raise ValueError(f"{name}.npy has shape {array.shape}, expected {(stored, *target.shape[1:])}")
                target[:stored] = array
        except (OSError, KeyError, TypeError) as error:
            raise ValueError(f"replay in {folder} is missing or corrupt: {error}") from None
        self.added = int(meta["added"])
