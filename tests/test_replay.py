"""FrameReplay against a naive list of full transitions, hand-computed n-step numbers, and real Atari."""

import collections

import numpy as np
import pytest
import torch

from agents.replay import FrameReplay


class FakeVectorEnv:
    """Lockstep vector env with gymnasium NEXT_STEP autoreset, random nonzero frames, stacks zero-filled
    before the first frame, lives (a life loss is terminal for learning, the game goes on) and time limits."""

    def __init__(
        self,
        num_envs,
        rng,
        frame_shape=(2, 3),
        frame_dtype=np.uint8,
        stack=4,
        lives=3,
        p_life_loss=0.06,
        p_truncate=0.03,
    ):
        self.n, self.rng, self.frame_shape, self.dtype, self.stack = num_envs, rng, frame_shape, frame_dtype, stack
        self.max_lives, self.p_life_loss, self.p_truncate = lives, p_life_loss, p_truncate

    def _frame(self):
        if self.dtype == np.uint8:
            return self.rng.integers(1, 256, self.frame_shape).astype(np.uint8)
        return self.rng.normal(size=self.frame_shape).astype(self.dtype)

    def _reset_env(self, e):
        self.stacks[e] = 0
        self.stacks[e, -1] = self._frame()
        self.lives[e], self.ended[e] = self.max_lives, False

    def _obs(self):
        return self.stacks.copy() if self.stack > 1 else self.stacks[:, 0].copy()

    def reset(self):
        self.stacks = np.zeros((self.n, self.stack, *self.frame_shape), self.dtype)
        self.lives, self.ended = np.zeros(self.n, int), np.zeros(self.n, bool)
        for e in range(self.n):
            self._reset_env(e)
        return self._obs()

    def step(self, actions):
        rewards = np.zeros(self.n, np.float32)
        terminated, truncated, game_over = (np.zeros(self.n, bool) for _ in range(3))
        for e in range(self.n):
            if self.ended[e]:  # autoreset step: reset obs, reward 0, action ignored
                self._reset_env(e)
                continue
            self.stacks[e] = np.roll(self.stacks[e], -1, axis=0)
            self.stacks[e, -1] = self._frame()
            rewards[e] = np.float32(self.rng.normal())
            if self.rng.random() < self.p_life_loss:
                self.lives[e] -= 1
                terminated[e], game_over[e] = True, self.lives[e] == 0
            truncated[e] = self.rng.random() < self.p_truncate
            self.ended[e] = game_over[e] or truncated[e]
        return self._obs(), rewards, terminated, truncated, game_over


class Recorder:
    """What the env returned, row by row: obs[t] (N, *state), first[t], and the step taken from obs t."""

    def __init__(self, replay, obs, newest):
        self.replay, self.newest = replay, newest
        self.obs, self.first = [obs], [np.ones(len(obs), bool)]
        self.action, self.reward, self.terminated, self.truncated = [], [], [], []
        self.next_is_first = np.zeros(len(obs), bool)
        replay.add_first(newest(obs))

    def step(self, actions, next_obs, rewards, terminated, truncated, episode_over):
        self.replay.add(actions, rewards, terminated, truncated, self.newest(next_obs), self.next_is_first)
        for store, value in zip(
            (self.action, self.reward, self.terminated, self.truncated, self.obs, self.first),
            (actions, rewards, terminated, truncated, next_obs, self.next_is_first),
        ):
            store.append(np.array(value))
        self.next_is_first = np.array(episode_over)

    def resume(self, obs):
        """Envs reset after a restart: the pending obs ends its episode like a time limit."""
        self.replay.add_first(self.newest(obs))
        n = len(obs)
        if self.truncated:
            self.truncated[-1] = np.ones(n, bool)
        for store, value in zip(
            (self.action, self.reward, self.terminated, self.truncated),
            (np.zeros(n, int), np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)),
        ):
            store.append(value)
        self.obs.append(obs)
        self.first.append(np.ones(n, bool))
        self.next_is_first = np.zeros(n, bool)


def naive_transitions(rec, rows, frame_stack, n_step, gamma):
    """{(t, env): (s, a, r_nstep, discount, s')} for every transition whose data is still stored."""
    total = len(rec.obs)  # rows written
    oldest = max(0, total - rows)
    out = {}
    for e in range(len(rec.obs[0])):
        for t in range(total - 1):
            if rec.first[t + 1][e]:  # fake autoreset transition final obs -> reset obs
                continue
            ret, m, discount = 0.0, None, None
            for j in range(n_step):
                if t + j >= total - 1:  # step not taken yet
                    break
                ret += gamma**j * float(rec.reward[t + j][e])
                if rec.terminated[t + j][e]:
                    m, discount = j + 1, 0.0
                elif rec.truncated[t + j][e] or j == n_step - 1:
                    m, discount = j + 1, gamma ** (j + 1)
                if m is not None:
                    break
            if m is None:
                continue
            assert not any(rec.first[t + i][e] for i in range(1, m + 1))
            episode_start = max(s for s in range(t + 1) if rec.first[s][e])
            if max(episode_start, t - frame_stack + 1) < oldest:  # a frame of s was overwritten
                continue
            out[(t, e)] = (rec.obs[t][e], int(rec.action[t][e]), ret, discount, rec.obs[t + m][e])
    return out


def check_against_naive(replay, rec, frame_stack, n_step, gamma):
    expected = naive_transitions(rec, replay.rows, frame_stack, n_step, gamma)
    mask = replay.valid_mask()
    assert mask.shape == (replay.rows, replay.num_envs)
    got = {(int(s), int(e)) for s, e in mask.nonzero().tolist()}
    assert got == {(t % replay.rows, e) for t, e in expected}
    keys = sorted(expected)
    if not keys:
        return expected
    sample = replay.gather(torch.tensor([e for _, e in keys]), torch.tensor([t % replay.rows for t, _ in keys]))
    s, a, r, d, s2 = (np.stack([expected[k][i] for k in keys]) for i in range(5))
    np.testing.assert_array_equal(sample.s_tm1.numpy(), s)
    np.testing.assert_array_equal(sample.a_tm1.numpy(), a)
    np.testing.assert_allclose(sample.r_t.numpy(), r, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sample.discount_t.numpy(), d, rtol=1e-6)
    np.testing.assert_array_equal(sample.s_t.numpy(), s2)
    assert sample.a_tm1.dtype == torch.int64 and sample.r_t.dtype == torch.float32
    assert sample.discount_t.dtype == torch.float32 and sample.s_tm1.dtype == replay.frame_dtype
    return expected


def run_fake(
    steps,
    n_step,
    frame_stack=4,
    frame_shape=(2, 3),
    frame_dtype=np.uint8,
    rows=40,
    num_envs=3,
    gamma=0.9,
    seed=0,
    check_every=None,
    resume_at=(),
    device="cpu",
    sample_device=None,
):
    rng = np.random.default_rng(seed)
    env = FakeVectorEnv(num_envs, rng, frame_shape, frame_dtype, frame_stack)
    replay = FrameReplay(
        rows * num_envs,
        num_envs,
        frame_shape,
        torch.from_numpy(np.zeros(0, frame_dtype)).dtype,
        frame_stack,
        n_step,
        gamma,
        device,
        sample_device,
    )
    newest = (lambda o: o[:, -1]) if frame_stack > 1 else (lambda o: o)
    rec = Recorder(replay, env.reset(), newest)
    for step in range(steps):
        if step in resume_at:
            rec.resume(env.reset())
        actions = rng.integers(0, 6, num_envs)
        obs, rewards, terminated, truncated, game_over = env.step(actions)
        rec.step(actions, obs, rewards, terminated, truncated, game_over | truncated)
        if check_every and step % check_every == 0:
            check_against_naive(replay, rec, frame_stack, n_step, gamma)
    return replay, rec


@pytest.mark.parametrize("n_step", [1, 3])
def test_matches_naive_reference_across_wraps(n_step):
    replay, rec = run_fake(steps=400, n_step=n_step, check_every=23)  # 40 rows per env: the cursor wraps 10 times
    assert replay.rows_written == 401 and len(replay) == 39 * 3
    expected = check_against_naive(replay, rec, 4, n_step, 0.9)
    assert len(expected) > 80  # most of the 3 x 39 stored steps
    discounts = {v[3] for v in expected.values()}
    assert 0.0 in discounts and 0.9**n_step in discounts  # terminal and full windows both present


def test_matches_naive_reference_flat_float_observations():
    replay, rec = run_fake(steps=300, n_step=3, frame_stack=1, frame_shape=(4,), frame_dtype=np.float32, check_every=17)
    expected = check_against_naive(replay, rec, 1, 3, 0.9)
    assert len(expected) > 80 and next(iter(expected.values()))[0].shape == (4,)


def test_sample_is_uniform_over_valid_transitions():
    replay, rec = run_fake(steps=200, n_step=3, rows=30)
    expected = naive_transitions(rec, replay.rows, 4, 3, 0.9)
    keys = {(v[0].tobytes(), v[1], v[4].tobytes()): k for k, v in expected.items()}
    for max_rounds in (32, 0):  # rejection sampling, and the direct fallback
        sample = replay.sample(30_000, torch.Generator().manual_seed(1), max_rounds=max_rounds)
        drawn = collections.Counter(
            keys[(s.numpy().tobytes(), int(a), s2.numpy().tobytes())]
            for s, a, s2 in zip(sample.s_tm1, sample.a_tm1, sample.s_t)
        )
        assert set(drawn) == set(expected)  # every valid transition drawn, nothing else
        mean = 30_000 / len(expected)
        assert 0.6 * mean < min(drawn.values()) and max(drawn.values()) < 1.4 * mean


def test_sample_reproducible_from_generator_state():
    replay, _ = run_fake(steps=150, n_step=3)
    a = replay.sample(64, torch.Generator().manual_seed(5))
    b = replay.sample(64, torch.Generator().manual_seed(5))
    c = replay.sample(64, torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.s_tm1, c.s_tm1)


def hand_episode(truncate: bool):
    """One env, frame = row number + 1, rewards 1..5; step 4 ends the episode, then an autoreset step."""
    replay = FrameReplay(20, 1, (1,), torch.float32, frame_stack=1, n_step=3, gamma=0.5)
    replay.add_first([[1.0]])
    for k in range(5):
        end = k == 4
        replay.add([k], [k + 1.0], [end and not truncate], [end and truncate], [[k + 2.0]], [False])
    replay.add([0], [0.0], [False], [False], [[7.0]], [True])  # autoreset step -> reset obs
    replay.add([1], [9.0], [False], [False], [[8.0]], [False])
    return replay


@pytest.mark.parametrize("truncate", [False, True])
def test_n_step_hand_computed(truncate):
    replay = hand_episode(truncate)
    valid = replay.valid_mask()[:, 0]
    assert valid[:5].all() and not valid[5] and not valid[6]  # row 5: fake autoreset; row 6: window not written
    s = replay.gather(torch.zeros(5, dtype=torch.long), torch.arange(5))
    # r_t: 1+.5*2+.25*3, 2+.5*3+.25*4, 3+.5*4+.25*5, 4+.5*5, 5
    torch.testing.assert_close(s.r_t, torch.tensor([2.75, 4.5, 6.25, 6.5, 5.0]))
    if truncate:  # the windows reaching the time limit bootstrap from the final obs with gamma^m
        expected_discount = [0.125, 0.125, 0.125, 0.25, 0.5]
    else:
        expected_discount = [0.125, 0.125, 0.0, 0.0, 0.0]
    torch.testing.assert_close(s.discount_t, torch.tensor(expected_discount))
    torch.testing.assert_close(s.s_t[:, 0], torch.tensor([4.0, 5.0, 6.0, 6.0, 6.0]))
    torch.testing.assert_close(s.s_tm1[:, 0], torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert s.a_tm1.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("game,max_frames", [("pong", 400), ("breakout", 600)])
def test_real_atari_stacks_equal_env_obs(game, max_frames):
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv(
        game=game, num_envs=2, reward_clipping=False, max_num_frames_per_episode=max_frames, noop_max=30
    )
    replay = FrameReplay(2 * 128, 2, (84, 84), torch.uint8, frame_stack=4, n_step=3, gamma=0.99)
    obs, info = env.reset(seed=3)
    rec = Recorder(replay, obs, lambda o: o[:, -1])
    rng, lives, life_losses, truncations = np.random.default_rng(0), info["lives"], 0, 0
    for _ in range(400):
        actions = rng.integers(0, env.single_action_space.n, 2)
        obs, rewards, terminated, truncated, info = env.step(actions)
        life_lost = (info["lives"] < lives) & ~rec.next_is_first  # lives jump back up on the autoreset step
        lives = info["lives"]
        life_losses, truncations = life_losses + life_lost.sum(), truncations + truncated.sum()
        rec.step(actions, obs, np.sign(rewards), terminated | life_lost, truncated, terminated | truncated)
    env.close()
    assert truncations > 0 and (game == "pong" or life_losses > 0)
    expected = check_against_naive(replay, rec, 4, 3, 0.99)
    assert len(expected) > 200
    stored = {rec.obs[t][e].tobytes() for t, e in expected} | {v[4].tobytes() for v in expected.values()}
    sample = replay.sample(256, torch.Generator().manual_seed(0))
    assert sample.s_tm1.shape == (256, 4, 84, 84) and sample.s_tm1.dtype == torch.uint8
    assert all(x.numpy().tobytes() in stored for x in torch.cat([sample.s_tm1, sample.s_t]))


def test_resume_makes_pending_row_unsampleable():
    resume_step = 90
    replay, rec = run_fake(steps=110, n_step=3, rows=60, resume_at=(resume_step,))
    pending = resume_step % replay.rows  # the row holding the obs seen at the restart
    assert not replay.valid_mask()[pending].any()
    expected = check_against_naive(replay, rec, 4, 3, 0.9)
    assert all(rec.first[resume_step + 1]) and np.all(rec.obs[resume_step + 1][:, :3] == 0)
    cut = [e for e in range(3) if (resume_step - 1, e) in expected and not rec.terminated[resume_step - 1][e]]
    assert cut  # the step into the pending obs bootstraps from it, as after a time limit
    for e in cut:
        assert expected[(resume_step - 1, e)][3] == pytest.approx(0.9)
        s_t = replay.gather(torch.tensor([e]), torch.tensor([(resume_step - 1) % replay.rows])).s_t[0]
        assert np.array_equal(s_t.numpy(), rec.obs[resume_step][e])


def test_save_load_round_trip(tmp_path):
    replay, _ = run_fake(steps=130, n_step=3)
    replay.save(tmp_path / "replay")
    loaded = FrameReplay.load(tmp_path / "replay")
    assert loaded.rows_written == replay.rows_written and loaded.nbytes == replay.nbytes
    assert torch.equal(loaded.valid_mask(), replay.valid_mask())
    a = replay.sample(128, torch.Generator().manual_seed(2))
    b = loaded.sample(128, torch.Generator().manual_seed(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_save_load_partially_filled(tmp_path):
    replay, _ = run_fake(steps=20, n_step=2)  # not wrapped: only written rows are saved
    replay.save(tmp_path)
    assert np.load(tmp_path / "frames.npy").shape == (21, 3, 2, 3)
    loaded = FrameReplay.load(tmp_path)
    a, b = (r.sample(16, torch.Generator().manual_seed(0)) for r in (replay, loaded))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_load_missing_or_corrupt_file_raises(tmp_path):
    replay, _ = run_fake(steps=50, n_step=1)
    replay.save(tmp_path)
    (tmp_path / "reward.npy").unlink()
    with pytest.raises(ValueError, match="reward.npy"):
        FrameReplay.load(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json"):
        FrameReplay.load(tmp_path)


def test_misuse_raises():
    with pytest.raises(ValueError, match="rows per env"):
        FrameReplay(8, 2, (2,), torch.uint8, frame_stack=4, n_step=3)
    replay = FrameReplay(100, 1, (2,), torch.uint8)
    with pytest.raises(RuntimeError, match="add_first"):
        replay.add([0], [0.0], [False], [False], [[1, 2]], [False])
    replay.add_first([[1, 2]])
    with pytest.raises(RuntimeError, match="no transitions"):
        replay.sample(4, torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_storage_matches_cpu():
    cpu, _ = run_fake(steps=150, n_step=3)
    cuda, _ = run_fake(steps=150, n_step=3, device="cuda")
    mask = cpu.valid_mask()
    assert torch.equal(cuda.valid_mask().cpu(), mask)
    slots, envs = mask.nonzero().unbind(1)
    for x, y in zip(cpu.gather(envs, slots), cuda.gather(envs.cuda(), slots.cuda())):
        assert y.is_cuda and torch.allclose(x, y.cpu())
    assert all(x.is_cuda for x in cuda.sample(32, torch.Generator().manual_seed(0)))  # indices are drawn on the host


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_frames_reach_the_gpu_through_pinned_non_blocking_copies():
    cpu, _ = run_fake(steps=150, n_step=3)
    host, _ = run_fake(steps=150, n_step=3, sample_device="cuda")  # frames in host memory, samples on the GPU
    assert host.frames.device.type == "cpu" and host._pinned
    cpu_rng, host_rng = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    # Many samples in flight back to back: a pinned buffer reused before its copy finished would corrupt one.
    samples = [(cpu.sample(256, cpu_rng), host.sample(256, host_rng)) for _ in range(50)]
    torch.cuda.synchronize()
    for expected, got in samples:
        assert all(y.is_cuda and torch.equal(x, y.cpu()) for x, y in zip(expected, got))


def test_one_million_atari_transitions_fit_in_7_2_gb():
    replay = FrameReplay(1_000_000, 1, (84, 84), torch.uint8, frame_stack=4, n_step=3)  # lazy: nothing touched
    assert replay.frames.shape == (1_000_000, 1, 84, 84)
    assert 84 * 84 <= replay.nbytes / 1_000_000 <= 7.2e3
