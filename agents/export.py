"""`rl export`: a run's policy as one ONNX or TorchScript file, checked against torch on real observations.

The file holds the network alone, in eval mode and fp32 (no autocast, no compile). It takes a batch of observations
exactly as the run's env gives them, the batch axis dynamic: uint8 (B, 4, 84, 84) on Atari (envs/atari.py's Nature
preprocessing: 84x84 gray, frame skip 4 with a max over the last two frames, a stack of the last 4), float32 (B, 4) on
CartPole-v1, float32 stone planes (B, 2 * history + 1, N, N) on Go (envs/go/env.py). Pixels are scaled to [0, 1]
inside, as in training. It returns one (B, A) tensor: the action logits (PPO, A2C, REINFORCE; Go's illegal moves are
not masked: mask them with the env's `info["action_mask"]`) or the Q-values (DQN; C51: each action's expected return).

Before the file is put in place it is run (onnxruntime, or torch.jit.load) on CHECK_OBSERVATIONS observations from the
env stepped with uniformly random legal actions, and its largest |difference| from the torch network's outputs must be
within TOLERANCE. torch 2.13 marks TorchScript deprecated; it still writes and loads, and its notes are not shown.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import envs
from agents import hooks, registry

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # format -> the suffix --out must have
TOLERANCE = 1e-4  # largest |difference| allowed between the exported policy's outputs and torch's, in fp32
CHECK_OBSERVATIONS = 1_000
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # torch.onnx.export(dynamo=True) needs onnxscript


class ExportError(ValueError):
    """A bad --format or --out, a run that cannot be exported, or a failed check; str(error) is one line."""


@dataclass(frozen=True)
class Exported:
    path: Path
    about: dict[str, str]  # env, algo, step, input, output: also stored in the file
    max_difference: float  # against torch
    observations: int  # how many it was checked on


class Policy(nn.Module):
    """obs (B, *obs_shape) as the env gives it -> Q-values or logits (B, A): an actor-critic's value is dropped."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.network(obs)
        return out[0] if isinstance(out, tuple) else out  # ActorCritic: (logits, value)


def export(run_dir: Path, fmt: str, out: Path, checkpoint: str = "latest") -> Exported:
    """Write the policy of `run_dir`'s checkpoint (latest, best or a step) to `out` in format `fmt`; the file appears
    only once it has passed the check, written to a temp file and renamed."""
    out = Path(out)
    check_target(fmt, out)
    opened = registry.open_run(run_dir, checkpoint)
    if not hasattr(opened.algorithm, "load_network"):  # (a supervised run is no agent: opened.algorithm's error line)
        raise ExportError(
            f"{str(opened.dir)!r} is recurrent PPO (encoder.name=lstm), whose policy also reads and returns its LSTM "
            "state: exporting one is not supported"
        )
    opened = opened.with_config(amp="none")  # fp32: no bf16 autocast, whatever the run trained with
    config = opened.config
    env = envs.make(config.env, 8, 0, **hooks.for_config(config).env_options())
    try:
        obs = random_observations(env, CHECK_OBSERVATIONS, seed=0)
        network = registry.load_network(opened, env, torch.device("cpu"))
        n_actions = int(env.single_action_space.n)
    finally:
        env.close()
    policy = Policy(network).eval()
    about = {
        "env": config.env,
        "algo": opened.algo,
        "step": str(opened.checkpoint.step),
        "input": f"obs {obs.dtype} (batch, {', '.join(map(str, obs.shape[1:]))}) as envs.make({config.env!r}) gives it",
        "output": f"{'q_values' if opened.algo == 'dqn' else 'logits'} (batch, {n_actions})",
    }
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        WRITERS[fmt](policy, torch.from_numpy(obs[:2]), tmp, about)  # batch 2: a batch of 1 would be fixed in
        with torch.inference_mode():
            expected = policy(torch.from_numpy(obs)).numpy()
        got = RUNNERS[fmt](tmp)(obs)
        difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if not difference <= TOLERANCE:  # NaN fails too
            raise ExportError(
                f"the exported policy differs from torch's by up to {difference:.3g} (tolerance {TOLERANCE:g}) on "
                f"{len(obs):,} observations of {config.env}: nothing written to {str(out)!r}"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(out, about, difference, len(obs))


def check_target(fmt: str, out: Path) -> None:
    """--format and --out, checked before any work: a known format, its suffix, an existing folder, its packages."""
    if fmt not in FORMATS:
        close = difflib.get_close_matches(fmt, list(FORMATS), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(FORMATS)}"
        raise ExportError(f"unknown --format {fmt!r}: {hint}")
    if out.suffix.lower() != FORMATS[fmt]:
        raise ExportError(f"--out {str(out)!r} must end in {FORMATS[fmt]} for --format {fmt}")
    if not out.parent.is_dir():
        raise ExportError(f"--out {str(out)!r}: its folder {str(out.parent)!r} does not exist")
    if out.is_dir():
        raise ExportError(f"--out {str(out)!r} is a folder: name the file to write")
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None] if fmt == "onnx" else []
    if missing:
        raise ExportError(f"--format onnx needs {', '.join(missing)}: pip install -e '.[export]'")


def random_observations(env, count: int, seed: int) -> np.ndarray:
    """`count` observations (count, *obs_shape) as `env` gives them, stepping it with uniformly random legal actions."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    seen = [np.array(obs)]  # a copy: a vector env may reuse its buffer
    while sum(len(o) for o in seen) < count:
        legal = info.get("action_mask", np.ones((env.num_envs, int(env.single_action_space.n)), bool))
        actions = np.argmax(rng.random(legal.shape) + legal, axis=1)  # legal: 1 + U(0, 1) > illegal: U(0, 1)
        obs, _, _, _, info = env.step(actions)
        seen.append(np.array(obs))
    return np.concatenate(seen)[:count]


@contextlib.contextmanager
def _quiet():
    """Without the exporters' deprecation notes and onnxscript's "torchvision is not installed" log lines."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _write_onnx(policy: Policy, example: torch.Tensor, path: Path, about: dict[str, str]) -> None:
    with _quiet():  # torch.export's exporter (the TorchScript-based one is deprecated)
        program = torch.onnx.export(
            policy,
            (example,),
            input_names=["obs"],
            output_names=[about["output"].split()[0]],  # "q_values" or "logits"
            dynamic_shapes={"obs": {0: torch.export.Dim("batch")}},
            dynamo=True,
            verbose=False,
        )
    program.model.metadata_props.update(about)  # onnxruntime: session.get_modelmeta().custom_metadata_map
    program.save(str(path))


def _write_torchscript(policy: Policy, example: torch.Tensor, path: Path, about: dict[str, str]) -> None:
    with _quiet():
        traced = torch.jit.trace(policy, example)
        torch.jit.save(traced, str(path), _extra_files={"about.json": json.dumps(about)})


def _run_onnx(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the threads torch was given, not every core
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda obs: session.run(None, {"obs": obs})[0]


def _run_torchscript(path: Path):
    with _quiet():
        module = torch.jit.load(str(path))

    def run(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(obs)).numpy()

    return run


WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript}
RUNNERS = {"onnx": _run_onnx, "torchscript": _run_torchscript}
