"""Run contracts: checkpoints round-trip, one seed is one run, TensorBoard tags, resume, crashes, Ctrl-C, folders.

Every training run here is CartPole with a tiny network (tests/conftest.py: TINY), in this process
through the CLI, except where a real process is needed (SIGKILL, SIGINT).
"""

from __future__ import annotations

import errno
import json
import os
import pty
import random
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RL, copy_run, event_files, invoke, ok, only_run, scalars, start_rl, train_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import agents.dqn
import agents.run
import envs
from agents import checkpoint, registry
from agents.replay import FrameReplay

CONTRACT_TAGS = [
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "charts/cpu_hours",
    "charts/epsilon",
    "charts/learning_rate",
    "losses/td_loss",
    "losses/q_values",
    "eval/episodic_return",
]


def timeless(state: dict) -> dict:
    """A checkpoint's state without the CPU time it has counted, which no two runs share."""
    return {k: v for k, v in state.items() if k != "cpu_seconds"}


def latest_step(run_dir: Path) -> int:
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]


def assert_no_duplicate_steps(points_by_tag: dict[str, list[tuple[int, float]]]) -> None:
    for tag, points in points_by_tag.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), f"{tag}: steps repeat or go back: {steps}"


# ---------------------------------------------------------------------------------------------- 1. round trip
def test_loaded_checkpoint_acts_exactly_like_the_network_that_saved_it(tiny_run):
    run_dir, live = tiny_run
    _, cfg = registry.load_config(run_dir / "config.yaml")
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    assert ckpt.step == 800 and ckpt.path.name == "step_800"

    # CartPole states spread over and beyond what the agent has seen
    obs = torch.randn(4096, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 1.5, 0.15, 1.5])
    with torch.no_grad():
        live_q = live(obs)
    live_actions = live_q.argmax(1).numpy()
    assert bool((live_q.std(0) > 1e-3).all()), "a network that ignores its input would make the comparison empty"

    env = envs.make("CartPole-v1", 1, 0)
    greedy = agents.dqn.load_policy(cfg, ckpt, env, torch.device("cpu"), epsilon=0.0, seed=0)
    np.testing.assert_array_equal(greedy(obs.numpy()), live_actions)
    env.close()

    rebuilt = agents.dqn.make_q_network(cfg, (4,), 2)
    rebuilt.load_state_dict(checkpoint.unprefixed("q", ckpt.tensors))
    with torch.no_grad():
        assert torch.equal(rebuilt(obs), live_q)  # bit-identical Q-values, not just the same argmax

    again = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    assert again.tensors.keys() == ckpt.tensors.keys() and again.state == ckpt.state
    assert all(torch.equal(again.tensors[k], ckpt.tensors[k]) for k in ckpt.tensors)
    assert {p.name for p in ckpt.path.iterdir()} - {"replay"} == {
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    }


def _toy_step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
    loss = model(x).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _toy_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("fused", [False, True])
def test_optimizer_state_round_trips_through_a_checkpoint(tmp_path, fused):
    torch.manual_seed(0)
    model = _toy_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-6, fused=fused)
    for i in range(3):
        _toy_step(model, optimizer, i)
    path = checkpoint.save(
        tmp_path / "checkpoints", 3, checkpoint.prefixed("q", model.state_dict()), optimizer, {"note": "toy"}
    )
    ckpt = checkpoint.load(path)
    assert ckpt.step == 3 and ckpt.state["note"] == "toy"

    torch.manual_seed(1)  # different initial weights and lr: everything must come from the checkpoint
    model2 = _toy_model()
    model2.load_state_dict(checkpoint.unprefixed("q", ckpt.tensors))
    optimizer2 = torch.optim.Adam(model2.parameters(), lr=0.5, fused=fused)
    optimizer2.load_state_dict(ckpt.optimizer)

    before, after = optimizer.state_dict(), optimizer2.state_dict()
    assert before["state"].keys() == after["state"].keys() == {0, 1, 2, 3}
    for idx, per_param in before["state"].items():
        assert per_param.keys() == after["state"][idx].keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key, value in per_param.items():
            restored = after["state"][idx][key]
            assert restored.dtype == value.dtype and restored.shape == value.shape and torch.equal(restored, value), (
                idx,
                key,
            )
    # JSON has no tuples: betas come back as a list, which Adam reads the same way
    assert json.loads(json.dumps(after["param_groups"])) == json.loads(json.dumps(before["param_groups"]))
    assert after["param_groups"][0]["lr"] == 1e-2 and after["param_groups"][0]["eps"] == 1e-6

    for i in range(3, 6):  # the proof: both continue identically
        _toy_step(model, optimizer, i)
        _toy_step(model2, optimizer2, i)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_a_step_folder_that_latest_json_does_not_name_is_never_trusted(tmp_path):
    """A process killed between renaming step_800 into place and updating latest.json leaves latest.json at
    step_400 and a stale step_800. The run resumes from 400: its own saves must replace the stale folder,
    and pruning must never delete the checkpoint latest.json names."""
    folder = tmp_path / "checkpoints"
    model = _toy_model()
    optimizer = torch.optim.Adam(model.parameters())
    _toy_step(model, optimizer, 0)
    tensors = lambda: {f"q.{k}": v.clone() for k, v in model.state_dict().items()}  # noqa: E731
    checkpoint.save(folder, 400, tensors(), optimizer, {}, keep=1)
    checkpoint.save(folder, 800, tensors(), optimizer, {}, keep=1)
    (folder / "latest.json").write_text(json.dumps({"step": 400, "path": "step_400"}))  # the crash

    _toy_step(model, optimizer, 1)  # the resumed run moves on
    checkpoint.save(folder, 600, tensors(), optimizer, {}, keep=1)
    assert checkpoint.load(checkpoint.latest(folder)).step == 600  # not pruned in favour of the stale step_800

    _toy_step(model, optimizer, 2)
    fresh = tensors()
    checkpoint.save(folder, 800, fresh, optimizer, {}, keep=1)
    ckpt = checkpoint.load(checkpoint.latest(folder))
    assert ckpt.step == 800
    assert all(torch.equal(ckpt.tensors[k], fresh[k]) for k in fresh), "step_800 must hold the resumed run's weights"


# ---------------------------------------------------------------------------------------------- 2. determinism
def test_one_seed_gives_identical_losses_and_another_seed_differs(tiny_run, tmp_path):
    run_a, _ = tiny_run
    ok(invoke(train_args(tmp_path / "same", 800, seed=1, eval_frequency=400, checkpoint_frequency=400)))
    ok(invoke(train_args(tmp_path / "other", 800, seed=2, eval_frequency=400, checkpoint_frequency=400)))
    a, b, c = scalars(run_a), scalars(only_run(tmp_path / "same")), scalars(only_run(tmp_path / "other"))

    assert len(a["losses/td_loss"]) >= 10
    for tag in (
        "losses/td_loss",
        "losses/q_values",
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/epsilon",
        "eval/episodic_return",
    ):
        assert a[tag] == b[tag], tag  # exact float equality, step by step
    assert [v for _, v in a["losses/td_loss"]] != [v for _, v in c["losses/td_loss"]]
    assert [v for _, v in a["charts/episodic_length"]] != [v for _, v in c["charts/episodic_length"]]

    ck_a = checkpoint.load(checkpoint.latest(run_a / "checkpoints"))
    ck_b = checkpoint.load(checkpoint.latest(only_run(tmp_path / "same") / "checkpoints"))
    assert all(torch.equal(ck_a.tensors[k], ck_b.tensors[k]) for k in ck_a.tensors)


# ---------------------------------------------------------------------------------------------- 3. tags
def test_event_files_hold_the_contract_tags_and_the_hparams_in_the_run_folder(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, _ = tiny_run
    _, cfg = registry.load_config(run_dir / "config.yaml")
    tags = scalars(run_dir)
    for tag in CONTRACT_TAGS:
        assert tags.get(tag), f"no points for {tag}"
        assert all(0 < step <= 800 for step, _ in tags[tag]), tag
    assert [s for s, _ in tags["eval/episodic_return"]] == [400, 800]
    assert all(v > 0 for _, v in tags["charts/SPS"])
    cpu_hours = [v for _, v in tags["charts/cpu_hours"]]
    assert cpu_hours[0] > 0 and cpu_hours == sorted(cpu_hours)  # the training's CPU time, counted up
    saved = checkpoint.load(checkpoint.latest(run_dir / "checkpoints")).state["cpu_seconds"]
    assert saved >= cpu_hours[-1] * 3600 * (1 - 1e-6) > 0  # in the checkpoint (float32 in the event file)
    assert all(v == pytest.approx(cfg.learning_rate) for _, v in tags["charts/learning_rate"])
    eps = [v for _, v in tags["charts/epsilon"]]
    assert eps == sorted(eps, reverse=True) and eps[0] <= cfg.start_e and eps[-1] >= cfg.end_e - 1e-6
    assert_no_duplicate_steps(tags)

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["learning_rate"].number_value == pytest.approx(cfg.learning_rate)
    assert start.hparams["env"].string_value == "CartPole-v1"
    assert start.hparams["encoder.hidden_sizes"].string_value == "[32, 32]"

    # one run per folder: add_hparams would have made a timestamped sub-run folder
    assert [p.name for p in run_dir.iterdir() if p.is_dir()] == ["checkpoints"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1


# ---------------------------------------------------------------------------------------------- 4. resume
def test_resume_continues_the_same_folder_steps_and_curves(tiny_run, tmp_path):
    runs_dir = tmp_path / "runs"
    run_dir = copy_run(tiny_run[0], runs_dir)
    ckpts = run_dir / "checkpoints"
    first = scalars(run_dir)

    # (a) The process died after step 400 was checkpointed, having logged up to 800 (its step_800 never named
    # by latest.json). Resuming must drop the orphaned points after 400 but keep those logged at 400.
    (ckpts / "latest.json").write_text(json.dumps({"step": 400, "path": "step_400"}))
    out = ok(invoke(["train", "dqn", "--resume", run_dir, "--steps", 800]))
    assert f"run folder: {run_dir}" in out and "finished at step 800" in out
    assert latest_step(run_dir) == 800
    resumed = scalars(run_dir)
    assert_no_duplicate_steps(resumed)
    for tag in CONTRACT_TAGS:
        assert [p for p in resumed[tag] if p[0] <= 400] == [p for p in first[tag] if p[0] <= 400], tag
    assert [s for s, _ in resumed["eval/episodic_return"]] == [400, 800], "the eval at the checkpoint step was purged"

    updates_at_800 = checkpoint.load(checkpoint.latest(ckpts)).state["num_updates"]
    cpu_at_800 = checkpoint.load(checkpoint.latest(ckpts)).state["cpu_seconds"]

    # (b) The ordinary case: resume a finished run with a larger budget.
    out = ok(invoke(["train", "dqn", "--resume", run_dir, "--steps", 1600]))
    assert "finished at step 1,600" in out
    assert [p.name for p in runs_dir.iterdir()] == [run_dir.name]  # same folder, no new one
    assert registry.load_config(run_dir / "config.yaml")[1].total_timesteps == 1600
    assert latest_step(run_dir) == 1600
    final = checkpoint.load(checkpoint.latest(ckpts))
    assert final.step == 1600 and final.path.name == "step_1600"
    assert final.state["num_updates"] > updates_at_800

    files = event_files(run_dir)
    assert len(files) == 3
    newest = files[-1]
    new_td = [s for s, _ in newest["scalars"]["losses/td_loss"]]
    assert new_td and new_td[0] > 800 and new_td[-1] == 1600
    assert len(newest["starts"]) == 1 and 800 < newest["starts"][0] <= new_td[0]  # purge_step marker
    assert newest["scalars"]["charts/cpu_hours"][0][1] * 3600 > cpu_at_800 > 0  # counts on from the checkpoint's
    assert sum(f["plugin_tags"].count("_hparams_/session_start_info") for f in files) == 1  # hparams once

    whole = scalars(run_dir)
    assert_no_duplicate_steps(whole)
    assert [p for p in whole["losses/td_loss"] if p[0] <= 800] == [p for p in resumed["losses/td_loss"] if p[0] <= 800]
    assert [s for s, _ in whole["eval/episodic_return"]] == [400, 800, 1200, 1600]
    assert max(s for s, _ in whole["charts/episodic_return"]) > 800


# ---------------------------------------------------------------------------------------------- 5. exact resume
class _Recorder:
    """Records, during one in-process `rl train`, the RNG states each action and each replay sample starts from
    and the online and target weights at each sample."""

    def __init__(self, monkeypatch):
        self.nets, self.act, self.sample = [], [], []
        real_make, real_eps, real_sample = agents.dqn.make_q_network, agents.dqn.epsilon_greedy, FrameReplay.sample

        def make(*a, **k):
            net = real_make(*a, **k)
            self.nets.append(net)
            return net

        def eps(q_net, obs, epsilon, n_actions, generator):
            self.act.append((generator.get_state().clone(), torch.get_rng_state().clone()))
            return real_eps(q_net, obs, epsilon, n_actions, generator)

        def sample(replay, batch_size, generator, *a, **k):
            weights = [{n: p.detach().clone() for n, p in net.state_dict().items()} for net in self.nets[-2:]]
            self.sample.append((generator.get_state().clone(), weights))
            return real_sample(replay, batch_size, generator, *a, **k)

        monkeypatch.setattr(agents.dqn, "make_q_network", make)
        monkeypatch.setattr(agents.dqn, "epsilon_greedy", eps)
        monkeypatch.setattr(FrameReplay, "sample", sample)


def _recorded(args) -> _Recorder:
    with pytest.MonkeyPatch.context() as mp:
        rec = _Recorder(mp)
        ok(invoke(args))
    return rec


def _same_weights(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) == 2 and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def test_resume_is_exact_up_to_the_env_restart(tmp_path):
    """Run A trains 2N steps at once; run B trains N steps, then resumes to 2N (twice, from copies).

    Exact (asserted): B's checkpoint at N equals A's checkpoint at N, bit for bit (weights, target, Adam
    moments, replay arrays and meta, RNG states, counters); a resume restores them, so the first action
    after N starts from the same exploration and global RNG states as A's, and the first replay sample
    after N from the same sampling RNG state and the same online and target weights as A's; and resuming
    the same checkpoint twice gives identical losses, curves and final weights.

    Not exact, by design: the envs restart at a resume (reset with seed + N, agents/dqn.py), while A's
    episodes go on, so observations after N differ; the replay then marks the cut as a time limit and
    starts a new episode, which also adds one row, so the sample after N draws its indices from a count
    one larger than A's. Losses and returns after N therefore differ from A's.
    Epsilon is held constant here because its schedule depends on total_timesteps (N for B, 2N for A).
    """
    n = 600
    settings = dict(start_e=0.3, end_e=0.3, eval_frequency=0, checkpoint_frequency=n, checkpoint_replay="true")
    a = _recorded(train_args(tmp_path / "a", 2 * n, **settings))
    b_runs = tmp_path / "b"
    _recorded(train_args(b_runs, n, **settings))
    run_a, run_b = only_run(tmp_path / "a"), only_run(b_runs)
    run_b2 = copy_run(run_b, tmp_path / "b2")

    ck_a = checkpoint.load(run_a / "checkpoints" / f"step_{n}")
    ck_b = checkpoint.load(checkpoint.latest(run_b / "checkpoints"))
    assert ck_b.step == n
    assert ck_a.tensors.keys() == ck_b.tensors.keys()
    assert all(torch.equal(ck_a.tensors[k], ck_b.tensors[k]) for k in ck_a.tensors)
    for idx, per_param in ck_a.optimizer["state"].items():
        for key, value in per_param.items():
            assert torch.equal(value, ck_b.optimizer["state"][idx][key]), (idx, key)
    assert ck_a.optimizer["param_groups"] == ck_b.optimizer["param_groups"]
    assert timeless(ck_a.state) == timeless(ck_b.state)  # counters, recent returns, RNG states, versions
    replay_files = sorted(p.name for p in (ck_a.path / "replay").iterdir())
    assert replay_files == sorted(p.name for p in (ck_b.path / "replay").iterdir()) and "meta.json" in replay_files
    for name in replay_files:
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(ck_a.path / "replay" / name), np.load(ck_b.path / "replay" / name))
    assert json.loads((ck_a.path / "replay" / "meta.json").read_text()) == json.loads(
        (ck_b.path / "replay" / "meta.json").read_text()
    )

    b = _recorded(["train", "dqn", "--resume", run_b, "--steps", 2 * n])
    updates_at_n = ck_b.state["num_updates"]
    assert len(a.act) == 2 * n and len(b.act) == n
    assert torch.equal(a.act[n][0], b.act[0][0]), "exploration RNG not restored"
    assert torch.equal(a.act[n][1], b.act[0][1]), "global torch RNG not restored"
    assert updates_at_n > 0 and len(a.sample) > updates_at_n and b.sample
    assert torch.equal(a.sample[updates_at_n][0], b.sample[0][0]), "replay sampling RNG not restored"
    assert _same_weights(a.sample[updates_at_n][1], b.sample[0][1]), "online/target weights not restored"

    _recorded(["train", "dqn", "--resume", run_b2, "--steps", 2 * n])
    s_b, s_b2 = scalars(run_b), scalars(run_b2)
    assert s_b["losses/td_loss"] and max(s for s, _ in s_b["losses/td_loss"]) == 2 * n
    for tag in ("losses/td_loss", "losses/q_values", "charts/episodic_return", "charts/episodic_length"):
        assert s_b[tag] == s_b2[tag], tag
    end_b = checkpoint.load(checkpoint.latest(run_b / "checkpoints"))
    end_b2 = checkpoint.load(checkpoint.latest(run_b2 / "checkpoints"))
    assert end_b.step == end_b2.step == 2 * n
    assert all(torch.equal(end_b.tensors[k], end_b2.tensors[k]) for k in end_b.tensors)


# ---------------------------------------------------------------------------------------------- 6. SIGKILL
# A big network (two 1024-wide layers: ~16 MB of weights and Adam moments per checkpoint) so that a write takes
# long enough to be caught; few updates so that steps stay fast; the replay goes into every checkpoint.
KILL_SETTINGS = {
    "encoder.hidden_sizes": "1024,1024",
    "learning_starts": 300,
    "train_frequency": 100,
    "checkpoint_frequency": 200,
    "checkpoint_replay": "true",
    "buffer_size": 100_000,
    "eval_frequency": 0,
    "log_frequency": 100,
    "keep_checkpoints": 2,
}


def _wait(condition, proc, log: Path, what: str, timeout: float = 60.0, poll: float = 0.0005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"rl exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        time.sleep(poll)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


def _assert_latest_is_complete(run_dir: Path) -> int:
    ckpts = run_dir / "checkpoints"
    pointer = json.loads((ckpts / "latest.json").read_text())
    path = checkpoint.latest(ckpts)
    assert path.name == pointer["path"] == f"step_{pointer['step']}" and (path / "state.json").exists()
    ckpt = checkpoint.load(path)
    assert ckpt.step == pointer["step"] and "q.head.weight" in ckpt.tensors
    FrameReplay.load(path / "replay")  # every replay file complete
    return ckpt.step


def test_sigkill_at_any_moment_leaves_a_complete_checkpoint_and_resume_finishes(tmp_path, monkeypatch):
    rng = random.Random(20261123)
    total = 2400
    runs_dir = tmp_path / "runs"
    log = tmp_path / "rl.log"

    # (a) a random moment once the first checkpoint exists
    proc = start_rl(train_args(runs_dir, total, **KILL_SETTINGS), log)
    pointer = _wait(
        lambda: next(iter(runs_dir.glob("*/checkpoints/latest.json")), None), proc, log, "a first checkpoint"
    )
    run_dir = pointer.parent.parent
    ckpts = run_dir / "checkpoints"
    time.sleep(rng.uniform(0.0, 0.4))
    proc.kill()
    proc.wait()
    _assert_latest_is_complete(run_dir)

    # (b) exactly while a .tmp-step_* folder is being written, each time from a resumed process, at each phase of the
    # write: as soon as the folder appears, once the weights, the optimizer, the replay are in it (+ a seeded jitter)
    caught = []
    for phase in ["", "model.safetensors", "optimizer.safetensors", "replay"]:
        proc = start_rl(["train", "dqn", "--resume", run_dir], log)
        suffix = f"-{proc.pid}"

        def writing():  # this process' half-written folder, once it holds `phase`
            return next(
                (p for p in ckpts.glob(".tmp-step_*") if p.name.endswith(suffix) and (p / phase).exists()), None
            )

        tmp = _wait(writing, proc, log, f"a checkpoint write at {phase or 'its start'}")
        time.sleep(rng.uniform(0.0, 0.002))
        proc.kill()
        proc.wait()
        step = _assert_latest_is_complete(run_dir)
        if tmp.exists():  # the process died mid-write: latest.json still names the previous checkpoint
            caught.append(f"{phase or 'start'}: {sorted(str(p.relative_to(tmp)) for p in tmp.rglob('*'))}")
            assert int(tmp.name.split("_")[1].split("-")[0]) > step
    assert len(caught) >= 2, f"the kills should land during checkpoint writes; caught {caught}"

    # resume to the end in this process: only complete checkpoints are ever loaded, leftovers are cleaned up
    loaded = []
    real_load = checkpoint.load
    monkeypatch.setattr(checkpoint, "load", lambda path: loaded.append(Path(path).name) or real_load(path))
    before = latest_step(run_dir)
    out = ok(invoke(["train", "dqn", "--resume", run_dir]))
    assert f"finished at step {total:,}" in out
    assert loaded and loaded[0] == f"step_{before}" and all(name.startswith("step_") for name in loaded)
    assert latest_step(run_dir) == total
    leftovers = [p.name for p in ckpts.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"leftovers of killed writes: {leftovers}"
    assert sorted(p.name for p in ckpts.glob("step_*")) == sorted([f"step_{total - 200}", f"step_{total}"])
    assert_no_duplicate_steps(
        scalars(run_dir)
    )  # every resume purged what its dead predecessor logged past its checkpoint


# ---------------------------------------------------------------------------------------------- 7. stop signals
@pytest.mark.parametrize(
    "signum, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")]
)
def test_a_stop_signal_checkpoints_the_current_step_and_says_how_to_resume(tmp_path, signum, name):
    """Ctrl-C, a scheduler's SIGTERM and a closed terminal's SIGHUP all stop the run with a checkpoint."""
    runs_dir = tmp_path / "runs"
    log = tmp_path / "rl.log"
    proc = start_rl(train_args(runs_dir, 1_000_000, checkpoint_frequency=300, eval_frequency=0), log)
    pointer = _wait(
        lambda: next(iter(runs_dir.glob("*/checkpoints/latest.json")), None), proc, log, "a first checkpoint"
    )
    time.sleep(0.3)
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 0
    out = log.read_text()
    assert f"{name}: stopping after the current step and saving a checkpoint" in out
    run_dir = pointer.parent.parent
    match = re.search(r"stopped at step ([\d,]+) .*\ncontinue with: rl train dqn --resume (\S+)", out)
    assert match, out
    assert Path(match[2]) == run_dir
    step = int(match[1].replace(",", ""))
    assert 300 <= step < 1_000_000
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert latest_step(run_dir) == step
    assert checkpoint.load(checkpoint.latest(run_dir / "checkpoints")).step == step
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_sighup_of_a_closed_terminal_saves_a_complete_checkpoint(tmp_path):
    """A real hangup: the terminal (a pty) is closed before SIGHUP arrives, so writing to it fails (EIO) and isatty()
    no longer says it is one; the output goes to /dev/null and the run ends as after any stop signal."""
    runs_dir = tmp_path / "runs"
    log = tmp_path / "terminal.log"  # what the terminal showed, for _wait's message
    master, terminal = pty.openpty()
    args = train_args(runs_dir, 1_000_000, checkpoint_frequency=300, eval_frequency=0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(RL), *map(str, args)], stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    os.set_blocking(master, False)

    def shown():
        try:
            while chunk := os.read(master, 65536):
                with open(log, "ab") as f:
                    f.write(chunk)
        except OSError:  # nothing more to read now
            pass

    pointer = _wait(
        lambda: shown() or next(iter(runs_dir.glob("*/checkpoints/latest.json")), None), proc, log, "a first checkpoint"
    )
    time.sleep(0.3)
    os.close(master)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 0
    run_dir = pointer.parent.parent
    assert _assert_latest_is_complete(run_dir) >= 300
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_a_second_ctrl_c_during_the_save_lets_it_finish(tmp_path):
    runs_dir = tmp_path / "runs"
    log = tmp_path / "rl.log"
    settings = {**KILL_SETTINGS, "checkpoint_frequency": 0}  # one save, on Ctrl-C; big enough to be caught writing
    proc = start_rl(train_args(runs_dir, 1_000_000, **settings), log)
    _wait(lambda: "run folder:" in log.read_text(), proc, log, "the run's start")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _wait(lambda: next(iter(runs_dir.glob("*/checkpoints/.tmp-step_*")), None), proc, log, "the save")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    out = log.read_text()
    assert "Ctrl-C: finishing the checkpoint being saved" in out and "Traceback" not in out
    step = int(re.search(r"stopped at step ([\d,]+)", out)[1].replace(",", ""))
    assert _assert_latest_is_complete(only_run(runs_dir)) == step


def test_stop_signals_are_answered_at_once_and_a_second_one_never_abandons_the_save(tmp_path, capfd):
    cfg = registry.resolve(
        "dqn", "CartPole-v1", "cartpole", overrides=[f"runs_dir={tmp_path}", "progress=false", "device=cpu"]
    )
    run = agents.run.start("dqn", cfg, "CartPole-v1")
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert run.stop_requested  # the handler ran before the next line: its message too
        assert "SIGTERM: stopping after the current step and saving a checkpoint" in capfd.readouterr().err
        run.write_checkpoint(lambda: os.kill(os.getpid(), signal.SIGINT))  # Ctrl-C during the save
        assert "Ctrl-C: finishing the checkpoint being saved" in capfd.readouterr().err
        assert not run.saving
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C before the save
        err = capfd.readouterr().err
        assert "Ctrl-C: already stopping: the current step ends, then the checkpoint is saved; once more quits" in err
        with pytest.raises(KeyboardInterrupt):  # a third, outside a save (a hung evaluation): quit at once
            os.kill(os.getpid(), signal.SIGTERM)
        assert "SIGTERM: quitting without saving (the last complete checkpoint stays)" in capfd.readouterr().err
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # what they were before the run
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        run.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_resume_that_changes_nothing_rewrites_nothing_and_evaluates_no_step_twice(tmp_path):
    # the last step (600) is a checkpoint step but not an evaluation step: finish() evaluates it, then saves
    ok(invoke(train_args(tmp_path, 600, eval_frequency=400, checkpoint_frequency=300)))
    run_dir = only_run(tmp_path)
    ckpt = checkpoint.latest(run_dir / "checkpoints")
    assert [s for s, _ in checkpoint.load(ckpt).state["evals"]] == [400, 600]  # the checkpoint holds the last eval
    config = run_dir / "config.yaml"
    before = (config.read_bytes(), config.stat().st_mtime_ns)

    out = ok(invoke(["train", "dqn", "--resume", run_dir]))
    assert "resuming from step 600 (step_600)" in out and "finished at step 600" in out
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    # a checkpoint that does not list the last evaluation (as older versions saved it) adds none either
    state = json.loads((ckpt / "state.json").read_text())
    (ckpt / "state.json").write_text(json.dumps({**state, "evals": state["evals"][:-1]}))
    ok(invoke(["train", "dqn", "--resume", run_dir]))
    assert [s for s, _ in scalars(run_dir)["eval/episodic_return"]] == [400, 600]


@pytest.mark.parametrize("failing, eval_frequency", [(1, 0), (2, 0), (1, 200)])
def test_a_full_disk_is_one_line_and_leaves_no_temp_folder(tmp_path, monkeypatch, failing, eval_frequency):
    """The `failing`th step checkpoint hits a full disk: exit 2, one line; the checkpoints before it stay, and a run
    folder without any is removed, unless an evaluation (at step 200) saved checkpoints/best: it stays, with it."""
    real, optimizer_files = checkpoint.save_file, []

    def save_file(tensors, path):
        if Path(path).name == "optimizer.safetensors":  # a step checkpoint's, after its model's (best has none)
            optimizer_files.append(path)
            if len(optimizer_files) == failing:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    result = invoke(train_args(tmp_path, 900, checkpoint_frequency=300, eval_frequency=eval_frequency))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot save checkpoint") and "No space left" in lines[0]
    assert f"step_{300 * failing}" in lines[0] and "Traceback" not in result.stderr
    if eval_frequency:
        run_dir = only_run(tmp_path)
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best"]
        assert checkpoint.load(checkpoint.best(run_dir / "checkpoints")).step == 200
        assert [s for s, _ in scalars(run_dir)["eval/episodic_return"]] == [200]
    elif failing == 1:
        assert list(tmp_path.iterdir()) == []
    else:
        ckpts = only_run(tmp_path) / "checkpoints"
        assert sorted(p.name for p in ckpts.iterdir()) == ["latest.json", "step_300"]
        assert checkpoint.load(checkpoint.latest(ckpts)).step == 300


def test_a_checkpoint_part_that_cannot_be_saved_leaves_no_temp_folder(tmp_path):
    class Unsaveable:
        def save(self, folder):
            raise ValueError("replay in a state it cannot save")

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match="cannot save"):  # not a full disk: the error as it was
        checkpoint.save(tmp_path, 10, {"w": torch.zeros(2)}, optimizer, {}, replay=Unsaveable())
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- 8. folders
def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 11, 23, 10, 15, 0)

    monkeypatch.setattr(agents.run, "datetime", FrozenClock)
    cfg = registry.resolve(
        "dqn", "CartPole-v1", "cartpole", overrides=[f"runs_dir={tmp_path}", "progress=false", "device=cpu"]
    )
    first = agents.run.start("dqn", cfg, "CartPole-v1")
    first.log(1, {"charts/SPS": 1.0})
    first.close()
    (first.dir / "marker").write_text("first run")
    second = agents.run.start("dqn", cfg, "CartPole-v1")
    second.close()

    assert first.dir != second.dir
    assert first.dir.name == "CartPole-v1__dqn__1__20261123-101500"
    assert second.dir.name.startswith(first.dir.name)
    assert (first.dir / "marker").read_text() == "first run" and not (second.dir / "marker").exists()
    assert scalars(first.dir)["charts/SPS"] == [(1, 1.0)]
    assert (second.dir / "config.yaml").exists()


def test_resume_of_a_folder_without_checkpoints_is_exit_2_and_touches_nothing(tiny_run, tmp_path):
    run_dir = tmp_path / "CartPole-v1__dqn__1__20261123-101500"
    run_dir.mkdir()
    config_text = (tiny_run[0] / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(config_text)
    result = invoke(["train", "dqn", "--resume", run_dir, "--steps", 5000])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "checkpoint" in lines[0], result.stderr
    assert (run_dir / "config.yaml").read_text() == config_text  # --steps 5000 not written
    assert [p.name for p in run_dir.iterdir()] == ["config.yaml"]


def test_resumed_event_file_sorts_after_the_old_one_even_in_the_same_second(tmp_path):
    """TensorBoard reads event files in name order (events.out.tfevents.<second>.<host>.<pid>.<uid>). Opened in
    the same second, uid 10 sorts before uid 9 and the resumed points would come first: run.start waits."""
    from torch.utils.tensorboard import SummaryWriter

    from agents.run import _wait_for_a_later_second

    def set_uid(uid: str, skip: str = "@") -> None:
        f = next(g for g in tmp_path.glob("events*") if not g.name.endswith(skip))
        f.rename(tmp_path / ".".join([*f.name.split(".")[:-1], uid]))

    w = SummaryWriter(str(tmp_path))
    for i in range(5):
        w.add_scalar("x", i, i)
    w.close()
    set_uid("9")
    _wait_for_a_later_second(tmp_path)
    w = SummaryWriter(str(tmp_path), purge_step=5)
    w.add_scalar("x", 5, 5)
    w.close()
    set_uid("10", skip=".9")
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.step for e in acc.Scalars("x")] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("num_envs", [1, 3])
def test_update_cadence_counts_env_steps_over_all_envs(tmp_path, num_envs):
    """train_frequency and target_network_frequency count env steps summed over the envs (CleanRL's
    global_step), so 3 envs do the same number of updates per env step as 1 env."""
    steps, learning_starts, train_frequency, gradient_steps = 1_500, 300, 10, 2
    ok(
        invoke(
            train_args(
                tmp_path,
                steps,
                num_envs=num_envs,
                learning_starts=learning_starts,
                eval_frequency=0,
                train_frequency=train_frequency,
                gradient_steps=gradient_steps,
                buffer_size=3_000,
            )
        )
    )
    ckpt = checkpoint.load(checkpoint.latest(only_run(tmp_path) / "checkpoints"))
    assert ckpt.step == steps
    # learning runs from the first multiple of num_envs past learning_starts; one round per train_frequency crossed
    first = (learning_starts // num_envs + 1) * num_envs
    rounds = steps // train_frequency - (first - num_envs) // train_frequency
    assert ckpt.state["num_updates"] == rounds * gradient_steps
