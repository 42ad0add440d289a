"""Contract tests for `envs`: one set of checks that every family must pass, then names, Atari
lives, options and episode statistics."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.spaces import Discrete

from envs import EnvNameError, canonical_name, family, known_envs, make, short_name
from envs.episodes import EpisodeStats

CONTRACT_ENVS = ["Pong", "Breakout", "CartPole-v1", "FrozenLake-v1", "Taxi-v4"]
# Atari games truncated after 200 frames (~50 agent steps) so episodes end within a test.
SHORT_GAME = dict(max_num_frames_per_episode=200)


def make_short(name: str, num_envs: int, seed: int = 0):
    options = SHORT_GAME if family(name) == "atari" else {}
    return make(name, num_envs, seed=seed, **options)


def random_actions(env, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, env.single_action_space.n, size=(steps, env.num_envs))


@pytest.mark.parametrize("name", CONTRACT_ENVS)
def test_spaces_shapes_and_dtypes(name):
    env = make(name, num_envs=3, seed=0)
    assert env.name == canonical_name(name) and env.family == family(name)
    assert isinstance(env.single_action_space, Discrete)
    assert env.observation_space.shape == (3, *env.single_observation_space.shape)
    assert env.action_space.shape == (3,)

    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    assert obs.dtype == env.single_observation_space.dtype
    assert info["life_lost"].shape == (3,) and not info["life_lost"].any()
    if env.family == "atari":
        assert env.frame_stack == 4 and obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
        assert "lives" in info  # ALE's own keys are kept
    else:
        assert env.frame_stack == 1 and obs.dtype == np.float32

    obs, reward, terminated, truncated, info = env.step(random_actions(env, 1, seed=0)[0])
    assert obs.shape == env.observation_space.shape
    assert all(env.single_observation_space.contains(o) for o in obs)
    assert reward.shape == (3,) and reward.dtype == np.float32
    assert terminated.shape == truncated.shape == (3,)
    assert terminated.dtype == truncated.dtype == np.bool_
    assert info["life_lost"].dtype == np.bool_ and info["life_lost"].shape == (3,)
    env.close()


@pytest.mark.parametrize("name", ["FrozenLake-v1", "Taxi-v4"])
def test_toy_text_observation_is_one_hot_of_the_state(name):
    env = make(name, num_envs=2, seed=0)
    obs, _ = env.reset(seed=0)
    n_states = env.unwrapped_envs[0].observation_space.n
    assert obs.shape == (2, n_states)
    assert np.array_equal(obs.sum(axis=1), [1.0, 1.0])
    assert [int(o.argmax()) for o in obs] == [int(e.s) for e in env.unwrapped_envs]
    env.close()


def rollout(name: str, seed: int) -> list[np.ndarray]:
    env = make_short(name, num_envs=2, seed=seed)
    return rollout_from(env, env.reset(seed=seed)[0], seed)


def rollout_from(env, obs: np.ndarray, seed: int, steps: int = 60) -> list[np.ndarray]:
    """Everything env returns over `steps` random actions drawn from `seed`, then closes env."""
    trace = [obs]
    for actions in random_actions(env, steps, seed=seed):
        obs, reward, terminated, truncated, info = env.step(actions)
        trace += [obs, reward, terminated, truncated, info["life_lost"]]
    env.close()
    return trace


@pytest.mark.parametrize("name", CONTRACT_ENVS)
def test_same_seed_same_trajectory(name):
    first, second, other = rollout(name, seed=3), rollout(name, seed=3), rollout(name, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    # The seed matters: otherwise the check above would pass for any env that ignores it.
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def is_reset_obs(env, i: int, obs: np.ndarray) -> bool:
    """Whether obs is what env i shows right after a reset, judged family by family."""
    if env.family == "atari":  # the stack is [0, 0, 0, first frame] (NOTES)
        return not obs[:-1].any() and obs[-1].any()
    if env.family == "cartpole":  # every state variable starts in [-0.05, 0.05]
        return bool(np.all(np.abs(obs) <= 0.05))
    if env.family == "frozenlake":  # the start cell
        return int(obs.argmax()) == 0
    if env.family == "taxi":  # reset clears the last action; steps set it
        return env.unwrapped_envs[i].lastaction is None
    raise AssertionError(f"no reset check for {env.family}")


@pytest.mark.parametrize("name", CONTRACT_ENVS)
def test_next_step_autoreset(name):
    env = make_short(name, num_envs=2, seed=1)
    env.reset(seed=1)
    ended = np.zeros(2, dtype=bool)
    for actions in random_actions(env, 500, seed=1):
        obs, reward, terminated, truncated, info = env.step(actions)
        if ended.any():
            # The step after an end: the reset obs, reward 0, no end, no life lost.
            for i in np.flatnonzero(ended):
                assert is_reset_obs(env, i, obs[i])
                assert reward[i] == 0 and not terminated[i] and not truncated[i]
                assert not info["life_lost"][i]
            break
        ended = terminated | truncated
        if ended.any() and env.family == "atari":
            # The done step itself returns the real final frames, not a reset stack.
            assert all(obs[i, :-1].any() for i in np.flatnonzero(ended))
    else:
        pytest.fail(f"no episode of {name} ended within 500 steps")
    env.close()


@pytest.mark.parametrize("name", ["Pong", "CartPole-v1"])
def test_make_seed_seeds_the_first_reset(name):
    seeded_by_make = make_short(name, num_envs=2, seed=5)
    seeded_by_reset = make_short(name, num_envs=2, seed=0)
    a = rollout_from(seeded_by_make, seeded_by_make.reset()[0], seed=5)
    b = rollout_from(seeded_by_reset, seeded_by_reset.reset(seed=5)[0], seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_atari_rewards_are_raw_game_scores():
    # Space Invaders pays 5 to 30 points an invader; clipped rewards would never exceed 1.
    env = make("SpaceInvaders", num_envs=2, seed=0)
    env.reset(seed=0)
    rewards = [env.step(actions)[1] for actions in random_actions(env, 200, seed=0)]
    env.close()
    assert max(r.max() for r in rewards) > 1


@pytest.mark.parametrize(
    "name, canonical, short, env_family",
    [
        ("Pong", "ALE/Pong-v5", "Pong", "atari"),
        ("pong", "ALE/Pong-v5", "Pong", "atari"),
        ("ALE/Pong-v5", "ALE/Pong-v5", "Pong", "atari"),
        ("ale/pong-v5", "ALE/Pong-v5", "Pong", "atari"),
        ("MsPacman", "ALE/MsPacman-v5", "MsPacman", "atari"),
        ("CartPole-v1", "CartPole-v1", "CartPole-v1", "cartpole"),
        ("FrozenLake8x8-v1", "FrozenLake8x8-v1", "FrozenLake8x8-v1", "frozenlake"),
        ("CliffWalking-v1", "CliffWalking-v1", "CliffWalking-v1", "cliffwalking"),
        ("MountainCar-v0", "MountainCar-v0", "MountainCar-v0", "mountaincar"),
    ],
)
def test_name_resolution(name, canonical, short, env_family):
    assert canonical_name(name) == canonical
    assert short_name(name) == short
    assert family(name) == env_family


@pytest.mark.parametrize(
    "bad, nearest",
    [
        ("Pongg", "Pong"),
        ("Cartpole-v1", "CartPole-v1"),  # gymnasium ids are case-sensitive, as in gymnasium
        ("Taxi-v3", "Taxi-v4"),  # renamed in gymnasium 1.4 (NOTES)
        ("CliffWalking-v0", "CliffWalking-v1"),
        ("ALE/Breakuot-v5", "ALE/Breakout-v5"),
        ("Pong-v4", "Pong"),  # registered by ale-py, but not our protocol
        ("spaceinvader", "SpaceInvaders"),
    ],
)
def test_unknown_name_error_names_the_nearest(bad, nearest):
    with pytest.raises(EnvNameError) as caught:
        canonical_name(bad)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in message and repr(bad) in message
    assert nearest in message.split(":", 1)[1]


def test_make_and_family_reject_unknown_names():
    with pytest.raises(EnvNameError, match="Pong"):
        make("Pongg")
    with pytest.raises(EnvNameError):
        family("Pendulum-v1")  # continuous actions


def test_any_gymnasium_id_and_module_form_resolve(tmp_path, monkeypatch):
    """A registered id beyond the listed ones, and `module:EnvId`, whose import registers the env (gymnasium's form)."""
    (tmp_path / "my_games.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyCartPole-v3', entry_point='gymnasium.envs.classic_control:CartPoleEnv')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "my_games:MyCartPole-v3"
    assert canonical_name(name) == name and short_name(name) == "MyCartPole-v3" and family(name) == "mycartpole"
    env = make(name, num_envs=2, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 4) and obs.dtype == np.float32 and env.frame_stack == 1
    assert canonical_name("MyCartPole-v3") == "MyCartPole-v3"  # registered now: the plain id works too
    assert canonical_name("Acrobot-v1") == "Acrobot-v1" and family("envs.catch:Catch-v0") == "catch"
    assert make("Catch-v0", num_envs=1).frame_stack == 4  # a zero-padded FrameStackObservation: stored frame by frame


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("Pendulum-v1", "actions are Box"),
        ("Blackjack-v1", "observations are Tuple"),
        ("nosuchpkg:Game-v0", "cannot import module 'nosuchpkg'"),
        ("envs.catch:NoGame-v0", "registered no gymnasium id 'NoGame-v0'"),
    ],
)
def test_unsupported_gymnasium_ids_are_one_line_errors(bad, needle):
    with pytest.raises(EnvNameError) as caught:
        canonical_name(bad)
    assert "\n" not in str(caught.value) and needle in str(caught.value)


def test_known_envs_lists_games_and_gym_ids_that_resolve():
    listed = {name: (env_family, text) for name, env_family, text in known_envs()}
    for game in ["Pong", "Breakout", "MsPacman", "SpaceInvaders"]:
        assert listed[game][0] == "atari"
    assert listed["CartPole-v1"][0] == "cartpole" and listed["Taxi-v4"][0] == "taxi"
    assert "Pendulum-v1" not in listed  # continuous actions
    assert "Combat" not in listed  # multi-player ROM without a single-player mode
    assert len([1 for f, _ in listed.values() if f == "atari"]) > 100
    for name, (env_family, text) in listed.items():
        assert family(name) == env_family and short_name(name) == name
        assert text and "\n" not in text


def test_breakout_life_loss_keeps_the_game_going():
    env = make("Breakout", num_envs=1, seed=0)
    _, info = env.reset(seed=0)
    lives, frames, life_lost = [int(info["lives"][0])], [], []
    for (action,) in random_actions(env, 3000, seed=0):
        _, _, terminated, truncated, info = env.step(np.array([action]))
        lives.append(int(info["lives"][0]))
        frames.append(int(info["episode_frame_number"][0]))
        life_lost.append(bool(info["life_lost"][0]))
        if terminated[0] or truncated[0]:
            break
    else:
        pytest.fail("a random Breakout game did not end in 3000 steps")
    env.close()
    assert terminated[0] and lives[0] == 5 and lives[-1] == 0
    assert sum(life_lost) == 4  # every life but the last, which ends the game
    # One game throughout: lives only count down and the game's frame counter never restarts.
    assert all(b <= a for a, b in zip(lives, lives[1:]))
    assert all(b > a for a, b in zip(frames, frames[1:]))
    assert life_lost == [b < a for a, b in zip(lives[:-2], lives[1:-1])] + [False]


def test_atari_options_override_the_nature_protocol():
    env = make("Pong", num_envs=1, seed=0, frameskip=2, stack_num=2)
    obs, info = env.reset(seed=0)
    assert env.frame_stack == 2 and obs.shape == (1, 2, 84, 84)
    start = info["episode_frame_number"][0]
    _, _, _, _, info = env.step(np.zeros(1, dtype=np.int64))
    assert info["episode_frame_number"][0] - start == 2
    env.close()
    with pytest.raises(TypeError, match="framesk"):
        make("Pong", framesk=2)


def test_gym_options_pass_through_and_transition_model_is_reachable():
    env = make("FrozenLake-v1", num_envs=2, seed=0, is_slippery=False, map_name="8x8")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 64)
    assert env.unwrapped_envs[0].P[0][1] == [(1.0, 8, 0.0, False)]  # down from the corner, surely
    env.close()
    with pytest.raises(TypeError, match="not_an_option"):
        make("CartPole-v1", not_an_option=1)


def test_episode_stats_hand_made_sequence():
    stats = EpisodeStats(num_envs=2)
    F, T = False, True
    steps = [  # reward, terminated, truncated -> finished episodes
        ([1, 2], [F, F], [F, F], []),
        ([1, 0], [T, F], [F, F], [(2.0, 2)]),
        ([0, 5], [F, F], [F, T], [(7.0, 3)]),  # env 0 autoresets: not counted
        ([3, 0], [F, F], [F, F], []),  # env 1 autoresets: not counted
        ([1, 1], [T, T], [F, F], [(4.0, 2), (1.0, 1)]),
    ]
    for reward, terminated, truncated, expected in steps:
        got = stats.update(np.array(reward, np.float32), np.array(terminated), np.array(truncated))
        assert got == expected


def test_episode_stats_on_cartpole_counts_every_agent_step_once():
    env = make("CartPole-v1", num_envs=1, seed=0)
    env.reset(seed=0)
    stats, episodes, steps = EpisodeStats(1), [], 0
    for (action,) in random_actions(env, 1000, seed=0):
        _, reward, terminated, truncated, _ = env.step(np.array([action]))
        steps += 1
        episodes += stats.update(reward, terminated, truncated)
        if len(episodes) == 5:
            break
    env.close()
    assert len(episodes) == 5
    assert all(ret == length for ret, length in episodes)  # +1 per step
    # Every step belongs to one episode, except the autoreset step between two episodes.
    assert sum(length for _, length in episodes) + 4 == steps


def test_cartpole_without_velocities_is_cartpole_seen_through_a_mask():
    masked, full = make("CartPoleNoVel-v1", 3, seed=5), make("CartPole-v1", 3, seed=5)
    assert masked.single_observation_space.shape == (2,) and family("CartPoleNoVel-v1") == "cartpolenovel"
    obs_m, _ = masked.reset(seed=5)
    obs_f, _ = full.reset(seed=5)
    ends = 0
    for actions in random_actions(full, 300, seed=1):
        assert np.array_equal(obs_m, obs_f[:, [0, 2]])  # cart position and pole angle; both velocities hidden
        obs_m, r_m, term_m, trunc_m, _ = masked.step(actions)
        obs_f, r_f, term_f, trunc_f, _ = full.step(actions)
        assert np.array_equal(r_m, r_f) and np.array_equal(term_m, term_f) and np.array_equal(trunc_m, trunc_f)
        ends += int(term_f.sum())
    assert ends > 3  # episodes ended and restarted along the way
