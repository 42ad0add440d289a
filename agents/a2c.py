"""Advantage actor-critic (Mnih et al. 2016, synchronous as in OpenAI baselines' A2C) as PPO's special case.

With update_epochs = 1, num_minibatches = 1 and clip_coef = 0 (A2CConfig's defaults), agents/ppo.py takes
one gradient step per rollout on -A log pi - ent_coef H + vf_coef 0.5 (V - R)^2: its probability ratio is
exactly 1 at that step, so the surrogate's gradient is the policy gradient A grad log pi. A2CConfig adds
RMSprop, 5-step rollouts and lambda = 1 (n-step returns). Everything else is PPO's loop and code.
"""

from dataclasses import dataclass

from agents.ppo import PPOConfig, action_scores, load_network, load_policy, train

__all__ = ["A2CConfig", "Config", "action_scores", "load_network", "load_policy", "train"]


@dataclass(frozen=True)
class A2CConfig(PPOConfig):
    """Advantage actor-critic (Mnih et al. 2016, synchronous as in OpenAI baselines): PPO's loop with one
    epoch over one minibatch of a short rollout, no clipping, RMSprop. Defaults are rl-zoo's A2C values
    (5 steps x 16 envs on Atari; configs/a2c/*.yaml)."""

    learning_rate: float = 7e-4
    optimizer: str = "rmsprop"
    num_steps: int = 5
    num_envs: int = 8
    gae_lambda: float = 1.0
    num_minibatches: int = 1
    update_epochs: int = 1
    norm_adv: bool = False
    clip_coef: float = 0.0
    clip_vloss: bool = False
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    anneal_lr: bool = False


Config = A2CConfig  # the registry's protocol (agents/registry.py)
