"""Win-rate curves of Go runs: one panel per evaluation opponent (go/win_rate/<opponent>), one line per run.

    python scripts/go_curves.py runs/Go5__ppo__1__* runs/Go5__ppo__2__* --label scratch --label pretrained \
        --out docs/go5_pretraining.png
    python scripts/go_curves.py runs/Go9__alphazero__1__* runs/Go9__ppo__1__* --x cpu_hours --out docs/go9_cpu.png

Each point is one evaluation round (colours alternating); the shaded band is the 95% Wilson interval of that
round's win rate, so two curves whose bands overlap are not shown apart. A round's number of games is counted from
its SGFs (`agents.go.matches.round_folder`: games/step_<step>/<opponent>_<k>.sgf), since a resumed run \
may have changed go.eval_games; where they are
missing, the run's config.yaml value is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from agents import registry
from agents.go.matches import interval, round_folder  # noqa: E402


def _scalars(run: Path, prefix: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} of the run's scalars whose tag starts with `prefix`."""
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: (np.array([e.step for e in acc.Scalars(tag)]), np.array([e.value for e in acc.Scalars(tag)]))
        for tag in sorted(acc.Tags()["scalars"])
        if tag.startswith(prefix)
    }


def win_rates(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {tag.split("/")[-1]: curve for tag, curve in _scalars(run, "go/win_rate/").items()}


def cpu_hours(run: Path, steps: np.ndarray) -> np.ndarray:
    """The training's CPU hours (charts/cpu_hours) at each of `steps`, interpolated between its logged points."""
    logged = _scalars(run, "charts/cpu_hours").get("charts/cpu_hours")
    if logged is None:
        raise SystemExit(f"go_curves: {run} logs no charts/cpu_hours (a run of an older version): plot it by steps")
    return np.interp(steps, *logged)


def games_per_round(run: Path, opponent: str, steps: np.ndarray) -> np.ndarray:
    """The number of games of each evaluation round against `opponent`: its SGFs, else config.yaml's go.eval_games."""
    default = registry.load_config(run / "config.yaml")[1].go.eval_games
    counted = [len(list(round_folder(run, int(step)).glob(f"{opponent}_*.sgf"))) for step in steps]
    return np.array([n or default for n in counted])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--label", action="append", default=[], help="one per run, in order (default: the folder name)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--x", choices=("steps", "cpu_hours"), default="steps", help="the x axis (default: env steps)")
    args = parser.parse_args()
    labels = args.label + [run.name for run in args.runs[len(args.label) :]]
    curves = {run: win_rates(run) for run in args.runs}
    opponents = sorted(
        {o for c in curves.values() for o in c},
        key=lambda o: (("random", "greedy").index(o) if o in ("random", "greedy") else 2, len(o), o),
    )
    fig, axes = plt.subplots(1, len(opponents), figsize=(4 * len(opponents), 3.4), squeeze=False, sharey=True)
    for ax, opponent in zip(axes[0], opponents):
        for run, label in zip(args.runs, labels):
            if opponent not in curves[run]:
                continue
            steps, rate = curves[run][opponent]
            low, high = interval(rate, games_per_round(run, opponent, steps))
            x = steps if args.x == "steps" else cpu_hours(run, steps)
            ax.plot(x, rate, marker="o", ms=3, label=label)
            ax.fill_between(x, low, high, alpha=0.2)
        ax.set_title(f"vs {opponent}")
        if args.x == "steps":
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.set_xlabel("env steps (agent moves)" if args.x == "steps" else "training CPU hours (evaluations left out)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("win rate (colours alternating)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({', '.join(opponents)})")


if __name__ == "__main__":
    main()
