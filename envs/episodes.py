"""Per-env episode returns and lengths for logging `charts/episodic_return` and `_length`.

An episode is a whole game (terminated or truncated), never a single life, so Atari returns are
the raw game scores that papers report. Under NEXT_STEP autoreset the step after a game ends only
delivers the reset observation; it belongs to neither episode, so it is not counted.
"""

from __future__ import annotations

import numpy as np


class EpisodeStats:
    """Running return and length of each env's current episode."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self._autoresetting = np.zeros(num_envs, dtype=bool)

    def update(self, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> list[tuple[float, int]]:
        """Accumulate raw rewards; return (episodic_return, episodic_length) per finished episode.

        Lengths count agent steps; the autoreset step after an end (reward 0) is skipped. Finished
        episodes come in env order and their counters restart.
        """
        counted = ~self._autoresetting
        self.returns += np.where(counted, reward, 0.0)
        self.lengths += counted
        done = np.asarray(terminated) | np.asarray(truncated)
        finished = [(float(self.returns[i]), int(self.lengths[i])) for i in np.flatnonzero(done)]
        self.returns[done] = 0.0
        self.lengths[done] = 0
        self._autoresetting = done
        return finished
