"""Config layering, typing and the one-line errors users see."""

import dataclasses
from pathlib import Path

import pytest

from agents import config as config_lib
from agents import registry
from agents.a2c import A2CConfig
from agents.config import ConfigError
from agents.dqn import DQNConfig
from agents.ppo import PPOConfig
from agents.reinforce import ReinforceConfig
from agents.supervised import SupervisedConfig


def test_defaults_then_family_file_then_file_then_flags_then_set(tmp_path: Path):
    user = tmp_path / "mine.yaml"
    user.write_text("learning_rate: 5.0e-4\nbatch_size: 16\n")
    cfg = registry.resolve(
        "dqn",
        "ALE/Pong-v5",
        "atari",
        user,
        {"seed": 7, "total_timesteps": None},
        ["batch_size=64", "double_dqn=true", "encoder.name=nature_cnn", "gamma=0.98"],
    )
    assert cfg.buffer_size == 1_000_000  # from configs/dqn/atari.yaml
    assert cfg.learning_rate == 5e-4  # --config beats the family file
    assert cfg.batch_size == 64  # --set beats --config
    assert cfg.seed == 7 and cfg.double_dqn is True and cfg.gamma == 0.98
    assert cfg.total_timesteps == 2_000_000  # a None flag does not override
    assert cfg.env == "ALE/Pong-v5"


def test_set_parses_to_the_field_type():
    cfg = registry.resolve(
        "dqn",
        "CartPole-v1",
        "none",
        overrides=[
            "learning_rate=1e-4",
            "buffer_size=1_000",
            "total_timesteps=1e5",
            "encoder.hidden_sizes=64,32",
            "dueling=yes",
        ],
    )
    assert cfg.learning_rate == 1e-4 and isinstance(cfg.learning_rate, float)
    assert cfg.buffer_size == 1000 and cfg.total_timesteps == 100_000
    assert cfg.encoder.hidden_sizes == (64, 32) and cfg.dueling is True


@pytest.mark.parametrize(
    "item, words",
    [
        ("learning_rat=1e-4", ["learning_rat", "learning_rate"]),
        ("encoder.nme=mlp", ["encoder.nme", "encoder.name"]),
        ("batch_size=abc", ["batch_size", "int", "abc"]),
        ("double_dqn=maybe", ["double_dqn", "bool"]),
        ("gamma=1.5", ["gamma", "[0, 1]"]),
        ("loss=hubr", ["loss", "huber"]),
        ("encoder.activation=tan", ["encoder.activation", "tanh"]),
        ("batch_size", ["key=value"]),
    ],
)
def test_bad_set_is_one_line_naming_key_and_nearest(item, words):
    with pytest.raises(ConfigError) as e:
        registry.resolve("dqn", "CartPole-v1", "cartpole", overrides=[item])
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_bad_yaml_type_and_unknown_algo(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 3.5\n")
    with pytest.raises(ConfigError, match="batch_size.*int"):
        registry.resolve("dqn", "CartPole-v1", "cartpole", bad)
    with pytest.raises(ConfigError, match="dqn"):
        registry.resolve("dqm", "CartPole-v1", "cartpole")
    with pytest.raises(ConfigError, match="does not exist"):
        registry.resolve("dqn", "CartPole-v1", "cartpole", tmp_path / "missing.yaml")


def test_save_load_round_trip(tmp_path: Path):
    cfg = registry.resolve("dqn", "CartPole-v1", "cartpole", overrides=["n_step=3"])
    config_lib.save(cfg, "dqn", tmp_path / "config.yaml")
    algo, back = registry.load_config(tmp_path / "config.yaml")
    assert algo == "dqn" and back == cfg and isinstance(back, DQNConfig)


def test_every_shipped_yaml_resolves():
    for path in sorted(config_lib.CONFIG_DIR.glob("*/*.yaml")):
        if path.parent.name == "supervised":  # one file per data set, no env
            assert registry.resolve("supervised", None, path.stem, flags={"data": path.stem}).data == path.stem, path
            continue
        if path.parent.name == "tune":  # search spaces, not configs: tests/test_tune.py loads them
            continue
        env = "Go9" if path.parent.name == "alphazero" else "CartPole-v1"  # alphazero trains on Go only
        cfg = registry.resolve(path.parent.name, env, path.stem)
        assert cfg.total_timesteps > 0, path


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _declared(cls: type, prefix: str = ""):
    """(key, checks, default) of each field that option() declared, in nested groups too. A field a subclass
    redeclares with a new default only (A2CConfig.learning_rate) keeps the checks of its base's field."""
    for f in dataclasses.fields(cls):
        default = _default(f)
        if dataclasses.is_dataclass(default):
            yield from _declared(type(default), f"{prefix}{f.name}.")
            continue
        own = [
            vars(k)["__dataclass_fields__"][f.name].metadata
            for k in cls.__mro__
            if f.name in vars(k).get("__dataclass_fields__", {})
        ]
        checks = next((m for m in own if m), None)
        if checks:
            yield f"{prefix}{f.name}", checks, default


def _bad_values(checks, default) -> list:
    """One value outside each declared check, shaped like the field (a tuple for tuple fields)."""
    item = default[0] if isinstance(default, tuple) else default
    bad = [checks["choices"][0] + "x"] if checks["choices"] else []
    bad += [type(item)(0)] if checks["positive"] else []
    bad += [type(item)(checks["low"] - 1)] if checks["low"] is not None else []
    bad += [type(item)(checks["high"] + 1)] if checks["high"] is not None else []
    return [(b,) if isinstance(default, tuple) else b for b in bad]


def test_every_declared_choice_and_range_is_enforced():
    checked: dict[str, set[str]] = {}
    for algo, cls in registry.configs().items():
        for key, checks, default in _declared(cls):
            for bad in _bad_values(checks, default):
                *groups, name = key.split(".")
                values = {name: bad}
                for group in reversed(groups):
                    values = {group: values}
                with pytest.raises(ConfigError) as e:
                    config_lib.build(cls, values)
                msg = str(e.value)
                item = bad[0] if isinstance(bad, tuple) else bad
                assert msg.startswith(f"config key {key!r} ") and str(item) in msg, (algo, msg)
                assert "\n" not in msg
                checked.setdefault(algo, set()).add(key)
    assert {
        "loss",
        "replay_device",
        "amp",
        "gamma",
        "total_timesteps",
        "keep_checkpoints",
        "encoder.name",
        "encoder.dropout",
    } <= checked["dqn"]
    assert {
        "optimizer",
        "heads",
        "go.eval_opponents",
        "go.gnugo_levels",
        "go.score_reward",
        "go.anchor_prob",
    } <= checked["ppo"]
    assert {"learning_rate", "num_envs", "gae_lambda"} <= checked["a2c"] & checked["reinforce"]  # redeclared defaults
    assert {"data", "optimizer", "schedule", "momentum", "epochs"} <= checked["supervised"]


def test_a_redeclared_default_keeps_the_base_fields_checks():
    with pytest.raises(ConfigError, match="'learning_rate' is 0: it must be positive"):
        config_lib.build(A2CConfig, {"learning_rate": 0})
    with pytest.raises(ConfigError, match=r"'gae_lambda' is 2: it must lie in \[0, 1\]"):
        config_lib.build(ReinforceConfig, {"gae_lambda": 2})


def test_choices_belong_to_the_field_not_to_its_name():
    assert config_lib.build(SupervisedConfig, {"optimizer": "sgd"}).optimizer == "sgd"
    with pytest.raises(ConfigError, match="'optimizer' is 'sgd': valid: adam, rmsprop"):
        config_lib.build(PPOConfig, {"optimizer": "sgd"})


def test_shared_run_fields_are_declared_once():
    run = {f.name: f for f in dataclasses.fields(config_lib.RunFields)}
    env_run = {f.name: f for f in dataclasses.fields(config_lib.EnvRunFields)}
    assert set(run) < set(env_run) and "env" not in run
    for algo, cls in registry.configs().items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        shared = env_run if algo in registry.TRAIN_ALGOS else run
        assert all(fields[name] is f for name, f in shared.items()), algo  # the base's Field, never redeclared

    def common(classes) -> set[str]:
        """Names that all `classes` have, with one default."""
        defaults = [{f.name: _default(f) for f in dataclasses.fields(c)} for c in classes]
        return {k for k, v in defaults[0].items() if all(k in d and d[k] == v for d in defaults)}

    # and what they all repeat with one default is in the base, not copied into each class
    assert common(registry.configs().values()) == set(run)
    assert common(registry.configs()[a] for a in registry.TRAIN_ALGOS) == set(env_run)


@pytest.mark.parametrize(
    "algo, env, overrides, match",
    [
        ("ppo", "CartPole-v1", ["encoder.name=lstm", "amp=bf16"], "encoder.name=lstm"),
        ("reinforce", "CartPole-v1", ["encoder.name=lstm", "compile=true"], "encoder.name=lstm"),
        ("a2c", "CartPole-v1", ["heads=alphazero"], "heads.*resnet_tower"),
        ("dqn", "Go5", ["clip_rewards=true"], "'clip_rewards' is true on Go5"),
        (
            "ppo",
            "Go9",
            ["go.latest_prob=0.6", "go.anchor_prob=0.5"],
            "'go.latest_prob' .0.6. and 'go.anchor_prob' .0.5.",
        ),
    ],
)
def test_cross_field_rules_hold_for_the_class_and_its_subclasses(algo, env, overrides, match):
    assert registry.resolve(algo, env, "none")  # the defaults pass the rules
    with pytest.raises(ConfigError, match=match):
        registry.resolve(algo, env, "none", overrides=overrides)


def test_a_preset_is_selected_by_name_on_top_of_the_family_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file named "rainbow" here: the name means configs/dqn/rainbow.yaml
    cfg = registry.resolve("dqn", "ALE/Pong-v5", "atari", Path("rainbow"))
    assert cfg.distributional and cfg.prioritized and cfg.n_step == 3 and cfg.learning_rate == 6.25e-5
    assert cfg.encoder.name == "nature_cnn" and cfg.terminal_on_life_loss  # from configs/dqn/atari.yaml
    (tmp_path / "rainbow").write_text("n_step: 5\n")  # a file of that name wins over the preset
    assert registry.resolve("dqn", "ALE/Pong-v5", "atari", Path("rainbow")).n_step == 5
    with pytest.raises(ConfigError, match=r"'rainbwo' does not exist \(presets of dqn: .*rainbow"):
        registry.resolve("dqn", "ALE/Pong-v5", "atari", Path("rainbwo"))
