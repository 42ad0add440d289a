"""GAE and discounted returns against hand-computed numbers, with termination, truncation and the
NEXT_STEP autoreset step (agents/rollout.py): no environment involved."""

import pytest
import torch

from agents.rollout import discounted_returns, gae, masked_logits


def col(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32).unsqueeze(1)  # (T, 1): one env


def test_gae_constant_value_and_a_single_terminal_reward_by_hand():
    # V = 1 everywhere; reward 1 on the last step, which terminates. gamma 0.9, lambda 0.8.
    # deltas: 0 + .9*1 - 1 = -0.1, -0.1, 1 + 0 - 1 = 0
    # A2 = 0; A1 = -0.1 + .72*0 = -0.1; A0 = -0.1 + .72*(-0.1) = -0.172
    values, next_value = col(1, 1, 1), torch.tensor([1.0])
    adv = gae(col(0, 0, 1), values, next_value, col(0, 0, 1), col(0, 0, 1), gamma=0.9, gae_lambda=0.8)
    assert torch.allclose(adv, col(-0.172, -0.1, 0.0))
    # lambda 1: advantages are the Monte-Carlo returns (.81, .9, 1) minus V
    adv1 = gae(col(0, 0, 1), values, next_value, col(0, 0, 1), col(0, 0, 1), gamma=0.9, gae_lambda=1.0)
    assert torch.allclose(adv1 + values, col(0.81, 0.9, 1.0))
    # lambda 0: the one-step TD errors
    adv0 = gae(col(0, 0, 1), values, next_value, col(0, 0, 1), col(0, 0, 1), gamma=0.9, gae_lambda=0.0)
    assert torch.allclose(adv0, col(-0.1, -0.1, 0.0))


def test_gae_bootstraps_on_truncation_and_not_on_termination():
    # NEXT_STEP autoreset: step 1 ends the episode, so obs 2 is the episode's final obs (V = 3) and
    # step 2 is the autoreset step (reward 0, a transition that is no transition; the loss skips it).
    rewards, values, next_value = col(1, 1, 0, 1), col(1, 2, 3, 4), torch.tensor([5.0])
    end = col(0, 1, 0, 0)
    truncated = gae(rewards, values, next_value, col(0, 0, 0, 0), end, gamma=0.5, gae_lambda=1.0)
    # step 1: 1 + .5 * V(final obs) = 2.5; step 0: 1 + .5 * 2.5 = 2.25; step 3: 1 + .5 * 5 = 3.5
    returns = truncated + values
    assert returns[0].item() == pytest.approx(2.25) and returns[1].item() == pytest.approx(2.5)
    assert returns[3].item() == pytest.approx(3.5)
    terminated = gae(rewards, values, next_value, col(0, 1, 0, 0), end, gamma=0.5, gae_lambda=1.0)
    returns = terminated + values
    assert returns[1].item() == pytest.approx(1.0) and returns[0].item() == pytest.approx(1.5)
    # the step after the end (the autoreset one) never leaks into the steps before it
    other = gae(col(1, 1, 100, 1), values, next_value, col(0, 0, 0, 0), end, gamma=0.5, gae_lambda=0.9)
    assert torch.equal(other[:2], gae(rewards, values, next_value, col(0, 0, 0, 0), end, gamma=0.5, gae_lambda=0.9)[:2])


def test_gae_envs_are_independent_columns():
    torch.manual_seed(0)
    T, N = 6, 3
    rewards, values, next_value = torch.randn(T, N), torch.randn(T, N), torch.randn(N)
    term = (torch.rand(T, N) < 0.2).float()
    end = torch.maximum(term, (torch.rand(T, N) < 0.2).float())
    together = gae(rewards, values, next_value, term, end, 0.99, 0.95)
    for i in range(N):
        alone = gae(
            rewards[:, i : i + 1],
            values[:, i : i + 1],
            next_value[i : i + 1],
            term[:, i : i + 1],
            end[:, i : i + 1],
            0.99,
            0.95,
        )
        assert torch.allclose(together[:, i : i + 1], alone)


def test_discounted_returns_match_gae_with_lambda_1():
    torch.manual_seed(1)
    T, N = 8, 2
    rewards, values, next_value = torch.randn(T, N), torch.randn(T, N), torch.randn(N)
    term = (torch.rand(T, N) < 0.25).float()
    end = torch.maximum(term, (torch.rand(T, N) < 0.25).float())
    next_values = torch.cat([values[1:], next_value[None]])
    expected = gae(rewards, values, next_value, term, end, 0.9, 1.0) + values
    assert torch.allclose(discounted_returns(rewards, next_values, term, end, 0.9), expected, atol=1e-6)
    # by hand: rewards 1, 2, 3 with a termination at the end: 1 + .5*2 + .25*3 = 2.75, 2 + .5*3 = 3.5, 3
    got = discounted_returns(col(1, 2, 3), col(9, 9, 9), col(0, 0, 1), col(0, 0, 1), 0.5)
    assert torch.allclose(got, col(2.75, 3.5, 3.0))


def test_masked_logits_zero_probability_and_finite_entropy():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True], [False, False, True]])
    p = torch.softmax(masked_logits(logits, mask), 1)
    assert p[0, 1].item() == 0.0 and p[1].tolist() == [0.0, 0.0, 1.0]
    logp = torch.log_softmax(masked_logits(logits, mask), 1)
    entropy = -(logp.exp() * logp).sum(1)
    legal = torch.softmax(torch.tensor([1.0, 3.0]), 0)
    assert entropy[0].item() == pytest.approx(-(legal * legal.log()).sum().item())  # over the legal actions only
    assert entropy[1].item() == 0.0
    assert masked_logits(logits, None) is logits
