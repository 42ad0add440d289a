"""The `rl` command's contract: help with examples, listings, and bad input as one line on stderr with exit 2."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import copy_run, invoke, ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under folder (hidden ones too) -> sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_user_error(result, *needles: str) -> str:
    """Exit code 2, nothing on stdout, exactly one line on stderr that contains every needle."""
    assert result.exit_code == 2, (
        f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert result.stdout == ""
    return lines[0]


# ---------------------------------------------------------------------------------------------- help and listings
@pytest.mark.parametrize(
    "args, example",
    [
        (["--help"], "Example: rl train dqn --env Pong"),
        (["train", "--help"], "rl train dqn --env CartPole-v1 --steps 50000 --seed 3"),
        (["eval", "--help"], "rl eval runs/CartPole-v1__dqn__1__20261123-101500 --json"),
        (["envs", "--help"], "rl envs --family atari"),
        (["algos", "--help"], "rl algos"),
    ],
)
def test_every_help_text_shows_an_example(args, example):
    out = ok(invoke(args))
    assert "Example" in out and example in out
    assert "Usage:" in out


def test_rl_without_arguments_shows_the_help():
    result = invoke([])
    assert "Example: rl train dqn --env Pong" in result.stdout + result.stderr


def test_envs_lists_atari_and_gymnasium_names():
    out = ok(invoke(["envs"]))
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert {"Pong", "Breakout", "CartPole-v1"} <= set(names)
    atari = ok(invoke(["envs", "--family", "atari"]))
    assert "Pong" in atari and "CartPole-v1" not in atari


def test_algos_lists_every_registered_algorithm():
    from agents.registry import TRAIN_ALGOS

    out = ok(invoke(["algos"]))
    assert sorted(line.split()[0] for line in out.splitlines() if line.strip()) == sorted(TRAIN_ALGOS)


# ---------------------------------------------------------------------------------------------- bad input
BAD_TRAIN = {
    "unknown algo": (["train", "dqm", "--env", "Pong"], ["'dqm'", "did you mean 'dqn'"]),
    "unknown env": (["train", "dqn", "--env", "Pongg"], ["'Pongg'", "did you mean Pong"]),
    "unknown env, case": (["train", "dqn", "--env", "Cartpole-v1"], ["'Cartpole-v1'", "CartPole-v1"]),
    "unknown key": (
        ["train", "dqn", "--env", "CartPole-v1", "--set", "learning_rat=1"],
        ["'learning_rat'", "did you mean 'learning_rate'"],
    ),
    "unknown nested key": (
        ["train", "dqn", "--env", "CartPole-v1", "--set", "encoder.nme=mlp"],
        ["'encoder.nme'", "'encoder.name'"],
    ),
    "wrong type": (
        ["train", "dqn", "--env", "CartPole-v1", "--set", "batch_size=abc"],
        ["'batch_size'", "int", "'abc'"],
    ),
    "set without =": (["train", "dqn", "--env", "CartPole-v1", "--set", "batch_size"], ["key=value"]),
    "out of range": (["train", "dqn", "--env", "CartPole-v1", "--set", "gamma=1.5"], ["'gamma'", "[0, 1]"]),
    "missing --env": (["train", "dqn"], ["--env is required", "rl train dqn --env Pong"]),
    "continuous actions": (["train", "ppo", "--env", "Pendulum-v1"], ["'Pendulum-v1'", "Discrete actions"]),
    "tuple observations": (["train", "dqn", "--env", "Blackjack-v1"], ["'Blackjack-v1'", "Tuple", "uint8 images"]),
    "module that does not import": (["train", "dqn", "--env", "nosuchpkg:Game-v0"], ["cannot import", "'nosuchpkg'"]),
    "missing config file": (
        ["train", "dqn", "--env", "CartPole-v1", "--config", "nope.yaml"],
        ["'nope.yaml'", "does not exist"],
    ),
    "NaN": (["train", "dqn", "--env", "CartPole-v1", "--set", "learning_rate=nan"], ["'learning_rate'", "finite"]),
    "infinity in a key without a range": (
        ["train", "ppo", "--env", "CartPole-v1", "--set", "go.komi=-inf"],
        ["'go.komi'", "finite"],
    ),
    "negative seed": (["train", "dqn", "--env", "CartPole-v1", "--seed", "-1"], ["'seed'", "[0, 2**32 - 1]"]),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_input_is_one_line_and_exit_2_and_creates_nothing(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default runs_dir ("runs") would land here
    args, needles = BAD_TRAIN[case]
    assert_user_error(invoke([*args, "--set", f"runs_dir={tmp_path / 'runs'}"]), *needles)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [None, bytes(range(256))], ids=["a folder", "a binary file"])
def test_a_config_file_that_is_not_text_is_one_line(content, tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.mkdir() if content is None else path.write_bytes(content)
    runs = tmp_path / "work"
    runs.mkdir()
    monkeypatch.chdir(runs)
    result = invoke(["train", "dqn", "--env", "CartPole-v1", "--config", path, "--set", f"runs_dir={runs}"])
    assert_user_error(result, str(path), "cannot be read")
    assert list(runs.iterdir()) == []


def _unusable_runs_dir(case: str, tmp_path: Path) -> Path:
    """A runs_dir no run folder can be made in."""
    if case == "under /proc":
        return Path("/proc/rl-runs")
    if case == "a file":
        (tmp_path / "runs").write_text("")
    elif os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    else:
        tmp_path.chmod(0o555)
    return tmp_path / "runs"


@pytest.mark.parametrize("case", ["a file", "under /proc", "read-only"])
def test_a_runs_dir_that_cannot_hold_runs_is_one_line(case, tmp_path):
    runs_dir = _unusable_runs_dir(case, tmp_path)
    try:
        result = invoke(["train", "dqn", "--env", "CartPole-v1", "--set", f"runs_dir={runs_dir}"])
    finally:
        tmp_path.chmod(0o755)
    assert_user_error(result, "'runs_dir'", str(runs_dir), "cannot create a run folder")
    assert [p.name for p in tmp_path.iterdir()] == (["runs"] if case == "a file" else [])


def test_cuda_without_cuda_is_a_config_error(no_cuda, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        ["train", "dqn", "--env", "CartPole-v1", "--device", "cuda", "--set", f"runs_dir={tmp_path / 'runs'}"]
    )
    assert_user_error(result, "'cuda'", "CUDA is not available", "--device cpu")
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_folder_that_is_not_a_run_is_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    assert_user_error(invoke(["train", "dqn", "--resume", tmp_path]), "not a run folder", "config.yaml")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_resume_with_another_algo_or_env_is_exit_2(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run[0], tmp_path)
    before = tree_digest(run_dir)
    assert_user_error(invoke(["train", "dqn", "--resume", run_dir, "--env", "Pong"]), "CartPole-v1", "drop --env")
    assert_user_error(invoke(["train", "dqm", "--resume", run_dir]), "'dqn'")
    assert tree_digest(run_dir) == before


def test_eval_of_a_missing_folder_is_exit_2(tmp_path):
    assert_user_error(invoke(["eval", tmp_path / "runs" / "nope"]), "nope", "not a run folder")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS = {
    "model.safetensors truncated": (lambda c: _truncate(c / "step_800" / "model.safetensors"), "corrupt"),
    "model.safetensors empty": (lambda c: (c / "step_800" / "model.safetensors").write_bytes(b""), "corrupt"),
    "optimizer.safetensors truncated": (lambda c: _truncate(c / "step_800" / "optimizer.safetensors"), "corrupt"),
    "state.json truncated": (lambda c: _truncate(c / "step_800" / "state.json"), "corrupt: state.json"),
    "state.json binary": (lambda c: (c / "step_800" / "state.json").write_bytes(bytes(range(256))), "state.json"),
    "state.json without keys": (lambda c: (c / "step_800" / "state.json").write_text("{}"), "state.json"),
    "model.safetensors missing": (
        lambda c: (c / "step_800" / "model.safetensors").unlink(),
        "missing model.safetensors",
    ),
    "optimizer.safetensors missing": (
        lambda c: (c / "step_800" / "optimizer.safetensors").unlink(),
        "missing optimizer.safetensors",
    ),
    "latest.json garbage": (lambda c: (c / "latest.json").write_text("{not json"), "latest.json"),
    "latest.json random bytes": (lambda c: (c / "latest.json").write_bytes(bytes(range(128, 256))), "latest.json"),
    "latest.json names a missing folder": (
        lambda c: (c / "latest.json").write_text('{"step": 9, "path": "step_9"}'),
        "step_9",
    ),
    "no checkpoints at all": (lambda c: [p.unlink() for p in c.rglob("*") if p.is_file()], "latest.json"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_eval_of_a_corrupt_checkpoint_is_exit_2_and_overwrites_nothing(case, tiny_run, tmp_path):
    run_dir = copy_run(tiny_run[0], tmp_path)
    damage, needle = CORRUPTIONS[case]
    damage(run_dir / "checkpoints")
    before = tree_digest(run_dir)
    assert_user_error(invoke(["eval", run_dir, "--episodes", "2", "--device", "cpu"]), needle)
    assert tree_digest(run_dir) == before  # the damaged file is left as it was, nothing new written
    # and training does not resume from it either
    assert_user_error(invoke(["train", "dqn", "--resume", run_dir]), needle)
    assert tree_digest(run_dir) == before


def test_eval_of_weights_that_do_not_fit_the_config_is_exit_2(tiny_run, tmp_path):
    import torch
    from safetensors.torch import save_file

    run_dir = copy_run(tiny_run[0], tmp_path)
    save_file({"q.head.weight": torch.zeros(3, 3)}, str(run_dir / "checkpoints" / "step_800" / "model.safetensors"))
    before = tree_digest(run_dir)
    assert_user_error(invoke(["eval", run_dir, "--episodes", "2", "--device", "cpu"]), "does not fit", "config.yaml")
    assert tree_digest(run_dir) == before


# ---------------------------------------------------------------------------------------------- eval
def test_eval_json_reports_the_score_distribution(tiny_run):
    run_dir, _ = tiny_run
    before = tree_digest(run_dir)
    out = ok(invoke(["eval", run_dir, "--episodes", "3", "--json", "--device", "cpu"]))
    summary = json.loads(out)
    assert summary["episodes"] == 3 and summary["step"] == 800 and summary["run"] == str(run_dir)
    assert {"mean", "std", "min", "max", "ci95_low", "ci95_high", "epsilon"} <= set(summary)
    assert summary["min"] >= 1 and summary["min"] <= summary["mean"] <= summary["max"] <= 500  # CartPole-v1 scores
    assert summary["ci95_low"] <= summary["mean"] <= summary["ci95_high"]
    assert summary["std"] >= 0
    assert tree_digest(run_dir) == before  # evaluation writes nothing into the run

    again = json.loads(ok(invoke(["eval", run_dir, "--episodes", "3", "--json", "--device", "cpu"])))
    assert again == summary  # same seed, same games
    assert_user_error(invoke(["eval", run_dir, "--greedy", "--device", "cpu"]), "--greedy", "already acts greedily")


def test_train_supervised_points_to_its_own_command(tmp_path):
    result = invoke(["train", "supervised", "--env", "CartPole-v1", "--set", f"runs_dir={tmp_path}"])
    assert result.exit_code == 2 and "rl supervised MODEL --data" in result.stderr
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- fuzzing
# Random and mutated `rl train` input: each is either accepted (the run would start) or refused with one line and
# exit 2. No run starts: a stand-in for run.start uses the config as start() does first (device, seeds), then stops.
class Accepted(Exception):
    """The config passed every check made before a run folder exists."""


def _fake_start(algo, config, *args, **kwargs):
    from agents import run

    run.pick_device(config.device)
    run.seed_everything(config.seed)
    raise Accepted


def _dqn_defaults() -> dict[str, str]:
    from agents import config, registry

    flat = config.flatten(config.to_dict(registry.config_class("dqn")()))
    return {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in flat.items() if k != "env"}


DEFAULTS = _dqn_defaults()  # every key but env (an env of the form module:Id imports that module), as --set text
SPECIAL = [
    "nan", "-NaN", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999", "", " ", "[]", "(", ",", "1,,2", "1_0",
    "0x10", "1e3", "-0", "true", "None", "null", "~", "=", "a=b", "\t", "\n", "é", "٣", "x" * 200, "/proc", "cuda:-1",
]  # fmt: skip
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")  # argv holds no NUL
TEXT = st.text(CHARS, max_size=12)


def _mutate(text: str, where: int, how: int, char: str) -> str:
    """One edit: a character deleted, inserted or replaced."""
    i = where % (len(text) + 1)
    return text[:i] + (char if how else "") + text[i + (how != 1) :]


KEY = st.one_of(
    st.sampled_from(sorted(DEFAULTS)),
    st.builds(_mutate, st.sampled_from(sorted(DEFAULTS)), st.integers(0, 40), st.integers(0, 2), CHARS),
    TEXT,
)
VALUE = st.one_of(
    st.sampled_from(SPECIAL),
    TEXT,
    st.floats().map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.builds(_mutate, st.sampled_from(sorted(set(DEFAULTS.values()))), st.integers(0, 40), st.integers(0, 2), CHARS),
)
SET = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", KEY, VALUE),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(sorted(DEFAULTS)), VALUE),
    TEXT,  # no `=` at all, most often
)
OPTION = st.one_of(
    st.tuples(st.sampled_from(["--steps", "--seed", "--num-envs"]), st.integers(-(10**20), 10**20).map(str)),
    st.tuples(st.sampled_from(["--device", "--impl"]), st.one_of(st.sampled_from(SPECIAL), TEXT)),
)
FUZZ = settings(
    max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip


def assert_accepted_or_refused(result) -> None:
    if not isinstance(result.exception, Accepted):
        assert_user_error(result)


@FUZZ
@given(sets=st.lists(SET, min_size=1, max_size=3), options=st.lists(OPTION, max_size=2))
def test_fuzzed_train_input_is_accepted_or_one_line_and_exit_2(sets, options, monkeypatch, tmp_path):
    monkeypatch.setattr("agents.launch.run_lib.start", _fake_start)
    monkeypatch.chdir(tmp_path)
    args = ["train", "dqn", "--env", "CartPole-v1", *[f"{o}={v}" for o, v in options], *[f"--set={s}" for s in sets]]
    assert_accepted_or_refused(invoke(args))
    assert list(tmp_path.iterdir()) == []


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), st.text(CHARS, max_size=200).map(str.encode)))
def test_fuzzed_config_file_is_accepted_or_one_line_and_exit_2(content, monkeypatch, tmp_path):
    monkeypatch.setattr("agents.launch.run_lib.start", _fake_start)
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    assert_accepted_or_refused(invoke(["train", "dqn", "--env", "CartPole-v1", "--config", config]))
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
