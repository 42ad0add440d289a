"""Search spaces of `rl tune`: a YAML file mapping config keys to distributions, checked against an algorithm's config.

    learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}   # log: uniform in log(value)
    train_frequency: {type: int, low: 1, high: 16}                     # step: S samples a grid (not with log)
    batch_size: {type: categorical, choices: [32, 64, 128]}
    encoder.hidden_sizes: {type: categorical, choices: [[64], [64, 64]]}

Dotted keys reach nested config groups. Each becomes Optuna's distribution; every problem is one ConfigError line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from agents import config as config_lib
from agents.config import CONFIG_DIR, ConfigError

SPACE_DIR = CONFIG_DIR / "tune"  # the shipped spaces, configs/tune/<algo>.yaml
KINDS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"), "categorical": ("choices",)}


def load(path: Path, algo: str, base: Any) -> dict[str, BaseDistribution]:
    """The search space file as {config key: distribution}, each checked against `base` (the algorithm's config with
    the fixed overrides): a key of the config, a kind of distribution its type takes, and values at both ends (each
    choice) that the key accepts."""
    where = f"search space {str(path)!r}"
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in SPACE_DIR.glob("*.yaml")))
        raise ConfigError(f"{where} does not exist (shipped in {SPACE_DIR}: {shipped}); write one or pass --space FILE")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{where} cannot be read") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{where} is not valid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{where} must map config keys to distributions, e.g. learning_rate: {{type: float, low: 1.0e-5, "
            "high: 1.0e-2, log: true}"
        )
    flat = config_lib.flatten(config_lib.to_dict(base))
    space = {}
    for key, spec in data.items():
        key = str(key)
        if key not in flat:
            raise ConfigError(f"{where}: unknown config key {key!r} of {algo}: {config_lib._nearest(key, flat)}")
        dist = _distribution(spec, f"{where}: key {key!r}")
        held = flat[key]
        if isinstance(held, (bool, str, list)) and not isinstance(dist, CategoricalDistribution):
            raise ConfigError(f"{where}: key {key!r} holds {type(held).__name__} values: use type categorical")
        if isinstance(held, int) and not isinstance(held, bool) and isinstance(dist, FloatDistribution):
            raise ConfigError(f"{where}: key {key!r} holds an int: use type int or categorical")
        for value in dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high):
            try:
                config_lib.from_saved(type(base), nested({**flat, key: value}), "sampled")
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        space[key] = dist
    return space


def _distribution(spec: Any, where: str) -> BaseDistribution:
    """{type: float|int, low, high, log?, step?} or {type: categorical, choices: [...]} as Optuna's distribution."""
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise ConfigError(
            f"{where} needs {{type: float|int|categorical, ...}}, got {spec!r} "
            "(e.g. {type: float, low: 1.0e-5, high: 1.0e-2, log: true})"
        )
    kind, fields = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    for field in fields:
        if field not in KINDS[kind]:
            takes = ", ".join(KINDS[kind])
            raise ConfigError(f"{where}: a {kind} distribution has no field {field!r} (it takes {takes})")
    if kind == "categorical":
        choices = fields.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: a categorical distribution needs a list of choices, e.g. choices: [32, 64]")
        # Optuna stores None, bool, int, float or str: a list (encoder.hidden_sizes) as the text --set reads, "64,64"
        return CategoricalDistribution([",".join(map(str, c)) if isinstance(c, list) else c for c in choices])
    if "low" not in fields or "high" not in fields:
        raise ConfigError(f"{where}: a {kind} distribution needs low and high")
    if not isinstance(fields.get("log", False), bool):
        raise ConfigError(f"{where}: log is true or false, got {fields['log']!r}")
    try:
        bounds = {f: _number(fields[f], kind) for f in ("low", "high", "step") if f in fields}
        return (IntDistribution if kind == "int" else FloatDistribution)(**bounds, log=fields.get("log", False))
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _number(value: Any, kind: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a number")
    x = float(value)  # YAML 1.1 reads 1e-5 (no dot) as text
    if not np.isfinite(x) or (kind == "int" and not x.is_integer()):
        raise ValueError(f"{value!r} is not {'an integer' if kind == 'int' else 'a finite number'}")
    return int(x) if kind == "int" else x


def suggest(trial: optuna.Trial, key: str, dist: BaseDistribution) -> Any:
    """The trial's value of `key`, drawn from `dist` by the study's sampler."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{'encoder.hidden_sizes': [64]} -> {'encoder': {'hidden_sizes': [64]}}: config.flatten's inverse."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        d = out
        for p in parents:
            if not isinstance(d.get(p), dict):
                d[p] = {}
            d = d[p]
        d[last] = value
    return out
