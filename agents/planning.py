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

Gamma 1 (undiscounted episodic problems) is a stochastic shortest path problem: agents/ssp.py finds a
proper policy to start from and watches for divergence.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple

import torch

from agents import ssp
from agents.mdp_model import Model, backup, evaluate, prepare
from envs import tabular

Tensor = torch.Tensor
_CHECK_EVERY = 100  # iterations between the gamma-1 checks for divergence


class Solution(NamedTuple):
    V: Tensor  # (B, S) or (S,)
    Q: Tensor  # (B, S, A) or (S, A)
    policy: Tensor  # (B, S) or (S,) int64
    iterations: int


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
    ends the episode wherever a greedy action does (`ssp.proper_greedy`)."""
    Q = backup(model, V)  # (B, S, A)
    policy = ssp.proper_greedy(model, Q, Q.argmax(-1))
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
    Thm 6.3.5, is the synchronous one). At gamma 1 see agents/ssp.py."""
    model = prepare(P, R, gamma)
    B, S, A = model.R.shape
    V = torch.zeros(B, S, dtype=R.dtype, device=R.device) if V0 is None else V0.reshape(B, S).clone()
    V, watch = ssp.undiscounted_start(model, V, "value iteration", replace=V0 is None)
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
    V, watch = ssp.undiscounted_start(model, torch.zeros_like(model.R[..., 0]), "Q-value iteration", replace=True)
    Q = model.R.clone() if watch is None else backup(model, V)  # Q_0 = r, the backup of 0, at gamma < 1
    threshold = _threshold(model.gamma, epsilon, "sup")
    for n in range(1, max_iterations + 1):
        Q_new = backup(model, Q.amax(-1))
        change = (Q_new - Q).abs().flatten(1).amax(1)
        done = bool((change < threshold).all())
        if watch is not None:
            watch.took(Q_new.argmax(-1), Q.amax(-1))  # the backup of max Q_k chose these
            if done or n % _CHECK_EVERY == 0:
                watch.check(Q_new.amax(-1))
        Q = Q_new
        if done:
            V, policy = Q.amax(-1), ssp.proper_greedy(model, Q, Q.argmax(-1))
            return Solution(V, Q, policy, n) if model.batched else Solution(V[0], Q[0], policy[0], n)
    raise _no_convergence("Q-value iteration", model, max_iterations)


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
    endless = ssp.never_ends(model, probs > 0 if stochastic else ssp.one_hot(model, policy))
    if bool(endless.any()):
        raise ValueError(
            f"the policy never ends the episode from {ssp.states_text(endless)}: at gamma 1 its return is endless"
        )
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
        V = evaluate(model, policy, method, tolerance, max_iterations)
    return V if model.batched else V[0]


def policy_iteration(
    P: Tensor, R: Tensor, gamma: float | Tensor, evaluation: str = "exact", max_iterations: int = 10_000
) -> Solution:
    """Policy iteration (Howard 1960; Puterman Sec. 6.4): evaluate, improve greedily, repeat until
    the policy is stable. Improvement keeps the current action unless another is strictly better
    (Puterman's rule, which guarantees termination). A sparse P is evaluated iteratively. At gamma 1
    it starts from a proper policy and reports divergence (agents/ssp.py)."""
    model = prepare(P, R, gamma)
    B, S, A = model.R.shape
    method = "iterative" if model.P.layout != torch.strided else evaluation
    policy = model.R.argmax(-1)  # greedy in v = 0
    undiscounted = model.gamma >= 1  # (B,)
    if bool(undiscounted.any()):
        policy = torch.where(undiscounted[:, None], ssp.proper_policy(model), policy)
    tol = 1e-12 if R.dtype == torch.float64 else 1e-6
    for n in range(1, max_iterations + 1):
        V = evaluate(model, policy, method, tol, 1_000_000)
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
            endless = ssp.never_ends(model, ssp.one_hot(model, policy))
            if bool(endless.any()):
                raise ValueError(
                    "policy iteration: the values diverge: the improved policy collects positive reward forever, "
                    f"never ending, from {ssp.states_text(endless)} (at gamma 1 the optimal return is unbounded; "
                    "use gamma < 1)"
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
    V, watch = ssp.undiscounted_start(model, V, "modified policy iteration", replace=True)
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

    from agents.compare import plot_path_problem
    from agents.config import ConfigError

    if method not in METHODS:
        near = difflib.get_close_matches(method, METHODS, n=1, cutoff=0.3)
        hint = f": did you mean {near[0]}?" if near else ""
        raise ConfigError(f"unknown planning method {method!r}{hint} (methods: {', '.join(METHODS)})")
    if (env is None) == (mdp_file is None):
        raise ConfigError(
            "give exactly one of --env ENV or --mdp FILE.npz: e.g. rl plan value-iteration --env FrozenLake-v1"
        )
    if plot is not None and (why := plot_path_problem(Path(plot))):
        raise ConfigError(f"--plot {str(plot)!r}: {why}")
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
