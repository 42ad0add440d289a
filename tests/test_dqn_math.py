"""DQN maths against hand-computed numbers: no environment involved."""

import pytest
import torch

from agents.dqn import QNetwork, epsilon_greedy, linear_schedule, td_loss, td_target
from agents.encoders import MLP, NatureCNN, make_encoder


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
    from agents.dqn import DQNConfig, make_q_network

    q = make_q_network(DQNConfig(encoder=EncoderConfig(norm="batch")), (4,), 2).train()
    states = torch.randn(8, 4)
    torch.testing.assert_close(q(states[:1]), q(states)[:1], atol=1e-6, rtol=0)
