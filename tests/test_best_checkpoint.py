"""checkpoints/best: the weights of a run's best evaluation, written atomically beside the step checkpoints, kept by
pruning and across a resume, and played by `--checkpoint best` (eval, watch, export) like a step checkpoint.

Most runs here score their evaluations from a script (agents.eval_round.run_episodes patched), so which evaluation is
the best, and which later ones are worse or equal, is known in advance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import invoke, ok, only_run, scalars, train_args
from safetensors.torch import load_file
from typer.testing import CliRunner

import agents.eval_round
from agents import checkpoint
from agents.cli import app


def scripted_evals(monkeypatch, means: list[float]) -> None:
    """The training-time evaluation rounds score `means`, in order (one game each)."""
    left = iter(means)
    monkeypatch.setattr(agents.eval_round, "run_episodes", lambda *a, **k: [next(left)])


def best_state(run_dir: Path) -> dict:
    return json.loads((run_dir / "checkpoints" / "best" / "state.json").read_text())


def running_max(values: list[float]) -> list[float]:
    return [max(values[: i + 1]) for i in range(len(values))]


def test_best_is_the_highest_evaluation_weights_only_and_survives_pruning(tmp_path, monkeypatch):
    means = [
        1.0,
        5.0,
        3.0,
        9.0,
        9.0,
        2.0,
    ]  # evaluations at 200 ... 1200: the best at 800, an equal one and a worse after
    scripted_evals(monkeypatch, means)
    args = train_args(tmp_path, 1200, eval_frequency=200, checkpoint_frequency=400, keep_checkpoints=2)
    out = ok(invoke(args))
    run_dir = only_run(tmp_path)
    ckpts = run_dir / "checkpoints"
    assert "best 9.00 at step 800 in checkpoints/best" in out

    # the evaluations as the run recorded them; best is their first highest
    evals = checkpoint.load(checkpoint.latest(ckpts)).state["evals"]
    assert [mean for _, mean in evals] == means
    step, mean = max(evals, key=lambda e: e[1])
    assert (step, mean) == (800, 9.0)
    assert best_state(run_dir)["step"] == step and best_state(run_dir)["return"] == mean
    assert [v for _, v in scalars(run_dir)["eval/best_return"]] == running_max(means)

    # pruning kept the newest two step checkpoints and best; no temp or set-aside folder is left
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "latest.json", "step_1200", "step_800"]
    # weights only: the Q-network that played (no target network, optimizer or replay), as it was at step 800
    assert sorted(p.name for p in (ckpts / "best").iterdir()) == ["model.safetensors", "state.json"]
    best, at_800 = load_file(ckpts / "best" / "model.safetensors"), load_file(ckpts / "step_800" / "model.safetensors")
    assert best.keys() == {k for k in at_800 if k.startswith("q.")} and best
    assert all(torch.equal(best[k], at_800[k]) for k in best)
    assert not all(torch.equal(best[k], load_file(ckpts / "step_1200" / "model.safetensors")[k]) for k in best)

    # rl eval, watch and export play it like a step checkpoint
    printed = ok(invoke(["eval", run_dir, "--checkpoint", "best", "--episodes", 2, "--device", "cpu"]))
    assert printed.startswith("CartPole-v1 step 800 (best): ")
    result = json.loads(
        ok(invoke(["eval", run_dir, "--checkpoint", "best", "--episodes", 2, "--json", "--device", "cpu"]))
    )
    assert result["step"] == 800
    gif = tmp_path / "best.gif"
    ok(invoke(["watch", run_dir, "--checkpoint", "best", "--video", gif, "--device", "cpu"]))
    assert gif.stat().st_size > 0
    exported = tmp_path / "best.pt"
    printed = ok(invoke(["export", run_dir, "--checkpoint", "best", "--format", "torchscript", "--out", exported]))
    assert "step 800" in printed and exported.exists()

    # a bad --checkpoint is one line listing what there is
    for command in (["eval"], ["watch"], ["export", "--out", tmp_path / "x.pt", "--format", "torchscript"]):
        bad = invoke([*command, run_dir, "--checkpoint", "400"])
        assert bad.exit_code == 2 and bad.stderr.strip().splitlines() == [
            f"error: no checkpoint at step 400 in {str(run_dir)!r}: available: 800, 1200, best"
        ]

    # --resume never continues from weights alone, even were latest.json to name best
    (ckpts / "latest.json").write_text(json.dumps({"step": 800, "path": "best"}))
    bad = invoke(["train", "dqn", "--resume", run_dir, "--steps", 1600])
    assert bad.exit_code == 2 and "holds weights only" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_run_without_an_evaluation_has_no_best(tmp_path):
    ok(invoke(train_args(tmp_path, 300, eval_frequency=0, checkpoint_frequency=300)))
    run_dir = only_run(tmp_path)
    assert not (run_dir / "checkpoints" / "best").exists()
    bad = invoke(["eval", run_dir, "--checkpoint", "best"])
    assert bad.exit_code == 2 and bad.stderr.strip() == f"error: no best checkpoint in {str(run_dir)!r}: available: 300"


def test_resume_keeps_the_best_so_far(tmp_path, monkeypatch):
    scripted_evals(monkeypatch, [3.0, 8.0, 4.0])  # 200, 400, 600
    ok(invoke(train_args(tmp_path / "runs", 600, eval_frequency=200, checkpoint_frequency=600)))
    run_dir = only_run(tmp_path / "runs")
    assert (best_state(run_dir)["step"], best_state(run_dir)["return"]) == (400, 8.0)

    # after the resume 7 is the highest new evaluation: a process that forgot the best so far would keep it
    scripted_evals(monkeypatch, [7.0, 8.0, 2.0])  # 800, 1000, 1200
    out = ok(invoke(["train", "dqn", "--resume", run_dir, "--steps", 1200]))
    assert "resuming from step 600 (step_600)" in out and "best 8.00 at step 400" in out
    assert (best_state(run_dir)["step"], best_state(run_dir)["return"]) == (400, 8.0)
    assert [v for _, v in scalars(run_dir)["eval/best_return"]] == [3.0, 8.0, 8.0, 8.0, 8.0, 8.0]


def test_ppo_best_holds_the_actor_critic_and_plays(tmp_path):
    settings = {"eval_episodes": 2, "progress": "false", "torch_threads": 1, "encoder.hidden_sizes": "16,16"}
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    args = ["train", "ppo", "--env", "CartPole-v1", "--steps", 512, "--device", "cpu", "--num-envs", 2, *sets]
    ok(invoke([*args, "--set", "num_steps=64", "--set", "eval_frequency=256", "--set", f"runs_dir={tmp_path}"]))
    run_dir = only_run(tmp_path)
    best = load_file(run_dir / "checkpoints" / "best" / "model.safetensors")
    assert best and all(k.startswith("agent.") for k in best)
    assert best_state(run_dir)["step"] in (256, 512)
    ok(invoke(["eval", run_dir, "--checkpoint", "best", "--episodes", 1, "--device", "cpu"]))


# ---------------------------------------------------------------------------------------------- atomic replacement
class Killed(BaseException):
    """A process killed at this point: no cleanup runs (an OSError would be cleaned up)."""


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"q.weight": torch.full((2, 3), value)}


def held(folder: Path) -> tuple[int, float]:
    """The step and first weight of the best checkpoint as eval, watch and export would load it."""
    ckpt = checkpoint.load(checkpoint.best(folder))
    assert ckpt.optimizer is None
    return ckpt.step, ckpt.tensors["q.weight"][0, 0].item()


def renaming_fails_into_place(monkeypatch, error: BaseException) -> None:
    real = checkpoint.os.rename

    def rename(src, dst):
        if Path(src).name == ".tmp-best":
            raise error
        return real(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", rename)


def test_save_best_replaces_only_on_a_strictly_higher_return(tmp_path):
    assert checkpoint.best(tmp_path) is None and checkpoint.best_evaluation(tmp_path) is None
    assert checkpoint.save_best(tmp_path, 100, 1.0, weights(1)) == 1.0
    assert checkpoint.save_best(tmp_path, 200, 1.0, weights(2)) == 1.0  # equal: the first one stays
    assert checkpoint.save_best(tmp_path, 300, 0.5, weights(3)) == 1.0
    assert held(tmp_path) == (100, 1.0)
    assert checkpoint.save_best(tmp_path, 400, 2.0, weights(4)) == 2.0
    assert held(tmp_path) == (400, 4.0) and checkpoint.best_evaluation(tmp_path) == (400, 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_a_failed_rename_leaves_the_previous_best_and_no_temp_folder(tmp_path, monkeypatch):
    checkpoint.save_best(tmp_path, 100, 1.0, weights(1))
    renaming_fails_into_place(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(checkpoint.CheckpointError, match="cannot save the best checkpoint .*No space left") as error:
        checkpoint.save_best(tmp_path, 200, 2.0, weights(2))
    assert len(str(error.value).splitlines()) == 1
    assert held(tmp_path) == (100, 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_killed_between_the_renames_the_previous_best_is_still_found(tmp_path, monkeypatch):
    def killed_between_the_renames(step: int, mean: float) -> None:
        with monkeypatch.context() as patch:
            renaming_fails_into_place(patch, Killed())
            with pytest.raises(Killed):
                checkpoint.save_best(tmp_path, step, mean, weights(step))

    checkpoint.save_best(tmp_path, 100, 1.0, weights(1))
    killed_between_the_renames(200, 2.0)
    assert not (tmp_path / "best").exists()  # set aside, the new one not yet renamed in
    assert held(tmp_path) == (100, 1.0) and checkpoint.best_evaluation(tmp_path) == (100, 1.0)
    # the next process compares with the previous best, puts it back and cleans up when it writes a new one
    assert checkpoint.save_best(tmp_path, 300, 0.5, weights(3)) == 1.0
    assert checkpoint.save_best(tmp_path, 400, 3.0, weights(4)) == 3.0
    assert held(tmp_path) == (400, 4.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    # or its next step checkpoint does
    killed_between_the_renames(500, 5.0)
    checkpoint.save(tmp_path, 10, {}, torch.optim.SGD([torch.zeros(1, requires_grad=True)]), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "latest.json", "step_10"]
    assert held(tmp_path) == (400, 4.0)


def test_an_unreadable_best_counts_as_none_and_the_next_evaluation_replaces_it(tmp_path):
    checkpoint.save_best(tmp_path, 100, 5.0, weights(1))
    (tmp_path / "best" / "state.json").write_text('{"step": 100, "ret')  # cut short
    assert checkpoint.best_evaluation(tmp_path) is None
    assert checkpoint.save_best(tmp_path, 200, 1.0, weights(2)) == 1.0  # below the lost 5.0, yet saved
    assert held(tmp_path) == (200, 2.0) and checkpoint.best_evaluation(tmp_path) == (200, 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_killed_while_writing_leaves_the_best_untouched(tmp_path, monkeypatch):
    checkpoint.save_best(tmp_path, 100, 1.0, weights(1))
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "_write_json", lambda *a: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            checkpoint.save_best(tmp_path, 200, 2.0, weights(2))
    assert (tmp_path / ".tmp-best").exists() and held(tmp_path) == (100, 1.0)
    assert checkpoint.save_best(tmp_path, 300, 3.0, weights(3)) == 3.0
    assert held(tmp_path) == (300, 3.0) and sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_gtp_agent_plays_the_best_checkpoint(tmp_path):
    sets = {
        "runs_dir": tmp_path,
        "num_envs": 4,
        "num_steps": 32,
        "encoder.tower_channels": 8,
        "encoder.tower_blocks": 1,
        "eval_frequency": 128,
        "eval_episodes": 2,
        "go.eval_games": 2,
        "go.eval_opponents": "random",
        "progress": "false",
        "torch_threads": 1,
    }
    args = ["train", "ppo", "--env", "Go5", "--steps", 256, "--device", "cpu"]
    ok(invoke([*args, *(arg for key, value in sets.items() for arg in ("--set", f"{key}={value}"))]))
    run_dir = only_run(tmp_path)
    assert best_state(run_dir)["step"] in (128, 256)
    out = ok(
        CliRunner().invoke(app, ["gtp", "--agent", str(run_dir), "--checkpoint", "best"], input="genmove b\nquit\n")
    )
    assert out.startswith("= ") and "resign" not in out.splitlines()[0]
    bad = invoke(["gtp", "--checkpoint", "best"])
    assert bad.exit_code == 2 and "add --agent" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
