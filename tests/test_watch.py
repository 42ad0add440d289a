"""rl watch and training videos: files read back with imageio, Atari frames of the agent's own game."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import invoke, ok, only_run, train_args

import envs
from agents import checkpoint, dqn, registry
from agents.evaluate import run_episodes
from agents.watch import Lockstep, make_viewable, write_video
from agents.watch_run import watch


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_has_the_frames_written(tmp_path, suffix):
    import imageio.v3 as iio

    frames = [np.full((37, 50, 3), 10 * i, dtype=np.uint8) for i in range(12)]  # odd height
    assert write_video(iter(frames), tmp_path / f"v{suffix}", fps=10) == 12
    back = iio.imread(tmp_path / f"v{suffix}", index=None)
    # H.264 4:2:0 needs even sizes: mp4 pads one black row; a gif keeps the size
    assert back.shape == (12, 38 if suffix == ".mp4" else 37, 50, 3)
    assert abs(int(back[5, :37].mean()) - 50) <= 3 and abs(int(back[11, :37].mean()) - 110) <= 3


def test_atari_screen_is_the_agents_game():
    """The full-colour twin, turned gray and shrunk like the agent's input, is the agent's frame, and
    rewards arrive on both at the same steps (Lockstep also checks every step itself)."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is in the dev extra")
    env = Lockstep("ALE/Pong-v5", seed=3)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    rewards, diffs = [], []
    for _ in range(300):
        obs, reward, *_ = env.step(rng.integers(0, 6, 1))
        gray = cv2.resize(
            cv2.cvtColor(env.render_frames()[0], cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA
        )
        diffs.append(np.abs(gray.astype(int) - obs[0, -1].astype(int)).mean())
        rewards.append(reward[0])
    env.close()
    assert env.render_frames().shape == (1, 210, 160, 3)
    assert np.count_nonzero(rewards) >= 2  # points were scored on the screen we show
    assert max(diffs) < 1.0  # gray levels 0..255: the same game, not a look-alike (another seed: ~10)


def test_watch_writes_one_frame_per_step(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    algo, cfg = registry.load_config(run_dir / "config.yaml")
    env = envs.make(cfg.env, 1, 5)
    policy = dqn.load_policy(
        cfg, checkpoint.load(checkpoint.latest(run_dir / "checkpoints")), env, torch.device("cpu"), 0.0, 5
    )
    (length,) = run_episodes(env, policy, 1, seed=5)  # CartPole: score = steps
    out = tmp_path / "cartpole.gif"
    assert "wrote" in ok(invoke(["watch", run_dir, "--video", out, "--epsilon", "0", "--seed", "5", "--device", "cpu"]))
    import imageio.v3 as iio

    frames = iio.imread(out, index=None)
    assert len(frames) == int(length) + 1  # each step's screen and the final one
    assert frames.shape[2] == 600 and frames.shape[1] > 400  # CartPole's 600x400 screen above the overlay band
    still = tmp_path / "cartpole.png"  # the same game's last frame, as a still
    ok(invoke(["watch", run_dir, "--video", still, "--epsilon", "0", "--seed", "5", "--device", "cpu"]))
    last = iio.imread(still)
    assert last.shape == frames[-1].shape[:2] + (3,)
    assert np.abs(last.astype(int) - frames[-1][..., :3].astype(int)).mean() < 2  # the GIF's palette rounds a little
    assert np.abs(last.astype(int) - frames[0][..., :3].astype(int)).mean() > 0  # and not its first frame


def test_watch_checkpoint_choice_and_bad_input(tiny_run, tmp_path, monkeypatch):
    run_dir, _ = tiny_run
    out = ok(
        invoke(
            ["watch", run_dir, "--checkpoint", "400", "--video", tmp_path / "a.mp4", "--no-overlay", "--device", "cpu"]
        )
    )
    assert "a.mp4" in out and (tmp_path / "a.mp4").stat().st_size > 0
    bad = invoke(["watch", run_dir, "--checkpoint", "123"])
    assert bad.exit_code == 2 and "available: 400, 800" in bad.stderr
    bad = invoke(["watch", run_dir, "--video", tmp_path / "a.avi"])
    assert bad.exit_code == 2 and ".mp4, .gif or .png" in bad.stderr
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    path, frames = watch(run_dir, device="cpu")  # no display: the default file in the run's videos/
    assert path.parent == run_dir / "videos" and path.name == "watch_step_800.mp4" and frames > 1
    path.unlink()


def test_window_when_a_display_exists(tiny_run, monkeypatch):
    pytest.importorskip("pygame", reason="pygame draws the window")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # a real window surface without a screen
    path, frames = watch(tiny_run[0], fps=1000, device="cpu")
    assert path is None and frames > 1


def test_action_scores_are_the_greedy_policys_q_values(tiny_run):
    run_dir, _ = tiny_run
    _, cfg = registry.load_config(run_dir / "config.yaml")
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    env = envs.make(cfg.env, 4, 0)
    obs, _ = env.reset(seed=0)
    q = dqn.action_scores(cfg, ckpt, env, torch.device("cpu"))(obs)
    assert q.shape == (4, 2)
    np.testing.assert_array_equal(q.argmax(1), dqn.load_policy(cfg, ckpt, env, torch.device("cpu"), 0.0, 0)(obs))


def test_training_writes_videos_every_n_evaluations(tmp_path):
    import imageio.v3 as iio

    ok(invoke(train_args(tmp_path, 600, eval_frequency=200, video_frequency=2, checkpoint_frequency=0)))
    videos = sorted(p.name for p in (only_run(tmp_path) / "videos").iterdir())
    assert videos == ["step_400.mp4"]  # evaluations at 200, 400, 600: the 2nd only
    assert len(iio.imread(only_run(tmp_path) / "videos" / "step_400.mp4", index=None)) >= 9  # CartPole lasts >= 8 steps


def test_gym_frames_come_from_the_env():
    env = make_viewable("FrozenLake-v1", 0)  # a toy-text grid, drawn by gymnasium
    env.reset(seed=0)
    frame = env.render_frames()
    env.close()
    assert frame.dtype == np.uint8 and frame.shape[0] == 1 and frame.shape[-1] == 3 and frame.std() > 0


def test_go_overlay_is_a_heat_map_on_the_board():
    """Go's move probabilities are drawn on their points (red, opacity by probability), not as 26 bars."""
    from agents.watch import draw_overlay
    from envs.go.render import board_rgb

    frame = board_rgb(np.zeros(25, dtype=np.int8), 5)  # 144 x 144: point (r, c) at ((c + 1) * 24, (r + 1) * 24)
    values = np.zeros(26)
    values[7], values[25] = 0.9, 0.1  # C4 likely (row 1, col 2), pass unlikely
    out = draw_overlay(frame, 0.0, 3, 7, values, board=5)
    scale = out.shape[1] // frame.shape[1]
    assert out.shape[0] < frame.shape[0] * scale + 40  # one text line under the board, no bar per action
    red = out[2 * 24 * scale - 8, 3 * 24 * scale - 8]  # inside point 7's square, off its grid lines
    wood = out[4 * 24 * scale - 8, 4 * 24 * scale - 8]  # a point with probability 0
    assert red[0] > red[1] + 60 and abs(int(wood[0]) - 220) < 5 and abs(int(wood[1]) - 179) < 5
