"""`rl train ppo --env Pong` on the real game: a few rollouts, a checkpoint, and a resume in place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import invoke, ok, scalars


def test_ppo_pong_train_checkpoint_resume(tmp_path: Path):
    common = [
        "--set",
        "num_steps=32",
        "--set",
        "eval_frequency=0",
        "--set",
        "checkpoint_frequency=512",
        "--set",
        "log_frequency=256",
        "--set",
        "progress=false",
        "--device",
        "cpu",
    ]
    ok(invoke(["train", "ppo", "--env", "Pong", "--steps", "768", *common, "--set", f"runs_dir={tmp_path}"]))
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("Pong__ppo__1__")
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 768  # 3 rollouts of 8 x 32

    ok(invoke(["train", "ppo", "--resume", str(run_dir), "--steps", "1280", *common]))
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 1280
    assert list(tmp_path.iterdir()) == [run_dir]  # resumed in place, no new folder
    tags = scalars(run_dir)
    steps = [s for s, _ in tags["losses/policy_loss"]]
    assert steps == sorted(set(steps)) and steps[0] == 256 and steps[-1] == 1280, steps
    assert all(np.isfinite(v) for _, v in tags["losses/value_loss"])
    # the resumed run anneals the learning rate from its step over the new total, as a fresh 1,280-step run would
    lr = dict(tags["charts/learning_rate"])
    assert abs(lr[1024] - 2.5e-4 * (1 - 768 / 1280)) < 1e-9 and abs(lr[1280] - 2.5e-4 * (1 - 1024 / 1280)) < 1e-9
