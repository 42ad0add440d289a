"""The games an agent lost in a folder of match SGFs, and which of them followed a pass it did not have to make.

    python scripts/go_losses.py runs/Go9__ppo__1__*/games/eval_step_450560_seed_0 --opponent random

The agent is the player named "rl ..." (PB/PW, as `rl eval` and training evaluations write them). Each game is
replayed under our rules; at each of the agent's passes the script asks whether other moves were offered
(`envs.go.env.offered_moves`, own one-point eyes left out as with go.eye_fill false):
- "early": it passed with other moves left before the opponent had passed;
- "passed back behind": it answered the opponent's pass with a pass while behind on the score, with other moves
  left, which ends the game lost.
go.pass_rule end offers neither (docs/BENCHMARKS.md, "Passing with moves left").
Each lost game also shows its length, and "(cap)" where the 2*N*N move cap (envs/go/game.py) stopped it rather than
two passes: the position was then scored with the opponent's dead stones still on the board.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from envs.go import game, sgf
from envs.go.env import offered_moves


def agent_passes(record: sgf.Record, agent: int) -> tuple[int, int, game.GoState]:
    """(early passes, passes back while behind, final state) of `agent` (+1 black / -1 white) in `record`."""
    state = game.new_games(1, record.size)
    early = back = 0
    for _, action in record.moves:
        if int(state.turn[0]) == agent and action == record.size**2:
            others = bool(offered_moves(state, eye_fill=False)[0, :-1].any())
            early += others and int(state.passes[0]) == 0
            back += others and int(state.passes[0]) == 1 and float(game.score(state, record.komi)[0]) * agent < 0
        state = game.step(state, torch.tensor([action]))
    return early, back, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument(
        "--opponent", default="", help="only the files whose names start with this (random, greedy, gnugo_l1)"
    )
    args = parser.parse_args()
    files = sorted(args.folder.glob(f"{args.opponent}*.sgf"))
    if not files:
        print(f"no {args.opponent}*.sgf in {args.folder} (a games folder of a run: RUN/games/step_N)", file=sys.stderr)
        raise SystemExit(2)
    lost = after_pass = capped = capped_lost = 0
    for path in files:
        text = path.read_text()
        record = sgf.read(text)
        agent = game.BLACK if "PB[rl" in text else game.WHITE
        early, back, state = agent_passes(record, agent)
        cap = bool(state.done[0]) and int(state.passes[0]) < 2  # over, and not by two passes (nor unfinished)
        capped += cap
        if float(game.score(state, record.komi)[0]) * agent > 0:
            continue
        lost += 1
        after_pass += bool(early or back)
        capped_lost += cap
        print(
            f"{path.name}: agent {'Black' if agent == game.BLACK else 'White'}, {record.result}, "
            f"{len(record.moves)} moves{' (cap)' if cap else ''}, {early} early passes, {back} passes back while behind"
        )
    print(
        f"{lost}/{len(files)} lost; {after_pass} of them after a pass with other moves left; "
        f"{capped_lost} of them stopped by the move cap ({capped}/{len(files)} games in all)"
    )


if __name__ == "__main__":
    main()
