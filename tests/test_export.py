"""`rl export`: the exported policy gives torch's outputs on real observations (max |difference| <= 1e-4 in fp32 on
1,000 of them) for DQN (plain, C51 + dueling), PPO (CNN, MLP) and the Go net; bad input is one line, exit 2, and
leaves no file; the README's onnxruntime-only Pong snippet runs without torch."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_run, invoke, ok, only_run

import envs
from agents import export, hooks, registry

onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export needs the export extra (the dev extra has it)")

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["--set", "progress=false", "--set", "torch_threads=1", "--set", "eval_frequency=0", "--device", "cpu"]
# Tiny runs whose networks are what training builds (mostly still at their initial weights): the export reads them
# from the run folder exactly as it would a trained run's
RUNS = {
    "dqn-pong-c51-dueling": [
        *("dqn", "--env", "Pong", "--steps", "64", "--set", "buffer_size=1000", "--set", "learning_starts=1000"),
        *("--set", "checkpoint_replay=false", "--set", "distributional=true", "--set", "dueling=true"),
    ],
    "ppo-pong-cnn": ["ppo", "--env", "Pong", "--steps", "64", "--set", "num_envs=2", "--set", "num_steps=32"],
    "ppo-cartpole-mlp": ["ppo", "--env", "CartPole-v1", "--steps", "256", "--set", "num_steps=32"],
    "ppo-go5": [
        *("ppo", "--env", "Go5", "--steps", "64", "--set", "num_envs=2", "--set", "num_steps=32"),
        *("--set", "encoder.tower_channels=8", "--set", "encoder.tower_blocks=1", "--set", "heads=alphazero"),
    ],
    "ppo-cartpole-lstm": ["ppo", "--env", "CartPole-v1", "--steps", "128", "--set", "encoder.name=lstm"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    made = {}
    for name, args in RUNS.items():
        runs_dir = tmp_path_factory.mktemp(name)
        ok(invoke(["train", *args, *TINY, "--set", f"runs_dir={runs_dir}"]))
        made[name] = only_run(runs_dir)
    return made


def rl_export(run_dir: Path, out: Path, *args: str) -> float:
    """`rl export RUN --out OUT ARGS`; returns the max |difference| it printed."""
    printed = ok(invoke(["export", run_dir, "--out", out, *args]))
    assert f"wrote {out}" in printed and "(tolerance 1e-04) over 1,000 observations" in printed, printed
    return float(re.search(r"max \|difference\| (\S+)", printed).group(1))


def runtime(path: Path):
    """The exported file as a numpy function obs (N, ...) -> (N, A), through onnxruntime or torch.jit.load."""
    if path.suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda obs: session.run(None, {"obs": obs})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still loads
        module = torch.jit.load(str(path))
    return lambda obs: module(torch.from_numpy(obs)).detach().numpy()


def torch_outputs(run_dir: Path, step: str, obs: np.ndarray) -> np.ndarray:
    """The run's network as `rl eval` loads it: Q-values (DQN) or logits (the PPO family)."""
    opened = registry.open_run(run_dir, step)
    env = envs.make(opened.config.env, 1, 0, **hooks.for_config(opened.config).env_options())
    network = registry.load_network(opened, env, torch.device("cpu"))
    env.close()
    with torch.inference_mode():
        out = network(torch.from_numpy(obs))
    return (out[0] if isinstance(out, tuple) else out).numpy()


def fresh_observations(run_dir: Path, count: int = export.CHECK_OBSERVATIONS) -> np.ndarray:
    """Observations of the run's env other than those the export checked on (another seed)."""
    config = registry.open_run(run_dir, None).config
    env = envs.make(config.env, 4, 1, **hooks.for_config(config).env_options())
    try:
        return export.random_observations(env, count, seed=1)
    finally:
        env.close()


@pytest.mark.parametrize(
    "name, fmt, dtype, shape, actions",
    [
        ("dqn-pong-c51-dueling", "onnx", np.uint8, (4, 84, 84), 6),
        ("ppo-pong-cnn", "onnx", np.uint8, (4, 84, 84), 6),
        ("ppo-pong-cnn", "torchscript", np.uint8, (4, 84, 84), 6),
        ("ppo-cartpole-mlp", "onnx", np.float32, (4,), 2),
        ("ppo-go5", "onnx", np.float32, (17, 5, 5), 26),
    ],
)
def test_exported_policy_gives_torchs_outputs(runs, tmp_path, name, fmt, dtype, shape, actions):
    out = tmp_path / f"policy{export.FORMATS[fmt]}"
    assert rl_export(runs[name], out, "--format", fmt) <= 1e-4
    obs = fresh_observations(runs[name])
    assert obs.dtype == dtype and obs.shape == (1_000, *shape)  # as the env gives them, no preprocessing of ours
    expected, got = torch_outputs(runs[name], "latest", obs), runtime(out)(obs)
    assert got.shape == expected.shape == (1_000, actions)
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(runtime(out)(obs[:1]) - expected[:1]).max() <= 1e-4  # the batch axis is dynamic
    assert np.ptp(expected, axis=0).max() > 1e-3  # the outputs depend on the observation: the check compares something
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp file left


def test_onnx_input_and_metadata_describe_the_run(runs, tmp_path):
    out = tmp_path / "pong.onnx"
    rl_export(runs["dqn-pong-c51-dueling"], out)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (output,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:], output.name, output.shape[1:]) == (
        "obs",
        "tensor(uint8)",
        [4, 84, 84],
        "q_values",
        [6],
    )
    assert isinstance(inp.shape[0], str)  # a named dynamic batch axis
    about = session.get_modelmeta().custom_metadata_map
    assert about["env"] == "ALE/Pong-v5" and about["algo"] == "dqn" and about["step"] == "64"
    assert about["input"].startswith("obs uint8 (batch, 4, 84, 84)") and about["output"] == "q_values (batch, 6)"


def test_dqn_export_of_a_chosen_checkpoint(tiny_run, tmp_path):
    """--checkpoint STEP exports checkpoints/step_<STEP>, as `rl watch --checkpoint` plays it."""
    run_dir, _ = tiny_run  # checkpoints at steps 400 and 800
    out = tmp_path / "cartpole.pt"
    assert rl_export(run_dir, out, "--format", "torchscript", "--checkpoint", "400") <= 1e-4
    obs = fresh_observations(run_dir)
    got = runtime(out)(obs)
    assert np.abs(got - torch_outputs(run_dir, "400", obs)).max() <= 1e-4
    assert np.abs(got - torch_outputs(run_dir, "latest", obs)).max() > 1e-3  # not step 800's network


def test_readme_snippet_plays_pong_with_onnxruntime_alone(runs, tmp_path):
    """The README's Python block, run in a process where torch and this project cannot be imported, on a Pong file."""
    snippet = re.search(r"## Export a policy.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    rl_export(runs["dqn-pong-c51-dueling"], tmp_path / "pong.onnx")
    blocked = "import sys; sys.modules.update(torch=None, agents=None, envs=None)\n"
    done = subprocess.run(
        [sys.executable, "-c", blocked + snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "'algo': 'dqn'" in done.stdout
    score = float(re.search(r"score (\S+)", done.stdout).group(1))
    assert -21 <= score <= 21


def test_readme_env_gives_the_agents_observations():
    """ale-py's AtariVectorEnv with the README's settings gives the very observations `envs.make("Pong")` does."""
    from ale_py.vector_env import AtariVectorEnv

    ours, theirs = envs.make("Pong", 1, 0), AtariVectorEnv("pong", num_envs=1, reward_clipping=False)
    try:
        rng = np.random.default_rng(0)
        a, b = ours.reset(seed=0)[0], theirs.reset(seed=0)[0]
        for _ in range(200):
            assert np.array_equal(a, b)
            actions = rng.integers(0, 6, 1)
            a, b = ours.step(actions)[0], theirs.step(actions)[0]
        assert a.std() > 0  # the screen moves: the comparison saw game frames
    finally:
        ours.close()
        theirs.close()


def test_a_failed_check_writes_nothing(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference passes
    result = invoke(["export", tiny_run[0], "--out", tmp_path / "policy.onnx"])
    assert result.exit_code == 2 and "differs from torch's by up to" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


BAD = {
    "unknown format": (["--format", "onx", "--out", "{tmp}/p.onnx"], "unknown --format 'onx': did you mean 'onnx'?"),
    "wrong suffix": (["--format", "torchscript", "--out", "{tmp}/p.onnx"], "must end in .pt for --format torchscript"),
    "missing folder": (["--out", "{tmp}/nowhere/p.onnx"], "does not exist"),
    "missing checkpoint": (["--out", "{tmp}/p.onnx", "--checkpoint", "123"], "no checkpoint at step 123"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_export_input_is_one_line_exit_2_and_writes_nothing(case, tiny_run, tmp_path):
    args, message = BAD[case]
    result = invoke(["export", tiny_run[0], *(a.format(tmp=tmp_path) for a in args)])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_export_onto_a_folder_is_exit_2(tiny_run, tmp_path):
    (tmp_path / "p.onnx").mkdir()
    result = invoke(["export", tiny_run[0], "--out", tmp_path / "p.onnx"])
    assert result.exit_code == 2 and "is a folder" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["p.onnx"] and not any((tmp_path / "p.onnx").iterdir())


def test_export_of_a_folder_that_is_not_a_run_is_exit_2(tmp_path):
    result = invoke(["export", tmp_path, "--out", tmp_path / "p.onnx"])
    assert result.exit_code == 2 and "is not a run folder" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_recurrent_policy_is_refused(runs, tmp_path):
    result = invoke(["export", runs["ppo-cartpole-lstm"], "--out", tmp_path / "p.onnx"])
    assert result.exit_code == 2 and "is recurrent PPO (encoder.name=lstm)" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_of_weights_that_do_not_fit_the_config_is_exit_2(tiny_run, tmp_path):
    from safetensors.torch import save_file

    run_dir = copy_run(tiny_run[0], tmp_path / "run")
    save_file({"q.head.weight": torch.zeros(3, 3)}, str(run_dir / "checkpoints" / "step_800" / "model.safetensors"))
    result = invoke(["export", run_dir, "--out", tmp_path / "p.onnx"])
    assert result.exit_code == 2 and "does not fit the network" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_export_help_shows_an_example():
    out = ok(invoke(["export", "--help"]))
    assert "rl export runs/Pong__dqn__1__20261123-101500 --out pong.onnx" in out
