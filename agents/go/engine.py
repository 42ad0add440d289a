"""A trained Go run at play time: `rl eval --opponent` matches, and the GTP engine of `rl gtp` / `rl play go`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import envs
from agents import registry
from agents.config import ConfigError
from agents.go import matches
from agents.go.hooks import GoHooks, offer_options
from envs.go.gtp import GtpError

GO_POLICIES = ("ppo", "a2c", "reinforce", "alphazero")  # algorithms whose Go runs give a policy and value network


def with_symmetries(opened: registry.OpenRun) -> registry.OpenRun:
    """The run set to average its network over the board's 8 symmetries (--symmetries), or a ConfigError where that
    does not apply: a Go run of a feed-forward policy-gradient network only."""
    config, algo = opened.config, opened.algo
    if envs.family(config.env) != "go" or algo not in GO_POLICIES or config.encoder.name == "lstm":
        raise ConfigError(
            f"--symmetries averages a board network over the 8 symmetries: Go runs of ppo, a2c, "
            f"reinforce or alphazero with a feed-forward encoder only, not a {algo} run on {config.env}"
        )
    return opened.with_config(eval_symmetries=True)


def searcher(opened: registry.OpenRun, env, device, playouts: int):
    """The run's network read through a PUCT search of `playouts` per move (agents/go/search.py)."""
    from agents.go.search import for_run

    algorithm = opened.algorithm
    if not hasattr(algorithm, "load_network"):
        raise ConfigError("--search evaluates positions out of order: it needs a feed-forward encoder, not lstm")
    return for_run(
        algorithm.load_network(opened.config, opened.checkpoint, env, device), opened.config, playouts, device
    )


def match(
    opened: registry.OpenRun,
    device,
    opponent: str,
    level: int,
    games: int,
    seed: int,
    search: int = 0,
    random_opening: int = 0,
) -> dict[str, Any]:
    """`rl eval RUN --opponent ...`: `games` games against the opponent, colours alternating (the first
    random_opening moves of each random), saved as SGFs under
    <run>/games/eval_step_<N>_seed_<S>[_search<K>|_greedy][_symmetries][_opening<K>]/; returns the result."""
    if opponent == "gnugo" and not matches.gnugo_available():
        raise ConfigError(
            "--opponent gnugo: GNU Go is not installed (apt-get install gnugo); random and greedy need nothing"
        )
    cfg, step = opened.config, opened.checkpoint.step
    env = envs.make(cfg.env, 1, seed, **GoHooks(cfg).env_options())
    try:
        player = (
            searcher(opened, env, device, search)
            if search
            else registry.load_policy(opened, env, device, cfg.eval_epsilon, seed)
        )
        size, komi = env.size, cfg.go.komi
    finally:
        env.close()
    name = matches.opponent_label(opponent, level)
    # a search batches its trees' network calls over the games played at once (a GTP engine: one process per game)
    num_envs = (64 if opponent in ("random", "greedy") else 16) if search else 8
    try:
        options = {"random_opening": random_opening, **offer_options(cfg)}
        records = matches.play_match(player, size, komi, opponent, games, seed, level, num_envs, **options)
    except GtpError as error:
        raise ConfigError(f"--opponent {opponent!r}: {error}") from None
    greedy = cfg.eval_greedy and not search
    how = (
        (f"_search{search}" if search else "_greedy" if greedy else "")
        + ("_symmetries" if cfg.eval_symmetries else "")
        + (f"_opening{random_opening}" if random_opening else "")
    )
    folder = opened.dir / "games" / f"eval_step_{step}_seed_{seed}{how}"
    matches.save_sgf(
        records,
        folder,
        name,
        size,
        komi,
        f"rl step {step}"
        + (f" search {search}" if search else "")
        + (" symmetries" if cfg.eval_symmetries else "")
        + (f" random opening {random_opening}" if random_opening else ""),
    )
    return {
        "run": str(opened.dir),
        "step": step,
        "opponent": name,
        "komi": komi,
        "greedy": greedy,
        "search": search,
        "symmetries": cfg.eval_symmetries,
        "random_opening": random_opening,
        **matches.summary(records),
        "sgf": str(folder),
    }


def engine(
    size: int,
    komi: float | None,
    seed: int,
    agent: Path | None,
    search: int = 0,
    symmetries: bool = False,
    checkpoint: int | str = "latest",
):
    """The engine of `rl gtp` / `rl play go`: the --agent run's policy (its `checkpoint`: latest, best or a step),
    else a random player that fills none of its own eyes; --search and --symmetries need an --agent."""
    from envs.go import play

    if search and agent is None:
        raise ConfigError(f"--search {search} reads ahead with a trained network: add --agent RUN (a Go run folder)")
    if symmetries and agent is None:
        raise ConfigError("--symmetries averages a trained network: add --agent RUN (a Go run folder)")
    if checkpoint != "latest" and agent is None:
        raise ConfigError(
            f"--checkpoint {checkpoint} picks an --agent run's checkpoint: add --agent RUN (a Go run folder)"
        )
    return (
        play.random_engine(size, komi, seed)
        if agent is None
        else agent_engine(agent, komi, seed, search, symmetries, checkpoint)
    )


def agent_engine(
    run_dir: Path,
    komi: float | None,
    seed: int,
    search: int = 0,
    symmetries: bool = False,
    checkpoint: int | str = "latest",
):
    """A GTP engine playing a Go run's policy (its `checkpoint`: latest, best or a step), most likely legal move first
    (no sampling), or with `search` > 0 the most visited move of a PUCT search of that many playouts; `symmetries`
    averages the network over the board's 8 symmetries."""
    from agents.run import pick_device
    from envs.go import play

    opened = registry.open_run(run_dir, None, "--agent")
    cfg = opened.config
    if envs.family(cfg.env) != "go" or opened.algo not in GO_POLICIES:
        raise ConfigError(
            f"--agent {str(run_dir)!r} is a {opened.algo} run on {cfg.env}, not a Go policy "
            f"(train one with: rl train ppo --env Go9)"
        )
    opened = (with_symmetries(opened) if symmetries else opened).with_config(eval_greedy=True)
    opened = opened.with_checkpoint(checkpoint)
    env = envs.make(cfg.env, 1, seed)
    device = pick_device("auto")
    player = searcher(opened, env, device, search) if search else None
    policy = registry.load_policy(opened, env, device, 0.0, seed)
    if komi is None:
        komi = cfg.go.komi  # the komi it trained under, unless --komi (or GTP's komi command) says otherwise
    return play.agent_engine(
        env.size,
        komi,
        lambda obs, legal: policy(obs, action_mask=legal),
        env.history,
        f"rl-{opened.algo}",
        search=player,
        **offer_options(cfg),
    )
