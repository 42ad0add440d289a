"""Advantage actor-critic (Mnih et al. 2016, synchronous as in OpenAI baselines' A2C) as PPO's special case.

With update_epochs = 1, num_minibatches = 1 and clip_coef = 0 (A2CConfig's defaults), agents/ppo.py takes
one gradient step per rollout on -A log pi - ent_coef H + vf_coef 0.5 (V - R)^2: its probability ratio is
exactly 1 at that step, so the surrogate's gradient is the policy gradient A grad log pi. A2CConfig adds
RMSprop, 5-step rollouts and lambda = 1 (n-step returns). Everything else is PPO's loop and code.
"""

from agents.ppo import action_scores, load_policy, train

__all__ = ["action_scores", "load_policy", "train"]
