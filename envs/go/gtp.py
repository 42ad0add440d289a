"""GTP v2 (Go Text Protocol, Farnebäck 2002): an engine that plays our rules, and a client for
other engines (GNU Go) used by the opponent, the referee script and the cross-check test.

Coordinates: GTP vertices name columns A..T skipping I and rows 1..N from the bottom, so action
row*N + col (row 0 at the top) is vertex f"{letter(col)}{N - row}"; "pass" is action N*N.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, TextIO

import torch

from envs.go import game, render, sgf

COLUMNS = "ABCDEFGHJKLMNOPQRST"  # no I
GNUGO = "/usr/games/gnugo"

Policy = Callable[[game.GoState], torch.Tensor]  # state (batch 1) -> action (1,)


class GtpError(ValueError):
    """A GTP command that cannot be carried out; the engine answers `? message`."""


def vertex(action: int, size: int) -> str:
    """Action -> GTP vertex: 0 -> "A9" on 9x9, N*N -> "pass"."""
    if action == size * size:
        return "pass"
    row, col = divmod(action, size)
    return f"{COLUMNS[col]}{size - row}"


def action(text: str, size: int) -> int:
    """GTP vertex (any case) -> action; raises GtpError naming the problem."""
    text = text.strip().upper()
    if text == "PASS":
        return size * size
    letter, digits = text[:1], text[1:]
    if letter not in COLUMNS[:size] or not digits.isdigit() or not 1 <= int(digits) <= size:
        raise GtpError(
            f"invalid coordinate {text!r} on {size}x{size}: "
            f"columns A..{COLUMNS[size - 1]} (no I), rows 1..{size}, or pass"
        )
    return (size - int(digits)) * size + COLUMNS.index(letter)


def colour(text: str) -> int:
    text = text.strip().lower()
    if text in ("b", "black"):
        return game.BLACK
    if text in ("w", "white"):
        return game.WHITE
    raise GtpError(f"invalid color {text!r}: b, black, w or white")


def result_text(score: float) -> str:
    """Black's margin -> "B+3.5", "W+0.5" or "0" (GTP final_score and SGF RE)."""
    return "0" if score == 0 else f"{'B' if score > 0 else 'W'}+{abs(score):g}"


class Engine:
    """The state of one GTP game and the command handlers; `policy` chooses genmove's moves."""

    def __init__(self, policy: Policy, size: int = 9, komi: float | None = None, name: str = "rl"):
        self.policy, self.name = policy, name
        self.komi_set = komi
        self.quitting = False
        self.new_game(size)

    def new_game(self, size: int) -> None:
        if not 5 <= size <= 19:
            raise GtpError(f"unacceptable size {size}: 5..19")
        self.size = size
        self.komi = game.default_komi(size) if self.komi_set is None else self.komi_set
        self.states = [game.new_games(1, size)]  # one per move played, for undo
        self.moves: list[tuple[int, int]] = []  # (colour, action)

    @property
    def state(self) -> game.GoState:
        return self.states[-1]

    def play(self, who: int, move: int) -> None:
        state = self.state
        if state.done.item():
            raise GtpError("the game is over (two passes or the move cap): clear_board starts a new one")
        if int(state.turn) != who:  # GTP lets either colour move: hand the turn over first
            state = game.with_turn(state, who)
        if not bool(state.legal[0, move]):
            raise GtpError("illegal move")
        self.states.append(game.step(state, torch.tensor([move])))
        self.moves.append((who, move))

    def score(self) -> float:
        return float(game.score(self.state, self.komi)[0])

    # Command handlers: each takes the argument strings and returns the response text.
    def cmd_protocol_version(self):
        return "2"

    def cmd_name(self):
        return self.name

    def cmd_version(self):
        return "0.1.0"

    def cmd_known_command(self, name):
        return "true" if hasattr(self, f"cmd_{name}") else "false"

    def cmd_list_commands(self):
        return "\n".join(sorted(n[4:] for n in dir(self) if n.startswith("cmd_")))

    def cmd_quit(self):
        self.quitting = True
        return ""

    def cmd_boardsize(self, size):
        if not size.isdigit():
            raise GtpError(f"boardsize needs an integer, got {size!r}")
        self.new_game(int(size))
        return ""

    def cmd_clear_board(self):
        self.new_game(self.size)
        return ""

    def cmd_komi(self, value):
        try:
            self.komi_set = self.komi = float(value)
        except ValueError:
            raise GtpError(f"komi needs a number, got {value!r}") from None
        return ""

    def cmd_play(self, who, where):
        self.play(colour(who), action(where, self.size))
        return ""

    def cmd_genmove(self, who):
        who = colour(who)
        if self.state.done.item():
            return "pass"
        state = self.state if int(self.state.turn) == who else game.with_turn(self.state, who)
        move = int(self.policy(state)[0])
        self.play(who, move)
        return vertex(move, self.size)

    def cmd_undo(self):
        if not self.moves:
            raise GtpError("cannot undo")
        self.states.pop()
        self.moves.pop()
        return ""

    def cmd_showboard(self):
        return "\n" + render.board_text(self.state.board[0], self.size)

    def cmd_final_score(self):
        return result_text(self.score())

    def cmd_list_stones(self, who):
        who = colour(who)
        points = torch.nonzero(self.state.board[0] == who).view(-1).tolist()
        return " ".join(vertex(p, self.size) for p in points)

    def cmd_is_legal(self, who, where):
        who, move = colour(who), action(where, self.size)
        state = self.state if int(self.state.turn) == who else game.with_turn(self.state, who)
        return "1" if bool(state.legal[0, move]) else "0"

    def cmd_printsgf(self):
        return sgf.write(
            self.size, self.komi, self.moves, result_text(self.score()) if self.state.done.item() else None
        )

    def cmd_loadsgf(self, path, move_number=None):
        try:
            record = sgf.read(Path(path).read_text())
        except OSError as e:
            raise GtpError(f"cannot read {path!r}: {e.strerror}") from None
        except sgf.SgfError as e:
            raise GtpError(str(e)) from None
        upto = len(record.moves) if move_number is None else int(move_number) - 1
        self.komi_set = record.komi
        self.new_game(record.size)
        if record.setup:
            board = torch.zeros(1, record.size**2, dtype=torch.int8)
            for who, point in record.setup:
                board[0, point] = who
            self.states = [game.from_boards(board)]
        for who, move in record.moves[:upto]:
            self.play(who, move)
        return "black" if int(self.state.turn) == game.BLACK else "white"

    def handle(self, line: str) -> str | None:
        """One command line -> the full response ("=id text\\n\\n" or "?id message\\n\\n"); None for
        blank lines and comments. Never raises on bad input."""
        line = line.split("#", 1)[0].replace("\t", " ").strip()
        if not line:
            return None
        words = line.split()
        ident = words.pop(0) if words[0].isdigit() else ""
        if not words:
            return f"?{ident} missing command\n\n"
        name, args = words[0].lower(), words[1:]
        handler = getattr(self, f"cmd_{name}", None)
        try:
            if handler is None:
                raise GtpError(f"unknown command {name!r}")
            try:
                text = handler(*args)
            except TypeError:
                raise GtpError(f"wrong number of arguments for {name}") from None
        except (GtpError, ValueError) as e:
            return f"?{ident} {e}\n\n"
        except Exception as e:  # a bug must not kill the session a GUI holds open
            return f"?{ident} internal error: {type(e).__name__}: {e}\n\n"
        return f"={ident} {text}\n\n" if text else f"={ident}\n\n"


def serve(engine: Engine, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Answer commands from stdin until `quit` or end of input."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    for line in stdin:
        response = engine.handle(line)
        if response is not None:
            stdout.write(response)
            stdout.flush()
            if engine.quitting:
                return


class GtpClient:
    """Drives an external GTP engine (GNU Go) over pipes: `send(cmd)` returns the answer text or
    raises GtpError with the engine's `?` message."""

    def __init__(self, command: list[str] | str):
        argv = shlex.split(command) if isinstance(command, str) else command
        # its own session: a Ctrl-C in the terminal (SIGINT to the foreground group) must reach only us, so that a
        # training run stopped during an evaluation against GNU Go finishes its games and checkpoints instead of
        # losing the engine
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True
        )

    def send(self, command: str) -> str:
        return self.send_many([command])[0]

    def send_many(self, commands: list[str]) -> list[str]:
        """Pipeline several commands (one write, then read every answer)."""
        self.process.stdin.write("".join(c + "\n" for c in commands))
        self.process.stdin.flush()
        answers = []
        for _ in commands:
            lines = []
            while True:
                line = self.process.stdout.readline()
                if not line:
                    raise GtpError(f"engine exited during {commands!r}")
                if line == "\n" and lines:
                    break
                if line != "\n":
                    lines.append(line.rstrip("\n"))
            head, rest = lines[0], lines[1:]
            text = "\n".join([head[1:].strip(), *rest]).strip()
            if head.startswith("?"):
                raise GtpError(text)
            answers.append(text)
        return answers

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def gnugo(size: int, komi: float, level: int = 1, seed: int = 0) -> GtpClient:
    """GNU Go under our rules: area scoring, positional superko, no suicide (its default). With
    --capture-all-dead it removes dead stones by capturing them before it passes, as Tromp-Taylor scoring
    (which counts every stone on the board as alive) needs; without it GNU Go passes in won positions
    that Tromp-Taylor scores as lost."""
    client = GtpClient(
        [
            GNUGO,
            "--mode",
            "gtp",
            "--chinese-rules",
            "--positional-superko",
            "--capture-all-dead",
            "--level",
            str(level),
            "--seed",
            str(seed),
            "--komi",
            str(komi),
        ]
    )
    client.send_many([f"boardsize {size}", "clear_board", f"komi {komi}"])
    return client
