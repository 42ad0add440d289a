"""Go as a vector env (gymnasium VectorEnv conventions, NEXT_STEP autoreset) over envs/go/game.py.

Two modes:
- two-player (`opponent=None`): the policy plays both colours; each step is one move of the player
  to move (`info["to_play"]`, +1 black / -1 white, says whose move the returned obs asks for).
  The reward is for the player who just moved: +1 win, -1 loss, 0 draw, at the end of the game.
- against an opponent: `"random"`, `"greedy"` (captures the most stones it can, else random), `"gnugo"`
  (GNU Go over GTP at `gnugo_level`), `"gtp:CMD ARGS"` (any GTP engine by its command line, one process per
  env), or any `Opponent` object (agents/go/league.py: past versions of the
  agent, for self-play). The agent plays `agent_colour` ("black", "white", or "alternate": env i starts
  as Black if i is even and changes colour at each new game); each step is the agent's move followed by
  the opponent's reply; rewards are from the agent's view.

`shaping=c` (against an opponent only) adds potential-based shaping (Ng et al. 1999) to the agent's
rewards: r + Phi(s') - Phi(s) with Phi = c * (the agent's stones - the opponent's) / (N*N) after the
opponent's reply, and Phi = 0 before the game's first move and at its end. The shaping terms of a game
sum to zero, so every game's return is still exactly its result (+1/-1) and the best policy is
unchanged; a capture is credited when it happens instead of only through the final result, 80 moves
later on 9x9. (Stones, not area: on a sparse board one stone's Tromp-Taylor area is the whole board,
which makes the area a noisy potential.)

`shaping_potential="captures"` takes Phi from the prisoners instead: c * (stones the agent has captured - stones it
has lost) / (N*N). The stone lead also counts stones played, so it charges 1/N^2 for each pass the opponent does not
answer with one, and pays for stones played inside the agent's own territory (area unchanged, stones + 1): both push
towards filling one's own eyes. Prisoners change only when stones are taken.

`eye_fill=False` leaves the mover's own one-point eyes (game.own_eyes) out of the action masks this env hands out,
the agent's `info["action_mask"]` and an Opponent object's: Monte-Carlo Go's playout rule (Bruegmann 1993), the one
`random_policy` follows. It is a restriction of the player, not of the rules (the env still accepts such a move).
`pass_rule="end"` restricts passing the same way (`offered_moves`): pass is offered only when nothing else is, or
when the opponent has just passed and the mover leads on the score, so passing back wins (the random player passes
only in the first case). A game then ends only once it is played out, so Tromp-Taylor scores it with no dead stones
left on the board.

`score_reward=c` adds c * (the final margin) / (N*N) to the result at a game's end, from the same player's view:
the return is +-1 plus a share of the score (KataGo's score utility, Wu 2019), so a won game is worth more the more
it is won by, and a lost one less bad the less it is lost by. Unlike shaping this changes what is best: a player
that wins by a little gains by winning by more, so it learns to take groups it could leave alive.

`random_opening=K` (against an opponent) makes the first K moves of every game, both sides', uniformly random legal
moves (random_policy's), whatever the agent chose or the opponent would have played (a GTP engine is told them):
an evaluation's opening book, so that matches between deterministic players are not one game replayed.

`augment=True` shows each observation under one of the board's 8 symmetries, drawn at random per env and
step, and maps the action back (envs/go/symmetry.py): PPO then learns from all 8 images of its positions
with exact log-probabilities (the policy acted on the image it was shown). `record=True` keeps every
game's moves; finished games are appended to `env.finished` (GameRecord) for SGF files.

Observation (float32, (2k+1, N, N)), AlphaGo Zero's layout (Silver et al. 2017): for each of the
last k boards, newest first, a plane of the mover's stones and a plane of the opponent's, then a
plane of ones when Black is to move. `info["action_mask"]` (N, N*N+1) bool holds the legal actions
(less the own eyes without eye_fill, and pass as pass_rule says) in reset and step infos; an illegal action
raises ValueError.
Games end by two passes or at 2*N*N moves, scored by Tromp-Taylor area with komi (`terminated`;
`truncated` is always False).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium.spaces import Box, Discrete, MultiDiscrete

from envs.go import game, gtp, gtp_client, render, symmetry
from envs.go.game import random_policy  # the env's random player, kept in the rules so gtp.py can play it out


def observation_planes(boards: torch.Tensor, turn: torch.Tensor, size: int) -> np.ndarray:
    """The agent's observation (B, 2k+1, N, N) float32 from the last k boards (B, k, N*N), newest first
    (+1 black, -1 white, 0 empty; zeros before the game's start), and the player to move (B,) +1/-1:
    per board a plane of the mover's stones and one of the opponent's, then ones if Black is to move."""
    return _planes(boards, turn, size).float().cpu().numpy()


def _planes(boards: torch.Tensor, turn: torch.Tensor, size: int) -> torch.Tensor:
    B, k = boards.shape[:2]
    view = boards * turn.view(B, 1, 1)  # (B, k, A): +1 the mover's stones
    planes = torch.stack([view == 1, view == -1], 2).view(B, 2 * k, size, size)
    to_move = (turn == game.BLACK).view(B, 1, 1, 1).expand(B, 1, size, size)
    return torch.cat([planes, to_move], 1)  # (B, 2k+1, N, N) bool


PASS_RULES = ("always", "end")


def offered_moves(
    state: game.GoState, eye_fill: bool = True, pass_rule: str = "always", komi: float = 7.5
) -> torch.Tensor:
    """(B, A+1) bool: the moves a policy is offered, its action mask: the legal moves, less the mover's own one-point
    eyes when not `eye_fill` (pass stays, so a position where nothing else is left offers pass alone).
    pass_rule "end" offers pass only where nothing else is offered, or where the opponent has just passed and the
    mover leads on the Tromp-Taylor score at `komi` (so passing wins the game there)."""
    offered = state.legal if eye_fill else state.legal & ~torch.nn.functional.pad(game.own_eyes(state), (0, 1))
    if pass_rule == "always":
        return offered
    A = state.board.shape[1]
    others = offered[:, :A].any(1)
    may_pass = ~others
    ask = others & (state.passes == 1)  # the opponent's pass: passing back ends the game by the score
    if ask.any():
        may_pass = may_pass | (ask & (game.score(state, komi) * state.turn.float() > 0))
    return torch.cat([offered[:, :A], offered[:, A:] & may_pass.view(-1, 1)], 1)


def greedy_policy(state: game.GoState, generator: torch.Generator | None = None) -> torch.Tensor:
    """A one-ply capturer: the legal move that captures the most stones (ties at random), else
    `random_policy`'s move. The weakest opponent that punishes a stone left in atari. (B,) int64."""
    B, A = state.board.shape
    captures = torch.where(state.legal[:, :A], game.capture_counts(state), 0)  # (B, A)
    best = captures.amax(1, keepdim=True)
    ties = ((captures == best) & (best > 0)).float() + torch.rand(
        B, A, generator=generator, device=captures.device
    ) * 0.5
    return torch.where(best.view(B) > 0, ties.argmax(1), random_policy(state, generator))


class Opponent(Protocol):
    """A policy the env asks for the opponent's replies (agents/go/league.py: past versions of the agent)."""

    def new_games(self, rows: np.ndarray) -> None:
        """Games start in envs `rows` (int indices): choose who plays them."""

    def __call__(self, obs: np.ndarray, action_mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Moves (len(rows),) for the envs `rows`, from their observations and legal masks (len(rows), ...)."""


@dataclass
class GameRecord:
    """One finished game: its moves (colour, action), Black's score margin, the agent's colour and the final board."""

    env: int
    agent_colour: int
    margin: float
    moves: list[tuple[int, int]] = field(default_factory=list)
    board: np.ndarray | None = None  # (N*N,) int8


class GtpOpponent:
    """One GTP engine process per env (GNU Go at a level, or any engine by its command line), told every move and
    asked for its reply with genmove. A resignation is played as a pass: the game goes on to its scored end.
    With `seeds` (GNU Go's), engine i plays its g-th game under set_random_seed seeds[i] + g * len(engines): a
    deterministic engine against a greedy agent would otherwise replay the same game in each env."""

    def __init__(self, engines: list[gtp_client.GtpClient], size: int, name: str, seeds: list[int] | None = None):
        self.engines, self.size, self.name, self.seeds = engines, size, name, seeds
        self.games = np.zeros(len(engines), dtype=np.int64)  # games begun per engine

    def reset(self, rows: np.ndarray) -> None:
        for i in rows:
            self.engines[i].send("clear_board")
            if self.seeds is not None:
                self.engines[i].send(f"set_random_seed {self.seeds[i] + self.games[i] * len(self.engines)}")
            self.games[i] += 1

    def tell(self, rows: np.ndarray, colours: np.ndarray, actions: np.ndarray) -> None:
        for i, colour, a in zip(rows, colours, actions):
            self.engines[i].send(f"play {'b' if colour == game.BLACK else 'w'} {gtp.vertex(int(a), self.size)}")

    def reply(self, rows: np.ndarray, colours: np.ndarray, legal: np.ndarray) -> list[int]:
        """The engines' moves in envs `rows`; legal (len(rows), N*N+1) bool: the rules' legal moves there (positional
        superko, no suicide). An engine's move outside them is a GtpError naming the engine, not a silent pass."""
        moves = []
        for i, colour, ok in zip(rows, colours, legal):
            answer = self.engines[i].send(f"genmove {'b' if colour == game.BLACK else 'w'}").upper()
            move = self.size * self.size if answer in ("PASS", "RESIGN") else gtp.action(answer, self.size)
            if not ok[move]:
                raise gtp.GtpError(f"{self.name} played {answer}, illegal under positional superko and no suicide")
            moves.append(move)
        return moves

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


def gtp_command(opponent: str) -> str | None:
    """The engine's command line of a `gtp:CMD ARGS` opponent, else None."""
    return opponent[len("gtp:") :].strip() if opponent.startswith("gtp:") else None


OPPONENTS = ("random", "greedy", "gnugo")
POTENTIALS = ("stones", "captures")


class GoEnv:
    """`num_envs` Go games on `device`; see the module docstring for the modes and options."""

    def __init__(
        self,
        size: int = 9,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        opponent: str | Opponent | None = None,
        agent_colour: str = "black",
        history: int = 8,
        komi: float | None = None,
        gnugo_level: int = 1,
        augment: bool = False,
        record: bool = False,
        shaping: float = 0.0,
        shaping_potential: str = "stones",
        eye_fill: bool = True,
        pass_rule: str = "always",
        score_reward: float = 0.0,
        random_opening: int = 0,
    ):
        if size not in range(5, 20):
            raise ValueError(f"size must be 5..19, got {size}")
        if isinstance(opponent, str) and opponent not in OPPONENTS and not gtp_command(opponent):
            raise ValueError(
                f"opponent must be None (two-player), one of {OPPONENTS}, 'gtp:CMD ARGS' or an Opponent, "
                f"got {opponent!r}"
            )
        if agent_colour not in ("black", "white", "alternate"):
            raise ValueError(f"agent_colour must be 'black', 'white' or 'alternate', got {agent_colour!r}")
        self.size, self.num_envs, self.device = size, num_envs, torch.device(device)
        self.komi = game.default_komi(size) if komi is None else komi
        if shaping and opponent is None:
            raise ValueError("shaping rewards the agent's side, so it needs an opponent (two-player mode has none)")
        if shaping_potential not in POTENTIALS:
            raise ValueError(f"shaping_potential must be one of {POTENTIALS}, got {shaping_potential!r}")
        if pass_rule not in PASS_RULES:
            raise ValueError(f"pass_rule must be one of {PASS_RULES}, got {pass_rule!r}")
        if score_reward < 0:
            raise ValueError(f"score_reward must be >= 0 (0: the result only), got {score_reward}")
        if random_opening < 0 or (random_opening and opponent is None):
            raise ValueError(f"random_opening must be >= 0 and needs an opponent, got {random_opening}")
        self.random_opening = random_opening  # the first K moves of a game, both sides', are random (an opening)
        self.history, self.augment, self.record, self.shaping = history, augment, record, shaping
        self.score_reward = score_reward
        self.shaping_potential, self.eye_fill, self.pass_rule = shaping_potential, eye_fill, pass_rule
        self.name, self.family, self.frame_stack = f"Go{size}", "go", 1
        A = size * size
        self.single_observation_space = Box(0.0, 1.0, (2 * history + 1, size, size), np.float32)
        self.single_action_space = Discrete(A + 1)
        self.observation_space = Box(0.0, 1.0, (num_envs, 2 * history + 1, size, size), np.float32)
        self.action_space = MultiDiscrete(np.full(num_envs, A + 1))
        self.opponent = opponent
        self.colour_rule = agent_colour
        self.agent = torch.full(
            (num_envs,), game.WHITE if agent_colour == "white" else game.BLACK, dtype=torch.int8, device=self.device
        )  # (B,) the agent's colour in each env's current game
        self.gnugo: GtpOpponent | None = None  # GNU Go or another engine over GTP
        if opponent == "gnugo":
            seeds = [seed + i for i in range(num_envs)]
            engines = [gtp_client.gnugo(size, self.komi, gnugo_level, s) for s in seeds]
            self.gnugo = GtpOpponent(engines, size, f"GNU Go level {gnugo_level}", seeds)
        elif isinstance(opponent, str) and gtp_command(opponent):
            engines = []
            try:
                for _ in range(num_envs):
                    engines.append(gtp_client.engine(gtp_command(opponent), size, self.komi))
            except gtp.GtpError:
                for engine in engines:
                    engine.close()
                raise
            self.gnugo = GtpOpponent(engines, size, repr(gtp_command(opponent)))
        self._fresh = game.new_games(1, size, self.device)
        self._seed: int | None = seed
        self.generator = torch.Generator(self.device)
        self.state = game.new_games(num_envs, size, self.device)
        self.boards = torch.zeros(num_envs, history, A, dtype=torch.int8, device=self.device)  # newest first
        self._ended = np.zeros(num_envs, dtype=bool)
        self._games = np.zeros(num_envs, dtype=np.int64)  # games started per env since reset (colour alternation)
        self._image = torch.zeros(num_envs, dtype=torch.int64, device=self.device)  # symmetry shown (augment)
        self._moves: list[list[tuple[int, int]]] = [[] for _ in range(num_envs)]
        self.finished: list[GameRecord] = []
        self._potential = torch.zeros(num_envs, device=self.device)  # Phi of each current position (shaping)
        self._placed = torch.zeros(
            num_envs, 2, device=self.device
        )  # stones the agent [:, 0] and its opponent [:, 1] have played

    def _potentials(self) -> torch.Tensor:
        """Phi (B,): shaping * the agent's lead in stones on the board (or in prisoners) / (N*N), 0 where the game
        is over."""
        lead = self.state.board.sum(1, dtype=torch.float32) * self.agent.float()  # the agent's stones - the opponent's
        if self.shaping_potential == "captures":  # stones lost = stones played - stones left on the board
            lead = lead - (self._placed[:, 0] - self._placed[:, 1])
        return torch.where(self.state.done, 0.0, self.shaping * lead / self.size**2)

    def _legal(self) -> torch.Tensor:
        return offered_moves(self.state, self.eye_fill, self.pass_rule, self.komi)

    def _observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        B = self.num_envs
        planes, legal = _planes(self.boards, self.state.turn, self.size), self._legal()
        if self.augment:
            self._image = torch.randint(symmetry.COUNT, (B,), generator=self.generator, device=self.device)
            planes, legal = (
                symmetry.transform(planes, self._image, self.size),
                symmetry.transform(legal, self._image, self.size),
            )
        info = {
            "action_mask": legal.cpu().numpy(),
            "life_lost": np.zeros(B, dtype=bool),
            "to_play": self.state.turn.cpu().numpy().astype(np.int64),
        }
        return planes.float().cpu().numpy(), info

    def _record(self, rows: torch.Tensor | None = None) -> None:
        """Push the current boards onto the history (rows: bool (B,), only those games)."""
        pushed = torch.cat([self.state.board.unsqueeze(1), self.boards[:, :-1]], 1)
        self.boards = pushed if rows is None else torch.where(rows.view(-1, 1, 1), pushed, self.boards)

    def _play(self, rows: torch.Tensor, actions: torch.Tensor) -> None:
        """The player to move plays actions (B,) in the games `rows` (bool (B,)); the others wait."""
        if self.record:
            for i in torch.nonzero(rows).view(-1).tolist():
                self._moves[i].append((int(self.state.turn[i]), int(actions[i])))
        stone = rows & (actions < self.size**2)
        self._placed[:, 0] += (stone & (self.state.turn == self.agent)).float()
        self._placed[:, 1] += (stone & (self.state.turn != self.agent)).float()
        stepped = game.step(self.state, torch.where(rows, actions, self.size**2))
        self.state = self.state.where(rows, stepped)
        self._record(rows)

    def _opponent_moves(self, rows: torch.Tensor) -> None:
        """The opponent replies in the games `rows` (bool (B,)) where it is to move."""
        rows = rows & ~self.state.done & (self.state.turn != self.agent)
        if not rows.any():
            return
        opening = rows & (self.state.moves < self.random_opening)  # a random move instead of the opponent's
        idx = torch.nonzero(rows & ~opening).view(-1).cpu().numpy()
        if self.opponent == "random":
            actions = random_policy(self.state, self.generator)
        elif self.opponent == "greedy":
            actions = greedy_policy(self.state, self.generator)
        else:
            actions = torch.full((self.num_envs,), self.size**2, dtype=torch.int64)
            if len(idx) and self.gnugo is not None:
                legal = self.state.legal[idx].cpu().numpy()
                replies = self.gnugo.reply(idx, -self.agent[idx].cpu().numpy(), legal)
                actions[idx] = torch.tensor(replies, dtype=torch.int64)
            elif len(idx):  # an Opponent object sees the position as the agent would, from the mover's side
                obs = _planes(self.boards[idx], self.state.turn[idx], self.size).float().cpu().numpy()
                actions[idx] = torch.as_tensor(self.opponent(obs, self._legal()[idx].cpu().numpy(), idx))
            actions = actions.to(self.device)
        if opening.any():
            actions = torch.where(opening, random_policy(self.state, self.generator), actions)
            if self.gnugo is not None:  # the engine is told the opening's move as it is told the agent's
                told = torch.nonzero(opening).view(-1).cpu().numpy()
                self.gnugo.tell(told, -self.agent[told].cpu().numpy(), actions[told].cpu().numpy())
        self._play(rows, actions)

    def _reset_rows(self, rows: torch.Tensor) -> None:
        idx = torch.nonzero(rows).view(-1).cpu().numpy()
        self.state = self.state.where(rows, self._fresh)
        self.boards = torch.where(rows.view(-1, 1, 1), 0, self.boards).to(torch.int8)
        self._placed[rows] = 0
        self._record(rows)
        if self.colour_rule == "alternate":
            black = (idx + self._games[idx]) % 2 == 0
            self.agent[idx] = torch.as_tensor(
                np.where(black, game.BLACK, game.WHITE), dtype=torch.int8, device=self.device
            )
        self._games[idx] += 1
        for i in idx:
            self._moves[i] = []
        if self.gnugo is not None:
            self.gnugo.reset(idx)
        if self.opponent is not None and not isinstance(self.opponent, str):
            self.opponent.new_games(idx)
        if self.opponent is not None:
            self._opponent_moves(rows)  # where the agent plays White, the opponent opens

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """New games everywhere; `seed` (default: make's seed, once) seeds the random opponent and the symmetries."""
        seed = self._seed if seed is None else seed
        self._seed = None
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self._ended[:] = False
        self._games[:] = 0
        self._reset_rows(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        self._potential.zero_()
        return self._observe()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        B, A = self.num_envs, self.size**2
        actions = torch.as_tensor(np.asarray(actions, dtype=np.int64), device=self.device)
        if self.augment:  # the action was chosen on the image shown: play it on the real board
            actions = symmetry.original_action(actions.clamp(0, A), self._image, self.size).where(
                (actions >= 0) & (actions <= A), actions
            )
        restart = torch.as_tensor(self._ended, device=self.device)
        playing = ~restart
        legal = self.state.legal.gather(1, actions.clamp(0, A).view(B, 1)).view(B) & (actions >= 0) & (actions <= A)
        if (playing & ~legal).any():
            bad = torch.nonzero(playing & ~legal).view(-1).tolist()
            raise ValueError(
                f"illegal Go action(s) in env(s) {bad}: {actions[bad].tolist()}; "
                "use info['action_mask'] to choose legal moves"
            )
        mover = self.state.turn.clone()
        opening = playing & (self.state.moves < self.random_opening)
        if opening.any():  # the agent's move replaced by the opening's random one
            actions = torch.where(opening, random_policy(self.state, self.generator), actions)
        if self.gnugo is not None:
            idx = torch.nonzero(playing).view(-1).cpu().numpy()
            self.gnugo.tell(idx, self.agent[idx].cpu().numpy(), actions[idx].cpu().numpy())
        self._play(playing, actions)
        if self.opponent is not None:
            self._opponent_moves(playing)
        ended = self.state.done & playing
        reward = torch.zeros(B, device=self.device)
        if ended.any():
            margin = game.score(self.state.index(ended), self.komi)  # Black's margin
            viewer = mover[ended] if self.opponent is None else self.agent[ended]
            reward[ended] = (torch.sign(margin) + self.score_reward * margin / A) * viewer.float()
            if self.record:
                for i, m in zip(torch.nonzero(ended).view(-1).tolist(), margin.tolist()):
                    self.finished.append(
                        GameRecord(i, int(self.agent[i]), m, self._moves[i], self.state.board[i].cpu().numpy())
                    )
        if restart.any():
            self._reset_rows(restart)
        if self.shaping:
            potential = self._potentials()
            reward += torch.where(playing, potential - self._potential, 0.0)
            self._potential = torch.where(restart, 0.0, potential)  # a new game's shaping starts from Phi = 0
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
