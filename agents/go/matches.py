"""Go matches against fixed opponents: win rates, an Elo estimate, and every game saved as SGF.

At each evaluation of a Go run (agents/eval_round.py, through agents/go/hooks.py), the policy plays `go.eval_games`
games against each of `go.eval_opponents`: the random player, a greedy capturer (envs/go/env.py) and GNU Go
at each of `go.gnugo_levels` (Chinese rules, positional superko, the run's komi) when it is installed.
Colours alternate game by game, so neither side's advantage (komi, the first move) is counted for the agent.
Logged as `go/win_rate/<opponent>` (a draw counts half) and `go/elo/<opponent>`, the Elo difference
400 log10(p / (1 - p)) that the win rate p implies, with half a game added to wins and losses so that
10/10 gives a finite number (+1 game in 21 would then be 95.5%: +532). SGF files go to
<run>/games/step_<N>/<opponent>_<k>.sgf.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import Policy, act
from agents.go.search import Search
from envs.go import game, gtp, gtp_client, sgf
from envs.go.env import GameRecord, GoEnv, gtp_command


def gnugo_available() -> bool:
    return Path(gtp_client.GNUGO).exists() or shutil.which("gnugo") is not None


def opponent_names(config) -> list[tuple[str, str, int]]:
    """(name, opponent kind, GNU Go level) of each evaluation opponent a config asks for; gnugo only when installed."""
    names = []
    for kind in config.go.eval_opponents:
        if kind != "gnugo":
            names.append((kind, kind, 1))
        elif gnugo_available():
            names += [(f"gnugo_l{level}", "gnugo", level) for level in config.go.gnugo_levels]
    return names


def opponent_label(opponent: str, level: int = 1) -> str:
    """A file-safe name for an opponent: random, greedy, gnugo_l<level>, or gtp_<program> for `gtp:CMD ARGS`."""
    if opponent == "gnugo":
        return f"gnugo_l{level}"
    command = gtp_command(opponent)
    if command is None:
        return opponent
    program = Path(shlex.split(command)[0]).name
    return "gtp_" + re.sub(r"[^A-Za-z0-9_.-]", "_", program)


def elo(wins: float, games: int) -> float:
    """Elo difference implied by `wins` (draws as halves) out of `games`, smoothed by half a game each way."""
    return 400 * math.log10((wins + 0.5) / (games - wins + 0.5))


def interval(rate, games, z: float = 1.96) -> tuple:
    """Wilson score interval (95% by default) of win rate(s) `rate` over `games` (scalars or arrays; draws as half a
    win): unlike rate +- z*se it stays inside [0, 1] and is not empty at 0/n or n/n."""
    p, n = np.asarray(rate, dtype=np.float64), np.asarray(games, dtype=np.float64)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exactly 0 at 0/n and 1 at n/n (rounding leaves 1 - 1e-16 there, an Elo of +6382 instead of +inf)
    low, high = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    return np.where(p <= 0, 0.0, low), np.where(p >= 1, 1.0, high)


def elo_of_rate(p: float) -> float:
    """Elo difference 400 log10(p / (1 - p)) of a win rate p; -inf at 0 and +inf at 1."""
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return 400 * math.log10(p / (1 - p))


def play_match(
    policy: Policy | Search,
    size: int,
    komi: float,
    opponent: str,
    games: int,
    seed: int,
    level: int = 1,
    num_envs: int = 8,
    eye_fill: bool = True,
    pass_rule: str = "always",
    random_opening: int = 0,
) -> list[GameRecord]:
    """`games` whole games of `policy` against `opponent`, colours alternating; the finished games in order.
    eye_fill and pass_rule: the moves the policy is offered (as its run trained: hooks.offer_options);
    random_opening: the first K moves of each game are random (GoEnv's opening variety).
    A `Search` (agents/go/search.py) as the policy reads the env's games themselves: rules state and last boards."""
    num_envs = min(num_envs, games)
    env = GoEnv(
        size,
        num_envs,
        seed,
        opponent=opponent,
        agent_colour="alternate",
        komi=komi,
        gnugo_level=level,
        record=True,
        eye_fill=eye_fill,
        pass_rule=pass_rule,
        random_opening=random_opening,
    )
    quota = np.full(num_envs, games // num_envs)
    quota[: games % num_envs] += 1
    taken = np.zeros(num_envs, dtype=np.int64)
    records: list[GameRecord] = []
    try:
        obs, info = env.reset(seed=seed)
        starts = np.ones(num_envs, dtype=bool)
        while (taken < quota).any():
            if isinstance(policy, Search):
                actions = policy(env.state, env.boards, info["action_mask"]).numpy()
            else:
                actions = act(policy, obs, starts, info["action_mask"])
            obs, *_, info = env.step(actions)
            starts = np.zeros(num_envs, dtype=bool)
            for record in env.finished:
                if taken[record.env] < quota[record.env]:
                    records.append(record)
                taken[record.env] += 1
            env.finished.clear()
    finally:
        env.close()
    return records


def summary(records: list[GameRecord]) -> dict[str, Any]:
    """Wins (draws as halves), games, win rate overall and by the agent's colour, and the Elo estimate."""
    points = [0.5 if r.margin == 0 else float(np.sign(r.margin) == r.agent_colour) for r in records]
    by_colour = {
        name: [p for p, r in zip(points, records) if r.agent_colour == colour]
        for name, colour in (("black", game.BLACK), ("white", game.WHITE))
    }
    wins = sum(points)
    low, high = interval(wins / len(records), len(records)) if records else (0.0, 1.0)
    return {
        "games": len(records),
        # games that differ in some move: a greedy policy against a near-deterministic engine repeats games, and
        # repeats are not independent samples (the interval assumes they are)
        "distinct": len({(r.agent_colour, tuple(r.moves)) for r in records}),
        "wins": wins,
        "win_rate": wins / max(len(records), 1),
        "win_rate_low": float(low),  # the 95% Wilson interval
        "win_rate_high": float(high),
        "elo": elo(wins, len(records)),
        "elo_low": elo_of_rate(low),  # the Elo the interval's ends imply (-inf/+inf at 0/n and n/n)
        "elo_high": elo_of_rate(high),
        **{f"win_rate_{name}": (sum(p) / len(p) if p else float("nan")) for name, p in by_colour.items()},
    }


def save_sgf(records: list[GameRecord], folder: Path, name: str, size: int, komi: float, agent: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, record in enumerate(records):
        black, white = (agent, name) if record.agent_colour == game.BLACK else (name, agent)
        path = folder / f"{name}_{k}.sgf"
        path.write_text(
            sgf.write(
                size,
                komi,
                record.moves,
                gtp.result_text(record.margin),
                black=black,
                white=white,
                rules="Chinese (area scoring), positional superko",
            )
        )
        paths.append(path)
    return paths


def round_folder(run_dir: Path, step: int) -> Path:
    """Where a training run's evaluation round at env step `step` keeps its games, one `<opponent>_<k>.sgf` each."""
    return run_dir / "games" / f"step_{step}"
