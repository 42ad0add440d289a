"""The headline command on the real game: a few thousand Pong steps, a checkpoint, and a resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from agents.cli import app


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_pong_train_checkpoint_resume(tmp_path: Path):
    common = [
        "--set",
        "learning_starts=1000",
        "--set",
        "buffer_size=20000",
        "--set",
        "eval_frequency=0",
        "--set",
        "checkpoint_frequency=1500",
        "--set",
        "log_frequency=250",
        "--set",
        "progress=false",
        "--set",
        f"runs_dir={tmp_path}",
    ]
    runner = CliRunner()
    first = runner.invoke(app, ["train", "dqn", "--env", "Pong", "--steps", "3000", *common])
    assert first.exit_code == 0, first.output
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("Pong__dqn__1__")
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 3000
    replay_frames = np.load(run_dir / "checkpoints" / "step_3000" / "replay" / "frames.npy", allow_pickle=False)
    assert replay_frames.dtype == np.uint8 and replay_frames.shape[1:] == (1, 84, 84)  # one frame per transition

    second = runner.invoke(app, ["train", "dqn", "--resume", str(run_dir), "--steps", "4500", *common[:-2]])
    assert second.exit_code == 0, second.output
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 4500
    assert list(tmp_path.iterdir()) == [run_dir]  # resumed in place, no new folder

    losses = _scalars(run_dir, "losses/td_loss")
    steps = [s for s, _ in losses]
    assert steps == sorted(set(steps)), "duplicate or out-of-order points after resume"
    assert steps[0] <= 1250 and steps[-1] == 4500 and any(3000 < s < 4500 for s in steps)
    assert all(np.isfinite(v) for _, v in losses)
    # epsilon continues on the schedule of the resumed run (decay over 10% of 4,500 steps: at end_e by
    # then) instead of restarting at 1.0 as a fresh run would
    first_after = [v for s, v in _scalars(run_dir, "charts/epsilon") if s > 3000][0]
    assert first_after == pytest.approx(0.01)
