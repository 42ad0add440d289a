"""DQN maths against hand-computed numbers, no environment involved; and one short run with Rainbow's flags."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import invoke, ok, only_run, scalars, train_args

import agents.dqn
from agents.config import ConfigError, build
from agents.dqn import (
    DQNConfig,
    QNetwork,
    categorical_loss,
    categorical_projection,
    categorical_td_target,
    epsilon_greedy,
    linear_schedule,
    make_q_network,
    td_loss,
    td_target,
    update,
)
from agents.encoders import MLP, NatureCNN, make_encoder
from agents.noisy import NoisyLinear, reset_noise, signed_sqrt
from agents.replay import ReplaySample


def test_td_target_dqn_and_double_dqn_by_hand():
    r_t = torch.tensor([1.0, 0.0, -1.0])
    discount_t = torch.tensor([0.99, 0.9801, 0.0])  # 1-step, 2-step (0.99^2), terminal
    q_t_target = torch.tensor([[1.0, 5.0], [2.0, 3.0], [7.0, 8.0]])
    q_t_online = torch.tensor([[9.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # DQN: max over the target net: 1 + .99*5, 0 + .9801*3, -1 + 0
    assert torch.allclose(td_target(r_t, discount_t, q_t_target), torch.tensor([5.95, 2.9403, -1.0]))
    # double DQN: online argmax (0, 1, 0), evaluated by the target net: 1 + .99*1, .9801*3, -1
    assert torch.allclose(td_target(r_t, discount_t, q_t_target, q_t_online), torch.tensor([1.99, 2.9403, -1.0]))


def test_td_loss_huber_and_mse_by_hand():
    q = torch.tensor([0.0, 0.0], requires_grad=True)
    target = torch.tensor([0.5, 3.0])
    # Huber(delta 1): 0.5*0.5^2 = 0.125 ; 3 - 0.5 = 2.5 -> mean 1.3125
    assert td_loss(q, target, "huber").item() == pytest.approx(1.3125)
    assert td_loss(q, target, "mse").item() == pytest.approx((0.25 + 9.0) / 2)
    td_loss(q, target, "huber").backward()
    assert torch.allclose(q.grad, torch.tensor([-0.25, -0.5]))  # the error is clipped to [-1, 1] (Nature)


def test_target_is_detached():
    q = torch.zeros(2, requires_grad=True)
    target = (q + 1.0) * 2
    td_loss(q, target, "mse").backward()
    assert torch.allclose(q.grad, torch.tensor([-2.0, -2.0]))  # only the prediction side carries gradient


def test_linear_schedule():
    assert linear_schedule(1.0, 0.01, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.01, 100, 50) == pytest.approx(0.505)
    assert linear_schedule(1.0, 0.01, 100, 100) == pytest.approx(0.01)
    assert linear_schedule(1.0, 0.01, 100, 10_000) == pytest.approx(0.01)


def test_dueling_head_is_value_plus_centred_advantage():
    torch.manual_seed(0)
    net = QNetwork(MLP((3,), (8,)), n_actions=4, dueling=True)
    x = torch.randn(5, 3)
    h = net.encoder(x)
    a = net.head(h)
    expected = net.value(h) + a - a.mean(1, keepdim=True)
    assert torch.allclose(net(x), expected)
    assert torch.allclose(net(x).mean(1, keepdim=True), net.value(h), atol=1e-6)


def test_epsilon_greedy_extremes():
    torch.manual_seed(0)
    net = QNetwork(MLP((2,), (4,)), n_actions=3)
    obs = torch.randn(64, 2)
    greedy = net(obs).argmax(1).numpy()
    g = torch.Generator().manual_seed(0)
    assert (epsilon_greedy(net, obs, 0.0, 3, g) == greedy).all()
    random_actions = epsilon_greedy(net, obs, 1.0, 3, g)
    assert set(random_actions.tolist()) == {0, 1, 2} and (random_actions != greedy).any()


@pytest.mark.parametrize("shape", [(4, 84, 84), (1, 64, 64), (3, 96, 80)])
def test_nature_cnn_output_size_from_input_shape(shape):
    enc = NatureCNN(shape)
    out = enc(torch.zeros(2, *shape, dtype=torch.uint8))
    assert out.shape == (2, 512) and enc.output_dim == 512


def test_make_encoder_picks_and_refuses():
    assert isinstance(make_encoder("auto", (4, 84, 84)), NatureCNN)
    assert isinstance(make_encoder("auto", (16,)), MLP)
    with pytest.raises(ValueError, match="encoder.name=mlp"):
        make_encoder("nature_cnn", (4,))


def test_q_network_with_batch_norm_acts_on_one_state():
    """encoder.norm=batch used to crash DQN's first greedy action (BatchNorm1d in train mode on a batch of 1)."""
    from agents.config import EncoderConfig

    q = make_q_network(DQNConfig(encoder=EncoderConfig(norm="batch")), (4,), 2).train()
    states = torch.randn(8, 4)
    torch.testing.assert_close(q(states[:1]), q(states)[:1], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- C51
SUPPORT5 = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])  # v_min -2, v_max 2, dz 1


def projection_by_loop(r_t, discount_t, p_t, support):
    """CleanRL's c51.py projection: floor/ceil neighbours, (l == u) gives an exact hit all its mass, index_add_."""
    v_min, v_max, n = support[0], support[-1], len(support)
    tz = (r_t[:, None] + discount_t[:, None] * support).clamp(v_min, v_max)
    b = (tz - v_min) / (support[1] - support[0])
    low, up = b.floor().clamp(0, n - 1), b.ceil().clamp(0, n - 1)
    d_m_l = (up + (low == up).float() - b) * p_t
    d_m_u = (b - low) * p_t
    target = torch.zeros_like(p_t)
    for i in range(len(p_t)):
        target[i].index_add_(0, low[i].long(), d_m_l[i])
        target[i].index_add_(0, up[i].long(), d_m_u[i])
    return target


def test_categorical_projection_by_hand():
    r_t = torch.tensor([0.5, 1.5, -5.0, 0.7, 1.0])
    discount_t = torch.tensor([0.5, 1.0, 1.0, 0.0, 0.0])
    p_t = torch.tensor(
        [
            [0.1, 0.2, 0.3, 0.4, 0.0],  # Tz = -0.5, 0 (on an atom), 0.5, 1 (on an atom), 1.5
            [0.2, 0.0, 0.0, 0.3, 0.5],  # Tz = -0.5, ..., 2.5 and 3.5 clamped to v_max = 2
            [0.2, 0.2, 0.2, 0.2, 0.2],  # every Tz below v_min: all mass on -2
            [0.2, 0.2, 0.2, 0.2, 0.2],  # terminal, r between atoms 0 and 1: 0.3 / 0.7
            [0.2, 0.2, 0.2, 0.2, 0.2],  # terminal, r on atom 1: all of it there
        ]
    )
    expected = torch.tensor(
        [
            [0.0, 0.05, 0.05 + 0.2 + 0.15, 0.15 + 0.4, 0.0],
            [0.0, 0.1, 0.1, 0.0, 0.8],
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.3, 0.7, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
        ]
    )
    target = categorical_projection(r_t, discount_t, p_t, SUPPORT5)
    torch.testing.assert_close(target, expected)
    torch.testing.assert_close(target.sum(1), torch.ones(5))
    # inside [v_min, v_max] the projection keeps the mean: E = r + discount * E_p[z] (rows 0, 3, 4)
    mean = (target * SUPPORT5).sum(1)
    torch.testing.assert_close(mean[[0, 3, 4]], (r_t + discount_t * (p_t * SUPPORT5).sum(1))[[0, 3, 4]])


def test_categorical_projection_matches_cleanrl_loop_on_random_inputs():
    """In float64, so that the two differ by their maths, not by float32's rounding of the atoms (~1e-5)."""
    g = torch.Generator().manual_seed(0)
    support = torch.linspace(-10.0, 10.0, 51, dtype=torch.float64)  # dz = 0.4
    r_t = torch.cat(
        [
            torch.randn(60, generator=g, dtype=torch.float64) * 4,
            torch.tensor([0.4, -0.8, 2.0, 12.0], dtype=torch.float64),
        ]
    )
    discount_t = torch.tensor([0.0, 0.99, 0.9801, 1.0], dtype=torch.float64)[torch.randint(4, (64,), generator=g)]
    discount_t[-4:] = 0.0  # the last four land on an atom, or beyond v_max
    p_t = torch.randn(64, 51, generator=g, dtype=torch.float64).softmax(1)
    target = categorical_projection(r_t, discount_t, p_t, support)
    torch.testing.assert_close(target, projection_by_loop(r_t, discount_t, p_t, support), atol=1e-9, rtol=0)
    torch.testing.assert_close(target.sum(1), torch.ones(64, dtype=torch.float64))
    assert target[-1, -1].item() == pytest.approx(1.0)  # 12 > v_max


def test_categorical_loss_is_cross_entropy_per_sample():
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    logits.data[1] = torch.log(torch.tensor([0.8, 0.2]))
    target = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    loss = categorical_loss(logits.log_softmax(1), target)
    # -(0.25 log 0.5 + 0.75 log 0.5) = log 2; -log 0.8
    torch.testing.assert_close(loss, torch.tensor([0.693147, 0.223144]))
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, logits.softmax(1).detach() - target)  # softmax - target


def test_categorical_td_target_picks_a_star_by_expectation_or_the_online_net():
    support = torch.tensor([-1.0, 0.0, 1.0])
    # action 0 has Q = E[Z] = 0.6 > action 1's -0.6 under the target net
    p_t_target = torch.tensor([[[0.1, 0.2, 0.7], [0.7, 0.2, 0.1]]])
    r_t, discount_t = torch.tensor([0.0]), torch.tensor([1.0])
    torch.testing.assert_close(categorical_td_target(r_t, discount_t, p_t_target, support), p_t_target[:, 0])
    q_t_online = torch.tensor([[0.0, 5.0]])  # double DQN: the online net picks action 1
    double = categorical_td_target(r_t, discount_t, p_t_target, support, q_t_online)
    torch.testing.assert_close(double, p_t_target[:, 1])


def _c51_net(dueling: bool, noisy_sigma0=None) -> QNetwork:
    torch.manual_seed(0)
    return QNetwork(MLP((3,), (8,)), 4, dueling, support=torch.linspace(-1, 1, 5), noisy_sigma0=noisy_sigma0)


def test_c51_q_values_are_the_expectation_by_hand():
    net = QNetwork(MLP((2,), (4,)), n_actions=2, support=torch.tensor([-1.0, 0.0, 1.0]))
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.log(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 2.0])))  # p = 1/3s; (.25, .25, .5)
    obs = torch.randn(3, 2)
    torch.testing.assert_close(net(obs), torch.tensor([[0.0, 0.25]]).expand(3, 2))
    torch.testing.assert_close(net.dist(obs).exp()[0, 1], torch.tensor([0.25, 0.25, 0.5]))
    net = _c51_net(dueling=False)
    x = torch.randn(6, 3)
    torch.testing.assert_close(net(x), (net.dist(x).exp() * net.support).sum(2))


def test_dueling_c51_combines_logits_per_atom_and_removes_the_advantage_mean():
    net = _c51_net(dueling=True)
    x = torch.randn(6, 3)
    h = net.encoder(x)
    a, v = net.head(h).view(6, 4, 5), net.value(h).view(6, 1, 5)
    torch.testing.assert_close(net.dist(x), (v + a - a.mean(1, keepdim=True)).log_softmax(2))
    before = net.dist(x)
    with torch.no_grad():
        net.head.bias += torch.randn(5).repeat(4)  # the same shift of every action's advantage logits
    torch.testing.assert_close(net.dist(x), before)


def test_c51_under_bf16_autocast_returns_fp32_distributions():
    net = QNetwork(MLP((3,), (8,)), 4, dueling=True, amp="bf16", support=torch.linspace(-1, 1, 5))
    log_p = net.dist(torch.randn(6, 3))
    assert log_p.dtype == torch.float32 and net(torch.randn(6, 3)).dtype == torch.float32
    torch.testing.assert_close(log_p.exp().sum(2), torch.ones(6, 4))


# ---------------------------------------------------------------------------------------------- noisy nets
def test_signed_sqrt_by_hand():
    torch.testing.assert_close(signed_sqrt(torch.tensor([-4.0, 0.0, 2.25])), torch.tensor([-2.0, 0.0, 1.5]))


def test_noisy_linear_init_ranges():
    torch.manual_seed(0)
    layer = NoisyLinear(16, 64, sigma0=0.5)
    bound = 1 / 4  # 1 / sqrt(16)
    for mu in (layer.weight_mu, layer.bias_mu):
        assert mu.abs().max() <= bound and mu.abs().max() > 0.9 * bound  # U(-1/sqrt(p), 1/sqrt(p))
    for sigma in (layer.weight_sigma, layer.bias_sigma):
        assert torch.all(sigma == 0.125)  # sigma0 / sqrt(p)
    assert set(layer.state_dict()) == {"weight_mu", "weight_sigma", "bias_mu", "bias_sigma"}  # the noise is not saved


def test_noisy_linear_noise_is_factorised():
    layer = NoisyLinear(3, 2)
    torch.manual_seed(5)
    layer.reset_noise()
    torch.manual_seed(5)
    eps_in, eps_out = signed_sqrt(torch.randn(3)), signed_sqrt(torch.randn(2))  # drawn in this order
    torch.testing.assert_close(layer.weight_epsilon, torch.outer(eps_out, eps_in))
    torch.testing.assert_close(layer.bias_epsilon, eps_out)


def test_noisy_linear_train_mode_adds_noise_eval_mode_uses_the_means():
    torch.manual_seed(0)
    layer, x = NoisyLinear(5, 3), torch.randn(4, 5)
    mean = F.linear(x, layer.weight_mu, layer.bias_mu)
    noisy = layer(x)
    expected = F.linear(
        x,
        layer.weight_mu + layer.weight_sigma * layer.weight_epsilon,
        layer.bias_mu + layer.bias_sigma * layer.bias_epsilon,
    )
    torch.testing.assert_close(noisy, expected)
    assert not torch.allclose(noisy, mean)
    layer.reset_noise()
    assert not torch.allclose(layer(x), noisy)
    layer.eval()
    torch.testing.assert_close(layer(x), mean)
    layer.reset_noise()
    torch.testing.assert_close(layer(x), mean)
    layer.train()
    layer(x).sum().backward()
    assert layer.weight_sigma.grad.abs().sum() > 0  # sigma learns


def test_noisy_q_network_has_noisy_head_and_value_and_a_deterministic_encoder():
    net = _c51_net(dueling=True, noisy_sigma0=0.5)
    assert isinstance(net.head, NoisyLinear) and isinstance(net.value, NoisyLinear)
    assert not any(isinstance(m, NoisyLinear) for m in net.encoder.modules())
    x = torch.randn(6, 3)
    before = net(x)
    reset_noise(net)
    assert not torch.allclose(net(x), before)
    net.eval()
    mean = net(x)
    reset_noise(net)
    torch.testing.assert_close(net(x), mean)


# ---------------------------------------------------------------------------------------------- update
def _batch(n: int = 8) -> ReplaySample:
    g = torch.Generator().manual_seed(1)
    return ReplaySample(
        s_tm1=torch.randn(n, 3, generator=g),
        a_tm1=torch.randint(4, (n,), generator=g),
        r_t=torch.randn(n, generator=g),
        discount_t=torch.full((n,), 0.99),
        s_t=torch.randn(n, 3, generator=g),
    )


@pytest.mark.parametrize(
    "settings", [dict(), dict(loss="huber", double_dqn=True), dict(distributional=True, double_dqn=True, noisy=True)]
)
def test_update_weights_the_per_sample_loss(settings):
    config = DQNConfig(dueling=True, num_atoms=5, v_min=-1, v_max=1, **settings)
    weight = torch.linspace(0.1, 1.0, 8)
    losses = []
    for w in (None, weight):
        torch.manual_seed(0)
        q_network, target_network = make_q_network(config, (3,), 4), make_q_network(config, (3,), 4)
        out = update(q_network, target_network, torch.optim.SGD(q_network.parameters(), lr=0.1), _batch(), config, w)
        assert out.per_sample.shape == (8,) and not out.per_sample.requires_grad
        torch.testing.assert_close(out.loss, out.per_sample.mean() if w is None else (w * out.per_sample).mean())
        losses.append(out.per_sample)
    torch.testing.assert_close(losses[0], losses[1])  # same nets, same noise, same batch: only the weighting differs


def test_td_loss_per_sample():
    q, target = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(td_loss(q, target, "huber", reduction="none"), torch.tensor([0.125, 2.5]))
    torch.testing.assert_close(td_loss(q, target, "mse", reduction="none"), torch.tensor([0.25, 9.0]))


@pytest.mark.parametrize(
    "overrides, message",
    [({"v_min": 1.0, "v_max": 1.0}, "'v_min' (1.0) and 'v_max' (1.0)"), ({"num_atoms": 1}, "'num_atoms' is 1")],
)
def test_c51_config_rules(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(DQNConfig, overrides)


def test_rainbow_flags_train_on_cartpole(tmp_path, monkeypatch):
    """distributional + noisy + double + dueling through `rl train`, with evaluations and a checkpoint: training acts
    with epsilon 0 and new noise at each step, evaluations act in eval mode (mean weights) with eval_epsilon."""
    calls = []  # (train mode, epsilon, the head's bias noise) of each action

    def recording(q_net, obs, epsilon, n_actions, generator):
        calls.append((q_net.training, epsilon, q_net.head.bias_epsilon.clone()))
        return real(q_net, obs, epsilon, n_actions, generator)

    real = agents.dqn.epsilon_greedy
    monkeypatch.setattr(agents.dqn, "epsilon_greedy", recording)
    settings = dict(distributional="true", noisy="true", double_dqn="true", dueling="true", v_min=0, v_max=100)
    ok(invoke(train_args(tmp_path, 600, eval_frequency=300, checkpoint_frequency=600, **settings)))
    curves = scalars(only_run(tmp_path))
    assert len(curves["losses/td_loss"]) >= 5 and all(math.isfinite(v) for _, v in curves["losses/td_loss"])
    assert {v for _, v in curves["charts/epsilon"]} == {0.0}  # noise explores, not epsilon
    assert [s for s, _ in curves["eval/episodic_return"]] == [300, 600]
    training = [noise for train_mode, epsilon, noise in calls if train_mode and epsilon == 0.0]
    evaluating = [epsilon for train_mode, epsilon, _ in calls if not train_mode]
    assert len(training) == 600 and len(evaluating) + len(training) == len(calls) and set(evaluating) == {0.05}
    assert all(not torch.equal(a, b) for a, b in zip(training, training[1:]))  # new noise at every step
