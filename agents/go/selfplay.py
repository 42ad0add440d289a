"""Self-play games for expert iteration (agents/alphazero.py): B games from the empty board, advanced together on the
batched rules (envs/go/game.py), each move chosen by the PUCT search (agents/go/search.py) of the current network.

Per move (AlphaGo Zero, Silver et al. 2017; KataGo, Wu 2019):
- playout cap randomisation: with probability `full_search_prob` the move gets `playouts` playouts, Dirichlet noise
  at the root, and its position is recorded with the root's visit distribution as a policy target; otherwise it
  gets `fast_playouts`, no noise, and is not recorded (fast moves only move the game on);
- the move played is drawn in proportion to the root's visits (temperature 1) for the first `temperature_moves`
  moves of the game, then the most visited one;
- a position with a single offered move is played without a search and not recorded.
When every game has ended, each recorded position gets the game's result from its mover's view: +1 win, -1 loss,
0 draw (Tromp-Taylor area at the run's komi; no shaping).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.go.search import Search, most_visited
from envs.go import game
from envs.go.env import offered_moves


@dataclass
class Positions:
    """Recorded positions: what the network learns from (agents/go/positions.py keeps the recent ones)."""

    boards: np.ndarray  # (P, k, N*N) int8: the last k boards, newest first (+1 black, -1 white)
    turn: np.ndarray  # (P,) int8: the colour to move
    policy: np.ndarray  # (P, N*N+1) float32: the root's visit distribution (sums to 1)
    value: np.ndarray  # (P,) float32: the game's result from the mover's view


@dataclass
class Games:
    """One round of self-play: its recorded positions and what the log shows."""

    positions: Positions
    moves: int  # moves played in all games together (positions recorded or not)
    searches: int  # moves chosen by a search (fast or full)
    lengths: np.ndarray  # (B,) moves per game
    margins: np.ndarray  # (B,) Black's final margin (area - komi)


def play(
    search: Search,
    games: int,
    size: int,
    history: int,
    rng: np.random.Generator,
    fast_playouts: int,
    full_search_prob: float,
    temperature_moves: int,
) -> Games:
    """`games` whole games of the search against itself (search.playouts per full search); `rng` draws which moves
    get a full search, the root noise and the moves sampled at temperature 1."""
    A = size * size
    state = game.new_games(games, size)
    boards = torch.zeros(games, history, A, dtype=torch.int8)  # newest first; zeros before the game's start
    recorded: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (game, boards, turn, policy)
    moves = searches = 0
    while not state.done.all():
        live = (~state.done).nonzero().view(-1)  # (L,)
        now = state.index(live)
        offered = offered_moves(now, search.eye_fill, search.pass_rule, search.komi)
        action = offered.float().argmax(1).numpy()  # a forced move: the one offered
        searched = np.flatnonzero(offered.sum(1).numpy() > 1)
        if len(searched):
            full = rng.random(len(searched)) < full_search_prob
            rows = torch.as_tensor(searched)
            visits, priors = search.root_visits(
                now.index(rows), boards[live[rows]], np.where(full, search.playouts, fast_playouts), full, rng
            )
            # temperature 1 for the game's first moves: a move drawn in proportion to its visits
            cumulative = visits.cumsum(1)
            drawn = (cumulative < (1 - rng.random(len(searched)))[:, None] * cumulative[:, -1:]).sum(1)  # u in (0, 1]
            early = now.moves[rows].numpy() < temperature_moves
            action[searched] = np.where(early, drawn, most_visited(visits, priors))
            kept = searched[full]
            recorded.append(
                (
                    live[kept].numpy(),
                    boards[live[kept]].numpy(),
                    now.turn[kept].numpy(),
                    visits[full] / visits[full].sum(1, keepdims=True),
                )
            )
            searches += len(searched)
        moves += len(live)
        played = torch.full((games,), A, dtype=torch.int64)
        played[live] = torch.as_tensor(action, dtype=torch.int64)
        state = game.step(state, played)  # games already over stay as they are
        pushed = torch.cat([state.board.unsqueeze(1), boards[:, :-1]], 1)
        is_live = torch.zeros(games, dtype=torch.bool)
        is_live[live] = True
        boards = torch.where(is_live.view(-1, 1, 1), pushed, boards)
    margins = game.score(state, search.komi).numpy()  # Black's
    rows, past, turn, policy = (np.concatenate(parts) for parts in zip(*recorded)) if recorded else _nothing(history, A)
    value = (np.sign(margins[rows]) * turn).astype(np.float32)  # the result from the mover's view
    positions = Positions(past.astype(np.int8), turn.astype(np.int8), policy.astype(np.float32), value)
    return Games(positions, moves, searches, state.moves.numpy(), margins)


def _nothing(history: int, A: int) -> tuple[np.ndarray, ...]:
    return (
        np.zeros(0, np.int64),
        np.zeros((0, history, A), np.int8),
        np.zeros(0, np.int8),
        np.zeros((0, A + 1), np.float32),
    )
