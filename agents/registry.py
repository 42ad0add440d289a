"""Algorithm name -> its implementation, and `open_run`: the one way to open a run folder for use.

An algorithm is a module with its config dataclass `Config`, `train(config, run)`, `load_policy(config, ckpt, env,
device, epsilon, seed)` and `action_scores(config, ckpt, env, device)`: the `Algorithm` protocol; the feed-forward
ones also give `load_network(config, ckpt, env, device)`, the network as it plays (`rl export`, Go's search). A2C and
REINFORCE are PPO's loop with their own config classes; a recurrent encoder (encoder.name=lstm) picks recurrent PPO
(agents/ppo_lstm.py) here, where the algorithm is chosen, so no algorithm hands over to another. Modules are
imported on use: listing the algorithms needs no torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from agents import checkpoint
from agents import config as config_lib
from agents.config import ConfigError
from agents.run import run_folder


class Algorithm(Protocol):
    Config: type  # the algorithm's config dataclass, declared beside its code

    def train(self, config: Any, run: Any) -> dict[str, Any]: ...

    def load_policy(
        self, config: Any, ckpt: checkpoint.Checkpoint, env: Any, device: Any, epsilon: float, seed: int
    ): ...

    def action_scores(self, config: Any, ckpt: checkpoint.Checkpoint, env: Any, device: Any): ...


def _dqn() -> Algorithm:
    from agents import dqn

    return dqn


def _ppo() -> Algorithm:
    from agents import ppo

    return ppo


def _a2c() -> Algorithm:
    from agents import a2c

    return a2c


def _reinforce() -> Algorithm:
    from agents import reinforce

    return reinforce


def _ppo_lstm() -> Algorithm:
    from agents import ppo_lstm

    return ppo_lstm


def _alphazero() -> Algorithm:
    from agents import alphazero

    return alphazero


def _supervised_config() -> type:
    from agents.supervised import SupervisedConfig

    return SupervisedConfig


@dataclass(frozen=True)
class Entry:
    name: str
    summary: str  # one line for `rl algos`
    module: Callable[[], Algorithm]
    recurrent: Callable[[], Algorithm] | None = None  # the implementation for encoder.name=lstm, where there is one

    @property
    def config_class(self) -> type:
        return self.module().Config

    def implementation(self, config: Any) -> Algorithm:
        if self.recurrent is not None and config.encoder.name == "lstm":
            return self.recurrent()
        return self.module()


ALGORITHMS: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry(
            "dqn",
            "Deep Q-Network (Nature 2015) with double, dueling, n-step options; replay stores each frame once",
            _dqn,
        ),
        Entry(
            "ppo",
            "Proximal Policy Optimization (2017), CleanRL's recipe: clipped objective, GAE, minibatch epochs",
            _ppo,
            _ppo_lstm,
        ),
        Entry(
            "a2c",
            "Advantage actor-critic (2016): PPO's loop with one RMSprop step per short rollout, no clipping",
            _a2c,
            _ppo_lstm,
        ),
        Entry(
            "reinforce",
            "REINFORCE with a learned baseline (Williams 1992): Monte-Carlo returns, one step per rollout",
            _reinforce,
            _ppo_lstm,
        ),
        Entry(
            "alphazero",
            "AlphaZero-style expert iteration on Go (2017): PUCT self-play, trained on visit counts and results",
            _alphazero,
        ),
    )
}
TRAIN_ALGOS = tuple(ALGORITHMS)  # what `rl train` accepts; `rl supervised` is a command of its own


def _nearest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(sorted(choices))}"


def entry(name: str) -> Entry:
    """The algorithm `rl train NAME` names, or a ConfigError with the nearest name."""
    if name == "supervised":
        raise ConfigError(
            "supervised training has its own command: rl supervised MODEL --data DATASET (see rl supervised --help)"
        )
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}: {_nearest(name, ALGORITHMS)} (`rl algos` lists them)")
    return ALGORITHMS[name]


def implementation(algo: str, config: Any) -> Algorithm:
    """The module that trains and plays `algo` with this config."""
    return entry(algo).implementation(config)


def config_class(algo: str) -> type:
    """The config dataclass of `algo`: a training algorithm's, or supervised's."""
    if algo == "supervised":
        return _supervised_config()
    if algo not in ALGORITHMS:
        names = [*ALGORITHMS, "supervised"]
        raise ConfigError(f"unknown algorithm {algo!r}: {_nearest(algo, names)} (`rl algos` lists them)")
    return ALGORITHMS[algo].config_class


def configs() -> dict[str, type]:
    """Every config class by algorithm name, supervised's too (this imports every algorithm)."""
    return {name: config_class(name) for name in (*ALGORITHMS, "supervised")}


def resolve(algo: str, *args: Any, **kwargs: Any) -> Any:
    """The frozen config of `algo`: agents/config.py's `resolve` (env, family, config file, flags, --set, base) over
    the algorithm's own config class."""
    return config_lib.resolve(config_class(algo), algo, *args, **kwargs)


def load_config(path: Path) -> tuple[str, Any]:
    """A run folder's config.yaml back as (algo, config)."""
    algo, data = config_lib.read_saved(path)
    return algo, config_lib.from_saved(config_class(algo), data, str(path))


@dataclass(frozen=True)
class OpenRun:
    """A run folder opened for use: its algorithm, resolved config and (once loaded) a checkpoint."""

    dir: Path
    algo: str
    config: Any
    checkpoint: checkpoint.Checkpoint | None = None

    @property
    def algorithm(self) -> Algorithm:
        if self.algo == "supervised":
            raise checkpoint.CheckpointError(
                f"{str(self.dir)!r} is a supervised run, not an agent: its test accuracy is in metrics.json"
            )
        return implementation(self.algo, self.config)

    def with_checkpoint(self, step: int | str = "latest") -> OpenRun:
        """This run with a checkpoint loaded: its latest ("latest"), its best evaluation's weights ("best",
        checkpoints/best) or checkpoints/step_<step>."""
        folder = self.dir / "checkpoints"
        if step == "latest":
            return dataclasses.replace(self, checkpoint=checkpoint.load(checkpoint.latest(folder)))
        path = checkpoint.best(folder) if step == "best" else folder / f"step_{step}"
        if path is None or not (path / "state.json").exists():
            steps = sorted(int(p.name[5:]) for p in folder.glob("step_*") if p.name[5:].isdigit())
            have = [*map(str, steps), *(["best"] if checkpoint.best(folder) else [])]
            raise checkpoint.CheckpointError(
                f"{'no best checkpoint' if step == 'best' else f'no checkpoint at step {step}'} in {str(self.dir)!r}: "
                f"{'available: ' + ', '.join(have) if have else 'it has none'}"
            )
        return dataclasses.replace(self, checkpoint=checkpoint.load(path))

    def with_config(self, **changes: Any) -> OpenRun:
        """This run with config keys changed for play (eval_greedy, eval_symmetries)."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))


def open_run(path: Path, step: int | str | None = "latest", option: str = "") -> OpenRun:
    """The one way eval, watch, export, gtp, play and --resume open a run: its config.yaml, and its latest checkpoint
    ("latest"), its best evaluation's weights ("best"), checkpoints/step_<step> or none yet (None: `with_checkpoint`
    later). Every problem is one CheckpointError or ConfigError line; `option` names the command-line option the path
    came from."""
    run_dir = run_folder(path, option)
    opened = OpenRun(run_dir, *load_config(run_dir / "config.yaml"))
    return opened if step is None else opened.with_checkpoint(step)


def load_policy(opened: OpenRun, env, device, epsilon: float, seed: int, scores: bool = False):
    """The run's policy (and, with `scores`, its action scores for overlays) on `env`; a checkpoint whose tensors do
    not fit config.yaml's network is one CheckpointError line."""
    algorithm = opened.algorithm
    with _weights_fit(opened):
        policy = algorithm.load_policy(opened.config, opened.checkpoint, env, device, epsilon, seed)
        return (policy, algorithm.action_scores(opened.config, opened.checkpoint, env, device)) if scores else policy


def load_network(opened: OpenRun, env, device):
    """The run's network as it plays, in eval mode (a feed-forward algorithm's `load_network`), with the same error
    line as `load_policy` for a checkpoint that does not fit."""
    with _weights_fit(opened):
        return opened.algorithm.load_network(opened.config, opened.checkpoint, env, device)


@contextlib.contextmanager
def _weights_fit(opened: OpenRun):
    try:
        yield
    except RuntimeError:  # load_state_dict: tensors missing, unexpected or of another shape than config.yaml's network
        raise checkpoint.CheckpointError(
            f"checkpoint {str(opened.checkpoint.path)!r} does not fit the network in "
            f"{str(opened.dir / 'config.yaml')!r}: missing or mis-shaped tensors"
        ) from None
