"""SGF FF[4] game records (https://www.red-bean.com/sgf/): write a game, read the main line back.

Points are two letters, column then row, both from "a" at the top-left (SGF's convention), so action
row*N + col is chr(97 + col) + chr(97 + row). A pass is written B[] and read from B[] or B[tt].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BLACK, WHITE = 1, -1


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
) -> str:
    """The game as an SGF FF[4] string: header (GM FF CA SZ KM RU [PB PW RE]) then one node a move."""
    header = f"(;GM[1]FF[4]CA[UTF-8]AP[rl:0.1.0]SZ[{size}]KM[{komi:g}]RU[{_escape(rules)}]"
    header += f"PB[{_escape(black)}]" if black else ""
    header += f"PW[{_escape(white)}]" if white else ""
    header += f"RE[{_escape(result)}]" if result else ""
    body = "".join(f";{'B' if who == BLACK else 'W'}[{point(move, size)}]" for who, move in moves)
    return header + body + ")\n"


_PROPERTY = re.compile(r"([A-Z]+)((?:\s*\[(?:[^\]\\]|\\.)*\])+)", re.S)
_VALUE = re.compile(r"\[((?:[^\]\\]|\\.)*)\]", re.S)
_SPACE = re.compile(r"\s+")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value, flags=re.S)


def _nodes(text: str) -> list[list[tuple[str, list[str]]]]:
    """The nodes of the main line as (name, values) lists: reading stops at the first ')', which
    closes the first variation at every branch."""
    i = text.find("(;")
    if i < 0:
        raise SgfError("not an SGF game: no '(;' found")
    nodes = []
    while i < len(text) and text[i] != ")":
        if text[i] != ";":
            i += 1
            continue
        i += 1
        props = []
        while (m := _PROPERTY.match(text, i)) or (m := _SPACE.match(text, i)):
            if m.re is _PROPERTY:
                props.append((m.group(1), [_unescape(v) for v in _VALUE.findall(m.group(2))]))
            i = m.end()
        nodes.append(props)
    return nodes


def _to_move(value: str, size: int, name: str) -> int:
    if value == "" or (value == "tt" and size <= 19):
        return size * size
    if len(value) != 2 or not all(0 <= ord(c) - 97 < size for c in value):
        raise SgfError(f"bad point {name}[{value}] on a {size}x{size} board")
    return (ord(value[1]) - 97) * size + ord(value[0]) - 97


def read(text: str) -> Record:
    """The main line of the first game in `text`; raises SgfError naming what it cannot use."""
    nodes = _nodes(text)
    if not nodes:
        raise SgfError("empty SGF game")
    root = dict(nodes[0])
    if root.get("GM", ["1"])[0] != "1":
        raise SgfError(f"GM[{root['GM'][0]}] is not Go (GM[1])")
    size_text = root.get("SZ", ["19"])[0]
    if not size_text.isdigit() or not 5 <= int(size_text) <= 19:
        raise SgfError(f"SZ[{size_text}]: board sizes 5..19 are supported")
    size = int(size_text)
    try:
        komi = float(root.get("KM", ["0"])[0] or 0)
    except ValueError:
        raise SgfError(f"KM[{root['KM'][0]}] is not a number") from None
    record = Record(size, komi, rules=root.get("RU", [""])[0], result=root.get("RE", [None])[0])
    for index, node in enumerate(nodes):
        for name, values in node:
            if name in ("B", "W"):
                record.moves.append((BLACK if name == "B" else WHITE, _to_move(values[0], size, name)))
            elif name in ("AB", "AW"):
                if index:
                    raise SgfError(f"{name} set-up stones after the first node are not supported")
                who = BLACK if name == "AB" else WHITE
                record.setup += [(who, _to_move(v, size, name)) for v in values]
    return record
