"""agents/go/search.py: PUCT tree search over a network's policy and value, checked with hand-made networks whose
policy points the wrong way, so that only reading ahead (exact results of finished games, the value's sign at each
level, the stone lead that shaping adds) finds the right move."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.config import ConfigError
from agents.go.matches import play_match
from agents.go.search import Search, for_run
from agents.registry import resolve
from envs.go import game
from envs.go.env import offered_moves

torch.set_num_threads(1)


class FixedNet(nn.Module):
    """Every position: logits that favour one action (prior 0.23 against 0.03 for each other move on an empty 5x5
    board) and the value `black_value` for Black, so -black_value for the mover when White is to move."""

    def __init__(self, favourite: int, black_value: float, actions: int = 26):
        super().__init__()
        self.favourite, self.black_value, self.actions = favourite, black_value, actions

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.zeros(len(obs), self.actions)
        logits[:, self.favourite] = 2.0
        black_to_move = obs[:, -1, 0, 0] == 1  # the observation's last plane: ones when Black is to move
        return logits, torch.where(black_to_move, self.black_value, -self.black_value)


def boards_of(state: game.GoState, k: int = 8) -> torch.Tensor:
    """(B, k, A) history planes holding only the current board (enough for a FixedNet, which ignores them)."""
    return torch.cat(
        [state.board.unsqueeze(1), torch.zeros(len(state.board), k - 1, state.board.shape[1], dtype=torch.int8)], 1
    )


@pytest.mark.parametrize("komi, favourite, passes", [(0.5, 0, True), (30.5, 25, False)])
def test_search_passes_back_exactly_when_the_finished_game_is_won(komi, favourite, passes):
    """Black C3 against nothing, White has just passed; the net values every position -0.5 for Black. At komi 0.5
    passing back ends the game won (+1, scored exactly from the view of White, to move there, then turned round): the
    search passes although its prior favours A5. At komi 30.5 passing loses (-1): it plays on though its prior says
    pass."""
    state = game.step(game.step(game.new_games(1, 5), torch.tensor([12])), torch.tensor([25]))
    net = FixedNet(favourite, black_value=-0.5)
    offered = offered_moves(state, komi=komi)
    search = Search(net, playouts=128, komi=komi)
    move = int(search(state, boards_of(state), offered)[0])
    assert (move == 25) is passes
    assert (favourite == 25) is not passes  # the policy alone would have played the other way


class PointNet(FixedNet):
    """FixedNet's policy; the value is +0.5 for Black where Black has a stone on `point`, else -0.5."""

    def __init__(self, favourite: int, point: int):
        super().__init__(favourite, 0.0)
        self.point = point

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _ = super().forward(obs)
        black_to_move = obs[:, -1, 0, 0] == 1
        black_stones = torch.where(black_to_move, obs[:, 0], obs[:, 1]).flatten(
            1
        )  # planes: the mover's, the opponent's
        black_value = torch.where(black_stones[:, self.point] == 1, 0.5, -0.5)
        return logits, torch.where(black_to_move, black_value, -black_value)


def test_search_backs_values_up_with_the_sign_of_the_player_at_each_level():
    """On an empty 5x5 board the net likes Black's positions with a stone on E1 (+0.5 whoever is to move, deeper too)
    and its policy favours A5: only a search that turns each value to the view of the player choosing finds E1."""
    state = game.new_games(1, 5)
    net = PointNet(favourite=0, point=24)
    move = Search(net, playouts=128, komi=0.5)(state, boards_of(state), offered_moves(state))
    assert int(move[0]) == 24


def test_position_values_add_the_shaping_potential_and_score_finished_games():
    # . X O O X      White (O) to move after Black's E5 captured nothing yet: Black 7 stones, White 3.
    # . X X O X      The net says 0.25 for White; with shaping 2 a position is worth 0.25 + 2 * (3 - 7) / 25.
    # . . X X .      A finished game (two passes) is worth sign(margin) + score_reward * margin / 25.
    board = torch.zeros(1, 25, dtype=torch.int8)
    board[0, [1, 4, 6, 7, 9, 12, 13]] = game.BLACK
    board[0, [2, 3, 8]] = game.WHITE
    state = game.from_boards(board, game.WHITE)
    net = FixedNet(favourite=0, black_value=-0.25)
    _, value, _ = Search(net, playouts=1, komi=0.5, shaping=2.0).evaluate(state, boards_of(state))
    assert value.item() == pytest.approx(0.25 + 2 * (3 - 7) / 25)
    over = game.step(game.step(state, torch.tensor([25])), torch.tensor([25]))  # two passes: over, White to move
    margin = float(game.score(over, 0.5)[0])  # Black's margin
    _, value, _ = Search(net, playouts=1, komi=0.5, shaping=2.0, score_reward=1.0).evaluate(over, boards_of(over))
    assert over.done.item() and margin > 0 and value.item() == pytest.approx(-(1 + margin / 25))  # White's view


def test_search_plays_whole_legal_games_and_skips_forced_moves():
    """Against the random player on 5x5 (GoEnv raises on an illegal move, so finishing proves none was played), with
    the offered moves of a run trained with eye_fill false and pass_rule end; a position with one offered move gets
    it without a search."""
    net = FixedNet(favourite=25, black_value=0.0)  # pass first: only pass_rule keeps it from passing away the game
    search = Search(net, playouts=4, komi=0.5, eye_fill=False, pass_rule="end")
    records = play_match(search, 5, 0.5, "random", games=4, seed=0, num_envs=4, eye_fill=False, pass_rule="end")
    assert len(records) == 4 and all(len(r.moves) > 10 for r in records)
    state = game.new_games(1, 5)
    only_pass = torch.zeros(1, 26, dtype=torch.bool)
    only_pass[0, 25] = True
    assert int(search(state, boards_of(state), only_pass)[0]) == 25
    with pytest.raises(ConfigError, match="playouts must be >= 1"):
        Search(net, playouts=0, komi=0.5)


def test_a_run_is_searched_on_the_scale_of_its_training_returns():
    """for_run takes komi, offered moves, shaping and score reward from the run's config; a capture-count potential,
    whose value the search cannot reconstruct from a position, is refused in one line."""
    config = resolve("ppo", "Go9", "go", overrides=["go.score_reward=0.5"])
    search = for_run(FixedNet(0, 0.0, actions=82), config, 8, torch.device("cpu"))
    assert (search.komi, search.eye_fill, search.pass_rule, search.shaping, search.score_reward) == (
        7.5,
        False,
        "end",
        1.0,
        0.5,
    )
    with pytest.raises(ConfigError, match="shaping_potential=stones"):
        for_run(
            FixedNet(0, 0.0, actions=82),
            resolve("ppo", "Go9", "go", overrides=["go.shaping_potential=captures"]),
            8,
            "cpu",
        )
