"""The evaluation round of a training run, which every algorithm calls at its eval_frequency."""

from __future__ import annotations

from typing import Any, Callable

import torch

from agents import checkpoint, hooks
from agents.evaluate import Policy, run_episodes, summarize
from agents.planning import optimal_return
from agents.watch import training_video

# Called as observe(run, step, mean) after each evaluation round in this process: how `rl tune` follows a run's
# evaluations without the algorithms knowing, and stops the run (run.stop_requested) when its trial is pruned
observers: list[Callable[[Any, int, float], None]] = []


def evaluation_round(
    run, eval_env, policy: Policy, scores, step: int, evals: list[tuple[int, float]], weights: dict[str, torch.Tensor]
) -> float:
    """One evaluation at env step `step`: `eval_episodes` whole games scored raw, their mean appended to `evals` and
    logged as eval/episodic_return, beside eval/optimal_return on tabular envs (the planner's optimum on the same
    scale); `weights` (the playing network's, prefixed as in a step checkpoint) saved as checkpoints/best when the
    mean is higher than best's own, the best mean so far logged as eval/best_return; one game to videos/ every
    `video_frequency` rounds, and the family's own evaluation (Go: matches against fixed opponents,
    agents/go/matches.py); then each of `observers` is told. Returns the mean."""
    config = run.config
    mean = summarize(run_episodes(eval_env, policy, config.eval_episodes, seed=config.seed + 100_000 + step))["mean"]
    evals.append((step, mean))
    best = run.write_checkpoint(lambda: checkpoint.save_best(run.checkpoint_dir, step, mean, weights))
    optimal = optimal_return(config.env)  # None outside FrozenLake, Taxi, CliffWalking
    logged = {"eval/episodic_return": mean, "eval/best_return": best}
    run.log(step, logged | ({"eval/optimal_return": optimal} if optimal is not None else {}))
    training_video(run, len(evals), step, policy, scores)
    line = f"eval at step {step:,}: return {mean:.2f} over {config.eval_episodes} episodes"
    run.say(line + hooks.for_config(config).evaluate(run, policy, step, eval_env))
    for observe in observers:
        observe(run, step, mean)
    return mean
