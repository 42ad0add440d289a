"""The `rl` command: thin. It parses, resolves the config, and calls one function.

Bad input (unknown algorithm, env or key, a wrong type, a missing or corrupt checkpoint) prints one
line on stderr naming the problem and the nearest valid choice, and exits with code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reinforcement-learning agents: train, evaluate, list environments.\n\n"
                       "Example: rl train dqn --env Pong")

ALGO_HELP = {"dqn": "Deep Q-Network (Nature 2015) with double, dueling, n-step options; replay stores each frame once",
             "ppo": "Proximal Policy Optimization (2017), CleanRL's recipe: clipped objective, GAE, minibatch epochs",
             "a2c": "Advantage actor-critic (2016): PPO's loop with one RMSprop step per short rollout, no clipping",
             "reinforce": "REINFORCE with a learned baseline (Williams 1992): Monte-Carlo returns, one step per rollout"}


def _user_errors(fn):
    """Turn the project's input errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from agents.checkpoint import CheckpointError
        from agents.config import ConfigError
        from envs import EnvNameError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, EnvNameError, CheckpointError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@_user_errors
def train(
    algo: str = typer.Argument(..., help="Algorithm: dqn, ppo, a2c, reinforce (see `rl algos`)."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment: Pong, ALE/Pong-v5, CartPole-v1, ... (see `rl envs`)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total env steps over all envs (total_timesteps)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    num_envs: Optional[int] = typer.Option(None, "--num-envs", help="Environments stepped together."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of overrides."),
    set_: list[str] = typer.Option([], "--set", help="Override one key: --set learning_rate=1e-4 (repeatable; nested: encoder.name=mlp)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Run folder to continue from its latest checkpoint."),
):
    """Train an agent; writes runs/<env>__<algo>__<seed>__<time>/ (config, TensorBoard, checkpoints).

    \b
    Examples:
      rl train dqn --env Pong
      rl train dqn --env CartPole-v1 --steps 50000 --seed 3
      rl train dqn --env Breakout --set double_dqn=true --set n_step=3
      rl train dqn --env Pong --resume runs/Pong__dqn__1__20261123-101500
      rl train ppo --env Pong
      rl train a2c --env CartPole-v1
    Ctrl-C saves a checkpoint and stops; --resume continues the same curves.
    """
    import envs
    from agents import config as config_lib, run as run_lib
    from agents.config import ConfigError

    config_lib.algo_config_class(algo)
    flags = {"total_timesteps": steps, "seed": seed, "device": device, "num_envs": num_envs}
    base = None
    if resume is not None:
        if not (resume / "config.yaml").exists():
            raise ConfigError(f"--resume {str(resume)!r} is not a run folder (no config.yaml in it)")
        saved_algo, saved = config_lib.load(resume / "config.yaml")
        if saved_algo != algo:
            raise ConfigError(f"--resume {str(resume)!r} is a {saved_algo} run, not {algo}: use rl train {saved_algo} --resume ...")
        if env is not None and envs.canonical_name(env) != envs.canonical_name(saved.env):
            raise ConfigError(f"--resume {str(resume)!r} trained on {saved.env}, not {env}: drop --env")
        base, env = config_lib.to_dict(saved), saved.env
    if env is None:
        raise ConfigError("--env is required: e.g. rl train dqn --env Pong (`rl envs` lists them)")
    canonical = envs.canonical_name(env)
    cfg = config_lib.resolve(algo, canonical, envs.family(canonical), config, flags, set_, base=base)
    run = run_lib.start(algo, cfg, envs.short_name(canonical), resume)
    try:
        summary = _algo_module(algo).train(cfg, run)
    finally:
        run.close()
    last_eval = f", last eval return {summary['evals'][-1][1]:.2f}" if summary["evals"] else ""
    typer.echo(f"{'finished' if summary['finished'] else 'stopped'} at step {summary['step']:,} "
               f"({summary['sps']:,.0f} SPS{last_eval}); run folder: {run.dir}")
    if not summary["finished"]:
        typer.echo(f"continue with: rl train {algo} --resume {run.dir}")


@app.command("eval")
@_user_errors
def eval_(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/...)."),
    episodes: int = typer.Option(10, "--episodes", min=1, help="Number of whole games."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Exploration during evaluation (default: the run's eval_epsilon)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Evaluate a run's latest checkpoint: mean, std, min, max of raw game scores and a 95% interval.

    \b
    Examples:
      rl eval runs/Pong__dqn__1__20261123-101500 --episodes 10
      rl eval runs/CartPole-v1__dqn__1__20261123-101500 --json
    """
    import envs
    from agents import checkpoint, config as config_lib
    from agents.evaluate import run_episodes, summarize
    from agents.run import pick_device

    if not (run_dir / "config.yaml").exists():
        raise checkpoint.CheckpointError(f"{str(run_dir)!r} is not a run folder (no config.yaml in it)")
    algo, cfg = config_lib.load(run_dir / "config.yaml")
    if algo == "supervised":
        raise checkpoint.CheckpointError(f"{str(run_dir)!r} is a supervised run, not an agent: its test accuracy is in metrics.json")
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    dev = pick_device(device)
    env = envs.make(cfg.env, min(episodes, 8), seed)
    eps = cfg.eval_epsilon if epsilon is None else epsilon
    try:
        policy = _algo_module(algo).load_policy(cfg, ckpt, env, dev, eps, seed)
    except RuntimeError:  # load_state_dict: tensors missing, unexpected or of another shape than config.yaml's network
        env.close()
        raise checkpoint.CheckpointError(f"checkpoint {str(ckpt.path)!r} does not fit the network in "
                                         f"{str(run_dir / 'config.yaml')!r}: missing or mis-shaped tensors") from None
    summary = {"run": str(run_dir), "step": ckpt.step, "epsilon": eps, **summarize(run_episodes(env, policy, episodes, seed))}
    env.close()
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{cfg.env} step {ckpt.step:,}: {summary['mean']:.2f} ± {summary['std']:.2f} over {episodes} episodes "
                   f"(min {summary['min']:g}, max {summary['max']:g}, 95% CI [{summary['ci95_low']:.2f}, {summary['ci95_high']:.2f}])")


@app.command()
@_user_errors
def supervised(
    model: str = typer.Argument(..., help="Encoder to train: mlp, impala, resnet_tower, lstm, transformer (nature_cnn needs 36x36 images)."),
    data: str = typer.Option("digits", "--data", help="digits (8x8 images), digit_rows (8 steps of 8 pixels), parity (bit strings)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training split."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (also fixes the data splits)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of overrides."),
    set_: list[str] = typer.Option([], "--set", help="Override one key: --set optimizer=sgd --set encoder.dropout=0.1 (repeatable)."),
):
    """Train an encoder + linear classifier on offline data; report test accuracy, save a confusion matrix and
    the encoder weights (runs/<data>-<model>__supervised__<seed>__<time>/encoder.safetensors).

    \b
    Examples:
      rl supervised impala --data digits
      rl supervised lstm --data digit_rows --set schedule=cosine
      rl supervised transformer --data parity --set optimizer=adamw --set weight_decay=0.01
      rl train dqn --env CartPole-v1 --set encoder.name=mlp --set encoder.init=runs/digits-mlp__supervised__1__...
    Options: optimizer (sgd, adagrad, rmsprop, adam, adamw), momentum, nesterov, l1, l2, weight_decay,
    encoder.dropout, encoder.norm (mlp), shift, patience (early stopping), schedule (cosine, step, linear).
    """
    from agents import config as config_lib, run as run_lib

    flags = {"data": data, "epochs": epochs, "seed": seed, "device": device, "encoder": {"name": model}}
    cfg = config_lib.resolve("supervised", None, data, config, flags, set_)
    _algo_module("supervised").check(cfg)
    run = run_lib.start("supervised", cfg, f"{cfg.data}-{cfg.encoder.name}", total=cfg.epochs)
    try:
        summary = _algo_module("supervised").train(cfg, run)
    finally:
        run.close()
    typer.echo(f"test accuracy {summary['test_accuracy']:.2%} after {summary['epochs']} epochs ({summary['seconds']:.1f} s); "
               f"run folder: {run.dir}")
    typer.echo(f"confusion matrix: {run.dir / 'confusion_matrix.png'}; reuse the encoder with --set encoder.init={run.dir}")


@app.command("envs")
def envs_(
    family: Optional[str] = typer.Option(None, "--family", help="Only this family: atari, cartpole, frozenlake, ..."),
):
    """List the environment names `--env` accepts.

    \b
    Examples:
      rl envs
      rl envs --family atari
    """
    import envs

    rows = [r for r in envs.known_envs() if family is None or r[1] == family]
    width = max(len(r[0]) for r in rows) if rows else 0
    for name, fam, desc in rows:
        typer.echo(f"{name:<{width}}  {fam:<12} {desc}")


@app.command()
def algos():
    """List the algorithms `rl train` accepts.

    \b
    Example:
      rl algos
    """
    for name, desc in ALGO_HELP.items():
        typer.echo(f"{name:<8} {desc}")


def _algo_module(algo: str):
    import importlib

    return importlib.import_module(f"agents.{algo}")


def main() -> None:  # `python -m agents.cli`
    app()


if __name__ == "__main__":
    sys.exit(main())
