"""Referee: one game between two GTP engines (default: `rl gtp` as Black, GNU Go as White), written
to an SGF file. The referee keeps its own board (envs/go/game.py), rejects illegal moves (the
offender loses), ends the game on two passes, a resignation or the 2*N*N move cap, and scores by
Tromp-Taylor area.

    python scripts/gtp_match.py --size 9 --out game.sgf
    python scripts/gtp_match.py --black "/usr/games/gnugo --mode gtp" --white "rl gtp" --size 5
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from envs.go import game, gtp, gtp_client, sgf


def match(black: str, white: str, size: int, komi: float) -> tuple[list[tuple[int, int]], str]:
    """Play one game; returns the moves (colour, action) and the result ("B+3.5", "W+R", ...)."""
    engines = {game.BLACK: gtp_client.GtpClient(black), game.WHITE: gtp_client.GtpClient(white)}
    state, moves = game.new_games(1, size), []
    try:
        for engine in engines.values():
            engine.send_many([f"boardsize {size}", "clear_board", f"komi {komi}"])
        while not state.done.item():
            who = int(state.turn)
            name, other = ("b", "W") if who == game.BLACK else ("w", "B")
            answer = engines[who].send(f"genmove {name}").strip()
            if answer.lower() == "resign":
                return moves, f"{other}+R"
            move = gtp.action(answer, size)
            if not state.legal[0, move]:
                print(f"illegal move {answer} by {name}: it loses", file=sys.stderr)
                return moves, f"{other}+F"
            engines[-who].send(f"play {name} {answer}")
            state = game.step(state, torch.tensor([move]))
            moves.append((who, move))
        return moves, gtp.result_text(float(game.score(state, komi)[0]))
    finally:
        for engine in engines.values():
            engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rl_gtp = shlex.join([sys.executable, "-m", "agents.cli", "gtp"])
    parser.add_argument("--black", default=rl_gtp, help="command of the Black engine (default: rl gtp)")
    parser.add_argument(
        "--white",
        default=f"{gtp_client.GNUGO} --mode gtp --chinese-rules --positional-superko --level 1",
        help="command of the White engine (default: GNU Go, level 1)",
    )
    parser.add_argument("--size", type=int, default=9)
    parser.add_argument("--komi", type=float, default=None, help="default by size (envs/go/game.py default_komi)")
    parser.add_argument("--out", type=Path, help="SGF file to write (default: print it)")
    args = parser.parse_args(argv)
    komi = game.default_komi(args.size) if args.komi is None else args.komi
    moves, result = match(args.black, args.white, args.size, komi)
    record = sgf.write(args.size, komi, moves, result, black=args.black, white=args.white)
    if args.out:
        args.out.write_text(record)
    else:
        sys.stdout.write(record)
    print(f"{result} after {len(moves)} moves", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
