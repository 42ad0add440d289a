"""Watch an agent play: frames of the real game, an optional overlay, to a window or a video file.

The agent acts on its own observations (Atari: 84x84 gray, stack of 4) while the viewer sees the
game itself:
- Atari: a second AtariVectorEnv of the same game, seed and settings but full-size colour frames
  (210x160x3, no stacking) steps in lockstep with the agent's env. The ALE is deterministic with
  sticky actions off (repeat_action_probability 0), and both envs draw the same reset no-ops from
  the same seed, so it is the same game; `Lockstep` checks that every reward and lives count agree.
- gymnasium envs: the env's own `render()` in rgb_array mode (pygame draws CartPole and the grids).
- Hook for other families: a VecEnv with a `render_frames() -> uint8 (N, H, W, 3)` method (Go's board
  from envs/go/render.py) is drawn with it; nothing else is needed here.

Videos go through imageio: mp4 with the ffmpeg binary the imageio-ffmpeg wheel carries, gif with
Pillow. A live window (pygame) is used when a display exists and no file is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

import envs
from agents import hooks
from agents.evaluate import Policy, act

Scores = Callable[[np.ndarray], np.ndarray]  # obs (N, ...) -> action values or probabilities (N, A)
VIDEO_SUFFIXES = (".mp4", ".gif", ".png")  # .png: a still, the last frame of the last game


class VideoError(ValueError):
    """A bad --video path or a run that cannot be shown; str(error) is one line for the user."""


class Lockstep:
    """The agent's Atari env plus a full-colour twin stepped with the same actions (see module doc)."""

    def __init__(self, name: str, seed: int):
        self.agent = envs.make(name, 1, seed)
        self.screen = envs.make(name, 1, seed, img_height=210, img_width=160, grayscale=False, stack_num=1)
        self.num_envs, self.frame_stack = 1, self.agent.frame_stack
        self.single_observation_space = self.agent.single_observation_space
        self.single_action_space = self.agent.single_action_space
        self._frame: np.ndarray | None = None

    def reset(self, seed: int | None = None):
        obs, info = self.agent.reset(seed=seed)
        screen, screen_info = self.screen.reset(seed=seed)
        self._check(info, screen_info, "reset")
        self._frame = screen[0, -1]  # (210, 160, 3)
        return obs, info

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.agent.step(actions)
        screen, screen_reward, *_, screen_info = self.screen.step(actions)
        self._check(info, screen_info, "step", reward, screen_reward)
        self._frame = screen[0, -1]
        return obs, reward, terminated, truncated, info

    @staticmethod
    def _check(info, screen_info, where, reward=None, screen_reward=None) -> None:
        if (info["lives"] != screen_info["lives"]).any() or (reward is not None and (reward != screen_reward).any()):
            raise RuntimeError(f"the colour screen's game left the agent's game at {where}: lives or rewards differ")

    def render_frames(self) -> np.ndarray:
        return self._frame[None]  # (1, 210, 160, 3)

    def close(self) -> None:
        self.agent.close()
        self.screen.close()


def make_viewable(name: str, seed: int, **options):
    """A one-env VecEnv whose `render_frames()` gives (1, H, W, 3) uint8 frames of what the agent plays
    (`options` go to envs.make: a Go run's komi)."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame draws the gymnasium envs: no sound, no probing for one
    if not has_display():  # nor for a screen that is not there (SDL prints an XDG_RUNTIME_DIR error otherwise)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    name = envs.canonical_name(name)
    if envs.family(name) == "atari":
        return Lockstep(name, seed)
    env = envs.make(name, 1, seed, **options)
    if hasattr(env, "render_frames"):  # a family that draws itself (Go: envs/go/render.py)
        return env
    env.close()
    try:  # gymnasium envs draw themselves in rgb_array mode
        env = envs.make(name, 1, seed, render_mode="rgb_array")
        env.render_frames = lambda: np.stack([e.render() for e in env.env.envs])
    except (TypeError, AttributeError):
        raise VideoError(f"env {name!r} has no screen to show (no render_frames(), no rgb_array rendering)") from None
    return env


def play(
    env,
    policy: Policy,
    episodes: int,
    seed: int,
    scores: Scores | None = None,
    overlay: bool = True,
    max_steps: int = 0,
) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 of `episodes` whole games of env 0, the overlay drawn on each: one frame per
    agent step plus the final screen of each game. max_steps > 0 stops after that many steps (training
    videos of long Atari games)."""
    obs, info = env.reset(seed=seed)
    score, step, done = 0.0, 0, 0
    values = None
    board = env.size if getattr(env, "family", "") == "go" else 0  # Go: probabilities as a heat map on the board
    starts = np.ones(1, dtype=bool)  # recurrent policies reset their memory at a game's first obs
    while done < episodes:
        frame = env.render_frames()[0]
        action = act(policy, obs, starts, info.get("action_mask"))  # Go: legal moves only
        if overlay and scores is not None:
            values = act(scores, obs, starts, info.get("action_mask"))[0]
        yield draw_overlay(frame, score, step, int(action[0]), values, board) if overlay else frame
        obs, reward, terminated, truncated, info = env.step(action)
        starts = np.zeros(1, dtype=bool)
        score, step = score + float(reward[0]), step + 1
        if max_steps and step >= max_steps:
            return
        if terminated[0] or truncated[0]:
            yield (
                draw_overlay(env.render_frames()[0], score, step, None, values, board)
                if overlay
                else env.render_frames()[0]
            )
            done += 1
            if done < episodes:  # NEXT_STEP autoreset: this step only returns the new game's first obs
                obs, *_, info = env.step(action)
                starts = np.ones(1, dtype=bool)
            score, step = 0.0, 0


def draw_overlay(
    frame: np.ndarray, score: float, step: int, action: int | None, values: np.ndarray | None, board: int = 0
) -> np.ndarray:
    """The frame, scaled to at least 320 px wide, above a band with score, step and the action values; for a Go
    board of size `board` (> 0) the values (move probabilities) are drawn on the board as a heat map instead:
    a red square on each point, its opacity the move's share of the largest, the chosen move outlined."""
    from PIL import Image, ImageDraw

    scale = max(1, -(-320 // frame.shape[1]))
    image = Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
    if board and values is not None:
        return _go_heat_map(image, score, step, action, values, board)
    rows = 1 + (0 if values is None else len(values))
    band = 16 * rows + 6
    canvas = Image.new("RGB", (image.width, image.height + band), (20, 20, 20))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = image.height + 3
    draw.text((4, y), f"score {score:g}   step {step}", fill=(255, 255, 255))
    if values is not None:
        lo, hi = float(values.min()), float(values.max())
        for a, v in enumerate(values):
            y += 16
            width = int((image.width - 90) * (v - lo) / (hi - lo)) if hi > lo else 0
            colour = (80, 200, 80) if a == action else (90, 90, 160)
            draw.rectangle((80, y + 2, 80 + max(width, 1), y + 12), fill=colour)
            draw.text((4, y), f"{a:>2} {v:8.3f}", fill=(255, 255, 255))
    return np.asarray(canvas)


def _go_heat_map(image, score: float, step: int, action: int | None, values: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    cell = image.width / (size + 1)  # envs/go/render.py: point (r, c) sits at ((c + 1) cell, (r + 1) cell)
    heat = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(heat)
    top = float(values.max()) or 1.0
    for a, p in enumerate(values[: size * size]):
        row, col = divmod(a, size)
        x, y, half = (col + 1) * cell, (row + 1) * cell, 0.42 * cell
        if p > 0:
            draw.rectangle((x - half, y - half, x + half, y + half), fill=(220, 30, 30, int(200 * p / top)))
        if a == action:
            draw.rectangle((x - half, y - half, x + half, y + half), outline=(40, 200, 40, 255), width=3)
    canvas = Image.new("RGB", (image.width, image.height + 22), (20, 20, 20))
    canvas.paste(Image.alpha_composite(image.convert("RGBA"), heat).convert("RGB"), (0, 0))
    passing = " (passes)" if action == size * size else ""
    ImageDraw.Draw(canvas).text(
        (4, image.height + 4), f"score {score:g}   move {step}   pass {values[-1]:.0%}{passing}", fill=(255, 255, 255)
    )
    return np.asarray(canvas)


def suffixes_text() -> str:
    """The file kinds `write_video` writes, for error messages: ".mp4, .gif or .png"."""
    return f"{', '.join(VIDEO_SUFFIXES[:-1])} or {VIDEO_SUFFIXES[-1]}"


def write_video(frames: Iterator[np.ndarray], path: Path, fps: float) -> int:
    """Write frames to .mp4 (H.264 through imageio-ffmpeg's bundled ffmpeg) or .gif (Pillow), or the last one to
    .png (a still of the final position and score); returns the frame count. Frames are padded with black to even
    sizes (H.264's 4:2:0 needs them)."""
    import imageio.v2 as imageio

    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"video file {str(path)!r} must end in {suffixes_text()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        count, last = 0, None
        for count, last in enumerate(frames, start=1):
            pass
        if last is not None:
            imageio.imwrite(str(path), last)
        return count
    mp4 = path.suffix.lower() == ".mp4"
    options = dict(fps=fps, macro_block_size=1, quality=7) if mp4 else dict(duration=1000 / fps, loop=0)
    count = 0
    with imageio.get_writer(str(path), **options) as writer:
        for frame in frames:
            if mp4:
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
            writer.append_data(frame)
            count += 1
    return count


def show_window(frames: Iterator[np.ndarray], fps: float, title: str) -> int:
    """Show frames in a pygame window at `fps`; closing the window stops. Returns the frames shown."""
    import pygame

    pygame.init()
    clock, screen, count = pygame.time.Clock(), None, 0
    try:
        for frame in frames:
            if screen is None:
                screen = pygame.display.set_mode((frame.shape[1], frame.shape[0]))
                pygame.display.set_caption(title)
            if any(event.type == pygame.QUIT for event in pygame.event.get()):
                break
            screen.blit(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), (0, 0))
            pygame.display.flip()
            clock.tick(fps)
            count += 1
    finally:
        pygame.quit()
    return count


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def record_episode(
    env_name: str,
    policy: Policy,
    path: Path,
    seed: int,
    scores: Scores | None = None,
    fps: float = 30,
    max_steps: int = 4500,
    **options,
) -> int:
    """One game of `policy` to `path` (for videos during training: every algorithm calls this from its
    evaluation; 4,500 steps are 2.5 minutes at 30 fps). Returns the frame count."""
    env = make_viewable(env_name, seed, **options)
    try:
        return write_video(play(env, policy, 1, seed, scores, overlay=True, max_steps=max_steps), path, fps)
    finally:
        env.close()


def free_path(path: Path) -> Path:
    """`path`, or path-1, path-2, ... when it exists: a video is never overwritten."""
    candidate, i = path, 0
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
    return candidate


def play_text(env, policy: Policy, episodes: int, seed: int, scores: Scores | None = None, out=print) -> int:
    """Go in the terminal: the board after each move (the agent's move in brackets; the opponent's reply is
    already on it), with the agent's three likeliest moves when `scores` gives probabilities. Returns moves shown."""
    from envs.go import gtp, render

    obs, info = env.reset(seed=seed)
    shown, done, starts = 0, 0, np.ones(1, dtype=bool)
    colour = "Black" if int(info["to_play"][0]) == 1 else "White"
    out(f"{env.name}, komi {env.komi:g}: the agent plays {colour} against the {env.opponent} player")
    while done < episodes:
        action = act(policy, obs, starts, info["action_mask"])
        note = ""
        if scores is not None:
            p = act(scores, obs, starts, info["action_mask"])[0]
            note = "  agent's likeliest: " + ", ".join(
                f"{gtp.vertex(int(a), env.size)} {p[a]:.0%}" for a in np.argsort(-p)[:3]
            )
        obs, reward, terminated, truncated, info = env.step(action)
        starts = np.zeros(1, dtype=bool)
        shown += 1
        out(f"move {shown}: agent {gtp.vertex(int(action[0]), env.size)}{note}")
        out(render.board_text(env.state.board[0].cpu(), env.size, int(action[0])))
        if terminated[0] or truncated[0]:
            out(
                f"game over: {'won' if reward[0] > 0 else 'lost' if reward[0] < 0 else 'drawn'} (reward {reward[0]:+g})"
            )
            done += 1
            if done < episodes:
                obs, *_, info = env.step(action)
                starts = np.ones(1, dtype=bool)
    return shown


def training_video(run, eval_round: int, step: int, policy: Policy, scores: Scores | None = None) -> Path | None:
    """After evaluation round `eval_round` (1-based): every `video_frequency`-th round, one game of `policy`
    to <run>/videos/step_<step>.mp4. Any algorithm calls this from its evaluation. Returns the path or None."""
    every = getattr(run.config, "video_frequency", 0)
    if every <= 0 or eval_round % every:
        return None
    path = free_path(run.dir / "videos" / f"step_{step}.mp4")
    record_episode(
        run.config.env,
        policy,
        path,
        seed=run.config.seed + step,
        scores=scores,
        **hooks.for_config(run.config).env_options(),
    )
    return path
