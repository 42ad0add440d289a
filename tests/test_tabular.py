"""TabularMDP (envs/tabular.py): toy-text models, textbook MDPs against published numbers, .npz files,
and eval/optimal_return in a DQN run."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import invoke, ok, only_run, scalars, train_args

from agents import planning as pl
from envs import tabular as tb

torch.set_num_threads(1)


def test_frozenlake_optimal_success_within_the_step_limit_matches_gymnasium():
    """gymnasium's registry: the optimal policy reaches the goal with p ~0.74 (4x4) and ~0.91 (8x8)."""
    assert pl.optimal_return("FrozenLake-v1") == pytest.approx(0.74, abs=0.01)
    assert pl.optimal_return("FrozenLake8x8-v1") == pytest.approx(0.91, abs=0.01)
    assert pl.optimal_return("CliffWalking-v1") == -13.0  # 13 steps along the cliff edge, -1 each
    assert pl.optimal_return("CartPole-v1") is None


@pytest.mark.parametrize("env_id", ["Taxi-v4", "CliffWalking-v1"])
def test_deterministic_toy_text_values_match_rollouts_in_the_real_env(env_id):
    """Taxi and CliffWalking are deterministic: from every start state, the greedy policy's return
    played in gymnasium's own env equals the planner's finite-horizon value. Bootstrapping through
    a terminating transition would make the discounted values wrong by orders of magnitude."""
    mdp = tb.from_gymnasium(env_id)
    P, R = mdp.planning_tensors()
    horizon = gym.spec(env_id).max_episode_steps or 200
    V, _ = pl.finite_horizon(P, R, horizon)
    policy = pl.value_iteration(
        P, R, 0.999, 1e-9
    ).policy  # shortest paths: optimal at every horizon that reaches the goal
    env = gym.make(env_id).unwrapped
    starts = np.flatnonzero(mdp.start.numpy())
    for s0 in starts[:: max(1, len(starts) // 40)]:
        env.reset(seed=0)
        env.s, total, s = int(s0), 0.0, int(s0)
        for _ in range(horizon):
            s, r, terminated, _, _ = env.step(int(policy[s]))
            total += r
            if terminated:
                break
        assert terminated and total == pytest.approx(V[s0].item()), (env_id, s0)
    assert float(mdp.start @ V) == pytest.approx(pl.optimal_return(env_id))


def test_taxi_dropoffs_go_to_the_appended_end_state():
    mdp = tb.from_gymnasium("Taxi-v4")
    assert mdp.num_states == 501 and bool(mdp.terminal[500]) and int(mdp.terminal.sum()) == 1
    assert torch.allclose(mdp.P.sum(-1), torch.ones(6, 501, dtype=torch.float64))
    P, R = mdp.planning_tensors()
    V = pl.value_iteration(P, R, 0.99, 1e-6).V
    assert 0 < float(mdp.start @ V) < 20  # +20 for a drop-off, -1 a step: bootstrapping past it would blow up


def test_custom_frozenlake_map():
    mdp = tb.from_gymnasium("FrozenLake-v1", desc=["SFF", "FHF", "FFG"], is_slippery=False)
    assert mdp.grid == (3, 3) and mdp.terminal.tolist() == [False] * 4 + [True] + [False] * 3 + [True]
    P, R = mdp.planning_tensors()
    sol = pl.value_iteration(P, R, 0.9, 1e-9)
    assert sol.V[0].item() == pytest.approx(0.9**3)  # four moves to the goal, reward 1 on the last


def test_sutton_barto_gridworld_figures_3_2_and_3_5():
    mdp = tb.grid_world()
    P, R = mdp.planning_tensors()
    random = pl.policy_evaluation(P, R, 0.9, torch.full((25, 4), 0.25, dtype=torch.float64))
    assert random[:5].numpy().round(1).tolist() == [3.3, 8.8, 4.4, 5.3, 1.5]  # Figure 3.2, top row
    optimal = pl.value_iteration(P, R, 0.9, 1e-6).V
    assert optimal[:5].numpy().round(1).tolist() == [22.0, 24.4, 22.0, 19.4, 17.5]  # Figure 3.5, top row


def test_sparse_grid_world_equals_dense():
    kwargs = dict(
        rows=12,
        cols=15,
        teleports={(0, 0): ((11, 14), 3.0)},
        rewards={(5, 5): -2.0, (11, 0): 1.0},
        terminals=[(11, 0)],
        slip=0.2,
    )
    dense, sparse = tb.grid_world(**kwargs), tb.grid_world(**kwargs, sparse=True)
    assert sparse.P.is_sparse and sparse.P._nnz() <= 4 * 4 * 180
    assert torch.equal(sparse.P.to_dense(), dense.P)
    a = pl.value_iteration(*dense.planning_tensors(), 0.95, 1e-8)
    b = pl.value_iteration(*sparse.planning_tensors(), 0.95, 1e-8)
    assert torch.equal(a.policy, b.policy) and (a.V - b.V).abs().max() < 1e-9
    assert a.V[11 * 15].item() == 0.0  # terminal


def test_gamblers_problem_sutton_barto_example_4_3():
    mdp = tb.gamblers_problem()
    P, R = mdp.planning_tensors()
    V = pl.value_iteration(P, R, 1.0, 1e-12, stop="sup").V.numpy()
    assert np.all(np.diff(V[1:100]) > 0)  # Figure 4.3: the value rises with capital
    # with p_h = 0.4 < 1/2 bold play is optimal: v(50) = p, v(25) = p^2, v(75) = p + (1 - p) p
    assert V[[25, 50, 75]] == pytest.approx([0.16, 0.4, 0.64], abs=1e-9)


def test_jacks_car_rental_policy_shape_sutton_barto_figure_4_2():
    mdp = tb.jacks_car_rental()
    P, R = mdp.planning_tensors()
    sol = pl.policy_iteration(P, R, 0.9)
    moves = (sol.policy - 5).reshape(21, 21).numpy()  # [cars at 1, cars at 2]; > 0 moves cars 1 -> 2
    assert moves[20, 0] == 5 and moves[0, 20] < 0 and moves[10, 10] == 0
    assert (np.diff(moves, axis=0) >= 0).all() and (np.diff(moves, axis=1) <= 0).all()  # monotone bands
    assert 400 < sol.V.min() < sol.V.max() < 700  # Figure 4.2's v_pi4 spans roughly 420 to 610
    assert sol.iterations <= 6  # "policy iteration ... converges in few iterations" (four in the book)


# ---------------------------------------------------------------------------------------------- .npz
def test_npz_round_trip_and_cli(tmp_path):
    mdp = tb.from_gymnasium("FrozenLake-v1")
    tb.save_npz(mdp, tmp_path / "fl.npz")
    back = tb.load_npz(tmp_path / "fl.npz")
    assert torch.equal(back.P, mdp.P) and torch.equal(back.R, mdp.R) and torch.equal(back.terminal, mdp.terminal)
    out = ok(invoke(["plan", "policy-iteration", "--mdp", tmp_path / "fl.npz", "--json"]))
    env_out = ok(invoke(["plan", "policy-iteration", "--env", "FrozenLake-v1", "--json"]))
    assert out == env_out
    # R given per transition (A, S, S) reduces to its expectation
    R3 = np.random.default_rng(0).normal(size=mdp.P.shape)
    np.savez(tmp_path / "r3.npz", P=mdp.P.numpy(), R=R3)
    assert np.allclose(tb.load_npz(tmp_path / "r3.npz").R.numpy(), np.einsum("ast,ast->sa", mdp.P.numpy(), R3))


def _good():
    P = np.full((2, 3, 3), 1 / 3)
    return {"P": P, "R": np.zeros((3, 2)), "terminal": np.array([False, False, True])}


BAD_FILES = [
    ("no P", lambda d: d.pop("P"), "missing array 'P'"),
    ("no R", lambda d: d.pop("R"), "missing array 'R'"),
    ("P not 3-d", lambda d: d.update(P=np.full((3, 3), 1 / 3)), "P has shape (3, 3)"),
    ("P not square", lambda d: d.update(P=np.full((2, 3, 4), 0.25)), "P has shape (2, 3, 4)"),
    ("R wrong shape", lambda d: d.update(R=np.zeros((2, 3))), "R has shape (2, 3), expected (S, A) = (3, 2)"),
    ("negative", lambda d: d["P"].__setitem__((1, 2), [-0.5, 0.5, 1.0]), "P[1, 2, 0] = -0.5 is a negative probability"),
    ("NaN", lambda d: d["P"].__setitem__((0, 1, 1), np.nan), "P[0, 1, 1] is nan"),
    ("NaN reward", lambda d: d["R"].__setitem__((2, 1), np.inf), "R[2, 1] is inf"),
    ("row sum", lambda d: d["P"].__setitem__((1, 0), [0.5, 0.3, 0.1]), "row P[1, 0, :] sums to 0.9, not 1"),
    (
        "terminal length",
        lambda d: d.update(terminal=np.array([True, False])),
        "terminal has shape (2,), expected (S,) = (3,)",
    ),
    ("terminal values", lambda d: d.update(terminal=np.array([0, 2, 1])), "terminal must be boolean"),
    (
        "typo",
        lambda d: d.update(terminals=d.pop("terminal")),
        "unexpected array 'terminals' (did you mean 'terminal'?)",
    ),
    ("strings", lambda d: d.update(R=np.array([["a", "b"]] * 3)), "R has dtype <U1"),
]


@pytest.mark.parametrize("name, damage, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_npz_is_one_line_and_exit_2(tmp_path, name, damage, message):
    arrays = _good()
    damage(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    result = invoke(["plan", "value-iteration", "--mdp", tmp_path / "bad.npz"])
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_unreadable_npz(tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    np.savez(tmp_path / "obj.npz", P=np.array([{"a": 1}], dtype=object), R=np.zeros(1))
    for path, message in (
        (tmp_path / "junk.npz", "cannot read"),
        (tmp_path / "obj.npz", "cannot read"),
        (tmp_path / "missing.npz", "no such file"),
    ):
        result = invoke(["plan", "value-iteration", "--mdp", path])
        assert result.exit_code == 2 and message in result.stderr, result.stderr
    good = _good()
    np.savez(tmp_path / "ok.npz", **good)
    assert tb.load_npz(tmp_path / "ok.npz").terminal.tolist() == [False, False, True]


# ---------------------------------------------------------------------------------------------- DQN hook
def test_dqn_logs_optimal_return_beside_eval_return_on_frozenlake(tmp_path):
    args = train_args(tmp_path, 400, eval_frequency=200, learning_starts=100)
    args[args.index("CartPole-v1")] = "FrozenLake-v1"
    ok(invoke(args))
    logged = scalars(only_run(tmp_path))
    assert [s for s, _ in logged["eval/optimal_return"]] == [s for s, _ in logged["eval/episodic_return"]] == [200, 400]
    assert all(v == pytest.approx(pl.optimal_return("FrozenLake-v1")) for _, v in logged["eval/optimal_return"])


def test_no_optimal_return_for_non_tabular_envs(tiny_run):
    run_dir, _ = tiny_run
    tags = scalars(run_dir)
    assert "eval/episodic_return" in tags and "eval/optimal_return" not in tags
