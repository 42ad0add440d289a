"""Typed configuration: defaults -> configs/<algo>/<family>.yaml -> --config FILE -> flags -> --set key=value.

One override path (nanoGPT's), but every value is checked against the field's type and every error is
one line that names the key and the nearest valid one (nanoGPT's bare asserts are its issue #439).
Key names follow CleanRL's arguments wherever one exists, so users of CleanRL/SB3 need no dictionary.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# configs/ sits beside agents/ in a checkout (and an editable install); a wheel installs it as data files.
CONFIG_DIR = next(
    (
        p
        for p in (Path(__file__).resolve().parent.parent / "configs", Path(sys.prefix) / "share" / "rl" / "configs")
        if p.is_dir()
    ),
    Path(__file__).resolve().parent.parent / "configs",
)


class ConfigError(ValueError):
    """Bad configuration input; str(error) is one line meant for the user."""


def option(
    default: Any,
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    why: str = "",
) -> Any:
    """A dataclass field with the checks `_check_values` applies to its value (to each item of a tuple): one of
    `choices`, low <= v <= high, v > 0 when `positive`. `why` replaces the stock reason of a range error."""
    checks = {"choices": choices, "low": low, "high": high, "positive": positive, "why": why}
    return field(default=default, metadata=checks)


@dataclass(frozen=True)
class EncoderConfig:
    """The network body shared by every agent (agents/encoders.py)."""

    # auto: nature_cnn for image observations, mlp for vectors; see agents.encoders.ENCODERS
    name: str = option("auto", choices=("auto", "mlp", "nature_cnn", "impala", "resnet_tower", "lstm", "transformer"))
    hidden_sizes: tuple[int, ...] = (120, 84)  # mlp: widths of the hidden layers
    init: str = ""  # weights to start from: a .safetensors file of encoder weights or a run folder ("" = fresh)
    freeze: bool = False  # keep the encoder's weights (and batch-norm statistics) fixed during training
    norm: str = option("none", choices=("none", "batch", "layer"))  # mlp: normalisation after each hidden layer
    # mlp: after each hidden layer (tanh: SB3's MlpPolicy, CleanRL's classic-control agents)
    activation: str = option("relu", choices=("relu", "tanh"))
    dropout: float = option(0.0, low=0, high=1)  # mlp, impala, lstm (between layers), transformer: dropout probability
    features_dim: int = 0  # nature_cnn, impala: width of the last layer; 0 = the paper's (512 Nature, 256 IMPALA)
    channels: tuple[int, ...] = (16, 32, 32)  # impala: channels of its three conv stacks (Espeholt et al. 2018)
    tower_channels: int = option(64, positive=True)  # resnet_tower: channels of every residual block
    tower_blocks: int = option(6, positive=True)  # resnet_tower: number of residual blocks
    lstm_hidden: int = option(128, positive=True)  # lstm: hidden size
    lstm_layers: int = option(1, positive=True)  # lstm: stacked layers
    obs_norm: bool = False  # lstm on vectors: normalize observations by their running mean and std (SB3's VecNormalize)
    d_model: int = option(64, positive=True)  # transformer: token width
    num_heads: int = option(4, positive=True)  # transformer: attention heads (must divide d_model)
    num_layers: int = option(2, positive=True)  # transformer: blocks
    patch_size: int = option(4, positive=True)  # transformer on images: square patches of this many pixels a side
    positions: str = option("learned", choices=("learned", "sinusoidal"))  # transformer: position embeddings


@dataclass(frozen=True)
class GoConfig:
    """Go runs (Go5 ... Go19): self-play against a league of past versions (agents/go/league.py), the board's
    symmetries as augmentation, and matches against fixed opponents at each evaluation (agents/go/matches.py).
    Ignored on every other env."""

    # Chinese rules' komi, as OpenSpiel and Pgx use on every size; 24.5 (5x5) and 8.5 (7x7) are perfect-play komis
    komi: float = 7.5
    self_play: bool = True  # train against the league; false: against the env's random player, as Black
    league_size: int = option(16, positive=True)  # past versions kept; the first (near-random) one always stays
    snapshot_frequency: int = option(10, positive=True)  # PPO updates between additions of the current policy
    # a new game's opponent is the newest version with this probability, else any member ...
    latest_prob: float = option(0.5, low=0, high=1)
    # ... the first (initial, near-random) version with this probability (latest_prob + this <= 1)
    anchor_prob: float = option(0.0, low=0, high=1)
    # potential-based reward shaping by the agent's stone lead (envs/go/env.py); returns stay +1/-1
    shaping: float = 0.0
    # stones: lead on the board; captures: lead in prisoners (no cost for passing)
    shaping_potential: str = option("stones", choices=("stones", "captures"))
    # adds this * final margin / N^2 to each training game's +-1 result (envs/go/env.py)
    score_reward: float = option(0.0, low=0, why="it must be >= 0 (0: the game's result only)")
    # false: the agent never fills its own one-point eyes (Monte-Carlo Go's rule), in training and play
    eye_fill: bool = True
    # end: the agent may pass only when nothing else is offered, or to win after the opponent's pass
    pass_rule: str = option("always", choices=("always", "end"))
    symmetries: bool = True  # show each position under a random one of the board's 8 symmetries (envs/go/symmetry.py)
    # gnugo is skipped when GNU Go is not installed
    eval_opponents: tuple[str, ...] = option(("random", "greedy", "gnugo"), choices=("random", "greedy", "gnugo"))
    # GNU Go --level of each gnugo opponent
    gnugo_levels: tuple[int, ...] = option((1,), low=1, high=10, why="GNU Go's levels are 1..10")
    eval_games: int = option(20, positive=True)  # games per opponent at each evaluation, colours alternating; SGF each

    def _rules(self) -> None:
        """Rules across fields, checked after each field alone."""
        if self.latest_prob + self.anchor_prob > 1:
            raise ConfigError(
                f"config keys 'go.latest_prob' ({self.latest_prob}) and 'go.anchor_prob' "
                f"({self.anchor_prob}) are the shares of two kinds of opponent and sum to more than 1: "
                "lower one of them"
            )


@dataclass(frozen=True)
class RunFields:
    """The fields every run shares, `rl train` and `rl supervised` alike."""

    seed: int = option(1, low=0, high=2**32 - 1, why="it must lie in [0, 2**32 - 1] (numpy's seeds)")
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    keep_checkpoints: int = option(2, positive=True)
    runs_dir: str = "runs"
    progress: bool = True  # rich progress bar on a terminal; plain lines otherwise
    torch_threads: int = 0  # 0: 1 for networks without convolutions, one per core for the others (accel.pick_threads)

    def _rules(self) -> None:
        """Rules across fields, checked after each field alone; a subclass adds its own and calls this one."""


@dataclass(frozen=True)
class EnvRunFields(RunFields):
    """The fields every run on an environment (`rl train`) shares. Counts are env steps summed over all envs."""

    env: str = "CartPole-v1"
    total_timesteps: int = option(500_000, positive=True)
    gamma: float = option(0.99, low=0, high=1)  # discount of the return the agent maximises
    clip_rewards: bool = False  # learn from sign(r) (Atari's Nature protocol); scores are always logged raw
    terminal_on_life_loss: bool = False  # Atari: a lost life ends the learning target, the game goes on
    # --- accelerator (agents/accel.py)
    # bf16: autocast the forward passes of acting and the update; fp32 weights and optimizer. auto: bf16 for the
    # convolutional encoders on a CPU with native bf16 (AVX512-BF16 or AMX), fp32 elsewhere (accel.autocast)
    amp: str = option("none", choices=("none", "bf16", "auto"))
    compile: bool = False  # torch.compile (default mode) the networks, in place
    # --- evaluation, checkpoints
    eval_frequency: int = 10_000  # env steps between evaluations; 0 disables them
    eval_episodes: int = 10
    video_frequency: int = 0  # every this many evaluations, one game to <run>/videos/step_<N>.mp4; 0: none
    checkpoint_frequency: int = 50_000  # env steps between checkpoints; 0: only at the end and on Ctrl-C

    def _rules(self) -> None:
        if self.clip_rewards:
            import envs  # here, not at the top: envs pulls in torch and gymnasium, which a config alone does not need

            if envs.family(self.env) == "go":
                raise ConfigError(
                    f"config key 'clip_rewards' is true on {self.env}, where sign() would erase "
                    "go.score_reward and go.shaping (a game's result is already +-1): "
                    "set clip_rewards=false"
                )
        super()._rules()


def resolve(
    cls: type,
    algo: str,
    env: str | None,
    family: str,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Any:
    """Build the frozen config `cls` of `algo` for `env`, applying each layer in order: defaults,
    configs/<algo>/<family>.yaml, configs/<algo>/<env>.yaml (lower-cased, when it exists: go9.yaml after go.yaml),
    --config, flags, --set.

    `base` (a resumed run's saved config) replaces the defaults and the config files. agents/registry.py names
    the class of each algorithm; this module knows none."""
    values: dict[str, Any] = {}
    family_file = CONFIG_DIR / algo / f"{family}.yaml"
    # then a file for the env itself, where one exists: configs/ppo/go9.yaml refines go.yaml for 9x9
    env_file = CONFIG_DIR / algo / f"{env.lower()}.yaml" if env is not None and "/" not in env else None
    if base is not None:
        _merge(values, base, cls, "the run's config.yaml")
    else:
        for path in dict.fromkeys(p for p in (family_file, env_file) if p is not None and p.exists()):
            _merge(values, _read_yaml(path), cls, str(path))
    if config_file is not None:
        path = config_path(algo, Path(config_file))
        _merge(values, _read_yaml(path), cls, str(path))
    if env is not None:  # `rl supervised` has data, not an env
        _merge(values, {"env": env}, cls, "--env")
    _merge(values, {k: v for k, v in (flags or {}).items() if v is not None}, cls, "flags")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set learning_rate=1e-4)")
        _merge(values, _nest({key.strip(): _Raw(raw.strip())}), cls, "--set")
    return build(cls, values)


def build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate a (nested) config dataclass from type-checked values, then check their ranges and rules."""
    config = _instantiate(cls, values)
    _check_values(config)
    return config


def _instantiate(cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(
        **{
            f.name: _instantiate(hints[f.name], values[f.name])
            if dataclasses.is_dataclass(hints[f.name])
            else values[f.name]
            for f in dataclasses.fields(cls)
            if f.name in values
        }
    )


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly dict (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = to_dict(v) if dataclasses.is_dataclass(v) else list(v) if isinstance(v, tuple) else v
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'encoder': {'name': 'mlp'}} -> {'encoder.name': 'mlp'} (for the HParams plugin)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save(config: Any, algo: str, path: Path) -> None:
    """Write config.yaml, only when its text changes: a resume that changes nothing leaves the file alone."""
    text = yaml.safe_dump({"algo": algo, **to_dict(config)}, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def read_saved(path: Path) -> tuple[str, dict[str, Any]]:
    """A run folder's config.yaml as (algo, its values), still to be built into the algorithm's class."""
    data = _read_yaml(path)
    algo = data.pop("algo", None)
    if data.pop("impl", "ours") == "sb3":
        raise ConfigError(
            f"{str(path)!r} is a Stable-Baselines3 run (impl: sb3): its model is sb3_model.zip beside it, "
            "for SB3's own load(); rl eval/watch/--resume read our checkpoints"
        )
    return str(algo), data


def from_saved(cls: type, data: dict[str, Any], source: str) -> Any:
    """Build `cls` from a saved config's values, each checked as a config file's would be."""
    values: dict[str, Any] = {}
    _merge(values, data, cls, source)
    return build(cls, values)


# ---------------------------------------------------------------------------------------------- helpers


class _Raw(str):
    """A string from the command line, still to be parsed to the field's type."""


def _nearest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(sorted(choices))}"


def config_path(algo: str, config_file: Path) -> Path:
    """--config FILE, or a preset's name: `--config rainbow` is configs/<algo>/rainbow.yaml when no file of that
    name exists here. A missing file is one line that lists the presets."""
    preset = CONFIG_DIR / algo / f"{config_file.name}.yaml"
    if config_file.exists() or config_file.suffix or len(config_file.parts) > 1 or not preset.exists():
        if not config_file.exists():
            presets = ", ".join(sorted(p.stem for p in (CONFIG_DIR / algo).glob("*.yaml")))
            raise ConfigError(f"config file {str(config_file)!r} does not exist (presets of {algo}: {presets})")
        return config_file
    return preset


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as e:  # a folder, a binary file, no permission
        why = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror
        raise ConfigError(f"config file {str(path)!r} cannot be read: {why}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value")
    return data


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        *parents, last = key.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = v
    return out


def _merge(values: dict[str, Any], new: dict[str, Any], cls: type, source: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, v in new.items():
        full = f"{prefix}{key}"
        if key not in names:
            valid = [f"{prefix}{n}" for n in names]
            raise ConfigError(f"unknown config key {full!r} ({source}): {_nearest(full, valid)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(v, dict):
                raise ConfigError(f"config key {full!r} ({source}) is a group: set its fields, e.g. {full}.name=...")
            _merge(values.setdefault(key, {}), v, tp, source, f"{full}.")
        else:
            values[key] = _coerce(v, tp, full, source)


_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _coerce(v: Any, tp: Any, key: str, source: str) -> Any:
    """Check (YAML) or parse (--set) one value against the field's annotated type."""
    origin = typing.get_origin(tp)
    try:
        if origin is tuple:
            (item_type, _) = typing.get_args(tp)
            if isinstance(v, str):
                parts = [p for p in v.strip("[]() ").split(",") if p.strip()]
                return tuple(_coerce(_Raw(p.strip()), item_type, key, source) for p in parts)
            if isinstance(v, (list, tuple)):
                return tuple(_coerce(x, item_type, key, source) for x in v)
        elif origin in (typing.Union, types.UnionType):
            raise TypeError  # no optional fields: every key has a concrete type
        elif tp is bool:
            if isinstance(v, bool):
                return v
            if isinstance(v, _Raw) and v.lower() in _BOOLS:
                return _BOOLS[v.lower()]
        elif tp is int:
            if isinstance(v, bool):
                raise TypeError
            if isinstance(v, int):
                return v
            if isinstance(v, float) and v.is_integer():
                return int(v)
            if isinstance(v, str):
                f = float(v.replace("_", ""))  # accepts 1_000_000 and 1e6
                if f.is_integer():
                    return int(f)
        elif tp is float:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            if isinstance(v, str):
                return float(v.replace("_", ""))
        elif tp is str:
            if isinstance(v, str):
                return str(v)
    except (ValueError, TypeError):
        pass
    name = "a list of int" if origin is tuple else tp.__name__
    raise ConfigError(f"config key {key!r} ({source}) expects {name}, got {v!r}")


def _field_checks(cls: type, name: str) -> Mapping[str, Any]:
    """What option() declared for field `name` of `cls`; a subclass that only changes the default keeps its base's."""
    for klass in cls.__mro__:
        f = vars(klass).get("__dataclass_fields__", {}).get(name)
        if f is not None and f.metadata:
            return f.metadata
    return {}


def _range_reason(checks: Mapping[str, Any]) -> str:
    low, high = checks["low"], checks["high"]
    if checks["why"]:
        return checks["why"]
    if checks["positive"]:
        return "it must be positive"
    if low is not None and high is not None:
        return f"it must lie in [{low}, {high}]"
    return f"it must be >= {low}" if low is not None else f"it must be <= {high}"


def _check_values(config: Any, prefix: str = "") -> None:
    """Check each field's value against what option() declared for it, nested groups too, then the class's rules.
    No float may be NaN or infinite, whatever the key: such a value only fails later, inside training."""
    for f in dataclasses.fields(config):
        key, v = f"{prefix}{f.name}", getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            _check_values(v, f"{key}.")
            continue
        items = v if isinstance(v, tuple) else (v,)
        shown = list(v) if isinstance(v, tuple) else v
        if any(isinstance(x, float) and not math.isfinite(x) for x in items):
            raise ConfigError(f"config key {key!r} is {shown}: it must be a finite number")
        checks = _field_checks(type(config), f.name)
        if not checks:
            continue
        choices, low, high = checks["choices"], checks["low"], checks["high"]
        for item in items if choices is not None else ():
            if item not in choices:
                held = f"holds {item!r}" if isinstance(v, tuple) else f"is {v!r}"
                raise ConfigError(f"config key {key!r} {held}: {_nearest(item, choices)}")
        if any(
            (checks["positive"] and x <= 0) or (low is not None and x < low) or (high is not None and x > high)
            for x in items
        ):
            raise ConfigError(f"config key {key!r} is {shown}: {_range_reason(checks)}")
    rules = getattr(config, "_rules", None)
    if rules is not None:
        rules()
