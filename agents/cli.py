"""The `rl` command: thin. It parses, resolves the config, and calls one function.

Bad input (unknown algorithm, env or key, a wrong type, a missing or corrupt checkpoint) prints one
line on stderr naming the problem and the nearest valid choice, and exits with code 2.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

# torch's OpenMP threads sleep when idle instead of spinning, so a second job on the same cores does not make them
# collapse (PPO on Pong beside another run: 224 steps/s instead of 40; docs/BENCHMARKS.md, "Torch threads on a
# shared CPU"). Set before torch loads OpenMP; a value the user set wins (OMP_WAIT_POLICY=ACTIVE: spin).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Reinforcement-learning agents: train, evaluate, watch and compare; plan exactly; play Go.\n\n"
    "Example: rl train dqn --env Pong",
)


# Options `rl gtp` and `rl play go` share
Komi = Annotated[
    Optional[float],
    typer.Option(
        "--komi", help="Komi (default: an --agent run's go.komi; else by size: 24.5 on 5x5, 8.5 on 7x7, else 7.5)."
    ),
]
Search = Annotated[
    int, typer.Option("--search", min=0, help="With --agent: read N playouts ahead per move (PUCT tree search).")
]
# The checkpoint that eval, watch, export, gtp and play use
Checkpoint = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="latest, best (the weights of the run's best evaluation: checkpoints/best), or a step: "
        "checkpoints/step_<STEP>.",
    ),
]
Symmetries = Annotated[
    bool,
    typer.Option(
        "--symmetries",
        help="With --agent: average its network over the board's 8 symmetries at every position (8 forward passes a "
        "move; with --search, a playout).",
    ),
]


def _user_errors(fn):
    """Turn the project's input errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from agents.checkpoint import CheckpointError
        from agents.compare import CompareError
        from agents.config import ConfigError
        from agents.export import ExportError
        from agents.watch import VideoError
        from envs import EnvNameError
        from envs.tabular import MDPFileError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, EnvNameError, CheckpointError, VideoError, CompareError, MDPFileError, ExportError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _json(data) -> str:
    """Strict JSON, as other programs parse it: NaN and infinities (an interval over one run) become null."""

    def finite(x):
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: finite(v) for k, v in x.items()}
        return [finite(v) for v in x] if isinstance(x, (list, tuple)) else x

    return json.dumps(finite(data), allow_nan=False)


@app.command()
@_user_errors
def train(
    algo: str = typer.Argument(..., help="Algorithm: dqn, ppo, a2c, reinforce, alphazero (see `rl algos`)."),
    env: Optional[str] = typer.Option(
        None, "--env", help="Environment: Pong, ALE/Pong-v5, CartPole-v1, ... (see `rl envs`)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total env steps over all envs (total_timesteps)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    num_envs: Optional[int] = typer.Option(None, "--num-envs", help="Environments stepped together."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML file of overrides, or a preset's name: configs/<algo>/NAME.yaml (dqn: rainbow)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override one key: --set learning_rate=1e-4 (repeatable; nested: encoder.name=mlp)."
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Run folder to continue from its latest checkpoint."),
    impl: str = typer.Option(
        "ours", "--impl", help="ours | sb3: Stable-Baselines3's agent with this config, logged into our run layout."
    ),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Data-parallel processes on this machine (PPO family): runs this command under torchrun.",
    ),
):
    """Train an agent; writes runs/<env>__<algo>__<seed>__<time>/ (config, TensorBoard, checkpoints).

    \b
    Examples:
      rl train dqn --env Pong
      rl train dqn --env CartPole-v1 --steps 50000 --seed 3
      rl train dqn --env Breakout --set double_dqn=true --set n_step=3
      rl train dqn --env Pong --resume runs/Pong__dqn__1__20261123-101500
      rl train ppo --env Pong
      rl train a2c --env CartPole-v1
      rl train dqn --env CartPole-v1 --impl sb3   (SB3's DQN, same hyperparameters and tags)
      rl train ppo --env Pong --nproc 4
        (= torchrun --standalone --nproc_per_node 4 -m agents.cli train ppo --env Pong)
    Ctrl-C (or SIGTERM, SIGHUP) stops after the current step with a checkpoint; --resume continues the same curves.
    """
    from agents import distributed, launch

    launch.check(algo, impl, nproc, resume)
    if nproc > 1:
        raise typer.Exit(distributed.relaunch(nproc))
    flags = {"total_timesteps": steps, "seed": seed, "device": device, "num_envs": num_envs}
    run, summary = launch.train(algo, env, flags, config, set_, resume, impl)
    if not run.is_main:
        return
    last_eval = f", last eval return {summary['evals'][-1][1]:.2f}" if summary["evals"] else ""
    if summary.get("best"):  # --impl sb3 keeps no checkpoints/best
        last_eval += f", best {summary['best'][1]:.2f} at step {summary['best'][0]:,} in checkpoints/best"
    typer.echo(
        f"{'finished' if summary['finished'] else 'stopped'} at step {summary['step']:,} "
        f"({summary['sps']:,.0f} SPS{last_eval}); run folder: {run.dir}"
    )
    if not summary["finished"] and impl == "ours":
        typer.echo(f"continue with: rl train {algo} --resume {run.dir}")


@app.command()
@_user_errors
def tune(
    algo: Optional[str] = typer.Argument(None, help="Algorithm: dqn, ppo (search spaces in configs/tune/ALGO.yaml)."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment, as rl train's --env."),
    trials: int = typer.Option(
        20, "--trials", min=1, help="Trials the study holds when done (finished, pruned or running; failed ones rerun)."
    ),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes sharing the study, one torch thread each."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default ENV__ALGO, e.g. CartPole-v1__dqn)."),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="SQLAlchemy URL of the study's database (default sqlite:///RUNS_DIR/tune/STUDY.db)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Env steps of each trial (total_timesteps)."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML file of overrides for every trial, or a preset's name (as rl train's)."
    ),
    set_: list[str] = typer.Option([], "--set", help="Fix one key for every trial: --set seed=2 (repeatable)."),
    space: Optional[Path] = typer.Option(None, "--space", help="Search space YAML (default configs/tune/ALGO.yaml)."),
    pruner: str = typer.Option("median", "--pruner", help="median | halving | none: stop runs that fall behind."),
    startup_trials: int = typer.Option(
        5, "--startup-trials", min=0, help="Random trials before TPE models the results (none pruned by median)."
    ),
    report: Optional[str] = typer.Option(
        None, "--report", metavar="STUDY", help="Print STUDY's best trials and write its history and importance plots."
    ),
):
    """Tune hyperparameters with Optuna: each trial an ordinary run in runs/, the study in a database.

    Each trial samples the keys of the search space (configs/tune/ALGO.yaml; keys fixed by --config, --steps or --set
    are not searched) and is scored by the mean of its evaluation returns over the run (the area under the evaluation
    curve: solving in fewer steps scores higher). TPE picks the values; the pruner, fed each evaluation's return,
    stops a run that falls behind with a checkpoint (median: not in the first third of a run). The study is kept in
    RUNS_DIR/tune/STUDY.db: the same command resumes it (Ctrl-C fails the trial in progress, a rerun redoes it), and
    several processes (--jobs, or machines sharing one --storage URL) work on it together. The best trial's overrides
    go to RUNS_DIR/tune/STUDY.best.yaml, for rl train --config.

    \b
    Examples:
      rl tune dqn --env CartPole-v1 --trials 20
      rl tune dqn --env CartPole-v1 --trials 40 --jobs 2          (the same study, 20 more trials, 2 processes)
      rl tune ppo --env CartPole-v1 --trials 20 --pruner halving --set seed=3
      rl tune dqn --env CartPole-v1 --storage postgresql://host/db   (run on each machine)
      rl tune --report CartPole-v1__dqn
      rl train dqn --env CartPole-v1 --config runs/tune/CartPole-v1__dqn.best.yaml
    """
    from agents import tune as tune_lib

    if report is not None:
        done = tune_lib.report(report, storage, set_)
        counts = ", ".join(f"{n} {state}" for state, n in done.counts.items() if n)
        typer.echo(f"study {done.name}: {done.algo} on {done.env}, {counts or 'no trials'}")
        if done.best:
            typer.echo(f"{'trial':>5}  {'value':>9}  params; run folder")
        for t in done.best:
            typer.echo(f"{t.number:>5}  {t.value:>9.2f}  {tune_lib.shown(t.params)}; {t.user_attrs.get('run_dir')}")
        for line in [*(f"plot: {p}" for p in done.plots), *done.notes]:
            typer.echo(line)
        return
    spec = tune_lib.prepare(
        algo,
        env,
        trials=trials,
        jobs=jobs,
        study=study,
        storage=storage,
        steps=steps,
        config_file=config,
        overrides=set_,
        space_file=space,
        pruner=pruner,
        startup_trials=startup_trials,
    )
    typer.echo(f"study {spec.name} in {spec.storage}: {spec.trials} trials searching {', '.join(spec.space)}")
    if spec.unsearched:
        typer.echo(f"not searched (fixed by --config, --steps or --set): {', '.join(spec.unsearched)}")
    outcome = tune_lib.tune(spec)
    typer.echo(f"study {spec.name}: " + ", ".join(f"{n} {state}" for state, n in outcome.counts.items() if n))
    if outcome.best is not None:
        typer.echo(
            f"best: trial {outcome.best.number}, mean evaluation return {outcome.best.value:.2f}, "
            f"run folder {outcome.best.user_attrs['run_dir']}"
        )
        typer.echo(f"train it: rl train {spec.algo} --env {spec.env} --config {outcome.best_path}")
    if outcome.interrupted:
        typer.echo("interrupted: the trial in progress is marked failed; the same command resumes the study")
        raise typer.Exit(130)


@app.command("eval")
@_user_errors
def eval_(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/...)."),
    episodes: int = typer.Option(10, "--episodes", min=1, help="Number of whole games."),
    epsilon: Optional[float] = typer.Option(
        None, "--epsilon", help="Exploration during evaluation (default: the run's eval_epsilon)."
    ),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    opponent: Optional[str] = typer.Option(
        None,
        "--opponent",
        help='Go runs: play random, greedy, gnugo or any GTP engine by command line (gtp:"CMD ARGS", one process '
        "per game), colours alternating; SGFs to <run>/games/.",
    ),
    level: int = typer.Option(1, "--level", min=1, max=10, help="GNU Go's level with --opponent gnugo."),
    greedy: bool = typer.Option(
        False, "--greedy", help="Policy-gradient runs: play the most likely action instead of sampling."
    ),
    search: int = typer.Option(
        0,
        "--search",
        min=0,
        help="Go runs with --opponent: read N playouts ahead per move "
        "(PUCT tree search over the policy and value heads); 0 plays the policy alone.",
    ),
    symmetries: bool = typer.Option(
        False,
        "--symmetries",
        help="Go runs: average the network over the board's 8 symmetries at every position (8 forward passes a move).",
    ),
    checkpoint: Checkpoint = "latest",
    random_opening: int = typer.Option(
        0,
        "--random-opening",
        min=0,
        help="Go runs with --opponent: the first K moves of each game (both sides') are random legal moves, so that "
        "deterministic players do not replay one game.",
    ),
):
    """Evaluate a run's latest checkpoint (or --checkpoint best, or a step): mean, std, min, max of raw game scores
    and a 95% interval.
    Go runs with --opponent: win rate (by colour too) with its 95% Wilson interval and an Elo estimate against that
    opponent, with --search N reading ahead N playouts per move.

    \b
    Examples:
      rl eval runs/Pong__dqn__1__20261123-101500 --episodes 10
      rl eval runs/CartPole-v1__dqn__1__20261123-101500 --json
      rl eval runs/CartPole-v1__dqn__1__20261123-101500 --checkpoint best
      rl eval runs/Go9__ppo__1__20261124-101500 --opponent gnugo --level 1 --episodes 40
      rl eval runs/Go9__ppo__1__20261124-101500 --opponent gtp:"/usr/games/gnugo --mode gtp --capture-all-dead"
      rl eval runs/Go9__ppo__1__20261124-101500 --opponent random --episodes 400 --search 64
      rl eval runs/Go9__ppo__1__20261124-101500 --opponent random --episodes 400 --greedy --symmetries
      rl eval runs/Go9__ppo__1__20261124-101500 --opponent gnugo --level 10 --episodes 100 --random-opening 4
    """
    from agents.eval_run import evaluate_run

    options = {"greedy": greedy, "search": search, "symmetries": symmetries, "random_opening": random_opening}
    result = evaluate_run(run_dir, episodes, epsilon, seed, device, opponent, level, checkpoint=checkpoint, **options)
    if as_json:
        typer.echo(_json(result))
    elif opponent is not None:
        parts = (
            (["best"] if checkpoint == "best" else [])
            + ([f"search {search}"] if search else ["greedy"] if result["greedy"] else [])
            + (["8 symmetries"] if result["symmetries"] else [])
            + ([f"{random_opening} random opening moves"] if random_opening else [])
        )
        label = f" ({', '.join(parts)})" if parts else ""
        typer.echo(
            f"{_env_of(run_dir)} step {result['step']:,}{label} vs {result['opponent']}: won {result['wins']:g}/"
            f"{result['games']} ({result['win_rate']:.0%}, 95% CI {result['win_rate_low']:.0%}-"
            f"{result['win_rate_high']:.0%}; as Black {result['win_rate_black']:.0%}, as White "
            f"{result['win_rate_white']:.0%}), Elo {result['elo']:+.0f} against it; SGF in {result['sgf']}"
        )
    else:
        typer.echo(
            f"{_env_of(run_dir)} step {result['step']:,}{' (best)' if checkpoint == 'best' else ''}: "
            f"{result['mean']:.2f} ± {result['std']:.2f} over {episodes} "
            f"episodes (min {result['min']:g}, max {result['max']:g}, 95% CI [{result['ci95_low']:.2f}, "
            f"{result['ci95_high']:.2f}])"
        )


def _env_of(run_dir: Path) -> str:
    from agents import registry

    return registry.open_run(run_dir, None).config.env


@app.command()
@_user_errors
def supervised(
    model: str = typer.Argument(
        ..., help="Encoder to train: mlp, impala, resnet_tower, lstm, transformer (nature_cnn needs 36x36 images)."
    ),
    data: str = typer.Option(
        "digits", "--data", help="digits (8x8 images), digit_rows (8 steps of 8 pixels), parity (bit strings)."
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training split."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (also fixes the data splits)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML file of overrides, or a preset's name: configs/supervised/NAME.yaml."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override one key: --set optimizer=sgd --set encoder.dropout=0.1 (repeatable)."
    ),
):
    """Train an encoder + linear classifier on offline data; report test accuracy, save a confusion matrix and
    the encoder weights (runs/<data>-<model>__supervised__<seed>__<time>/encoder.safetensors).

    \b
    Examples:
      rl supervised impala --data digits
      rl supervised lstm --data digit_rows --set schedule=cosine
      rl supervised transformer --data parity --set optimizer=adamw --set weight_decay=0.01
      rl train dqn --env CartPole-v1 --set encoder.name=mlp --set encoder.init=runs/digits-mlp__supervised__1__...
    Options: optimizer (sgd, adagrad, rmsprop, adam, adamw), momentum, nesterov, l1, l2, weight_decay,
    encoder.dropout, encoder.norm (mlp), shift, patience (early stopping), schedule (cosine, step, linear).
    """
    from agents import launch

    flags = {"data": data, "epochs": epochs, "seed": seed, "device": device, "encoder": {"name": model}}
    run, summary = launch.supervised(flags, config, set_)
    if not run.is_main:
        return
    typer.echo(
        f"test accuracy {summary['test_accuracy']:.2%} after {summary['epochs']} epochs ({summary['seconds']:.1f} s); "
        f"run folder: {run.dir}"
    )
    typer.echo(
        f"confusion matrix: {run.dir / 'confusion_matrix.png'}; reuse the encoder with --set encoder.init={run.dir}"
    )


@app.command()
@_user_errors
def watch(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/...)."),
    episodes: int = typer.Option(1, "--episodes", min=1, help="Number of whole games."),
    video: Optional[Path] = typer.Option(
        None, "--video", help="Write FILE.mp4 or FILE.gif instead of opening a window; FILE.png: the last frame."
    ),
    fps: float = typer.Option(30.0, "--fps", min=1.0, help="Frames per second (one frame per agent step)."),
    checkpoint: Checkpoint = "latest",
    overlay: bool = typer.Option(
        True, "--overlay/--no-overlay", help="Score, step and the agent's action values under the game."
    ),
    epsilon: Optional[float] = typer.Option(
        None, "--epsilon", help="Exploration while playing (default: the run's eval_epsilon)."
    ),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    text: Optional[bool] = typer.Option(
        None,
        "--text/--no-text",
        help="Go: the boards as text in the terminal (default when there is no display and no --video).",
    ),
):
    """Watch a run's agent play: a window when a display exists, else a video (default <run>/videos/);
    Go boards as text in the terminal when there is neither a display nor --video.

    \b
    Examples:
      rl watch runs/Pong__dqn__1__20261123-101500
      rl watch runs/Pong__dqn__1__20261123-101500 --video pong.mp4 --episodes 2
      rl watch runs/CartPole-v1__dqn__1__20261123-101500 --video cartpole.gif --checkpoint 10000 --no-overlay
      rl watch runs/CartPole-v1__dqn__1__20261123-101500 --video best.gif --checkpoint best
      rl watch runs/Go9__ppo__1__20261124-101500 --text
    Atari shows the full-colour screen of the very game the agent plays on its 84x84 input.
    """
    from agents.watch import has_display
    from agents.watch_run import watch as watch_run

    path, frames = watch_run(run_dir, episodes, video, fps, checkpoint, overlay, epsilon, seed, device, text)
    if path is not None:
        typer.echo(f"wrote {path} ({frames} frames at {fps:g} fps)")
    elif frames:  # the text board printed its own lines; a window shows frames
        typer.echo(f"showed {frames} {'moves' if text is not False and not has_display() else 'frames'}")


@app.command("export")
@_user_errors
def export_(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/...)."),
    fmt: str = typer.Option(
        "onnx", "--format", help="onnx (runs with onnxruntime alone) or torchscript (torch.jit.load)."
    ),
    out: Path = typer.Option(..., "--out", help="The file to write: FILE.onnx (onnx) or FILE.pt (torchscript)."),
    checkpoint: Checkpoint = "latest",
):
    """Export a run's policy to ONNX or TorchScript, checked against torch before the file is written.

    The file maps a batch of observations exactly as the env gives them (Atari: uint8 (N, 4, 84, 84), Nature
    preprocessing) to (N, A): Q-values for DQN, action logits for PPO, A2C and REINFORCE (fp32, eval mode). It must
    match torch within 1e-4 on 1,000 observations of the env played with random actions.

    \b
    Examples:
      rl export runs/Pong__dqn__1__20261123-101500 --out pong.onnx --checkpoint best
      rl export runs/CartPole-v1__ppo__1__20261123-101500 --format torchscript --out cartpole.pt --checkpoint 50000
    """
    from agents.export import TOLERANCE, export

    done = export(run_dir, fmt, out, checkpoint)
    about = done.about
    typer.echo(f"wrote {done.path}: {about['env']} {about['algo']} step {int(about['step']):,}")
    typer.echo(f"input {about['input']}; output {about['output']}")
    typer.echo(
        f"{'onnxruntime' if fmt == 'onnx' else 'torch.jit.load'} against torch: max |difference| "
        f"{done.max_difference:.1e} (tolerance {TOLERANCE:.0e}) over {done.observations:,} observations"
    )


@app.command()
@_user_errors
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders; runs of one config on several seeds are grouped."),
    tag: str = typer.Option("charts/episodic_return", "--tag", help="Scalar to compare, e.g. eval/episodic_return."),
    out: Path = typer.Option(Path("compare.png"), "--out", help="Plot file (.png, .pdf, .svg)."),
    smooth: int = typer.Option(10, "--smooth", min=1, help="Moving average over this many logged points."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the plotted curves: group,step,mean,low,high."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Also report the steps each run took to reach this score (on its smoothed curve)."
    ),
):
    """Plot runs' curves (mean over seeds, 95% interval) and print final scores with IQM and bootstrap intervals.

    \b
    Examples:
      rl compare runs/CartPole-v1__dqn__* runs/CartPole-v1__dqn-sb3__*
      rl compare runs/Pong__dqn__* --tag eval/episodic_return --out pong.png
      rl compare runs/CartPole-v1__dqn__* --tag eval/episodic_return --smooth 1 --threshold 475
    """
    import math

    from agents.compare import CompareError
    from agents.compare import compare as compare_runs

    if threshold is not None and not math.isfinite(threshold):
        raise CompareError(f"--threshold must be a finite score, got {threshold}")
    rows = compare_runs(run_dirs, tag, out, smooth, csv, threshold)
    if as_json:
        typer.echo(_json(rows))
        return
    width = max(len(r["label"]) for r in rows)
    typer.echo(f"{'group':<{width}}  runs  {'steps':>9}  {'mean':>9}  {'IQM':>9}  IQM 95% bootstrap CI")
    for r in rows:
        typer.echo(
            f"{r['label']:<{width}}  {r['runs']:>4}  {r['steps']:>9,}  {r['mean']:>9.2f}  {r['iqm']:>9.2f}  "
            f"[{r['iqm_ci95_low']:.2f}, {r['iqm_ci95_high']:.2f}]"
        )
    if threshold is not None:
        for r in rows:
            to = r["steps_to_threshold"]
            runs = ", ".join("never" if t is None else f"{t:,}" for t in to)
            median = r["median_steps_to_threshold"]
            typer.echo(
                f"{r['label']}: reached {threshold:g} in {sum(t is not None for t in to)}/{len(to)} runs"
                + (f", median {median:,.0f} steps" if median is not None else "")
                + f" ({runs})"
            )
    typer.echo(f"final score: mean of {tag} over the last 10% of each run's steps; plot: {out}")


@app.command()
@_user_errors
def board(
    logdir: Path = typer.Argument(Path("runs"), help="Folder of run folders."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default: 6006, or the next free one)."),
):
    """Start TensorBoard on 127.0.0.1 for LOGDIR and print its address; Ctrl-C stops it.

    \b
    Examples:
      rl board
      rl board runs --port 6007
    """
    import time

    from tensorboard import program

    from agents.compare import CompareError

    if not logdir.is_dir():
        raise CompareError(f"log folder {str(logdir)!r} does not exist (train a run first, or pass its folder)")
    board = program.TensorBoard()
    board.configure(
        argv=[None, "--logdir", str(logdir), "--host", "127.0.0.1", *(["--port", str(port)] if port else [])]
    )
    typer.echo(f"TensorBoard at {board.launch()} (Ctrl-C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@app.command("envs")
def envs_(
    family: Optional[str] = typer.Option(None, "--family", help="Only this family: atari, cartpole, frozenlake, ..."),
):
    """List the environment names `--env` accepts.

    \b
    Examples:
      rl envs
      rl envs --family atari
    """
    import envs

    rows = [r for r in envs.known_envs() if family is None or r[1] == family]
    width = max(len(r[0]) for r in rows) if rows else 0
    for name, fam, desc in rows:
        typer.echo(f"{name:<{width}}  {fam:<12} {desc}")


@app.command()
def algos():
    """List the algorithms `rl train` accepts.

    \b
    Example:
      rl algos
    """
    from agents.registry import ALGORITHMS

    for name, entry in ALGORITHMS.items():
        typer.echo(f"{name:<8} {entry.summary}")


@app.command()
@_user_errors
def plan(
    method: str = typer.Argument(
        ..., help="value-iteration | policy-iteration | modified-policy-iteration | q-value-iteration."
    ),
    env: Optional[str] = typer.Option(
        None,
        "--env",
        help="FrozenLake-v1, FrozenLake8x8-v1, Taxi-v4, CliffWalking-v1, GridWorld, Gambler, JacksCarRental.",
    ),
    mdp: Optional[Path] = typer.Option(
        None, "--mdp", help=".npz with P (A, S, S), R (S, A) or (A, S, S), optional terminal (S,)."
    ),
    gamma: Optional[float] = typer.Option(
        None, "--gamma", help="Discount in (0, 1] (default: the MDP's own, 0.99 for files)."
    ),
    as_json: bool = typer.Option(False, "--json", help='Print {"V", "Q", "policy", "iterations", "gamma"}.'),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a heatmap of V with the policy (grid worlds)."),
):
    """Solve a tabular MDP exactly and show its optimal values and policy.

    \b
    Examples:
      rl plan value-iteration --env FrozenLake-v1 --plot frozenlake.png
      rl plan policy-iteration --env JacksCarRental
      rl plan modified-policy-iteration --mdp my_mdp.npz --gamma 0.95 --json
    """
    from agents import planning
    from envs import tabular

    model, solution, gamma = planning.plan(method, env, mdp, gamma, plot)
    V, Q, policy = solution.V.numpy(), solution.Q.numpy(), solution.policy.numpy()
    if plot is not None:
        tabular.plot(model, V, policy, plot, f"{model.name}: {method}, gamma {gamma:g}")
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "V": V.tolist(),
                    "Q": Q.tolist(),
                    "policy": policy.tolist(),
                    "iterations": solution.iterations,
                    "gamma": gamma,
                }
            )
        )
        return
    typer.echo(
        f"{model.name}: {method}, gamma {gamma:g}, {solution.iterations} iterations, "
        f"{model.num_states} states, {model.num_actions} actions"
    )
    typer.echo(tabular.table(model, V, policy))
    if plot is not None:
        typer.echo(f"plot: {plot}")


@app.command("gtp")
@_user_errors
def gtp_(
    size: int = typer.Option(9, "--size", min=5, max=19, help="Initial board size (GTP boardsize changes it)."),
    komi: Komi = None,
    seed: int = typer.Option(0, "--seed", help="Seed of the random policy."),
    agent: Optional[Path] = typer.Option(
        None, "--agent", help="A Go run folder (rl train ppo --env Go9): its policy plays."
    ),
    search: Search = 0,
    symmetries: Symmetries = False,
    checkpoint: Checkpoint = "latest",
):
    """Speak GTP v2 on stdin/stdout, for Go GUIs (Sabaki, GoGui) and engine matches.

    Plays the --agent run's policy (its board size), else a random legal move that fills none of its own eyes.
    Commands: list_commands shows them (play, genmove, undo, showboard, final_score, loadsgf,
    printsgf, list_stones, is_legal, ...).

    \b
    Examples:
      rl gtp --size 9
      rl gtp --agent runs/Go9__ppo__1__20261124-101500 --search 64
      rl gtp --agent runs/Go9__ppo__1__20261124-101500 --symmetries --checkpoint best
      gogui-twogtp -black "rl gtp" -white "/usr/games/gnugo --mode gtp" -size 9
    """
    from agents.go.engine import engine
    from envs.go import gtp

    gtp.serve(engine(size, komi, seed, agent, search, symmetries, checkpoint))


@app.command("play")
@_user_errors
def play_(
    game_name: str = typer.Argument("go", metavar="GAME", help="The game: go."),
    size: int = typer.Option(9, "--size", min=5, max=19, help="Board size, 5..19."),
    colour: str = typer.Option("black", "--colour", "--color", help="Your colour: black (moves first) or white."),
    komi: Komi = None,
    seed: int = typer.Option(0, "--seed", help="Seed of the engine's random policy."),
    agent: Optional[Path] = typer.Option(
        None, "--agent", help="A Go run folder: play against its policy (on its board size)."
    ),
    search: Search = 0,
    symmetries: Symmetries = False,
    checkpoint: Checkpoint = "latest",
):
    """Play Go against the engine in the terminal: type moves like D4, or pass, undo, resign.

    \b
    Examples:
      rl play go --size 9
      rl play go --size 5 --colour white
      rl play go --agent runs/Go5__ppo__1__20261124-101500
      rl play go --agent runs/Go9__ppo__1__20261124-101500 --symmetries
    """
    from agents.config import ConfigError
    from agents.go.engine import engine
    from envs.go import game, play

    if game_name != "go":
        raise ConfigError(f"unknown game {game_name!r}: the one game is go (rl play go --size 9)")
    if colour not in ("black", "white"):
        raise ConfigError(f"--colour {colour!r}: black or white")
    play.play_terminal(
        engine(size, komi, seed, agent, search, symmetries, checkpoint), game.BLACK if colour == "black" else game.WHITE
    )


def main() -> None:  # `python -m agents.cli`
    app()


if __name__ == "__main__":
    sys.exit(main())
