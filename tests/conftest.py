"""Shared helpers for the run and CLI tests: tiny CartPole configs, in-process `rl`, reading event files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from agents.cli import app

RL = Path(sys.executable).with_name("rl")  # the installed console script, for tests that need a real process

# Small enough that 1,000 steps take about a second on a shared 2-core CPU, big enough that learning,
# evaluation, logging and checkpointing all happen several times.
TINY = {
    "learning_starts": 100,
    "train_frequency": 4,
    "gradient_steps": 1,
    "batch_size": 32,
    "buffer_size": 10_000,
    "encoder.hidden_sizes": "32,32",
    "target_network_frequency": 50,
    "log_frequency": 50,
    "eval_episodes": 2,
    "progress": "false",
    "torch_threads": 1,
}


def train_args(runs_dir: Path, steps: int, seed: int = 1, **overrides) -> list[str]:
    """`rl train dqn --env CartPole-v1 ...` arguments with the tiny config (keyword overrides win)."""
    settings = {**TINY, "runs_dir": str(runs_dir), **overrides}
    args = ["train", "dqn", "--env", "CartPole-v1", "--steps", str(steps), "--seed", str(seed), "--device", "cpu"]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


def invoke(args: list[str]):
    """Run `rl ARGS` in this process; stdout and stderr are kept apart (result.stdout, result.stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result) -> str:
    """Assert a CLI call succeeded (showing what it printed if not) and return its stdout."""
    assert result.exit_code == 0, (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"
    )
    return result.stdout


def only_run(runs_dir: Path) -> Path:
    """The one run folder under runs_dir (fails when there are none or several)."""
    runs = [p for p in Path(runs_dir).iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder in {runs_dir}, found {sorted(p.name for p in runs)}"
    return runs[0]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag as TensorBoard shows it: (step, value) in file order, after purges on resume."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def event_files(run_dir: Path) -> list[dict]:
    """Each event file in the order TensorBoard reads them, raw (no purge applied): its name, the steps of
    its SessionLog.START (purge) markers, its scalars {tag: [(step, value)]} and its plugin summary tags."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    files = []
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        info = {"name": path.name, "starts": [], "scalars": {}, "plugin_tags": []}
        for event in LegacyEventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                info["starts"].append(event.step)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    info["scalars"].setdefault(value.tag, []).append((event.step, value.simple_value))
                elif value.metadata.plugin_data.plugin_name:
                    info["plugin_tags"].append(value.tag)
        files.append(info)
    return files


def copy_run(run_dir: Path, dest_parent: Path) -> Path:
    dest_parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(run_dir, dest_parent / run_dir.name))


def start_rl(args: list[str], log: Path) -> subprocess.Popen:
    """`rl ARGS` as a real process (for signals), output to a file (a full pipe would block it)."""
    out = open(log, "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(RL), *map(str, args)], stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished 800-step CartPole run (eval and checkpoints every 400 steps), shared read-only.

    Returns (run_dir, q_network): the Q-network object that trained, as it was at the final save."""
    import agents.dqn

    runs_dir = tmp_path_factory.mktemp("shared_runs")
    made = []
    real = agents.dqn.make_q_network

    def recording(*a, **k):
        net = real(*a, **k)
        made.append(net)
        return net

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(agents.dqn, "make_q_network", recording)
        ok(invoke(train_args(runs_dir, 800, eval_frequency=400, checkpoint_frequency=400)))
    assert len(made) == 2, "train builds the online and the target network"
    return only_run(runs_dir), made[0]


@pytest.fixture
def no_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: asking for it is not an error here")
