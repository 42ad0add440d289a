"""Exact planners for tabular MDPs, as pure torch functions on CPU or CUDA.

Notation (Puterman 1994, *Markov Decision Processes*): S states, A actions, discount gamma.
- `P`: transition probabilities, dense (A, S, S) or (B, A, S, S), or a torch sparse tensor (A, S, S)
  (COO) or (A*S, S) (CSR or COO, row a*S + s), never densified. Rows may sum to less than 1: the
  missing mass is the probability that the episode ends, after which nothing is bootstrapped
  (envs.tabular.TabularMDP.planning_tensors zeroes the columns of terminal states).
- `R`: expected reward r(s, a), (S, A) or (B, S, A).
- `gamma`: a float or a (B,) tensor: one MDP at many discounts in one call.
The batch B is the broadcast of P's, R's and gamma's; a sparse P is shared by the whole batch.
Every solver returns a `Solution` with V (B, S), Q (B, S, A), policy (B, S) (or without B when
nothing was batched) and the number of iterations the whole batch ran.

Stopping (Puterman Thm 6.3.1 and Sec. 6.6.3): value iteration stops when
- `stop="sup"`:  ||v_{n+1} - v_n||_inf < epsilon (1 - gamma) / (2 gamma), or
- `stop="span"`: sp(v_{n+1} - v_n) < epsilon (1 - gamma) / gamma, sp(x) = max x - min x,
and then the policy greedy in v_{n+1} is epsilon-optimal: v* - v_pi <= epsilon in every state
(Thm 6.3.1 c; Thm 6.6.6 for the span; both also hold for modified policy iteration, Thm 6.5.9).
The span bound needs stochastic rows, so where the episode can end the absorbing end state's
difference (0) takes part in the span, which keeps the bound valid.

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

import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import NamedTuple

import torch

from envs import tabular

Tensor = torch.Tensor
_ENDS = 1e-6  # a row of P summing to less than 1 - _ENDS can end the episode (load_npz's tolerance for 1)
_CHECK_EVERY = 100  # iterations between the gamma-1 checks for divergence


class Solution(NamedTuple):
    V: Tensor  # (B, S) or (S,)
    Q: Tensor  # (B, S, A) or (S, A)
    policy: Tensor  # (B, S) or (S,) int64
    iterations: int


class Model(NamedTuple):
    """An MDP prepared once for repeated backups: P as a (A*S, S) matrix, dense or sparse CSR."""

    P: Tensor  # dense (1 or B, A*S, S) or sparse CSR (A*S, S)
    R: Tensor  # (B, S, A)
    gamma: Tensor  # (B,)
    leak: Tensor  # (B,) bool: some row sums to less than 1 (episodes can end)
    row_sums: Tensor  # (1 or B, S, A): sum_s' P(s'|s, a), so that backup(V + c) = backup(V) + gamma c row_sums
    batched: bool  # whether the caller passed a batch (outputs keep the B axis)


def prepare(P: Tensor, R: Tensor, gamma: float | Tensor) -> Model:
    """Reshape P to (A*S, S) rows (sparse: CSR, built from COO indices in O(nnz)), broadcast the batch."""
    batched = R.dim() == 3 or (P.dim() == 4) or (torch.is_tensor(gamma) and gamma.dim() == 1)
    S, A = R.shape[-2:]
    if P.is_sparse or P.layout == torch.sparse_csr:
        if P.dim() == 3:  # (A, S, S) COO -> (A*S, S): row = a*S + s
            P = P.coalesce()
            a, s, s2 = P.indices()
            P = torch.sparse_coo_tensor(torch.stack([a * S + s, s2]), P.values(), (A * S, S), check_invariants=False)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is all we use
            warnings.simplefilter("ignore", UserWarning)
            P = P.to_sparse_csr() if P.layout != torch.sparse_csr else P
    else:
        P = P.reshape(-1, A * S, S) if P.dim() == 4 else P.reshape(1, A * S, S)
    row_sums = _matmul(P, torch.ones(1, S, dtype=R.dtype, device=R.device))  # (1 or B, A*S)
    B = max(
        P.shape[0] if P.layout == torch.strided else 1,
        R.shape[0] if R.dim() == 3 else 1,
        gamma.numel() if torch.is_tensor(gamma) else 1,
    )
    gamma = torch.as_tensor(gamma, dtype=R.dtype, device=R.device).reshape(-1).expand(B)
    leak = (row_sums < 1 - _ENDS).any(-1).expand(B)
    row_sums = row_sums.reshape(-1, A, S).transpose(1, 2)
    return Model(P, R.reshape(-1, S, A).expand(B, S, A), gamma, leak, row_sums, batched)


def _matmul(P: Tensor, V: Tensor) -> Tensor:
    """P V for every row a*S + s: dense (1 or B, A*S, S) or sparse (A*S, S) P, V (B, S) -> (B, A*S)."""
    if P.layout != torch.strided:
        return (P @ V.T.contiguous()).T
    if P.shape[0] == 1:  # one P for the whole batch: a single pass over its bytes serves every column
        return _rows_in_parallel(P[0], V.T).T
    return (P @ V.unsqueeze(-1)).squeeze(-1)


_POOL: ThreadPoolExecutor | None = None


def _rows_in_parallel(M: Tensor, X: Tensor) -> Tensor:
    """M (N, S) @ X (S, B) with the rows split over torch's CPU threads when B is small: MKL's
    matrix-vector product runs on one thread, and one core does not saturate memory bandwidth
    (S=2000, A=8 float64 on 2 cores: 14-19 ms on one thread, 9 ms split; scripts/bench_planning.py)."""
    threads = torch.get_num_threads()
    if M.device.type != "cpu" or threads == 1 or X.shape[1] > 4 or M.shape[0] < 4096 * threads:
        return M @ X
    global _POOL
    if _POOL is None or _POOL._max_workers != threads:
        _POOL = ThreadPoolExecutor(threads, thread_name_prefix="planning")
    out = torch.empty(M.shape[0], X.shape[1], dtype=torch.promote_types(M.dtype, X.dtype))
    jobs = [_POOL.submit(torch.mm, rows, X, out=part) for rows, part in zip(M.chunk(threads), out.chunk(threads))]
    for job in jobs:
        job.result()  # torch ops release the GIL: the chunks run at once
    return out


def backup(model: Model, V: Tensor) -> Tensor:
    """One Bellman backup (Puterman eq. 6.2.1): Q(s, a) = r(s, a) + gamma sum_s' P(s'|s, a) V(s').
    V (B, S) -> Q (B, S, A)."""
    B, S, A = model.R.shape
    PV = _matmul(model.P, V)  # (B, A*S)
    return model.R + model.gamma[:, None, None] * PV.reshape(B, A, S).transpose(1, 2)


def bellman_backup(P: Tensor, R: Tensor, gamma: float | Tensor, V: Tensor) -> Tensor:
    """Q = R + gamma P V for raw tensors: P (A, S, S), R (S, A), V (S,) -> Q (S, A); batched alike."""
    model = prepare(P, R, gamma)
    Q = backup(model, V.reshape(-1, R.shape[-2]).expand(model.R.shape[0], -1))
    return Q if model.batched else Q[0]


def _threshold(gamma: Tensor, epsilon: float, stop: str) -> Tensor:
    """The change below which the greedy policy is epsilon-optimal (module docstring)."""
    if stop not in ("sup", "span"):
        raise ValueError(f"stop must be 'sup' or 'span', not {stop!r}")
    factor = 1.0 if stop == "span" else 0.5
    return torch.where(
        gamma < 1, epsilon * factor * (1 - gamma) / gamma.clamp_min(1e-12), torch.full_like(gamma, epsilon)
    )


def _change(model: Model, diff: Tensor, stop: str) -> Tensor:
    """Per-MDP sup-norm or span of diff (B, S); the span counts the end state's 0 where episodes end."""
    if stop == "sup":
        return diff.abs().amax(1)
    zero = torch.zeros_like(diff[:, 0])
    hi, lo = diff.amax(1), diff.amin(1)
    return torch.where(model.leak, torch.maximum(hi, zero), hi) - torch.where(model.leak, torch.minimum(lo, zero), lo)


def _finish(model: Model, V: Tensor, iterations: int, diff: Tensor | None = None) -> Solution:
    """Greedy policy in V (B, S). With the span rule, `diff` = L v - v moves V to the middle of
    Puterman's bounds (Prop. 6.6.1): v* lies in Lv + gamma/(1-gamma) [min diff, max diff]; one more
    backup of that midpoint is reported (Q, and V = max Q), within gamma epsilon/2 of v*. The policy
    stays greedy in the last iterate, the one the epsilon-optimality theorem is about; at gamma 1 it
    ends the episode wherever a greedy action does (`_proper_greedy`)."""
    Q = backup(model, V)  # (B, S, A)
    policy = _proper_greedy(model, Q, Q.argmax(-1))
    if diff is not None:
        g = model.gamma.clamp_max(1 - 1e-12)
        zero = torch.zeros_like(diff[:, 0])
        hi = torch.where(model.leak, torch.maximum(diff.amax(1), zero), diff.amax(1))
        lo = torch.where(model.leak, torch.minimum(diff.amin(1), zero), diff.amin(1))
        shift = torch.where(model.gamma < 1, g / (1 - g) * (hi + lo) / 2, torch.zeros_like(g))
        Q = Q + (model.gamma * shift)[:, None, None] * model.row_sums  # = backup(V + shift), no pass over P
        V = Q.amax(-1)  # L of the midpoint is within gamma epsilon/2 of v*, and exactly 0 in terminal states
    if not model.batched:
        return Solution(V[0], Q[0], policy[0], iterations)
    return Solution(V, Q, policy, iterations)


# ---------------------------------------------------------------------------------------------- gamma 1
def _reach_end(model: Model, allowed: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """Backward reachability of the end through the `allowed` (B, S, A) actions. Returns which states
    (B, S) can end with positive probability and, per state, the allowed action of highest `score`
    (B, S, A) among those that end or enter a state found in an earlier round: following those, every
    step has a positive chance of coming closer to the end, so the policy is proper where reached."""
    B, S, A = model.R.shape
    hits = (model.row_sums < 1 - _ENDS).expand(B, S, A) & allowed  # (B, S, A): the rows that can end at once
    reached = torch.zeros(B, S, dtype=torch.bool, device=model.R.device)
    action = torch.zeros(B, S, dtype=torch.int64, device=model.R.device)
    while True:
        new = hits.any(-1) & ~reached
        if not bool(new.any()):
            return reached, action
        action = torch.where(new, torch.where(hits, score, -torch.inf).argmax(-1), action)
        reached |= new
        enters = _matmul(model.P, reached.to(model.R.dtype)).reshape(B, A, S).transpose(1, 2) > 0  # (B, S, A)
        hits |= enters & allowed


def _states(mask: Tensor) -> str:
    """'states 0, 4, 7, 8, 9 and 12 more': the states `mask` (B, S) marks in the first MDP that has any."""
    ids = mask[mask.any(-1).nonzero()[0, 0]].nonzero().flatten().tolist()
    shown = ", ".join(map(str, ids[:5])) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"state{'s' if len(ids) > 1 else ''} {shown}"


def _proper_policy(model: Model) -> Tensor:
    """A proper policy (B, S), best-rewarded where there is a choice; ValueError if some state of an
    MDP at gamma 1 can never end."""
    reached, action = _reach_end(model, torch.ones_like(model.R, dtype=torch.bool), model.R)
    stuck = ~reached & (model.gamma >= 1)[:, None]
    if bool(stuck.any()):
        raise ValueError(
            f"no policy ends the episode from {_states(stuck)}: at gamma 1 the return there is an endless sum "
            "(mark the terminal states, or use gamma < 1)"
        )
    return action


def _one_hot(model: Model, policy: Tensor) -> Tensor:
    """A deterministic policy (B, S) as the (B, S, A) mask of the actions it takes."""
    return torch.zeros_like(model.R, dtype=torch.bool).scatter_(2, policy.unsqueeze(-1), True)


def _never_ends(model: Model, allowed: Tensor) -> Tensor:
    """(B, S): the states of the MDPs at gamma 1 from which the `allowed` (B, S, A) actions never end."""
    if not bool((model.gamma >= 1).any()):
        return torch.zeros_like(allowed[..., 0])
    reached, _ = _reach_end(model, allowed, model.R)
    return ~reached & (model.gamma >= 1)[:, None]


def _proper_greedy(model: Model, Q: Tensor, policy: Tensor) -> Tensor:
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
        stays = _matmul(model.P, inside.to(model.R.dtype)).reshape(B, A, S).transpose(1, 2) >= 1 - _ENDS
        keep = inside & (stays | ~used).all(-1)
        if torch.equal(keep, inside):
            return keep
        inside = keep


class _DivergenceWatch:
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
                f"in {_states(endless)} (at gamma 1 the optimal return is unbounded; use gamma < 1)"
            )
        self.V, self.used = None, torch.zeros_like(self.used)


def _undiscounted_start(model: Model, V: Tensor, name: str, replace: bool) -> tuple[Tensor, _DivergenceWatch | None]:
    """For the MDPs of the batch at gamma 1 (else V and None): V replaced (if `replace`) by the value
    of a proper policy, below the best proper policy's, so that the iterates rise to the latter
    (Bertsekas & Yu 2016), and a watch for divergence. ValueError if there is no proper policy."""
    undiscounted = model.gamma >= 1
    if not bool(undiscounted.any()):
        return V, None
    proper = _proper_policy(model)
    if replace:
        method = "exact" if model.P.layout == torch.strided else "iterative"
        tolerance = 1e-12 if model.R.dtype == torch.float64 else 1e-6
        V = torch.where(undiscounted[:, None], _evaluate(model, proper, method, tolerance, 1_000_000), V)
    return V, _DivergenceWatch(model, name)


def _no_convergence(name: str, model: Model, iterations: int) -> RuntimeError:
    hint = " (at gamma 1 the values may oscillate forever; try gamma < 1)" if bool((model.gamma >= 1).any()) else ""
    return RuntimeError(f"{name} did not meet its stopping rule in {iterations} iterations{hint}")


# ---------------------------------------------------------------------------------------------- planners
def value_iteration(
    P: Tensor,
    R: Tensor,
    gamma: float | Tensor,
    epsilon: float = 0.01,
    stop: str = "span",
    max_iterations: int = 100_000,
    gauss_seidel: bool = False,
    V0: Tensor | None = None,
) -> Solution:
    """Value iteration (Puterman Sec. 6.3): v_{n+1} = max_a [r + gamma P v_n] until the stopping rule.

    `gauss_seidel=True` updates the states in place, in order, each backup using the values of the
    states already updated this sweep (Puterman Sec. 6.3.3); it converges in fewer sweeps, one
    state's row at a time (slow in Python for large S), and stops by the sup norm only (its bound,
    Thm 6.3.5, is the synchronous one). At gamma 1 see the module docstring."""
    model = prepare(P, R, gamma)
    B, S, A = model.R.shape
    V = torch.zeros(B, S, dtype=R.dtype, device=R.device) if V0 is None else V0.reshape(B, S).clone()
    V, watch = _undiscounted_start(model, V, "value iteration", replace=V0 is None)
    from_zero = V0 is None and watch is None
    threshold = _threshold(model.gamma, epsilon, "sup" if gauss_seidel else stop)
    for n in range(1, max_iterations + 1):
        if gauss_seidel:
            V_new, policy = _gauss_seidel_sweep(model, V)
        else:
            Q = model.R if n == 1 and from_zero else backup(model, V)  # L 0 = max_a r(s, a): no pass over P
            V_new = Q.amax(-1)
            policy = Q.argmax(-1) if watch is not None else None
        if watch is not None:
            watch.took(policy, V)
        diff = V_new - V
        V = V_new
        done = bool((_change(model, diff, "sup" if gauss_seidel else stop) < threshold).all())
        if watch is not None and (done or n % _CHECK_EVERY == 0):
            watch.check(V)
        if done:
            return _finish(model, V, n, diff if stop == "span" and not gauss_seidel else None)
    raise _no_convergence("value iteration", model, max_iterations)


def _gauss_seidel_sweep(model: Model, V: Tensor) -> tuple[Tensor, Tensor]:
    """One in-place sweep over the states in index order. V (B, S) -> new V (B, S) and the action
    (B, S) each state's backup chose."""
    B, S, A = model.R.shape
    V, P = V.clone(), model.P
    policy = torch.zeros(B, S, dtype=torch.int64, device=V.device)
    for s in range(S):
        rows = torch.arange(A, device=V.device) * S + s  # the rows a*S + s of state s
        if P.layout == torch.strided:
            PV = (P[:, rows] @ V.unsqueeze(-1)).squeeze(-1) if P.shape[0] > 1 else (P[0, rows] @ V.T).T  # (B, A)
        else:  # only the row's nonzeros are read
            crow, col, val = P.crow_indices(), P.col_indices(), P.values()
            PV = torch.stack([V[:, col[crow[i] : crow[i + 1]]] @ val[crow[i] : crow[i + 1]] for i in rows.tolist()], 1)
        V[:, s], policy[:, s] = (model.R[:, s] + model.gamma[:, None] * PV).max(-1)
    return V, policy


def q_value_iteration(
    P: Tensor, R: Tensor, gamma: float | Tensor, epsilon: float = 0.01, max_iterations: int = 100_000
) -> Solution:
    """Q-value iteration: Q_{k+1}(s, a) = r(s, a) + gamma sum_s' P(s'|s, a) max_a' Q_k(s', a').

    Stops when ||Q_{k+1} - Q_k||_inf < epsilon (1 - gamma) / (2 gamma); since max_a Q_k is the value
    iterate v_k, this is the sup-norm rule of value iteration and the greedy policy is epsilon-optimal."""
    model = prepare(P, R, gamma)
    V, watch = _undiscounted_start(model, torch.zeros_like(model.R[..., 0]), "Q-value iteration", replace=True)
    Q = model.R.clone() if watch is None else backup(model, V)  # Q_0 = r, the backup of 0, at gamma < 1
    threshold = _threshold(model.gamma, epsilon, "sup")
    for n in range(1, max_iterations + 1):
        Q_new = backup(model, Q.amax(-1))
        change = (Q_new - Q).abs().flatten(1).amax(1)
        done = bool((change < threshold).all())
        if watch is not None:
            watch.took(Q.argmax(-1), Q.amax(-1))
            if done or n % _CHECK_EVERY == 0:
                watch.check(Q_new.amax(-1))
        Q = Q_new
        if done:
            V, policy = Q.amax(-1), _proper_greedy(model, Q, Q.argmax(-1))
            return Solution(V, Q, policy, n) if model.batched else Solution(V[0], Q[0], policy[0], n)
    raise _no_convergence("Q-value iteration", model, max_iterations)


def _policy_rows(model: Model, policy: Tensor) -> tuple[Tensor, Tensor]:
    """P_pi (B, S, S) and r_pi (B, S) of a deterministic policy (B, S), from a dense P."""
    B, S, A = model.R.shape
    rows = policy * S + torch.arange(S, device=policy.device)  # (B, S): row a*S + s
    P = model.P.expand(B, -1, -1)
    P_pi = torch.gather(P, 1, rows.unsqueeze(-1).expand(B, S, S))  # (B, S, S)
    r_pi = model.R.gather(2, policy.unsqueeze(-1)).squeeze(-1)  # (B, S)
    return P_pi, r_pi


def _evaluate(model: Model, policy: Tensor, method: str, tolerance: float, max_iterations: int) -> Tensor:
    """V_pi (B, S) of a deterministic policy (B, S)."""
    B, S, A = model.R.shape
    if method == "exact":
        if model.P.layout != torch.strided:
            raise ValueError(
                "exact policy evaluation solves a dense linear system: use method='iterative' for a sparse P"
            )
        P_pi, r_pi = _policy_rows(model, policy)
        eye = torch.eye(S, dtype=P_pi.dtype, device=P_pi.device)
        return torch.linalg.solve(eye - model.gamma[:, None, None] * P_pi, r_pi)  # (I - gamma P_pi)^-1 r_pi
    if method != "iterative":
        raise ValueError(f"method must be 'exact' or 'iterative', not {method!r}")
    V = torch.zeros(B, S, dtype=model.R.dtype, device=model.R.device)
    for _ in range(max_iterations):  # v <- r_pi + gamma P_pi v (Puterman eq. 6.2.8), a gamma-contraction
        V_new = backup(model, V).gather(2, policy.unsqueeze(-1)).squeeze(-1)
        done = bool(((V_new - V).abs().amax(1) < tolerance).all())
        V = V_new
        if done:
            return V
    raise RuntimeError(f"iterative policy evaluation did not converge in {max_iterations} iterations")


def policy_evaluation(
    P: Tensor,
    R: Tensor,
    gamma: float | Tensor,
    policy: Tensor,
    method: str = "exact",
    tolerance: float = 1e-10,
    max_iterations: int = 1_000_000,
) -> Tensor:
    """V_pi of a policy: deterministic (S,) actions or stochastic (S, A) probabilities (batched alike).

    exact: solves (I - gamma P_pi) V = r_pi (Puterman Thm 6.1.1); needs a dense P. iterative:
    V <- r_pi + gamma P_pi V until the change is below `tolerance` in sup norm (then
    ||V - V_pi|| < tolerance gamma / (1 - gamma)). At gamma 1 the policy must be proper (ValueError)."""
    model = prepare(P, R, gamma)
    B, S, A = model.R.shape
    stochastic = policy.is_floating_point()
    if stochastic:
        probs = policy.to(model.R.dtype).reshape(-1, S, A).expand(B, S, A)
    else:
        policy = policy.reshape(-1, S).expand(B, S)
    endless = _never_ends(model, probs > 0 if stochastic else _one_hot(model, policy))
    if bool(endless.any()):
        raise ValueError(f"the policy never ends the episode from {_states(endless)}: at gamma 1 its return is endless")
    if stochastic:  # average the actions' rows and rewards
        if method == "exact":
            if model.P.layout != torch.strided:
                raise ValueError("exact policy evaluation solves a dense linear system: use method='iterative'")
            P_full = model.P.expand(B, -1, -1).reshape(B, A, S, S)
            P_pi = torch.einsum("bsa,bast->bst", probs, P_full)  # (B, S, S)
            r_pi = (probs * model.R).sum(-1)
            eye = torch.eye(S, dtype=P_pi.dtype, device=P_pi.device)
            V = torch.linalg.solve(eye - model.gamma[:, None, None] * P_pi, r_pi)
        else:
            V = torch.zeros(B, S, dtype=R.dtype, device=R.device)
            for _ in range(max_iterations):
                V_new = (backup(model, V) * probs).sum(-1)
                done = bool(((V_new - V).abs().amax(1) < tolerance).all())
                V = V_new
                if done:
                    break
            else:
                raise RuntimeError(f"iterative policy evaluation did not converge in {max_iterations} iterations")
    else:
        V = _evaluate(model, policy, method, tolerance, max_iterations)
    return V if model.batched else V[0]


def policy_iteration(
    P: Tensor, R: Tensor, gamma: float | Tensor, evaluation: str = "exact", max_iterations: int = 10_000
) -> Solution:
    """Policy iteration (Howard 1960; Puterman Sec. 6.4): evaluate, improve greedily, repeat until
    the policy is stable. Improvement keeps the current action unless another is strictly better
    (Puterman's rule, which guarantees termination). A sparse P is evaluated iteratively. At gamma 1
    it starts from a proper policy and reports divergence (module docstring)."""
    model = prepare(P, R, gamma)
    B, S, A = model.R.shape
    method = "iterative" if model.P.layout != torch.strided else evaluation
    policy = model.R.argmax(-1)  # greedy in v = 0
    undiscounted = model.gamma >= 1  # (B,)
    if bool(undiscounted.any()):
        policy = torch.where(undiscounted[:, None], _proper_policy(model), policy)
    tol = 1e-12 if R.dtype == torch.float64 else 1e-6
    for n in range(1, max_iterations + 1):
        V = _evaluate(model, policy, method, tol, 1_000_000)
        Q = backup(model, V)
        current = Q.gather(2, policy.unsqueeze(-1)).squeeze(-1)
        scale = 1e-9 if R.dtype == torch.float64 else 1e-5
        better = Q.amax(-1) > current + scale * (1 + current.abs())
        if not bool(better.any()):
            return _finish(model, V, n)
        policy = torch.where(better, Q.argmax(-1), policy)
        if bool(undiscounted.any()):
            # On a set the improved policy never leaves, the stationary average of Q(s, policy(s)) - V(s)
            # (>= 0, > 0 where the action changed) is its average reward: only a positive cycle is improper.
            endless = _never_ends(model, _one_hot(model, policy))
            if bool(endless.any()):
                raise ValueError(
                    f"policy iteration: the values diverge: the improved policy collects positive reward forever, "
                    f"never ending, from {_states(endless)} (at gamma 1 the optimal return is unbounded; use gamma < 1)"
                )
    raise RuntimeError(f"policy iteration did not stabilise in {max_iterations} iterations")


def modified_policy_iteration(
    P: Tensor,
    R: Tensor,
    gamma: float | Tensor,
    epsilon: float = 0.01,
    stop: str = "span",
    evaluation_steps: int = 20,
    max_iterations: int = 100_000,
) -> Solution:
    """Modified policy iteration (Puterman Sec. 6.5, Puterman & Shin 1978): improve greedily, then
    apply the policy's own backup `evaluation_steps` times instead of solving for its value.

    Starts from v0 = min(min r, 0) / (1 - gamma), below v*, so the iterates increase to v*
    (Puterman Thm 6.5.5); at gamma 1 from the value of a proper policy, also below v*. The stopping
    rule is value iteration's, checked on u = L v_n - v_n."""
    model = prepare(P, R, gamma)
    B, S, A = model.R.shape
    low = model.R.amin((1, 2)).clamp_max(0) / (1 - model.gamma).clamp_min(1e-12)  # (B,)
    V = low[:, None].expand(B, S).clone()
    V, watch = _undiscounted_start(model, V, "modified policy iteration", replace=True)
    threshold = _threshold(model.gamma, epsilon, stop)
    for n in range(1, max_iterations + 1):
        Q = backup(model, V)
        policy = Q.argmax(-1)  # (B, S)
        U = Q.amax(-1)  # L v_n
        done = bool((_change(model, U - V, stop) < threshold).all())
        if watch is not None:
            watch.took(policy, V)
            if done or n % _CHECK_EVERY == 0:
                watch.check(U)
        if done:
            return _finish(model, U, n, U - V if stop == "span" else None)
        V = U
        for _ in range(evaluation_steps):  # (L_pi)^m: partial evaluation of the greedy policy
            V = backup(model, V).gather(2, policy.unsqueeze(-1)).squeeze(-1)
    raise _no_convergence("modified policy iteration", model, max_iterations)


def finite_horizon(P: Tensor, R: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
    """Backward induction, undiscounted (Puterman Sec. 4.5): V_h = max_a [r + P V_{h-1}], V_0 = 0.
    Returns V_horizon (S,) (the best expected return with `horizon` steps left) and the first
    decision rule (S,) int64."""
    model = prepare(P, R, 1.0)
    V = torch.zeros(1, R.shape[-2], dtype=R.dtype, device=R.device)
    Q = model.R
    for _ in range(horizon):
        Q = backup(model, V)
        V = Q.amax(-1)
    return V[0], Q[0].argmax(-1)


METHODS = {
    "value-iteration": value_iteration,
    "policy-iteration": policy_iteration,
    "modified-policy-iteration": modified_policy_iteration,
    "q-value-iteration": q_value_iteration,
}


def solve(method: str, P: Tensor, R: Tensor, gamma: float, epsilon: float = 1e-6) -> Solution:
    """The planner named as on the command line (`rl plan METHOD`); epsilon does not apply to PI."""
    if method == "policy-iteration":
        return policy_iteration(P, R, gamma)
    return METHODS[method](P, R, gamma, epsilon=epsilon)


@cache
def optimal_return(env_name: str) -> float | None:
    """The best expected undiscounted return from the start distribution within the env's time limit
    (`max_episode_steps`), on the scale of `eval/episodic_return`; None for a non-tabular env.

    Finite-horizon backward induction with gamma 1 and horizon = max_episode_steps (Puterman Sec. 4.5),
    since logged returns are undiscounted sums cut at the time limit. Without a time limit
    (CliffWalking-v1) it is the undiscounted optimum of value iteration at gamma 1. Agents evaluate
    with a little exploration (eval_epsilon), so their returns sit somewhat below it."""
    if env_name not in tabular.TOY_TEXT:
        return None
    import gymnasium as gym

    mdp = tabular.from_gymnasium(env_name)
    P, R = mdp.planning_tensors()
    horizon = gym.spec(env_name).max_episode_steps
    if horizon is None:
        V = value_iteration(P, R, 1.0, epsilon=1e-9, stop="sup").V
    else:
        V, _ = finite_horizon(P, R, horizon)
    return float(mdp.start @ V)


def plan(method: str, env: str | None, mdp_file=None, gamma: float | None = None, plot=None):
    """`rl plan`: solve the MDP `env` names (or the user's .npz `mdp_file`) with `method` at `gamma` (default: the
    MDP's own). Returns (model, solution, gamma); bad input is one ConfigError line."""
    import difflib

    from agents.config import ConfigError

    if method not in METHODS:
        near = difflib.get_close_matches(method, METHODS, n=1, cutoff=0.3)
        hint = f": did you mean {near[0]}?" if near else ""
        raise ConfigError(f"unknown planning method {method!r}{hint} (methods: {', '.join(METHODS)})")
    if (env is None) == (mdp_file is None):
        raise ConfigError(
            "give exactly one of --env ENV or --mdp FILE.npz: e.g. rl plan value-iteration --env FrozenLake-v1"
        )
    if plot is not None:
        _check_plot_path(Path(plot))
    model = tabular.make_mdp(env) if env is not None else tabular.load_npz(mdp_file)
    gamma = model.gamma if gamma is None else gamma
    if not 0 < gamma <= 1:
        raise ConfigError(f"--gamma {gamma} is outside (0, 1]: e.g. --gamma 0.99")
    if plot is not None and model.grid is None:
        raise ConfigError(f"--plot draws grid worlds; {model.name} has no grid (try --env FrozenLake-v1 or GridWorld)")
    P, R = model.planning_tensors()
    try:
        return model, solve(method, P, R, gamma), gamma
    except (ValueError, RuntimeError, torch.linalg.LinAlgError) as e:  # e.g. gamma 1 without a proper policy
        raise ConfigError(f"{method} at gamma {gamma} failed on {model.name}: {str(e).splitlines()[0]}") from None


def _check_plot_path(path: Path) -> None:
    """ConfigError unless matplotlib can write `path`: a picture format it knows, in a folder that exists."""
    import difflib

    from matplotlib.backend_bases import FigureCanvasBase

    from agents.config import ConfigError

    formats = [f".{f}" for f in FigureCanvasBase.get_supported_filetypes()]
    if path.suffix.lower() not in formats:
        near = difflib.get_close_matches(path.suffix.lower(), formats, n=1, cutoff=0.5)
        what = f"unknown picture format {path.suffix!r}" if path.suffix else "no picture format (file extension)"
        hint = f", did you mean {near[0]}?" if near else ""
        raise ConfigError(f"--plot {str(path)!r}: {what}{hint} (formats: {' '.join(formats)}): e.g. --plot values.png")
    if not path.parent.is_dir():
        raise ConfigError(f"--plot {str(path)!r}: there is no folder {str(path.parent)!r} to write it in")
