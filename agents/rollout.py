"""On-policy rollout storage and the advantage maths of policy-gradient agents, as pure functions.

Time runs along dim 0 and envs along dim 1: every (T, N) tensor holds step t of env i at [t, i].

Our envs autoreset in NEXT_STEP mode (envs/__init__.py, `VecEnv`): the step that ends an episode
returns the episode's true final obs, and the step after it returns the reset obs, reward 0, ignoring
its action. So at rollout step t:
- `terminated[t]`: s_{t+1} is terminal (or a lost life, for Atari's protocol): V(s_{t+1}) counts as 0;
- `episode_end[t]` = terminated | truncated: the trace of returns stops at t. On truncation s_{t+1}
  is the real final obs (values[t + 1], or next_value at the rollout's end) and the return
  bootstraps from its value (Pardo et al. 2018, "Time Limits in Reinforcement Learning");
- `valid[t]` is False at the autoreset step that follows an end: final obs -> reset obs is no
  transition of the MDP, so that step is left out of the loss (it is still stored, to keep the
  (T, N) layout and the bootstrap value of the truncated step before it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Rollout(NamedTuple):
    """num_steps x num_envs transitions, allocated once on the learner's device and filled in place."""

    obs: torch.Tensor  # (T, N, *obs_shape), uint8 pixels or float32 vectors
    actions: torch.Tensor  # (T, N) int64
    logprobs: torch.Tensor  # (T, N) log pi_old(a_t | s_t)
    values: torch.Tensor  # (T, N) V_old(s_t)
    rewards: torch.Tensor  # (T, N) learning rewards (clipped on Atari)
    terminated: torch.Tensor  # (T, N) float 1.0: no bootstrap from s_{t+1}
    episode_end: torch.Tensor  # (T, N) float 1.0: terminated or truncated, the trace stops
    valid: torch.Tensor  # (T, N) bool: a real transition (False at the autoreset step)
    action_masks: torch.Tensor | None  # (T, N, A) bool legal actions, or None when every action is legal


def make_rollout(
    num_steps: int,
    num_envs: int,
    obs_shape: tuple[int, ...],
    obs_dtype: torch.dtype,
    n_actions: int,
    masked: bool,
    device: torch.device,
) -> Rollout:
    T, N = num_steps, num_envs
    zeros = lambda dtype=torch.float32: torch.zeros((T, N), dtype=dtype, device=device)  # noqa: E731
    return Rollout(
        obs=torch.zeros((T, N, *obs_shape), dtype=obs_dtype, device=device),
        actions=zeros(torch.int64),
        logprobs=zeros(),
        values=zeros(),
        rewards=zeros(),
        terminated=zeros(),
        episode_end=zeros(),
        valid=zeros(torch.bool),
        action_masks=torch.ones((T, N, n_actions), dtype=torch.bool, device=device) if masked else None,
    )


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> torch.Tensor:
    """Generalized advantage estimates (Schulman et al. 2016, "High-Dimensional Continuous Control
    Using Generalized Advantage Estimation", eq. 16), computed backwards:

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1}

    V(s_{t+1}) is values[t + 1], or next_value after the last step. A truncated step bootstraps from
    the value of its final obs but starts a new trace. gae_lambda = 1 gives the discounted return
    minus V(s_t); 0 gives the one-step TD error.
    Shapes: rewards, values, terminated, episode_end (T, N); next_value (N,) -> advantages (T, N).
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_values = torch.cat([values[1:], next_value.unsqueeze(0)])  # (T, N) V(s_{t+1})
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values  # (T, N)
    carry = (gamma * gae_lambda) * (1.0 - episode_end)  # (T, N)
    last = torch.zeros_like(next_value)  # (N,) A_{t+1}
    for t in reversed(range(T)):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages


def discounted_returns(
    rewards: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor, episode_end: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Monte-Carlo returns G_t = r_t + gamma * G_{t+1} within an episode (REINFORCE, Williams 1992),
    computed backwards. At an episode end the return is r_t after a termination, and
    r_t + gamma * next_values[t] after a truncation (the value of the final obs stands for the rest).
    next_values[t] is only read where episode_end[t] and not terminated[t], or at the last step
    (the rollout's own cut, a truncation too). Shapes: all (T, N) -> returns (T, N).
    """
    T = rewards.shape[0]
    returns = torch.zeros_like(rewards)
    last = next_values[-1]  # (N,) the rollout's cut bootstraps from the value of the obs after it
    for t in reversed(range(T)):
        following = torch.where(episode_end[t].bool(), next_values[t], last)  # (N,)
        last = rewards[t] + gamma * (1.0 - terminated[t]) * following
        returns[t] = last
    return returns


def masked_logits(logits: torch.Tensor, action_mask: torch.Tensor | None) -> torch.Tensor:
    """Illegal actions get logit -1e9: probability exactly 0 in float32, so they are never sampled,
    and p * log p = 0 * -1e9 = 0 keeps the entropy over legal actions only (-inf would give NaN).
    Shapes: logits (B, A), action_mask (B, A) bool or None -> (B, A)."""
    if action_mask is None:
        return logits
    return logits.masked_fill(~action_mask, -1e9)


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions a ~ pi(.|s) and their log-probabilities; illegal actions (logit -1e9) have probability 0.
    The draw happens on the generator's device (the host's generator for a GPU policy: the actions go to
    the host for env.step anyway, and one seed then gives the same draws on every device).
    Shapes: logits (B, A) -> actions (B,) int64, logprobs (B,)."""
    logp = torch.log_softmax(logits, dim=1)  # (B, A)
    probs = logp.exp().to(generator.device)
    actions = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)  # (B,)
    return actions, logp.gather(1, actions.unsqueeze(1)).squeeze(1)
