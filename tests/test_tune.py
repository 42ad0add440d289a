"""`rl tune`: tiny DQN studies on CartPole-v1 (a few hundred steps a trial) through the CLI, in this process except
for --jobs. Scripted evaluation returns (agents/eval_round.py's `summarize` replaced) drive the pruner."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY, event_files, invoke, ok

from agents import checkpoint, eval_round, registry, search_space, tune

STUDY = "CartPole-v1__dqn"
STEPS = 600


def tune_args(runs_dir: Path, trials: int, *options, steps: int = STEPS, **overrides) -> list:
    """`rl tune dqn --env CartPole-v1 ...` with the tiny config fixed (it leaves learning_rate, exploration_fraction,
    end_e and gamma of configs/tune/dqn.yaml to search) and an evaluation every 200 steps."""
    settings = {**TINY, "runs_dir": runs_dir, "device": "cpu", "eval_frequency": 200, "eval_episodes": 1, **overrides}
    args = ["tune", "dqn", "--env", "CartPole-v1", "--trials", trials, "--steps", steps, *options]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


def load(runs_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{runs_dir}/tune/{STUDY}.db")


def run_folders(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and p.name != "tune")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """A finished 3-trial study (no trial pruned: the median pruner waits for 5), shared read-only."""
    runs_dir = tmp_path_factory.mktemp("tune") / "runs"
    ok(invoke(tune_args(runs_dir, 3)))
    return runs_dir


def test_shipped_search_spaces_load_against_cartpole():
    for algo in ("dqn", "ppo"):
        base = registry.resolve(algo, "CartPole-v1", "cartpole")
        space = search_space.load(search_space.SPACE_DIR / f"{algo}.yaml", algo, base)
        assert {"learning_rate", "gamma", "encoder.hidden_sizes"} <= set(space), algo
        assert space["learning_rate"].log
        assert "64,64" in space["encoder.hidden_sizes"].choices  # a list choice as the text --set reads


def test_each_trial_is_an_ordinary_run_of_its_sampled_values(study_dir: Path):
    study = load(study_dir)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert sorted(Path(t.user_attrs["run_dir"]) for t in trials) == run_folders(study_dir)
    assert set(trials[0].params) == {"learning_rate", "exploration_fraction", "end_e", "gamma"}  # TINY fixes the rest
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        _, cfg = registry.load_config(run_dir / "config.yaml")
        assert {k: getattr(cfg, k) for k in t.params} == t.params
        assert cfg.total_timesteps == STEPS and cfg.batch_size == 32
        evals = [v for _, v in sorted(t.intermediate_values.items())]
        assert list(t.intermediate_values) == [200, 400, 600] and t.value == pytest.approx(sum(evals) / 3)
        assert "tune/trial/text_summary" in [tag for f in event_files(run_dir) for tag in f["plugin_tags"]]


def test_a_rerun_resumes_the_study_with_one_more_trial(study_dir: Path, tmp_path: Path):
    runs_dir = Path(shutil.copytree(study_dir, tmp_path / "runs"))
    out = ok(invoke(tune_args(runs_dir, 4)))
    assert "4 complete" in out
    assert [t.number for t in load(runs_dir).get_trials()] == [0, 1, 2, 3]
    assert len(run_folders(runs_dir)) == 4


def test_the_best_config_trains_with_the_best_trials_values(study_dir: Path, tmp_path: Path):
    best = load(study_dir).best_trial
    best_yaml = study_dir / "tune" / f"{STUDY}.best.yaml"
    saved = yaml.safe_load(best_yaml.read_text())
    assert saved["batch_size"] == 32 and saved["encoder"] == {"hidden_sizes": [32, 32]}  # the fixed overrides too
    assert "runs_dir" not in saved and "progress" not in saved
    args = ["train", "dqn", "--env", "CartPole-v1", "--config", best_yaml, "--steps", 200]
    ok(invoke([*args, "--set", f"runs_dir={tmp_path}", "--set", "eval_frequency=0"]))
    (run_dir,) = tmp_path.iterdir()
    _, cfg = registry.load_config(run_dir / "config.yaml")
    assert {k: getattr(cfg, k) for k in best.params} == best.params
    assert cfg.train_frequency == TINY["train_frequency"] and cfg.encoder.hidden_sizes == (32, 32)


def test_report_prints_the_best_trials_and_writes_the_plots(study_dir: Path):
    out = ok(invoke(["tune", "--report", STUDY, "--set", f"runs_dir={study_dir}"]))
    lines = out.splitlines()
    assert lines[0] == f"study {STUDY}: dqn on CartPole-v1, 3 complete"
    best = load(study_dir).best_trial
    assert lines[2].split()[:2] == [str(best.number), f"{best.value:.2f}"] and best.user_attrs["run_dir"] in lines[2]
    for kind in ("history", "importance"):
        png = study_dir / "tune" / f"{STUDY}.{kind}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"plot: {png}" in out


def test_a_pruned_trial_stops_its_run_early_with_a_checkpoint(tmp_path: Path, monkeypatch):
    """Trial 0 evaluates 100 five times; trial 1 evaluates 10, below the median, and is pruned at its first
    evaluation past the warm-up (a third of 1,000 steps): step 400."""
    returns = itertools.chain([100.0] * 5, itertools.repeat(10.0))
    monkeypatch.setattr(eval_round, "summarize", lambda scores: {"mean": next(returns)})
    out = ok(invoke(tune_args(tmp_path, 2, "--startup-trials", "1", steps=1000)))
    assert "1 complete, 1 pruned" in out
    first, second = load(tmp_path).get_trials()
    assert first.value == 100.0
    assert second.state == optuna.trial.TrialState.PRUNED and second.intermediate_values == {200: 10.0, 400: 10.0}
    ckpt = checkpoint.load(checkpoint.latest(Path(second.user_attrs["run_dir"]) / "checkpoints"))
    assert ckpt.step == second.user_attrs["step"] == 400


def test_ctrl_c_fails_the_trial_in_progress_and_a_rerun_goes_on(tmp_path: Path, monkeypatch):
    real = eval_round.summarize

    def interrupted(scores):
        os.kill(os.getpid(), signal.SIGINT)  # the run's handler: stop after this step with a checkpoint
        return real(scores)

    monkeypatch.setattr(eval_round, "summarize", interrupted)
    result = invoke(tune_args(tmp_path, 2))
    assert result.exit_code == 130, result.stdout
    assert "the same command resumes the study" in result.stdout
    (trial,) = load(tmp_path).get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["interrupted"]
    assert checkpoint.load(checkpoint.latest(Path(trial.user_attrs["run_dir"]) / "checkpoints")).step == 200
    monkeypatch.setattr(eval_round, "summarize", real)
    ok(invoke(tune_args(tmp_path, 1)))  # the failed trial does not count: one more runs
    assert [t.state.name for t in load(tmp_path).get_trials()] == ["FAIL", "COMPLETE"]


def test_a_trial_below_the_median_only_at_its_last_evaluation_completes(tmp_path: Path, monkeypatch):
    """Trial 0 evaluates 40 then 100; trial 1 evaluates 50 (above the median) then 10 (below it) at its last step:
    the run is over, so the trial completes and no line says it was pruned."""
    returns = iter([40.0, 100.0, 50.0, 10.0])
    monkeypatch.setattr(eval_round, "summarize", lambda scores: {"mean": next(returns)})
    out = ok(invoke(tune_args(tmp_path, 2, "--startup-trials", "1", steps=400)))
    assert "2 complete" in out and "pruned" not in out
    second = load(tmp_path).get_trials()[1]
    assert second.state == optuna.trial.TrialState.COMPLETE and second.intermediate_values == {200: 50.0, 400: 10.0}


def test_jobs_share_one_study_from_two_processes(tmp_path: Path, monkeypatch):
    codes, real_join = [], tune._join

    def join(workers):
        interrupted = real_join(workers)
        codes.extend(w.exitcode for w in workers)
        return interrupted

    monkeypatch.setattr(tune, "_join", join)
    out = ok(invoke(tune_args(tmp_path, 2, "--jobs", 2)))
    assert "2 complete" in out and codes == [0, 0]
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2 and len(run_folders(tmp_path)) == 2
    for t in trials:
        _, cfg = registry.load_config(Path(t.user_attrs["run_dir"]) / "config.yaml")
        assert cfg.torch_threads == 1 and not cfg.progress


BAD_SPACES = {
    "unknown key": ("lerning_rate: {type: float, low: 1.0e-4, high: 1.0e-2}", "did you mean 'learning_rate'?"),
    "unknown type": ("learning_rate: {type: gaussian, low: 1.0e-4, high: 1.0e-2}", "type: float|int|categorical"),
    "low above high": ("learning_rate: {type: float, low: 0.1, high: 0.01}", "low <= high"),
    "not YAML": ("learning_rate: {type: float, low: [1", "is not valid YAML"),
    "a value the key refuses": ("gamma: {type: float, low: 0.9, high: 1.5}", "'gamma' is 1.5: it must lie in [0, 1]"),
    "a float for an int key": ("batch_size: {type: float, low: 16, high: 64}", "holds an int"),
    "a choice of the wrong type": ("batch_size: {type: categorical, choices: [32, big]}", "expects int, got 'big'"),
}


@pytest.mark.parametrize("text, error", BAD_SPACES.values(), ids=BAD_SPACES)
def test_a_bad_search_space_is_one_line_and_creates_nothing(tmp_path: Path, text: str, error: str):
    space = tmp_path / "space.yaml"
    space.write_text(text + "\n")
    result = invoke(["tune", "dqn", "--env", "CartPole-v1", "--space", space, "--set", f"runs_dir={tmp_path / 'runs'}"])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: search space {str(space)!r}") and error in line, line
    assert not (tmp_path / "runs").exists()


def test_sampled_keys_fixed_by_set_are_not_searched(tmp_path: Path):
    spec = tune.prepare(
        "dqn",
        "CartPole-v1",
        trials=1,
        jobs=1,
        study=None,
        storage=None,
        steps=None,
        config_file=None,
        overrides=["gamma=0.9", "encoder.hidden_sizes=16", f"runs_dir={tmp_path}"],
        space_file=None,
        pruner="median",
        startup_trials=5,
    )
    assert spec.unsearched == ("gamma", "encoder.hidden_sizes") and "gamma" not in spec.space
    assert spec.storage == f"sqlite:///{tmp_path}/tune/{STUDY}.db" and not (tmp_path / "tune").exists()


def test_a_missing_study_or_algorithm_is_one_line(tmp_path: Path):
    result = invoke(["tune", "--report", "nope", "--set", f"runs_dir={tmp_path}"])
    assert result.exit_code == 2 and result.stderr.startswith("error: no study 'nope'")
    result = invoke(["tune", "--env", "CartPole-v1", "--set", f"runs_dir={tmp_path}"])
    assert result.exit_code == 2 and result.stderr.startswith("error: an algorithm is required")
    assert list(tmp_path.iterdir()) == []
