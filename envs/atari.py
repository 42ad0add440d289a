"""Atari 2600 games through ale-py's C++ vector env, with the Nature-DQN protocol.

`AtariVectorEnv` does the whole Nature preprocessing (Mnih et al. 2015, "Methods": 84x84 gray,
frame skip 4 with a max over the last two frames, stack of 4, up to 30 no-ops at reset) in C++
threads, so no Python wrapper touches a frame. We add only what the agents need on top: raw
float32 rewards and a per-env `life_lost` flag (see `AtariEnv.step`).
"""

from __future__ import annotations

import difflib
import os
from functools import cache
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import roms
from ale_py.registration import rom_id_to_name
from ale_py.vector_env import AtariVectorEnv
from gymnasium.vector import AutoresetMode, VectorWrapper

gym.register_envs(ale_py)  # registers the ALE/*-v5 ids that `atari_games` reads

# The Nature-DQN settings, named as AtariVectorEnv names them; each can be overridden by keyword.
NATURE_OPTIONS: dict[str, Any] = dict(
    img_height=84,
    img_width=84,
    grayscale=True,
    stack_num=4,
    frameskip=4,
    maxpool=True,
    noop_max=30,
    use_fire_reset=True,
    # Raw game scores are logged; the agent clips rewards itself (NOTES: "raw game scores").
    reward_clipping=False,
    # A lost life must not reset the game, or every "score" is a one-life score (NOTES: Pitfall).
    episodic_life=False,
    repeat_action_probability=0.0,
    full_action_space=False,
    max_num_frames_per_episode=108_000,  # 30 minutes of play, the usual evaluation cap
    num_threads=0,  # 0: min(num_envs, cores); ALE's own default of one per core oversubscribes small runs
    thread_affinity_offset=-1,
)


@cache
def atari_games() -> dict[str, str]:
    """Short CamelCase name -> ALE ROM id, e.g. "MsPacman" -> "ms_pacman".

    Only ROMs that ale-py registers as `ALE/<Name>-v5`: the multi-player-only ROMs (Combat, Joust,
    MazeCraze, Warlords) have no single-player mode and abort the process in AtariVectorEnv.
    """
    names = {rom_id_to_name(rom): rom for rom in roms.get_all_rom_ids()}
    return {name: rom for name, rom in sorted(names.items()) if f"ALE/{name}-v5" in gym.registry}


class AtariEnv(VectorWrapper):
    """`num_envs` synchronous Atari games with NEXT_STEP autoreset and a `life_lost` flag.

    Observations are uint8 (N, 4, 84, 84) with obs[:, -1] the newest frame; after a reset the
    stack is [0, 0, 0, first frame]. Rewards are raw game scores as float32.
    """

    def __init__(self, game: str, num_envs: int = 1, seed: int = 0, **options: Any):
        unknown = sorted(set(options) - set(NATURE_OPTIONS))
        if unknown:
            near = difflib.get_close_matches(unknown[0], NATURE_OPTIONS, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise TypeError(f"unknown Atari option {unknown[0]!r}{hint}; valid: {', '.join(NATURE_OPTIONS)}")
        settings = {**NATURE_OPTIONS, **options}
        if settings["num_threads"] == 0:  # threads beyond the env count only contend with torch's
            settings["num_threads"] = min(num_envs, os.cpu_count() or 1)
        super().__init__(
            AtariVectorEnv(
                atari_games()[game],
                num_envs,
                batch_size=num_envs,  # synchronous: every step returns all envs in order
                autoreset_mode=AutoresetMode.NEXT_STEP,
                **settings,
            )
        )
        self.name = f"ALE/{game}-v5"
        self.family = "atari"
        self.frame_stack: int = settings["stack_num"]
        self.action_space.seed(seed)
        self._seed: int | None = seed  # the first reset without a seed uses make's seed
        self._lives = np.zeros(num_envs, dtype=np.int32)
        self._autoresetting = np.zeros(num_envs, dtype=bool)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Resets every game; env i is seeded with seed + i (ALE's convention)."""
        seed = self._seed if seed is None else seed
        self._seed = None
        obs, info = self.env.reset(seed=None if seed is None else int(seed))
        self._lives = info["lives"].copy()
        self._autoresetting[:] = False
        info["life_lost"] = np.zeros(self.num_envs, dtype=bool)
        return obs, info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Steps every game. `info["life_lost"][i]`: env i lost a life and its game goes on.

        Agents treat a life loss as terminal for the TD target only (Nature protocol, NOTES), so
        the game is never reset for it. At the autoreset step that follows a game's end the lives
        counter jumps back up and nothing was lost.
        """
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions, dtype=np.int64))
        lives = info["lives"]
        game_over = terminated | truncated
        info["life_lost"] = (lives < self._lives) & ~game_over & ~self._autoresetting
        self._lives = lives.copy()
        self._autoresetting = game_over
        return obs, reward.astype(np.float32), terminated, truncated, info
