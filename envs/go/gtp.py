"""GTP v2 (Go Text Protocol, Farnebäck 2002): an engine that plays our rules (gtp_client.py drives other engines).

The engine answers GTP v2's required and tournament commands, the regression ones (loadsgf, reg_genmove), the ones
GUIs and servers send (undo, showboard, printsgf, kgs-genmove_cleanup) and GNU Go's list_stones and is_legal. A game
ends when the controller says so: moves are taken after two passes and past the training env's 2*N*N cap. Every
command line gets one answer, `= ...` or a one-line `? ...`, whatever it holds.

Coordinates: GTP vertices name columns A..T skipping I and rows 1..N from the bottom, so action
row*N + col (row 0 at the top) is vertex f"{letter(col)}{N - row}"; "pass" is action N*N.
"""

from __future__ import annotations

import inspect
import io
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, TextIO

import torch

from envs.go import game, render, sgf

COLUMNS = "ABCDEFGHJKLMNOPQRST"  # no I
SGF_LIMIT = 10_000_000  # bytes: loadsgf reads no larger file (nor a device like /dev/zero)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than HT

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


def _whole(text: str, what: str) -> int:
    """A GTP int argument (digits only) or a GtpError naming `what`."""
    if not (text.isascii() and text.isdigit()):
        raise GtpError(f"syntax error: {what} must be a whole number >= 0, got {text!r}")
    return int(text)


def _komi(value: str | float, context: str) -> float:
    """A komi (from the komi command or an SGF file's KM) or a GtpError starting with `context`: a number of points
    from -361 to 361, the most a 19x19 board can score."""
    try:
        komi = float(value)
    except ValueError:
        komi = math.nan
    if not abs(komi) <= 19 * 19:  # nan fails this too
        raise GtpError(f"{context}: komi must be a number of points from -361 to 361, got {value!r}")
    return komi


def one_line(text: str, limit: int = 200) -> str:
    """A message as one line of at most `limit` characters: GTP answers a bad command in one line, however long the
    command was."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def max_fixed_handicap(size: int) -> int:
    """The most stones fixed_handicap places: 9 on odd boards from 9x9 up, 4 on the others from 7x7 up, none below."""
    return 9 if size % 2 and size >= 9 else 4 if size >= 7 else 0


def fixed_handicap(size: int, stones: int) -> list[int]:
    """GTP v2's fixed handicap placement (section 4.1.1), as GNU Go places it: on the 4-4 points (3-3 below 12x12),
    the corners first (D4 Q16 D16 Q4 on 19x19), then the sides (D10 Q10, then K4 K16), and the centre (K10) for an
    odd count from 5 up."""
    near = 3 if size >= 12 else 2  # lines counted from 0 at the edge
    far, mid = size - 1 - near, size // 2
    corners = [(near, near), (far, far), (near, far), (far, near)]  # (column, row from the bottom)
    sides = [(near, mid), (far, mid), (mid, near), (mid, far)]
    placed = (corners + sides)[: stones - stones % 2 if stones >= 5 else stones]
    placed += [(mid, mid)] if stones >= 5 and stones % 2 else []
    return [(size - 1 - row) * size + col for col, row in placed]


def dead_stones(state: game.GoState, playouts: int = 128, seed: int = 0) -> torch.Tensor:
    """(A,) bool: the stones of the position (batch 1) judged dead, by Monte-Carlo ownership (Bouzy and Helmstetter
    2003, as Fuego and Pachi judge them): `playouts` random games from the position, half with each colour to move,
    played by random_policy (which never fills its own one-point eyes, so a group with two eyes lives) and each
    owned point counted by Tromp-Taylor area at the end; a stone is dead when the opponent owns its point in more
    than half of them. A heuristic: a seki usually ends with a side filling a shared liberty, so seki stones may be
    judged dead."""
    generator = torch.Generator().manual_seed(seed)
    games = game.reopened(state).index(torch.zeros(playouts, dtype=torch.int64))
    first_half = torch.arange(playouts) < playouts // 2
    games = game.with_turn(games, game.WHITE).where(first_half, game.with_turn(games, game.BLACK))
    while not games.done.all():
        games = game.step(games, game.random_policy(games, generator))
    board = state.board[0]
    taken = (game.ownership(games.board, state.size) == -board).float().mean(0) > 0.5  # (A,)
    return (board != game.EMPTY) & taken


def result_text(score: float) -> str:
    """Black's margin -> "B+3.5", "W+0.5" or "0" (GTP final_score and SGF RE)."""
    return "0" if score == 0 else f"{'B' if score > 0 else 'W'}+{abs(score):g}"


class Engine:
    """The state of one GTP game and the command handlers; `policy` chooses genmove's moves.

    Each cmd_<name> method answers the GTP command <name> (cmd_kgs_<name>: kgs-<name>): it takes the argument
    strings, returns the answer text and raises GtpError for a `? message` answer. Scoring is Tromp-Taylor area, every
    stone on the board counted alive; final_status_list gives the Monte-Carlo judgement of `dead_stones` for
    controllers that score by agreement. Time settings are kept, not used: the engine keeps no clock."""

    def __init__(self, policy: Policy, size: int = 9, komi: float | None = None, name: str = "rl"):
        self.policy, self.name = policy, name
        self.komi_set = komi
        self.quitting = False
        self.time_settings = (0, 0, 0)  # main time, byo-yomi time (s), byo-yomi stones; 0 byo-yomi time: no limit
        self.time_left: dict[int, tuple[int, int]] = {}  # colour -> (seconds, stones) from time_left
        self.new_game(size)

    def new_game(self, size: int, setup: list[tuple[int, int]] = (), to_play: int = game.BLACK, handicap: int = 0):
        """An empty board, or the set-up stones (colour, point) with `to_play` to move (handicap: White)."""
        if not 5 <= size <= 19:
            raise GtpError(f"unacceptable size {size}: 5..19")
        self.size = size
        self.komi = game.default_komi(size) if self.komi_set is None else self.komi_set
        board = torch.zeros(1, size * size, dtype=torch.int8)
        for who, point in setup:
            board[0, point] = who
        self.states = [game.from_boards(board, to_play)]  # one per move played, for undo
        self.moves: list[tuple[int, int]] = []  # (colour, action)
        self.setup, self.handicap = list(setup), handicap

    @property
    def state(self) -> game.GoState:
        return self.states[-1]

    def position(self, who: int) -> game.GoState:
        """The current position with `who` to move (GTP lets either colour move), reopened if two passes or the
        move cap had ended it: under GTP the controller ends a game."""
        state = game.reopened(self.state) if self.state.done.item() else self.state
        return state if int(state.turn) == who else game.with_turn(state, who)

    def play(self, who: int, move: int) -> None:
        state = self.position(who)
        if not bool(state.legal[0, move]):
            raise GtpError("illegal move")
        self.states.append(game.step(state, torch.tensor([move])))
        self.moves.append((who, move))

    def choose(self, who: int, cleanup: bool = False) -> int:
        """The policy's move for `who`; with `cleanup` (KGS's clean-up phase) it may not pass while the opponent has
        stones judged dead on the board, so that they are captured."""
        state = self.position(who)
        move = int(self.policy(state)[0])
        A = self.size * self.size
        if cleanup and move == A and bool((dead_stones(state) & (state.board[0] == -who)).any()):
            no_pass = torch.cat([state.legal[:, :A], torch.zeros(1, 1, dtype=torch.bool)], 1)
            move = int(self.policy(replace(state, legal=no_pass))[0])
        return move

    def score(self) -> float:
        return float(game.score(self.state, self.komi)[0])

    def commands(self) -> dict[str, Callable[..., str]]:
        """GTP name -> handler."""
        return {
            ("kgs-" + n[8:] if n.startswith("cmd_kgs_") else n[4:]): getattr(self, n)
            for n in dir(self)
            if n.startswith("cmd_")
        }

    # Administrative commands
    def cmd_protocol_version(self):
        return "2"

    def cmd_name(self):
        return self.name

    def cmd_version(self):
        return "0.1.0"

    def cmd_known_command(self, name):
        return "true" if name in self.commands() else "false"

    def cmd_list_commands(self):
        return "\n".join(sorted(self.commands()))

    def cmd_quit(self):
        self.quitting = True
        return ""

    # Setup commands
    def cmd_boardsize(self, size):
        self.new_game(_whole(size, "boardsize"))
        return ""

    def cmd_clear_board(self):
        self.new_game(self.size)
        return ""

    def cmd_komi(self, value):
        self.komi_set = self.komi = _komi(value, "syntax error")
        return ""

    def _handicap_count(self, text: str, most: int) -> int:
        stones = _whole(text, "the number of handicap stones")
        if self.moves or self.setup:
            raise GtpError("board not empty: handicap stones go on a new game (clear_board first)")
        if not 2 <= stones <= most:
            allowed = f"2..{most}" if most >= 2 else "none"
            raise GtpError(f"invalid number of stones {stones}: {allowed} on {self.size}x{self.size}")
        return stones

    def _place_handicap(self, points: list[int]) -> str:
        self.new_game(self.size, [(game.BLACK, p) for p in points], game.WHITE, len(points))
        return " ".join(vertex(p, self.size) for p in points)

    def cmd_fixed_handicap(self, count):
        return self._place_handicap(
            fixed_handicap(self.size, self._handicap_count(count, max_fixed_handicap(self.size)))
        )

    def cmd_place_free_handicap(self, count):
        """The fixed placement as far as it goes, then the policy's choice of Black stones; like GTP v2 allows
        (section 4.1.2), fewer than asked if the policy passes."""
        stones = self._handicap_count(count, self.size * self.size - 1)
        points = fixed_handicap(self.size, min(stones, max_fixed_handicap(self.size)))
        try:
            while len(points) < stones:
                self.new_game(self.size, [(game.BLACK, p) for p in points])  # Black to move: the policy places
                move = int(self.policy(self.state)[0])
                if move == self.size * self.size or not bool(self.state.legal[0, move]):
                    break
                points.append(move)
        except Exception:
            self.new_game(self.size)
            raise
        return self._place_handicap(points)

    def cmd_set_free_handicap(self, *vertices):
        self._handicap_count(str(len(vertices)), self.size * self.size - 1)
        points = [action(v, self.size) for v in vertices]
        if self.size * self.size in points or len(set(points)) < len(points):
            raise GtpError("bad vertex list: handicap stones go on distinct points, not pass")
        self._place_handicap(points)
        return ""

    # Core play commands
    def cmd_play(self, who, where):
        self.play(colour(who), action(where, self.size))
        return ""

    def _genmove(self, who: str, cleanup: bool = False) -> str:
        who = colour(who)
        move = self.choose(who, cleanup)
        self.play(who, move)
        return vertex(move, self.size)

    def cmd_genmove(self, who):
        return self._genmove(who)

    def cmd_kgs_genmove_cleanup(self, who):
        return self._genmove(who, cleanup=True)

    def cmd_reg_genmove(self, who):
        return vertex(self.choose(colour(who)), self.size)

    def cmd_undo(self):
        if not self.moves:
            raise GtpError("cannot undo")
        self.states.pop()
        self.moves.pop()
        return ""

    # Tournament commands
    def cmd_time_settings(self, main_time, byo_yomi_time, byo_yomi_stones):
        names = ("main_time", "byo_yomi_time", "byo_yomi_stones")
        self.time_settings = tuple(_whole(v, n) for v, n in zip((main_time, byo_yomi_time, byo_yomi_stones), names))
        return ""

    def cmd_time_left(self, who, seconds, stones):
        self.time_left[colour(who)] = (_whole(seconds, "time_left's time"), _whole(stones, "time_left's stones"))
        return ""

    def cmd_final_score(self):
        return result_text(self.score())

    def cmd_final_status_list(self, status):
        """One line per group of the stones in that status: dead by `dead_stones`, alive the others; none in seki
        (the heuristic does not tell seki apart)."""
        if status not in ("alive", "dead", "seki"):
            raise GtpError(f"syntax error: final_status_list takes alive, dead or seki, got {status!r}")
        if status == "seki":
            return ""
        board, labels = self.state.board[0], self.state.labels[0]
        dead = dead_stones(self.state)
        wanted = dead if status == "dead" else (board != game.EMPTY) & ~dead
        groups: dict[int, list[str]] = {}
        for point in torch.nonzero(wanted).view(-1).tolist():
            groups.setdefault(int(labels[point]), []).append(vertex(point, self.size))
        return "\n".join(" ".join(group) for group in groups.values())

    # Regression and debugging commands
    def cmd_showboard(self):
        return "\n" + render.board_text(self.state.board[0], self.size)

    def cmd_list_stones(self, who):
        who = colour(who)
        points = torch.nonzero(self.state.board[0] == who).view(-1).tolist()
        return " ".join(vertex(p, self.size) for p in points)

    def cmd_is_legal(self, who, where):
        who, move = colour(who), action(where, self.size)
        return "1" if bool(self.position(who).legal[0, move]) else "0"

    def cmd_printsgf(self):
        result = result_text(self.score()) if self.state.done.item() else None
        return sgf.write(self.size, self.komi, self.moves, result, setup=self.setup, handicap=self.handicap)

    def cmd_loadsgf(self, path, move_number=None):
        """The position before move `move_number` (1: the first move; none or 0, as GNU Go: after the last) of the
        file's main line, with its size, komi and set-up stones; the engine is unchanged if the file cannot be used."""
        number = 0 if move_number is None else _whole(move_number, "loadsgf's move number")
        upto = number - 1 if number else None
        file = Path(path)
        if not file.is_file() or file.stat().st_size > SGF_LIMIT:
            raise GtpError(f"cannot load file {path!r}: not a file of at most {SGF_LIMIT} bytes")
        try:
            record = sgf.read(file.read_bytes())
        except OSError as e:
            raise GtpError(f"cannot load file {path!r}: {e.strerror}") from None
        except sgf.SgfError as e:
            raise GtpError(f"cannot load file {path!r}: {e}") from None
        komi = _komi(record.komi, f"cannot load file {path!r}: KM")
        saved = dict(vars(self))
        try:
            self.komi_set = komi
            self.new_game(record.size, record.setup, record.to_play, record.handicap)
            for number, (who, move) in enumerate(record.moves[:upto], 1):
                try:
                    self.play(who, move)
                except GtpError:
                    name = "B" if who == game.BLACK else "W"
                    raise GtpError(
                        f"cannot load file {path!r}: move {number} ({name} {vertex(move, self.size)}) is "
                        "illegal under our rules (positional superko, no suicide)"
                    ) from None
        except GtpError:
            vars(self).update(saved)
            raise
        return "black" if int(self.state.turn) == game.BLACK else "white"

    def handle(self, line: str) -> str | None:
        """One command line -> the full response ("=id text\\n\\n" or "?id message\\n\\n"); None for
        blank lines and comments. Never raises on bad input."""
        line = _CONTROL.sub("", line).split("#", 1)[0].replace("\t", " ")  # GTP v2 2.2's preprocessing
        words = line.split()
        if not words:
            return None
        ident = words.pop(0) if words[0].isascii() and words[0].isdigit() else ""
        if not words:
            return f"?{ident} missing command\n\n"
        name, args = words[0].lower(), words[1:]
        handler = self.commands().get(name)
        try:
            if handler is None:
                raise GtpError(f"unknown command {name!r}")
            try:
                inspect.signature(handler).bind(*args)
            except TypeError:
                raise GtpError(f"wrong number of arguments for {name}") from None
            text = handler(*args).rstrip()
        except ValueError as e:  # GtpError, and a ValueError from the rules
            return f"?{ident} {one_line(e)}\n\n"
        except Exception as e:  # a bug must not kill the session a GUI holds open
            return f"?{ident} {one_line(f'internal error: {type(e).__name__}: {e}')}\n\n"
        return f"={ident} {text}\n\n" if text else f"={ident}\n\n"


def serve(engine: Engine, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Answer commands from stdin until `quit` or end of input."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    for stream in (stdin, stdout):
        if isinstance(stream, io.TextIOWrapper):  # a byte that is not UTF-8 gets a `?` answer, not a traceback
            stream.reconfigure(errors="replace")
    for line in stdin:
        response = engine.handle(line)
        if response is not None:
            stdout.write(response)
            stdout.flush()
            if engine.quitting:
                return
