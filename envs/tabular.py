"""TabularMDP: finite MDPs the exact planners (agents/planning.py) solve.

Sources: gymnasium's toy-text models (`env.unwrapped.P[s][a]` lists (prob, next_state, reward,
terminated)), a user's `.npz` file (the `rl plan --mdp` contract: `P` (A, S, S) with rows summing
to 1, `R` (S, A) or (A, S, S), optional boolean `terminal` (S,)), and the textbook generators: a
grid world with teleporting cells (Sutton & Barto 2018, Example 3.5), the gambler's problem
(Example 4.3) and Jack's car rental (Example 4.2).

Terminal handling: entering a terminal state ends the episode, so nothing is bootstrapped from it
(in Taxi and CliffWalking bootstrapping through a terminating transition puts values off
by two orders of magnitude). `planning_tensors` zeroes the columns of terminal states in P and
their rows in P and R, so their value is 0. Where gymnasium ends an episode on some transitions
into a state but not on others (Taxi's four "passenger at destination" states are also reached
without a drop-off), the terminating transitions go to one absorbing end state appended as the
last state.
"""

from __future__ import annotations

import difflib
import zipfile
import zlib
from dataclasses import dataclass
from math import exp, factorial
from pathlib import Path

import numpy as np
import torch

TOY_TEXT = ("FrozenLake-v1", "FrozenLake8x8-v1", "Taxi-v4", "CliffWalking-v1")
TEXTBOOK = ("GridWorld", "Gambler", "JacksCarRental")
# (row, col) move of each action, for policy arrows: FrozenLake's order, and CliffWalking's
LEFT_DOWN_RIGHT_UP = ((0, -1), (1, 0), (0, 1), (-1, 0))
UP_RIGHT_DOWN_LEFT = ((-1, 0), (0, 1), (1, 0), (0, -1))


class MDPFileError(ValueError):
    """A `.npz` file that is not a valid MDP; the message is one line naming the problem."""


@dataclass(frozen=True)
class TabularMDP:
    P: torch.Tensor  # (A, S, S) float64, dense or sparse COO; P[a, s, s'] = Pr(s' | s, a), rows sum to 1
    R: torch.Tensor  # (S, A) float64: expected reward of taking a in s
    terminal: torch.Tensor  # (S,) bool: entering the state ends the episode (its value is 0)
    start: torch.Tensor  # (S,) float64: the start distribution
    name: str
    gamma: float  # the discount the source uses (the CLI's default)
    grid: tuple[int, int] | None = None  # (rows, cols) when state = row * cols + col
    moves: tuple[tuple[int, int], ...] | None = None  # (d_row, d_col) of each action, for arrows
    action_labels: tuple[str, ...] | None = None  # how tables and plots name the actions

    @property
    def num_states(self) -> int:
        return self.P.shape[1]

    @property
    def num_actions(self) -> int:
        return self.P.shape[0]

    def planning_tensors(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, R) for agents.planning: terminal columns and rows of P and rows of R zeroed (value 0,
        no bootstrap). A sparse P stays sparse: entries are dropped, never densified."""
        keep = ~self.terminal
        R = self.R * keep[:, None]
        if self.P.is_sparse:
            P = self.P.coalesce()
            a, s, s2 = P.indices()
            mask = keep[s] & keep[s2]
            P = torch.sparse_coo_tensor(
                P.indices()[:, mask], P.values()[mask], P.shape, check_invariants=False
            ).coalesce()
        else:
            P = self.P * keep[None, :, None] * keep[None, None, :]
        return P.to(device=device, dtype=dtype), R.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------- gymnasium
def from_gymnasium(env_id: str, **kwargs) -> TabularMDP:
    """The exact model of a toy-text env: FrozenLake-v1 (kwargs: desc=[...] or map_name, is_slippery),
    FrozenLake8x8-v1, Taxi-v4, CliffWalking-v1. gamma 0.99."""
    import gymnasium as gym

    env = gym.make(env_id, **kwargs).unwrapped
    model, S = env.P, len(env.P)
    A = len(model[0])
    entered = np.zeros((S, 2), dtype=bool)  # entered[s'] = (by a terminating transition, by a continuing one)
    for s in range(S):
        for a in range(A):
            for _, s2, _, done in model[s][a]:
                entered[s2, 0 if done else 1] = True
    mixed = entered[:, 0] & entered[:, 1]
    end = S if mixed.any() else None  # one absorbing end state for Taxi's terminating drop-offs
    n = S + (end is not None)
    P, R = np.zeros((A, n, n)), np.zeros((n, A))
    for s in range(S):
        for a in range(A):
            for p, s2, r, done in model[s][a]:
                P[a, s, end if done and end is not None else s2] += p
                R[s, a] += p * r
    terminal = np.zeros(n, dtype=bool)
    terminal[:S] = entered[:, 0] & ~entered[:, 1]
    if end is not None:
        P[:, end, end], terminal[end] = 1.0, True
    start = np.zeros(n)
    start[:S] = env.initial_state_distrib
    grid, moves = None, None
    if env_id.startswith("FrozenLake"):
        grid, moves = tuple(np.asarray(env.desc).shape), LEFT_DOWN_RIGHT_UP
    elif env_id.startswith("CliffWalking"):
        grid, moves = tuple(env.shape), UP_RIGHT_DOWN_LEFT
    return TabularMDP(
        torch.from_numpy(P),
        torch.from_numpy(R),
        torch.from_numpy(terminal),
        torch.from_numpy(start),
        env_id,
        0.99,
        grid,
        moves,
    )


# ---------------------------------------------------------------------------------------------- .npz files
def save_npz(mdp: TabularMDP, path: str | Path) -> None:
    """Write the `rl plan --mdp` contract: P (A, S, S), R (S, A), terminal (S,)."""
    P = mdp.P.to_dense() if mdp.P.is_sparse else mdp.P
    np.savez(path, P=P.numpy(), R=mdp.R.numpy(), terminal=mdp.terminal.numpy())


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, read without unpickling; MDPFileError if it is not one."""
    cannot = f"cannot read {str(path)!r}"
    if not path.exists():
        raise MDPFileError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise MDPFileError(f"{cannot}: it is a folder, not an .npz file")
    try:
        with open(path, "rb") as f:
            npy = f.read(6) == b"\x93NUMPY"
    except OSError as e:  # e.g. no permission
        raise MDPFileError(f"{cannot}: {e.strerror}") from None
    if not zipfile.is_zipfile(path):  # an .npz is a zip of .npy files; a zip's directory is at its very end
        what = "it is a single .npy array" if npy else "it is not a complete zip archive (truncated, or another format)"
        raise MDPFileError(f"{cannot} as an .npz: {what}; write one with np.savez(path, P=P, R=R)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # damaged, or would need pickle
        raise MDPFileError(f"{cannot} as an .npz of numeric arrays: {str(e).splitlines()[0]}") from None
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a zip member that is not an .npy file comes back as bytes
            raise MDPFileError(f"{cannot} as an .npz: its member {key!r} is not an .npy array")
    return arrays


def load_npz(path: str | Path, tolerance: float = 1e-6) -> TabularMDP:
    """Read and check a user's MDP file; any problem raises MDPFileError with one line naming it.
    The start distribution is uniform over the non-terminal states; gamma defaults to 0.99."""
    path = Path(path)
    arrays = _read_npz(path)
    where = f"{path.name}:"
    for key in arrays:
        if key not in ("P", "R", "terminal"):
            near = difflib.get_close_matches(key, ["P", "R", "terminal"], n=1, cutoff=0.5)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise MDPFileError(f"{where} unexpected array {key!r}{hint}: expected P, R and optional terminal")
    for key in ("P", "R"):
        if key not in arrays:
            raise MDPFileError(
                f"{where} missing array {key!r}: expected P (A, S, S), R (S, A) or (A, S, S), optional terminal (S,)"
            )
        if not np.issubdtype(arrays[key].dtype, np.number) or np.issubdtype(arrays[key].dtype, np.complexfloating):
            raise MDPFileError(f"{where} {key} has dtype {arrays[key].dtype}, expected real numbers")
    P, R = arrays["P"].astype(np.float64), arrays["R"].astype(np.float64)
    if P.ndim != 3 or P.shape[1] != P.shape[2] or 0 in P.shape:
        raise MDPFileError(f"{where} P has shape {P.shape}, expected (A, S, S) with A, S >= 1")
    A, S = P.shape[:2]
    if R.shape not in ((S, A), (A, S, S)):
        raise MDPFileError(f"{where} R has shape {R.shape}, expected (S, A) = {(S, A)} or (A, S, S) = {(A, S, S)}")
    for key, x in (("P", P), ("R", R)):
        if not np.isfinite(x).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
            raise MDPFileError(f"{where} {key}{list(bad)} is {x[bad]}: entries must be finite numbers")
    if (P < 0).any():
        bad = tuple(int(i) for i in np.argwhere(P < 0)[0])
        raise MDPFileError(f"{where} P{list(bad)} = {P[bad]:g} is a negative probability")
    sums = P.sum(-1)
    if (np.abs(sums - 1) > tolerance).any():
        a, s = (int(i) for i in np.argwhere(np.abs(sums - 1) > tolerance)[0])
        raise MDPFileError(f"{where} row P[{a}, {s}, :] sums to {sums[a, s]:.6g}, not 1")
    terminal = np.zeros(S, dtype=bool)
    if "terminal" in arrays:
        t = arrays["terminal"]
        if t.shape != (S,):
            raise MDPFileError(f"{where} terminal has shape {t.shape}, expected (S,) = ({S},)")
        if t.dtype != bool and not np.isin(t, (0, 1)).all():
            raise MDPFileError(f"{where} terminal must be boolean (or 0/1), got dtype {t.dtype}")
        terminal = t.astype(bool)
    if R.ndim == 3:  # r(s, a) = sum_s' P(s'|s, a) R[a, s, s']
        R = np.einsum("ast,ast->sa", P, R)
    start = (~terminal).astype(np.float64)
    start = start / start.sum() if start.sum() else np.full(S, 1.0 / S)
    return TabularMDP(
        torch.from_numpy(P), torch.from_numpy(R), torch.from_numpy(terminal), torch.from_numpy(start), path.name, 0.99
    )


# ---------------------------------------------------------------------------------------------- textbook MDPs
def grid_world(
    rows: int = 5,
    cols: int = 5,
    teleports: dict | None = None,
    rewards: dict | None = None,
    terminals: tuple = (),
    bump_reward: float = -1.0,
    slip: float = 0.0,
    sparse: bool = False,
    gamma: float = 0.9,
) -> TabularMDP:
    """A grid world: actions left, down, right, up; a move off the grid stays put with `bump_reward`.

    `teleports` {(r, c): ((r2, c2), reward)}: every action in (r, c) jumps to (r2, c2) with `reward`
    (Sutton & Barto Example 3.5's A -> A' (+10) and B -> B' (+5) are the default); `rewards`
    {(r, c): reward} paid on entering a cell; `terminals`: cells that end the episode; `slip`: the
    probability that the move goes in a uniformly random direction instead. Built from index arrays,
    O(S * A) memory: `sparse=True` gives a COO P with at most 4 nonzeros per row."""
    teleports = {(0, 1): ((4, 1), 10.0), (0, 3): ((2, 3), 5.0)} if teleports is None else teleports
    rewards = rewards or {}
    S, A = rows * cols, 4
    r, c = np.divmod(np.arange(S), cols)
    enter = np.zeros(S)
    for (i, j), value in rewards.items():
        enter[i * cols + j] = value
    src, act, dst, prob, rew = [], [], [], [], []
    for a, (dr, dc) in enumerate(LEFT_DOWN_RIGHT_UP):
        for d, (er, ec) in enumerate(LEFT_DOWN_RIGHT_UP):  # the direction actually taken
            p = (1 - slip) * (d == a) + slip / 4
            if p == 0:
                continue
            nr, nc = r + er, c + ec
            inside = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
            s2 = np.where(inside, nr * cols + nc, np.arange(S))
            src.append(np.arange(S)), act.append(np.full(S, a)), dst.append(s2), prob.append(np.full(S, p))
            rew.append(np.where(inside, enter[s2], bump_reward) * p)
    src, act, dst, prob, rew = map(np.concatenate, (src, act, dst, prob, rew))
    R = np.zeros((S, A))
    np.add.at(R, (src, act), rew)
    for (i, j), ((i2, j2), value) in teleports.items():
        s = i * cols + j
        keep = src != s
        src, act, dst, prob = (
            np.concatenate([x[keep], y])
            for x, y in (
                (src, np.full(A, s)),
                (act, np.arange(A)),
                (dst, np.full(A, i2 * cols + j2)),
                (prob, np.ones(A)),
            )
        )
        R[s] = value
    P = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([act, src, dst])), torch.from_numpy(prob), (A, S, S), check_invariants=True
    ).coalesce()
    terminal = np.zeros(S, dtype=bool)
    for i, j in terminals:
        terminal[i * cols + j] = True
    start = (~terminal) / (~terminal).sum()
    return TabularMDP(
        P if sparse else P.to_dense(),
        torch.from_numpy(R),
        torch.from_numpy(terminal),
        torch.from_numpy(start),
        f"GridWorld{rows}x{cols}",
        gamma,
        (rows, cols),
        LEFT_DOWN_RIGHT_UP,
    )


def gamblers_problem(goal: int = 100, p_heads: float = 0.4) -> TabularMDP:
    """Sutton & Barto Example 4.3: capital s in 0..goal, stake a+1 for action a (a stake above
    min(s, goal - s) is cut to it), +1 on reaching the goal, 0 and goal terminal, gamma 1."""
    S, A = goal + 1, goal // 2
    P, R = np.zeros((A, S, S)), np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            stake = min(a + 1, s, goal - s)
            P[a, s, s + stake] += p_heads
            P[a, s, s - stake] += 1 - p_heads
            R[s, a] = p_heads * (s + stake == goal and stake > 0)
    terminal = np.zeros(S, dtype=bool)
    terminal[[0, goal]] = True
    start = np.zeros(S)
    start[goal // 2] = 1.0
    return TabularMDP(
        torch.from_numpy(P),
        torch.from_numpy(R),
        torch.from_numpy(terminal),
        torch.from_numpy(start),
        "Gambler",
        1.0,
        action_labels=tuple(f"stake {a + 1}" for a in range(A)),
    )


def _poisson(lam: float, n: int) -> np.ndarray:
    """Pr(X = k) for k < n and Pr(X >= n) at k = n: a Poisson count capped at n."""
    p = np.array([exp(-lam) * lam**k / factorial(k) for k in range(n)])
    return np.append(p, 1 - p.sum())


def _location(cars_after_move: int, rent_rate: float, return_rate: float, max_cars: int) -> tuple[np.ndarray, float]:
    """One location overnight: next-morning car distribution (max_cars + 1,) and expected rentals."""
    m = cars_after_move
    rented = _poisson(rent_rate, m)  # cannot rent more cars than are there
    nxt = np.zeros(max_cars + 1)
    for k, pk in enumerate(rented):
        returned = _poisson(return_rate, max_cars - (m - k))  # returns past max_cars disappear
        nxt[m - k :] += pk * returned
    return nxt, float(rented @ np.arange(m + 1))


def jacks_car_rental(
    max_cars: int = 20,
    max_move: int = 5,
    rent_rates=(3.0, 4.0),
    return_rates=(3.0, 2.0),
    credit: float = 10.0,
    move_cost: float = 2.0,
) -> TabularMDP:
    """Sutton & Barto Example 4.2: state (n1, n2) -> n1 * (max_cars + 1) + n2; action a moves
    a - max_move cars from location 1 to 2 overnight ($2 each; a request beyond the cars available
    moves what there is but is charged in full, so it is never better than the feasible move);
    rentals earn $10, rental requests and returns are Poisson (3, 4) and (3, 2); gamma 0.9."""
    n, A = max_cars + 1, 2 * max_move + 1
    loc = [[_location(m, rent_rates[i], return_rates[i], max_cars) for m in range(n)] for i in range(2)]
    P, R = np.zeros((A, n * n, n * n)), np.zeros((n * n, A))
    for n1 in range(n):
        for n2 in range(n):
            for a in range(A):
                move = a - max_move
                moved = min(move, n1) if move >= 0 else -min(-move, n2)
                m1, m2 = min(n1 - moved, max_cars), min(n2 + moved, max_cars)
                (t1, r1), (t2, r2) = loc[0][m1], loc[1][m2]
                P[a, n1 * n + n2] = np.outer(t1, t2).ravel()
                R[n1 * n + n2, a] = credit * (r1 + r2) - move_cost * abs(move)
    start = np.full(n * n, 1.0 / (n * n))
    return TabularMDP(
        torch.from_numpy(P),
        torch.from_numpy(R),
        torch.zeros(n * n, dtype=torch.bool),
        torch.from_numpy(start),
        "JacksCarRental",
        0.9,
        (n, n),
        action_labels=tuple(f"{a - max_move:+d}" for a in range(A)),
    )


def make_mdp(name: str) -> TabularMDP:
    """A planning env by name: the toy-text ids or GridWorld, Gambler, JacksCarRental."""
    from envs import EnvNameError

    makers = {"GridWorld": grid_world, "Gambler": gamblers_problem, "JacksCarRental": jacks_car_rental}
    if name in TOY_TEXT:
        return from_gymnasium(name)
    if name in makers:
        return makers[name]()
    near = difflib.get_close_matches(name, TOY_TEXT + TEXTBOOK, n=3, cutoff=0.3)
    hint = f": did you mean {', '.join(near)}?" if near else ""
    raise EnvNameError(f"no tabular model for env {name!r}{hint} (plannable: {', '.join(TOY_TEXT + TEXTBOOK)})")


# ---------------------------------------------------------------------------------------------- display
ARROWS = {(0, -1): "←", (1, 0): "↓", (0, 1): "→", (-1, 0): "↑"}


def action_name(mdp: TabularMDP, a: int) -> str:
    if mdp.moves is not None:
        return ARROWS.get(mdp.moves[a], str(a))
    return mdp.action_labels[a] if mdp.action_labels is not None else str(a)


def table(mdp: TabularMDP, V: np.ndarray, policy: np.ndarray) -> str:
    """Values and the policy as text: two grids for a grid world, else one line per state."""
    if mdp.grid is not None:
        rows, cols = mdp.grid
        names = [("■" if mdp.terminal[s] else action_name(mdp, int(policy[s]))) for s in range(rows * cols)]
        width = max(len(n) for n in names)
        values = "\n".join(" ".join(f"{V[r * cols + c]:8.3f}" for c in range(cols)) for r in range(rows))
        actions = "\n".join(" ".join(f"{names[r * cols + c]:>{width}}" for c in range(cols)) for r in range(rows))
        return f"V (row by row):\n{values}\n\npolicy (■ terminal):\n{actions}"
    lines = [f"{'state':>6} {'V':>12}  action"]
    lines += [
        f"{s:>6} {V[s]:12.4f}  {'terminal' if mdp.terminal[s] else action_name(mdp, int(policy[s]))}"
        for s in range(len(V))
    ]
    return "\n".join(lines)


def plot(mdp: TabularMDP, V: np.ndarray, policy: np.ndarray, path: str | Path, title: str) -> None:
    """Heatmap of V on the grid with the policy drawn as arrows (or action labels) per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = mdp.grid
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * cols + 1.5), max(3.0, 0.5 * rows + 1.0)))
    image = ax.imshow(V[: rows * cols].reshape(rows, cols), cmap="viridis")
    fig.colorbar(image, ax=ax, label="V")
    live = [s for s in range(rows * cols) if not mdp.terminal[s]]
    r, c = np.divmod(np.array(live, dtype=int), cols)
    if mdp.moves is not None:
        move = np.array([mdp.moves[int(policy[s])] for s in live]).reshape(-1, 2)
        ax.quiver(c, r, move[:, 1], -move[:, 0], color="white", pivot="middle", scale=1.6 * max(rows, cols))
    else:
        for s, i, j in zip(live, r, c):
            ax.text(j, i, action_name(mdp, int(policy[s])), ha="center", va="center", fontsize=6, color="white")
    for s in range(rows * cols):
        if mdp.terminal[s]:
            ax.text(s % cols, s // cols, "end", ha="center", va="center", fontsize=7, color="white")
    if max(rows, cols) <= 25:
        ax.set_xticks(range(cols)), ax.set_yticks(range(rows))
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
