"""REINFORCE with a learned baseline (Williams 1992) as PPO's special case (see ReinforceConfig).

The policy-gradient estimate is (G_t - V(s_t)) grad log pi(a_t|s_t) (Sutton & Barto 2018, eq. 13.11):
with gae_lambda = 1, agents/rollout.gae gives exactly the Monte-Carlo return G_t minus V(s_t)
(rollout.discounted_returns computes G_t directly; tests/test_rollout.py checks they agree), and one
epoch over one minibatch without clipping makes the PPO surrogate's gradient that estimate (ratio 1).
The baseline V is a separate network regressed on G_t. No bootstrapping inside an episode; at a
truncation, or where a rollout cuts a running episode, V of the last obs stands in for the rest.
"""

from agents.ppo import action_scores, load_policy, train

__all__ = ["action_scores", "load_policy", "train"]
