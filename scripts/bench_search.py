"""Go search speed: network evaluations per second in the PUCT search of AlphaZero self-play, beside the
raw forward passes of its network and of the PPO Go network, one run.

For each board: (a) positions/s of the AlphaZero network (configs/alphazero/go<N>.yaml) in inference mode, at each
of --batches and at the self-play batch (num_envs games at once); (b) the same for the PPO Go network
(configs/ppo/go<N>.yaml), its plain forward pass; (c) agents/go/search.py `root_visits` over num_envs games with
`playouts` playouts each (a full search: root noise on), counted as network evaluations/s (playouts x games /
seconds) and moves/s (games / seconds). (c) over (a) at the self-play batch is the share of the search's time the
network gets; the rest is the tree and the rules. Untrained weights; torch uses one thread unless --threads says more.

    python scripts/bench_search.py --out docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch
from bench_common import machine_line, synchronize, write_section

import envs
from agents import hooks, ppo, registry
from agents.go.search import for_run
from envs.go import game

SECTION = "## Go search speed, CPU (2 cores)"


def calls_per_second(fn: Callable[[], object], seconds: float) -> float:
    """fn() calls per second of wall clock over at least `seconds` (and one call), after two warm-up calls."""
    for _ in range(2):
        fn()
    synchronize()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    synchronize()
    return calls / (time.perf_counter() - start)


def network(algo: str, size: int, device: str):
    """The untrained network and the resolved config of `algo`'s Go run on this board, built as its training does."""
    config = registry.resolve(algo, f"Go{size}", "go")
    env = envs.make(config.env, 1, 0, **hooks.for_config(config).env_options())
    torch.manual_seed(0)
    agent = ppo.make_agent(config, env.single_observation_space.shape, int(env.single_action_space.n))
    return agent.to(device).eval(), config, env.single_observation_space.shape


def forward_rate(agent, obs_shape: tuple[int, ...], batch: int, seconds: float, device: str) -> float:
    """Positions per second through agent(obs) under inference mode, `batch` random 0/1 observations at a time."""
    obs = torch.randint(0, 2, (batch, *obs_shape), generator=torch.Generator().manual_seed(0)).float().to(device)
    with torch.inference_mode():
        return batch * calls_per_second(lambda: agent(obs), seconds)


def search_rate(agent, config, obs_shape: tuple[int, ...], seconds: float, device: str) -> float:
    """Full searches per second of config.num_envs games from the empty board (each search: playouts evaluations)."""
    search = for_run(agent, config, config.playouts, torch.device(device))
    games, size = config.num_envs, int(config.env[2:])
    root = game.new_games(games, size)
    boards = torch.zeros(games, (obs_shape[0] - 1) // 2, size * size, dtype=torch.int8)  # (B, k, N*N): no past
    noise, rng = np.ones(games, bool), np.random.default_rng(0)
    return calls_per_second(lambda: search.root_visits(root, boards, noise=noise, rng=rng), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,7,9")
    parser.add_argument("--batches", default="1,8,64,256", help="forward-pass batches (the self-play one is added)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write/replace the section in this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    forward_rows, search_rows = [], []
    for size in map(int, args.sizes.split(",")):
        alphazero, az_config, obs_shape = network("alphazero", size, args.device)
        plain, _, plain_shape = network("ppo", size, args.device)
        games = az_config.num_envs
        raw = {}
        for batch in sorted({*map(int, args.batches.split(",")), games}):
            raw[batch] = forward_rate(alphazero, obs_shape, batch, args.seconds, args.device)
            ppo_rate = forward_rate(plain, plain_shape, batch, args.seconds, args.device)
            label = f"{batch:,} (self-play)" if batch == games else f"{batch:,}"
            row = f"| {size}x{size} | {label} | {raw[batch]:,.0f} | {ppo_rate:,.0f} | {raw[batch] / ppo_rate:.2f} |"
            print(row, flush=True)
            forward_rows.append(row)
        searches = search_rate(alphazero, az_config, obs_shape, args.seconds, args.device)
        evaluations = searches * games * az_config.playouts
        row = (
            f"| {size}x{size} | {games} | {az_config.playouts} | {evaluations:,.0f} | {searches * games:,.1f} | "
            f"{raw[games]:,.0f} | {evaluations / raw[games]:.2f} |"
        )
        print(row, flush=True)
        search_rows.append(row)
    command = " ".join(["python scripts/bench_search.py", *sys.argv[1:]])
    text = f"""{SECTION}

Measured {date.today().isoformat()} with `{command}` (load average {load:.2f} at the start).
Machine: {machine_line()}; device {args.device}.
Untrained networks built as training builds them: AlphaZero's from configs/alphazero/go<N>.yaml (resnet_tower,
AlphaGo Zero heads), PPO's from configs/ppo/go<N>.yaml (resnet_tower, linear heads); both in inference mode.

Raw forward passes (random 0/1 observation planes), positions/s:

| board | batch | AlphaZero net | PPO net | AlphaZero / PPO |
|---|---|---|---|---|
{chr(10).join(forward_rows)}

Search (agents/go/search.py `root_visits`, full searches with root noise from the empty board, all games as one
batch: one network forward per playout):

| board | games | playouts | evaluations/s in search | moves/s | raw AlphaZero net, positions/s | search / raw |
|---|---|---|---|---|---|---|
{chr(10).join(search_rows)}

- Evaluations in search count playouts x games (each search's one evaluation of its roots is left out).
  "search / raw" is about the share of the search's time spent in the network; the rest is the Python tree walk, the
  batched rules (envs/go/game.py: `step`, offered moves) and the observation planes.
- Self-play (agents/go/selfplay.py) searches a full_search_prob share of moves this way and the rest with
  fast_playouts playouts, no noise; playouts past fast_playouts then run on the fully searched games alone, and
  games that have ended or have one offered move leave the batch, so its network batches are often smaller.
"""
    print("\n" + text)
    if args.out:
        write_section(args.out, SECTION, text)


if __name__ == "__main__":
    main()
