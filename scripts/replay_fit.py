"""Fit fresh Q-networks on a DQN run's saved replay: does the loss let the network tell screens apart?

A diagnostic for a DQN run that stays flat. It loads the replay a checkpoint holds (checkpoint_replay: true), builds
new networks from the run's config with a few keys changed per setting, and trains each on uniform draws from that
fixed replay with agents/dqn.py's own `update` (target network copied every `--sync` updates). Every `--every`
updates it prints the mean loss and, on a held-out probe of 256 transitions whose n-step reward is negative (a point
about to be lost) and 256 whose reward is 0, the gap Q(s, a | reward < 0) - Q(s, a | reward = 0) and the spread of
Q over those screens. A network that learns from the screens opens the gap within a few thousand updates.

    python scripts/replay_fit.py RUN --checkpoint 429908 --updates 8000 \\
        --setting "rainbow preset=" \\
        --setting "plain dqn=distributional=false loss=huber learning_rate=1e-4 adam_eps=1e-8"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import envs
from agents import config as config_lib
from agents import dqn, registry
from agents.prioritized import PrioritizedFrameReplay
from agents.replay import FrameReplay, ReplaySample


def probe(replay: FrameReplay, generator: torch.Generator, count: int = 256) -> tuple[ReplaySample, ReplaySample]:
    """`count` transitions with a negative n-step reward and `count` with reward 0, drawn uniformly."""
    found: dict[str, list[ReplaySample]] = {"neg": [], "zero": []}
    have = {"neg": 0, "zero": 0}
    while min(have.values()) < count:
        batch = FrameReplay.sample(replay, 512, generator)
        for name, mask in (("neg", batch.r_t < 0), ("zero", batch.r_t == 0)):
            if mask.any():
                found[name].append(ReplaySample(*(t[mask] for t in batch)))
                have[name] += int(mask.sum())
    return tuple(  # type: ignore[return-value]
        ReplaySample(*(torch.cat([getattr(s, f) for s in found[name]])[:count] for f in ReplaySample._fields))
        for name in ("neg", "zero")
    )


def setting(text: str, saved: dict) -> tuple[str, dqn.DQNConfig]:
    """NAME=key=value key=value ...: the run's config with those keys changed as `--set` changes them."""
    name, _, assignments = text.partition("=")
    env = saved["env"]
    return name, registry.resolve("dqn", env, envs.family(env), None, None, assignments.split(), base=saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a DQN run folder whose checkpoint holds its replay")
    parser.add_argument("--checkpoint", required=True, help="the step of checkpoints/step_<N>")
    parser.add_argument("--setting", action="append", required=True, help='"NAME=key=value ..." (repeatable)')
    parser.add_argument("--updates", type=int, default=8000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--sync", type=int, default=2000, help="updates between target-network copies")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    _, saved = config_lib.read_saved(args.run / "config.yaml")
    base = registry.resolve("dqn", saved["env"], envs.family(saved["env"]), base=saved)
    folder = args.run / "checkpoints" / f"step_{args.checkpoint}" / "replay"
    loader = PrioritizedFrameReplay if (folder / "priority.json").exists() else FrameReplay
    replay = loader.load(folder, "cpu", "cpu")
    neg, zero = probe(replay, torch.Generator().manual_seed(0))
    obs_shape = tuple(neg.s_tm1.shape[1:])
    env = envs.make(base.env, 1, base.seed)
    n_actions = int(env.single_action_space.n)
    env.close()
    print(f"replay: {len(replay):,} transitions from {folder}; probe rewards {neg.r_t[:3].tolist()} / 0")
    for text in args.setting:
        name, config = setting(text, saved)
        torch.manual_seed(1)
        q_network = dqn.make_q_network(config, obs_shape, n_actions)
        target = dqn.make_q_network(config, obs_shape, n_actions)
        target.load_state_dict(q_network.state_dict())
        target.requires_grad_(False)
        optimizer = dqn.make_optimizer(q_network, config)
        generator = torch.Generator().manual_seed(1)
        start, losses = time.time(), []
        for u in range(1, args.updates + 1):
            batch = FrameReplay.sample(replay, config.batch_size, generator)
            losses.append(dqn.update(q_network, target, optimizer, batch, config).loss.item())
            if u % args.sync == 0:
                target.load_state_dict(q_network.state_dict())
            if u % args.every == 0:
                with torch.no_grad():
                    q_neg = q_network(neg.s_tm1).gather(1, neg.a_tm1[:, None]).squeeze(1)
                    q_zero = q_network(zero.s_tm1).gather(1, zero.a_tm1[:, None]).squeeze(1)
                spread = torch.cat([q_neg, q_zero]).std().item()
                print(
                    f"{name}: update {u:>6}  loss {np.mean(losses[-args.every :]):.4f}  "
                    f"gap {(q_neg.mean() - q_zero.mean()).item():+.4f}  spread {spread:.4f}  "
                    f"{time.time() - start:.0f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
