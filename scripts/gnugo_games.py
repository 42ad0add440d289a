"""GNU Go plays itself; every position it moves in becomes a training example for a Go policy (the supervised
half of AlphaGo's recipe, Silver et al. 2016, sec. "Supervised learning of policy networks", with GNU Go's moves
for the human experts' moves).

One GNU Go process per worker asks `genmove` for both colours (Chinese rules, positional superko, the komi given,
`--capture-all-dead` so that it removes dead stones before passing, as Tromp-Taylor scoring needs, and
`--never-resign` so that every game ends scored). GNU Go is deterministic given its seed, so the first K moves of
a game are random legal moves (envs.go.env.random_policy, the env's random player) and each game gets its own
GNU Go seed (`set_random_seed`). Our own rules (envs/go/game.py) step every move: a GNU Go move they call
illegal stops the script. Games end as the env's do: two passes or 2*N*N moves.

Written with np.savez_compressed to --out:
  obs      (P, 2k+1, N, N) uint8  the observation GoEnv shows the player to move (envs.go.env.observation_planes)
  action   (P,) int64             GNU Go's move (N*N = pass); the K random opening moves are not examples
  legal    (P, N*N+1) bool        the legal moves there under our rules
  outcome  (P,) float32           +1 if the player to move won the game, -1 if it lost (Tromp-Taylor area score)
  game     (P,) int64             the game's index, to split train/test by game
  size, komi
and the games as one SGF collection beside it (FILE.sgf).

    python scripts/gnugo_games.py --size 5 --games 200 --level 1 --random-opening 2 --out /work/wt/data/go5.npz
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import torch

from envs.go import game, gtp, gtp_client, sgf
from envs.go.env import observation_planes, random_policy


class IllegalMove(RuntimeError):
    """A move GNU Go chose that our rules forbid: the two rule sets disagree, so the data would be wrong."""


def start_engine(size: int, komi: float, level: int) -> gtp_client.GtpClient:
    client = gtp_client.GtpClient(
        [
            gtp_client.GNUGO,
            "--mode",
            "gtp",
            "--chinese-rules",
            "--positional-superko",
            "--capture-all-dead",
            "--never-resign",
            "--level",
            str(level),
            "--komi",
            str(komi),
        ]
    )
    client.send_many([f"boardsize {size}", f"komi {komi}"])
    return client


def game_seed(seed: int, index: int) -> int:
    """Independent seeds per (run seed, game), whichever worker plays the game."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % 2**31)


def play_game(
    engine: gtp_client.GtpClient, size: int, komi: float, history: int, random_opening: int, seed: int
) -> dict:
    """One game: K random moves, then GNU Go for both colours to the end. Returns the recorded positions
    (obs (P, 2k+1, N, N) uint8, action (P,), legal (P, A+1), mover (P,) +1/-1), the moves and Black's margin."""
    A = size * size
    generator = torch.Generator().manual_seed(seed)
    engine.send_many(["clear_board", f"set_random_seed {seed}"])
    state = game.new_games(1, size)
    boards = torch.zeros(1, history, A, dtype=torch.int8)  # newest first, as GoEnv keeps them
    boards[0, 0] = state.board[0]
    obs, actions, legal, movers, moves = [], [], [], [], []
    while not state.done.item():
        who = int(state.turn)
        name = "b" if who == game.BLACK else "w"
        if len(moves) < random_opening:
            move = int(random_policy(state, generator))
            engine.send(f"play {name} {gtp.vertex(move, size)}")
        else:
            answer = engine.send(f"genmove {name}")
            move = gtp.action(answer, size)
            if not state.legal[0, move]:
                raise IllegalMove(
                    f"GNU Go played {answer} as {name} at move {len(moves) + 1}, illegal under our rules "
                    f"(seed {seed}):\n{engine.send('showboard')}"
                )
            obs.append(observation_planes(boards, state.turn, size).astype(np.uint8)[0])
            actions.append(move)
            legal.append(state.legal[0].numpy())
            movers.append(who)
        state = game.step(state, torch.tensor([move]))
        boards = torch.cat([state.board.view(1, 1, A), boards[:, :-1]], 1)
        moves.append((who, move))
    margin = float(game.score(state, komi)[0])  # Black's
    return {
        "obs": np.stack(obs),
        "action": np.array(actions, dtype=np.int64),
        "legal": np.stack(legal),
        "mover": np.array(movers, dtype=np.int8),
        "moves": moves,
        "margin": margin,
    }


def play_games(args: tuple) -> list[tuple[int, dict]]:
    """A worker's share: games `indices`, one GNU Go process for all of them."""
    indices, size, komi, level, history, random_opening, seed = args
    torch.set_num_threads(1)
    engine = start_engine(size, komi, level)
    try:
        return [(i, play_game(engine, size, komi, history, random_opening, game_seed(seed, i))) for i in indices]
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=9)
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--level", type=int, default=1, help="GNU Go's strength, 0..10 (slower when higher)")
    parser.add_argument("--out", type=Path, required=True, help="the .npz file to write (and FILE.sgf beside it)")
    parser.add_argument("--random-opening", type=int, default=2, help="random legal moves at the start of each game")
    parser.add_argument("--komi", type=float, default=None, help="default by size (envs/go/game.py default_komi)")
    parser.add_argument("--history", type=int, default=8, help="boards in the observation (GoEnv's history k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes, each with its own GNU Go")
    args = parser.parse_args(argv)
    if not 5 <= args.size <= 19 or args.games < 1 or args.workers < 1 or args.random_opening < 0 or args.history < 1:
        parser.error("need --size 5..19, --games >= 1, --workers >= 1, --random-opening >= 0, --history >= 1")
    if args.out.suffix != ".npz":
        parser.error(f"--out {str(args.out)!r}: give a .npz file name")
    komi = game.default_komi(args.size) if args.komi is None else args.komi

    start = time.time()
    shares = [
        (
            list(range(w, args.games, args.workers)),
            args.size,
            komi,
            args.level,
            args.history,
            args.random_opening,
            args.seed,
        )
        for w in range(args.workers)
    ]
    try:
        if args.workers == 1:
            results = play_games(shares[0])
        else:
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                results = [r for share in pool.map(play_games, shares) for r in share]
    except IllegalMove as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    games = [g for _, g in sorted(results, key=lambda r: r[0])]
    seconds = time.time() - start

    outcome = [np.sign(g["margin"]) * g["mover"].astype(np.float32) for g in games]  # +1: the mover won
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        obs=np.concatenate([g["obs"] for g in games]),
        action=np.concatenate([g["action"] for g in games]),
        legal=np.concatenate([g["legal"] for g in games]),
        outcome=np.concatenate(outcome).astype(np.float32),
        game=np.concatenate([np.full(len(g["action"]), i, dtype=np.int64) for i, g in enumerate(games)]),
        size=np.int64(args.size),
        komi=np.float32(komi),
    )
    name = f"GNU Go {gtp_client.GNUGO} level {args.level}"
    args.out.with_suffix(".sgf").write_text(
        "".join(
            sgf.write(args.size, komi, g["moves"], gtp.result_text(g["margin"]), black=name, white=name) for g in games
        )
    )
    positions = sum(len(g["action"]) for g in games)
    black_wins = sum(g["margin"] > 0 for g in games)
    print(
        f"{args.games} games, {positions} positions ({positions / args.games:.1f} a game), Black won {black_wins}, "
        f"{seconds:.1f} s = {args.games / seconds * 60:.1f} games/minute with {args.workers} worker(s); "
        f"wrote {args.out} and {args.out.with_suffix('.sgf')}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
