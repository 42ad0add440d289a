"""SGF FF[4] game records (https://www.red-bean.com/sgf/): written here, read with sgfmill.

Writing: points are two letters, column then row, both from "a" at the top-left (SGF's convention), so action
row*N + col is chr(97 + col) + chr(97 + row); a pass is B[].
Reading: sgfmill parses the file (its CA encoding, escapes, comments, variations); `read` takes what a Go engine
needs from it: size, komi, rules, result, handicap, the players' names, the set-up stones placed before the first
move, and the main line (the first variation at every branch). A pass is read from B[] or B[tt].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sgfmill import boards, sgf

BLACK, WHITE = 1, -1
_COLOURS = {"b": BLACK, "w": WHITE}


class SgfError(ValueError):
    """An SGF text this reader cannot use; the message names the problem."""


@dataclass
class Record:
    size: int
    komi: float
    moves: list[tuple[int, int]] = field(default_factory=list)  # (colour, action)
    rules: str = ""
    result: str | None = None
    setup: list[tuple[int, int]] = field(default_factory=list)  # (colour, point) from AB / AW
    handicap: int = 0  # HA
    to_play: int = BLACK  # who moves after the set-up: PL, else the first move's colour, else White after handicap
    black: str = ""  # PB, the players' names
    white: str = ""  # PW


def point(move: int, size: int) -> str:
    if move == size * size:
        return ""
    row, col = divmod(move, size)
    return chr(97 + col) + chr(97 + row)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("]", "\\]")


def write(
    size: int,
    komi: float,
    moves: list[tuple[int, int]],
    result: str | None = None,
    black: str = "",
    white: str = "",
    rules: str = "Tromp-Taylor",
    setup: list[tuple[int, int]] = (),
    handicap: int = 0,
) -> str:
    """The game as an SGF FF[4] string: header (GM FF CA SZ KM RU [HA PB PW RE AB AW]) then one node a move."""
    header = f"(;GM[1]FF[4]CA[UTF-8]AP[rl:0.1.0]SZ[{size}]KM[{komi:g}]RU[{_escape(rules)}]"
    header += f"HA[{handicap}]" if handicap else ""
    header += f"PB[{_escape(black)}]" if black else ""
    header += f"PW[{_escape(white)}]" if white else ""
    header += f"RE[{_escape(result)}]" if result else ""
    for name, colour in (("AB", BLACK), ("AW", WHITE)):
        stones = "".join(f"[{point(p, size)}]" for who, p in setup if who == colour)
        header += f"{name}{stones}" if stones else ""
    body = "".join(f";{'B' if who == BLACK else 'W'}[{point(move, size)}]" for who, move in moves)
    return header + body + ")\n"


def _action(move: tuple[int, int] | None, size: int) -> int:
    """sgfmill's (row, col), row 0 at the bottom, or None for a pass -> our action."""
    if move is None:
        return size * size
    row, col = move
    return (size - 1 - row) * size + col


def _root_property(root: sgf.Tree_node, name: str, default=None):
    """The root's property `name` as sgfmill interprets it (float, int, str...), or `default` where it is absent."""
    if not root.has_property(name):
        return default
    try:
        return root.get(name)
    except ValueError:
        raise SgfError(f"{name}[{root.get_raw(name).decode('latin-1')}] is malformed") from None


def read(data: str | bytes) -> Record:
    """The main line of the first game in `data`: bytes are decoded as its CA property says (ISO-8859-1 without one),
    a str is taken as it is. Raises SgfError naming what it cannot use."""
    try:
        game = sgf.Sgf_game.from_string(data) if isinstance(data, str) else sgf.Sgf_game.from_bytes(data)
        game.get_charset()  # a CA that names no codec fails here, not halfway through the game
    except ValueError as e:
        raise SgfError(f"not a readable SGF game: {e}") from None
    root = game.get_root()
    if root.has_property("GM") and root.get_raw("GM").strip() != b"1":
        raise SgfError(f"GM[{root.get_raw('GM').decode('latin-1')}] is not Go (GM[1])")
    size = game.get_size()
    if not 5 <= size <= 19:
        raise SgfError(f"SZ[{size}]: board sizes 5..19 are supported")
    record = Record(
        size,
        float(_root_property(root, "KM", 0.0)),
        rules=_root_property(root, "RU", ""),
        result=_root_property(root, "RE"),
        handicap=_root_property(root, "HA", 0),
        black=_root_property(root, "PB", ""),
        white=_root_property(root, "PW", ""),
    )
    board = boards.Board(size)  # the set-up position, checked by sgfmill: no group without a liberty
    for number, node in enumerate(game.get_main_sequence()):
        try:
            setup = node.get_setup_stones() if node.has_setup_stones() else None
            colour, move = node.get_move()
        except ValueError as e:
            raise SgfError(f"node {number}: a malformed move or set-up point{f' ({e})' if str(e) else ''}") from None
        if setup and record.moves:
            raise SgfError(f"node {number}: set-up stones (AB/AW/AE) after the first move are not supported")
        if setup and not board.apply_setup(*setup):
            raise SgfError(f"node {number}: the set-up stones leave a group without a liberty")
        if colour is not None:
            record.moves.append((_COLOURS[colour], _action(move, size)))
    stones = [(_COLOURS[colour], _action(move, size)) for colour, move in board.list_occupied_points()]
    record.setup = sorted(stones, key=lambda stone: (-stone[0], stone[1]))  # black stones first, then by point
    first = _root_property(root, "PL")
    if first is None:
        only_black = record.setup and all(who == BLACK for who, _ in record.setup)
        record.to_play = record.moves[0][0] if record.moves else WHITE if only_black else BLACK
    else:
        record.to_play = _COLOURS[first]
    return record
