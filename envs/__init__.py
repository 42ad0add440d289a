"""Environments by name: every ALE game (`Pong`, `ALE/Pong-v5`), Go, and gymnasium ids: those `rl envs` lists,
any other registered id whose spaces the agents take, and `module:EnvId` (the module is imported first, which
registers the env, as `gymnasium.make` does).

`make` returns a thin vector env with gymnasium's VectorEnv conventions (see `VecEnv`), whatever
the family, so an agent's loop never branches on where its env came from.
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import Space, registry
from gymnasium.spaces import Discrete

import envs.catch  # noqa: F401  registers Catch-v0
from envs.atari import AtariEnv, atari_games
from envs.gym_envs import GYM_ENVS, RENAMED, GymEnv, gym_family, space_problem

# Go on N x N boards (envs/go): batched torch rules, self-play or against an opponent.
GO_ENVS: dict[str, str] = {
    f"Go{n}": f"Go {n}x{n}, Tromp-Taylor rules, positional superko; {n * n + 1} actions (last = pass)"
    for n in (5, 7, 9, 19)
}

__all__ = ["EnvNameError", "VecEnv", "canonical_name", "family", "known_envs", "make", "short_name"]


class EnvNameError(ValueError):
    """An env name that `rl` does not know; the message is one line with the nearest names."""


class VecEnv(Protocol):
    """What `make` returns (contract).

    NEXT_STEP autoreset: the step after an episode ends returns the reset obs, reward 0 and
    terminated = truncated = False, ignoring its action. `step` returns obs (N, *obs_shape),
    reward float32 (N,) as raw game score, terminated and truncated bool (N,), and an info dict
    that always holds `life_lost` bool (N,). `frame_stack` is 4 for Atari (obs[:, -1] is the
    newest frame) and 1 otherwise (the obs is the frame).
    """

    num_envs: int
    single_observation_space: Space
    single_action_space: Discrete
    observation_space: Space
    action_space: Space
    frame_stack: int
    name: str
    family: str

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]: ...

    def close(self) -> None: ...


def _atari_id(game: str) -> str:
    return f"ALE/{game}-v5"


@cache
def _atari_lookup() -> dict[str, str]:
    """Lower-cased short name or full id -> short name: Atari names are case-insensitive."""
    games = atari_games()
    return {key.lower(): game for game in games for key in (game, _atari_id(game))}


def _unknown(name: str) -> EnvNameError:
    if name in RENAMED:
        return EnvNameError(f"unknown env {name!r}: gymnasium 1.4 renamed it {RENAMED[name]} (same dynamics)")
    # Match case-insensitively over short names and full ids; list each game once, in the form
    # that matched ("Pongg" -> Pong, "ALE/Pongg-v5" -> ALE/Pong-v5).
    spellings = {n.lower(): (n, n) for n in [*GYM_ENVS, *GO_ENVS]}  # lower-cased -> (spelling, env)
    for game in atari_games():
        spellings |= {game.lower(): (game, game), _atari_id(game).lower(): (_atari_id(game), game)}
    near: dict[str, str] = {}  # env -> spelling shown, closest first
    for match in difflib.get_close_matches(name.lower(), spellings, n=6):
        spelling, env = spellings[match]
        near.setdefault(env, spelling)
    near_names = list(near.values())[:3]
    # A registered id we leave out (old ALE versions).
    problem = f"env {name!r} is not supported" if name in registry else f"unknown env {name!r}"
    hint = f": did you mean {', '.join(near_names)}?" if near_names else ""
    return EnvNameError(f"{problem}{hint} (`rl envs` lists them)")


@cache
def _check_gym_id(name: str) -> None:
    """A registered gymnasium id beyond GYM_ENVS: import its module (`module:EnvId`), make it once, check its spaces."""
    module, _, env_id = name.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise EnvNameError(f"env {name!r}: cannot import module {module!r} ({error})") from None
        if env_id not in registry:
            raise EnvNameError(f"env {name!r}: importing {module!r} registered no gymnasium id {env_id!r}")
    try:
        env = gym.make(name)
    except Exception as error:  # the env's own constructor: any error, reported in one line
        raise EnvNameError(f"env {name!r} cannot be made: {type(error).__name__}: {error}") from None
    problem = space_problem(env.observation_space, env.action_space)
    env.close()
    if problem:
        raise EnvNameError(f"env {name!r} is not supported: {problem}")


def _is_ale(name: str) -> bool:
    """Ids ale-py registers beside ALE/<Game>-v5 (Pong-v4, PongNoFrameskip-v4): `rl` names those games Pong etc."""
    return str(registry[name].entry_point).startswith("ale_py")


def canonical_name(name: str) -> str:
    """The full id: Pong, pong, ALE/Pong-v5 -> ALE/Pong-v5 (Atari names ignore case).

    Gymnasium ids must match exactly, as gymnasium itself requires: Cartpole-v1 is an error
    that suggests CartPole-v1. Other registered ids, and `module:EnvId`, are made once to check
    their spaces (envs.gym_envs.space_problem).
    """
    if name in GYM_ENVS:
        return name
    go = {n.lower(): n for n in GO_ENVS}.get(name.lower())
    if go is not None:
        return go
    game = _atari_lookup().get(name.lower())
    if game is not None:
        return _atari_id(game)
    if ":" in name or (name in registry and name not in RENAMED and not _is_ale(name)):
        _check_gym_id(name)
        return name
    raise _unknown(name)


def short_name(name: str) -> str:
    """The name for run folders: "ALE/Pong-v5" -> "Pong", "CartPole-v1" -> "CartPole-v1",
    "mypkg.envs:MyGame-v2" -> "MyGame-v2", "Ns/Game-v1" -> "Ns-Game-v1"."""
    name = canonical_name(name)
    if name.startswith("ALE/"):
        return _atari_lookup()[name.lower()]
    return name.split(":")[-1].replace("/", "-")


def family(name: str) -> str:
    """The config family: atari for every ALE game, else the id lower-cased without version/size.

    Used to find `configs/<algo>/<family>.yaml`, so FrozenLake-v1 and FrozenLake8x8-v1 share one.
    """
    name = canonical_name(name)
    if name in GO_ENVS:
        return "go"
    return "atari" if name.startswith("ALE/") else gym_family(name)


def known_envs() -> list[tuple[str, str, str]]:
    """(name, family, one-line description) for `rl envs`: Atari games first, then gymnasium, then Go."""
    atari = [(game, "atari", f"Atari 2600 {_atari_id(game)}, Nature-DQN preprocessing") for game in atari_games()]
    go = [(env_id, "go", text) for env_id, text in GO_ENVS.items()]
    return atari + [(env_id, gym_family(env_id), text) for env_id, text in GYM_ENVS.items()] + go


def make(name: str, num_envs: int = 1, seed: int = 0, **options: Any) -> VecEnv:
    """`num_envs` copies of env `name`; `options` go to AtariVectorEnv, `gym.make` or GoEnv (Go: against
    the random player unless `opponent` says otherwise; `opponent=None` is two-player self-play).

    `seed` seeds `action_space` and the first `reset()` called without a seed; env i of the batch
    gets seed + i.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}")
    name = canonical_name(name)
    if name in GO_ENVS:
        from envs.go.env import GoEnv  # torch is imported only when a Go env is made

        # A single-agent task like every other name here: the agent plays Black against the random player.
        # Two-player self-play is GoEnv(opponent=None), which single-agent learners must not be given.
        return GoEnv(int(name[2:]), num_envs, seed, **{"opponent": "random", **options})
    if name.startswith("ALE/"):
        return AtariEnv(short_name(name), num_envs, seed, **options)
    return GymEnv(name, num_envs, seed, **options)
