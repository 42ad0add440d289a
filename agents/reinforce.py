"""REINFORCE with a learned baseline (Williams 1992) as PPO's special case (see ReinforceConfig).

The policy-gradient estimate is (G_t - V(s_t)) grad log pi(a_t|s_t) (Sutton & Barto 2018, eq. 13.11):
with gae_lambda = 1, agents/rollout.gae gives exactly the Monte-Carlo return G_t minus V(s_t)
(rollout.discounted_returns computes G_t directly; tests/test_rollout.py checks they agree), and one
epoch over one minibatch without clipping makes the PPO surrogate's gradient that estimate (ratio 1).
The baseline V is a separate network regressed on G_t. No bootstrapping inside an episode; at a
truncation, or where a rollout cuts a running episode, V of the last obs stands in for the rest.
"""

from dataclasses import dataclass

from agents.ppo import PPOConfig, action_scores, load_network, load_policy, train

__all__ = ["ReinforceConfig", "Config", "action_scores", "load_network", "load_policy", "train"]


@dataclass(frozen=True)
class ReinforceConfig(PPOConfig):
    """REINFORCE with a learned baseline (Williams 1992; Sutton & Barto 2018, sec. 13.4): one gradient step
    per rollout on -(G_t - V(s_t)) log pi(a_t|s_t), with G_t the Monte-Carlo discounted return (gae_lambda = 1
    is exactly that) and the baseline V fitted to G_t. Long rollouts so that most episodes end inside one;
    an episode cut by the rollout's end is completed by V of its last obs, as at a time limit."""

    learning_rate: float = 1e-3
    anneal_lr: bool = False
    num_envs: int = 4
    num_steps: int = 256
    gae_lambda: float = 1.0
    num_minibatches: int = 1
    update_epochs: int = 1
    clip_coef: float = 0.0
    clip_vloss: bool = False
    ent_coef: float = 0.0


Config = ReinforceConfig  # the registry's protocol (agents/registry.py)
