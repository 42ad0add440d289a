"""PPO/A2C contracts: the loss by hand, action masks, save/load, same-seed determinism, `rl eval`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import invoke, ok, only_run, scalars
from gymnasium import spaces

from agents import checkpoint, ppo, registry
from agents import run as run_lib
from agents.pg import logprob_and_entropy, ppo_loss
from agents.rollout import masked_logits, sample_actions

TINY = [
    "num_envs=2",
    "num_steps=16",
    "num_minibatches=2",
    "update_epochs=2",
    "encoder.hidden_sizes=16,16",
    "eval_frequency=0",
    "log_frequency=32",
    "checkpoint_frequency=0",
    "progress=false",
    "torch_threads=1",
    "device=cpu",
]


def _train(tmp_path, algo="ppo", env="CartPole-v1", steps=128, seed=1, extra=()):
    cfg = registry.resolve(
        algo,
        env,
        "cartpole",
        overrides=[*TINY, f"total_timesteps={steps}", f"seed={seed}", f"runs_dir={tmp_path}", *extra],
    )
    run = run_lib.start(algo, cfg, env)
    try:
        return cfg, run.dir, ppo.train(cfg, run)
    finally:
        run.close()


def test_ppo_loss_by_hand():
    adv = torch.tensor([1.0, -1.0, 2.0])
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 1.5, 0.95]))  # ratios 1.5, 1.5, 0.95
    zeros = torch.zeros(3)
    loss, stats = ppo_loss(
        new, old, adv, zeros, zeros, zeros, zeros, clip_coef=0.2, clip_vloss=False, ent_coef=0.0, vf_coef=0.5
    )
    # max(-A r, -A clip(r)): A=1: max(-1.5, -1.2) = -1.2; A=-1: max(1.5, 1.2) = 1.5; A=2: max(-1.9, -1.9) = -1.9
    assert stats["losses/policy_loss"].item() == pytest.approx((-1.2 + 1.5 - 1.9) / 3)
    assert stats["losses/clipfrac"].item() == pytest.approx(2 / 3)
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 1.9) / 3)
    # no clipping (A2C): -mean(A r)
    _, stats = ppo_loss(new, old, adv, zeros, zeros, zeros, zeros, 0.0, False, 0.0, 0.5)
    assert stats["losses/policy_loss"].item() == pytest.approx(-(1.5 - 1.5 + 1.9) / 3)
    # value loss 0.5 mean((V - R)^2), clipped around the old value: V 3 from old 0 with eps .2 -> .2
    v_new, returns, v_old = torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([0.0])
    one = torch.zeros(1)
    _, stats = ppo_loss(one, one, one, one, v_new, v_old, returns, 0.2, False, 0.0, 0.5)
    assert stats["losses/value_loss"].item() == pytest.approx(0.5 * 4.0)
    _, stats = ppo_loss(one, one, one, one, v_new, v_old, returns, 0.2, True, 0.0, 0.5)
    assert stats["losses/value_loss"].item() == pytest.approx(0.5 * max(4.0, 0.8**2))
    # total: policy - ent_coef * entropy + vf_coef * value
    loss, _ = ppo_loss(one, one, one, torch.tensor([2.0]), v_new, v_old, returns, 0.2, False, 0.1, 0.5)
    assert loss.item() == pytest.approx(0.0 - 0.1 * 2.0 + 0.5 * 2.0)  # advantage 0: no policy term


def test_a2c_loss_gradient_is_the_policy_gradient():
    """At ratio 1 the unclipped surrogate's gradient is -A grad log pi (Mnih et al. 2016)."""
    logits = torch.tensor([[0.3, -0.2, 0.5]], requires_grad=True)
    action, adv = torch.tensor([2]), torch.tensor([1.7])
    new_logprob, entropy = logprob_and_entropy(logits, action)
    zeros = torch.zeros(1)
    loss, _ = ppo_loss(new_logprob, new_logprob.detach(), adv, entropy, zeros, zeros, zeros, 0.0, False, 0.0, 0.5)
    (grad,) = torch.autograd.grad(loss, logits)
    expected = -adv * (torch.nn.functional.one_hot(action, 3) - torch.softmax(logits, 1))  # -A d log pi(a) / d logits
    assert torch.allclose(grad, expected.detach())


def test_sampling_never_picks_a_masked_action():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4096, 5, generator=g) * 5
    mask = torch.rand(4096, 5, generator=g) < 0.4
    mask[torch.arange(4096), torch.randint(5, (4096,), generator=g)] = True  # at least one legal action each
    actions, logprobs = sample_actions(masked_logits(logits, mask), g)
    assert mask[torch.arange(4096), actions].all()
    assert torch.isfinite(logprobs).all()
    _, entropy = logprob_and_entropy(masked_logits(logits, mask), actions)
    assert torch.isfinite(entropy).all() and (entropy[mask.sum(1) == 1] == 0).all()


class MaskedEnv:
    """A fake VecEnv whose legal actions change every step (info["action_mask"] in reset and step) and
    that counts illegal actions it receives; episodes end by termination or truncation."""

    def __init__(self, num_envs: int, seed: int):
        self.num_envs, self.frame_stack, self.name, self.family = num_envs, 1, "Masked", "masked"
        self.single_observation_space = spaces.Box(-1, 1, (6,), np.float32)
        self.single_action_space = spaces.Discrete(6)
        self.rng = np.random.default_rng(seed)
        self.illegal = 0
        self.t = np.zeros(num_envs, dtype=int)
        self.ended = np.zeros(num_envs, dtype=bool)

    def _mask(self) -> np.ndarray:
        mask = self.rng.random((self.num_envs, 6)) < 0.5
        mask[np.arange(self.num_envs), self.rng.integers(6, size=self.num_envs)] = True
        self.mask = mask
        return mask

    def reset(self, seed=None):
        self.t[:] = 0
        return self.mask_obs(), {"action_mask": self._mask(), "life_lost": np.zeros(self.num_envs, dtype=bool)}

    def mask_obs(self) -> np.ndarray:
        return (
            np.where(self.mask, 1.0, -1.0).astype(np.float32)
            if hasattr(self, "mask")
            else np.zeros((self.num_envs, 6), np.float32)
        )

    def step(self, actions):
        legal = self.mask[np.arange(self.num_envs), actions]
        self.illegal += int((~legal & ~self.ended).sum())  # the autoreset step ignores its action
        reward = np.where(legal & ~self.ended, 1.0, 0.0).astype(np.float32)
        self.t = np.where(self.ended, 0, self.t + 1)
        terminated = ~self.ended & (self.rng.random(self.num_envs) < 0.05)
        truncated = ~self.ended & ~terminated & (self.t >= 20)
        self.ended = terminated | truncated
        self._mask()
        return (
            self.mask_obs(),
            reward,
            terminated,
            truncated,
            {"action_mask": self.mask, "life_lost": np.zeros(self.num_envs, dtype=bool)},
        )

    def close(self):
        pass


def test_training_with_action_masks_never_sends_an_illegal_action(tmp_path, monkeypatch):
    made: list[MaskedEnv] = []

    def make(name, num_envs=1, seed=0, **options):
        made.append(MaskedEnv(num_envs, seed))
        return made[-1]

    monkeypatch.setattr(ppo.envs, "make", make)
    _, run_dir, summary = _train(tmp_path, steps=512, extra=["eval_frequency=256", "eval_episodes=2"])
    assert summary["step"] == 512 and summary["num_updates"] == 16
    assert made[0].illegal == 0
    assert all(np.isfinite(v) for _, v in scalars(run_dir)["losses/entropy"])


def test_save_load_gives_identical_action_probabilities(tmp_path, monkeypatch):
    made = []
    real = ppo.make_agent
    monkeypatch.setattr(ppo, "make_agent", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    cfg, run_dir, _ = _train(tmp_path, steps=96)
    trained = made[0]
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    import envs

    env = envs.make("CartPole-v1", 4, 0)
    obs, _ = env.reset(seed=3)
    with torch.no_grad():
        expected = torch.softmax(trained(torch.as_tensor(obs))[0], 1).numpy()
    assert np.array_equal(ppo.action_scores(cfg, ckpt, env, torch.device("cpu"))(obs), expected)
    assert not np.allclose(expected, 0.5, atol=1e-3)  # trained weights, not a uniform policy
    greedy = ppo.load_policy(
        cfg.__class__(**{**cfg.__dict__, "eval_greedy": True}), ckpt, env, torch.device("cpu"), 0.0, 0
    )
    assert np.array_equal(greedy(obs), expected.argmax(1))


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_one_seed_twice_gives_identical_losses(tmp_path, algo):
    runs = [_train(tmp_path / str(i), algo=algo, steps=160)[1] for i in range(2)]
    first, second = (scalars(r) for r in runs)
    for tag in (
        "losses/policy_loss",
        "losses/value_loss",
        "losses/entropy",
        "losses/approx_kl",
        "charts/episodic_return",
    ):
        assert first[tag] == second[tag] and len(first[tag]) >= 2, tag
    other = scalars(_train(tmp_path / "other", algo=algo, steps=160, seed=2)[1])
    assert other["losses/value_loss"] != first["losses/value_loss"]


def test_rl_train_and_eval_a_ppo_run(tmp_path):
    args = ["train", "a2c", "--env", "CartPole-v1", "--steps", "320", "--device", "cpu"]
    for item in [*TINY, f"runs_dir={tmp_path}", "eval_frequency=160", "eval_episodes=2"]:
        args += ["--set", item]
    out = ok(invoke(args))
    assert "finished at step 320" in out
    run_dir = only_run(tmp_path)
    tags = scalars(run_dir)
    for tag in (
        "losses/policy_loss",
        "losses/value_loss",
        "losses/entropy",
        "losses/approx_kl",
        "losses/clipfrac",
        "charts/SPS",
        "charts/learning_rate",
        "charts/episodic_return",
        "eval/episodic_return",
    ):
        assert tag in tags, tag
    import json

    summary = json.loads(ok(invoke(["eval", run_dir, "--episodes", "3", "--json", "--device", "cpu"])))
    assert summary["episodes"] == 3 and summary["step"] == 320 and 8 <= summary["min"] <= summary["max"] <= 500


def test_ppo_on_go_trains_evaluates_and_watches_with_legal_moves_only(tmp_path):
    """The real Go env raises on any illegal move, so a finished run, an evaluation and a video show that the
    mask reaches the policy in training, in run_episodes and in rl watch; eval/optimal_return is tabular-only."""
    args = [
        "train",
        "ppo",
        "--env",
        "Go5",
        "--steps",
        "256",
        "--device",
        "cpu",
        "--set",
        f"runs_dir={tmp_path}",
        "--set",
        "num_envs=4",
        "--set",
        "num_steps=32",
        "--set",
        "encoder.tower_channels=8",
        "--set",
        "encoder.tower_blocks=1",
        "--set",
        "eval_frequency=256",
        "--set",
        "eval_episodes=4",
        "--set",
        "progress=false",
        "--set",
        "torch_threads=1",
        "--set",
        "go.eval_games=2",
        "--set",
        "go.eval_opponents=random",
    ]
    ok(invoke(args))
    run_dir = only_run(tmp_path)
    tags = scalars(run_dir)
    ((step, value),) = tags["eval/episodic_return"]
    assert step == 256 and -1.0 <= value <= 1.0  # Go's reward: +1 win, -1 loss, only at the game's end
    assert "eval/optimal_return" not in tags
    out = ok(invoke(["eval", run_dir, "--episodes", "4", "--json", "--device", "cpu"]))
    assert '"episodes": 4' in out
    video = tmp_path / "go.gif"
    ok(invoke(["watch", run_dir, "--video", video, "--device", "cpu"]))
    import imageio.v3 as iio

    frames = iio.imread(video)
    assert frames.ndim == 4 and frames.shape[0] >= 3 and frames.shape[-1] == 3  # one board per move, in colour
    # The trained policy behind GTP: genmove answers legal vertices; a board of another size is refused.
    from typer.testing import CliRunner

    from agents.cli import app

    commands = "boardsize 5\ngenmove b\nplay w C3\ngenmove b\nlist_stones black\nboardsize 9\ngenmove w\nquit\n"
    out = CliRunner().invoke(app, ["gtp", "--agent", str(run_dir)], input=commands).stdout
    replies = [r for r in out.split("\n\n") if r.strip()]
    assert all(r.startswith("=") for r in replies[:5]), out
    first, second = replies[1][2:].strip(), replies[3][2:].strip()
    assert first != "C3" and second not in ("C3", first)  # occupied points are illegal
    assert set(replies[4][2:].split()) == {first, second} - {"pass"}
    assert replies[6].startswith("? this agent was trained on 5x5")
