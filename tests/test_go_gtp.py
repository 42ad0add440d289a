"""GTP engine transcript, the command sets, games past two passes and the move cap, handicap, time settings,
kgs-genmove_cleanup, malformed input, printsgf/loadsgf round trips, board rendering, `rl play go`, `rl gtp`, and a
full referee game of `rl gtp` against GNU Go that ends in a valid SGF (tests/test_go_gtp_gnugo.py: more games
against GNU Go through controllers; tests/test_go_gtp_fuzz.py: random input)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke, ok
from typer.testing import CliRunner

from agents.cli import app
from envs.go import game, gtp, gtp_client, play, render, sgf
from envs.go.env import random_policy

ROOT = Path(__file__).resolve().parents[1]
HAVE_GNUGO = os.access(gtp_client.GNUGO, os.X_OK)


def session(commands: str, size: int = 5) -> list[str]:
    """Run a GTP session; returns the responses, one string each."""
    out = io.StringIO()
    gtp.serve(play.random_engine(size, None, 0), io.StringIO(commands), out)
    return [r for r in out.getvalue().split("\n\n") if r]


def test_gtp_transcript():
    responses = session("""protocol_version
1 name
boardsize 5
clear_board
komi 0.5
play b C3
play w C4
10 play b C4
is_legal w B3
is_legal b C4
list_stones black
list_stones white
genmove w
undo
list_stones white
play w D4
play b E4
final_score
showboard
quit
play b A1
""")
    assert responses[:8] == ["= 2", "=1 rl-random", "=", "=", "=", "=", "=", "?10 illegal move"]
    assert responses[8:12] == ["= 1", "= 0", "= C3", "= C4"]
    assert responses[12].startswith("= ") and responses[12] != "= pass"
    assert responses[13:15] == ["=", "= C4"]
    assert responses[17] == "= W+0.5"  # 2 stones each, every empty point reaches both: komi decides
    assert "●" in responses[18] and "○" in responses[18]
    assert responses[-1] == "=", "nothing is answered after quit"


def test_gtp_scores_and_captures():
    responses = session("boardsize 5\nkomi 0.5\nplay b B5\nplay w A5\nplay b A4\nlist_stones white\nfinal_score\n")
    assert responses[5] == "="  # the white stone at A5 was captured
    assert responses[6] == "= B+24.5"  # Black owns all 25 points (Tromp-Taylor), komi 0.5


def test_a_gtp_game_goes_on_after_two_passes_and_past_the_move_cap():
    """The controller ends a GTP game: moves are taken after two passes, and 200 moves on 5x5 run past the training
    env's cap of 2*N*N = 50."""
    responses = session("boardsize 5\nplay b pass\nplay w pass\nplay b A1\ngenmove w\nplay b pass\nplay w pass\n")
    assert responses[1:4] == ["=", "=", "="] and responses[4].startswith("= ") and responses[5:] == ["=", "="]
    engine = play.random_engine(5, 0.5, 0)
    answers = [engine.handle(f"genmove {'bw'[i % 2]}") for i in range(200)]
    assert all(a.startswith("= ") for a in answers) and len(engine.moves) == 200
    assert engine.handle("final_score").startswith(("= B+", "= W+"))


def test_gtp_knows_the_required_tournament_regression_and_gui_commands():
    engine = play.random_engine(9, None, 0)
    listed = set(engine.handle("list_commands")[2:].split())
    required = {"protocol_version", "name", "version", "known_command", "list_commands", "quit", "boardsize",
                "clear_board", "komi", "play", "genmove"}  # fmt: skip
    tournament = {"fixed_handicap", "place_free_handicap", "set_free_handicap", "time_settings", "time_left",
                  "final_score", "final_status_list"}  # fmt: skip
    others = {"loadsgf", "reg_genmove", "undo", "showboard", "printsgf", "kgs-genmove_cleanup", "list_stones",
              "is_legal"}  # fmt: skip
    assert required | tournament | others == listed
    assert [engine.handle(f"known_command {c}") for c in ("kgs-genmove_cleanup", "time_left", "cmd_play", "xyz")] == [
        "= true\n\n", "= true\n\n", "= false\n\n", "= false\n\n"]  # fmt: skip


@pytest.mark.parametrize(
    "line,message",
    [
        ("play b Z9", "invalid coordinate"),
        ("play x A1", "invalid color"),
        ("play b", "wrong number"),
        ("boardsize 3", "unacceptable size"),
        ("boardsize 20", "unacceptable size"),
        ("boardsize x", "whole number"),
        ("boardsize -9", "whole number"),
        ("komi x", "number"),
        ("komi nan", "number"),
        ("komi inf", "number"),
        ("komi -1e400", "number"),
        ("komi 362", "-361 to 361"),
        ("fixed_handicap 1", "invalid number of stones"),
        ("fixed_handicap 10", "invalid number of stones"),
        ("fixed_handicap two", "whole number"),
        ("place_free_handicap 81", "invalid number of stones"),
        ("set_free_handicap A1", "invalid number of stones"),
        ("set_free_handicap A1 A1", "bad vertex list"),
        ("set_free_handicap A1 pass", "bad vertex list"),
        ("set_free_handicap A1 Z1", "invalid coordinate"),
        ("time_settings 300 x 5", "whole number"),
        ("time_settings 300 30", "wrong number"),
        ("time_left x 30 0", "invalid color"),
        ("time_left b 1.5 0", "whole number"),
        ("final_status_list unknown", "alive, dead or seki"),
        ("kgs-genmove_cleanup x", "invalid color"),
        ("loadsgf /dev/zero", "cannot load file"),
        ("loadsgf /", "cannot load file"),
        ("loadsgf /dev/null x", "whole number"),
        ("frobnicate", "unknown command"),
        ("undo", "cannot undo"),
        ("loadsgf /no/such.sgf", "cannot load file"),
        ("play b I3", "invalid coordinate"),
    ],
)
def test_malformed_input_gets_an_error_not_a_crash(line, message):
    response = session(line + "\nname\n", size=9)
    assert response[0].startswith("? ") and message in response[0], response
    assert response[1] == "= rl-random"  # the engine still answers


def test_the_answer_to_a_huge_unknown_command_is_one_short_line():
    engine = play.random_engine(9, None, 0)
    answer = engine.handle("x" * 20_000_000 + " y\n")
    assert answer.startswith("? unknown command 'xxx") and answer.endswith("...\n\n") and len(answer) < 250
    answer = engine.handle("play b " + "é\x00\r" * 1000)  # and a bad argument, control characters removed
    assert answer.startswith("? invalid coordinate") and answer.count("\n") == 2 and len(answer) < 250


def test_handicap_commands_place_black_stones_and_white_moves_first(tmp_path):
    """fixed_handicap answers GTP v2's points (tests/test_go_gtp_gnugo.py checks them against GNU Go's); the
    stones are on the board, White moves next, printsgf records them (HA, AB) and loadsgf reads them back."""
    engine = play.random_engine(19, 0.5, 0)
    assert set(engine.handle("fixed_handicap 9")[2:].split()) == set("D4 Q16 D16 Q4 D10 Q10 K4 K16 K10".split())
    assert engine.handle("list_stones white") == "=\n\n" and len(engine.handle("list_stones black")[2:].split()) == 9
    assert engine.handle("fixed_handicap 2").startswith("? board not empty")
    assert engine.handle("genmove w").startswith("= ") and len(engine.moves) == 1 and engine.moves[0][0] == game.WHITE
    path = tmp_path / "handicap.sgf"
    path.write_text(engine.handle("printsgf")[2:])
    record = sgf.read(path.read_text())
    assert record.handicap == 9 and len(record.setup) == 9 and record.to_play == game.WHITE
    assert engine.handle(f"loadsgf {path} 1") == "= white\n\n" and engine.handle("undo").startswith("? cannot undo")
    engine.handle("boardsize 9")
    placed = engine.handle("place_free_handicap 12")[2:].split()  # 9 fixed, 3 more by the policy
    assert len(set(placed)) == 12 and set(engine.handle("list_stones black")[2:].split()) == set(placed)
    engine.handle("clear_board")
    assert engine.handle("set_free_handicap A1 B2 j9") == "=\n\n"
    assert engine.handle("list_stones black") == "= J9 B2 A1\n\n" and engine.handle("genmove b").startswith("= ")


def test_time_settings_and_time_left_are_kept():
    engine = play.random_engine(9, None, 0)
    assert engine.handle("time_settings 300 30 5") == "=\n\n" and engine.time_settings == (300, 30, 5)
    assert engine.handle("time_left w 120 3") == "=\n\n" and engine.time_left == {game.WHITE: (120, 3)}
    assert engine.handle("genmove w").startswith("= ")


def pass_when_allowed(state):
    """A player that passes whenever pass is offered, else plays the first offered point."""
    A = state.board.shape[1]
    return torch.tensor([A if state.legal[0, A] else int(state.legal[0].nonzero()[0])])


def test_kgs_genmove_cleanup_captures_dead_stones_before_it_passes():
    """A white stone inside a black ring is dead: final_status_list names it, genmove passes (this player passes
    whenever it may), kgs-genmove_cleanup plays on (pass taken off its offered moves) until it is captured."""
    engine = gtp.Engine(pass_when_allowed, 7, 0.5)
    for where in ("C5", "D5", "E5", "C4", "E4", "C3", "E3", "C2", "D2", "E2"):
        engine.handle(f"play b {where}")
    engine.handle("play w D4")
    assert engine.handle("final_status_list dead") == "= D4\n\n"
    assert engine.handle("final_status_list alive") == "= C5 D5 E5 C4 E4 C3 E3 C2 D2 E2\n\n"  # one group, one line
    assert engine.handle("final_status_list seki") == "=\n\n"
    assert engine.handle("genmove b") == "= pass\n\n"
    engine.handle("undo")
    for _ in range(49):
        if engine.handle("kgs-genmove_cleanup b") == "= pass\n\n":
            break
        engine.handle("play w pass")
    assert engine.handle("list_stones white") == "=\n\n" and engine.handle("final_status_list dead") == "=\n\n"


def test_sgf_round_trip_and_loadsgf(tmp_path):
    moves = [(game.BLACK, 12), (game.WHITE, 7), (game.BLACK, 25), (game.WHITE, 0)]
    text = sgf.write(5, 0.5, moves, "B+2.5", black="me", white="you]")
    record = sgf.read(text)
    assert (record.size, record.komi, record.moves, record.result) == (5, 0.5, moves, "B+2.5")
    assert sgf.read(text.replace(";B[]", ";B[tt]")).moves == moves
    path = tmp_path / "g.sgf"
    path.write_text(text)
    responses = session(
        f"loadsgf {path}\nlist_stones black\nlist_stones white\nloadsgf {path} 2\nlist_stones white\nprintsgf\n"
    )
    assert responses[:5] == ["= black", "= C3", "= A5 C4", "= white", "="]
    assert sgf.read(responses[5][2:]).moves == moves[:1]
    with pytest.raises(sgf.SgfError, match="SZ"):
        sgf.read("(;GM[1]SZ[25])")
    huge_komi = tmp_path / "komi.sgf"
    huge_komi.write_text(text.replace("KM[0.5]", "KM[1e300]"))
    engine = play.random_engine(5, None, 0)
    answer = engine.handle(f"loadsgf {huge_komi}")
    assert answer.startswith("? cannot load file") and "komi must be a number of points from -361 to 361" in answer
    assert engine.komi == game.default_komi(5)  # the engine is unchanged


def test_render_text_and_rgb():
    board = torch.zeros(25, dtype=torch.int8)
    board[0], board[24] = game.BLACK, game.WHITE
    text = render.board_text(board, 5, last=24)
    lines = text.splitlines()
    assert lines[0] == lines[-1] == "   A B C D E"
    assert lines[1] == " 5 ● · · · · 5" and lines[5] == " 1 · · · ·[○]1"
    image = render.board_rgb(board, 5, cell=10)
    assert image.shape == (60, 60, 3) and image.dtype == np.uint8
    assert (image[10, 10] < 50).all() and (image[50, 50] > 200).all()  # the black and white stones


def test_rl_play_go_through_stdin():
    moves = "Z9\nC3\nC3\nundo\nundo\nC3\npass\nresign\n"
    result = CliRunner().invoke(app, ["play", "go", "--size", "5", "--seed", "1"], input=moves)
    out = ok(result)
    assert "invalid coordinate 'Z9'" in out
    assert "illegal move C3: that point is occupied" in out
    assert "nothing to undo" in out  # the second undo: the first took back C3 and the reply
    assert out.count("engine plays") == 3
    assert "you resign: W+R" in out


def test_rl_play_rejects_other_games():
    result = invoke(["play", "chess"])
    assert result.exit_code == 2 and "the one game is go" in result.stderr


def test_illegal_move_messages():
    suicide = play.random_engine(5, None, 0)
    for who, where in [("w", "B5"), ("w", "A4")]:
        suicide.cmd_play(who, where)
    assert "suicide" in play.why_illegal(suicide, gtp.action("A5", 5))
    ko = play.random_engine(5, None, 0)
    for who, where in [
        ("b", "B5"),
        ("b", "A4"),
        ("b", "B3"),
        ("w", "C5"),
        ("w", "B4"),
        ("w", "D4"),
        ("w", "C3"),
        ("b", "C4"),
    ]:  # Black takes the ko at C4
        ko.cmd_play(who, where)
    assert ko.cmd_list_stones("white") == "C5 D4 C3"
    assert "ko" in play.why_illegal(ko, gtp.action("B4", 5))


def test_rl_gtp_process():
    process = subprocess.run(
        [sys.executable, "-m", "agents.cli", "gtp", "--size", "7"],
        input="name\nbogus\ngenmove b\nquit\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    responses = process.stdout.split("\n\n")
    assert process.returncode == 0, process.stderr
    assert responses[0] == "= rl-random" and responses[1].startswith("? unknown command")
    assert gtp.action(responses[2][2:], 7) in range(50)


@pytest.mark.skipif(not HAVE_GNUGO, reason="GNU Go not installed (apt-get install gnugo)")
def test_referee_game_against_gnugo_ends_in_a_valid_sgf(tmp_path):
    out = tmp_path / "game.sgf"
    process = subprocess.run(
        [sys.executable, "scripts/gtp_match.py", "--size", "7", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert process.returncode == 0, process.stderr
    record = sgf.read(out.read_text())
    assert record.size == 7 and record.komi == 8.5 and len(record.moves) >= 10
    assert record.result and record.result[0] in "BW0"
    state = game.new_games(1, 7)  # every move was legal, the game really ended, and the result is its score
    for who, move in record.moves:
        assert int(state.turn) == who and state.legal[0, move]
        state = game.step(state, torch.tensor([move]))
    if not record.result.endswith(("+R", "+F")):
        assert state.done.item()
        assert record.result == gtp.result_text(float(game.score(state, 8.5)[0]))


@pytest.mark.parametrize("eye_fill", [True, False])
def test_agent_engine_offers_the_moves_the_agent_trained_with(eye_fill):
    """`rl gtp --agent` / `rl play go --agent`: a run trained with go.eye_fill false is never offered its own eyes."""
    offered = []

    def act(obs, legal):
        offered.append(legal[0].copy())
        return np.array([int(np.flatnonzero(legal[0])[0])])  # the first move it is offered

    engine = play.agent_engine(5, 0.5, act, history=8, eye_fill=eye_fill)
    out = io.StringIO()
    gtp.serve(engine, io.StringIO("play b B5\nplay w E1\nplay b A4\nplay w E2\nplay b B4\nplay w E3\ngenmove b\n"), out)
    move = [r for r in out.getvalue().split("\n\n") if r][-1]
    assert offered[0][0] == eye_fill and offered[0][25]  # A5 (point 0) is Black's own eye; pass is always offered
    assert move == ("= A5" if eye_fill else "= C5")


def test_agent_engine_with_pass_rule_end_passes_back_only_when_that_wins():
    """`rl gtp --agent` on a run trained with go.pass_rule end: after the opponent's pass, pass is offered to the agent
    exactly when it leads at the engine's komi (GTP's komi command changes it)."""
    offered = []

    def act(obs, legal):
        offered.append(bool(legal[0, 25]))
        return np.array([int(np.flatnonzero(legal[0])[-1])])  # pass whenever it is offered

    for komi, expected in ((0.5, True), (30.5, False)):
        engine = play.agent_engine(5, 0.5, act, history=8, eye_fill=False, pass_rule="end")
        out = io.StringIO()
        gtp.serve(engine, io.StringIO(f"komi {komi}\nplay b C3\nplay w pass\ngenmove b\n"), out)
        assert offered[-1] is expected


def test_go_losses_script_finds_the_lost_games_and_the_passes_with_moves_left(tmp_path):
    """scripts/go_losses.py: a game the agent lost after passing with moves left (once early, once back while behind)
    is listed with both; a game it won is not; a game stopped by the 2*N*N move cap (random play until one is) is
    marked "(cap)"; an empty folder is one line and exit 2."""
    lost = [(game.BLACK, 25), (game.WHITE, 12), (game.BLACK, 0), (game.WHITE, 25), (game.BLACK, 25)]  # W+0.5
    won = [(game.BLACK, 25), (game.WHITE, 12), (game.BLACK, 25), (game.WHITE, 25)]  # W+25.5, the agent White
    (tmp_path / "random_0.sgf").write_text(sgf.write(5, 0.5, lost, "W+0.5", black="rl step 1", white="random"))
    (tmp_path / "random_1.sgf").write_text(sgf.write(5, 0.5, won, "W+25.5", black="random", white="rl step 1"))
    generator, moves = torch.Generator().manual_seed(0), []
    state = game.new_games(64, 5)
    while not state.done.all():
        action = random_policy(state, generator)
        moves.append((state.turn.clone(), action, state.done.clone()))
        state = game.step(state, action)
    capped = int(((state.moves == 50) & (state.passes < 2)).nonzero()[0, 0])  # a game the cap stopped
    loser = game.WHITE if float(game.score(state.index(capped), 0.5)[0]) > 0 else game.BLACK
    record = [(int(turn[capped]), int(action[capped])) for turn, action, done in moves if not done[capped]]
    (tmp_path / "random_2.sgf").write_text(
        sgf.write(
            5,
            0.5,
            record,
            "?",
            black="rl step 1" if loser == game.BLACK else "random",
            white="random" if loser == game.BLACK else "rl step 1",
        )
    )
    script = [sys.executable, "scripts/go_losses.py"]
    process = subprocess.run(script + [str(tmp_path), "--opponent", "random"], capture_output=True, text=True, cwd=ROOT)
    assert process.returncode == 0, process.stderr
    colour = "Black" if loser == game.BLACK else "White"
    assert process.stdout.splitlines() == [
        "random_0.sgf: agent Black, W+0.5, 5 moves, 1 early passes, 1 passes back while behind",
        f"random_2.sgf: agent {colour}, ?, 50 moves (cap), 0 early passes, 0 passes back while behind",
        "2/3 lost; 1 of them after a pass with other moves left; 1 of them stopped by the move cap (1/3 games in all)",
    ]
    process = subprocess.run(script + [str(tmp_path), "--opponent", "greedy"], capture_output=True, text=True, cwd=ROOT)
    assert process.returncode == 2 and len(process.stderr.strip().splitlines()) == 1


def test_go_curves_counts_each_rounds_games_from_its_sgfs(tmp_path):
    """scripts/go_curves.py: a round's band width comes from the games it played (its SGFs), not from config.yaml's
    go.eval_games, which a resumed run may have changed; a round without SGFs falls back to config.yaml."""
    import importlib.util

    from torch.utils.tensorboard import SummaryWriter

    spec = importlib.util.spec_from_file_location("go_curves", ROOT / "scripts" / "go_curves.py")
    go_curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(go_curves)
    (tmp_path / "config.yaml").write_text("algo: ppo\nenv: Go5\ngo:\n  eval_games: 30\n")
    with SummaryWriter(str(tmp_path)) as writer:
        for step, rate in ((100, 0.9), (200, 0.95), (300, 0.975)):
            writer.add_scalar("go/win_rate/random", rate, step)
        for step, hours in ((50, 0.5), (250, 2.5)):
            writer.add_scalar("charts/cpu_hours", hours, step)
    for step, games in ((100, 20), (200, 40)):
        (tmp_path / "games" / f"step_{step}").mkdir(parents=True)
        for i in range(games):
            (tmp_path / "games" / f"step_{step}" / f"random_{i}.sgf").write_text("(;)")
        (tmp_path / "games" / f"step_{step}" / "greedy_0.sgf").write_text("(;)")
    steps, rates = go_curves.win_rates(tmp_path)["random"]
    assert steps.tolist() == [100, 200, 300]
    games = go_curves.games_per_round(tmp_path, "random", steps)
    assert games.tolist() == [20, 40, 30]
    low, high = go_curves.interval(rates, games)
    assert high[0] - low[0] > high[1] - low[1]  # 18/20 is known less well than 38/40
    assert go_curves.cpu_hours(tmp_path, steps).tolist() == [1.0, 2.0, 2.5]  # --x cpu_hours: interpolated, held


# An engine that answers every command and plays A1 at each genmove: legal once, then an occupied point
A1_ENGINE = """import sys
for line in sys.stdin:
    command = line.split()[0] if line.split() else ""
    if command == "quit":
        print("=\\n", flush=True)
        break
    print("= A1\\n" if command == "genmove" else "=\\n", flush=True)
"""


def test_any_gtp_engine_is_an_opponent_by_its_command_line(tmp_path):
    """`gtp:CMD ARGS`: one engine process per env plays out whole games whose moves are all legal, recorded as SGF
    players; an engine that cannot start, or that plays an illegal move, is a GtpError naming it."""
    from agents.go import matches
    from envs.go.env import GoEnv

    rl_gtp = f"gtp:{sys.executable} -m agents.cli gtp"  # rl gtp with no --agent: a random player
    records = matches.play_match(random_policy_player, 5, 7.5, rl_gtp, games=2, seed=0, num_envs=2)
    assert len(records) == 2 and {r.agent_colour for r in records} == {game.BLACK, game.WHITE}
    for record in records:
        state = game.new_games(1, 5)
        for colour, move in record.moves:
            assert int(state.turn) == colour and state.legal[0, move]
            state = game.step(state, torch.tensor([move]))
        assert bool(state.done) and float(game.score(state, 7.5)) == record.margin
    assert matches.opponent_label(rl_gtp) == "gtp_" + Path(sys.executable).name
    assert matches.opponent_label("gtp:/usr/games/gnugo --mode gtp --level 5") == "gtp_gnugo"
    assert matches.opponent_label("gnugo", 10) == "gnugo_l10" and matches.opponent_label("random") == "random"

    with pytest.raises(gtp.GtpError, match="cannot start the GTP engine '/nonexistent/engine'"):
        GoEnv(5, 1, opponent="gtp:/nonexistent/engine")
    script = tmp_path / "a1.py"
    script.write_text(A1_ENGINE)
    env = GoEnv(5, 1, opponent=f"gtp:{sys.executable} {script}", agent_colour="white")  # the engine opens: A1
    try:
        env.reset(seed=0)
        assert int(env.state.board[0, 20]) == game.BLACK  # A1 is the bottom-left point, action 4*5+0
        with pytest.raises(gtp.GtpError, match=r"a1.py'? played A1, illegal"):
            env.step(np.array([0]))  # the agent plays A5; the engine answers A1 again, on its own stone
    finally:
        env.close()


RNG = np.random.default_rng(0)


def random_policy_player(obs, action_mask, **_):
    """A stand-in policy for play_match: a uniformly random offered move."""
    return np.array([RNG.choice(np.flatnonzero(m)) for m in action_mask])


def first_offered_move(obs, action_mask, **_):
    """A deterministic stand-in policy: the first move offered."""
    return np.array([np.flatnonzero(m)[0] for m in action_mask])


@pytest.mark.skipif(not HAVE_GNUGO, reason="GNU Go not installed (apt-get install gnugo)")
def test_a_random_opening_makes_deterministic_players_play_different_games():
    """Against GNU Go, a deterministic policy replays the same few games; with random_opening=3 the first three moves
    of each game (both sides', GNU Go's told to it) are random, so 8 games are 8 games, and the rest is played by
    the players themselves: GNU Go's replies stay legal under our rules to the end (its board in step with ours)."""
    from agents.go import matches

    plain = matches.play_match(first_offered_move, 5, 7.5, "gnugo", games=8, seed=0, num_envs=2)
    opened = matches.play_match(first_offered_move, 5, 7.5, "gnugo", games=8, seed=0, num_envs=2, random_opening=3)
    assert matches.summary(opened)["distinct"] == 8 > matches.summary(plain)["distinct"]
    for record in opened:
        state = game.new_games(1, 5)
        for colour, move in record.moves:
            assert int(state.turn) == colour and state.legal[0, move]
            state = game.step(state, torch.tensor([move]))
        assert all(move < 25 for _, move in record.moves[:3])  # the opening places stones: no passes
        assert float(game.score(state, 7.5)) == record.margin
    first = {tuple(move for _, move in r.moves[:3]) for r in opened}
    assert len(first) == 8  # 25*24*23 openings: eight distinct ones
