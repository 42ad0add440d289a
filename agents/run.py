"""What every training run shares: its folder, seeding, device, TensorBoard writer, progress and stop signals.

An algorithm file calls `start(...)`, then logs with `run.log(...)` and checks `run.stop_requested` (set by
Ctrl-C, SIGTERM or SIGHUP) once per iteration. The loop's bookkeeping is shared as small pieces every loop calls:
`Counters` (what a checkpoint restores), `crossed` (did this iteration pass a multiple of a cadence), `Clock`
(throughput and the progress bar), `restoring` (a checkpoint that does not fit the network is a user error) and
`finish` (the last evaluation and checkpoint, the summary).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from agents import checkpoint, distributed
from agents import config as config_lib
from agents.config import ConfigError


def pick_device(name: str) -> torch.device:
    """`auto` takes CUDA when present; asking for CUDA without it is a config error, not a crash later."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device' is {name!r} but CUDA is not available here: use --device cpu (or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config key 'device' is {name!r}: use auto, cpu or cuda") from None


def run_folder(path: Path, option: str = "") -> Path:
    """`path` if it is a run folder (it holds config.yaml), else one error line naming it (and the option given)."""
    path = Path(path)
    if not (path / "config.yaml").exists():
        raise checkpoint.CheckpointError(
            f"{option + ' ' if option else ''}{str(path)!r} is not a run folder (no config.yaml in it)"
        )
    return path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_run_dir(runs_dir: Path, env_short: str, algo: str, seed: int) -> Path:
    """runs/<env>__<algo>__<seed>__<YYYYmmdd-HHMMSS>/, never an existing folder."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = runs_dir / f"{env_short.replace('/', '-')}__{algo}__{seed}__{stamp}"
    for i in range(1000):
        path = base if i == 0 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as e:  # read-only, a file, under /proc
            raise ConfigError(
                f"config key 'runs_dir' is {str(runs_dir)!r}: cannot create a run folder in it ({e.strerror})"
            ) from None
    raise ConfigError(f"cannot create a new run folder under {str(runs_dir)!r}")


@dataclass
class Run:
    dir: Path
    algo: str
    config: Any
    device: torch.device
    writer: SummaryWriter | None  # None on ranks other than 0 (agents/distributed.py)
    resume_from: checkpoint.Checkpoint | None = None
    stop_requested: bool = False
    saving: bool = False  # a checkpoint is being written (what a second stop signal is told)
    _progress: Any = None
    _task: Any = None
    _last_line: float = field(default=0.0)
    _handlers: dict = field(default_factory=dict)  # signal -> the handler it had before start()

    @property
    def is_main(self) -> bool:
        """The process that writes the folder and reports (rank 0 under torchrun), known after the process group
        has closed too."""
        return self.writer is not None

    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if self.writer is None:
            return
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, float(value), step)

    def progress(self, step: int, total: int, sps: float, recent_return: float | None) -> None:
        if self.writer is None:
            return
        ret = "-" if recent_return is None else f"{recent_return:.1f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=step, sps=f"{sps:,.0f}", ret=ret)
        elif time.time() - self._last_line > 30 or step >= total:
            self._last_line = time.time()
            print(f"step {step:,}/{total:,}  {sps:,.0f} SPS  return {ret}", flush=True)

    def say(self, line: str) -> None:
        """One line on the console (above the progress bar when there is one); rank 0 only."""
        if self.writer is None:
            return
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False)
        else:
            print(line, flush=True)

    def write_checkpoint(self, save: Callable[[], Any]) -> Any:
        """Call `save` (and return what it returns), marked as saving: a stop signal meanwhile is told that the save
        finishes first."""
        self.saving = True
        try:
            return save()
        finally:
            self.saving = False

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self.writer is not None:
            self.writer.close()
        self.restore_signal_handlers()

    def restore_signal_handlers(self) -> None:
        """The handlers the stop signals had before start()."""
        for signum, handler in self._handlers.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._handlers.clear()


def start(algo: str, config: Any, env_short: str, resume_dir: Path | None = None, total: int | None = None) -> Run:
    """Create (or reopen, for --resume) the run folder, seed, pick the device, open the writer. The progress bar
    counts to `total` (default config.total_timesteps; `rl supervised` counts epochs).

    Under torchrun only rank 0 creates the folder and writes to it; it sends the folder's path to the other
    ranks, which get no writer and no progress bar (agents/distributed.py). On --resume every rank loads the
    latest checkpoint."""
    device = distributed.device_for_rank(pick_device(config.device))
    if config.torch_threads > 0:  # 0: the algorithm picks once its network exists (agents/accel.py pick_threads)
        torch.set_num_threads(config.torch_threads)
    resume_from, writer = None, None
    if not distributed.is_main():
        run_dir = Path(distributed.broadcast_object(None))
        if resume_dir is not None:
            resume_from = _resumable(run_dir)
    elif resume_dir is None:
        run_dir = new_run_dir(Path(config.runs_dir), env_short, algo, config.seed)
        try:
            config_lib.save(config, algo, run_dir / "config.yaml")
        except OSError as e:  # a full disk
            shutil.rmtree(run_dir, ignore_errors=True)
            raise ConfigError(f"cannot write {str(run_dir / 'config.yaml')!r}: {e.strerror}") from None
        writer = SummaryWriter(str(run_dir))
        _write_hparams(writer, config)
    else:
        run_dir = Path(resume_dir)
        resume_from = _resumable(run_dir)
        config_lib.save(config, algo, run_dir / "config.yaml")  # when it changed: a longer --steps, a --set
        _wait_for_a_later_second(run_dir)
        # purge_step drops events logged after the checkpoint by the run that died: no duplicate points. It drops
        # steps >= purge_step, and what was logged at the checkpoint's own step (an eval, a loss) came before the save.
        writer = SummaryWriter(str(run_dir), purge_step=resume_from.step + 1)
    if distributed.is_main():
        distributed.broadcast_object(str(run_dir))
    seed_everything(config.seed)
    run = Run(dir=run_dir, algo=algo, config=config, device=device, writer=writer, resume_from=resume_from)
    _install_stop_handlers(run)
    if not distributed.is_main():
        return run
    if config.progress and sys.stdout.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        run._progress = Progress(
            TextColumn(f"[bold]{algo} {env_short}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]} SPS"),
            TextColumn("return {task.fields[ret]}"),
            TimeRemainingColumn(),
        )
        run._task = run._progress.add_task(
            "train",
            total=config.total_timesteps if total is None else total,
            sps="-",
            ret="-",
            completed=resume_from.step if resume_from else 0,
        )
        run._progress.start()
    print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir.parent})", flush=True)
    if resume_from is not None:
        print(f"resuming from step {resume_from.step:,} ({resume_from.path.name})", flush=True)
    return run


def _resumable(run_dir: Path) -> checkpoint.Checkpoint:
    """The checkpoint --resume continues from: the latest, a step checkpoint with its optimizer, never weights alone."""
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    if ckpt.optimizer is None:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(ckpt.path)!r} holds weights only (the best evaluation's): --resume continues from "
            f"a step checkpoint, which {checkpoint.LATEST} names"
        )
    return ckpt


def _wait_for_a_later_second(run_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name is events.out.tfevents.<second>.<host>.
    <pid>.<uid>: a file opened in the same second as an older one can sort before it (uid 10 < uid 9) and
    its points would come first. Opening the resumed writer in a later second keeps the order."""
    newest = max(
        (int(f.name.split(".")[3]) for f in run_dir.glob("events.out.tfevents.*") if f.name.split(".")[3].isdigit()),
        default=0,
    )
    while int(time.time()) <= newest:
        time.sleep(0.05)


STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def _install_stop_handlers(run: Run) -> None:
    """Ctrl-C, SIGTERM (a cluster scheduler's stop) and SIGHUP (a closed terminal) ask the loop to stop after the
    current step and save a checkpoint; the handler says so at once. A further signal never abandons that save: it
    says what is left to do, and the one after "already stopping" (a hung evaluation, a stuck GNU Go pipe), outside a
    save, quits at once: KeyboardInterrupt, the last complete checkpoint kept. A signal ignored before the run (nohup,
    a background job) stays ignored."""
    # which of stdout, stderr are the terminal, known now: after a hangup isatty() fails (EIO) and says no
    terminal = [fd for fd in (1, 2) if os.isatty(fd)]
    quitting = False  # the next stop signal outside a save quits

    def handler(signum, frame):
        nonlocal quitting
        if signum == signal.SIGHUP:
            _leave_closed_terminal(terminal)
        name = STOP_SIGNALS[signum]
        if not run.stop_requested:
            run.stop_requested = True
            _announce(run, f"{name}: stopping after the current step and saving a checkpoint")
        elif run.saving:
            _announce(run, f"{name}: finishing the checkpoint being saved (it is written whole or not at all)")
        elif not quitting:
            quitting = True
            _announce(
                run,
                f"{name}: already stopping: the current step ends, then the checkpoint is saved; once more quits "
                "without saving",
            )
        else:
            _announce(run, f"{name}: quitting without saving (the last complete checkpoint stays)")
            run.restore_signal_handlers()
            raise KeyboardInterrupt

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            run._handlers[signum] = signal.signal(signum, handler)


def _announce(run: Run, line: str) -> None:
    """A line from a signal handler, written at once: os.write, as the handler may run inside the main thread's own
    print, and a buffered stream refuses to be re-entered. The newline first keeps it off the line of the progress
    bar or of the ^C the terminal echoed."""
    if not run.is_main:
        return
    try:
        os.write(sys.stderr.fileno(), f"\n{line}\n".encode())
    except (OSError, ValueError):  # no terminal any more, or a stream without a file descriptor
        pass


def _leave_closed_terminal(terminal: list[int]) -> None:
    """After a hangup, writing to the terminal fails (EIO) and would abort the save: the file descriptors in
    `terminal` (those of 1, 2 that were the terminal) go to /dev/null."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in terminal:
        os.dup2(null, fd)
    os.close(null)


def _write_hparams(writer: SummaryWriter, config: Any) -> None:
    """The resolved config in the HParams plugin, inside this run's own event file (no sub-run)."""
    flat = config_lib.flatten(config_lib.to_dict(config))
    flat = {k: (str(v) if isinstance(v, list) else v) for k, v in flat.items()}
    metrics = {"charts/episodic_return": 0.0, "eval/episodic_return": 0.0}
    for summary in hparams(flat, metrics):
        writer.file_writer.add_summary(summary)


# ---------------------------------------------------------------------------------------------- loop bookkeeping
@dataclass
class Counters:
    """What every training loop counts and a checkpoint restores: env steps over all envs and ranks, updates, the
    last 20 games' raw scores (the progress bar's return), the evaluation history (step, mean return) and the CPU
    seconds this process (this rank) has spent training, evaluation rounds left out (`Clock.charge`)."""

    step: int = 0
    updates: int = 0
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=20))
    evals: list = field(default_factory=list)
    cpu_seconds: float = 0.0

    @classmethod
    def restored(cls, ckpt: checkpoint.Checkpoint | None) -> "Counters":
        """Fresh counters, or those of a resumed run's checkpoint."""
        if ckpt is None:
            return cls()
        counters = cls(
            step=ckpt.step,
            updates=ckpt.state["num_updates"],
            evals=[tuple(e) for e in ckpt.state["evals"]],
            cpu_seconds=ckpt.state.get("cpu_seconds", 0.0),  # checkpoints of older versions did not count it
        )
        counters.recent_returns.extend(ckpt.state["recent_returns"])
        return counters

    def state(self) -> dict[str, Any]:
        """The counters' part of a checkpoint's state.json (the step is the checkpoint's own)."""
        return {
            "num_updates": self.updates,
            "recent_returns": list(self.recent_returns),
            "evals": self.evals,
            "cpu_seconds": self.cpu_seconds,
        }

    def log_games(self, run: Run, finished: Iterable[tuple[float, int]]) -> None:
        """Log each game that ended this step (raw score, length) at the current step."""
        for episodic_return, episodic_length in finished:
            self.recent_returns.append(episodic_return)
            run.log(self.step, {"charts/episodic_return": episodic_return, "charts/episodic_length": episodic_length})

    def recent_return(self) -> float | None:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None


def crossed(step: int, prev_step: int, frequency: int) -> bool:
    """Did the counter pass a multiple of `frequency` going from prev_step to step (0: never)? Counting crossings,
    not `step % frequency == 0`, keeps every cadence whatever number of envs the step advances by."""
    return frequency > 0 and step // frequency > prev_step // frequency


class Clock:
    """Throughput since this process started (a resumed run counts from its checkpoint), and the progress bar moved
    twice a second whatever the log cadence."""

    def __init__(self, step: int):
        self.start_step, self.start_time = step, time.time()
        self._next_progress = self.start_time
        self._cpu_mark = time.process_time()  # this process's CPU time, all its threads (torch's, ALE's)

    def charge(self, counters: Counters, count: bool = True) -> None:
        """Add the process's CPU time since the last call to counters.cpu_seconds (count=False: drop it, as for an
        evaluation round, which is not training)."""
        now = time.process_time()
        if count:
            counters.cpu_seconds += now - self._cpu_mark
        self._cpu_mark = now

    def sps(self, step: int, now: float | None = None) -> float:
        return (step - self.start_step) / max((time.time() if now is None else now) - self.start_time, 1e-9)

    def progress(self, run: Run, counters: Counters, total: int) -> None:
        if (now := time.time()) >= self._next_progress:
            self._next_progress = now + 0.5
            run.progress(counters.step, total, self.sps(counters.step, now), counters.recent_return())


def end_of_iteration(
    run: Run,
    counters: Counters,
    clock: Clock,
    prev_step: int,
    config: Any,
    scalars: Callable[[], dict[str, float]],
    evaluate: Callable[[], Any] | None,
    save: Callable[[], None],
) -> None:
    """The last step of every training iteration, each by the step counter crossing a multiple of its frequency:
    `scalars()` (called only then: one device sync per log) with charts/SPS and charts/cpu_hours (the training's CPU
    time so far, evaluation rounds left out: the x axis of a compute budget) at log_frequency, the progress bar, an
    evaluation at eval_frequency (`evaluate` None: this process does not evaluate), a checkpoint at
    checkpoint_frequency."""
    clock.charge(counters)
    if crossed(counters.step, prev_step, config.log_frequency):
        cpu_hours = counters.cpu_seconds / 3600
        run.log(counters.step, {**scalars(), "charts/SPS": clock.sps(counters.step), "charts/cpu_hours": cpu_hours})
    clock.progress(run, counters, config.total_timesteps)
    if evaluate is not None and crossed(counters.step, prev_step, config.eval_frequency):
        evaluate()
        clock.charge(counters, count=False)
    # the last step's checkpoint is finish()'s, written after the final evaluation so that it holds it
    if crossed(counters.step, prev_step, config.checkpoint_frequency) and counters.step < config.total_timesteps:
        run.write_checkpoint(save)


def make_eval_env(config: Any, evaluating: bool = True, **options: Any):
    """The env evaluation rounds play: up to 8 copies with seeds of their own, or None when the run does not
    evaluate (eval_frequency 0, or a rank other than 0)."""
    if not (evaluating and config.eval_frequency > 0):
        return None
    import envs

    return envs.make(config.env, min(config.eval_episodes, 8), config.seed + 100_000, **options)


@contextmanager
def restoring(ckpt: checkpoint.Checkpoint) -> Iterator[None]:
    """Load a checkpoint's weights (and replay) inside this: weights of another network, or a broken file, become one
    CheckpointError line instead of a traceback."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as e:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(ckpt.path)!r} does not fit this config: {str(e).splitlines()[0]}"
        ) from None


def finish(
    run: Run,
    counters: Counters,
    clock: Clock,
    total: int,
    evaluate: Callable[[], Any] | None,
    save: Callable[[], None],
    closing: Iterable[Any],
) -> dict[str, Any]:
    """End of a training loop (done, or stopped by a signal): the throughput (without the final evaluation and
    checkpoint), a last evaluation when the run is done and none was made at this step, the final checkpoint, the
    envs closed. Returns the summary every `train` returns.

    A resumed run that trained no further step evaluates nothing: the process that saved its checkpoint evaluated
    that step (a checkpoint of an older version may not list that evaluation)."""
    sps = clock.sps(counters.step)
    finished = counters.step >= total
    evaluated = counters.evals and counters.evals[-1][0] == counters.step
    if finished and evaluate is not None and not evaluated and counters.step > clock.start_step:
        evaluate()
    run.write_checkpoint(save)
    for env in closing:
        if env is not None:
            env.close()
    return {
        "sps": sps,
        "train_sps": sps,
        "step": counters.step,
        "finished": finished,
        "num_updates": counters.updates,
        "evals": counters.evals,
        # (step, mean return) of checkpoints/best, or None (no evaluation yet, or a rank that does not write)
        "best": checkpoint.best_evaluation(run.checkpoint_dir) if run.is_main else None,
        "recent_return": counters.recent_return(),
    }
