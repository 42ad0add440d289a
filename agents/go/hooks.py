"""Go's hooks into the generic loops (agents/hooks.py): the run's komi and offered moves in every env, the
league of past versions in self-play training, matches against fixed opponents at each evaluation, and the
8-symmetry average of the network at play time (`eval_symmetries`)."""

from __future__ import annotations

from typing import Any

import torch


def offer_options(config) -> dict[str, Any]:
    """The moves a run's agent is offered on Go (`envs.go.env.offered_moves`): its go.eye_fill and go.pass_rule,
    wherever it plays (training, evaluation, GTP); the plain rules' defaults for a config without a go section."""
    go = getattr(config, "go", None)
    return {"eye_fill": go.eye_fill if go else True, "pass_rule": go.pass_rule if go else "always"}


class GoHooks:
    """agents/hooks.py's Hooks for a Go run (the same methods; no subclass, so neither module imports the other).
    With go.self_play, training plays a league of its past versions (agents/go/league.py), colours
    alternating; training envs run their batched rules on the learner's device, show random symmetries and shape
    rewards as go.* says."""

    def __init__(self, config, num_envs: int = 1, seed: int = 0, device: torch.device | None = None):
        self.config, self.device = config, device
        self.league = None
        if config.go.self_play and device is not None:  # a training run's hooks (evaluation ones have no device)
            from agents.go.league import League

            go = config.go
            self.league = League(num_envs, go.league_size, go.latest_prob, seed, device, go.anchor_prob)

    def env_options(self, training: bool = False) -> dict[str, Any]:
        go = self.config.go
        options: dict[str, Any] = {"komi": go.komi, **offer_options(self.config)}
        if training:
            options |= {
                "augment": go.symmetries,
                "shaping": go.shaping,
                "shaping_potential": go.shaping_potential,
                "score_reward": go.score_reward,
                **({"device": self.device} if self.device is not None else {}),
            }
            if self.league is not None:
                options |= {"opponent": self.league, "agent_colour": "alternate"}
        return options

    def start(self, agent, checkpoint_state, tensors, num_updates: int) -> None:
        if self.league is None:
            return
        if checkpoint_state is not None and "league" in checkpoint_state:
            self.league.load(agent, tensors, checkpoint_state["league"])
        if not self.league.members:
            self.league.add(agent, num_updates)  # the first opponent: the initial policy

    def after_update(self, agent, num_updates: int) -> dict[str, float]:
        if self.league is None or num_updates % self.config.go.snapshot_frequency:
            return {}
        self.league.add(agent, num_updates)
        return {"go/league_size": len(self.league.members)}

    def checkpoint(self) -> tuple[dict[str, Any], dict]:
        return ({}, {}) if self.league is None else ({"league": self.league.state()}, self.league.tensors())

    def evaluate(self, run, policy, step: int, env) -> str:
        """One round of matches on the eval env's board against each of go.eval_opponents: logs go/win_rate/* and
        go/elo/*, writes SGFs to <run>/games/step_<step>/."""
        from agents.go import matches

        config, results = self.config, {}
        for name, kind, level in matches.opponent_names(config):
            records = matches.play_match(
                policy,
                env.size,
                config.go.komi,
                kind,
                config.go.eval_games,
                config.seed + 200_000 + step,
                level,
                **offer_options(config),
            )
            matches.save_sgf(
                records, matches.round_folder(run.dir, step), name, env.size, config.go.komi, f"rl step {step}"
            )
            results[name] = matches.summary(records)
            run.log(step, {f"go/win_rate/{name}": results[name]["win_rate"], f"go/elo/{name}": results[name]["elo"]})
        return "; won " + ", ".join(f"{r['wins']:g}/{r['games']} vs {name}" for name, r in results.items())

    def playing_network(self, net, env, config):
        if not getattr(config, "eval_symmetries", False):
            return net
        from envs.go.symmetry import Averaged  # every position read on its 8 images and averaged

        return Averaged(net, env.size)
