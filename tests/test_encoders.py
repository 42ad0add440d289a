"""Encoders: shapes, gradients, LSTM state handling, saved weights loading into agents (encoder.init/freeze)."""

from __future__ import annotations

import pytest
import torch
from conftest import invoke, ok, only_run, train_args
from safetensors.torch import load_file

from agents import checkpoint
from agents.config import ConfigError, EncoderConfig
from agents.encoders import (
    ImpalaCNN,
    LSTMEncoder,
    ResidualTower,
    encoder_from_config,
    make_encoder,
    save_encoder,
    sinusoidal_positions,
)

torch.set_num_threads(1)

# (name, observation shape, options, expected output_dim or None when it depends on a layer width only)
CASES = [
    ("mlp", (4,), {}, 84),
    ("mlp", (3, 5), {"norm": "batch", "dropout": 0.1}, 84),
    ("mlp", (6,), {"norm": "layer"}, 84),
    ("mlp", (4,), {"hidden_sizes": (16, 8), "activation": "tanh"}, 8),
    ("nature_cnn", (4, 84, 84), {}, 512),
    ("nature_cnn", (1, 40, 50), {"features_dim": 64}, 64),
    ("impala", (4, 84, 84), {}, 256),
    ("impala", (1, 8, 8), {"channels": (8, 16)}, 256),
    ("impala", (3, 13, 21), {}, 256),
    ("resnet_tower", (3, 9, 9), {"tower_channels": 8, "tower_blocks": 2}, 8 * 9 * 9),
    ("resnet_tower", (17, 5, 7), {"tower_channels": 4, "tower_blocks": 1}, 4 * 5 * 7),
    ("lstm", (4,), {"lstm_hidden": 16}, 16),
    ("lstm", (8, 8), {"lstm_hidden": 16, "lstm_layers": 2, "dropout": 0.1}, 16),
    ("transformer", (4,), {"d_model": 16, "num_heads": 2}, 16),
    ("transformer", (8, 8), {"d_model": 16, "positions": "sinusoidal"}, 16),
    ("transformer", (1, 8, 8), {"d_model": 16, "patch_size": 2}, 16),
    ("transformer", (4, 84, 84), {"d_model": 16, "patch_size": 12, "dropout": 0.1}, 16),
]


@pytest.mark.parametrize("name,shape,options,out", CASES, ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}" for c in CASES])
def test_output_shape_and_gradients_reach_every_parameter(name, shape, options, out):
    torch.manual_seed(0)
    encoder = make_encoder(name, shape, **options)
    assert encoder.output_dim == out
    obs = (
        torch.randint(0, 256, (3, *shape), dtype=torch.uint8)
        if len(shape) == 3 and name != "resnet_tower"
        else torch.randn(3, *shape)
    )
    if name == "lstm" and len(shape) == 1:  # a one-step sequence from a zero state never uses weight_hh: give it two
        obs = torch.randn(3, 2, *shape)
    features = encoder(obs)
    assert features.shape == (3, out) and torch.isfinite(features).all()
    # a random projection: the sum of a LayerNorm output is constant, so `.sum()` would send no gradient
    (features * torch.randn_like(features)).sum().backward()
    for pname, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


def test_impala_is_the_15_layer_network():
    net = ImpalaCNN((4, 84, 84))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 15 and [c.out_channels for c in convs[::5]] == [16, 32, 32]
    assert net.fc.in_features == 32 * 11 * 11  # 84 -> 42 -> 21 -> 11


def test_tower_keeps_the_board_and_flattens_its_spatial_output():
    tower = ResidualTower((3, 9, 9), channels=8, blocks=2).eval()
    x = torch.randn(2, 3, 9, 9)
    spatial = tower.forward_spatial(x)
    assert spatial.shape == (2, *tower.spatial_shape) == (2, 8, 9, 9)
    assert torch.equal(tower(x), spatial.flatten(1))


def test_wrong_observation_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="encoder.name=mlp"):
        make_encoder("impala", (4,))
    with pytest.raises(ConfigError, match="lstm"):
        make_encoder("lstm", (1, 8, 8))
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        make_encoder("transformer", (4,), d_model=10, num_heads=4)
    with pytest.raises(ConfigError, match="valid"):
        make_encoder("resnet", (3, 9, 9))


def test_sinusoidal_positions_follow_vaswani():
    pe = sinusoidal_positions(5, 6)
    assert torch.allclose(pe[3, 0], torch.sin(torch.tensor(3.0))) and torch.allclose(
        pe[3, 1], torch.cos(torch.tensor(3.0))
    )
    assert torch.allclose(pe[2, 4], torch.sin(torch.tensor(2.0 / 10000 ** (4 / 6))))


def test_lstm_step_by_step_equals_whole_sequence_and_resets_at_episode_starts():
    torch.manual_seed(0)
    lstm = LSTMEncoder((3,), hidden_size=8, num_layers=2)
    T, N = 6, 4
    x = torch.randn(T, N, 3)
    no_starts = torch.zeros(T, N, dtype=torch.bool)
    whole, final = lstm.forward_sequence(x, lstm.initial_state(N), no_starts)  # one fused call
    state, steps = lstm.initial_state(N), []
    for t in range(T):
        y, state = lstm.step(x[t], state, no_starts[t])
        steps.append(y)
    assert torch.allclose(torch.stack(steps), whole, atol=1e-6) and torch.allclose(state[0], final[0], atol=1e-6)
    assert torch.allclose(lstm(x.transpose(0, 1)), whole[-1], atol=1e-6)  # classification read-out: (B, T, F)

    # env 1 starts a new episode at t = 3: its outputs from t = 3 on are those of a fresh run on x[3:]
    starts = no_starts.clone()
    starts[3, 1] = True
    with_reset, _ = lstm.forward_sequence(x, lstm.initial_state(N), starts)
    fresh, _ = lstm.forward_sequence(x[3:, 1:2], lstm.initial_state(1), no_starts[3:, :1])
    assert torch.allclose(with_reset[3:, 1], fresh[:, 0], atol=1e-6)
    assert torch.allclose(with_reset[:, 0], whole[:, 0], atol=1e-6)  # the other envs are untouched
    assert not torch.allclose(with_reset[3:, 1], whole[3:, 1], atol=1e-3)


@pytest.mark.parametrize(
    "name,shape,options",
    [
        ("resnet_tower", (3, 5, 5), {"tower_channels": 4, "tower_blocks": 1}),
        ("transformer", (1, 8, 8), {"d_model": 16, "patch_size": 4}),
    ],
)
def test_loaded_encoder_gives_the_saved_features(tmp_path, name, shape, options):
    torch.manual_seed(0)
    saved = make_encoder(name, shape, **options)
    saved.train()
    saved(torch.randn(8, *shape))  # moves batch-norm statistics away from their initial values
    saved.eval()
    save_encoder(saved, tmp_path / "enc.safetensors")
    torch.manual_seed(1)
    loaded = encoder_from_config(
        EncoderConfig(name=name, init=str(tmp_path / "enc.safetensors"), **options), shape
    ).eval()
    x = torch.randn(4, *shape)
    assert torch.equal(loaded(x), saved(x))
    assert not torch.equal(make_encoder(name, shape, **options).eval()(x), saved(x))  # not equal by accident


def test_shape_mismatch_names_both_shapes(tmp_path):
    save_encoder(make_encoder("impala", (1, 8, 8)), tmp_path / "enc.safetensors")
    with pytest.raises(ConfigError) as caught:
        encoder_from_config(EncoderConfig(name="impala", init=str(tmp_path / "enc.safetensors")), (4, 8, 8))
    assert "(16, 1, 3, 3)" in str(caught.value) and "(16, 4, 3, 3)" in str(caught.value)
    with pytest.raises(ConfigError, match="does not exist"):
        encoder_from_config(EncoderConfig(name="impala", init=str(tmp_path / "nothing")), (1, 8, 8))
    with pytest.raises(ConfigError, match="no tensor"):
        encoder_from_config(EncoderConfig(name="mlp", init=str(tmp_path / "enc.safetensors")), (4,))


def test_freeze_keeps_batch_norm_in_eval_mode():
    encoder = encoder_from_config(EncoderConfig(name="mlp", norm="batch", freeze=True), (4,))
    torch.nn.Sequential(encoder).train()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


def test_init_from_a_dqn_run_folder(tiny_run):
    run_dir, _ = tiny_run
    tensors = checkpoint.load(checkpoint.latest(run_dir / "checkpoints")).tensors
    encoder = encoder_from_config(EncoderConfig(name="mlp", hidden_sizes=(32, 32), init=str(run_dir)), (4,))
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, tensors[f"q.encoder.{key}"])


def test_frozen_pretrained_encoder_stays_fixed_in_a_dqn_run(tmp_path):
    torch.manual_seed(3)
    pretrained = make_encoder("mlp", (4,), (32, 32))
    save_encoder(pretrained, tmp_path / "enc.safetensors")
    ok(
        invoke(
            train_args(
                tmp_path / "runs",
                400,
                eval_frequency=0,
                **{"encoder.init": tmp_path / "enc.safetensors", "encoder.freeze": "true"},
            )
        )
    )
    ckpt = checkpoint.load(checkpoint.latest(only_run(tmp_path / "runs") / "checkpoints"))
    assert ckpt.state["num_updates"] > 0  # the head did train
    for key, value in load_file(str(tmp_path / "enc.safetensors")).items():
        assert torch.equal(ckpt.tensors[f"q.encoder.{key}"], value) and torch.equal(
            ckpt.tensors[f"target.encoder.{key}"], value
        )


def test_cli_shape_mismatch_exits_2(tmp_path):
    save_encoder(make_encoder("mlp", (8,), (32, 32)), tmp_path / "enc.safetensors")
    result = invoke(train_args(tmp_path / "runs", 200, **{"encoder.init": tmp_path / "enc.safetensors"}))
    assert result.exit_code == 2
    assert "(32, 8)" in result.stderr and "(32, 4)" in result.stderr and result.stderr.count("\n") == 1


def test_dqn_trains_with_a_transformer_encoder_by_config(tmp_path):
    args = train_args(
        tmp_path / "runs",
        300,
        eval_frequency=0,
        **{"encoder.name": "transformer", "encoder.d_model": 16, "encoder.num_heads": 2, "encoder.num_layers": 1},
    )
    ok(invoke(args))
    tensors = checkpoint.load(checkpoint.latest(only_run(tmp_path / "runs") / "checkpoints")).tensors
    assert tensors["q.encoder.pos"].shape == (1, 5, 16)  # [CLS] + one token per CartPole feature
    assert "q.encoder.blocks.0.qkv.weight" in tensors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none")
def test_encoders_match_on_cuda():
    for name, shape, options, _ in CASES:
        torch.manual_seed(0)
        encoder = make_encoder(name, shape, **options).eval()
        x = torch.rand(2, *shape)
        assert torch.allclose(encoder(x), encoder.cuda()(x.cuda()).cpu(), atol=1e-4), name


@pytest.mark.parametrize("activation, kind", [("relu", torch.nn.ReLU), ("tanh", torch.nn.Tanh)])
def test_mlp_activation_is_the_configured_one(activation, kind):
    """encoder.activation: every hidden layer of the MLP is followed by that nonlinearity, and no other."""
    encoder = make_encoder("mlp", (4,), (16, 8), activation=activation)
    nonlinear = [m for m in encoder.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.Tanh))]
    assert len(nonlinear) == 2 and all(type(m) is kind for m in nonlinear)


def test_amp_auto_is_bf16_only_for_convolutional_encoders_on_a_cpu_with_native_bf16(monkeypatch):
    from agents import accel

    cnn, mlp = make_encoder("nature_cnn", (4, 36, 36)), make_encoder("mlp", (4,))
    assert accel.network_amp("auto", cnn) == "auto" and accel.network_amp("auto", mlp) == "none"
    assert accel.network_amp("bf16", mlp) == "bf16" and accel.network_amp("none", cnn) == "none"
    x = torch.randn(2, 3)
    layer = torch.nn.Linear(3, 3)
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(accel, "native_bf16", lambda native=native: native)
        with accel.autocast("auto", "cpu"):
            assert layer(x).dtype == dtype
    with accel.autocast("auto", "cuda"):  # on a GPU auto stays fp32 (not measured there)
        assert layer(x).dtype == torch.float32
