"""The Go vector env: the VecEnv contract, observation planes, rewards, NEXT_STEP autoreset, opponents."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import envs
from envs.go import game, gtp_client
from envs.go.env import offered_moves, random_policy

torch.set_num_threads(1)


def random_legal(info, rng):
    return np.array([rng.choice(np.flatnonzero(row)) for row in info["action_mask"]])


def test_names_family_and_listing():
    assert envs.canonical_name("go9") == "Go9" and envs.family("Go19") == "go" and envs.short_name("Go5") == "Go5"
    assert {"Go5", "Go7", "Go9", "Go19"} <= {name for name, fam, _ in envs.known_envs() if fam == "go"}
    with pytest.raises(envs.EnvNameError, match="Go9"):
        envs.canonical_name("Go99")


def test_contract_and_observation_planes():
    env = envs.make("Go5", num_envs=3, seed=0, history=2, opponent=None)
    obs, info = env.reset()
    assert obs.shape == (3, 5, 5, 5) and obs.dtype == np.float32 and env.single_action_space.n == 26
    assert info["action_mask"].shape == (3, 26) and info["action_mask"].dtype == bool and info["action_mask"].all()
    assert (obs[:, :4] == 0).all() and (obs[:, 4] == 1).all()  # empty history, Black to move
    obs, reward, terminated, truncated, info = env.step(np.array([0, 12, 25]))
    assert reward.dtype == np.float32 and not terminated.any() and not truncated.any() and not info["life_lost"].any()
    assert (obs[:, 4] == 0).all() and info["to_play"].tolist() == [-1, -1, -1]  # White to move now
    assert obs[0, 1, 0, 0] == 1 and obs[0, 0].sum() == 0  # the newest board: Black's stone is the opponent's
    assert obs[1, 1, 2, 2] == 1 and obs[2, :4].sum() == 0
    assert not info["action_mask"][0, 0] and info["action_mask"][2, 0]
    with pytest.raises(ValueError, match="illegal Go action"):
        env.step(np.array([0, 1, 2]))


def test_self_play_reward_goes_to_the_winner_and_autoreset():
    env = envs.make("Go5", num_envs=2, seed=0, komi=0.5, opponent=None)
    env.reset()
    env.step(np.array([12, 12]))  # Black plays the centre in both games
    obs, reward, terminated, _, _ = env.step(np.array([25, 25]))  # White passes
    obs, reward, terminated, _, info = env.step(np.array([25, 25]))  # Black passes: game over
    assert terminated.all() and reward.tolist() == [1.0, 1.0]  # the mover (Black) won 25 - 0.5
    obs, reward, terminated, _, info = env.step(np.array([3, 3]))  # ignored: the reset step
    assert not terminated.any() and reward.tolist() == [0.0, 0.0] and obs[:, :-1].sum() == 0
    assert info["to_play"].tolist() == [1, 1]


def test_random_opponent_replies_and_games_end():
    env = envs.make("Go5", num_envs=4, seed=0, opponent="random", agent_colour="white")
    obs, info = env.reset()
    assert (info["to_play"] == -1).all() and obs[:, 1].sum() == 4  # the opponent (Black) has moved
    rng, finished = np.random.default_rng(0), []
    for _ in range(200):
        obs, reward, terminated, _, info = env.step(random_legal(info, rng))
        finished += reward[terminated].tolist()
        assert (info["to_play"][~terminated] == -1).all()  # the agent is always to move, but at a game's end
    assert len(finished) >= 4 and set(finished) <= {-1.0, 1.0}


def test_random_policy_plays_legal_moves_and_keeps_its_eyes():
    board = torch.zeros(1, 25, dtype=torch.int8)
    board[0, [1, 5, 6]] = game.BLACK  # a black eye at the corner point 0
    state = game.from_boards(board)
    moves = {int(random_policy(state, torch.Generator().manual_seed(s))[0]) for s in range(200)}
    assert 0 not in moves and moves <= set(np.flatnonzero(state.legal[0].numpy()))


def test_offered_moves_without_eye_fill_leave_out_the_movers_own_eyes_only():
    board = torch.zeros(1, 25, dtype=torch.int8)
    board[0, [1, 5, 6]] = game.BLACK  # Black's eye at the corner point 0
    board[0, [18, 22, 24]] = game.WHITE  # White's eye at point 23 (bottom edge)
    black, white = game.from_boards(board, game.BLACK), game.from_boards(board, game.WHITE)
    assert game.own_eyes(black)[0].nonzero().view(-1).tolist() == [0]
    assert game.own_eyes(white)[0].nonzero().view(-1).tolist() == [23]
    for state, eye in ((black, 0), (white, 23)):
        offered = offered_moves(state, eye_fill=False)[0]
        expected = state.legal[0].clone()
        expected[eye] = False
        assert state.legal[0, eye] and torch.equal(offered, expected) and offered[25]  # pass is always offered
        assert torch.equal(offered_moves(state)[0], state.legal[0])  # eye_fill (the default): every legal move


def test_pass_rule_end_offers_pass_only_when_nothing_else_is_or_when_passing_back_wins():
    board = torch.zeros(1, 25, dtype=torch.int8)
    board[0, [1, 5, 6]] = game.BLACK  # Black's area is the whole board (25 points)
    black = game.from_boards(board, game.BLACK)
    assert offered_moves(black)[0, 25] and not offered_moves(black, False, "end")[0, 25]  # other moves left: no pass
    assert torch.equal(offered_moves(black, False, "end")[0, :25], offered_moves(black, False)[0, :25])
    after_white_pass = game.step(game.from_boards(board, game.WHITE), torch.tensor([25]))  # Black to move, passes 1
    assert offered_moves(after_white_pass, False, "end", komi=7.5)[0, 25]  # 25 - 7.5 > 0: passing back wins
    assert not offered_moves(after_white_pass, False, "end", komi=30.5)[0, 25]  # behind: play on
    after_black_pass = game.step(black, torch.tensor([25]))  # White to move, behind by 17.5
    assert not offered_moves(after_black_pass, False, "end", komi=7.5)[0, 25]
    board = torch.full((1, 25), game.BLACK, dtype=torch.int8)
    board[0, [0, 12]] = game.EMPTY  # two eyes: nothing but pass is left for either side
    for turn in (game.BLACK, game.WHITE):
        offered = offered_moves(game.from_boards(board, turn), False, "end")[0]
        assert offered.nonzero().view(-1).tolist() == [25]


@pytest.mark.skipif(not os.access(gtp_client.GNUGO, os.X_OK), reason="GNU Go not installed (apt-get install gnugo)")
def test_gnugo_opponent():
    env = envs.make("Go5", num_envs=2, seed=0, opponent="gnugo")
    try:
        obs, info = env.reset()
        rng, finished = np.random.default_rng(1), 0
        for _ in range(40):
            obs, reward, terminated, _, info = env.step(random_legal(info, rng))
            assert (info["to_play"][~terminated] == 1).all()
            finished += int(terminated.sum())
        assert obs[:, 1].sum() > 0  # GNU Go's stones are on the board
    finally:
        env.close()
