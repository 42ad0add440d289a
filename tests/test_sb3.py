"""--impl sb3: SB3's agents with our config, in our run layout, under our tag names."""

from __future__ import annotations

import pytest
import torch
import yaml

pytest.importorskip("stable_baselines3", reason="--impl sb3 needs the sb3 extra (in dev)")

from conftest import TINY, invoke, ok, only_run, scalars  # noqa: E402

from agents import registry
from agents.sb3 import make_sb3_env, sb3_model  # noqa: E402


def sb3_args(runs_dir, algo, steps, **overrides):
    common = {
        "runs_dir": str(runs_dir),
        "progress": "false",
        "torch_threads": 1,
        "eval_frequency": steps // 2,
        "eval_episodes": 2,
        **overrides,
    }
    args = ["train", algo, "--env", "CartPole-v1", "--steps", steps, "--device", "cpu", "--impl", "sb3"]
    for key, value in common.items():
        args += ["--set", f"{key}={value}"]
    return args


def test_dqn_config_maps_onto_sb3():
    cfg = registry.resolve("dqn", "CartPole-v1", "cartpole", overrides=["num_envs=2", "train_frequency=8", "n_step=3"])
    env = make_sb3_env(cfg, cfg.num_envs, cfg.seed)
    model, ignored = sb3_model("dqn", cfg, env, torch.device("cpu"))
    env.close()
    assert (model.learning_rate, model.buffer_size, model.batch_size, model.gradient_steps, model.n_steps) == (
        cfg.learning_rate,
        cfg.buffer_size,
        cfg.batch_size,
        cfg.gradient_steps,
        3,
    )
    assert model.train_freq.frequency == 4  # ours counts env steps over both envs, SB3 counts vector steps
    assert model.exploration_final_eps == cfg.end_e and model.target_update_interval == cfg.target_network_frequency
    assert [m.out_features for m in model.q_net.q_net if isinstance(m, torch.nn.Linear)] == [256, 256, 2]
    assert ignored == []
    _, ignored = sb3_model(
        "dqn",
        registry.resolve("dqn", "CartPole-v1", "x", overrides=["dueling=true"]),
        make_sb3_env(cfg, 1, 0),
        torch.device("cpu"),
    )
    assert any("dueling" in note for note in ignored) and any("loss=mse" in note for note in ignored)


def test_dqn_sb3_smoke_run_logs_our_tags(tmp_path):
    steps = 1_000
    out = ok(
        invoke(
            sb3_args(
                tmp_path,
                "dqn",
                steps,
                learning_starts=200,
                train_frequency=4,
                gradient_steps=1,
                target_network_frequency=50,
                batch_size=32,
                **{"encoder.hidden_sizes": TINY["encoder.hidden_sizes"]},
            )
        )
    )
    run_dir = only_run(tmp_path)
    assert "__dqn-sb3__1__" in run_dir.name and "finished at step 1,000" in out
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["impl"] == "sb3" and saved["algo"] == "dqn" and saved["learning_starts"] == 200
    tags = scalars(run_dir)
    assert {
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "charts/epsilon",
        "losses/td_loss",
        "eval/episodic_return",
    } <= set(tags)
    # raw CartPole scores: the return of a game is its length
    assert [v for _, v in tags["charts/episodic_return"]] == [v for _, v in tags["charts/episodic_length"]]
    assert [s for s, _ in tags["eval/episodic_return"]] == [500, 1000]
    assert (run_dir / "sb3_model.zip").exists()
    bad = invoke(["eval", run_dir])
    assert bad.exit_code == 2 and "Stable-Baselines3 run" in bad.stderr


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_policy_gradient_config_maps_onto_sb3(activation):
    """SB3's MlpPolicy gets our widths and activation (its own default would be tanh whatever we say), and half our
    vf_coef: SB3's value loss is the mean squared error, ours half of it, so the objectives are the same."""
    cfg = registry.resolve("a2c", "CartPole-v1", "cartpole", overrides=[f"encoder.activation={activation}"])
    env = make_sb3_env(cfg, cfg.num_envs, cfg.seed)
    model, _ = sb3_model("a2c", cfg, env, torch.device("cpu"))
    env.close()
    layers = list(model.policy.mlp_extractor.policy_net)
    assert [m.out_features for m in layers if isinstance(m, torch.nn.Linear)] == list(cfg.encoder.hidden_sizes)
    assert all(isinstance(m, {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[activation]) for m in layers[1::2])
    assert model.vf_coef == cfg.vf_coef / 2 and model.n_steps == cfg.num_steps


@pytest.mark.parametrize("algo, tag", [("ppo", "losses/clipfrac"), ("a2c", "losses/policy_loss")])
def test_policy_gradient_sb3_smoke_runs(tmp_path, algo, tag):
    ok(invoke(sb3_args(tmp_path, algo, 1_024, num_envs=2, num_steps=64 if algo == "ppo" else 5)))
    tags = scalars(only_run(tmp_path))
    assert {"charts/episodic_return", "losses/value_loss", "losses/entropy", tag} <= set(tags)
    assert all(v > 0 for _, v in tags["losses/entropy"])  # SB3's entropy_loss is -entropy: flipped back


def test_bad_impl_and_resume(tmp_path):
    bad = invoke(["train", "dqn", "--env", "CartPole-v1", "--impl", "sb4"])
    assert bad.exit_code == 2 and "ours or sb3" in bad.stderr
    bad = invoke(["train", "dqn", "--impl", "sb3", "--resume", tmp_path])
    assert bad.exit_code == 2 and "--impl ours only" in bad.stderr
