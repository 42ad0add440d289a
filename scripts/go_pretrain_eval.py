"""How a supervised Go network (`rl supervised resnet_tower --data go`) plays on its own: its most likely legal move
every turn (no search, no sampling) against the env's random player or GNU Go, as Black and as White.

    python scripts/go_pretrain_eval.py runs/go-resnet_tower__supervised__1__... --games 40
    python scripts/go_pretrain_eval.py runs/go-resnet_tower__supervised__1__... --opponent gnugo --games 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import envs
from agents.evaluate import run_episodes, summarize
from agents.supervised import greedy_policy, load_classifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a supervised run folder trained with --data go")
    parser.add_argument("--games", type=int, default=40, help="games per colour")
    parser.add_argument("--opponent", choices=("random", "gnugo"), default="random")
    parser.add_argument("--gnugo-level", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device("cpu")
    config, model = load_classifier(args.run, device)
    size = round((model.head.out_features - 1) ** 0.5)  # N*N moves + pass
    policy = greedy_policy(model, device)
    for colour in ("black", "white"):
        env = envs.make(
            f"Go{size}",
            min(args.games, 8),
            args.seed,
            opponent=args.opponent,
            agent_colour=colour,
            gnugo_level=args.gnugo_level,
        )
        scores = run_episodes(env, policy, args.games, args.seed)
        env.close()
        stats = summarize(scores)
        print(
            f"Go{size} as {colour} vs {args.opponent}: won {scores.count(1.0)} of {len(scores)} "
            f"(mean result {stats['mean']:+.2f}, 95% CI [{stats['ci95_low']:+.2f}, {stats['ci95_high']:+.2f}])"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
