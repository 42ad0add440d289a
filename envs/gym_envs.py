"""Gymnasium classic-control and toy-text envs behind the same vector interface as Atari.

Toy-text states are integers; agents with an MLP want vectors, so each state becomes a float32
one-hot (gymnasium's FlattenObservation flattens a Discrete space to one-hot). Each env keeps
its own TimeLimit, which reports truncation, not termination.
"""

from __future__ import annotations

import importlib.util
import re
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Discrete
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorWrapper
from gymnasium.wrappers import DtypeObservation, FlattenObservation, FrameStackObservation

# The ids we support, each with its line for `rl envs`: discrete actions only, so no Pendulum-v1.
GYM_ENVS: dict[str, str] = {
    "CartPole-v1": "classic control: balance a pole on a cart; 2 actions, 500 steps",
    "Acrobot-v1": "classic control: swing a two-link arm above a line; 3 actions, 500 steps",
    "MountainCar-v0": "classic control: drive an underpowered car up a hill; 3 actions, 200 steps",
    "FrozenLake-v1": "toy text: cross a slippery 4x4 frozen lake; 16 states, 4 actions",
    "FrozenLake8x8-v1": "toy text: cross a slippery 8x8 frozen lake; 64 states, 4 actions",
    "Taxi-v4": "toy text: pick up and drop off a passenger; 500 states, 6 actions",
    "CliffWalking-v1": "toy text: walk to the goal along a cliff edge; 48 states, 4 actions",
    "CartPoleNoVel-v1": "memory: CartPole-v1 seeing only cart position and pole angle (velocities hidden)",
    "Catch-v0": "pixels: say where a ball falling diagonally lands; 4 stacked 36x36 frames, 6 actions, 5 steps",
}
# Partially observed variants (rl-baselines3-zoo's names): id -> (gymnasium id, observation indices kept).
# CartPole's observation is [x, x_dot, theta, theta_dot]: without the velocities one frame cannot tell
# which way the pole falls, so a policy needs memory (an LSTM) or frame stacking.
MASKED: dict[str, tuple[str, tuple[int, ...]]] = {"CartPoleNoVel-v1": ("CartPole-v1", (0, 2))}
# LunarLander needs Box2D: `pip install "gymnasium[box2d]"`.
if importlib.util.find_spec("Box2D") is not None:
    GYM_ENVS["LunarLander-v3"] = "Box2D: land a lander on the pad; 4 actions, 1000 steps"

# gymnasium 1.4 refuses the old ids of these (NOTES); the dynamics are the same.
RENAMED: dict[str, str] = {"Taxi-v3": "Taxi-v4", "CliffWalking-v0": "CliffWalking-v1"}


def gym_family(env_id: str) -> str:
    """The id lower-cased without module, namespace, version or map size: "FrozenLake8x8-v1" -> "frozenlake",
    "mypkg.envs:MyGame-v2" -> "mygame"."""
    return re.sub(r"(\d+x\d+)?-v\d+$", "", env_id.split(":")[-1].split("/")[-1]).lower()


def space_problem(observation_space: gym.Space, action_space: gym.Space) -> str | None:
    """Why the agents cannot use these spaces, or None. They take Discrete actions, and observations that
    are vectors (Box of rank 1, or Discrete states as one-hot: the MLP path) or uint8 images stacked
    channel-first (C, H, W) like the Atari frames (the CNN path)."""
    supported = (
        "rl supports Discrete actions with vector observations (Box of rank 1 or Discrete) or uint8 images "
        "(C, H, W), channel-first as stacked Atari frames"
    )
    if not isinstance(action_space, Discrete):
        return f"actions are {action_space}: {supported}"
    if isinstance(observation_space, Discrete):
        return None
    if isinstance(observation_space, Box) and len(observation_space.shape) == 1:
        return None
    if isinstance(observation_space, Box) and len(observation_space.shape) == 3 and observation_space.dtype == np.uint8:
        channels, height, width = observation_space.shape
        if channels < min(height, width):
            return None
        return f"observations {observation_space.shape} look channel-last (H, W, C): {supported}"
    return f"observations are {observation_space}: {supported}"


class KeepObservation(gym.ObservationWrapper):
    """Show the agent only some entries of a Box observation (the others are hidden, not zeroed)."""

    def __init__(self, env: gym.Env, keep: tuple[int, ...]):
        super().__init__(env)
        self.keep = np.asarray(keep)
        space = env.observation_space
        self.observation_space = Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep]


def make_one(env_id: str, options: dict[str, Any]) -> gym.Env:
    base_id, keep = MASKED.get(env_id, (env_id, None))
    env = gym.make(base_id, **options)
    if keep is not None:
        env = KeepObservation(env, keep)
    if isinstance(env.observation_space, Discrete):
        env = FlattenObservation(env)  # state s -> one-hot of length n
    if _is_image(env.observation_space):
        return env  # uint8 frames, as the replay stores and the CNN encoders read them
    return DtypeObservation(env, np.float32)


def _is_image(space: gym.Space) -> bool:
    return isinstance(space, Box) and len(space.shape) == 3 and space.dtype == np.uint8


def zero_padded_stack(env: gym.Env) -> int:
    """The stack size when `env` stacks frames as Atari does (FrameStackObservation padding with zeros), else 1.
    The frame-once replay rebuilds such stacks from single frames; any other observation it stores whole."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, FrameStackObservation):
            zero = np.zeros_like(env.env.observation_space.sample())
            return env.stack_size if np.array_equal(env.padding_value, zero) else 1
        env = env.env
    return 1


class GymEnv(VectorWrapper):
    """`num_envs` copies of a gymnasium env in one process, NEXT_STEP autoreset."""

    def __init__(self, env_id: str, num_envs: int = 1, seed: int = 0, **options: Any):
        # Build one env eagerly so a bad option raises here, naming the keyword, not in a thunk.
        first = make_one(env_id, options)
        envs = [lambda: first] + [partial(make_one, env_id, options) for _ in range(num_envs - 1)]
        super().__init__(SyncVectorEnv(envs, autoreset_mode=AutoresetMode.NEXT_STEP))
        self.name = env_id
        self.family = gym_family(env_id)
        self.frame_stack = zero_padded_stack(first)  # obs[:, -1] is the newest frame when > 1
        self.action_space.seed(seed)
        self._seed: int | None = seed  # the first reset without a seed uses make's seed

    @property
    def unwrapped_envs(self) -> list[gym.Env]:
        """The bare envs, e.g. for the toy-text transition model `unwrapped_envs[0].P`."""
        return [env.unwrapped for env in self.env.envs]

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets every env; env i is seeded with seed + i (gymnasium's convention)."""
        seed = self._seed if seed is None else seed
        self._seed = None
        obs, info = self.env.reset(seed=None if seed is None else int(seed))
        info["life_lost"] = np.zeros(self.num_envs, dtype=bool)
        return obs, info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every env; `life_lost` is always False (no lives here), rewards float32."""
        actions = np.asarray(actions, dtype=np.int64)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        info["life_lost"] = np.zeros(self.num_envs, dtype=bool)
        return obs, reward.astype(np.float32), terminated, truncated, info
