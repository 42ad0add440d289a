"""Compare runs: learning curves grouped across seeds, and final scores with IQM and bootstrap intervals.

Runs whose config.yaml agree on everything except the seed and where they were written (`seed`,
`runs_dir`, `device`, `progress`, `torch_threads`) form one group: the same experiment on several seeds.
For each group:
- curve: each run's scalar `tag` smoothed by a moving average of `smooth` logged points, interpolated
  onto a common step grid (where every run of the group has data), then the mean across seeds and a
  95% Student-t interval of that mean (mean +- t_{0.975, n-1} * std / sqrt(n));
- final score of a run: the mean of its points in the last 10% of its steps;
- with a threshold, the steps a run took to reach it: the first logged step where its smoothed curve is at or
  above the threshold (sample efficiency: "solved in N steps"), and the group's median over the runs that did;
- table: mean, IQM (the mean of the middle 50% of the runs' final scores, scipy's trim_mean(x, 0.25), as
  in Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice", rliable) and a 95%
  percentile-bootstrap interval of the IQM over runs. With one task per group, rliable's stratified
  bootstrap is the plain bootstrap over runs (scipy.stats.bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from agents.config import flatten
from agents.run import run_folder

NOT_THE_EXPERIMENT = ("seed", "runs_dir", "device", "progress", "torch_threads")
GRID_POINTS = 200


class CompareError(ValueError):
    """A run folder without the tag or without a config; str(error) is one line for the user."""


@dataclass
class Group:
    label: str
    runs: list[Path] = field(default_factory=list)
    curves: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # per run: steps (T,), values (T,)


def read_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one scalar tag from a run's event files (TensorBoard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        have = ", ".join(sorted(acc.Tags()["scalars"])) or "none"
        raise CompareError(f"run {str(run_dir)!r} has no scalar {tag!r} (it has: {have})")
    events = acc.Scalars(tag)
    return np.array([e.step for e in events], dtype=np.float64), np.array([e.value for e in events], dtype=np.float64)


def experiment(run_dir: Path) -> dict:
    """The run's config.yaml without the keys that do not change the experiment."""
    config = yaml.safe_load((run_folder(run_dir) / "config.yaml").read_text()) or {}
    return {k: v for k, v in config.items() if k not in NOT_THE_EXPERIMENT}


def group_runs(run_dirs: list[Path], tag: str) -> list[Group]:
    """Groups of runs with the same experiment, in the order first seen, with their raw curves."""
    groups: list[tuple[dict, Group]] = []
    for run_dir in run_dirs:
        exp = experiment(run_dir)
        group = next((g for e, g in groups if e == exp), None)
        if group is None:
            impl = "-sb3" if exp.get("impl") == "sb3" else ""
            group = Group(f"{exp.get('algo', '?')}{impl} {exp.get('env', '?')}")
            groups.append((exp, group))
        steps, values = read_scalars(run_dir, tag)
        group.runs.append(Path(run_dir))
        group.curves.append((steps, values))
    base = [g.label for _, g in groups]
    flat = [flatten(exp) for exp, _ in groups]  # nested keys by their dotted names: encoder.hidden_sizes
    for i, (_, g) in enumerate(groups):  # same algo and env, other settings: name what differs
        exp = flat[i]
        others = [e for j, e in enumerate(flat) if j != i and base[j] == base[i]]
        diff = sorted(k for k in exp if any(o.get(k) != exp[k] for o in others))
        if diff:
            g.label += (
                " ("
                + ", ".join(f"{k}={exp[k]:.4g}" if isinstance(exp[k], float) else f"{k}={exp[k]}" for k in diff[:3])
                + ")"
            )
    return [g for _, g in groups]


def moving_average(values: np.ndarray, k: int) -> np.ndarray:
    """Mean of the last k points at each point (fewer at the start): the curve keeps its length."""
    if k <= 1:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.minimum(np.arange(1, len(values) + 1), k)
    return (c[1:] - c[np.arange(1, len(values) + 1) - n]) / n


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]], smooth: int = 1, points: int = GRID_POINTS):
    """Steps (G,), mean (G,), low (G,), high (G,) of the curves, each smoothed over `smooth` points, on the
    grid where every curve has data; 95% t-interval across runs (low = high = mean for a single run)."""
    from scipy import stats

    start, end = max(s[0] for s, _ in curves), min(s[-1] for s, _ in curves)
    if end < start:
        raise CompareError("the runs of one group cover disjoint step ranges: nothing to average")
    grid = np.linspace(start, end, points) if end > start else np.array([start])
    ys = np.stack([np.interp(grid, s, moving_average(v, smooth)) for s, v in curves])  # (runs, G)
    mean = ys.mean(axis=0)
    if len(curves) < 2:
        return grid, mean, mean, mean
    half = stats.t.ppf(0.975, len(curves) - 1) * ys.std(axis=0, ddof=1) / np.sqrt(len(curves))
    return grid, mean, mean - half, mean + half


def final_score(steps: np.ndarray, values: np.ndarray) -> float:
    """Mean of the points in the last 10% of the run's steps (the last point at least)."""
    cut = steps[-1] - 0.1 * (steps[-1] - steps[0])
    return float(values[steps >= cut].mean())


def steps_to(steps: np.ndarray, values: np.ndarray, threshold: float, smooth: int = 1) -> int | None:
    """The first logged step where the curve, smoothed over `smooth` points, reaches `threshold`; None if never."""
    reached = np.flatnonzero(moving_average(values, smooth) >= threshold)
    return int(steps[reached[0]]) if len(reached) else None


def iqm(x: np.ndarray) -> float:
    from scipy import stats

    return float(stats.trim_mean(x, 0.25))


def iqm_interval(x: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the IQM over runs (nan with fewer than two runs)."""
    from scipy import stats

    if len(x) < 2:
        return float("nan"), float("nan")
    if np.all(x == x[0]):  # every resample is the same: scipy refuses a degenerate distribution
        return float(x[0]), float(x[0])
    res = stats.bootstrap(
        (x,),
        lambda s, axis=-1: stats.trim_mean(s, 0.25, axis=axis),
        n_resamples=2000,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def table(groups: list[Group], threshold: float | None = None, smooth: int = 1) -> list[dict]:
    rows = []
    for g in groups:
        finals = np.array([final_score(s, v) for s, v in g.curves])
        low, high = iqm_interval(finals)
        reach = {}
        if threshold is not None:
            to = [steps_to(s, v, threshold, smooth) for s, v in g.curves]
            done = [t for t in to if t is not None]
            reach = {
                "threshold": threshold,
                "steps_to_threshold": to,  # per run, None where the run never reached it
                "median_steps_to_threshold": float(np.median(done)) if done else None,
            }
        rows.append(
            {
                "label": g.label,
                "runs": len(g.runs),
                "final_scores": finals.tolist(),
                "mean": float(finals.mean()),
                "iqm": iqm(finals),
                "iqm_ci95_low": low,
                "iqm_ci95_high": high,
                "steps": int(min(s[-1] for s, _ in g.curves)),
                **reach,
            }
        )
    return rows


def plot(groups: list[Group], tag: str, out: Path, smooth: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for g in groups:
        grid, mean, low, high = mean_curve(g.curves, smooth)
        (line,) = ax.plot(grid, mean, label=f"{g.label} ({len(g.runs)} run{'s' if len(g.runs) > 1 else ''})")
        if len(g.runs) > 1:
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(tag + (f" (moving average of {smooth})" if smooth > 1 else ""))
    ax.set_title("mean over seeds, shaded: 95% t-interval")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def write_csv(groups: list[Group], out: Path, smooth: int) -> None:
    """The plotted curves as rows group, step, mean, low, high (low = high = mean for a group of one run)."""
    lines = ["group,step,mean,low,high"]
    for g in groups:
        for row in zip(*mean_curve(g.curves, smooth)):
            lines.append(f'"{g.label}",{row[0]:.0f},' + ",".join(f"{v:.4g}" for v in row[1:]))
    out.write_text("\n".join(lines) + "\n")


def plot_path_problem(path: Path) -> str | None:
    """Why matplotlib cannot write a plot to `path`, or None: it needs a picture format it knows (the extension) and
    a folder that exists. `rl compare --out` and `rl plan --plot` check their paths with it before any work."""
    import difflib

    from matplotlib.backend_bases import FigureCanvasBase

    formats = [f".{f}" for f in FigureCanvasBase.get_supported_filetypes()]
    if path.suffix.lower() not in formats:
        near = difflib.get_close_matches(path.suffix.lower(), formats, n=1, cutoff=0.5)
        what = f"unknown picture format {path.suffix!r}" if path.suffix else "no picture format (file extension)"
        return what + (f", did you mean {near[0]}?" if near else "") + f" (formats: {' '.join(formats)})"
    return folder_problem(path)


def folder_problem(path: Path) -> str | None:
    """Why `path` cannot be written for want of its folder, or None."""
    return None if path.parent.is_dir() else f"there is no folder {str(path.parent)!r} to write it in"


def check_outputs(out: Path | None, csv: Path | None) -> None:
    """Before any run is read: --out names a format matplotlib writes, and both files go into existing folders."""
    for option, path, problem in (("--out", out, plot_path_problem), ("--csv", csv, folder_problem)):
        if path is not None and (why := problem(path)):
            raise CompareError(f"{option} {str(path)!r}: {why}")


def compare(
    run_dirs: list[Path],
    tag: str = "charts/episodic_return",
    out: Path | None = None,
    smooth: int = 10,
    csv: Path | None = None,
    threshold: float | None = None,
) -> list[dict]:
    """Group the runs, plot their smoothed curves to `out` and write them to `csv` (each if given), return the
    table rows (raw final scores; with `threshold`, each run's steps to reach it on its smoothed curve). A file that
    cannot be written (read-only, /proc) is one CompareError line."""
    out, csv = (None if p is None else Path(p) for p in (out, csv))
    check_outputs(out, csv)
    groups = group_runs(run_dirs, tag)
    try:
        if out is not None:
            plot(groups, tag, out, smooth)
        if csv is not None:
            write_csv(groups, csv, smooth)
    except OSError as e:
        raise CompareError(f"cannot write {str(e.filename or out)!r}: {e.strerror or e}") from None
    return table(groups, threshold, smooth)
