"""Make the README's pictures from real runs: docs/compare.png (ours vs SB3's DQN on CartPole-v1 over
several seeds, via `rl compare`) and docs/cartpole.gif (our best seed playing one game, via `rl watch`'s
code). Every run is an ordinary `rl train` command; the table printed at the end goes into the README.

    python scripts/make_readme_media.py --steps 15000 --seeds 1 2 3
    python scripts/make_readme_media.py --steps 15000 --seeds 1 2 3 --runs-dir /tmp/media --max-new-runs 2  # in parts
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents import dqn  # noqa: E402
from agents.compare import compare  # noqa: E402
from agents.registry import open_run  # noqa: E402
from agents.watch import make_viewable, play, write_video  # noqa: E402


def train(runs_dir: Path, impl: str, seed: int, steps: int, budget: int | None) -> Path | None:
    """The finished run of (impl, seed, steps) under runs_dir, trained now unless it is there already or
    `budget` (runs left to train in this invocation) is spent."""
    import yaml

    algo = "dqn" if impl == "ours" else "dqn-sb3"
    for run in sorted(runs_dir.glob(f"CartPole-v1__{algo}__{seed}__*")):
        done = (run / "sb3_model.zip").exists() or (run / "checkpoints" / f"step_{steps}").exists()  # saved at the end
        if done and yaml.safe_load((run / "config.yaml").read_text())["total_timesteps"] == steps:
            return run
    if budget is not None and budget <= 0:
        return None
    before = set(runs_dir.glob("*"))
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "train",
        "dqn",
        "--env",
        "CartPole-v1",
        "--steps",
        str(steps),
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--impl",
        impl,
        "--set",
        f"runs_dir={runs_dir}",
        "--set",
        "progress=false",
        "--set",
        "torch_threads=1",
        "--set",
        "eval_frequency=0",
    ]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    (new,) = set(runs_dir.glob("*")) - before
    return new


def gif(run_dir: Path, out: Path, seed: int, max_steps: int, scale: float) -> int:
    """One greedy game of the run's agent with the Q-value overlay, shrunk by `scale`."""
    from PIL import Image

    opened = open_run(run_dir)
    cfg, ckpt = opened.config, opened.checkpoint
    env = make_viewable(cfg.env, seed)
    device = torch.device("cpu")
    policy = dqn.load_policy(cfg, ckpt, env, device, 0.0, seed)
    frames = play(env, policy, 1, seed, dqn.action_scores(cfg, ckpt, env, device), max_steps=max_steps)

    def shrink(frame: np.ndarray) -> np.ndarray:
        image = Image.fromarray(frame)
        return np.asarray(image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS))

    try:
        return write_video((shrink(f) for f in frames), out, fps=30)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help="keep the runs here and reuse finished ones (default: a temporary folder)",
    )
    parser.add_argument(
        "--max-new-runs",
        type=int,
        default=None,
        help="train at most this many runs now, then stop "
        "(to split the work into several shorter commands with --runs-dir)",
    )
    parser.add_argument(
        "--gif-steps", type=int, default=300, help="length cap of the GIF (CartPole games last up to 500)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        runs_dir.mkdir(parents=True, exist_ok=True)
        runs, budget = {}, args.max_new_runs
        for impl in ("ours", "sb3"):
            for seed in args.seeds:
                known = set(runs_dir.glob("*"))
                runs[impl, seed] = train(runs_dir, impl, seed, args.steps, budget)
                if budget is not None and runs[impl, seed] is not None and runs[impl, seed] not in known:
                    budget -= 1
        if None in runs.values():
            print(f"{sum(r is None for r in runs.values())} runs still to train: run this command again")
            return
        ours, theirs = [runs["ours", s] for s in args.seeds], [runs["sb3", s] for s in args.seeds]
        rows = compare(ours + theirs, "charts/episodic_return", args.out / "compare.png", smooth=10)
        print("| implementation | seeds | steps | mean final return | IQM [95% bootstrap CI] |\n|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['label']} | {r['runs']} | {r['steps']:,} | {r['mean']:.1f} | "
                f"{r['iqm']:.1f} [{r['iqm_ci95_low']:.1f}, {r['iqm_ci95_high']:.1f}] |"
            )
        best = max(zip(rows[0]["final_scores"], ours))[1]
        frames = gif(best, args.out / "cartpole.gif", seed=0, max_steps=args.gif_steps, scale=0.5)
        print(f"wrote {args.out / 'compare.png'} and {args.out / 'cartpole.gif'} ({frames} frames, from {best.name})")


if __name__ == "__main__":
    main()
