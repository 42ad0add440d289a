"""Exact planners (agents/planning.py) against closed forms, each other, sparse P, batches and devices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import invoke, ok

from agents import mdp_model
from agents import planning as pl
from envs import tabular as tb

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
    model = mdp_model.prepare(sparse, R, 0.9)
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
    P1, R1 = sutton_barto_4x4()
    for method in pl.METHODS:  # gamma 1: the search for a proper policy and the divergence checks
        cpu, gpu = pl.solve(method, P1, R1, 1.0, 1e-9), pl.solve(method, P1.cuda(), R1.cuda(), 1.0, 1e-9)
        assert (cpu.V - gpu.V.cpu()).abs().max() < 1e-9, method


# ---------------------------------------------------------------------------------------------- gamma 1
def sutton_barto_4x4(sparse=False, **kwargs):
    """Sutton & Barto Example 4.1: a 4x4 grid, terminal corners (0, 0) and (3, 3), reward -1 on every
    transition (moves off the grid stay put), gamma 1. P (A, S, S), R (S, A) as planners take them."""
    every_cell = {(r, c): -1.0 for r in range(4) for c in range(4)}
    mdp = tb.grid_world(4, 4, teleports={}, rewards=every_cell, terminals=((0, 0), (3, 3)), sparse=sparse, **kwargs)
    return mdp.planning_tensors()


def ends_mdp(r_01: float, r_10: float, loops: bool = False):
    """States 0 and 1, and 2, terminal. Action 0 ends the episode (reward -1); action 1 moves 0 -> 1
    (reward r_01) and 1 -> 0 (r_10), or with `loops` stays put (r_01 in 0, r_10 in 1)."""
    P, R = torch.zeros(2, 3, 3, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
    R[:2, 0] = -1.0  # action 0 enters the terminal state 2: its column is zero, as planning_tensors makes it
    P[1, 0, 0 if loops else 1] = P[1, 1, 1 if loops else 0] = 1.0
    R[0, 1], R[1, 1] = r_01, r_10
    return P, R


FIGURE_4_1 = [[0, -14, -20, -22], [-14, -18, -20, -20], [-20, -20, -18, -14], [-22, -20, -14, 0]]


@pytest.mark.parametrize("sparse", [False, True])
def test_sutton_barto_example_4_1_random_policy_is_figure_4_1(sparse):
    P, R = sutton_barto_4x4(sparse)
    random = torch.full((16, 4), 0.25, dtype=torch.float64)
    V = pl.policy_evaluation(P, R, 1.0, random, method="iterative" if sparse else "exact", tolerance=1e-12)
    assert np.allclose(V.reshape(4, 4).numpy(), FIGURE_4_1, atol=1e-8)


@pytest.mark.parametrize("sparse", [False, True])
def test_sutton_barto_example_4_1_every_planner_is_exact_at_gamma_1(sparse):
    """v* = -(steps to the nearest terminal corner); each planner's policy ends every episode and earns V."""
    P, R = sutton_barto_4x4(sparse)
    steps = np.array([[min(r + c, 6 - r - c) for c in range(4)] for r in range(4)])
    for method in pl.METHODS:
        sol = pl.solve(method, P, R, 1.0, epsilon=1e-9)
        assert np.array_equal(sol.V.reshape(4, 4).numpy(), -steps), method
        earned = pl.policy_evaluation(P, R, 1.0, sol.policy, method="iterative" if sparse else "exact")
        assert torch.allclose(earned, sol.V, atol=1e-9), method
    gauss_seidel = pl.value_iteration(P, R, 1.0, 1e-9, gauss_seidel=True)
    assert np.array_equal(gauss_seidel.V.reshape(4, 4).numpy(), -steps)


def test_policy_iteration_improves_a_proper_policy_at_gamma_1():
    """Entering cell (0, 1) costs 10: the first proper policy found walks (0, 2) into it, and policy
    iteration must improve to the detour, matching shortest paths computed on the grid itself."""
    cost = {(r, c): -1.0 for r in range(4) for c in range(4)} | {(0, 1): -10.0}
    mdp = tb.grid_world(4, 4, teleports={}, rewards=cost, terminals=((0, 0), (3, 3)))
    P, R = mdp.planning_tensors()
    best = np.zeros((4, 4))  # Bellman-Ford on the grid: best[cell] = max over neighbours of cost + best
    for _ in range(16):
        for r, c in np.ndindex(4, 4):
            if (r, c) not in ((0, 0), (3, 3)):
                best[r, c] = max(
                    cost[n] + best[n] if n in cost else -1.0 + best[r, c]
                    for n in ((r, c - 1), (r + 1, c), (r, c + 1), (r - 1, c))
                )
    pi = pl.policy_iteration(P, R, 1.0)
    assert pi.iterations >= 2 and best[0, 2] == -4.0  # around by the right, not -11 through the bog
    assert np.allclose(pi.V.reshape(4, 4).numpy(), best, atol=1e-12)
    for method in pl.METHODS:
        assert np.allclose(pl.solve(method, P, R, 1.0, 1e-10).V.reshape(4, 4).numpy(), best, atol=1e-8), method


@pytest.mark.parametrize("sparse", [False, True])
def test_planners_agree_at_gamma_1_on_a_slippery_grid_and_in_a_batch(sparse):
    P, R = sutton_barto_4x4(sparse, slip=0.3)
    pi = pl.policy_iteration(P, R, 1.0)
    for method in pl.METHODS:
        assert (pl.solve(method, P, R, 1.0, 1e-10).V - pi.V).abs().max() < 1e-7, method
    both = pl.value_iteration(P, R, torch.tensor([0.9, 1.0], dtype=torch.float64), 1e-10)  # one MDP, two discounts
    assert (both.V[1] - pi.V).abs().max() < 1e-7
    assert (both.V[0] - pl.value_iteration(P, R, 0.9, 1e-10).V).abs().max() < 1e-9


def test_gamma_1_without_a_proper_policy_is_an_error():
    """Rows summing to 1 everywhere: no episode ends, and value iteration used to return a number."""
    P, R = two_state_mdp()
    for method in pl.METHODS:
        with pytest.raises(ValueError, match="no policy ends the episode from states 0, 1"):
            pl.solve(method, P, R, 1.0)
        with pytest.raises(ValueError, match="no policy ends the episode from states 0, 1"):
            pl.solve(method, P.to_sparse(), R, 1.0)
    with pytest.raises(ValueError, match="never ends the episode from state 1"):
        pl.policy_evaluation(*ends_mdp(0.0, 0.0, loops=True), 1.0, torch.tensor([0, 1, 0]))


@pytest.mark.parametrize(
    "rewards", [(2.0, 0.0, False), (1e-3, 1e-3, True)], ids=["cycle paying 2 then 0", "self-loops paying 1e-3"]
)
@pytest.mark.parametrize("sparse", [False, True])
def test_gamma_1_diverging_values_are_an_error(rewards, sparse):
    """A cycle of positive total reward: the return is unbounded. 1e-3 a step is below epsilon = 0.01,
    so the change alone would stop value iteration at once with a finite number."""
    P, R = ends_mdp(*rewards)
    P = P.to_sparse() if sparse else P
    for method in pl.METHODS:
        with pytest.raises(ValueError, match="the values diverge.*states 0, 1"):
            pl.solve(method, P, R, 1.0, epsilon=0.01)
    with pytest.raises(ValueError, match="the values diverge"):
        pl.value_iteration(P, R, 1.0, 0.01, gauss_seidel=True)
    assert pl.value_iteration(P, R, 0.9, 1e-9).V[0] > 0  # discounted, the same MDP is fine


@pytest.mark.parametrize(
    "rewards, V", [((0.0, 0.0, True), [-1.0, -1.0]), ((1.0, -1.0, False), [0.0, -1.0])], ids=["stay", "+1 -1 cycle"]
)
def test_gamma_1_zero_reward_cycles_give_the_best_proper_policy(rewards, V):
    """Staying forever at reward 0 beats ending at -1, and a +1/-1 cycle has no limit; every planner
    (Gauss-Seidel too) reports the best policy that ends, and that policy."""
    P, R = ends_mdp(*rewards)
    solutions = [pl.solve(method, P, R, 1.0, 1e-9) for method in pl.METHODS]
    for sol in solutions + [pl.value_iteration(P, R, 1.0, 1e-9, gauss_seidel=True)]:
        assert sol.V[:2].tolist() == V
        assert torch.equal(pl.policy_evaluation(P, R, 1.0, sol.policy), sol.V)


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
    ],
)
def test_rl_plan_bad_input_is_one_line_and_exit_2(args, expected):
    result = invoke(args)
    assert result.exit_code == 2, result.stdout
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def one_line_exit_2(args, expected):
    result = invoke(args)
    assert result.exit_code == 2, result.stdout
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_rl_plan_at_gamma_1(tmp_path):
    """Gambler (gamma 1) by every method; an .npz without a proper policy, or with diverging values, is one line."""
    for method in pl.METHODS:
        out = json.loads(ok(invoke(["plan", method, "--env", "Gambler", "--json"])))
        assert out["gamma"] == 1.0 and abs(out["V"][50] - 0.4) < 1e-6, method  # bold play: v(50) = p_h
    P, R = two_state_mdp()
    np.savez(tmp_path / "endless.npz", P=P.numpy(), R=R.numpy())
    one_line_exit_2(["plan", "value-iteration", "--mdp", tmp_path / "endless.npz", "--gamma", "1"], "no policy ends")
    P, R = ends_mdp(2.0, 0.0)
    P[0, :, 2] = 1.0  # the file holds the terminal state's column; planning_tensors zeroes it
    P[:, 2, 2] = 1.0
    np.savez(tmp_path / "cycle.npz", P=P.numpy(), R=R.numpy(), terminal=np.array([False, False, True]))
    for method in pl.METHODS:
        one_line_exit_2(["plan", method, "--mdp", tmp_path / "cycle.npz", "--gamma", "1"], "the values diverge")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("v.pgn", "unknown picture format '.pgn', did you mean .png?"),
        ("v", "no picture format"),
        ("missing/v.png", "there is no folder"),
    ],
)
def test_rl_plan_bad_plot_path_is_one_line_and_writes_nothing(tmp_path, name, expected):
    one_line_exit_2(["plan", "value-iteration", "--env", "GridWorld", "--plot", tmp_path / name], expected)
    assert list(tmp_path.iterdir()) == []


def test_rl_plan_unreadable_mdp_file_is_one_line_and_writes_nothing(tmp_path):
    P, R = two_state_mdp()
    np.savez(tmp_path / "mdp.npz", P=P.numpy(), R=R.numpy())
    whole = (tmp_path / "mdp.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "P.npy", P.numpy())
    before = sorted(tmp_path.iterdir())
    for name, expected in (
        ("truncated.npz", "not a complete zip archive (truncated, or another format)"),
        ("empty.npz", "not a complete zip archive"),
        ("P.npy", "it is a single .npy array"),
        (".", "it is a folder"),
    ):
        one_line_exit_2(["plan", "value-iteration", "--mdp", tmp_path / name, "--plot", tmp_path / "v.png"], expected)
    assert sorted(tmp_path.iterdir()) == before


def test_rows_split_over_threads_equal_one_matmul():
    """The CPU path that splits a large P's rows over threads (agents.mdp_model._rows_in_parallel)."""
    g = torch.Generator().manual_seed(0)
    M, X = torch.rand(8192, 512, generator=g, dtype=torch.float64), torch.rand(512, 1, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        split = mdp_model._rows_in_parallel(M, X)
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(split, M @ X, rtol=1e-12, atol=0)
