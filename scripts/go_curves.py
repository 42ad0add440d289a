"""Win-rate curves of Go runs: one panel per evaluation opponent (go/win_rate/<opponent>), one line per run.

    python scripts/go_curves.py runs/Go5__ppo__1__* runs/Go5__ppo__2__* --label scratch --label pretrained \
        --out docs/go5_pretraining.png

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


def win_rates(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in sorted(acc.Tags()["scalars"]):
        if tag.startswith("go/win_rate/"):
            events = acc.Scalars(tag)
            out[tag.split("/")[-1]] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return out


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
            ax.plot(steps, rate, marker="o", ms=3, label=label)
            ax.fill_between(steps, low, high, alpha=0.2)
        ax.set_title(f"vs {opponent}")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.set_xlabel("env steps (agent moves)")
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
