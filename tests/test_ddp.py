"""Data-parallel PPO on CPU with gloo and 2 processes: a 2-rank update is the single-process update on the
combined batch, ranks stay identical, and `torchrun ... rl train ppo` writes one run folder and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import invoke, only_run, scalars

from agents import distributed, ppo
from agents.ppo import PPOConfig
from agents.rollout import Rollout

ROOT = Path(__file__).parents[1]
T, N, OBS, A = 8, 4, 4, 2  # the combined rollout: N envs, split by env over the ranks


def _rollout(envs: slice) -> tuple[Rollout, torch.Tensor, torch.Tensor]:
    """A fixed random (T, N) rollout (every step a transition) and its advantages and returns, envs `envs` of it."""
    g = torch.Generator().manual_seed(0)
    obs, values, adv = (
        torch.randn(T, N, OBS, generator=g),
        torch.randn(T, N, generator=g),
        torch.randn(T, N, generator=g) * 3 + 1,
    )
    actions, logprobs = torch.randint(0, A, (T, N), generator=g), -torch.rand(T, N, generator=g) - 0.2
    zeros = torch.zeros(T, N)
    r = Rollout(obs, actions, logprobs, values, zeros, zeros, zeros, torch.ones(T, N, dtype=torch.bool), None)
    return Rollout(*(None if x is None else x[:, envs] for x in r)), adv[:, envs], (adv + values)[:, envs]


def _update(num_minibatches: int, envs: slice, seed: int) -> torch.Tensor:
    """One PPO update (3 epochs, normalized advantages, gradient clipping) from a fixed agent; its parameters, flat."""
    config = PPOConfig(num_minibatches=num_minibatches, update_epochs=3, learning_rate=1e-2, max_grad_norm=0.5)
    torch.manual_seed(0)
    agent = ppo.make_agent(config, (OBS,), A)
    optimizer = ppo.make_optimizer(agent, config)
    rollout, advantages, returns = _rollout(envs)
    ppo.update(
        distributed.wrap(agent, torch.device("cpu")),
        optimizer,
        rollout,
        advantages,
        returns,
        config,
        config.clip_coef,
        torch.Generator().manual_seed(seed),
    )
    return torch.cat([p.detach().flatten() for p in agent.parameters()])


def _rank(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        half = slice(rank * N // world, (rank + 1) * N // world)
        # whole-rollout minibatches: the union of the ranks' minibatches is the whole combined batch
        torch.save(
            {
                "full": _update(1, half, seed=0),
                # shuffled minibatches, a different order on each rank: DDP still keeps the ranks identical
                "shuffled": _update(4, half, seed=rank),
            },
            os.path.join(out, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_two_rank_update_equals_one_process_on_the_combined_batch(tmp_path):
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    alone = _update(1, slice(0, N), seed=0)  # no process group here: the single-process path
    assert torch.allclose(ranks[0]["full"], alone, atol=1e-6), (ranks[0]["full"] - alone).abs().max()
    assert torch.equal(ranks[0]["full"], ranks[1]["full"])
    assert torch.equal(ranks[0]["shuffled"], ranks[1]["shuffled"])
    # the update on half the batch alone differs: the other rank's half did enter the gradient
    assert not torch.allclose(_update(1, slice(0, N // 2), seed=0), alone, atol=1e-4)


def _torchrun(runs_dir: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "agents.cli",
        "train",
        "ppo",
        *args,
        "--set",
        f"runs_dir={runs_dir}",
        "--set",
        "torch_threads=1",
        "--set",
        "progress=false",
    ]
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.mark.slow
def test_torchrun_two_ranks_train_one_run_folder_and_resume(tmp_path):
    # 2 ranks x 2 envs x 64 steps = 256 env steps per iteration
    out = _torchrun(
        tmp_path,
        "--env",
        "CartPole-v1",
        "--steps",
        "512",
        "--num-envs",
        "2",
        "--set",
        "num_steps=64",
        "--set",
        "checkpoint_frequency=256",
        "--set",
        "eval_frequency=512",
        "--set",
        "eval_episodes=2",
        "--set",
        "log_frequency=256",
    )
    run = only_run(tmp_path)
    assert out.count("finished at step 512") == 1  # rank 0 alone reports
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    state = json.loads((run / "checkpoints" / "step_512" / "state.json").read_text())
    assert state["num_updates"] == 2 and len(state["rngs"]) == 2 and state["rngs"][0] != state["rngs"][1]
    assert [s for s, _ in scalars(run)["losses/policy_loss"]] == [256, 512]  # global steps over both ranks
    assert len(scalars(run)["eval/episodic_return"]) == 1

    out = _torchrun(tmp_path, "--resume", str(run), "--steps", "1024")
    assert only_run(tmp_path) == run and out.count("finished at step 1,024") == 1
    state = json.loads((run / "checkpoints" / "step_1024" / "state.json").read_text())
    assert state["num_updates"] == 4
    assert [s for s, _ in scalars(run)["losses/policy_loss"]] == [256, 512, 768, 1024]


@pytest.mark.slow
def test_torchrun_two_ranks_supervised_matches_one_process(tmp_path):
    settings = [
        "--epochs",
        "4",
        "--set",
        "batch_size=64",
        "--set",
        "torch_threads=1",
        "--set",
        "progress=false",
        "--set",
        "encoder.hidden_sizes=64",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    metrics = []
    for name, launcher in (
        ("one", []),
        ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]),
    ):
        cmd = [
            sys.executable,
            *launcher,
            "-m",
            "agents.cli",
            "supervised",
            "mlp",
            "--data",
            "digits",
            *settings,
            "--set",
            f"runs_dir={tmp_path / name}",
        ]
        result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("test accuracy") == 1  # rank 0 alone reports
        run = only_run(tmp_path / name)
        assert (run / "encoder.safetensors").exists() and len(list(run.glob("events.out.tfevents.*"))) == 1
        metrics.append(json.loads((run / "metrics.json").read_text()))
    one, two = metrics
    assert two["epochs"] == 4 and two["test_accuracy"] > 0.5, (one, two)
    # each step averages the two halves of a batch: the one-process step, up to the last, uneven batch of an epoch
    assert abs(one["test_loss"] - two["test_loss"]) < 1e-3 * one["test_loss"], (one, two)


def test_nproc_with_an_algorithm_that_is_not_data_parallel_is_a_user_error():
    result = invoke(["train", "dqn", "--env", "CartPole-v1", "--nproc", "2"])
    assert result.exit_code == 2 and "runs ppo, a2c and reinforce" in result.stderr
