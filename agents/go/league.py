"""Self-play against a league of past versions of the agent (envs/go/env.py's `Opponent`).

Playing only the current policy lets self-play chase its own tail: it learns to beat its latest self and
forgets how to beat earlier ones (cycles in strategy space). Playing a pool of frozen past versions keeps
old weaknesses punished (fictitious self-play, Heinrich et al. 2015; OpenAI Five played its latest self
80% of the time and past selves 20%, Berner et al. 2019; AlphaStar's league, Vinyals et al. 2019, is the
large version of this). Here:
- `add(agent, version)` freezes a copy of the agent into the pool (PPO adds one every
  `go.snapshot_frequency` updates); past `capacity`, the oldest member except the first leaves, so
  the very first (near-random) policy stays as an anchor;
- each new game draws its opponent: the newest member with probability `latest_prob`, the first (the initial,
  near-random policy) with probability `anchor_prob`, else one of the pool uniformly. The anchor's share keeps
  the agent playing the weak, erratic games a fixed weak opponent gives (a share of games against fixed opponents,
  as AlphaStar's league keeps); with only the uniform draw it plays the anchor in 1/capacity of the rest;
- a member plays by sampling from its own masked policy, so games vary.
The pool is saved in checkpoints (`league.<k>.*` tensors plus versions, assignments and RNG in JSON).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.checkpoint import prefixed, rng_from_json, rng_to_json, unprefixed
from agents.rollout import masked_logits, sample_actions


class League:
    """Frozen past versions of a policy network and which one plays in each env (see module doc)."""

    def __init__(
        self,
        num_envs: int,
        capacity: int,
        latest_prob: float,
        seed: int,
        device: torch.device | str = "cpu",
        anchor_prob: float = 0.0,
    ):
        if capacity < 1:
            raise ValueError(f"a league holds at least 1 member, got capacity {capacity}")
        if not (0 <= latest_prob and 0 <= anchor_prob and latest_prob + anchor_prob <= 1):
            raise ValueError(
                f"latest_prob {latest_prob} and anchor_prob {anchor_prob} must be >= 0 and sum to at most 1"
            )
        self.capacity, self.latest_prob, self.anchor_prob, self.device = (
            capacity,
            latest_prob,
            anchor_prob,
            torch.device(device),
        )
        self.members: list[nn.Module] = []
        self.versions: list[int] = []  # the update count at which each member was added
        self.assigned = np.zeros(num_envs, dtype=np.int64)  # member index playing in each env
        self.generator = torch.Generator().manual_seed(seed)
        self.games: list[int] = []  # games started against each member

    def add(self, agent: nn.Module, version: int) -> None:
        """Freeze a copy of `agent` (an ActorCritic) into the pool as `version`."""
        member = copy.deepcopy(agent).eval().requires_grad_(False)
        if len(self.members) == self.capacity:
            drop = 1 if self.capacity > 1 else 0  # the first member stays as an anchor
            del self.members[drop], self.versions[drop], self.games[drop]
            # games under way against the dropped member go on against the newest one left
            self.assigned = np.where(
                self.assigned == drop, len(self.members) - 1, self.assigned - (self.assigned > drop)
            )
        self.members.append(member)
        self.versions.append(version)
        self.games.append(0)

    def new_games(self, rows: np.ndarray) -> None:
        """Draw the opponent of each new game in envs `rows`: the newest with latest_prob, the first with anchor_prob,
        else uniform."""
        if not self.members:
            raise RuntimeError("the league is empty: add the agent before the first game")
        n = len(rows)
        u = torch.rand(n, generator=self.generator).numpy()
        uniform = torch.randint(len(self.members), (n,), generator=self.generator).numpy()
        anchor = u < self.latest_prob + self.anchor_prob
        self.assigned[rows] = np.where(u < self.latest_prob, len(self.members) - 1, np.where(anchor, 0, uniform))
        for k in self.assigned[rows]:
            self.games[k] += 1

    def __call__(self, obs: np.ndarray, action_mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each env's member samples a move from pi(.|obs) over legal moves: (len(rows),) int64."""
        actions = np.zeros(len(rows), dtype=np.int64)
        who = self.assigned[rows]
        for k in np.unique(who):
            at = np.flatnonzero(who == k)
            x = torch.as_tensor(obs[at], device=self.device)
            mask = torch.as_tensor(action_mask[at], device=self.device)
            with torch.inference_mode():
                actions[at] = (
                    sample_actions(masked_logits(self.members[k].logits(x), mask), self.generator)[0].cpu().numpy()
                )
        return actions

    # ------------------------------------------------------------------------------------ checkpoints
    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for k, member in enumerate(self.members):
            out |= prefixed(f"league.{k}", member.state_dict())
        return out

    def state(self) -> dict[str, Any]:
        return {
            "versions": self.versions,
            "assigned": self.assigned.tolist(),
            "games": self.games,
            "rng": rng_to_json(self.generator.get_state()),
        }

    def load(self, template: nn.Module, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Rebuild the pool saved by `tensors()`/`state()`; `template` is a network of the same shape."""
        self.members, self.versions = [], []
        for k, version in enumerate(state["versions"]):
            member = copy.deepcopy(template)
            member.load_state_dict(unprefixed(f"league.{k}", tensors))
            self.members.append(member.eval().requires_grad_(False))
            self.versions.append(int(version))
        if len(state["assigned"]) == len(self.assigned):
            self.assigned = np.asarray(state["assigned"], dtype=np.int64)
        self.games = [int(g) for g in state["games"]]
        self.generator.set_state(rng_from_json(state["rng"]))
