"""The policy-gradient maths PPO, A2C, REINFORCE and recurrent PPO share, as pure functions of tensors.

log pi and entropy, the clipped surrogate with its value and entropy terms, the learning-rate and clip
schedules, the optimizer, CleanRL's orthogonal init and the helpers both loops use on observations and
action masks. agents/ppo.py and agents/ppo_lstm.py import these; neither imports the other. A `config`
argument is agents/ppo.py's PPOConfig (or a subclass), passed in: this module imports no algorithm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn


def orthogonal_init(net: nn.Module) -> nn.Module:
    """CleanRL's layer_init: orthogonal weights with gain sqrt(2) in the bodies, 0.01 on the policy head
    (near-uniform first policy) and 1 on the value head, biases 0 (Andrychowicz et al. 2021, sec. 3.2)."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(module.weight, math.sqrt(2))
            if module.bias is not None:  # convolutions followed by batch norm have none
                nn.init.zeros_(module.bias)
    nn.init.orthogonal_(_last_linear(net.actor).weight, 0.01)
    nn.init.orthogonal_(_last_linear(net.critic).weight, 1.0)
    return net


def _last_linear(head: nn.Module) -> nn.Linear:
    return [m for m in head.modules() if isinstance(m, nn.Linear)][-1]


def make_optimizer(agent: nn.Module, config) -> torch.optim.Optimizer:
    """Adam (PPO) or RMSprop (A2C, Mnih et al. 2016); foreach kernels, one pass over all parameters."""
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            agent.parameters(), lr=config.learning_rate, alpha=config.rmsprop_alpha, eps=config.adam_eps, foreach=True
        )
    return torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=config.adam_eps, fused=True)


def logprob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a|s) and H(pi(.|s)) = -sum_a p log p (masked actions contribute 0 * -1e9 = 0).
    Shapes: logits (B, A), actions (B,) -> (B,), (B,)."""
    logp = torch.log_softmax(logits, dim=1)  # (B, A)
    return logp.gather(1, actions.unsqueeze(1)).squeeze(1), -(logp.exp() * logp).sum(1)


def ppo_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    clip_coef: float,
    clip_vloss: bool,
    ent_coef: float,
    vf_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = L_clip - ent_coef * H + vf_coef * L_V (Schulman et al. 2017, eq. 7 and 9), as minimized.

    L_clip = mean(max(-A r, -A clip(r, 1 - eps, 1 + eps))) with r = pi/pi_old; eps = clip_coef, and
    clip_coef = 0 means no clipping (A2C: -A r, whose gradient at r = 1 is -A grad log pi).
    L_V = 0.5 mean((V - R)^2), or with clip_vloss the max of that and the error of the old value moved
    at most clip_coef (CleanRL, OpenAI baselines). Also returns detached statistics: approx_kl is
    Schulman's unbiased estimator mean((r - 1) - log r), clipfrac the share of ratios outside 1 +- eps.
    Shapes: every argument (B,) -> scalar loss.
    """
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    if clip_coef > 0:
        policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    else:
        policy_loss = (-advantages * ratio).mean()
    value_loss = (new_value - returns) ** 2
    if clip_vloss and clip_coef > 0:
        clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        value_loss = torch.max(value_loss, (clipped - returns) ** 2)
    value_loss = 0.5 * value_loss.mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
    with torch.no_grad():
        stats = {
            "losses/policy_loss": policy_loss.detach(),
            "losses/value_loss": value_loss.detach(),
            "losses/entropy": entropy_mean.detach(),
            "losses/approx_kl": ((ratio - 1) - log_ratio).mean(),
            "losses/clipfrac": ((ratio - 1).abs() > clip_coef).float().mean() if clip_coef > 0 else torch.zeros(()),
        }
    return loss, stats


def anneal(config, optimizer: torch.optim.Optimizer, global_step: int) -> tuple[float, float]:
    """The learning rate (set in `optimizer`) and clip range at `global_step`: linear to 0 over the run when
    anneal_lr / anneal_clip (CleanRL; the original paper's Atari schedule), else constant."""
    frac = 1.0 - global_step / config.total_timesteps
    lr = config.learning_rate * frac if config.anneal_lr else config.learning_rate
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr, config.clip_coef * frac if config.anneal_clip else config.clip_coef


def action_mask_of(info: dict[str, Any], device: torch.device) -> torch.Tensor | None:
    """The env's legal actions (N, A) bool, when it has any illegal ones (contract: info["action_mask"])."""
    mask = info.get("action_mask")
    return None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool), device=device)


def store_rewards(
    rollout, t: int, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, info: dict[str, Any], config
) -> None:
    """Step t's learning signal into the rollout: sign(r) with clip_rewards, and a lost life terminal for the
    advantage only with terminal_on_life_loss (the Nature protocol; the game goes on and its score stays raw)."""
    device = rollout.rewards.device
    done_learn = terminated | (info["life_lost"] & config.terminal_on_life_loss)
    rollout.rewards[t] = torch.as_tensor(np.sign(reward) if config.clip_rewards else reward, device=device)
    rollout.terminated[t] = torch.as_tensor(done_learn, device=device)
    rollout.episode_end[t] = torch.as_tensor(done_learn | truncated, device=device)
