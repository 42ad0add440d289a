"""Prioritized replay: the sum tree and importance weights by hand, sampling frequencies against priorities, and the
leaves tracking exactly FrameReplay's valid transitions across wraps, episode ends, overwrites and resumes."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from test_replay import FakeVectorEnv, Recorder

from agents.prioritized import PrioritizedFrameReplay, SumTree, beta_schedule, importance_weights


def run_prioritized(
    steps, n_step=3, frame_stack=4, rows=30, num_envs=3, seed=0, resume_at=(), after_step=None, **kwargs
):
    """The fake Atari-like env of test_replay into a PrioritizedFrameReplay; after_step(replay, rng) after each step."""
    rng = np.random.default_rng(seed)
    env = FakeVectorEnv(num_envs, rng, stack=frame_stack)
    replay = PrioritizedFrameReplay(rows * num_envs, num_envs, (2, 3), torch.uint8, frame_stack, n_step, 0.9, **kwargs)
    rec = Recorder(replay, env.reset(), (lambda o: o[:, -1]) if frame_stack > 1 else (lambda o: o))
    for step in range(steps):
        if step in resume_at:
            rec.resume(env.reset())
        actions = rng.integers(0, 6, num_envs)
        obs, rewards, terminated, truncated, game_over = env.step(actions)
        rec.step(actions, obs, rewards, terminated, truncated, game_over | truncated)
        if after_step:
            after_step(replay, rng)
    return replay, rec


def chain(rows, steps, n_step=1, **kwargs):
    """One env, frame k at row k and action k from it, no episode end: row k's transition is k -> k + n_step."""
    replay = PrioritizedFrameReplay(rows, 1, (1,), torch.float32, n_step=n_step, **kwargs)
    replay.add_first([[0.0]])
    for k in range(steps):
        replay.add([k], [1.0], [False], [False], [[k + 1.0]], [False])
    return replay


def test_sum_tree_by_hand():
    tree = SumTree(4)
    tree.update([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    assert tree.nodes.dtype == np.float64 and tree.total == 10.0 and tree.max_priority == 4.0
    assert tree.nodes[1:4].tolist() == [10.0, 3.0, 7.0]  # root, then the sums of leaves 0-1 and 2-3
    assert tree.find([0.5, 1.5, 3.5, 9.9]).tolist() == [0, 1, 2, 3]
    assert tree.find([0.0, 1.0, 2.999, 3.0, 6.0]).tolist() == [0, 1, 1, 2, 3]  # prefix sums 1, 3, 6 are boundaries
    tree.update([1, 3, 1], [5.0, 0.0, 7.0])  # leaf 1 written twice: the last write wins
    assert tree.priorities.tolist() == [1.0, 7.0, 3.0, 0.0] and tree.total == 11.0 and tree.max_priority == 7.0
    assert tree.find([10.999, 11.0, 12.0]).tolist() == [2, 2, 2]  # at or past the total: the last nonzero leaf

    padded = SumTree(3)  # 4 leaves, the 4th padding
    padded.update([0, 1, 2], [1.0, 0.0, 2.0])
    assert padded.size == 4 and len(padded.priorities) == 3 and padded.total == 3.0
    assert padded.find([0.99, 1.0, 2.9, 3.0]).tolist() == [0, 2, 2, 2]  # the zero leaf and the padding never
    single = SumTree(1)
    single.update([0], [2.5])
    assert single.total == 2.5 and single.find([2.0]).tolist() == [0]


def test_beta_schedule():
    assert [beta_schedule(0.4, step, 100) for step in (0, 50, 100, 300)] == pytest.approx([0.4, 0.7, 1.0, 1.0])


def test_importance_weights_by_hand():
    probability = np.array([1 / 6, 2 / 6, 3 / 6])
    np.testing.assert_allclose(importance_weights(probability, 0.5), [1, 1 / math.sqrt(2), 1 / math.sqrt(3)])
    np.testing.assert_allclose(importance_weights(probability, 1.0), [1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(importance_weights(probability, 0.0), [1, 1, 1])


def test_three_transitions_by_hand():
    replay = chain(rows=4, steps=3)  # rows 0, 1, 2 valid, row 3 pending
    assert replay.tree.priorities.tolist() == [1.0, 1.0, 1.0, 0.0]
    replay.update_priorities(torch.tensor([0, 1, 2]), torch.tensor([1.0, 4.0, 9.0]))  # alpha 0.5: p = 1, 2, 3
    np.testing.assert_allclose(replay.tree.priorities, [1, 2, 3, 0], rtol=1e-6)
    drawn = replay.sample(600, torch.Generator().manual_seed(0), beta=0.5)
    # stratified: 600 equal segments of [0, 6), so exactly 100, 200 and 300 draws (multinomial draws would vary)
    assert np.bincount(drawn.index.numpy()).tolist() == [100, 200, 300]
    assert drawn.sample.s_tm1[:, 0].tolist() == drawn.index.float().tolist()  # frame k is row k's state
    assert drawn.sample.a_tm1.tolist() == drawn.index.tolist()
    # P = 1/6, 2/6, 3/6; w = (3 P)^-0.5 / max w = 1, 1/sqrt(2), 1/sqrt(3)
    expected = torch.tensor([1, 1 / math.sqrt(2), 1 / math.sqrt(3)])[drawn.index]
    assert drawn.weight.dtype == torch.float32
    torch.testing.assert_close(drawn.weight, expected, rtol=1e-5, atol=0)
    uniform = chain(rows=4, steps=3, alpha=0.0)  # alpha 0: every priority 1, uniform draws, weights 1
    uniform.update_priorities([0, 1, 2], [1.0, 4.0, 9.0])
    assert uniform.tree.priorities.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert torch.equal(uniform.sample(30, torch.Generator(), beta=0.5).weight, torch.ones(30))


def test_new_transitions_get_the_max_priority_once_their_window_is_written():
    replay = chain(rows=8, steps=3)
    replay.update_priorities([0, 1], [0.0, 99.0])  # p = 1e-3 and ~9.95: the new max
    top = replay.tree.max_priority
    assert top == pytest.approx(math.sqrt(99)) and replay.tree.priorities[0] == pytest.approx(1e-3)
    replay.add([3], [1.0], [False], [False], [[4.0]], [False])
    assert replay.tree.priorities[:5].tolist() == [pytest.approx(1e-3), top, 1.0, top, 0.0]

    three = chain(rows=10, steps=2, n_step=3)  # windows of 3 steps: none complete yet
    assert not three.tree.priorities.any()
    three.add([2], [1.0], [False], [False], [[3.0]], [False])
    assert three.tree.priorities[:4].tolist() == [1.0, 0.0, 0.0, 0.0]  # row 0: rows 1..3 written
    three.add([3], [1.0], [True], [False], [[4.0]], [False])  # a terminal cuts the windows of rows 1, 2, 3
    assert three.tree.priorities[:5].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


def valid_leaves(replay):
    return replay.valid_mask().flatten().nonzero()[:, 0].numpy()  # slot * N + env


def test_sampling_frequencies_match_priorities():
    replay, _ = run_prioritized(steps=200)
    leaves = valid_leaves(replay)
    assert len(leaves) > 50
    replay.update_priorities(leaves, np.random.default_rng(1).exponential(size=len(leaves)))
    expected = replay.tree.priorities / replay.tree.total  # (C,) P(i)
    generator, counts, draws = torch.Generator().manual_seed(3), np.zeros(replay.tree.capacity), 625 * 32
    for _ in range(625):
        drawn = replay.sample(32, generator, beta=0.6)
        index = drawn.index.numpy()
        counts += np.bincount(index, minlength=len(counts))
        np.testing.assert_allclose(drawn.weight.numpy(), importance_weights(expected[index], 0.6), rtol=1e-6)
    expected_counts = draws * expected[leaves]
    assert counts.sum() == draws and counts[leaves].sum() == draws  # only valid transitions
    chi2 = ((counts[leaves] - expected_counts) ** 2 / expected_counts).sum()
    assert chi2 < scipy.stats.chi2.ppf(0.999, len(leaves) - 1)
    assert abs(np.corrcoef(counts[leaves], expected_counts)[0, 1]) > 0.95  # the counts follow the priorities


def test_update_priorities_favours_the_high_priority_transition():
    replay, _ = run_prioritized(steps=150)
    leaves = valid_leaves(replay)
    high = leaves[7]
    replay.update_priorities([high], [99.0])  # p ~9.95 against 1 for the rest
    share = replay.tree.priorities[high] / replay.tree.total
    generator, counts = torch.Generator().manual_seed(0), np.zeros(replay.tree.capacity)
    for _ in range(64):
        drawn = replay.sample(64, generator, beta=0.5)
        counts += np.bincount(drawn.index.numpy(), minlength=len(counts))
        if (drawn.index == high).any():  # the most likely transition has the smallest weight, the others 1
            weight = drawn.weight[drawn.index == high]
            torch.testing.assert_close(weight, torch.full_like(weight, math.sqrt(99) ** -0.5), rtol=1e-5, atol=0)
            assert drawn.weight[drawn.index != high].eq(1).all()
    assert counts[high] == pytest.approx(share * 64 * 64, rel=0.1)
    assert counts[high] > 5 * np.delete(counts, high).max()
    replay.update_priorities([high, high], [99.0, 0.0])  # a leaf twice in a batch: the last write wins
    assert replay.tree.priorities[high] == pytest.approx(1e-3)


@pytest.mark.parametrize("n_step,frame_stack", [(3, 4), (1, 1)])
def test_leaves_are_exactly_the_valid_transitions(n_step, frame_stack):
    seen = {"invalid": 0, "rewritten": 0}

    def check(replay, rng):
        mask = replay.valid_mask().numpy()  # (R, N)
        priorities = replay.tree.priorities.reshape(replay.rows, replay.num_envs)
        assert np.array_equal(priorities > 0, mask)
        assert replay.tree.total == pytest.approx(priorities.sum())
        pending = (replay.rows_written - 1) % replay.rows
        stored = [s for s in range(min(replay.rows_written, replay.rows)) if s != pending]
        seen["invalid"] += (~mask[stored]).sum()  # stored steps that must not be drawn
        if not mask.any():
            return
        drawn = replay.sample(16, torch.Generator().manual_seed(int(rng.integers(1 << 30))), beta=0.4)
        index = drawn.index.numpy()
        assert mask.flatten()[index].all() and not (index // replay.num_envs == pending).any()
        again = replay.gather(drawn.index % replay.num_envs, drawn.index // replay.num_envs)
        assert all(torch.equal(x, y) for x, y in zip(drawn.sample, again))
        seen["rewritten"] += replay.rows_written > replay.rows
        replay.update_priorities(index, rng.exponential(size=len(index)) * 5)  # old priorities that must not leak

    run_prioritized(steps=300, n_step=n_step, frame_stack=frame_stack, resume_at=(150,), after_step=check)
    assert seen["invalid"] > 100 and seen["rewritten"] > 200  # episode ends, windows, wraps all happened


def test_overwritten_slot_gets_the_max_priority_not_its_old_one():
    replay = chain(rows=4, steps=3)  # slots 0..2 valid, 3 pending
    replay.update_priorities([0, 1], [0.0, 99.0])
    top = replay.tree.max_priority
    replay.add([3], [1.0], [False], [False], [[4.0]], [False])  # row 4 (pending) overwrites slot 0
    assert replay.tree.priorities.tolist() == [0.0, top, 1.0, top]
    replay.update_priorities([0], [5.0])  # a stale index from a sample taken before the overwrite
    assert replay.tree.priorities[0] == 0.0
    replay.add([4], [1.0], [False], [False], [[5.0]], [False])  # row 4's step: slot 0 holds 4 -> 5 now
    assert replay.tree.priorities.tolist() == [top, 0.0, 1.0, top]  # slot 1 pending
    drawn = replay.sample(100, torch.Generator().manual_seed(0), beta=1.0)
    assert set(drawn.sample.s_tm1[drawn.index == 0, 0].tolist()) == {4.0}


@pytest.mark.parametrize("steps", [20, 130])  # partly filled, and wrapped
def test_save_load_round_trip_and_resume(tmp_path, steps):
    def update(replay, rng):
        if replay.tree.total == 0:
            return
        drawn = replay.sample(8, torch.Generator().manual_seed(int(rng.integers(1 << 30))), beta=0.5)
        replay.update_priorities(drawn.index, rng.exponential(size=8) * 3)

    replay, _ = run_prioritized(steps=steps, after_step=update, alpha=0.6, eps=1e-3)
    leaf = valid_leaves(replay)[:1]
    replay.update_priorities(leaf, [1000.0])
    replay.update_priorities(leaf, [0.1])  # the max priority is now no leaf's: it must be saved on its own
    replay.save(tmp_path)
    loaded = PrioritizedFrameReplay.load(tmp_path)
    assert (loaded.alpha, loaded.eps, loaded.tree.max_priority) == (0.6, 1e-3, replay.tree.max_priority)
    assert np.array_equal(loaded.tree.nodes, replay.tree.nodes)
    a, b = (r.sample(64, torch.Generator().manual_seed(2), beta=0.5) for r in (replay, loaded))
    assert all(torch.equal(x, y) for x, y in zip([*a.sample, a.index, a.weight], [*b.sample, b.index, b.weight]))
    frames = torch.arange(18, dtype=torch.uint8).view(3, 2, 3)
    for r in (replay, loaded):  # --resume: the envs reset, the pending obs ends its episode like a time limit
        r.add_first(frames)
        for _ in range(5):
            r.add([1, 2, 3], [1.0, 0.0, -1.0], [False] * 3, [False] * 3, frames + 1, [False] * 3)
        assert np.array_equal(r.tree.priorities.reshape(r.rows, 3) > 0, r.valid_mask().numpy())
    assert np.array_equal(loaded.tree.nodes, replay.tree.nodes)


def test_load_missing_or_corrupt_priorities_raises(tmp_path):
    replay, _ = run_prioritized(steps=50)
    replay.save(tmp_path)
    np.save(tmp_path / "priority.npy", np.ones(7))
    with pytest.raises(ValueError, match="priority.npy"):
        PrioritizedFrameReplay.load(tmp_path)
    (tmp_path / "priority.npy").unlink()
    with pytest.raises(ValueError, match="priority.npy"):
        PrioritizedFrameReplay.load(tmp_path)
    (tmp_path / "priority.json").write_text("{not json")
    with pytest.raises(ValueError, match="priority.json"):
        PrioritizedFrameReplay.load(tmp_path)


def test_misuse_raises():
    with pytest.raises(ValueError, match="eps"):
        PrioritizedFrameReplay(100, 1, (2,), torch.uint8, eps=0.0)
    with pytest.raises(ValueError, match="alpha"):
        PrioritizedFrameReplay(100, 1, (2,), torch.uint8, alpha=-1.0)
    replay = chain(rows=10, steps=2, n_step=3)  # steps stored, but no complete window
    with pytest.raises(RuntimeError, match="no valid transition"):
        replay.sample(4, torch.Generator(), beta=0.4)
    with pytest.raises(ValueError, match="finite and >= 0"):
        replay.update_priorities([0, 1], [1.0, -0.5])
    with pytest.raises(ValueError, match="finite and >= 0"):
        replay.update_priorities([0], [float("nan")])
