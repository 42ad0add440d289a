"""rl compare on synthetic runs whose mean and interval are known; the contract tags of a real DQN run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import event_files, invoke, ok, scalars
from scipy import stats
from torch.utils.tensorboard import SummaryWriter

from agents.compare import compare, group_runs, iqm, mean_curve


def fake_run(root, name, seed, values, steps, learning_rate=1e-3):
    run = root / name
    run.mkdir(parents=True)
    config = {"algo": "dqn", "env": "CartPole-v1", "seed": seed, "learning_rate": learning_rate, "runs_dir": str(root)}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with SummaryWriter(str(run)) as writer:
        for step, value in zip(steps, values):
            writer.add_scalar("charts/episodic_return", value, step)
    return run


def test_two_seeds_give_the_mean_and_t_interval(tmp_path):
    steps = np.arange(0, 1001, 10)
    a = fake_run(tmp_path, "a", 1, steps / 10.0, steps)  # 0 .. 100
    b = fake_run(tmp_path, "b", 2, steps / 10.0 + 4.0, steps[:-10] + 5)  # 4 .. 95 at shifted steps
    c = fake_run(tmp_path, "c", 1, np.full(len(steps), 7.0), steps, learning_rate=1e-4)
    groups = group_runs([a, b, c], "charts/episodic_return")
    assert [len(g.runs) for g in groups] == [2, 1]
    assert "learning_rate=0.0001" in groups[1].label  # same algo and env: the label names what differs

    grid, mean, low, high = mean_curve(groups[0].curves, smooth=1, points=50)
    assert grid[0] == 5 and grid[-1] == 905  # only where both runs have data
    # b at step s is (s - 5) / 10 + 4 (linear between its points); a is s / 10
    np.testing.assert_allclose(mean, (grid / 10 + (grid - 5) / 10 + 4) / 2, atol=1e-4)
    half = stats.t.ppf(0.975, 1) * (3.5 / np.sqrt(2)) / np.sqrt(2)  # 3.5 apart everywhere: sample std 3.5/sqrt(2)
    np.testing.assert_allclose(high - mean, half, atol=1e-3)
    np.testing.assert_allclose(mean - low, half, atol=1e-3)

    rows = compare([a, b, c], out=tmp_path / "plot.png", smooth=5)
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    finals_a = (steps / 10.0)[steps >= 900].mean()  # last 10% of a's steps: 900..1000
    finals_b = (steps[:-10] / 10.0 + 4.0)[steps[:-10] + 5 >= 905 - 0.1 * 900].mean()
    np.testing.assert_allclose(rows[0]["final_scores"], [finals_a, finals_b], rtol=1e-6)
    assert rows[0]["mean"] == pytest.approx((finals_a + finals_b) / 2)
    assert rows[0]["iqm_ci95_low"] <= rows[0]["iqm"] <= rows[0]["iqm_ci95_high"]
    assert rows[1]["iqm"] == 7.0 and rows[1]["runs"] == 1


def test_labels_name_nested_keys_by_their_dotted_names(tmp_path):
    steps = np.arange(0, 100, 10)
    runs = []
    for name, sizes in (("a", [64]), ("b", [256, 256])):
        run = fake_run(tmp_path, name, 1, steps * 0.0, steps)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["encoder"] = {"name": "mlp", "hidden_sizes": sizes}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        runs.append(run)
    labels = [g.label for g in group_runs(runs, "charts/episodic_return")]
    assert labels == [
        "dqn CartPole-v1 (encoder.hidden_sizes=[64])",
        "dqn CartPole-v1 (encoder.hidden_sizes=[256, 256])",
    ]


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])
    assert iqm(x) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))


def test_compare_cli_table_and_errors(tmp_path):
    steps = np.arange(0, 100, 10)
    runs = [fake_run(tmp_path, f"r{s}", s, steps * 0 + s, steps) for s in (1, 2, 3)]
    out = ok(invoke(["compare", *runs, "--out", tmp_path / "c.png", "--smooth", "1", "--csv", tmp_path / "c.csv"]))
    assert "dqn CartPole-v1" in out and "2.00" in out  # one group, mean and IQM of 1, 2, 3
    header, *rows = (tmp_path / "c.csv").read_text().splitlines()
    assert header == "group,step,mean,low,high" and len(rows) == 200  # the plotted grid
    first = rows[0].split(",")
    assert first[0] == '"dqn CartPole-v1"' and first[1:3] == ["0", "2"]  # step 0, mean of 1, 2, 3
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # sample std of 1, 2, 3 is 1
    assert float(first[3]) == pytest.approx(2 - half, abs=1e-3) and float(first[4]) == pytest.approx(2 + half, abs=1e-3)
    bad = invoke(["compare", *runs, "--tag", "nope"])
    assert bad.exit_code == 2 and "charts/episodic_return" in bad.stderr
    bad = invoke(["board", tmp_path / "missing"])
    assert bad.exit_code == 2 and "does not exist" in bad.stderr


def test_steps_to_threshold_per_run_and_median(tmp_path):
    steps = np.arange(0, 100, 10)  # 0 .. 90
    fast = fake_run(tmp_path, "fast", 1, [0, 1, 5, 9, 3, 9, 9, 9, 9, 9], steps)  # first >= 8 at step 30
    slow = fake_run(tmp_path, "slow", 2, [0, 0, 0, 0, 0, 0, 8, 8, 8, 8], steps)  # at step 60
    never = fake_run(tmp_path, "never", 3, [7.0] * 10, steps)
    row = compare([fast, slow, never], smooth=1, threshold=8.0)[0]
    assert row["steps_to_threshold"] == [30, 60, None] and row["median_steps_to_threshold"] == 45.0
    # smoothed over 2 points, fast's curve is 0, .5, 3, 7, 6, 6, 9: it reaches 8 at step 60 only
    assert compare([fast], smooth=2, threshold=8.0)[0]["steps_to_threshold"] == [60]
    assert "threshold" not in compare([fast], smooth=1)[0]  # asked for only
    out = ok(invoke(["compare", fast, slow, never, "--out", tmp_path / "c.png", "--smooth", "1", "--threshold", "8"]))
    assert "reached 8 in 2/3 runs, median 45 steps (30, 60, never)" in out
    bad = invoke(["compare", fast, "--out", tmp_path / "c.png", "--threshold", "nan"])
    assert bad.exit_code == 2 and "--threshold must be a finite score" in bad.stderr


BAD_OUTPUTS = {
    "unknown plot format": (["--out", "plot.xyz"], "unknown picture format '.xyz'"),
    "no extension": (["--out", "plot"], "no picture format"),
    "plot into a missing folder": (["--out", "nope/plot.png"], "there is no folder 'nope'"),
    "csv into a missing folder": (["--csv", "nope/curves.csv"], "there is no folder 'nope'"),
    "plot under /proc": (["--out", "/proc/plot.png"], "cannot write '/proc/plot.png'"),
}


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_compare_output_it_cannot_write_is_one_line(case, tmp_path, monkeypatch):
    run = fake_run(tmp_path / "runs", "r1", 1, [1.0, 2.0], [0, 10])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args, needle = BAD_OUTPUTS[case]
    result = invoke(["compare", run, *args])
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr, result.stderr
    assert list(work.iterdir()) == []


def test_compare_json_is_strict_json_with_null_for_an_undefined_interval(tmp_path):
    run = fake_run(tmp_path, "r1", 1, [1.0, 2.0], [0, 10])
    out = ok(invoke(["compare", run, "--json", "--out", tmp_path / "c.png"]))
    (row,) = json.loads(out, parse_constant=lambda name: pytest.fail(f"bare {name} in {out}"))
    assert row["iqm_ci95_low"] is None and row["iqm_ci95_high"] is None  # one run: no bootstrap interval
    assert row["mean"] == 2.0


DQN_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "charts/epsilon",
    "charts/learning_rate",
    "losses/td_loss",
    "losses/q_values",
    "eval/episodic_return",
}


def test_dqn_run_writes_every_contract_tag(tiny_run):
    run_dir, _ = tiny_run
    tags = scalars(run_dir)
    assert DQN_TAGS <= set(tags), f"missing: {DQN_TAGS - set(tags)}"
    assert [step for step, _ in tags["eval/episodic_return"]] == [400, 800]
    assert any(t.startswith("_hparams_") for f in event_files(run_dir) for t in f["plugin_tags"])
