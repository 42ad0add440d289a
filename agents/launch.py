"""`rl train`: check the command's input, resolve the config, open (or reopen) the run folder and train.

Bad input is found before a run folder exists where possible; input found bad only once the env or the network
exists (encoder.init of another shape), or a first checkpoint that cannot be saved, removes the new folder again,
so an error leaves nothing behind, unless the run already saved weights (checkpoints/best).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import envs
from agents import checkpoint, distributed, registry
from agents import config as config_lib
from agents import run as run_lib
from agents.config import ConfigError


def check(algo: str, impl: str, nproc: int, resume: Path | None) -> None:
    """The options' rules, before anything runs."""
    registry.entry(algo)
    if impl not in ("ours", "sb3"):
        raise ConfigError(f"--impl {impl!r}: use ours or sb3")
    if (nproc > 1 or distributed.launched()) and (algo not in ("ppo", "a2c", "reinforce") or impl != "ours"):
        raise ConfigError(
            f"data-parallel training (--nproc, torchrun) runs ppo, a2c and reinforce (--impl ours), "
            f"not {algo} --impl {impl}"
        )
    if impl == "sb3" and resume is not None:
        raise ConfigError("--resume works with --impl ours only (SB3 runs save SB3's model, not our checkpoints)")


def train(
    algo: str,
    env: str | None,
    flags: dict[str, Any],
    config_file: Path | None,
    overrides: list[str],
    resume: Path | None,
    impl: str = "ours",
) -> tuple[run_lib.Run, dict[str, Any]]:
    """Train `algo` on `env` (or continue the run folder `resume`); returns the run and the algorithm's summary."""
    distributed.init()
    base = None
    if resume is not None:
        saved = registry.open_run(resume, None, "--resume")
        if saved.algo != algo:
            raise ConfigError(
                f"--resume {str(resume)!r} is a {saved.algo} run, not {algo}: use rl train {saved.algo} --resume ..."
            )
        if env is not None and envs.canonical_name(env) != envs.canonical_name(saved.config.env):
            raise ConfigError(f"--resume {str(resume)!r} trained on {saved.config.env}, not {env}: drop --env")
        base, env = config_lib.to_dict(saved.config), saved.config.env
    if env is None:
        raise ConfigError("--env is required: e.g. rl train dqn --env Pong (`rl envs` lists them)")
    canonical = envs.canonical_name(env)
    cfg = registry.resolve(algo, canonical, envs.family(canonical), config_file, flags, overrides, base=base)
    check = getattr(registry.implementation(algo, cfg), "check", None) if impl == "ours" else None
    if check is not None and resume is None:
        check(cfg)  # a new run's inputs that the config alone cannot vouch for (files), before its folder exists
    run = run_lib.start(algo if impl == "ours" else f"{algo}-sb3", cfg, envs.short_name(canonical), resume)
    try:
        if impl == "sb3":
            from agents import sb3

            summary = sb3.train(algo, cfg, run)
        else:
            summary = registry.implementation(algo, cfg).train(cfg, run)
    except (ConfigError, checkpoint.CheckpointError):
        run.close()
        if resume is None and distributed.is_main() and not _holds_a_checkpoint(run):
            shutil.rmtree(run.dir, ignore_errors=True)
        raise
    finally:
        run.close()
        distributed.close()
    return run, summary


def _holds_a_checkpoint(run: run_lib.Run) -> bool:
    """Does the failed run leave weights to use: a step checkpoint, or the best evaluation's (a full disk at the
    first step checkpoint after an evaluation)? A folder without either is removed."""
    return any(run.checkpoint_dir.glob("step_*")) or checkpoint.best(run.checkpoint_dir) is not None


def supervised(
    flags: dict[str, Any], config_file: Path | None, overrides: list[str]
) -> tuple[run_lib.Run, dict[str, Any]]:
    """`rl supervised`: train an encoder and classifier on offline data (data-parallel under torchrun)."""
    from agents import supervised as supervised_lib

    cfg = registry.resolve("supervised", None, flags["data"], config_file, flags, overrides)
    supervised_lib.check(cfg)
    distributed.init()
    run = run_lib.start("supervised", cfg, f"{cfg.data}-{cfg.encoder.name}", total=cfg.epochs)
    try:
        summary = supervised_lib.train(cfg, run)
    finally:
        run.close()
        distributed.close()
    return run, summary
