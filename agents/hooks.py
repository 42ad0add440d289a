"""The seam between the generic training loops and an env family with needs of its own.

A loop asks `for_config(config, ...)` once and calls the hooks at fixed points: the env's options, after
each update, into each checkpoint, at each evaluation, and on the network that plays. `Hooks` does
nothing, which is every family but Go; Go's hooks (agents/go/hooks.py: its league, komi, matches and
symmetries) are imported only for a Go run, so a Pong run never loads agents.go or envs.go.
"""

from __future__ import annotations

from typing import Any

import envs


class Hooks:
    """No family-specific behaviour: the hooks of every family but Go."""

    def env_options(self, training: bool = False) -> dict[str, Any]:
        """Extra keyword arguments of `envs.make` for this run's env (training: the env it learns in)."""
        return {}

    def start(self, agent, checkpoint_state: dict[str, Any] | None, tensors: dict | None, num_updates: int) -> None:
        """Once the agent exists (and, on --resume, holds its checkpoint's weights)."""

    def after_update(self, agent, num_updates: int) -> dict[str, float]:
        """After each update; returns scalars to log beside the losses."""
        return {}

    def checkpoint(self) -> tuple[dict[str, Any], dict]:
        """(JSON state, tensors) to store in the run's checkpoint beside the agent's."""
        return {}, {}

    def evaluate(self, run, policy, step: int, env) -> str:
        """Family-specific evaluation at a training evaluation round (`env`: its eval env); returns text for its
        console line."""
        return ""

    def playing_network(self, net, env, config):
        """The network as it plays at evaluation time (Go: averaged over the board's symmetries on request)."""
        return net


def for_config(config, num_envs: int = 1, seed: int = 0, device=None) -> Hooks:
    """The hooks of `config`'s env family; num_envs, seed and device size a training run's own state (Go's league)."""
    if envs.family(config.env) == "go" and hasattr(config, "go"):
        from agents.go.hooks import GoHooks

        return GoHooks(config, num_envs, seed, device)
    return Hooks()
