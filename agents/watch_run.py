"""`rl watch`: open a run folder and play its agent in a window, to a video, or (Go) as text boards."""

from __future__ import annotations

from pathlib import Path

import envs
from agents import hooks, registry
from agents.run import pick_device
from agents.watch import (
    VIDEO_SUFFIXES,
    VideoError,
    free_path,
    has_display,
    make_viewable,
    play,
    play_text,
    show_window,
    suffixes_text,
    write_video,
)


def watch(
    run_dir: Path,
    episodes: int = 1,
    video: Path | None = None,
    fps: float = 30,
    checkpoint: int | str = "latest",
    overlay: bool = True,
    epsilon: float | None = None,
    seed: int = 0,
    device: str = "auto",
    text: bool | None = None,
) -> tuple[Path | None, int]:
    """Play a run's agent (its `checkpoint`: latest, best or a step): in a window when a display exists and `video` is
    None, else to a video file (default: <run>/videos/watch_step_<N>.mp4). Go boards go to the terminal as text when
    `text` is True, or by default when there is neither a display nor a `video`. Returns (video path or None, frames
    or moves shown)."""
    if video is not None and Path(video).suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"--video {str(video)!r} must end in {suffixes_text()}")
    opened = registry.open_run(run_dir, checkpoint)
    algo, cfg, ckpt = opened.algo, opened.config, opened.checkpoint
    opened.algorithm  # a supervised run is no agent: its error line
    dev = pick_device(device)
    env = make_viewable(cfg.env, seed, **hooks.for_config(cfg).env_options())
    if text is None:
        text = envs.family(cfg.env) == "go" and video is None and not has_display()
    if text and envs.family(cfg.env) != "go":
        raise VideoError(f"--text shows Go boards; {cfg.env} is shown in a window or a video")
    try:
        eps = cfg.eval_epsilon if epsilon is None else epsilon
        policy, scores = registry.load_policy(opened, env, dev, eps, seed, scores=True)
        scores = scores if overlay else None
        if text:
            return None, play_text(env, policy, episodes, seed, scores)
        frames = play(env, policy, episodes, seed, scores, overlay)
        if video is None and has_display():
            return None, show_window(frames, fps, f"{cfg.env} {algo} step {ckpt.step}")
        path = Path(video) if video is not None else free_path(Path(run_dir) / "videos" / f"watch_step_{ckpt.step}.mp4")
        return path, write_video(frames, path, fps)
    finally:
        env.close()
