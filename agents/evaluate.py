"""Evaluation episodes that report raw game scores.

A policy is any function from a batch of observations (a numpy array, as the env returns it) to a
batch of actions; where the env has illegal actions (Go), it is called as policy(obs, action_mask=mask)
with the env's `info["action_mask"]` (N, A) bool. With several envs in parallel each env plays a fixed
share of the episodes, so short episodes are not over-represented (taking the first N to finish would bias
the mean down).
A recurrent policy (one with `.recurrent = True`, agents/ppo_lstm.py) also takes `episode_starts` (N,) bool,
True where obs is the first of an episode, to reset its memory there; `act` passes it only to those.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]


def act(
    policy: Policy, obs: np.ndarray, episode_starts: np.ndarray, action_mask: np.ndarray | None = None
) -> np.ndarray:
    """policy(obs), with the env's action_mask where it has one and episode_starts for recurrent policies
    (feed-forward ones never see it). Also serves score functions (action values, probabilities)."""
    kwargs = {} if action_mask is None else {"action_mask": action_mask}
    if getattr(policy, "recurrent", False):
        kwargs["episode_starts"] = episode_starts
    return policy(obs, **kwargs)


def run_episodes(env, policy: Policy, episodes: int, seed: int) -> list[float]:
    """Play `episodes` whole games (a lost life is not an episode end) and return their raw scores."""
    quota = np.full(env.num_envs, episodes // env.num_envs)
    quota[: episodes % env.num_envs] += 1
    done = np.zeros(env.num_envs, dtype=np.int64)
    running = np.zeros(env.num_envs, dtype=np.float64)  # the autoreset step adds reward 0: no special case
    scores: list[float] = []
    obs, info = env.reset(seed=seed)
    starts = np.ones(env.num_envs, dtype=bool)  # the reset obs start episodes
    ended = np.zeros(env.num_envs, dtype=bool)  # NEXT_STEP autoreset: the step after an end returns a reset obs
    while (done < quota).any():
        obs, reward, terminated, truncated, info = env.step(act(policy, obs, starts, info.get("action_mask")))
        starts, ended = ended, terminated | truncated
        running += reward
        for i in np.flatnonzero(terminated | truncated):
            if done[i] < quota[i]:
                scores.append(float(running[i]))
            done[i] += 1
            running[i] = 0.0
    return scores


def summarize(scores: list[float]) -> dict[str, float]:
    """Mean, standard deviation, min, max and a 95% normal-approximation interval of the mean."""
    x = np.asarray(scores, dtype=np.float64)
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    half = 1.96 * std / np.sqrt(len(x)) if len(x) > 1 else 0.0
    return {
        "episodes": len(x),
        "mean": float(x.mean()),
        "std": std,
        "min": float(x.min()),
        "max": float(x.max()),
        "ci95_low": float(x.mean() - half),
        "ci95_high": float(x.mean() + half),
    }
