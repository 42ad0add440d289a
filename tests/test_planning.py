"""Exact planners (agents/planning.py) against closed forms, each other, sparse P, batches and devices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import invoke, ok

from agents import planning as pl

torch.set_num_threads(1)


def two_state_mdp():
    """Two states, two actions. Action 0 stays (reward 1 in state 0, 0 in state 1); action 1 moves
    to the other state with prob 0.8 (reward 0 from state 0, 2 from state 1).
    P (A, S, S), R (S, A)."""
    P = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.2, 0.8], [0.8, 0.2]]], dtype=torch.float64)
    R = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    return P, R


def random_mdp(S: int, A: int, seed: int, leak: float = 0.0, density: float = 0.3):
    """Random sparse-ish rows (about `density` of the entries nonzero), rows summing to 1 - leak."""
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(A, S, S, generator=g, dtype=torch.float64) * (torch.rand(A, S, S, generator=g) < density)
    P[..., 0] += 1e-3  # no empty row
    P = P / P.sum(-1, keepdim=True) * (1 - leak)
    R = torch.randn(S, A, generator=g, dtype=torch.float64)
    return P, R


def closed_form(P, R, gamma, policy):
    """V_pi = (I - gamma P_pi)^-1 r_pi, in numpy."""
    S = R.shape[0]
    P_pi = np.stack([P[policy[s], s].numpy() for s in range(S)])
    r_pi = np.array([R[s, policy[s]].item() for s in range(S)])
    return np.linalg.solve(np.eye(S) - gamma * P_pi, r_pi)


def test_bellman_backup_by_hand():
    P, R = two_state_mdp()
    Q = pl.bellman_backup(P, R, 0.5, torch.tensor([2.0, 4.0], dtype=torch.float64))
    # Q(0,0) = 1 + .5*2 = 2; Q(0,1) = 0 + .5*(.2*2 + .8*4) = 1.8
    # Q(1,0) = 0 + .5*4 = 2; Q(1,1) = 2 + .5*(.8*2 + .2*4) = 3.2
    assert torch.allclose(Q, torch.tensor([[2.0, 1.8], [2.0, 3.2]], dtype=torch.float64))


def test_two_state_optimum_in_closed_form():
    """Enumerate the 4 deterministic policies in closed form; every planner finds the best one."""
    P, R = two_state_mdp()
    gamma = 0.9
    values = {pi: closed_form(P, R, gamma, pi) for pi in [(0, 0), (0, 1), (1, 0), (1, 1)]}
    best = max(values, key=lambda pi: values[pi].sum())
    assert all((values[best] >= v - 1e-12).all() for v in values.values())  # one policy dominates
    exact = pl.policy_evaluation(P, R, gamma, torch.tensor(best))
    assert np.allclose(exact.numpy(), values[best], atol=1e-12)
    for method in pl.METHODS:
        sol = pl.solve(method, P, R, gamma, epsilon=1e-8)
        assert tuple(sol.policy.tolist()) == best, method
        assert np.allclose(sol.V.numpy(), values[best], atol=1e-7), method


@pytest.mark.parametrize("leak", [0.0, 0.05])
@pytest.mark.parametrize("stop", ["span", "sup"])
@pytest.mark.parametrize("epsilon", [1.0, 1e-2])
def test_stopping_rules_give_epsilon_optimal_policies(stop, epsilon, leak):
    """Puterman Thm 6.3.1 / 6.6.6: the greedy policy at the stop is epsilon-optimal, and the reported
    V is within epsilon/2 of v*. leak > 0: episodes end with prob 0.05 a step (substochastic rows)."""
    P, R = random_mdp(40, 5, seed=3, leak=leak)
    gamma = 0.95
    v_star = pl.policy_iteration(P, R, gamma).V
    for sol in (
        pl.value_iteration(P, R, gamma, epsilon, stop),
        pl.modified_policy_iteration(P, R, gamma, epsilon, stop),
    ):
        v_pi = pl.policy_evaluation(P, R, gamma, sol.policy)
        assert (v_star - v_pi).max() <= epsilon
        assert (sol.V - v_star).abs().max() <= epsilon / 2


def test_planners_agree_on_random_mdps():
    P, R = random_mdp(60, 4, seed=0, leak=0.02)
    gamma = 0.9
    pi = pl.policy_iteration(P, R, gamma)
    assert np.allclose(pi.V.numpy(), closed_form(P, R, gamma, pi.policy.tolist()), atol=1e-10)
    for sol in (
        pl.value_iteration(P, R, gamma, 1e-9),
        pl.value_iteration(P, R, gamma, 1e-9, gauss_seidel=True),
        pl.modified_policy_iteration(P, R, gamma, 1e-9),
        pl.q_value_iteration(P, R, gamma, 1e-9),
    ):
        assert torch.equal(sol.policy, pi.policy)
        assert (sol.V - pi.V).abs().max() < 1e-8
        assert torch.allclose(sol.Q.amax(-1), sol.V, atol=1e-8)
    iterative = pl.policy_evaluation(P, R, gamma, pi.policy, method="iterative", tolerance=1e-12)
    assert (iterative - pi.V).abs().max() < 1e-9


def test_gauss_seidel_needs_fewer_sweeps_than_jacobi():
    P, R = random_mdp(50, 3, seed=5)
    sync = pl.value_iteration(P, R, 0.95, 1e-6, stop="sup")
    gs = pl.value_iteration(P, R, 0.95, 1e-6, gauss_seidel=True)
    assert gs.iterations < sync.iterations


def test_stochastic_policy_evaluation_matches_the_mixture():
    P, R = random_mdp(20, 3, seed=1)
    probs = torch.softmax(torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), -1)
    P_pi = torch.einsum("sa,ast->st", probs, P).numpy()
    expected = np.linalg.solve(np.eye(20) - 0.9 * P_pi, (probs * R).sum(-1).numpy())
    assert np.allclose(pl.policy_evaluation(P, R, 0.9, probs).numpy(), expected, atol=1e-10)
    assert np.allclose(pl.policy_evaluation(P, R, 0.9, probs, method="iterative").numpy(), expected, atol=1e-8)


def test_dense_and_sparse_agree_and_sparse_stays_sparse():
    P, R = random_mdp(80, 4, seed=2, leak=0.01, density=0.05)
    sparse = P.to_sparse()
    model = pl.prepare(sparse, R, 0.9)
    assert model.P.layout == torch.sparse_csr and model.P.values().numel() == int((P != 0).sum())
    for method in pl.METHODS:
        dense_sol, sparse_sol = pl.solve(method, P, R, 0.9, 1e-9), pl.solve(method, sparse, R, 0.9, 1e-9)
        assert torch.equal(dense_sol.policy, sparse_sol.policy), method
        assert (dense_sol.V - sparse_sol.V).abs().max() < 1e-8, method
    gs = pl.value_iteration(sparse, R, 0.9, 1e-9, gauss_seidel=True)
    assert (gs.V - pl.policy_iteration(P, R, 0.9).V).abs().max() < 1e-8
    csr = P.reshape(4 * 80, 80).to_sparse_csr()  # the (A*S, S) form, row a*S + s, is accepted as is
    assert torch.equal(pl.value_iteration(csr, R, 0.9, 1e-9).policy, dense_sol.policy)


def test_batched_over_discounts_and_over_mdps():
    P, R = random_mdp(30, 3, seed=4)
    gammas = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    for method in pl.METHODS:
        batch = pl.solve(method, P, R, gammas, 1e-8)
        assert batch.V.shape == (3, 30) and batch.Q.shape == (3, 30, 3)
        for i, g in enumerate(gammas.tolist()):
            single = pl.solve(method, P, R, g, 1e-8)
            assert torch.equal(batch.policy[i], single.policy), (method, g)
            assert (batch.V[i] - single.V).abs().max() < 1e-6, (method, g)
    P2, R2 = random_mdp(30, 3, seed=5)
    both = pl.policy_iteration(torch.stack([P, P2]), torch.stack([R, R2]), 0.9)
    assert torch.allclose(both.V[1], pl.policy_iteration(P2, R2, 0.9).V, atol=1e-10)
    sparse_batch = pl.value_iteration(P.to_sparse(), R, gammas, 1e-8)  # a sparse P shared by the batch
    assert (sparse_batch.V - pl.value_iteration(P, R, gammas, 1e-8).V).abs().max() < 1e-10


def test_finite_horizon_by_hand():
    """Action 0 in state 0 stays with reward 1; the best 3-step return from state 0 is 3 and
    from state 1 is 2 + 0.8*1 ... computed by enumerating the two-state MDP's 4^3 policies."""
    P, R = two_state_mdp()
    V, first = pl.finite_horizon(P, R, 3)
    best = np.zeros(2)
    for h in range(3):  # the same recursion in numpy
        best = np.max(R.numpy() + np.einsum("ast,t->sa", P.numpy(), best), axis=1)
    assert np.allclose(V.numpy(), best) and V[0] >= 3.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    P, R = random_mdp(200, 6, seed=7, leak=0.01)
    for method in pl.METHODS:
        cpu = pl.solve(method, P, R, 0.95, 1e-8)
        gpu = pl.solve(method, P.cuda(), R.cuda(), 0.95, 1e-8)
        assert torch.equal(cpu.policy, gpu.policy.cpu()), method
        assert (cpu.V - gpu.V.cpu()).abs().max() < 1e-8, method
    sparse = pl.value_iteration(P.to_sparse().cuda(), R.cuda(), 0.95, 1e-8)
    assert (sparse.V.cpu() - pl.value_iteration(P, R, 0.95, 1e-8).V).abs().max() < 1e-8


# ---------------------------------------------------------------------------------------------- rl plan
def test_rl_plan_json_is_the_contract_and_methods_agree(tmp_path):
    outs = {m: json.loads(ok(invoke(["plan", m, "--env", "FrozenLake-v1", "--json"]))) for m in pl.METHODS}
    for method, out in outs.items():
        assert set(out) == {"V", "Q", "policy", "iterations", "gamma"}, method
        assert len(out["V"]) == 16 and np.shape(out["Q"]) == (16, 4) and out["gamma"] == 0.99
        assert out["policy"] == outs["policy-iteration"]["policy"], method
        assert np.allclose(out["V"], outs["policy-iteration"]["V"], atol=1e-5), method
    assert outs["policy-iteration"]["policy"][0] == 0  # left at the start: the known optimal move


def test_rl_plan_table_and_plot(tmp_path):
    text = ok(invoke(["plan", "value-iteration", "--env", "GridWorld", "--plot", tmp_path / "v.png"]))
    assert "24.4" in text and "policy" in text  # Sutton & Barto Figure 3.5: v*(A) = 24.4
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["plan", "value-iteraton", "--env", "FrozenLake-v1"], "did you mean value-iteration"),
        (["plan", "value-iteration", "--env", "FrozenLak-v1"], "did you mean FrozenLake-v1"),
        (["plan", "value-iteration"], "exactly one of --env"),
        (["plan", "value-iteration", "--env", "Taxi-v4", "--gamma", "1.5"], "outside (0, 1]"),
        (["plan", "value-iteration", "--env", "Taxi-v4", "--plot", "x.png"], "has no grid"),
        (["plan", "modified-policy-iteration", "--env", "Gambler"], "needs gamma < 1"),
    ],
)
def test_rl_plan_bad_input_is_one_line_and_exit_2(args, expected):
    result = invoke(args)
    assert result.exit_code == 2, result.stdout
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_rows_split_over_threads_equal_one_matmul():
    """The CPU path that splits a large P's rows over threads (agents.planning._rows_in_parallel)."""
    g = torch.Generator().manual_seed(0)
    M, X = torch.rand(8192, 512, generator=g, dtype=torch.float64), torch.rand(512, 1, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        split = pl._rows_in_parallel(M, X)
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(split, M @ X, rtol=1e-12, atol=0)
