"""Planning at gamma 1, for the planners of agents/planning.py.

Gamma 1 (undiscounted episodic problems: the gambler's, Sutton & Barto's grid worlds) is a
stochastic shortest path problem (Bertsekas & Tsitsiklis 1991): the values are finite when some
policy is proper, ending the episode with probability 1 from every state, and no policy collects
positive reward forever. Every planner first finds a proper policy by backward reachability from the
rows that can end (`_reach_end`), or raises ValueError naming the states that can never end. Policy
iteration starts from it, so (I - P_pi) is invertible, and Puterman's improvement rule keeps the
policy proper unless a cycle of positive total reward exists: an improper improved policy is
reported as divergence. Value, Q-value and modified policy iteration start from its value, below
the best proper policy's, so the iterates rise to the latter (Bertsekas & Yu 2016, which also covers
cycles of zero reward, where a policy that never ends may tie or do better: every planner reports
the best proper policy); they look for proof of divergence every 100 iterations and when they stop
(`_diverging`). There is no epsilon-optimality bound at gamma 1: iteration stops when the change is
below epsilon, which is exact only in the limit.
"""

from __future__ import annotations

import torch

from agents.mdp_model import ENDS, Model, evaluate, matmul

Tensor = torch.Tensor


def _reach_end(model: Model, allowed: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """Backward reachability of the end through the `allowed` (B, S, A) actions. Returns which states
    (B, S) can end with positive probability and, per state, the allowed action of highest `score`
    (B, S, A) among those that end or enter a state found in an earlier round: following those, every
    step has a positive chance of coming closer to the end, so the policy is proper where reached."""
    B, S, A = model.R.shape
    hits = (model.row_sums < 1 - ENDS).expand(B, S, A) & allowed  # (B, S, A): the rows that can end at once
    reached = torch.zeros(B, S, dtype=torch.bool, device=model.R.device)
    action = torch.zeros(B, S, dtype=torch.int64, device=model.R.device)
    while True:
        new = hits.any(-1) & ~reached
        if not bool(new.any()):
            return reached, action
        action = torch.where(new, torch.where(hits, score, -torch.inf).argmax(-1), action)
        reached |= new
        enters = matmul(model.P, reached.to(model.R.dtype)).reshape(B, A, S).transpose(1, 2) > 0  # (B, S, A)
        hits |= enters & allowed


def states_text(mask: Tensor) -> str:
    """'states 0, 4, 7, 8, 9 and 12 more': the states `mask` (B, S) marks in the first MDP that has any."""
    ids = mask[mask.any(-1).nonzero()[0, 0]].nonzero().flatten().tolist()
    shown = ", ".join(map(str, ids[:5])) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"state{'s' if len(ids) > 1 else ''} {shown}"


def proper_policy(model: Model) -> Tensor:
    """A proper policy (B, S), best-rewarded where there is a choice; ValueError if some state of an
    MDP at gamma 1 can never end."""
    reached, action = _reach_end(model, torch.ones_like(model.R, dtype=torch.bool), model.R)
    stuck = ~reached & (model.gamma >= 1)[:, None]
    if bool(stuck.any()):
        raise ValueError(
            f"no policy ends the episode from {states_text(stuck)}: at gamma 1 the return there is an endless sum "
            "(mark the terminal states, or use gamma < 1)"
        )
    return action


def one_hot(model: Model, policy: Tensor) -> Tensor:
    """A deterministic policy (B, S) as the (B, S, A) mask of the actions it takes."""
    return torch.zeros_like(model.R, dtype=torch.bool).scatter_(2, policy.unsqueeze(-1), True)


def never_ends(model: Model, allowed: Tensor) -> Tensor:
    """(B, S): the states of the MDPs at gamma 1 from which the `allowed` (B, S, A) actions never end."""
    if not bool((model.gamma >= 1).any()):
        return torch.zeros_like(allowed[..., 0])
    reached, _ = _reach_end(model, allowed, model.R)
    return ~reached & (model.gamma >= 1)[:, None]


def proper_greedy(model: Model, Q: Tensor, policy: Tensor) -> Tensor:
    """At gamma 1, the greedy `policy` (B, S) made proper where Q (B, S, A) ties: bumping into a wall
    at no cost can be as good as moving on in Q, but only moving on earns V."""
    if not bool((model.gamma >= 1).any()):
        return policy
    scale = 1e-9 if Q.dtype == torch.float64 else 1e-5
    best = Q.amax(-1, keepdim=True)
    reached, action = _reach_end(model, Q >= best - scale * (1 + best.abs()), Q)
    return torch.where(reached & (model.gamma >= 1)[:, None], action, policy)


def _diverging(model: Model, used: Tensor, V_before: Tensor, V_after: Tensor) -> Tensor:
    """(B, S): the largest set of states that the actions `used` (B, S, A) never leave nor end from,
    on which the backups that took those actions raised V in every state. A nonempty set proves that
    the values are unbounded: repeating the same decisions gains at least the smallest rise per round
    forever (backups are monotone, and on a set they never leave a constant added to V comes out
    added), and switching to a proper policy after any number of rounds turns that into a return."""
    B, S, A = model.R.shape
    scale = 1e-9 if model.R.dtype == torch.float64 else 1e-5
    inside = V_after - V_before > scale * (1 + V_after.abs().amax(1, keepdim=True))  # (B, S)
    while True:
        stays = matmul(model.P, inside.to(model.R.dtype)).reshape(B, A, S).transpose(1, 2) >= 1 - ENDS
        keep = inside & (stays | ~used).all(-1)
        if torch.equal(keep, inside):
            return keep
        inside = keep


class DivergenceWatch:
    """For an iteration at gamma 1: gathers the greedy decisions of the backups and, on `check`,
    raises ValueError when those taken since the last check prove that the values diverge."""

    def __init__(self, model: Model, name: str):
        self.model, self.name = model, name
        self.V, self.used = None, torch.zeros_like(model.R, dtype=torch.bool)

    def took(self, policy: Tensor, V: Tensor) -> None:
        """A backup of V (B, S) chose `policy` (B, S)."""
        self.V = V.clone() if self.V is None else self.V
        self.used.scatter_(2, policy.unsqueeze(-1), True)

    def check(self, V: Tensor) -> None:
        """V (B, S) is what the backups since the last check made."""
        endless = _diverging(self.model, self.used, self.V, V) & (self.model.gamma >= 1)[:, None]
        if bool(endless.any()):
            raise ValueError(
                f"{self.name}: the values diverge: its decisions collect reward forever, never ending, "
                f"in {states_text(endless)} (at gamma 1 the optimal return is unbounded; use gamma < 1)"
            )
        self.V, self.used = None, torch.zeros_like(self.used)


def undiscounted_start(model: Model, V: Tensor, name: str, replace: bool) -> tuple[Tensor, DivergenceWatch | None]:
    """For the MDPs of the batch at gamma 1 (else V and None): V replaced (if `replace`) by the value
    of a proper policy, below the best proper policy's, so that the iterates rise to the latter
    (Bertsekas & Yu 2016), and a watch for divergence. ValueError if there is no proper policy."""
    undiscounted = model.gamma >= 1
    if not bool(undiscounted.any()):
        return V, None
    proper = proper_policy(model)
    if replace:
        method = "exact" if model.P.layout == torch.strided else "iterative"
        tolerance = 1e-12 if model.R.dtype == torch.float64 else 1e-6
        V = torch.where(undiscounted[:, None], evaluate(model, proper, method, tolerance, 1_000_000), V)
    return V, DivergenceWatch(model, name)
