"""Play-time search for Go agents: PUCT Monte-Carlo tree search over a trained network's two heads
(AlphaGo Zero, Silver et al. 2017, "Methods: Search algorithm"), batched over games.

A PPO run on Go trains a policy pi(a|s) and a value V(s). Played alone, the policy picks each move from one
look at the board; a group that lives or dies by a few moves of reading is then lost by a plausible-looking
move. `Search` reads ahead instead: for each of B games it grows a tree of `playouts` positions from the one on
the board. Each playout walks down from the root by PUCT,

    a = argmax_a  Q(s, a) + c_puct * P(s, a) * sqrt(sum_b N(s, b)) / (1 + N(s, a)),

with P the policy's probabilities over the moves the agent is offered (go.eye_fill, go.pass_rule: both sides
are offered what the agent was trained with), N the visits and Q the mean value of the move from the mover's
view (0 before its first visit, as in AlphaGo Zero). At the first move not yet in the tree, the rules
(envs/go/game.py) play it; the new position is evaluated by the network, or scored exactly if the game is over
there; the value goes back up the path, its sign flipping at each level. The move played is the root's most
visited one. The B games advance together: one rules step and one network forward per playout for the batch.

The value a position gets is the network's estimate of the game's result from the mover's view, on the scale of
the training returns: with stone-lead shaping (go.shaping = c), a training return is the result minus the
potential Phi(s) = c * (the mover's stones - the opponent's) / N^2 of the position it was collected at (the
shaping terms telescope; envs/go/env.py), so V(s) + Phi(s) estimates the result; a finished game is worth
sign(margin) + go.score_reward * margin / N^2, as in training.

Self-play training (agents/alphazero.py, agents/go/selfplay.py) reads the same search through `root_visits`: the
root's visit counts (the policy target), with a playout count per game (KataGo's playout cap randomisation, Wu 2019)
and, where asked, Dirichlet noise mixed into the root's priors, P = (1 - fraction) P + fraction Dir(alpha) with
alpha = concentration / (the number of offered moves) (AlphaGo Zero's exploration noise, fraction 0.25; KataGo's
total concentration of ~10 keeps it on the scale of the offered moves).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch

from agents.config import ConfigError
from agents.rollout import masked_logits
from envs.go import game
from envs.go.env import _planes, offered_moves


class Search:
    """Search(net, ...)(state, boards, offered) -> the move (B,) int64 each of B games should play.

    net: obs (M, 2k+1, N, N) float32 -> (logits (M, N*N+1), value (M,)), an agents.ppo.ActorCritic.
    state: the games (envs/go/game.GoState, the agent to move); boards (B, k, N*N) int8: their last k boards, newest
    first (GoEnv.boards); offered (B, N*N+1) bool: the moves the agent may play (the env's info["action_mask"])."""

    def __init__(
        self,
        net,
        playouts: int,
        komi: float,
        eye_fill: bool = True,
        pass_rule: str = "always",
        shaping: float = 0.0,
        score_reward: float = 0.0,
        c_puct: float = 1.5,
        device: str | torch.device = "cpu",
        noise_fraction: float = 0.25,
        noise_concentration: float = 10.0,
    ):
        if playouts < 1:
            raise ConfigError(f"search playouts must be >= 1, got {playouts} (0: play the policy without search)")
        self.net, self.playouts, self.komi, self.c_puct = net, playouts, komi, c_puct
        self.eye_fill, self.pass_rule = eye_fill, pass_rule
        self.shaping, self.score_reward, self.device = shaping, score_reward, torch.device(device)
        self.noise_fraction, self.noise_concentration = noise_fraction, noise_concentration

    @torch.inference_mode()
    def evaluate(self, state: game.GoState, boards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Priors (M, A+1) over the offered moves, the value (M,) from the mover's view, the offered moves (M, A+1)."""
        M, A = state.board.shape
        offered = offered_moves(state, self.eye_fill, self.pass_rule, self.komi)
        over = state.done
        margin = torch.zeros(M)
        if over.any():  # the exact result where the game has ended
            margin[over] = game.score(state.index(over), self.komi) * state.turn[over].float()
        logits, value = self.net(_planes(boards, state.turn, state.size).float().to(self.device))
        priors = torch.softmax(masked_logits(logits.float().cpu(), offered), 1)
        lead = state.board.sum(1, dtype=torch.float32) * state.turn.float()  # the mover's stones - the opponent's
        value = value.float().cpu() + self.shaping * lead / A
        return priors, torch.where(over, torch.sign(margin) + self.score_reward * margin / A, value), offered

    def __call__(self, state: game.GoState, boards: torch.Tensor, offered: torch.Tensor | np.ndarray) -> torch.Tensor:
        B, A = state.board.shape
        offered = torch.as_tensor(np.asarray(offered), dtype=torch.bool)
        # Games over or with a single offered move need no search (the move after a game's end is ignored by GoEnv).
        choice = torch.where(offered.any(1), offered.float().argmax(1), A)
        state, boards = state.to("cpu"), boards.cpu()  # the trees live on the CPU; only the network's batches travel
        search = (~state.done & (offered.sum(1) > 1)).nonzero().view(-1)
        if len(search):
            visits, priors = self.root_visits(state.index(search), boards[search])
            choice[search] = torch.as_tensor(most_visited(visits, priors))
        return choice

    def root_visits(
        self,
        root: game.GoState,
        boards: torch.Tensor,
        playouts: np.ndarray | None = None,
        noise: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The visit counts (B, A+1) of each root's moves after playouts[b] playouts (default: self.playouts), which
        they sum to, and the root's priors (B, A+1) the search used: where noise[b] (B,) bool, mixed with Dirichlet
        noise drawn from `rng`. Games must not be over."""
        B, A = root.board.shape
        root, boards = root.to("cpu"), boards.cpu()
        playouts = np.full(B, self.playouts) if playouts is None else np.asarray(playouts)
        M = int(playouts.max()) + 1  # nodes per tree: the root and one new node per playout
        pool = game.GoState(
            **{f.name: getattr(root, f.name).repeat_interleave(M, 0) for f in fields(root)}
        )  # node b*M+n
        pool_boards = boards.repeat_interleave(M, 0)  # (B*M, k, A)
        prior = np.zeros((B * M, A + 1), np.float32)
        allowed = np.zeros((B * M, A + 1), bool)
        visits = np.zeros((B * M, A + 1), np.float32)
        total = np.zeros((B * M, A + 1), np.float32)  # sum of the move's values, from the mover's view
        child = np.full((B * M, A + 1), -1, np.int64)
        value = np.zeros(B * M, np.float32)  # the node's value from the mover's view
        over = np.zeros(B * M, bool)
        roots = np.arange(B) * M
        p, v, o = self.evaluate(root, boards)
        prior[roots], value[roots], allowed[roots] = p.numpy(), v.numpy(), o.numpy()
        if noise is not None and noise.any():
            noisy = roots[noise]
            prior[noisy] = self.noisy_priors(prior[noisy], allowed[noisy], rng)
        for playout in range(1, M):
            paths, leaves, parents, moves, new = [], [], [], [], []
            for b in np.flatnonzero(playouts >= playout):  # a game whose playouts are spent waits for the others
                node, path = roots[b], []
                while not over[node]:
                    n = visits[node]
                    q = np.divide(total[node], n, out=np.zeros_like(n), where=n > 0)
                    score = q + self.c_puct * prior[node] * np.sqrt(max(n.sum(), 1.0)) / (1.0 + n)
                    move = int(np.where(allowed[node], score, -np.inf).argmax())
                    path.append((node, move))
                    if child[node, move] < 0:
                        break
                    node = child[node, move]
                paths.append(path)
                if over[node]:  # a finished game: its exact value, nothing to expand
                    leaves.append(node)
                else:
                    leaves.append(roots[b] + playout)
                    new.append(roots[b] + playout)
                    parents.append(node)
                    moves.append(path[-1][1])
            if parents:
                parent_ids, new_ids = torch.as_tensor(parents), torch.as_tensor(new)
                stepped = game.step(pool.index(parent_ids), torch.as_tensor(moves))
                for f in fields(stepped):
                    getattr(pool, f.name)[new_ids] = getattr(stepped, f.name)
                pushed = torch.cat(
                    [stepped.board.unsqueeze(1), pool_boards[parent_ids, :-1]], 1
                )  # (L, k, A) newest first
                pool_boards[new_ids] = pushed
                p, v, o = self.evaluate(stepped, pushed)
                prior[new], value[new], allowed[new] = p.numpy(), v.numpy(), o.numpy()
                over[new] = stepped.done.cpu().numpy()
                child[parents, moves] = new
            for path, leaf in zip(paths, leaves):
                backed = value[leaf]
                for node, move in reversed(path):
                    backed = -backed  # the move's value for the player who chose it
                    visits[node, move] += 1
                    total[node, move] += backed
        return visits[roots], prior[roots]

    def noisy_priors(self, prior: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(1 - fraction) P + fraction eta, eta ~ Dir(concentration / offered moves) over each row's offered moves
        (drawn as normalised Gamma variates, one row per root)."""
        alpha = self.noise_concentration / allowed.sum(1, keepdims=True)  # (R, 1)
        gamma = np.where(allowed, rng.standard_gamma(np.broadcast_to(alpha, allowed.shape)), 0.0)
        sums = gamma.sum(1, keepdims=True)
        eta = np.where(sums > 0, gamma / np.maximum(sums, 1e-30), allowed / allowed.sum(1, keepdims=True))
        return ((1 - self.noise_fraction) * prior + self.noise_fraction * eta).astype(np.float32)


def most_visited(visits: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Each root's most visited move (B,), a tie going to the policy's favourite (half the prior, < 1, added)."""
    return (visits + priors / 2).argmax(1)


def for_run(net, config, playouts: int, device: torch.device) -> Search:
    """The search for a Go run's trained network: its komi, offered moves, and the scale of its value (shaping)."""
    go = config.go
    if go.shaping and go.shaping_potential != "stones":
        raise ConfigError(
            f"search reads the value as V + Phi, known for go.shaping_potential=stones, not "
            f"{go.shaping_potential!r} (play this run without --search)"
        )
    return Search(net, playouts, go.komi, go.eye_fill, go.pass_rule, go.shaping, go.score_reward, device=device)
