"""Recurrent PPO (agents/ppo_lstm.py): memory resets at episode starts, the update replays exactly what acting
saw, save/load over a sequence, `rl train/eval` by config, and the transformer encoder in PPO."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import invoke, ok, only_run, scalars

import envs
from agents import checkpoint, ppo_lstm, registry
from agents import config as config_lib
from agents import run as run_lib
from agents.encoders import LSTMEncoder
from agents.evaluate import run_episodes

TINY = [
    "num_envs=3",
    "num_steps=16",
    "num_minibatches=3",
    "update_epochs=2",
    "encoder.name=lstm",
    "encoder.lstm_hidden=16",
    "encoder.hidden_sizes=16",
    "eval_frequency=0",
    "log_frequency=48",
    "checkpoint_frequency=0",
    "progress=false",
    "torch_threads=1",
    "device=cpu",
]


def _train(tmp_path, steps=144, extra=()):
    cfg = registry.resolve(
        "ppo",
        "CartPoleNoVel-v1",
        "cartpolenovel",
        overrides=[*TINY, f"total_timesteps={steps}", f"runs_dir={tmp_path}", *extra],
    )
    run = run_lib.start("ppo", cfg, "CartPoleNoVel-v1")
    try:
        return cfg, run.dir, ppo_lstm.train(cfg, run)
    finally:
        run.close()


def _agent(hidden=8):
    torch.manual_seed(0)
    cfg = registry.resolve("ppo", "CartPoleNoVel-v1", "cartpolenovel", overrides=[f"encoder.lstm_hidden={hidden}"])
    return ppo_lstm.make_agent(cfg, (2,), 2)


def test_state_resets_exactly_at_episode_starts():
    """A start at step t gives the same outputs from t on as a fresh sequence from a zero state, whatever came
    before; without a start the memory carries (different outputs); step-by-step acting equals the replay."""
    agent = _agent()
    T, N = 6, 2
    obs = torch.randn(T, N, 2)
    state = tuple(torch.randn(2, N, 8) for _ in range(2))  # policy and value LSTMs
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[3, 0] = True
    with torch.no_grad():
        logits, values, _ = agent(obs, state, starts)
        fresh_logits, fresh_values, _ = agent(obs[3:, :1], agent.initial_state(1), torch.zeros(3, 1, dtype=torch.bool))
        carried_logits, carried_values, _ = agent(obs, state, torch.zeros(T, N, dtype=torch.bool))
        s, stepped = state, []
        for t in range(T):
            out, _, s = agent(obs[t : t + 1], s, starts[t : t + 1])
            stepped.append(out)
    assert torch.allclose(logits[3:, :1], fresh_logits, atol=1e-6) and torch.allclose(
        values[3:, :1], fresh_values, atol=1e-6
    )
    assert not torch.allclose(carried_values[3:, :1], fresh_values, atol=1e-4)  # the memory mattered before the reset
    assert torch.allclose(logits[:3], carried_logits[:3]) and torch.allclose(logits[:, 1], carried_logits[:, 1])
    assert torch.allclose(torch.cat(stepped), logits, atol=1e-6)


def test_update_replays_the_rollout_as_acting_saw_it(tmp_path, monkeypatch):
    """Before the first optimizer step of each update, the minibatch's log-probabilities and values replayed from
    the rollout's saved initial state (resets inside the segment included) equal those recorded while acting:
    ratio 1, exactly what PPO's surrogate assumes. Episodes end inside segments (CartPole at random: ~20 steps)."""
    calls = []
    real_loss, real_update = ppo_lstm.ppo_loss, ppo_lstm.update

    def update(*args, **kwargs):
        calls.append([])
        return real_update(*args, **kwargs)

    monkeypatch.setattr(ppo_lstm, "update", update)
    monkeypatch.setattr(
        ppo_lstm,
        "ppo_loss",
        lambda *a, **k: calls[-1].append([x.detach().clone() for x in a[:7]]) or real_loss(*a, **k),
    )
    _, run_dir, summary = _train(tmp_path, steps=144)
    assert summary["num_updates"] == 3 and len(calls) == 3
    for minibatches in calls:
        assert len(minibatches) == 3 * 2  # 3 minibatches of one env, 2 epochs
        new_logprob, old_logprob, _, _, new_value, old_value, _ = minibatches[0]
        assert torch.allclose(new_logprob, old_logprob, atol=1e-5) and torch.allclose(new_value, old_value, atol=1e-5)
        later = minibatches[-1]  # after optimizer steps the policy has moved
        assert not torch.allclose(later[0], later[1], atol=1e-5)
    # autoreset steps were left out: episodes ended (and restarted) inside the replayed segments
    assert any(len(minibatches[0][0]) < 16 for minibatches in calls)
    assert scalars(run_dir)["charts/episodic_return"]


def test_save_load_gives_identical_action_probabilities_over_a_sequence(tmp_path, monkeypatch):
    made = []
    real = ppo_lstm.make_agent
    monkeypatch.setattr(ppo_lstm, "make_agent", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    cfg, run_dir, _ = _train(tmp_path, steps=96)
    trained = made[0]
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    env = envs.make("CartPoleNoVel-v1", 2, 0)
    scores = ppo_lstm.action_scores(cfg, ckpt, env, torch.device("cpu"))
    greedy = ppo_lstm.load_policy(
        cfg.__class__(**{**cfg.__dict__, "eval_greedy": True}), ckpt, env, torch.device("cpu"), 0.0, 0
    )
    obs, _ = env.reset(seed=3)
    state, seen, starts, ended = trained.initial_state(2), [], np.ones(2, dtype=bool), np.zeros(2, dtype=bool)
    for _ in range(40):  # random actions: episodes end and restart within the sequence
        with torch.no_grad():
            logits, _, state = trained(torch.as_tensor(obs)[None], state, torch.as_tensor(starts)[None])
        expected = torch.softmax(logits[0], 1).numpy()
        assert np.allclose(scores(obs, episode_starts=starts), expected, atol=1e-6)
        assert np.array_equal(greedy(obs, episode_starts=starts), expected.argmax(1))
        seen.append(expected)
        obs, _, terminated, truncated, _ = env.step(np.random.default_rng(len(seen)).integers(0, 2, 2))
        starts, ended = ended, terminated | truncated
    assert not np.allclose(np.array(seen), 0.5, atol=1e-3)  # trained weights, not a uniform policy


@pytest.mark.parametrize("final_state", [True, False])
def test_lstm_pieces_between_starts_equal_the_per_step_loop(final_state):
    """forward_sequence cuts columns at episode starts and runs the pieces as one batch (packed for an exact final
    state, padded without): outputs, final state and gradients equal a loop of one nn.LSTM call per step that zeroes
    the state at starts, for starts anywhere, none, or at step 0 only, with 2 layers."""
    torch.manual_seed(0)
    lstm = LSTMEncoder((3,), hidden_size=8, num_layers=2)
    T, N = 12, 4
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[[0, 3, 4, 11], [0, 1, 1, 3]] = True  # a reset at step 0, two in a row, one at the last step; env 2 none
    x = torch.randn(T, N, 3, requires_grad=True)
    state = (torch.randn(2, N, 8), torch.randn(2, N, 8))

    def loop(state):
        outputs = []
        for x_t, start_t in zip(x, starts):
            keep = (~start_t).float().view(1, -1, 1)
            y_t, state = lstm.lstm(x_t[None], (state[0] * keep, state[1] * keep))
            outputs.append(y_t)
        return torch.cat(outputs), state

    for cut in (starts, torch.zeros_like(starts), starts * (torch.arange(T) == 0).view(-1, 1)):
        starts = cut
        (y_ref, s_ref), (y, s) = loop(state), lstm.forward_sequence(x, state, starts, final_state=final_state)
        assert torch.allclose(y, y_ref, atol=1e-6)
        assert (s is None) == (not final_state and bool(cut[1:].any()))  # padded pieces leave no exact final state
        loss, loss_ref = y.square().sum(), y_ref.square().sum()
        if s is not None:
            assert torch.allclose(s[0], s_ref[0], atol=1e-6) and torch.allclose(s[1], s_ref[1], atol=1e-6)
            loss, loss_ref = loss + s[1].sum(), loss_ref + s_ref[1].sum()
        grads_ref = torch.autograd.grad(loss_ref, [x, *lstm.parameters()])
        grads = torch.autograd.grad(loss, [x, *lstm.parameters()])
        assert all(torch.allclose(g, g_ref, atol=1e-5) for g, g_ref in zip(grads, grads_ref))


def test_observation_normalizer_tracks_running_mean_and_variance():
    """ObsNorm's statistics after several batches equal those of all the observations seen at once (Chan et al.'s
    merge), the normalized observations then have mean 0 and std 1 (clipped at 10), and they are checkpointed
    buffers."""
    norm = ppo_lstm.ObsNorm((2,))
    batches = [torch.randn(n, 2) * torch.tensor([3.0, 0.05]) + torch.tensor([1.0, -0.2]) for n in (5, 64, 256)]
    for batch in batches:
        norm.update(batch)
    seen = torch.cat(batches)
    assert torch.allclose(norm.mean, seen.mean(0), atol=1e-4) and torch.allclose(
        norm.var, seen.var(0, unbiased=False), rtol=1e-3
    )
    z = norm(seen)
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=1e-3) and torch.allclose(z.std(0), torch.ones(2), atol=1e-2)
    assert norm(torch.tensor([[1e6, 0.0]]))[0, 0] == 10.0
    assert set(norm.state_dict()) == {"mean", "var", "count"}
    agent = _agent()
    assert {"obs_norm.mean", "obs_norm.var"} <= set(agent.state_dict())  # configs/ppo/cartpolenovel.yaml turns it on
    cfg = registry.resolve("ppo", "CartPoleNoVel-v1", "cartpolenovel", overrides=[])
    with pytest.raises(config_lib.ConfigError, match="encoder.obs_norm normalizes vector observations"):
        ppo_lstm.make_agent(cfg, (4, 84, 84), 6)


def test_run_episodes_tells_recurrent_policies_where_episodes_start():
    env = envs.make("CartPole-v1", 2, 0)
    log = []

    def policy(obs, episode_starts):
        log.append((obs.copy(), episode_starts.copy()))
        return np.zeros(len(obs), dtype=np.int64)  # always left: episodes of ~10 steps

    policy.recurrent = True
    run_episodes(env, policy, 4, seed=1)
    first_obs = envs.make("CartPole-v1", 2, 0).reset(seed=1)[0]
    assert log[0][1].all() and np.array_equal(log[0][0], first_obs)
    for i in range(2):
        start_steps = [k for k, (_, s) in enumerate(log) if s[i]]
        assert len(start_steps) >= 2
        # each start obs is a fresh CartPole state (all |x| < 0.05), the obs before it the final, fallen one
        for k in start_steps[1:]:
            assert np.abs(log[k][0][i]).max() < 0.05 and np.abs(log[k - 1][0][i][2]) > 0.2


def test_rl_train_ppo_lstm_by_config_then_eval_and_resume(tmp_path):
    args = ["train", "ppo", "--env", "CartPoleNoVel-v1", "--steps", "96", "--device", "cpu"]
    for item in [*TINY, f"runs_dir={tmp_path}", "eval_frequency=48", "eval_episodes=2", "checkpoint_frequency=48"]:
        args += ["--set", item]
    assert "finished at step 96" in ok(invoke(args))
    run_dir = only_run(tmp_path)
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    assert "agent.lstm.lstm.weight_hh_l0" in ckpt.tensors and ckpt.tensors["agent.actor.weight"].shape == (2, 16)
    assert "eval/episodic_return" in scalars(run_dir)
    summary = json.loads(ok(invoke(["eval", run_dir, "--episodes", "3", "--json", "--device", "cpu"])))
    assert summary["episodes"] == 3 and 8 <= summary["min"] <= summary["max"] <= 500
    assert "finished at step 192" in ok(
        invoke(["train", "ppo", "--resume", run_dir, "--steps", "192", "--device", "cpu"])
    )
    assert checkpoint.load(checkpoint.latest(run_dir / "checkpoints")).step == 192


def test_recurrent_minibatches_need_whole_envs(tmp_path):
    res = invoke(
        [
            "train",
            "ppo",
            "--env",
            "CartPoleNoVel-v1",
            "--steps",
            "96",
            "--set",
            "encoder.name=lstm",
            "--set",
            "num_envs=2",
            "--set",
            "num_minibatches=4",
            "--set",
            f"runs_dir={tmp_path}",
        ]
    )
    assert res.exit_code == 2 and "num_minibatches 4 must be <= num_envs 2" in res.stderr


def test_transformer_encoder_in_ppo_by_config(tmp_path):
    """encoder.name=transformer with its own options builds a TransformerEncoder body, trains and evaluates."""
    args = ["train", "ppo", "--env", "CartPole-v1", "--steps", "128", "--device", "cpu"]
    for item in [
        "num_envs=2",
        "num_steps=32",
        "num_minibatches=2",
        "update_epochs=1",
        "encoder.name=transformer",
        "encoder.d_model=16",
        "encoder.num_heads=2",
        "encoder.num_layers=1",
        "log_frequency=64",
        "eval_frequency=128",
        "eval_episodes=2",
        "progress=false",
        "torch_threads=1",
        f"runs_dir={tmp_path}",
    ]:
        args += ["--set", item]
    assert "finished at step 128" in ok(invoke(args))
    run_dir = only_run(tmp_path)
    tensors = checkpoint.load(checkpoint.latest(run_dir / "checkpoints")).tensors
    assert (
        tensors["agent.encoder.blocks.0.qkv.weight"].shape == (48, 16)
        and "agent.encoder.blocks.1.qkv.weight" not in tensors
    )
    assert all(np.isfinite(v) for _, v in scalars(run_dir)["losses/value_loss"])
    summary = json.loads(ok(invoke(["eval", run_dir, "--episodes", "2", "--json", "--device", "cpu"])))
    assert summary["episodes"] == 2


def _train_novel(job: tuple[str, int]) -> dict:
    import tempfile

    encoder, seed = job
    overrides = [
        f"seed={seed}",
        "total_timesteps=30000",
        "eval_frequency=5000",
        "checkpoint_frequency=0",
        "progress=false",
        "device=cpu",
        "torch_threads=1",
        f"runs_dir={tempfile.mkdtemp()}",
    ]
    if encoder == "mlp":
        overrides += ["encoder.name=mlp", "encoder.hidden_sizes=64,64"]
    cfg = registry.resolve("ppo", "CartPoleNoVel-v1", "cartpolenovel", overrides=overrides)
    run = run_lib.start("ppo", cfg, "CartPoleNoVel-v1")
    try:
        return registry.implementation("ppo", cfg).train(cfg, run)
    finally:
        run.close()


@pytest.mark.slow
def test_recurrent_ppo_remembers_what_feed_forward_ppo_cannot_see():
    """CartPoleNoVel-v1 (no velocities): configs/ppo/cartpolenovel.yaml cut to 30k steps (86 s on this 2-core host
    loaded by other jobs; ~1000 steps/s a process alone, so ~45 s on an idle one), greedy
    evaluations of 10 episodes every 5k steps. Measured here, best eval by 30k: LSTM 435 and 456 on seeds 1 and 2
    (seeds 3 and 4: 500 and 500), the same PPO with a 64-64 MLP 51 (it cannot tell which way the pole moves; 42-49
    on seeds 1 and 3 up to 50k). Both recurrent seeds must pass 300, the feed-forward one stay under 100."""
    import concurrent.futures as futures
    import multiprocessing as mp

    with futures.ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as pool:
        *recurrent, feed_forward = pool.map(_train_novel, [("lstm", 1), ("lstm", 2), ("mlp", 1)])
    best = [max(r for _, r in res["evals"]) for res in (*recurrent, feed_forward)]
    assert min(best[:2]) >= 300 and best[2] <= 100, (
        f"recurrent {[r['evals'] for r in recurrent]}, feed-forward {feed_forward['evals']}"
    )
