"""Go as a vector env (gymnasium VectorEnv conventions, NEXT_STEP autoreset) over envs/go/game.py.

Two modes:
- self-play (`opponent=None`): the policy plays both colours; each step is one move of the player
  to move (`info["to_play"]`, +1 black / -1 white, says whose move the returned obs asks for).
  The reward is for the player who just moved: +1 win, -1 loss, 0 draw, at the end of the game.
- against an opponent (`opponent="random"` or `"gnugo"`): the agent plays `agent_colour`; each step
  is the agent's move followed by the opponent's reply; rewards are from the agent's view.

Observation (float32, (2k+1, N, N)), AlphaGo Zero's layout (Silver et al. 2017): for each of the
last k boards, newest first, a plane of the mover's stones and a plane of the opponent's, then a
plane of ones when Black is to move. `info["action_mask"]` (N, N*N+1) bool holds the legal actions
in reset and step infos; an illegal action raises ValueError. Games end by two passes or at
2*N*N moves, scored by Tromp-Taylor area with komi (`terminated`; `truncated` is always False).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.spaces import Box, Discrete, MultiDiscrete

from envs.go import game, gtp, render

SIZES = (5, 7, 9, 19)


def observation_planes(boards: torch.Tensor, turn: torch.Tensor, size: int) -> np.ndarray:
    """The agent's observation (B, 2k+1, N, N) float32 from the last k boards (B, k, N*N), newest first
    (+1 black, -1 white, 0 empty; zeros before the game's start), and the player to move (B,) +1/-1:
    per board a plane of the mover's stones and one of the opponent's, then ones if Black is to move."""
    B, k = boards.shape[:2]
    view = boards * turn.view(B, 1, 1)  # (B, k, A): +1 the mover's stones
    planes = torch.stack([view == 1, view == -1], 2).view(B, 2 * k, size, size)
    to_move = (turn == game.BLACK).view(B, 1, 1, 1).expand(B, 1, size, size)
    return torch.cat([planes, to_move], 1).float().cpu().numpy()


def random_policy(state: game.GoState, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform over legal moves that do not fill one of the mover's own one-point eyes; pass only
    when nothing else is left (the usual random playout policy, so random games end). (B,) int64."""
    B, A = state.board.shape
    mover = state.turn.view(B, 1, 1)
    up, down, left, right = ((v == mover) | (v == game._OFF) for v in game._neighbours(state.board, state.size, game._OFF))
    own_eye = (up & down & left & right).reshape(B, A)
    weights = (state.legal[:, :A] & ~own_eye).float()
    weights = torch.cat([weights, (weights.sum(1, keepdim=True) == 0).float()], 1)
    return torch.multinomial(weights, 1, generator=generator).view(B)


class GnuGoOpponent:
    """One GNU Go process per env, told every move, asked for its reply with genmove (a
    resignation is played as a pass: the game goes on to its scored end)."""

    def __init__(self, num_envs: int, size: int, komi: float, level: int = 1, seed: int = 0):
        self.size = size
        self.engines = [gtp.gnugo(size, komi, level, seed + i) for i in range(num_envs)]

    def reset(self, rows: np.ndarray) -> None:
        for i in rows:
            self.engines[i].send("clear_board")

    def tell(self, rows: np.ndarray, colour: int, actions: np.ndarray) -> None:
        name = "b" if colour == game.BLACK else "w"
        for i, a in zip(rows, actions):
            self.engines[i].send(f"play {name} {gtp.vertex(int(a), self.size)}")

    def reply(self, rows: np.ndarray, colour: int) -> list[int]:
        name = "b" if colour == game.BLACK else "w"
        moves = []
        for i in rows:
            answer = self.engines[i].send(f"genmove {name}").upper()
            moves.append(self.size * self.size if answer in ("PASS", "RESIGN") else gtp.action(answer, self.size))
        return moves

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


class GoEnv:
    """`num_envs` Go games on `device`; see the module docstring for the two modes."""

    def __init__(self, size: int = 9, num_envs: int = 1, seed: int = 0, device: str | torch.device = "cpu",
                 opponent: str | None = None, agent_colour: str = "black", history: int = 8,
                 komi: float | None = None, gnugo_level: int = 1):
        if size not in range(5, 20):
            raise ValueError(f"size must be 5..19, got {size}")
        if opponent not in (None, "random", "gnugo"):
            raise ValueError(f"opponent must be None (self-play), 'random' or 'gnugo', got {opponent!r}")
        if agent_colour not in ("black", "white"):
            raise ValueError(f"agent_colour must be 'black' or 'white', got {agent_colour!r}")
        self.size, self.num_envs, self.device = size, num_envs, torch.device(device)
        self.komi = game.default_komi(size) if komi is None else komi
        self.history = history
        self.name, self.family, self.frame_stack = f"Go{size}", "go", 1
        A = size * size
        self.single_observation_space = Box(0.0, 1.0, (2 * history + 1, size, size), np.float32)
        self.single_action_space = Discrete(A + 1)
        self.observation_space = Box(0.0, 1.0, (num_envs, 2 * history + 1, size, size), np.float32)
        self.action_space = MultiDiscrete(np.full(num_envs, A + 1))
        self.opponent_kind = opponent
        self.agent = game.BLACK if agent_colour == "black" else game.WHITE
        self.gnugo = GnuGoOpponent(num_envs, size, self.komi, gnugo_level, seed) if opponent == "gnugo" else None
        self._fresh = game.new_games(1, size, self.device)
        self._seed: int | None = seed
        self.generator = torch.Generator(self.device)
        self.state = game.new_games(num_envs, size, self.device)
        self.boards = torch.zeros(num_envs, history, A, dtype=torch.int8, device=self.device)  # newest first
        self._ended = np.zeros(num_envs, dtype=bool)

    def _observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        B = self.num_envs
        obs = observation_planes(self.boards, self.state.turn, self.size)
        info = {"action_mask": self.state.legal.cpu().numpy(), "life_lost": np.zeros(B, dtype=bool),
                "to_play": self.state.turn.cpu().numpy().astype(np.int64)}
        return obs, info

    def _record(self, rows: torch.Tensor | None = None) -> None:
        """Push the current boards onto the history (rows: bool (B,), only those games)."""
        pushed = torch.cat([self.state.board.unsqueeze(1), self.boards[:, :-1]], 1)
        self.boards = pushed if rows is None else torch.where(rows.view(-1, 1, 1), pushed, self.boards)

    def _opponent_moves(self, rows: torch.Tensor) -> None:
        """The opponent replies in the games `rows` (bool (B,)) where it is to move."""
        rows = rows & ~self.state.done & (self.state.turn != self.agent)
        if not rows.any():
            return
        if self.gnugo is None:
            actions = random_policy(self.state, self.generator)
        else:
            idx = torch.nonzero(rows).view(-1).cpu().numpy()
            actions = torch.full((self.num_envs,), self.size ** 2, dtype=torch.int64)
            actions[idx] = torch.tensor(self.gnugo.reply(idx, -self.agent))
            actions = actions.to(self.device)
        actions = torch.where(rows, actions, self.size ** 2)
        stepped = game.step(self.state, actions)
        self.state = self.state.where(rows, stepped)
        self._record(rows)

    def _reset_rows(self, rows: torch.Tensor) -> None:
        self.state = self.state.where(rows, self._fresh)
        self.boards = torch.where(rows.view(-1, 1, 1), 0, self.boards).to(torch.int8)
        self._record(rows)
        if self.gnugo is not None:
            self.gnugo.reset(torch.nonzero(rows).view(-1).cpu().numpy())
        if self.opponent_kind is not None and self.agent == game.WHITE:
            self._opponent_moves(rows)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """New games everywhere; `seed` (default: make's seed, once) seeds the random opponent."""
        seed = self._seed if seed is None else seed
        self._seed = None
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self._ended[:] = False
        self._reset_rows(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._observe()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        B, A = self.num_envs, self.size ** 2
        actions = torch.as_tensor(np.asarray(actions, dtype=np.int64), device=self.device)
        restart = torch.as_tensor(self._ended, device=self.device)
        playing = ~restart
        legal = self.state.legal.gather(1, actions.clamp(0, A).view(B, 1)).view(B) & (actions >= 0) & (actions <= A)
        if (playing & ~legal).any():
            bad = torch.nonzero(playing & ~legal).view(-1).tolist()
            raise ValueError(f"illegal Go action(s) in env(s) {bad}: {actions[bad].tolist()}; "
                             "use info['action_mask'] to choose legal moves")
        mover = self.state.turn.clone()
        if self.gnugo is not None:
            idx = torch.nonzero(playing).view(-1).cpu().numpy()
            self.gnugo.tell(idx, self.agent, actions[idx].cpu().numpy())
        stepped = game.step(self.state, torch.where(playing, actions, A))
        self.state = self.state.where(playing, stepped)
        self._record(playing)
        if self.opponent_kind is not None:
            self._opponent_moves(playing)
        ended = self.state.done & playing
        reward = torch.zeros(B, device=self.device)
        if ended.any():
            margin = game.score(self.state.index(ended), self.komi)  # Black's margin
            viewer = mover[ended] if self.opponent_kind is None else torch.full_like(mover[ended], self.agent)
            reward[ended] = torch.sign(margin) * viewer.float()
        if restart.any():
            self._reset_rows(restart)
        self._ended = ended.cpu().numpy()
        obs, info = self._observe()
        return obs, reward.cpu().numpy().astype(np.float32), self._ended.copy(), np.zeros(B, dtype=bool), info

    def render_frames(self) -> np.ndarray:
        """(N, H, W, 3) uint8 pictures of the boards, for `rl watch` and training videos (envs/go/render.py)."""
        boards = self.state.board.cpu()
        return np.stack([render.board_rgb(boards[i], self.size) for i in range(self.num_envs)])

    def close(self) -> None:
        if self.gnugo is not None:
            self.gnugo.close()
