"""Go rules on boards drawn as text: captures, snapback, suicide, ko, superko, scoring, game end."""

from __future__ import annotations

import pytest
import torch

from envs.go import game

torch.set_num_threads(1)


def parse(text: str) -> tuple[torch.Tensor, int]:
    """A drawing (rows of X black, O white, . empty) -> board (1, A) int8 and its size."""
    rows = [line.split() for line in text.strip().splitlines()]
    size = len(rows)
    cells = {"X": game.BLACK, "O": game.WHITE, ".": game.EMPTY}
    return torch.tensor([[cells[c] for row in rows for c in row]], dtype=torch.int8), size


def drawing(board: torch.Tensor, size: int) -> str:
    marks = {game.BLACK: "X", game.WHITE: "O", game.EMPTY: "."}
    cells = [marks[int(v)] for v in board.view(-1)]
    return "\n".join(" ".join(cells[r * size : (r + 1) * size]) for r in range(size))


def start(text: str, turn: int = game.BLACK) -> tuple[game.GoState, int]:
    board, size = parse(text)
    return game.from_boards(board, turn), size


def play(state: game.GoState, size: int, *points: tuple[int, int] | str) -> game.GoState:
    """Play (row, col) points or "pass", asserting each is legal first."""
    for p in points:
        action = size * size if p == "pass" else p[0] * size + p[1]
        assert state.legal[0, action], f"{p} should be legal on\n{drawing(state.board, size)}"
        state = game.step(state, torch.tensor([action]))
    return state


def legal(state: game.GoState, size: int, row: int, col: int) -> bool:
    return bool(state.legal[0, row * size + col])


def assert_consistent(state: game.GoState, size: int) -> None:
    """Incremental labels and hash agree with the same board set up from scratch."""
    fresh = game.from_boards(state.board, state.turn)
    assert torch.equal(state.labels, fresh.labels)
    assert torch.equal(state.hash, fresh.hash)


def test_single_capture_removes_the_stone():
    state, n = start("""
        . X . . .
        X O X . .
        . . . . .
        . . . . .
        . . . . .""")
    state = play(state, n, (2, 1))
    assert drawing(state.board, n).splitlines()[1] == "X . X . ."
    assert_consistent(state, n)


def test_one_move_captures_two_groups_at_once():
    state, n = start("""
        O X O X .
        O X . . .
        . X O X .
        . . X . .
        . . . . .""")
    # Black at (1,2) takes the last liberty of the white stone above it and of the one below.
    state = play(state, n, (1, 2))
    assert drawing(state.board, n) == "\n".join(["O X . X .", "O X X . .", ". X . X .", ". . X . .", ". . . . ."])
    assert_consistent(state, n)


def test_snapback():
    state, n = start("""
        . . X . .
        O O X . .
        X X . . .
        . . . . .
        . . . . .""")
    state = play(state, n, (0, 0))  # throw-in: one liberty, at (0,1)
    state = play(state, n, (0, 1))  # White captures it ...
    assert state.board[0, 0] == game.EMPTY and state.board[0, 1] == game.WHITE
    state = play(state, n, (0, 0))  # ... and Black takes the three white stones back: not a ko
    assert drawing(state.board, n).splitlines()[:2] == ["X . X . .", ". . X . ."]
    assert_consistent(state, n)


def test_suicide_is_illegal_unless_it_captures():
    state, n = start("""
        . O . . .
        O . O . .
        . O X . .
        O X . X .
        . O X . .""")
    assert not legal(state, n, 0, 0)  # single-point suicide
    assert not legal(state, n, 1, 1)  # no liberty and captures nothing
    assert legal(state, n, 3, 2)  # a point in its own eye is fine
    assert legal(state, n, 4, 0)  # no liberty of its own, but it captures the white stone at (4,1)
    after = play(state, n, (4, 0))
    assert after.board[0, 4 * n + 1] == game.EMPTY
    white = game.from_boards(state.board, game.WHITE)
    # White fills Black's eye: no liberty of its own, but it captures the lone black stone at (3,1).
    after = play(white, n, (3, 2))
    assert after.board[0, 3 * n + 2] == game.WHITE and after.board[0, 3 * n + 1] == game.EMPTY
    assert after.board[0, 2 * n + 2] == game.BLACK  # (2,2) keeps its liberty at (2,3)


def test_multi_stone_suicide_is_illegal():
    state, n = start("""
        X X O . .
        . X O . .
        X X O . .
        O O O . .
        . . . . .""")
    assert not legal(state, n, 1, 0)  # would leave the black group of six without a liberty
    assert legal(state, n, 4, 0)


KO = """
    . X O . .
    X O . O .
    . X O . .
    . . . . .
    . . . . ."""


def test_ko_cannot_be_retaken_at_once_but_can_after_a_threat():
    state, n = start(KO)
    state = play(state, n, (1, 2))  # Black takes the ko
    assert state.board[0, 1 * n + 1] == game.EMPTY
    assert not legal(state, n, 1, 1)  # White may not retake at once
    state = play(state, n, (4, 4), (4, 0))  # a threat and an answer elsewhere
    assert legal(state, n, 1, 1)
    state = play(state, n, (1, 1))
    assert state.board[0, 1 * n + 2] == game.EMPTY


def test_triple_ko_superko_forbids_the_sixth_move():
    # Three kos; ko k's mouth is (3k+1, 1) and (3k+1, 2). Kos 0 and 2 hold a white stone, ko 1 a black one.
    text = """
        . X O . . . . . .
        X O . O . . . . .
        . X O . . . . . .
        . X O . . . . . .
        X . X O . . . . .
        . X O . . . . . .
        . X O . . . . . .
        X O . O . . . . .
        . X O . . . . . ."""
    state, n = start(text)
    opening = state.board.clone()
    # B takes ko 0, W ko 1, B ko 2, W ko 0, B ko 1: every position so far is new.
    state = play(state, n, (1, 2), (4, 1), (7, 2), (1, 1), (4, 2))
    assert not legal(state, n, 7, 1), "retaking ko 2 would repeat the opening position (superko)"
    fresh = game.from_boards(state.board, state.turn)  # the same board without its history
    assert legal(fresh, n, 7, 1), "without the history it is an ordinary ko capture"
    assert torch.equal(play(fresh, n, (7, 1)).board, opening)


def test_pass_is_always_legal_and_two_passes_end_the_game():
    state = game.new_games(3, 5)
    assert state.legal[:, 25].all()
    state = game.step(state, torch.tensor([25, 0, 25]))
    assert not state.done.any()
    state = game.step(state, torch.tensor([25, 25, 3]))  # game 0 ends; game 1 only one pass
    assert state.done.tolist() == [True, False, False]
    moves = state.moves.clone()
    assert torch.equal(game.step(state, torch.tensor([0, 1, 2])).moves[0], moves[0])  # over: unchanged


def test_move_cap_ends_the_game_at_two_n_squared():
    size, batch = 5, 32
    state = game.new_games(batch, size)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2 * size * size):
        weights = state.legal.float()
        weights[:, -1] = (weights[:, :-1].sum(1) == 0).float()  # pass only when forced
        before = state.done.clone()
        state = game.step(state, torch.multinomial(weights, 1, generator=generator).view(-1))
        ended_now = state.done & ~before
        assert ((state.moves[ended_now] == 2 * size * size) | (state.passes[ended_now] == 2)).all()
    assert state.done.all()
    assert (state.moves <= 2 * size * size).all()
    assert (state.moves == 2 * size * size).any()


def test_reopened_games_go_on_past_two_passes_and_the_cap_and_superko_still_sees_every_board():
    """GTP's games end when the controller says so: `reopened` clears `done` and widens the history, so a game runs
    past 2*N*N moves (here 3 times the cap) and a ko taken before the cap still may not be retaken after it."""
    state, n = start(KO)
    state = play(state, n, (1, 2))  # Black takes the ko; retaking would repeat the opening board
    width = state.history.shape[1]
    for _ in range(3 * 2 * n * n):
        if state.done.item():
            state = game.reopened(state)
        assert not legal(state, n, 1, 1) or int(state.turn) == game.BLACK
        state = game.step(state, torch.tensor([n * n]))  # passes: the board stays the one after the capture
    assert state.history.shape[1] > width  # the history grew past the training env's 2*N*N+1 slots
    state = game.with_turn(game.reopened(state), game.WHITE)
    assert not legal(state, n, 1, 1), "the retake repeats the board of before the capture: positional superko"
    state = play(state, n, (4, 4), (4, 0), (1, 1))  # a stone changes the board: then the retake is new
    assert_consistent(state, n)


def test_handicap_stones_set_up_in_a_batch_with_white_to_move():
    """Handicap games in the batched state: black set-up stones (2 and 4 of them), White moves first, the set-up
    board is in the superko history, and play goes on from there."""
    n = 9
    board = torch.zeros(2, n * n, dtype=torch.int8)
    board[0, [20, 60]] = game.BLACK  # C7 G3
    board[1, [20, 24, 56, 60]] = game.BLACK  # C7 G7 C3 G3
    state = game.from_boards(board, game.WHITE)
    assert state.turn.tolist() == [game.WHITE, game.WHITE]
    assert not state.legal[0, 20] and not state.legal[1, 56] and state.legal[0, 56]
    state = game.step(state, torch.tensor([40, 40]))  # White takes the centre in both
    assert state.board[:, 40].tolist() == [game.WHITE, game.WHITE] and state.turn.tolist() == [game.BLACK] * 2
    assert torch.equal(state.labels, game.label_groups(state.board, n))
    black, white = game.area(state.board, n)
    assert black.tolist() == [2, 4] and white.tolist() == [1, 1]  # every empty point reaches both colours


def test_area_scoring_counts_seki_liberties_and_dame_for_nobody():
    # An empty point is scored only if it reaches one colour alone: (0,0) is White's eye; (0,2), a
    # liberty shared by both (as in seki), and the big region touching both colours are nobody's.
    board, n = parse("""
        . O . X . . .
        O O X X . . .
        X X X . . . .
        . . . . . . .
        . . . . . O .
        . . . . . . .
        . . . . . . .""")
    black, white = game.area(board, n)
    assert (black.item(), white.item()) == (6, 4 + 1)
    board, n = parse("""
        . X . O .
        . X . O .
        . X . O .
        . X . O .
        . X . O .""")
    black, white = game.area(board, n)
    assert (black.item(), white.item()) == (10, 10)  # column 2 is dame: it reaches both colours
    state = game.from_boards(board)
    assert game.score(state, 0.5).item() == pytest.approx(-0.5)


def test_empty_board_scores_only_komi():
    state = game.new_games(2, 9)
    assert game.score(state, game.default_komi(9)).tolist() == [-7.5, -7.5]
    assert [game.default_komi(n) for n in (5, 7, 9, 19)] == [24.5, 8.5, 7.5, 7.5]


def test_random_games_keep_labels_and_hashes_consistent():
    state = game.new_games(64, 7)
    generator = torch.Generator().manual_seed(1)
    for _ in range(60):
        weights = state.legal.float()
        weights[:, -1] = 0.05
        state = game.step(state, torch.multinomial(weights, 1, generator=generator).view(-1))
    fresh = game.from_boards(state.board, state.turn)
    assert torch.equal(state.labels, fresh.labels)
    assert torch.equal(state.hash, fresh.hash)
    basic = fresh.legal  # same rules except the history
    assert (state.legal <= basic).all(), "history can only forbid moves"


def test_bad_board_size():
    with pytest.raises(ValueError, match="5..19"):
        game.new_games(1, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    cpu, gpu = game.new_games(16, 9), game.new_games(16, 9, "cuda")
    generator = torch.Generator().manual_seed(2)
    for _ in range(80):
        weights = cpu.legal.float()
        weights[:, -1] = 0.05
        action = torch.multinomial(weights, 1, generator=generator).view(-1)
        cpu, gpu = game.step(cpu, action), game.step(gpu, action.cuda())
        assert torch.equal(cpu.legal, gpu.legal.cpu()) and torch.equal(cpu.board, gpu.board.cpu())
