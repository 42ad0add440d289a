"""A person against the engine in the terminal (`rl play go`): moves like D4, pass, undo, resign."""

from __future__ import annotations

import sys
from typing import TextIO

import torch

from envs.go import game, gtp, render

HELP = "moves like D4 (columns skip I), or: pass, undo, resign, quit"


def why_illegal(engine: gtp.Engine, move: int) -> str:
    """Why the person's move is refused, in words."""
    state = engine.state
    if state.board[0, move] != game.EMPTY:
        return "that point is occupied"
    if game.from_boards(state.board, state.turn).legal[0, move]:
        return "it would repeat an earlier position (ko / superko): play elsewhere first"
    return "suicide: the stone would have no liberty and captures nothing"


def play_terminal(engine: gtp.Engine, human: int, stdin: TextIO | None = None, stdout: TextIO | None = None) -> str:
    """Play one game; returns the result ("B+3.5", "W+R", ... or "" if the person quit)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    size = engine.size

    def say(text: str = "") -> None:
        stdout.write(text + "\n")
        stdout.flush()

    def show() -> None:
        last = engine.moves[-1][1] if engine.moves else None
        say(render.board_text(engine.state.board[0], size, last))

    say(
        f"Go {size}x{size}, komi {engine.komi:g}, Tromp-Taylor area scoring. You play "
        f"{'black (●)' if human == game.BLACK else 'white (○)'}; {HELP}."
    )
    while not engine.state.done.item():
        if int(engine.state.turn) != human:
            reply = gtp.vertex(int(engine.policy(engine.state)[0]), size)
            engine.cmd_play("b" if human == game.WHITE else "w", reply)
            say(f"engine plays {reply}")
            continue
        show()
        stdout.write("your move: ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            say("\nend of input: game abandoned")
            return ""
        text = line.strip().lower()
        if text in ("quit", "exit"):
            return ""
        if text == "resign":
            result = f"{'W' if human == game.BLACK else 'B'}+R"
            say(f"you resign: {result}")
            return result
        if text == "undo":
            if not any(who == human for who, _ in engine.moves):
                say("nothing to undo")
                continue
            while engine.moves[-1][0] != human:  # the engine's reply, then your move
                engine.cmd_undo()
            engine.cmd_undo()
            continue
        try:
            move = gtp.action(text, size)
        except gtp.GtpError as e:
            say(f"{e}; {HELP}")
            continue
        if not engine.state.legal[0, move]:
            say(f"illegal move {text.upper()}: {why_illegal(engine, move)}")
            continue
        engine.play(human, move)
    show()
    result = gtp.result_text(engine.score())
    say(f"game over after {len(engine.moves)} moves: {result} (Tromp-Taylor area, komi {engine.komi:g})")
    return result


def random_engine(size: int, komi: float | None, seed: int) -> gtp.Engine:
    """An engine that plays envs.go.env.random_policy, seeded."""
    from envs.go.env import random_policy

    generator = torch.Generator().manual_seed(seed)
    return gtp.Engine(lambda state: random_policy(state, generator), size, komi, name="rl-random")


def agent_engine(
    size: int,
    komi: float | None,
    act,
    history: int,
    name: str = "rl-agent",
    eye_fill: bool = True,
    pass_rule: str = "always",
    search=None,
) -> gtp.Engine:
    """An engine whose moves come from a trained agent: `act(obs (1, 2k+1, N, N), legal (1, N*N+1)) -> (1,)`,
    shown the observation and offered the moves GoEnv would (eye_fill and pass_rule as the agent trained, at the
    engine's komi), built from the engine's own record of the game. With `search` (agents/go/search.Search),
    search(state, boards (1, k, N*N), legal) chooses instead, reading ahead from the engine's position at its komi."""
    from envs.go.env import observation_planes, offered_moves

    engine = gtp.Engine(lambda state: None, size, komi, name=name)

    def policy(state: game.GoState) -> torch.Tensor:
        if engine.size != size:
            raise gtp.GtpError(f"this agent was trained on {size}x{size}, not {engine.size}x{engine.size}")
        boards = [s.board[0] for s in engine.states[::-1][:history]]  # newest first
        boards += [torch.zeros_like(boards[0])] * (history - len(boards))  # nothing before the first move
        offered = offered_moves(state, eye_fill, pass_rule, engine.komi)
        if search is not None:
            search.komi = engine.komi  # GTP's komi command may have changed it
            return search(state, torch.stack(boards).unsqueeze(0), offered).view(1)
        obs = observation_planes(torch.stack(boards).unsqueeze(0), state.turn, size)
        return torch.as_tensor(act(obs, offered.cpu().numpy())).view(1)

    engine.policy = policy
    return engine
