"""Catch from pixels: a test game that an agent with a broken frame stack cannot learn.

After bsuite's Catch (Osband et al. 2020), changed so that the frame stack matters: the ball falls one
row per step *and* moves one column left or right (bouncing off the walls), so one frame shows where
the ball is but not where it goes. The action is the column the paddle stands in when the ball
reaches the bottom row (only the last step's action counts): +1 if the ball lands on it, else -1.
The paddle is not drawn: a paddle the agent moves is a memory it can write into, and an agent that
sees a single frame would learn to remember the ball's direction in where it left its paddle.

An agent that sees the stack of the last frames can catch every ball (return +1). An agent that
sees only the newest frame must guess the ball's direction at the last step, except at a wall, and
catches 2/3 of them at best (return 1/3). The frames are drawn like Atari's after preprocessing:
uint8 grey images, stacked channel-first, oldest first, zeros before the first frame of a game
(gymnasium's FrameStackObservation with zero padding).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Discrete
from gymnasium.wrappers import FrameStackObservation

ROWS, COLUMNS = 6, 6  # the ball needs ROWS - 1 = 5 steps to fall
CELL = 6  # pixels per cell side: 36 x 36 images, large enough for the Nature CNN (36 pixels at least)


class Catch(gym.Env):
    """One game of Catch as single uint8 frames (ROWS * CELL, COLUMNS * CELL); action c: the paddle in column c."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = Box(0, 255, (ROWS * CELL, COLUMNS * CELL), np.uint8)
        self.action_space = Discrete(COLUMNS)
        self.render_mode = render_mode
        self.ball = np.zeros(2, dtype=np.int64)  # (row, column)
        self.ball_dx = 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.ball[:] = 0, self.np_random.integers(COLUMNS)
        self.ball_dx = int(self.np_random.choice([-1, 1]))
        return self._frame(), {}

    def step(self, action: int):
        column = self.ball[1] + self.ball_dx
        if not 0 <= column < COLUMNS:  # bounce off the wall
            self.ball_dx = -self.ball_dx
            column = self.ball[1] + self.ball_dx
        self.ball[:] = self.ball[0] + 1, column
        terminated = bool(self.ball[0] == ROWS - 1)
        reward = (1.0 if self.ball[1] == int(action) else -1.0) if terminated else 0.0
        return self._frame(), reward, terminated, False, {}

    def _frame(self) -> np.ndarray:
        grid = np.zeros((ROWS, COLUMNS), dtype=np.uint8)
        grid[self.ball[0], self.ball[1]] = 255
        return np.kron(grid, np.ones((CELL, CELL), dtype=np.uint8))  # each cell as CELL x CELL pixels

    def render(self) -> np.ndarray:
        return np.repeat(self._frame()[..., None], 3, axis=2)  # (H, W, 3) for videos


def make_catch(stack_size: int = 4, render_mode: str | None = None) -> gym.Env:
    """Catch with its last `stack_size` frames stacked channel-first, as the Atari envs give them."""
    return FrameStackObservation(Catch(render_mode), stack_size, padding_type="zero")


gym.register("Catch-v0", entry_point=make_catch, max_episode_steps=ROWS)  # never reached: games end at ROWS - 1
