"""Supervised pretraining on GNU Go's games: scripts/gnugo_games.py's data, the `go` dataset of `rl supervised`, and
its encoder in PPO's Go agent."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke, ok, only_run, scalars

import envs
from agents import ppo, registry
from agents.evaluate import run_episodes
from agents.supervised import evaluate, greedy_policy, load_classifier, load_data
from envs.go import game, gtp_client, sgf
from envs.go.env import GoEnv

pytestmark = pytest.mark.skipif(
    not os.access(gtp_client.GNUGO, os.X_OK), reason="GNU Go not installed (apt-get install gnugo)"
)
torch.set_num_threads(1)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gnugo_games.py"
spec = importlib.util.spec_from_file_location("gnugo_games", SCRIPT)
gnugo_games = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gnugo_games)


def go_config(*overrides: str):
    """The config of `rl supervised resnet_tower --data go --set OVERRIDE...`."""
    return registry.resolve(
        "supervised", None, "go", flags={"data": "go", "encoder": {"name": "resnet_tower"}}, overrides=overrides
    )


@pytest.fixture(scope="module")
def games5(tmp_path_factory) -> Path:
    """Four 5x5 GNU Go games (about a second), two random opening moves each."""
    out = tmp_path_factory.mktemp("gnugo") / "go5.npz"
    assert (
        gnugo_games.main(["--size", "5", "--games", "4", "--random-opening", "2", "--seed", "3", "--out", str(out)])
        == 0
    )
    return out


def test_positions_replay_through_the_env_with_gnugos_legal_moves(games5):
    data = dict(np.load(games5, allow_pickle=False))
    records = [sgf.read(line) for line in games5.with_suffix(".sgf").read_text().splitlines()]
    assert data["obs"].dtype == np.uint8 and data["obs"].shape[1:] == (17, 5, 5) and data["legal"].shape[1] == 26
    assert int(data["size"]) == 5 and float(data["komi"]) == game.default_komi(5) and len(records) == 4
    assert data["legal"][np.arange(len(data["action"])), data["action"]].all()  # every target is a legal move
    for g, record in enumerate(records):
        rows = np.flatnonzero(data["game"] == g)
        assert len(rows) == len(record.moves) - 2  # the two random opening moves are not targets
        env = GoEnv(5, 1, opponent=None)  # self-play: the env's own observation for whoever is to move
        obs, info = env.reset()
        for t, (who, move) in enumerate(record.moves):
            assert int(info["to_play"][0]) == who
            if t >= 2:
                i = rows[t - 2]
                assert move == data["action"][i] and np.array_equal(obs[0], data["obs"][i])
                assert np.array_equal(info["action_mask"][0], data["legal"][i])
            obs, reward, terminated, _, info = env.step(np.array([move]))
            assert terminated[0] == (t == len(record.moves) - 1)  # the game ends where the record does
        black_won = reward[0] * who > 0  # the reward is the last mover's
        assert record.result.startswith("B" if black_won else "W")
        movers = np.where(data["obs"][rows, -1, 0, 0] == 1, 1, -1)  # the last plane is ones when Black is to move
        assert np.array_equal(data["outcome"][rows], np.where(black_won, movers, -movers).astype(np.float32))


def test_a_move_our_rules_forbid_stops_the_script():
    class AlwaysCentre:  # an engine that answers every genmove with the same point
        def send(self, command: str) -> str:
            return "C3" if command.startswith("genmove") else ""

        def send_many(self, commands: list[str]) -> list[str]:
            return [self.send(c) for c in commands]

    with pytest.raises(gnugo_games.IllegalMove, match="C3 as w at move 2"):
        gnugo_games.play_game(AlwaysCentre(), 5, 24.5, 8, random_opening=0, seed=0)


def test_supervised_go_uses_ppos_go_encoder():
    """configs/supervised/go.yaml must build the encoder of configs/ppo/go.yaml, or encoder.init cannot load."""
    assert go_config().encoder == registry.resolve("ppo", "Go5", "go").encoder


def test_go_dataset_trains_and_its_encoder_loads_into_ppo(tmp_path, games5):
    out = ok(
        invoke(
            [
                "supervised",
                "resnet_tower",
                "--data",
                "go",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--set",
                f"data_path={games5}",
                "--set",
                f"runs_dir={tmp_path}",
                "--set",
                "progress=false",
            ]
        )
    )
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    data = load_data(go_config(f"data_path={games5}"))
    assert (
        data.n_classes == 26
        and metrics["test_size"] == len(data.test.y) > 0
        and f"{metrics['test_accuracy']:.2%}" in out
    )
    assert 0 < metrics["chance_accuracy"] < 1
    # the supervised run's network plays: the loaded classifier scores the test split as training did, and never
    # plays an illegal move against the random player
    _, model = load_classifier(run, torch.device("cpu"))
    assert evaluate(model, data.test, torch.device("cpu"))[1] == pytest.approx(metrics["test_accuracy"])
    env = envs.make("Go5", 2, seed=0)
    assert set(run_episodes(env, greedy_policy(model, torch.device("cpu")), 2, seed=0)) <= {-1.0, 1.0}
    # its encoder loads into PPO's Go agent (rl train ppo --env Go5 --set encoder.init=RUN)
    cfg = registry.resolve("ppo", "Go5", "go", overrides=[f"encoder.init={run}"])
    agent = ppo.make_agent(cfg, env.single_observation_space.shape, int(env.single_action_space.n))
    for name, value in agent.encoder.state_dict().items():
        assert torch.equal(value, model.encoder.state_dict()[name]), name
    env.close()


def test_splits_are_by_whole_games(games5):
    data = np.load(games5)
    split = load_data(go_config(f"data_path={games5}", "test_fraction=0.25"))
    assert len(split.train.y) + len(split.val.y) + len(split.test.y) == len(data["action"])
    games = [
        (torch.from_numpy(data["action"][data["game"] == g]), torch.from_numpy(data["legal"][data["game"] == g]))
        for g in range(4)
    ]
    for part in (split.test, split.val):  # one whole game each, out of four
        assert sum(torch.equal(part.y, y) and torch.equal(part.mask, legal) for y, legal in games) == 1


@pytest.mark.parametrize(
    "setting,needle",
    [
        ("data_path=", "data=go needs"),
        ("data_path={tmp}/none.npz", "does not exist"),
        ("data_path={tmp}/text.npz", "not a readable .npz"),
        ("data_path={tmp}/other.npz", "has no obs, action, legal, game"),
    ],
)
def test_bad_data_path_is_one_line_and_exit_2(tmp_path, setting, needle):
    (tmp_path / "text.npz").write_text("not a zip file")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    runs = tmp_path / "runs"
    result = invoke(
        [
            "supervised",
            "resnet_tower",
            "--data",
            "go",
            "--set",
            setting.format(tmp=tmp_path),
            "--set",
            f"runs_dir={runs}",
        ]
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
    assert not runs.exists()


ALPHAZERO = [
    "encoder.tower_channels=16",
    "encoder.tower_blocks=1",
    "torch_threads=1",
    "device=cpu",
    "progress=false",
    "num_envs=2",
    "playouts=2",
    "fast_playouts=2",
    "learning_starts=1000000",  # no self-play updates: the network is the pretrained one
    "eval_frequency=0",
    "checkpoint_frequency=0",
    "batch_size=64",
    "learning_rate=3e-3",
]


def alphazero(env: str, *settings: str):
    return invoke(["train", "alphazero", "--env", env, "--steps", "1", *(a for s in settings for a in ("--set", s))])


def test_alphazero_starts_from_gnugos_moves_and_results(tmp_path, games5):
    """pretrain_steps minibatches on the file's positions (a random symmetry each) before self-play: the network
    then plays GNU Go's move in most of the positions it learned (untrained: about one in twenty legal moves) and its
    value has the results' sign; the held-out scores are logged; a resumed run does not need the file again."""
    data = tmp_path / "go5.npz"
    data.write_bytes(games5.read_bytes())
    settings = [
        *ALPHAZERO,
        f"runs_dir={tmp_path / 'runs'}",
        f"pretrain_data={data}",
        "pretrain_steps=300",
        "go.komi=24.5",
    ]
    out = ok(alphazero("Go5", *settings))
    assert "pretraining 300/300: GNU Go's move in" in out
    run_dir = only_run(tmp_path / "runs")
    logged = scalars(run_dir / "pretrain")  # TensorBoard run RUN/pretrain, its x axis the minibatches
    assert [step for step, _ in logged["pretrain/policy_loss"]] == [100, 200, 300]
    assert 0 <= logged["pretrain/held_out_accuracy"][-1][1] <= 1

    opened = registry.open_run(run_dir)
    net = registry.load_network(opened, envs.make("Go5", 1, 0), torch.device("cpu"))  # eval mode
    with np.load(data) as f:
        learned = f["game"] % 20 != 0
        obs, action, legal, outcome = (torch.from_numpy(f[k][learned]) for k in ("obs", "action", "legal", "outcome"))
    with torch.no_grad():
        logits, value = net(obs.float())
    accuracy = (logits.masked_fill(~legal, float("-inf")).argmax(1) == action).float().mean().item()
    assert accuracy > 0.6, accuracy
    assert ((value > 0) == (outcome > 0)).float().mean().item() > 0.8

    assert (run_dir / "checkpoints" / "step_0").is_dir()  # the supervised network, before self-play
    first = ok(invoke(["eval", run_dir, "--checkpoint", "0", "--opponent", "random", "--episodes", "2", "--json"]))
    assert json.loads(first)["step"] == 0
    data.unlink()
    resumed = ok(invoke(["train", "alphazero", "--resume", run_dir, "--steps", "60", "--set", "keep_checkpoints=1"]))
    assert "pretraining" not in resumed
    steps = sorted(int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step_*"))
    assert steps[0] == 0 and len(steps) == 2  # the supervised network outlives the pruning of step checkpoints


def test_a_pretrain_file_of_another_board_is_one_line_and_nothing_left(tmp_path, games5):
    runs = tmp_path / "runs"
    settings = [*ALPHAZERO, f"runs_dir={runs}", f"pretrain_data={games5}", "pretrain_steps=10"]
    result = alphazero("Go7", *settings)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "make it with --size 7 --history 8" in result.stderr
    assert not runs.exists()  # checked before the run folder (and runs_dir) is made
