"""`rl tune`: hyperparameter search with Optuna, each trial an ordinary training run in runs/.

A study samples config keys from a search space (configs/tune/<algo>.yaml: each key a distribution) on top of the
fixed overrides (the env's config file, --config, --steps, --set), trains a run with them, and scores it by the mean
of its evaluation returns over the whole run: the area under the evaluation curve, which rewards learning early as
well as learning well. TPE (Bergstra et al. 2011) picks each trial's values once `startup_trials` random ones are in.
A pruner fed each evaluation's return as the run makes it (the observers of agents/eval_round.py) stops a run that
falls behind the others the way Ctrl-C does, with a checkpoint: median (Optuna's MedianPruner, after a third of the
run) or halving (successive halving, Jamieson & Talwalkar 2016). The study lives in Optuna's RDB storage (an SQLite
file by default, any SQLAlchemy URL): a rerun resumes it, and processes on one machine (--jobs) or on several share it.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
import yaml
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

import envs
from agents import config as config_lib
from agents import eval_round, launch, registry, search_space
from agents.config import ConfigError

PRUNERS = ("median", "halving", "none")
NOT_SAVED = ("runs_dir", "progress", "torch_threads")  # where and how a run shows: left out of <study>.best.yaml
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # what --trials counts: failed ones run again
INTERRUPTED = 130  # a worker's exit code after Ctrl-C (the shell's for SIGINT)

optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial, and errors raised as ours
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, stale-trial checks


@dataclass(frozen=True)
class Spec:
    """A study as every process that works on it needs it (--jobs hands it to new processes: plain data)."""

    algo: str
    env: str
    name: str
    storage: str  # SQLAlchemy URL
    trials: int
    jobs: int
    space: dict[str, BaseDistribution]  # config key -> distribution, the fixed keys left out
    unsearched: tuple[str, ...]  # keys of the space file that --config, --steps or --set fix
    flags: dict[str, Any]  # flat config keys every trial shares, applied after --config (as rl train's flags)
    config_file: Path | None
    overrides: tuple[str, ...]  # --set key=value, applied last
    fixed: tuple[str, ...]  # the keys --config, the flags and --set give: with the sampled ones, the best config
    pruner: str
    startup_trials: int
    warmup_steps: int  # the median pruner prunes no run before this step
    tune_dir: Path  # <runs_dir>/tune: the default database, <study>.best.yaml, the report's plots

    @property
    def best_path(self) -> Path:
        return self.tune_dir / f"{_file_name(self.name)}.best.yaml"


@dataclass(frozen=True)
class Outcome:
    counts: dict[str, int]  # trials by state: complete, pruned, fail, running
    best: FrozenTrial | None
    best_path: Path | None  # None: no trial completed yet
    interrupted: bool


def prepare(
    algo: str | None,
    env: str | None,
    *,
    trials: int,
    jobs: int,
    study: str | None,
    storage: str | None,
    steps: int | None,
    config_file: Path | None,
    overrides: list[str],
    space_file: Path | None,
    pruner: str,
    startup_trials: int,
) -> Spec:
    """Check everything about a study before anything is written: the algorithm, env, fixed overrides and search
    space; any problem is one ConfigError line."""
    if algo is None:
        raise ConfigError("an algorithm is required: e.g. rl tune dqn --env CartPole-v1 --trials 20")
    registry.entry(algo)
    if env is None:
        raise ConfigError(f"--env is required: e.g. rl tune {algo} --env CartPole-v1 (`rl envs` lists them)")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner!r}: use {', '.join(PRUNERS)}")
    canonical = envs.canonical_name(env)
    flags = {"total_timesteps": steps} if steps is not None else {}
    if jobs > 1:  # processes side by side: one torch thread each, no progress bars over each other
        flags |= {"progress": False, "torch_threads": 1}
    base = registry.resolve(algo, canonical, envs.family(canonical), config_file, flags, overrides)
    if base.eval_frequency <= 0:
        raise ConfigError("config key 'eval_frequency' is 0: rl tune scores each trial by its evaluations; set it > 0")
    from_file = {}
    if config_file is not None:  # resolve() has read it: a mapping of known keys
        from_file = config_lib.flatten(yaml.safe_load(config_lib.config_path(algo, config_file).read_text()) or {})
    fixed = tuple(dict.fromkeys([*from_file, *flags, *(o.partition("=")[0].strip() for o in overrides)]))
    space = search_space.load(space_file or search_space.SPACE_DIR / f"{algo}.yaml", algo, base)
    searched = {key: dist for key, dist in space.items() if key not in fixed}
    if not searched:
        keys = ", ".join(space)
        raise ConfigError(f"nothing to search: --config, --steps and --set fix every key of the search space ({keys})")
    name = study or f"{envs.short_name(canonical)}__{algo}"
    tune_dir = Path(base.runs_dir) / "tune"
    return Spec(
        algo=algo,
        env=canonical,
        name=name,
        storage=storage or default_storage(tune_dir, name),
        trials=trials,
        jobs=jobs,
        space=searched,
        unsearched=tuple(key for key in space if key in fixed),
        flags=flags,
        config_file=config_file,
        overrides=tuple(overrides),
        fixed=fixed,
        pruner=pruner,
        startup_trials=startup_trials,
        warmup_steps=base.total_timesteps // 3,
        tune_dir=tune_dir,
    )


def default_storage(tune_dir: Path, name: str) -> str:
    return f"sqlite:///{tune_dir / _file_name(name)}.db"


def _file_name(name: str) -> str:
    return name.replace("/", "-").replace(os.sep, "-")


# ---------------------------------------------------------------------------------------------- the study
def tune(spec: Spec) -> Outcome:
    """Create or resume the study and run trials until it holds spec.trials: here, or in spec.jobs processes."""
    try:
        spec.tune_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {str(spec.tune_dir)!r} for the study ({e.strerror})") from None
    study = _open(spec)  # creates the study (and the database's tables) once, before any worker starts
    if spec.jobs == 1:
        interrupted = work(spec)
    else:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch or database state forked
        workers = [context.Process(target=_worker, args=(spec,)) for _ in range(spec.jobs)]
        for w in workers:
            w.start()
        interrupted = _join(workers)
    best_path = write_best(study, spec)
    return Outcome(_counts(study), study.best_trial if best_path else None, best_path, interrupted)


def work(spec: Spec) -> bool:
    """Run trials one at a time until the study holds spec.trials finished, pruned or running ones (other processes'
    too); returns True when Ctrl-C stopped it (the trial in progress is then marked failed, its run checkpointed)."""
    study = _open(spec)
    try:
        while True:
            optuna.storages.fail_stale_trials(study)  # the running trials of a process that died: failed, run again
            if len(study.get_trials(deepcopy=False, states=COUNTED)) >= spec.trials:
                return False
            study.optimize(
                functools.partial(_objective, spec), n_trials=1, callbacks=[functools.partial(_finished, spec)]
            )
    except KeyboardInterrupt:
        return True


def _objective(spec: Spec, trial: optuna.Trial) -> float:
    """One trial: an ordinary run with the sampled values as flags; its score is the mean of its evaluation returns."""
    sampled = {key: search_space.suggest(trial, key, dist) for key, dist in spec.space.items()}
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    first, pruned = True, False

    def observe(run, step: int, mean: float) -> None:
        nonlocal first, pruned
        if first:  # tag the run with its trial in TensorBoard
            run.writer.add_text("tune/trial", f"study {spec.name}, trial {trial.number}: {shown(sampled)}", step)
            first = False
        trial.report(mean, step)
        # the last step's evaluation ends the run anyway: the trial completes, never pruned
        if not pruned and step < run.config.total_timesteps and trial.should_prune():
            pruned = run.stop_requested = True  # the loop stops after this step and saves a checkpoint
            run.say(f"trial {trial.number} pruned at step {step:,}: stopping the run with a checkpoint")

    eval_round.observers.append(observe)
    try:
        flags = search_space.nested({**spec.flags, **sampled})
        run, summary = launch.train(spec.algo, spec.env, flags, spec.config_file, list(spec.overrides), None)
    finally:
        eval_round.observers.remove(observe)
    flat = config_lib.flatten(config_lib.to_dict(run.config))
    trial.set_user_attr("run_dir", str(run.dir))
    trial.set_user_attr("step", summary["step"])
    trial.set_user_attr("overrides", {k: flat[k] for k in (*spec.fixed, *spec.space) if k not in NOT_SAVED})
    if summary["finished"]:
        return float(np.mean([mean for _, mean in summary["evals"]]))
    if pruned:
        raise optuna.TrialPruned(f"at step {summary['step']:,}")
    trial.set_user_attr("interrupted", True)  # Ctrl-C, SIGTERM or SIGHUP: the trial fails, a rerun runs another
    raise KeyboardInterrupt


def _finished(spec: Spec, study: optuna.Study, trial: FrozenTrial) -> None:
    """After each trial of this process: its line, and <study>.best.yaml rewritten when it completed."""
    where = f"{shown(trial.params)}; run folder: {trial.user_attrs.get('run_dir')}"
    if trial.state == TrialState.COMPLETE:
        print(f"trial {trial.number}: {trial.value:.2f} (mean evaluation return) with {where}", flush=True)
        write_best(study, spec)
    else:
        print(f"trial {trial.number}: pruned at step {trial.user_attrs.get('step', 0):,} with {where}", flush=True)


def write_best(study: optuna.Study, spec: Spec) -> Path | None:
    """<study>.best.yaml: the best trial's whole override set (fixed and sampled), for `rl train --config`; written to
    a temporary file and renamed, as processes sharing the study may write it at once. None: no completed trial."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best, path = study.best_trial, spec.best_path
    text = (
        f"# rl tune: trial {best.number} of study {spec.name} ({spec.storage}), mean evaluation return "
        f"{best.value:.2f}\n# rl train {spec.algo} --env {spec.env} --config {path}\n"
    ) + yaml.safe_dump(search_space.nested(best.user_attrs["overrides"]), sort_keys=False, default_flow_style=None)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def _open(spec: Spec) -> optuna.Study:
    """Create the study, or load it to go on; a study of another algorithm or env under this name is an error."""
    sampler = optuna.samplers.TPESampler(n_startup_trials=spec.startup_trials, constant_liar=True)
    if spec.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_steps)
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner() if spec.pruner == "halving" else optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=_storage(spec.storage),
        study_name=spec.name,
        direction="maximize",
        load_if_exists=True,
        sampler=sampler,
        pruner=pruner,
    )
    made = study.user_attrs
    if not made:
        study.set_user_attr("algo", spec.algo)
        study.set_user_attr("env", spec.env)
    elif (made.get("algo"), made.get("env")) != (spec.algo, spec.env):
        raise ConfigError(
            f"study {spec.name!r} in {spec.storage} tunes {made.get('algo')} on {made.get('env')}, not {spec.algo} "
            f"on {spec.env}: name another with --study"
        )
    return study


def _storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at `url`. A trial's process beats every minute: the running trials of a process that died
    (killed, a lost machine) are marked failed 3 minutes after its last beat, and run again."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # wait out another process's write
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=60, grace_period=180)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
        raise ConfigError(f"--storage {url!r} cannot be opened: {str(e).splitlines()[0]}") from None


def _worker(spec: Spec) -> None:
    """A --jobs process: its trials, then an exit code (0, 2 for an error it printed, INTERRUPTED)."""
    try:
        code = INTERRUPTED if work(spec) else 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = 2
    sys.exit(code)


def _join(workers: list) -> bool:
    """Wait for every worker. Ctrl-C reaches them too (one process group) and each lets its run save a checkpoint
    first: keep waiting for that. Returns True when they were interrupted."""
    try:
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        for w in workers:
            w.join()
    codes = [w.exitcode for w in workers]
    failed = [c for c in codes if c not in (0, INTERRUPTED)]
    if failed:
        raise ConfigError(f"{len(failed)} of {len(workers)} worker processes failed (exit codes {codes}): see above")
    return INTERRUPTED in codes


def _counts(study: optuna.Study) -> dict[str, int]:
    """The study's trials by state: complete, pruned, fail, running (waiting ones too, where there are any)."""
    counts = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


def shown(params: dict[str, Any]) -> str:
    """key=value, ... with floats to 3 significant digits: a trial's values in one line."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# ---------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Report:
    name: str
    algo: str
    env: str
    counts: dict[str, int]
    best: list[FrozenTrial]  # completed trials, the best first
    plots: list[Path]
    notes: list[str]  # why a plot is missing


def report(name: str, storage: str | None, overrides: list[str], top: int = 10) -> Report:
    """A study's `top` best trials, and Optuna's history and parameter-importance plots written beside its database
    (<runs_dir>/tune/, runs_dir from --set as in rl tune)."""
    settings = dict((key.strip(), value.strip()) for key, _, value in (o.partition("=") for o in overrides))
    tune_dir = Path(settings.get("runs_dir", "runs")) / "tune"
    url = storage or default_storage(tune_dir, name)
    if storage is None and not (tune_dir / f"{_file_name(name)}.db").exists():
        raise ConfigError(
            f"no study {name!r}: {str(tune_dir / _file_name(name))}.db does not exist "
            "(--storage URL opens another database, --set runs_dir=DIR another runs folder)"
        )
    store = _storage(url)
    names = optuna.get_all_study_names(store)
    if name not in names:
        held = config_lib._nearest(name, names) if names else "it holds none"
        raise ConfigError(f"no study {name!r} in {url}: {held}")
    study = optuna.load_study(study_name=name, storage=store)
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value, reverse=True)
    plots, notes = _plots(study, len(complete), tune_dir / _file_name(name))
    attrs = study.user_attrs
    return Report(name, attrs.get("algo", "?"), attrs.get("env", "?"), _counts(study), complete[:top], plots, notes)


def _plots(study: optuna.Study, complete: int, stem: Path) -> tuple[list[Path], list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    stem.parent.mkdir(parents=True, exist_ok=True)
    plots, notes = [], []
    if complete < 1:
        notes.append("no history plot: the study has no completed trial yet")
    else:
        axes = optuna_plots.plot_optimization_history(study)
        plots.append(stem.with_name(f"{stem.name}.history.png"))
        axes.figure.savefig(plots[-1], dpi=120, bbox_inches="tight")
        plt.close(axes.figure)
    if complete < 2:
        notes.append(f"no importance plot: it needs 2 completed trials, the study has {complete}")
        return plots, notes
    try:
        axes = optuna_plots.plot_param_importances(study)
    except (ValueError, RuntimeError) as e:  # e.g. every completed trial sampled the same values
        notes.append(f"no importance plot: {str(e).splitlines()[0]}")
        return plots, notes
    plots.append(stem.with_name(f"{stem.name}.importance.png"))
    axes.figure.savefig(plots[-1], dpi=120, bbox_inches="tight")
    plt.close(axes.figure)
    return plots, notes
