"""The Go ladder: each run against random, greedy and GNU Go at levels 1, 5 and 10 (and any GTP engine by command
line), one table per board size: win rate with its 95% Wilson interval and the Elo difference against each rung.

Each cell is `rl eval RUN --opponent ... --episodes GAMES` (agents/eval_run.py): colours alternate, draws count half,
every game is saved as SGF under <run>/games/. Runs on different boards go to different tables.

    python scripts/go_ladder.py ~/rl-runs/Go9__alphazero__1__* ~/rl-runs/Go9__ppo__1__* --games 100 \\
        --out docs/GO_LADDER.md
    python scripts/go_ladder.py RUN --rungs random,gnugo:1 --gtp "/usr/games/gnugo --mode gtp --level 3" --search 32
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

from bench_common import write_section

from agents import registry
from agents.eval_run import evaluate_run
from agents.go.matches import gnugo_available, opponent_label

RUNGS = "random,greedy,gnugo:1,gnugo:5,gnugo:10"


def rungs(spec: str, engines: list[str]) -> list[tuple[str, int]]:
    """(opponent, level) of each rung: `gnugo:L` is GNU Go at level L, other names as `rl eval --opponent` takes
    them; each --gtp command is one more rung above."""
    out = []
    for name in filter(None, (part.strip() for part in spec.split(","))):
        opponent, _, level = name.partition(":")
        if opponent == "gnugo" and not gnugo_available():
            sys.exit("go_ladder: GNU Go is not installed (apt-get install gnugo); drop the gnugo rungs or install it")
        out.append((opponent, int(level or 1)))
    return out + [(f"gtp:{command}", 1) for command in engines]


def elo_text(elo: float) -> str:
    return "-inf" if elo == -math.inf else "+inf" if elo == math.inf else f"{elo:+.0f}"


def heading(size: int) -> str:
    return f"## Go ladder, {size}x{size}"


def table(size: int, rows: list[dict], games: int, search: int, seconds: float, random_opening: int = 0) -> str:
    """The markdown section of one board size."""
    lines = [
        heading(size),
        "",
        f"{games} games a cell, colours alternating"
        + (f", the first {random_opening} moves of each game random" if random_opening else "")
        + ", draws as half a win (the interval treats them as independent: "
        "where few games are distinct, it is narrower than the evidence); the agent plays "
        + (f"the most visited move of a {search}-playout search." if search else "its network's policy alone.")
        + f" Written by `python {' '.join(sys.argv)}` on {date.today()} ({seconds / 60:.0f} min).",
        "",
        "| Agent (run, step) | Opponent | Won | Distinct games | Win rate | 95% interval | Elo | Elo 95% interval |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['run']).name}, {r['step']:,} | {r['opponent']} | {r['wins']:g}/{r['games']} | "
            f"{r['distinct']} | {r['win_rate']:.0%} | {r['win_rate_low']:.0%} - {r['win_rate_high']:.0%} | "
            f"{elo_text(r['elo'])} | {elo_text(r['elo_low'])} to {elo_text(r['elo_high'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="Go run folders")
    parser.add_argument("--games", type=int, default=100, help="games against each rung (default 100)")
    parser.add_argument("--rungs", default=RUNGS, help=f"comma-separated (default {RUNGS})")
    parser.add_argument("--gtp", action="append", default=[], help="one more rung: a GTP engine's command line")
    parser.add_argument("--search", type=int, default=0, help="playouts a move (default 0: the policy alone)")
    parser.add_argument("--checkpoint", default="latest", help="latest, best or a step")
    parser.add_argument(
        "--random-opening", type=int, default=0, help="random moves that open each game (rl eval's; default 0)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="markdown file whose `## Go ladder, NxN` sections to write or replace")
    args = parser.parse_args(argv)
    ladder = rungs(args.rungs, args.gtp)
    checkpoint = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
    by_size: dict[int, list[dict]] = defaultdict(list)
    start = time.perf_counter()
    for run in args.runs:
        size = int(registry.open_run(run, None).config.env.removeprefix("Go"))
        for opponent, level in ladder:
            options = {
                "seed": args.seed,
                "search": args.search,
                "checkpoint": checkpoint,
                "random_opening": args.random_opening,
            }
            result = evaluate_run(run, args.games, opponent=opponent, level=level, **options)
            by_size[size].append(result)
            print(
                f"{run.name} step {result['step']:,} vs {opponent_label(opponent, level)}: {result['wins']:g}/"
                f"{result['games']} ({result['win_rate']:.0%}, 95% {result['win_rate_low']:.0%}-"
                f"{result['win_rate_high']:.0%}), Elo {elo_text(result['elo'])}",
                flush=True,
            )
    seconds = time.perf_counter() - start
    for size in sorted(by_size):
        text = table(size, by_size[size], args.games, args.search, seconds, args.random_opening)
        print(text)
        if args.out:
            write_section(args.out, heading(size), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
