"""DQN with prioritized replay (Schaul et al. 2016): the errors it re-prioritizes by, by hand; a short CartPole run;
an exact resume; and a resume that asks for priorities its checkpoint does not hold."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import copy_run, invoke, ok, only_run, scalars, train_args
from test_run import _Recorder, _same_weights, timeless
from torch import nn

import agents.dqn
from agents import checkpoint
from agents.dqn import DQNConfig, update
from agents.prioritized import PrioritizedFrameReplay, beta_schedule
from agents.replay import ReplaySample

PRIORITIZED = dict(prioritized="true", loss="mse", checkpoint_replay="true", eval_frequency=0)


# ---------------------------------------------------------------------------------------------- errors by hand
class TableQ(nn.Module):
    """Q(s, .) = table[s] for one-hot states; with a support (C51), log p(s, .) = log_softmax(logits[s])."""

    def __init__(self, table: list, support: torch.Tensor | None = None):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table))  # (S, A), or (S, A, atoms) logits with a support
        self.support = support

    def dist(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bs,sak->bak", obs, self.table).log_softmax(dim=2)  # (B, A, atoms)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.support is None:
            return obs @ self.table  # (B, A)
        return (self.dist(obs).exp() * self.support).sum(dim=2)  # (B, A)


def _one_hot_batch(s_tm1, a_tm1, r_t, discount_t, s_t, states: int = 3) -> ReplaySample:
    eye = torch.eye(states)
    return ReplaySample(eye[s_tm1], torch.tensor(a_tm1), torch.tensor(r_t), torch.tensor(discount_t), eye[s_t])


def _update(table, config: DQNConfig, batch: ReplaySample, support=None):
    q_network, target_network = TableQ(table, support), TableQ(table, support)
    return update(q_network, target_network, torch.optim.SGD(q_network.parameters(), lr=0.1), batch, config)


@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_scalar_errors_are_the_absolute_td_errors_not_the_loss(loss):
    table = [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]  # Q(s, a), the same for the online and the target net
    # (s0, a1): Q 2, target 1 + 0.5 max Q(s2) = 2.5; (s1, a0): Q 0.5, target 4 + 0.9 * 2 = 5.8; (s2, a0): Q 3,
    # terminal target -2
    batch = _one_hot_batch([0, 1, 2], [1, 0, 0], [1.0, 4.0, -2.0], [0.5, 0.9, 0.0], [2, 0, 1])
    out = _update(table, DQNConfig(loss=loss), batch)
    td_errors = torch.tensor([0.5, 5.3, 5.0])
    torch.testing.assert_close(out.error, td_errors)
    expected_loss = torch.tensor([0.125, 4.8, 4.5]) if loss == "huber" else td_errors**2  # Huber: |d| - 0.5 past 1
    torch.testing.assert_close(out.per_sample, expected_loss)

    replay = PrioritizedFrameReplay(4, 1, (1,), torch.float32)  # rows 0..2 hold a transition each, row 3 pending
    replay.add_first([[0.0]])
    for k in range(3):
        replay.add([0], [0.0], [False], [False], [[k + 1.0]], [False])
    replay.update_priorities(torch.tensor([0, 1, 2]), out.error)  # what train does: p = (|d| + eps)^alpha
    np.testing.assert_allclose(replay.tree.priorities[:3], (td_errors.numpy() + 1e-6) ** 0.5, rtol=1e-6)


def test_c51_errors_are_the_cross_entropy():
    # support (0, 1); both transitions terminal, so the target puts all its mass on r: atom 1, then atom 0
    logits = [[[math.log(3.0), 0.0]] * 2] * 3  # p = (0.75, 0.25) for every state and action
    batch = _one_hot_batch([0, 1], [0, 1], [1.0, 0.0], [0.0, 0.0], [2, 2])
    config = DQNConfig(distributional=True, num_atoms=2, v_min=0.0, v_max=1.0)
    out = _update(logits, config, batch, support=torch.tensor([0.0, 1.0]))
    cross_entropy = torch.tensor([math.log(4.0), math.log(4 / 3)])  # -log 0.25, -log 0.75
    torch.testing.assert_close(out.error, cross_entropy)
    torch.testing.assert_close(out.per_sample, cross_entropy)


# ---------------------------------------------------------------------------------------------- a short run
def test_prioritized_cartpole_run_reprioritizes_by_td_error(tmp_path, monkeypatch):
    steps = 1500
    updates, reprioritized = [], []  # (weight, UpdateOut) of each update; (replay, index, errors) of each re-priority
    real_update, real_reprioritize = agents.dqn.update, PrioritizedFrameReplay.update_priorities

    def recording_update(q_network, target_network, optimizer, batch, config, weight=None):
        out = real_update(q_network, target_network, optimizer, batch, config, weight)
        updates.append((weight, out))
        return out

    def recording_reprioritize(replay, index, errors):
        reprioritized.append((replay, index.clone(), errors.clone()))
        real_reprioritize(replay, index, errors)

    monkeypatch.setattr(agents.dqn, "update", recording_update)
    monkeypatch.setattr(PrioritizedFrameReplay, "update_priorities", recording_reprioritize)
    ok(invoke(train_args(tmp_path, steps, learning_starts=200, **PRIORITIZED)))
    run_dir = only_run(tmp_path)
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))

    # every update is weighted by importance weights (max 1, not all 1) and re-prioritizes its batch by |TD error|
    assert len(updates) == len(reprioritized) == ckpt.state["num_updates"] > 200
    assert all(weight is not None and weight.max() == 1.0 for weight, _ in updates)
    assert min(float(weight.min()) for weight, _ in updates) < 0.9
    for (_, out), (_, _, errors) in zip(updates, reprioritized):
        assert torch.equal(errors, out.error)
        torch.testing.assert_close(errors**2, out.per_sample)  # mse: the loss is the squared error

    replay, index, errors = reprioritized[-1]
    assert all(r is replay for r, _, _ in reprioritized)
    # the last update came after the last env step: its leaves hold exactly (|d| + eps)^alpha
    np.testing.assert_allclose(replay.tree.priorities[index.numpy()], (errors.numpy() + 1e-6) ** 0.5, rtol=1e-6)
    valid = replay.valid_mask().flatten().numpy()
    priorities = replay.tree.priorities[valid]
    assert (priorities > 0).all() and len(np.unique(priorities)) > 100
    assert (priorities < replay.tree.max_priority).mean() > 0.5  # most no longer hold the max a new one gets

    beta = scalars(run_dir)["charts/priority_beta"]
    assert len(beta) >= 10 and beta[-1] == (steps, 1.0)
    assert all(value == pytest.approx(beta_schedule(0.4, step, steps)) for step, value in beta)
    assert {"priority.npy", "priority.json"} <= {p.name for p in (ckpt.path / "replay").iterdir()}


# ---------------------------------------------------------------------------------------------- resume
def _recorded(args) -> _Recorder:
    """test_run's recorder, whose FrameReplay.sample spy PrioritizedFrameReplay.sample overrides: the same record
    (sampling RNG state, online and target weights); and the priorities of each replay loaded from a checkpoint."""
    real_sample, real_load = PrioritizedFrameReplay.sample, PrioritizedFrameReplay.load

    def sample(replay, batch_size, generator, beta):
        weights = [{n: p.detach().clone() for n, p in net.state_dict().items()} for net in rec.nets[-2:]]
        rec.sample.append((generator.get_state().clone(), weights))
        return real_sample(replay, batch_size, generator, beta)

    def load(cls, *args, **kwargs):
        replay = real_load(*args, **kwargs)
        rec.loaded.append((replay.tree.priorities.copy(), replay.tree.max_priority))
        return replay

    with pytest.MonkeyPatch.context() as mp:
        rec = _Recorder(mp)
        rec.loaded = []
        mp.setattr(PrioritizedFrameReplay, "sample", sample)
        mp.setattr(PrioritizedFrameReplay, "load", classmethod(load))
        ok(invoke(args))
    return rec


def test_prioritized_resume_is_exact_up_to_the_env_restart(tmp_path):
    """As test_run's test_resume_is_exact_up_to_the_env_restart, with priorities: run A trains 2N steps, run B N steps
    then resumes to 2N (twice, from copies). B's checkpoint at N equals A's, priorities and max priority included;
    the resume loads those priorities, and its first sample starts from A's RNG state and weights; the two resumes
    agree exactly. (Past N the envs restart, so A's and B's transitions differ, and so do their priorities.)
    Epsilon and beta are held constant: their schedules depend on total_timesteps (N for B, 2N for A)."""
    n = 600
    settings = dict(start_e=0.3, end_e=0.3, priority_beta0=1.0, checkpoint_frequency=n, **PRIORITIZED)
    a = _recorded(train_args(tmp_path / "a", 2 * n, **settings))
    _recorded(train_args(tmp_path / "b", n, **settings))
    run_a, run_b = only_run(tmp_path / "a"), only_run(tmp_path / "b")
    run_b2 = copy_run(run_b, tmp_path / "b2")

    ck_a = checkpoint.load(run_a / "checkpoints" / f"step_{n}")
    ck_b = checkpoint.load(checkpoint.latest(run_b / "checkpoints"))
    assert ck_b.step == n and timeless(ck_a.state) == timeless(ck_b.state)  # CPU time differs between runs
    assert all(torch.equal(ck_a.tensors[k], ck_b.tensors[k]) for k in ck_a.tensors)
    replay_a, replay_b = ck_a.path / "replay", ck_b.path / "replay"
    files = sorted(p.name for p in replay_a.iterdir())
    assert files == sorted(p.name for p in replay_b.iterdir()) and "priority.npy" in files
    for name in files:
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(replay_a / name), np.load(replay_b / name))
        else:
            assert json.loads((replay_a / name).read_text()) == json.loads((replay_b / name).read_text())
    saved = np.load(replay_a / "priority.npy")
    assert len(np.unique(saved[saved > 0])) > 50  # updated priorities, not only the max given to new transitions

    b = _recorded(["train", "dqn", "--resume", run_b, "--steps", 2 * n])
    ((priorities, max_priority),) = b.loaded
    np.testing.assert_array_equal(priorities[: len(saved)], saved)
    assert not priorities[len(saved) :].any()
    assert max_priority == json.loads((replay_a / "priority.json").read_text())["max_priority"]
    updates_at_n = ck_b.state["num_updates"]
    assert updates_at_n > 0 and len(a.sample) > updates_at_n and b.sample
    first_a, first_b = a.sample[updates_at_n], b.sample[0]
    assert torch.equal(first_a[0], first_b[0]), "replay sampling RNG not restored"
    assert _same_weights(first_a[1], first_b[1]), "online/target weights not restored"

    _recorded(["train", "dqn", "--resume", run_b2, "--steps", 2 * n])
    s_b, s_b2 = scalars(run_b), scalars(run_b2)
    for tag in ("losses/td_loss", "losses/q_values", "charts/priority_beta", "charts/episodic_return"):
        assert s_b[tag] == s_b2[tag], tag
    end_b = checkpoint.load(checkpoint.latest(run_b / "checkpoints")).path / "replay"
    end_b2 = checkpoint.load(checkpoint.latest(run_b2 / "checkpoints")).path / "replay"
    np.testing.assert_array_equal(np.load(end_b / "priority.npy"), np.load(end_b2 / "priority.npy"))


def test_prioritized_resume_of_a_uniform_replay_is_one_error_line(tmp_path):
    ok(invoke(train_args(tmp_path, 300, learning_starts=100, checkpoint_replay="true", eval_frequency=0)))
    run_dir = only_run(tmp_path)
    result = invoke(["train", "dqn", "--resume", run_dir, "--steps", 600, "--set", "prioritized=true"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'prioritized'" in lines[0] and "without priorities" in lines[0], result.stderr
    assert checkpoint.load(checkpoint.latest(run_dir / "checkpoints")).step == 300  # nothing trained
