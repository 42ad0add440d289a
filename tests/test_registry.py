"""agents/registry.py: the algorithm protocol, the choice of recurrent PPO, config classes beside their code, and
open_run; agents/run.py's loop bookkeeping as plain functions."""

from collections import deque

import pytest
import torch

from agents import registry
from agents import run as run_lib
from agents.checkpoint import CheckpointError
from agents.config import ConfigError


def test_every_algorithm_meets_the_protocol_and_declares_its_config_beside_its_code():
    for name, entry in registry.ALGORITHMS.items():
        module = entry.module()
        for attr in ("Config", "train", "load_policy", "action_scores"):
            assert callable(getattr(module, attr)), (name, attr)
        assert module.Config.__module__ == f"agents.{name}"  # declared in the algorithm's own file
    assert registry.config_class("supervised").__module__ == "agents.supervised"


def test_the_registry_picks_recurrent_ppo_for_an_lstm_encoder():
    from agents import a2c, ppo, ppo_lstm

    lstm = registry.resolve("ppo", "CartPoleNoVel-v1", "cartpolenovel", overrides=["encoder.name=lstm"])
    mlp = registry.resolve("ppo", "CartPole-v1", "cartpole")
    assert registry.implementation("ppo", lstm) is ppo_lstm and registry.implementation("ppo", mlp) is ppo
    a2c_config = registry.resolve("a2c", "CartPole-v1", "cartpole")
    assert type(a2c_config) is a2c.A2CConfig and registry.implementation("a2c", a2c_config) is a2c
    with pytest.raises(ConfigError, match="recurrent PPO"):  # ppo.py itself refuses a recurrent config
        ppo.make_agent(lstm, (2,), 2)


def test_unknown_and_supervised_names_are_one_line_errors():
    with pytest.raises(ConfigError, match="did you mean 'dqn'"):
        registry.entry("dqm")
    with pytest.raises(ConfigError, match="rl supervised MODEL"):
        registry.entry("supervised")
    with pytest.raises(ConfigError, match="did you mean 'ppo'"):
        registry.config_class("ppoo")


def test_open_run_names_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match="--agent .* is not a run folder"):
        registry.open_run(tmp_path, option="--agent")
    cfg = registry.resolve("dqn", "CartPole-v1", "cartpole", overrides=[f"runs_dir={tmp_path}"])
    run = run_lib.start("dqn", cfg, "CartPole-v1")
    run.close()
    opened = registry.open_run(run.dir, None)
    assert opened.algo == "dqn" and opened.config == cfg and opened.checkpoint is None
    with pytest.raises(CheckpointError, match="no checkpoint at step 5 .* it has none"):
        opened.with_checkpoint(5)


def test_crossed_counts_multiples_passed_whatever_the_stride():
    assert run_lib.crossed(10, 9, 10) and not run_lib.crossed(19, 11, 10)
    assert run_lib.crossed(24, 16, 10)  # 20 lies between: a stride of 8 envs still hits it
    assert not run_lib.crossed(100, 0, 0)  # frequency 0: never
    hits = [s for s in range(8, 200, 8) if run_lib.crossed(s, s - 8, 50)]
    assert hits == [56, 104, 152]


def test_counters_round_trip_through_a_checkpoint_state():
    counters = run_lib.Counters(step=640, updates=5, evals=[(320, 1.5)], cpu_seconds=12.5)
    counters.recent_returns.extend([1.0, 2.0])
    state = counters.state()
    assert state == {"num_updates": 5, "recent_returns": [1.0, 2.0], "evals": [(320, 1.5)], "cpu_seconds": 12.5}

    class Saved:  # what checkpoint.load returns, as far as Counters reads it
        step = 640

    Saved.state = {**state, "evals": [[320, 1.5]]}  # JSON turns tuples into lists
    back = run_lib.Counters.restored(Saved)
    assert (back.step, back.updates, back.evals, list(back.recent_returns)) == (640, 5, [(320, 1.5)], [1.0, 2.0])
    assert back.cpu_seconds == 12.5
    del Saved.state["cpu_seconds"]  # a checkpoint of an older version: no CPU time counted
    assert run_lib.Counters.restored(Saved).cpu_seconds == 0.0
    assert isinstance(back.recent_returns, deque) and back.recent_returns.maxlen == 20
    assert run_lib.Counters.restored(None).step == 0 and run_lib.Counters().recent_return() is None


def test_finish_evaluates_once_at_the_end_and_saves(tmp_path):
    calls = []
    run = run_lib.Run(dir=tmp_path, algo="dqn", config=None, device=torch.device("cpu"), writer=None)

    def save():
        calls.append("save" if run.saving else "save not marked as saving")

    def finish(counters, clock):
        return run_lib.finish(run, counters, clock, 100, lambda: calls.append("eval"), save, ())

    counters = run_lib.Counters(step=100, updates=3, evals=[(50, 0.0)])
    summary = finish(counters, run_lib.Clock(0))
    assert calls == ["eval", "save"] and summary["finished"] and summary["num_updates"] == 3
    calls.clear()
    counters.evals.append((100, 1.0))  # already evaluated at this step: not again
    finish(counters, run_lib.Clock(0))
    assert calls == ["save"]
    calls.clear()
    stopped = finish(run_lib.Counters(step=40), run_lib.Clock(0))
    assert calls == ["save"] and not stopped["finished"]  # stopped early (Ctrl-C): no final evaluation
    calls.clear()
    finish(run_lib.Counters(step=100, evals=[(50, 0.0)]), run_lib.Clock(100))
    assert calls == ["save"]  # resumed at 100 and trained no step: the run that saved step 100 evaluated it
