"""Config layering, typing and the one-line errors users see."""

from pathlib import Path

import pytest

from agents import config as config_lib
from agents.config import ConfigError, DQNConfig


def test_defaults_then_family_file_then_file_then_flags_then_set(tmp_path: Path):
    user = tmp_path / "mine.yaml"
    user.write_text("learning_rate: 5.0e-4\nbatch_size: 16\n")
    cfg = config_lib.resolve("dqn", "ALE/Pong-v5", "atari", user, {"seed": 7, "total_timesteps": None},
                             ["batch_size=64", "double_dqn=true", "encoder.name=nature_cnn", "gamma=0.98"])
    assert cfg.buffer_size == 1_000_000  # from configs/dqn/atari.yaml
    assert cfg.learning_rate == 5e-4  # --config beats the family file
    assert cfg.batch_size == 64  # --set beats --config
    assert cfg.seed == 7 and cfg.double_dqn is True and cfg.gamma == 0.98
    assert cfg.total_timesteps == 2_000_000  # a None flag does not override
    assert cfg.env == "ALE/Pong-v5"


def test_set_parses_to_the_field_type():
    cfg = config_lib.resolve("dqn", "CartPole-v1", "none", overrides=[
        "learning_rate=1e-4", "buffer_size=1_000", "total_timesteps=1e5", "encoder.hidden_sizes=64,32", "dueling=yes"])
    assert cfg.learning_rate == 1e-4 and isinstance(cfg.learning_rate, float)
    assert cfg.buffer_size == 1000 and cfg.total_timesteps == 100_000
    assert cfg.encoder.hidden_sizes == (64, 32) and cfg.dueling is True


@pytest.mark.parametrize("item, words", [
    ("learning_rat=1e-4", ["learning_rat", "learning_rate"]),
    ("encoder.nme=mlp", ["encoder.nme", "encoder.name"]),
    ("batch_size=abc", ["batch_size", "int", "abc"]),
    ("double_dqn=maybe", ["double_dqn", "bool"]),
    ("gamma=1.5", ["gamma", "[0, 1]"]),
    ("loss=hubr", ["loss", "huber"]),
    ("encoder.activation=tan", ["encoder.activation", "tanh"]),
    ("batch_size", ["key=value"]),
])
def test_bad_set_is_one_line_naming_key_and_nearest(item, words):
    with pytest.raises(ConfigError) as e:
        config_lib.resolve("dqn", "CartPole-v1", "cartpole", overrides=[item])
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_bad_yaml_type_and_unknown_algo(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 3.5\n")
    with pytest.raises(ConfigError, match="batch_size.*int"):
        config_lib.resolve("dqn", "CartPole-v1", "cartpole", bad)
    with pytest.raises(ConfigError, match="dqn"):
        config_lib.resolve("dqm", "CartPole-v1", "cartpole")
    with pytest.raises(ConfigError, match="does not exist"):
        config_lib.resolve("dqn", "CartPole-v1", "cartpole", tmp_path / "missing.yaml")


def test_save_load_round_trip(tmp_path: Path):
    cfg = config_lib.resolve("dqn", "CartPole-v1", "cartpole", overrides=["n_step=3"])
    config_lib.save(cfg, "dqn", tmp_path / "config.yaml")
    algo, back = config_lib.load(tmp_path / "config.yaml")
    assert algo == "dqn" and back == cfg and isinstance(back, DQNConfig)


def test_every_shipped_yaml_resolves():
    for path in sorted(config_lib.CONFIG_DIR.glob("*/*.yaml")):
        if path.parent.name == "supervised":  # one file per data set, no env
            assert config_lib.resolve("supervised", None, path.stem, flags={"data": path.stem}).data == path.stem, path
            continue
        cfg = config_lib.resolve(path.parent.name, "CartPole-v1", path.stem)
        assert cfg.total_timesteps > 0, path
