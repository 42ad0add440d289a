"""Boards people can read: Unicode text for terminals and GTP `showboard`, RGB frames for video."""

from __future__ import annotations

import numpy as np
import torch

COLUMNS = "ABCDEFGHJKLMNOPQRST"  # GTP columns, no I
STONES = {1: "●", -1: "○", 0: "·"}  # black, white, empty


def board_text(board: torch.Tensor | np.ndarray, size: int, last: int | None = None) -> str:
    """A board (A,) of +1/-1/0 as text with GTP coordinates; the last move (an action) in brackets."""
    cells = np.asarray(board).reshape(size, size)
    letters = "   " + " ".join(COLUMNS[:size])
    lines = [letters]
    for row in range(size):
        gaps = [" "] * (size + 1)  # gaps[c] precedes column c
        if last is not None and last < size * size and last // size == row:
            gaps[last % size], gaps[last % size + 1] = "[", "]"
        marks = "".join(gap + STONES[int(v)] for gap, v in zip(gaps, cells[row]))
        lines.append(f"{size - row:>2}{marks}{gaps[size]}{size - row}")
    return "\n".join(lines + [letters])


def board_rgb(board: torch.Tensor | np.ndarray, size: int, cell: int = 24) -> np.ndarray:
    """A board (A,) as an RGB image (H, W, 3) uint8: wood, grid lines, black and white stones."""
    cells = np.asarray(board).reshape(size, size)
    side = cell * (size + 1)
    image = np.empty((side, side, 3), dtype=np.uint8)
    image[:] = (220, 179, 92)  # wood
    lo, hi = cell, cell * size
    for i in range(size):
        at = cell * (i + 1)
        image[at, lo : hi + 1] = 0
        image[lo : hi + 1, at] = 0
    yy, xx = np.mgrid[0:side, 0:side]
    radius = 0.45 * cell
    for (row, col), value in np.ndenumerate(cells):
        if value == 0:
            continue
        disc = (yy - cell * (row + 1)) ** 2 + (xx - cell * (col + 1)) ** 2 <= radius * radius
        image[disc] = (20, 20, 20) if value == 1 else (240, 240, 240)
    return image
