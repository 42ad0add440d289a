"""`rl eval`: score a saved run, as raw game scores over whole games, or (Go) as a match against a fixed opponent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import envs
from agents import hooks, registry
from agents.config import ConfigError
from agents.evaluate import run_episodes, summarize
from agents.run import pick_device

OPPONENTS = ("random", "greedy", "gnugo")


def evaluate_run(
    run_dir: Path,
    episodes: int = 10,
    epsilon: float | None = None,
    seed: int = 0,
    device: str = "auto",
    opponent: str | None = None,
    level: int = 1,
    greedy: bool = False,
    search: int = 0,
    symmetries: bool = False,
    checkpoint: int | str = "latest",
    random_opening: int = 0,
) -> dict[str, Any]:
    """The run's `checkpoint` (latest, best or a step) over `episodes` whole games: {"run", "step", "epsilon", mean,
    std, min, max, 95% interval}; with `opponent` (Go), the match's result (agents/go/engine.py). Every bad
    combination of options is one ConfigError line before anything plays."""
    opened = registry.open_run(run_dir, None)
    opened.algorithm  # a supervised run is no agent: its error line
    cfg, go = opened.config, envs.family(opened.config.env) == "go"
    if opponent is not None and (not go or (opponent not in OPPONENTS and not _gtp_command(opponent))):
        raise ConfigError(
            f'--opponent {opponent!r}: Go runs only, one of random, greedy, gnugo or gtp:"CMD ARGS" (any GTP engine)'
            f"{'' if go else f' ({cfg.env} is not Go)'}"
        )
    if search and opponent is None:
        raise ConfigError(f"--search {search} plays Go matches: add --opponent random, greedy, gnugo or gtp:CMD")
    if random_opening and opponent is None:
        raise ConfigError(f"--random-opening {random_opening} plays Go matches: add --opponent random, greedy, gnugo")
    if search and greedy:
        raise ConfigError("--search plays the most visited move: drop --greedy")
    if greedy and not hasattr(cfg, "eval_greedy"):
        raise ConfigError(f"--greedy: a {opened.algo} run already acts greedily (its exploration is --epsilon)")
    if greedy:
        opened = opened.with_config(eval_greedy=True)
    if symmetries:
        from agents.go.engine import with_symmetries

        opened = with_symmetries(opened)
    opened, cfg = opened.with_checkpoint(checkpoint), opened.config
    dev = pick_device(device)
    if opponent is not None:
        from agents.go.engine import match

        return match(opened, dev, opponent, level, episodes, seed, search, random_opening)
    env = envs.make(cfg.env, min(episodes, 8), seed, **hooks.for_config(cfg).env_options())
    try:
        eps = cfg.eval_epsilon if epsilon is None else epsilon
        policy = registry.load_policy(opened, env, dev, eps, seed)
        return {
            "run": str(run_dir),
            "step": opened.checkpoint.step,
            "epsilon": eps,
            **summarize(run_episodes(env, policy, episodes, seed)),
        }
    finally:
        env.close()


def _gtp_command(opponent: str) -> str | None:
    from envs.go.env import gtp_command  # Go code loads on use

    return gtp_command(opponent)
