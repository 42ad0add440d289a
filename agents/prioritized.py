"""Proportional prioritized replay (Schaul et al. 2016, "Prioritized Experience Replay"), as in Rainbow (Hessel et
al. 2018) and Dopamine: transition i is drawn with probability P(i) = p_i / sum_k p_k, where p_i = (x_i + eps)^alpha
and x_i is its last loss (|TD error|, or Rainbow's cross-entropy); a new transition gets the largest p seen so far.

One sum-tree leaf per (slot, env) of a FrameReplay, leaf = slot * num_envs + env, and leaf > 0 iff the transition is
valid (agents/replay.py). A leaf gets the max priority the moment its transition becomes valid: when its row's step
is filled if that step ends the window (n = 1, a terminal, a time limit), else once the later rows its n-step window
needs are written. It goes to 0 when the transition stops being valid (a frame of its stack overwritten, its slot
rewritten by the cursor) and is 0 while its row is pending; the fake autoreset transitions are never valid. So the
draws need no rejection, and P(i) is exact over the valid transitions.
"""

from __future__ import annotations

import json
import pathlib
from typing import NamedTuple

import numpy as np
import torch

from agents.replay import FrameReplay, ReplaySample


class SumTree:
    """Binary tree of sums over `capacity` leaves (Schaul et al. 2016, Appendix B.2.1), float64. Node 1 is the root,
    node i has children 2i and 2i + 1, and the leaves are nodes size..2 size - 1 (size: capacity rounded up to a
    power of two; the padding leaves stay 0). `max_priority` is the largest priority ever written (1 at the start)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.depth = (capacity - 1).bit_length()  # levels below the root
        self.size = 1 << self.depth
        self.nodes = np.zeros(2 * self.size)  # (2 size,) nodes[0] unused
        self.children = self.nodes.reshape(self.size, 2)  # (size, 2) view: row i holds nodes 2i and 2i + 1
        self.max_priority = 1.0

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    @property
    def priorities(self) -> np.ndarray:
        """(capacity,) view of the leaves."""
        return self.nodes[self.size : self.size + self.capacity]

    def update(self, index, priority) -> None:
        """Set leaves `index` (B,) to `priority` (B,) or a scalar; where an index repeats, the last write wins."""
        index = np.asarray(index, dtype=np.int64)
        priority = np.broadcast_to(np.asarray(priority, dtype=np.float64), index.shape)
        unique, last_reversed = np.unique(index[::-1], return_index=True)  # first in reverse = last written
        node = unique + self.size
        self.nodes[node] = priority[::-1][last_reversed]
        if len(priority):
            self.max_priority = max(self.max_priority, float(priority.max()))
        for _ in range(self.depth):  # recompute each ancestor from its children (no drift from adding differences)
            node = node // 2  # a repeat writes the same sum twice, which is harmless
            pair = self.children[node]  # (B, 2)
            self.nodes[node] = pair[:, 0] + pair[:, 1]

    def find(self, values) -> np.ndarray:
        """Leaf indices (B,) for `values` (B,) in [0, total): the leaf i with sum_{j<i} p_j <= value < sum_{j<=i} p_j.
        Only leaves with p > 0 are returned: a value at or past the total (float rounding) ends on the last one."""
        residual = np.array(values, dtype=np.float64)
        node = np.ones(len(residual), dtype=np.int64)
        for _ in range(self.depth):
            pair = self.children[node]  # (B, 2) the sums of the two subtrees
            go_right = (residual >= pair[:, 0]) & (pair[:, 1] > 0)  # never into an empty subtree
            residual -= pair[:, 0] * go_right
            node = 2 * node + go_right
        return node - self.size


def beta_schedule(beta0: float, step: int, total: int) -> float:
    """Importance-sampling exponent annealed linearly from beta0 at step 0 to 1 at step `total` and after (Schaul et
    al. 2016 Section 3.4: beta0 = 0.4; Dopamine's Rainbow uses 0.5)."""
    return beta0 + (1.0 - beta0) * min(1.0, step / max(total, 1))


def importance_weights(probability: np.ndarray, beta: float) -> np.ndarray:
    """w_i = (N P(i))^-beta / max_j w_j for a batch drawn with probabilities P(i) (Schaul et al. 2016 Algorithm 1,
    line 10). The max is over the batch, as in Dopamine, so the weights only scale updates down and N cancels."""
    weight = probability**-beta
    return weight / weight.max()


class PrioritizedSample(NamedTuple):
    sample: ReplaySample
    index: torch.Tensor  # (B,) int64 on the host: the leaves, for update_priorities
    weight: torch.Tensor  # (B,) float32 on the sample device: importance-sampling weights, max 1


class PrioritizedFrameReplay(FrameReplay):
    """FrameReplay drawing transitions in proportion to their priority; alpha and eps as in Rainbow (0.5, and a
    small eps so that no transition's priority reaches 0)."""

    def __init__(self, *layout, alpha: float = 0.5, eps: float = 1e-6, **options):
        """`layout` and `options`: FrameReplay's arguments (capacity, num_envs, frame_shape, ...)."""
        super().__init__(*layout, **options)
        if alpha < 0:
            raise ValueError(f"alpha {alpha} must be >= 0 (0 samples uniformly)")
        if eps <= 0:
            raise ValueError(f"eps {eps} must be > 0: a transition at priority 0 would never be drawn again")
        self.alpha, self.eps = alpha, eps
        self.tree = SumTree(self.rows * self.num_envs)

    def _refresh(self) -> None:
        """After a write: zero the new pending row (its slot may hold an overwritten transition's priority) and
        recheck the rows whose validity the write can change, so that leaf > 0 iff valid again."""
        pending, oldest, n = self.rows_written - 1, self._oldest(), self.num_envs
        windows = np.arange(max(oldest, pending - self.n_step), pending)  # windows the write may complete (or cut)
        stacks = np.arange(oldest, min(oldest + self.frame_stack - 1, pending))  # stacks that may have lost a frame
        k = np.repeat(np.union1d(windows, stacks), n)  # (K N,) absolute rows, each for every env
        env = np.tile(np.arange(n), len(k) // n)
        leaf = (k % self.rows) * n + env
        current = self.tree.priorities[leaf]
        priority = np.where(self._window(k, env)[0], np.where(current > 0, current, self.tree.max_priority), 0.0)
        pending_leaf = (pending % self.rows) * n + np.arange(n)
        self.tree.update(np.concatenate([leaf, pending_leaf]), np.concatenate([priority, np.zeros(n)]))

    def add_first(self, frames: torch.Tensor | np.ndarray) -> None:
        super().add_first(frames)
        self._refresh()

    def add(self, actions, rewards, terminated, truncated, next_frames, next_is_first) -> None:
        super().add(actions, rewards, terminated, truncated, next_frames, next_is_first)
        self._refresh()

    def sample(self, batch_size: int, generator: torch.Generator, beta: float) -> PrioritizedSample:
        """Stratified proportional draw (Schaul et al. 2016 Appendix B.2.1, as Dopamine): [0, total) split into
        batch_size equal segments, one uniform value in each, each value's leaf found in the tree."""
        total = self.tree.total
        if total <= 0:
            raise RuntimeError("PrioritizedFrameReplay.sample: no valid transition yet")
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64).numpy()  # (B,)
        leaf = self.tree.find((np.arange(batch_size) + u) * (total / batch_size))  # (B,)
        valid, sample = self._transitions(self._absolute(leaf // self.num_envs), leaf % self.num_envs)
        if not valid.all():
            raise RuntimeError("PrioritizedFrameReplay.sample: priorities out of step with the stored transitions")
        weight = importance_weights(self.tree.priorities[leaf] / total, beta).astype(np.float32)
        return PrioritizedSample(sample, torch.from_numpy(leaf), self._to_sample_device(weight))

    def update_priorities(self, index: torch.Tensor | np.ndarray, errors: torch.Tensor | np.ndarray) -> None:
        """Leaves `index` (B,) from sample() get p = (errors + eps)^alpha for their new losses `errors` (B,) >= 0
        (|TD error| or cross-entropy). A leaf that stopped being valid since the sample keeps 0; repeats: last wins."""
        index = np.asarray(torch.as_tensor(index).cpu(), dtype=np.int64)
        errors = np.asarray(torch.as_tensor(errors).detach().float().cpu(), dtype=np.float64)
        if not np.all(np.isfinite(errors) & (errors >= 0)):
            raise ValueError(f"update_priorities: errors must be finite and >= 0, got min {errors.min()}")
        still_valid = self.tree.priorities[index] > 0
        self.tree.update(index, np.where(still_valid, (errors + self.eps) ** self.alpha, 0.0))

    def save(self, folder: pathlib.Path) -> None:
        """FrameReplay's files, the leaves of the stored slots (priority.npy) and alpha, eps, max priority."""
        super().save(folder)
        stored = min(self.rows_written, self.rows)
        np.save(pathlib.Path(folder) / "priority.npy", self.tree.priorities[: stored * self.num_envs])
        meta = dict(alpha=self.alpha, eps=self.eps, max_priority=self.tree.max_priority)
        (pathlib.Path(folder) / "priority.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(
        cls, folder: pathlib.Path, device: str | torch.device = "cpu", sample_device: str | torch.device | None = None
    ) -> "PrioritizedFrameReplay":
        replay = super().load(folder, device, sample_device)
        folder = pathlib.Path(folder)
        path = folder / "priority.json"
        try:
            meta = json.loads(path.read_text())
            replay.alpha, replay.eps = float(meta["alpha"]), float(meta["eps"])
            max_priority = float(meta["max_priority"])
            path = folder / "priority.npy"
            priorities = np.load(path, allow_pickle=False)
            expected = (min(replay.rows_written, replay.rows) * replay.num_envs,)
            if priorities.shape != expected:
                raise ValueError(f"shape {priorities.shape}, expected {expected}")
            replay.tree.update(np.arange(len(priorities)), priorities)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"replay file {path} is missing or corrupt: {error}") from error
        replay.tree.max_priority = max_priority
        return replay
