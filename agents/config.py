"""Typed configuration: defaults -> configs/<algo>/<family>.yaml -> --config FILE -> flags -> --set key=value.

One override path (nanoGPT's), but every value is checked against the field's type and every error is
one line that names the key and the nearest valid one (nanoGPT's bare asserts are its issue #439).
Key names follow CleanRL's arguments wherever one exists, so users of CleanRL/SB3 need no dictionary.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# configs/ sits beside agents/ in a checkout (and an editable install); a wheel installs it as data files.
CONFIG_DIR = next((p for p in (Path(__file__).resolve().parent.parent / "configs", Path(sys.prefix) / "share" / "rl" / "configs")
                   if p.is_dir()), Path(__file__).resolve().parent.parent / "configs")


class ConfigError(ValueError):
    """Bad configuration input; str(error) is one line meant for the user."""


@dataclass(frozen=True)
class EncoderConfig:
    """The network body shared by every agent (agents/encoders.py)."""

    name: str = "auto"  # auto: nature_cnn for image observations, mlp for vectors; see agents.encoders.ENCODERS
    hidden_sizes: tuple[int, ...] = (120, 84)  # mlp: widths of the hidden layers
    init: str = ""  # weights to start from: a .safetensors file of encoder weights or a run folder ("" = fresh)
    freeze: bool = False  # keep the encoder's weights (and batch-norm statistics) fixed during training
    norm: str = "none"  # mlp: none | batch | layer normalisation after each hidden layer
    activation: str = "relu"  # mlp: relu | tanh after each hidden layer (tanh: SB3's MlpPolicy, CleanRL's classic-control agents)
    dropout: float = 0.0  # mlp, impala, lstm (between layers), transformer: dropout probability
    features_dim: int = 0  # nature_cnn, impala: width of the last layer; 0 = the paper's (512 Nature, 256 IMPALA)
    channels: tuple[int, ...] = (16, 32, 32)  # impala: channels of its three conv stacks (Espeholt et al. 2018)
    tower_channels: int = 64  # resnet_tower: channels of every residual block
    tower_blocks: int = 6  # resnet_tower: number of residual blocks
    lstm_hidden: int = 128  # lstm: hidden size
    lstm_layers: int = 1  # lstm: stacked layers
    obs_norm: bool = False  # lstm on vectors: normalize observations by their running mean and std (SB3's VecNormalize)
    d_model: int = 64  # transformer: token width
    num_heads: int = 4  # transformer: attention heads (must divide d_model)
    num_layers: int = 2  # transformer: blocks
    patch_size: int = 4  # transformer on images: square patches of this many pixels a side
    positions: str = "learned"  # transformer: learned | sinusoidal position embeddings


@dataclass(frozen=True)
class GoConfig:
    """Go runs (Go5 ... Go19): self-play against a league of past versions (agents/league.py), the board's
    symmetries as augmentation, and matches against fixed opponents at each evaluation (agents/go_eval.py).
    Ignored on every other env."""

    komi: float = 7.5  # Chinese rules' komi, as OpenSpiel and Pgx use on every size; 24.5 (5x5) and 8.5 (7x7) are perfect-play komis
    self_play: bool = True  # train against the league; false: against the env's random player, as Black
    league_size: int = 16  # past versions kept; the first (near-random) one always stays
    snapshot_frequency: int = 10  # PPO updates between additions of the current policy to the league
    latest_prob: float = 0.5  # a new game's opponent is the newest version with this probability, else any member
    anchor_prob: float = 0.0  # ... the first (initial, near-random) version with this probability (latest_prob + this <= 1)
    shaping: float = 0.0  # potential-based reward shaping by the agent's stone lead (envs/go/env.py); returns stay +1/-1
    shaping_potential: str = "stones"  # stones (lead on the board) | captures (lead in prisoners: no cost for passing)
    score_reward: float = 0.0  # adds this * final margin / N^2 to each training game's +-1 result (envs/go/env.py)
    eye_fill: bool = True  # false: the agent never fills its own one-point eyes (Monte-Carlo Go's rule), in training and play
    pass_rule: str = "always"  # end: the agent may pass only when nothing else is offered, or to win after the opponent's pass
    symmetries: bool = True  # show each position under a random one of the board's 8 symmetries (envs/go/symmetry.py)
    eval_opponents: tuple[str, ...] = ("random", "greedy", "gnugo")  # gnugo is skipped when GNU Go is not installed
    gnugo_levels: tuple[int, ...] = (1,)  # GNU Go --level (1..10) of each gnugo opponent
    eval_games: int = 20  # games per opponent at each evaluation, colours alternating; each saved as SGF


@dataclass(frozen=True)
class DQNConfig:
    """Deep Q-Network (Mnih et al. 2015) with the usual extensions.

    Defaults are CleanRL's `dqn.py` (classic control); configs/dqn/atari.yaml holds the Nature/CleanRL
    Atari values. All counts are in environment steps summed over all envs ("global steps").
    """

    env: str = "CartPole-v1"
    seed: int = 1
    total_timesteps: int = 500_000
    num_envs: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # --- learning
    learning_rate: float = 2.5e-4
    adam_eps: float = 1e-8
    buffer_size: int = 10_000
    gamma: float = 0.99
    tau: float = 1.0  # 1.0: hard copy every target_network_frequency steps; < 1: Polyak averaging at that period
    target_network_frequency: int = 500
    batch_size: int = 128
    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.5  # fraction of total_timesteps over which epsilon decays linearly
    learning_starts: int = 10_000
    train_frequency: int = 10  # one round of gradient_steps updates every this many env steps
    gradient_steps: int = 1
    n_step: int = 1  # n-step returns (Sutton 1988; Hessel et al. 2018)
    double_dqn: bool = False  # van Hasselt et al. 2016: the online net picks, the target net evaluates
    dueling: bool = False  # Wang et al. 2016: V + A - mean(A)
    loss: str = "mse"  # mse | huber (the Nature paper's error clipping is the Huber loss)
    max_grad_norm: float = 0.0  # 0 disables gradient clipping
    clip_rewards: bool = False  # learn from sign(r) (Nature protocol); scores are always logged raw
    terminal_on_life_loss: bool = False  # Atari: a lost life ends the TD target, the game goes on
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # --- accelerator (agents/accel.py)
    amp: str = "none"  # none | bf16: autocast the forward passes of acting and the update; fp32 weights and optimizer
    compile: bool = False  # torch.compile (default mode) the online and target networks, in place
    replay_device: str = "auto"  # auto | cpu | cuda: auto = the training GPU when the frames fit (agents/replay.py)
    # --- evaluation, logging, checkpoints
    eval_frequency: int = 10_000  # env steps between evaluations; 0 disables them
    eval_episodes: int = 10
    eval_epsilon: float = 0.05
    video_frequency: int = 0  # every this many evaluations, one game to <run>/videos/step_<N>.mp4; 0: none
    log_frequency: int = 100  # env steps between loss logs
    checkpoint_frequency: int = 50_000  # env steps between checkpoints; 0: only at the end and on Ctrl-C
    checkpoint_replay: bool = True  # store the replay in checkpoints so that --resume is exact
    keep_checkpoints: int = 2
    runs_dir: str = "runs"
    progress: bool = True  # rich progress bar on a terminal; plain lines otherwise
    torch_threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class PPOConfig:
    """Proximal Policy Optimization (Schulman et al. 2017) in CleanRL's `ppo.py` order and names.

    Defaults are CleanRL's classic-control values; configs/ppo/atari.yaml holds the CleanRL/rl-zoo Atari
    values (ANCHORS.md). A rollout is num_envs x num_steps env steps; each update runs update_epochs passes
    over it in num_minibatches minibatches. All counts are global env steps (summed over envs).
    """

    env: str = "CartPole-v1"
    seed: int = 1
    total_timesteps: int = 500_000
    num_envs: int = 4
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # --- learning
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True  # linear decay of the learning rate to 0 over the run
    optimizer: str = "adam"  # adam | rmsprop (A2C's, Mnih et al. 2016)
    adam_eps: float = 1e-5  # epsilon of Adam or RMSprop
    rmsprop_alpha: float = 0.99  # RMSprop smoothing constant (rmsprop only)
    num_steps: int = 128  # env steps per env per rollout
    gamma: float = 0.99
    gae_lambda: float = 0.95  # GAE (Schulman et al. 2016); 1.0 gives discounted returns minus the value
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True  # normalize advantages per minibatch
    clip_coef: float = 0.2  # surrogate clipping epsilon; 0 disables clipping (A2C)
    anneal_clip: bool = False  # decay clip_coef linearly to 0 with the learning rate (the original paper's Atari setting)
    clip_vloss: bool = True  # clip the value update around the rollout's values (CleanRL, baselines)
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5  # 0 disables gradient clipping
    target_kl: float = 0.0  # stop the epochs early once the approximate KL passes this; 0 disables
    clip_rewards: bool = False  # learn from sign(r) (Atari); scores are always logged raw
    terminal_on_life_loss: bool = False  # Atari: a lost life ends the advantage estimate, the game goes on
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    shared_encoder: bool = False  # one encoder for policy and value (CleanRL's Atari agent); False: one each
    heads: str = "linear"  # linear (one layer on the feature vector) | alphazero (AlphaGo Zero's conv heads; resnet_tower)
    go: GoConfig = field(default_factory=GoConfig)  # Go envs only
    amp: str = "none"  # none | bf16: autocast the forward passes of acting and the update (agents/accel.py)
    compile: bool = False  # torch.compile (default mode) the actor-critic, in place; not with encoder.name=lstm
    # --- evaluation, logging, checkpoints
    eval_frequency: int = 10_000  # env steps between evaluations; 0 disables them
    eval_episodes: int = 10
    eval_epsilon: float = 0.0  # probability of a uniformly random legal action; else the policy acts (see ppo.load_policy)
    eval_greedy: bool = False  # the policy acts by its most likely action instead of sampling
    eval_symmetries: bool = False  # Go, at play time: the network averaged over the board's 8 symmetries (rl eval --symmetries)
    video_frequency: int = 0  # every this many evaluations, one game to <run>/videos/step_<N>.mp4; 0: none
    log_frequency: int = 1_000
    checkpoint_frequency: int = 50_000
    keep_checkpoints: int = 2
    runs_dir: str = "runs"
    progress: bool = True
    torch_threads: int = 0


@dataclass(frozen=True)
class A2CConfig(PPOConfig):
    """Advantage actor-critic (Mnih et al. 2016, synchronous as in OpenAI baselines): PPO's loop with one
    epoch over one minibatch of a short rollout, no clipping, RMSprop. Defaults are rl-zoo's A2C values
    (5 steps x 16 envs on Atari; configs/a2c/*.yaml)."""

    learning_rate: float = 7e-4
    optimizer: str = "rmsprop"
    num_steps: int = 5
    num_envs: int = 8
    gae_lambda: float = 1.0
    num_minibatches: int = 1
    update_epochs: int = 1
    norm_adv: bool = False
    clip_coef: float = 0.0
    clip_vloss: bool = False
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    anneal_lr: bool = False


@dataclass(frozen=True)
class SupervisedConfig:
    """`rl supervised MODEL --data DATASET` (agents/supervised.py): an encoder + a linear classifier trained on
    data that ships offline; its encoder weights then load into any agent through encoder.init."""

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "data": ("digits", "digit_rows", "parity", "go"),
        "optimizer": ("sgd", "adagrad", "rmsprop", "adam", "adamw"),
        "schedule": ("constant", "cosine", "step", "linear")}

    data: str = "digits"  # digits: 8x8 images (1, 8, 8); digit_rows: the same as 8 steps of 8 pixels; parity: bit strings;
    # go: GNU Go's moves in positions of the file data_path (scripts/gnugo_games.py)
    seed: int = 1
    device: str = "auto"
    epochs: int = 30
    batch_size: int = 64
    # --- optimisation
    optimizer: str = "adam"  # sgd | adagrad | rmsprop | adam | adamw
    learning_rate: float = 1e-3
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = False  # sgd: Nesterov momentum (Sutskever et al. 2013)
    weight_decay: float = 0.0  # the optimizer's own: coupled L2 for sgd/adagrad/rmsprop/adam, decoupled for adamw
    l1: float = 0.0  # coefficient of the L1 penalty sum|w| on weight matrices (not biases or norms) added to the loss
    l2: float = 0.0  # coefficient of the L2 penalty sum w^2 on weight matrices added to the loss
    max_grad_norm: float = 0.0  # 0 disables gradient clipping
    schedule: str = "constant"  # learning rate over the epochs: constant | cosine | step | linear (to 0)
    step_size: int = 10  # step schedule: epochs between decays
    step_gamma: float = 0.1  # step schedule: decay factor
    # --- data
    shift: int = 0  # augmentation for digits: random shifts of up to this many pixels (0 = none)
    val_fraction: float = 0.1  # of the training split, held out for early stopping
    test_fraction: float = 0.2  # stratified test split
    patience: int = 0  # early stopping: epochs without a better validation loss before stopping (0 = never stop)
    sequence_length: int = 16  # parity: bits per sequence
    num_samples: int = 4000  # parity: sequences generated
    data_path: str = ""  # go: the .npz file of scripts/gnugo_games.py
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # --- logging, checkpoints
    checkpoint_frequency: int = 10  # epochs between checkpoints; 0: only at the end
    keep_checkpoints: int = 2
    runs_dir: str = "runs"
    progress: bool = True
    torch_threads: int = 0


@dataclass(frozen=True)
class ReinforceConfig(PPOConfig):
    """REINFORCE with a learned baseline (Williams 1992; Sutton & Barto 2018, sec. 13.4): one gradient step
    per rollout on -(G_t - V(s_t)) log pi(a_t|s_t), with G_t the Monte-Carlo discounted return (gae_lambda = 1
    is exactly that) and the baseline V fitted to G_t. Long rollouts so that most episodes end inside one;
    an episode cut by the rollout's end is completed by V of its last obs, as at a time limit."""

    learning_rate: float = 1e-3
    anneal_lr: bool = False
    num_envs: int = 4
    num_steps: int = 256
    gae_lambda: float = 1.0
    num_minibatches: int = 1
    update_epochs: int = 1
    clip_coef: float = 0.0
    clip_vloss: bool = False
    ent_coef: float = 0.0


ALGOS: dict[str, type] = {"dqn": DQNConfig, "ppo": PPOConfig, "a2c": A2CConfig, "reinforce": ReinforceConfig,
                          "supervised": SupervisedConfig}


# What `rl train` accepts (and `rl algos` lists); "supervised" has its own command, `rl supervised`.
TRAIN_ALGOS = tuple(a for a in ALGOS if a != "supervised")


def algo_config_class(algo: str) -> type:
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}: {_nearest(algo, ALGOS)} (`rl algos` lists them)")
    return ALGOS[algo]


def resolve(
    algo: str,
    env: str | None,
    family: str,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Any:
    """Build the frozen config of `algo` for `env`, applying each layer in order: defaults, configs/<algo>/<family>.yaml,
    configs/<algo>/<env>.yaml (lower-cased, when it exists: go9.yaml after go.yaml), --config, flags, --set.

    `base` (a resumed run's saved config) replaces the defaults and the config files."""
    cls = algo_config_class(algo)
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
        _merge(values, _read_yaml(Path(config_file)), cls, str(config_file))
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
    """Instantiate a (nested) config dataclass from already-checked values."""
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            kwargs[f.name] = build(hints[f.name], v) if dataclasses.is_dataclass(hints[f.name]) else v
    config = cls(**kwargs)
    _check_values(config)
    return config


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
    path.write_text(yaml.safe_dump({"algo": algo, **to_dict(config)}, sort_keys=False))


def load(path: Path) -> tuple[str, Any]:
    """Read a run folder's config.yaml back: (algo, config)."""
    data = _read_yaml(path)
    algo = data.pop("algo", None)
    if data.pop("impl", "ours") == "sb3":
        raise ConfigError(f"{str(path)!r} is a Stable-Baselines3 run (impl: sb3): its model is sb3_model.zip beside it, "
                          "for SB3's own load(); rl eval/watch/--resume read our checkpoints")
    cls = algo_config_class(str(algo))
    values: dict[str, Any] = {}
    _merge(values, data, cls, str(path))
    return str(algo), build(cls, values)


# ---------------------------------------------------------------------------------------------- helpers


class _Raw(str):
    """A string from the command line, still to be parsed to the field's type."""


def _nearest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(sorted(choices))}"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
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


_CHOICES = {"loss": ("mse", "huber"), "optimizer": ("adam", "rmsprop"),
            "encoder.name": ("auto", "mlp", "nature_cnn", "impala", "resnet_tower", "lstm", "transformer"),
            "encoder.norm": ("none", "batch", "layer"), "encoder.activation": ("relu", "tanh"), "encoder.positions": ("learned", "sinusoidal"),
            "go.eval_opponents": ("random", "greedy", "gnugo"), "amp": ("none", "bf16"), "heads": ("linear", "alphazero"),
            "go.shaping_potential": ("stones", "captures"), "go.pass_rule": ("always", "end"), "replay_device": ("auto", "cpu", "cuda")}


def _check_values(config: Any, prefix: str = "") -> None:
    """Range checks that types alone cannot express, each naming the key."""
    choices = {**_CHOICES, **{f"{prefix}{k}": v for k, v in getattr(config, "CHOICES", {}).items()}}  # a class's own win
    if isinstance(config, PPOConfig) and config.encoder.name == "lstm" and (config.amp != "none" or config.compile):
        raise ConfigError("config keys 'amp' and 'compile' apply to feed-forward PPO: recurrent PPO (encoder.name=lstm) "
                          "runs fp32 and eager; set amp=none compile=false")
    if isinstance(config, PPOConfig) and config.heads == "alphazero" and config.encoder.name != "resnet_tower":
        raise ConfigError(f"config key 'heads' is 'alphazero', which reads the per-point features of encoder.name=resnet_tower, "
                          f"not {config.encoder.name}: set heads=linear or encoder.name=resnet_tower")
    if getattr(config, "clip_rewards", False) and getattr(config, "env", None):
        import envs  # here, not at the top: envs pulls in torch and gymnasium, which a config alone does not need

        if envs.family(config.env) == "go":
            raise ConfigError(f"config key 'clip_rewards' is true on {config.env}, where sign() would erase go.score_reward "
                              f"and go.shaping (a game's result is already +-1): set clip_rewards=false")
    for f in dataclasses.fields(config):
        key, v = f"{prefix}{f.name}", getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            _check_values(v, f"{key}.")
        elif key in choices and isinstance(v, tuple):
            for item in v:
                if item not in choices[key]:
                    raise ConfigError(f"config key {key!r} holds {item!r}: {_nearest(item, choices[key])}")
        elif key == "go.gnugo_levels" and any(not 1 <= level <= 10 for level in v):
            raise ConfigError(f"config key {key!r} is {list(v)}: GNU Go's levels are 1..10")
        elif key in choices and v not in choices[key]:
            raise ConfigError(f"config key {key!r} is {v!r}: {_nearest(v, choices[key])}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if key in ("gamma", "tau", "start_e", "end_e", "exploration_fraction", "eval_epsilon", "gae_lambda", "rmsprop_alpha",
                       "encoder.dropout", "momentum", "val_fraction", "test_fraction", "go.latest_prob", "go.anchor_prob") and not 0 <= v <= 1:
                raise ConfigError(f"config key {key!r} is {v}: it must lie in [0, 1]")
            positive = ("total_timesteps", "num_envs", "buffer_size", "batch_size", "train_frequency", "n_step",
                        "gradient_steps", "target_network_frequency", "learning_rate", "log_frequency", "keep_checkpoints",
                        "num_steps", "num_minibatches", "update_epochs", "epochs", "step_size", "sequence_length",
                        "num_samples", "encoder.tower_channels", "encoder.tower_blocks", "encoder.lstm_hidden",
                        "encoder.lstm_layers", "encoder.d_model", "encoder.num_heads", "encoder.num_layers", "encoder.patch_size",
                        "go.league_size", "go.snapshot_frequency", "go.eval_games")
            if key in positive and v <= 0:
                raise ConfigError(f"config key {key!r} is {v}: it must be positive")
            if key == "go.score_reward" and v < 0:
                raise ConfigError(f"config key {key!r} is {v}: it must be >= 0 (0: the game's result only)")
    go = getattr(config, "go", None)  # after the loop, which has checked each key alone
    if isinstance(go, GoConfig) and go.latest_prob + go.anchor_prob > 1:
        raise ConfigError(f"config keys 'go.latest_prob' ({go.latest_prob}) and 'go.anchor_prob' ({go.anchor_prob}) "
                          f"are the shares of two kinds of opponent and sum to more than 1: lower one of them")
