"""DQN on Pong, CPU: our agent in fp32 and bf16 against stable-baselines3 and against the network's own cost.

Method: one process runs the phases in turn (never two at once) on one torch thread count, both agents
with our resolved configs/dqn/atari.yaml but for learning_starts, the step budget and the buffer size.
Ours runs twice, in fp32 (amp=none) and under bf16 autocast (amp=bf16, agents/accel.py); SB3 has no bf16.
1. Network-only bound: our bare `agents.dqn.update` on a fixed random uint8 batch of 32 plus the
   acting forward pass `agents.dqn.epsilon_greedy` at epsilon 0 on one (1, 4, 84, 84) obs, giving
   bound_sps = train_frequency / (t_update + train_frequency * t_act); for ours at each precision (their
   update-time ratio is the bf16 / fp32 row), the same for SB3's CnnPolicy.
2. Ours, fp32 then bf16: `agents.run.start` + `agents.dqn.train`, whose `train_sps` counts env steps
   per second from the first gradient update to the end of the run.
3. SB3: `DQN("CnnPolicy")` on `make_atari_env` + `VecFrameStack(4)`; a callback records
   (num_timesteps, time) when num_timesteps passes learning_starts and when learn() ends.
The bound is measured before, between and after the three runs (this shared 2-core host drifts by 20%
within minutes); each run is divided by its own network's bound, the mean of the two measured on either side of it.
4. Replay bytes per transition.
--no-bf16 runs ours in fp32 alone; --set amp=... (none, bf16, auto) runs ours at that precision alone.
On a GPU (scripts/bench_gpu.sh): --device cuda puts the networks, batches and both agents there,
--no-sb3 measures ours alone, --set passes config keys (amp=bf16, compile=true), --json saves the numbers
(ours at the first precision at the top level, bf16's under "bf16").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_common import (
    RAM_GB,
    bound_phase,
    comparison_table,
    machine_line,
    mean_times,
    measure_in_turn,
    precision_note,
    precision_numbers,
    precisions,
    run_labels,
    seconds_per_call,
    write_section,
)
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack
from stable_baselines3.dqn import CnnPolicy

from agents import dqn, registry
from agents import run as run_lib
from agents.replay import FrameReplay, ReplaySample

SECTION = "## DQN on Pong, CPU (2 cores)"
OBS_SHAPE, N_ACTIONS, BATCH = (4, 84, 84), 6, 32  # Pong's minimal action set has 6 actions
OBS_SPACE, ACTION_SPACE = spaces.Box(0, 255, OBS_SHAPE, np.uint8), spaces.Discrete(N_ACTIONS)


def fixed_inputs(cfg, device: str) -> tuple[ReplaySample, torch.Tensor, torch.Generator]:
    """A random uint8 batch of 32, one obs (1, 4, 84, 84) to act on, and a generator; seeded; on `device`."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2 * BATCH + 1, *OBS_SHAPE), generator=gen, dtype=torch.uint8)
    batch = ReplaySample(
        frames[:BATCH],
        torch.randint(N_ACTIONS, (BATCH,), generator=gen),
        torch.randn(BATCH, generator=gen),
        torch.full((BATCH,), cfg.gamma),
        frames[BATCH:-1],
    )
    return ReplaySample(*(x.to(device) for x in batch)), frames[-1:].to(device), gen


def bound_ours(cfg, n_updates: int, device: str) -> tuple[float, float]:
    """(seconds per update, seconds per act) of our Q-network and its fused Adam."""
    batch, obs, gen = fixed_inputs(cfg, device)
    q_network, target_network = (dqn.make_q_network(cfg, OBS_SHAPE, N_ACTIONS).to(device) for _ in range(2))
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)
    optimizer = dqn.make_optimizer(q_network, cfg)
    t_update = seconds_per_call(lambda: dqn.update(q_network, target_network, optimizer, batch, cfg), n_updates)
    return t_update, seconds_per_call(lambda: dqn.epsilon_greedy(q_network, obs, 0.0, N_ACTIONS, gen), 5 * n_updates)


def bound_sb3(cfg, n_updates: int, device: str) -> tuple[float, float]:
    """The same for the CnnPolicy that DQN("CnnPolicy") builds, with its default optimizer."""
    batch, obs, _ = fixed_inputs(cfg, device)
    policy = CnnPolicy(OBS_SPACE, ACTION_SPACE, lambda _: cfg.learning_rate).to(device)
    s_tm1, actions, rewards, s_t = batch.s_tm1, batch.a_tm1[:, None], batch.r_t[:, None], batch.s_t  # SB3's shapes
    dones = torch.zeros(BATCH, 1, device=device)

    def update() -> None:  # stable_baselines3/dqn/dqn.py DQN.train: one gradient step, less sampling and logging
        with torch.no_grad():
            next_q_values = policy.q_net_target(s_t).max(dim=1)[0].reshape(-1, 1)
            target_q_values = rewards + (1 - dones) * cfg.gamma * next_q_values
        current_q_values = torch.gather(policy.q_net(s_tm1), dim=1, index=actions)
        loss = F.smooth_l1_loss(current_q_values, target_q_values)
        policy.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        policy.optimizer.step()

    def act() -> None:  # DQNPolicy.predict less its numpy conversions
        with torch.no_grad():
            policy._predict(obs, deterministic=True)

    return seconds_per_call(update, n_updates), seconds_per_call(act, 5 * n_updates)


class Clock(BaseCallback):
    """(num_timesteps, time) once past learning_starts and at the end of learn(), counted as our train_sps."""

    start: tuple[int, float] | None = None
    end: tuple[int, float] | None = None

    def _on_step(self) -> bool:
        if self.start is None and self.num_timesteps > self.model.learning_starts:
            self.start = (self.num_timesteps - 1, time.time())
        return True

    def _on_training_end(self) -> None:
        self.end = (self.num_timesteps, time.time())


def train_ours(cfg) -> dict:
    """Steps/s after learning_starts ("sps") and gradient updates ("updates") of our DQN, run as `rl train` runs it."""
    run = run_lib.start("dqn", cfg, "Pong")
    result = dqn.train(cfg, run)
    run.close()
    return {"sps": result["train_sps"], "updates": result["num_updates"]}


def train_sb3(cfg, device: str) -> dict:
    """The same of SB3's DQN on the same settings."""
    # ALE/Pong-v5 skips 4 frames itself and has sticky actions; AtariWrapper skips 4 more.
    env = VecFrameStack(
        make_atari_env(
            "ALE/Pong-v5", n_envs=1, seed=cfg.seed, env_kwargs=dict(frameskip=1, repeat_action_probability=0.0)
        ),
        n_stack=4,
    )
    model = DQN(
        "CnnPolicy",
        env,
        learning_rate=cfg.learning_rate,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=cfg.train_frequency,
        gradient_steps=cfg.gradient_steps,
        target_update_interval=cfg.target_network_frequency,
        exploration_fraction=cfg.exploration_fraction,
        exploration_initial_eps=cfg.start_e,
        exploration_final_eps=cfg.end_e,
        max_grad_norm=cfg.max_grad_norm,
        optimize_memory_usage=False,
        seed=cfg.seed,
        device=device,
        verbose=0,
    )
    clock = Clock()
    model.learn(total_timesteps=cfg.total_timesteps, callback=clock)
    env.close()
    (n0, t0), (n1, t1) = clock.start, clock.end
    return {"sps": (n1 - n0) / max(t1 - t0, 1e-9), "updates": model._n_updates}


def replay_bytes() -> dict[str, float]:
    """Bytes per stored transition: ours (each frame once) and SB3's ReplayBuffer, default and optimized."""
    out = {"ours": FrameReplay(1_000_000, 1, OBS_SHAPE[1:], torch.uint8, OBS_SHAPE[0]).nbytes / 1e6}  # lazy
    for optimize in (False, True):
        size = 1000  # the layout is linear in buffer_size: allocate a small one, scale per transition
        buffer = ReplayBuffer(
            size,
            OBS_SPACE,
            ACTION_SPACE,
            device="cpu",
            optimize_memory_usage=optimize,
            handle_timeout_termination=not optimize,
        )
        out[f"sb3_optimize_{optimize}"] = (
            sum(v.nbytes for v in vars(buffer).values() if isinstance(v, np.ndarray)) / size
        )
    return out


def table(cfg, labels: dict[str, str], results: dict, bounds: list[dict], b: dict[str, float]) -> str:
    ours_bytes = f"{b['ours']:,.0f}, {b['ours'] / 1e3:.2f} GB"
    sb3_bytes = (
        f"{b['sb3_optimize_False']:,.0f} / {b['sb3_optimize_True']:,.0f}, "
        f"{b['sb3_optimize_False'] / 1e3:.1f} / {b['sb3_optimize_True'] / 1e3:.1f} GB"
    )
    return comparison_table(
        labels,
        {name: r["sps"] for name, r in results.items()},
        bounds,
        lambda t_update, t_act: cfg.train_frequency / (t_update + cfg.train_frequency * t_act),
        "training steps/s after learning starts",
        "update",
        [
            ("gradient updates in the timed window", {name: f"{r['updates']:,}" for name, r in results.items()}),
            (
                "replay bytes per transition, GB for 1M (SB3: default / optimize_memory_usage)",
                {name: sb3_bytes if name == "sb3" else ours_bytes for name in labels},
            ),
        ],
    )


def section(cfg, args, labels: dict[str, str], result_table: str, load: float) -> str:
    obs_array_gb = np.prod(OBS_SHAPE) * 1_000_000 / 1e9  # SB3's (1M, 1, 4, 84, 84) uint8 observations
    return f"""{SECTION}

Measured {date.today().isoformat()} with `{" ".join(["python scripts/bench_dqn.py", *sys.argv[1:]])}`
(load average {load:.2f} at the start). Machine: {machine_line()}.
Both agents: configs/dqn/atari.yaml with learning_starts {cfg.learning_starts:,}, then {args.steps:,} training steps:
lr {cfg.learning_rate:g}, batch {cfg.batch_size}, train every {cfg.train_frequency}, \
target copy every {cfg.target_network_frequency}, Huber, grad-norm {cfg.max_grad_norm:g},
gamma {cfg.gamma}, epsilon {cfg.start_e:g} -> {cfg.end_e:g} over the first {cfg.exploration_fraction:.0%} of the steps.
{precision_note(labels)}

{result_table}

- Training steps/s: env steps from the first gradient update to the end of training, with env stepping,
  acting, replay add and sample, updates, target copies and logging (ours: TensorBoard every {cfg.log_frequency:,}
  steps and the final checkpoint without replay; SB3: its Python Atari wrappers with cv2, Monitor,
  VecFrameStack, VecTransposeImage). Not included: warm-up, evaluation, periodic checkpoints (off).
- Network-only bound: the bare update on a fixed batch (no sampling, no env) plus one acting forward
  pass per env step. Same Nature CNN in both; ours steps a fused Adam (agents/dqn.py
  make_optimizer), SB3 its default Adam (torch's per-parameter loop on CPU). Each bound phase times every
  network back to back; a bf16 / fp32 time ratio is the mean over the phases of the ratio within each.
- Buffers: {cfg.buffer_size:,} transitions in both, as SB3's 1M buffer is two numpy arrays of {obs_array_gb:.1f} GB
  each (this machine: {RAM_GB:.0f} GB of RAM); ours allocates lazily either way.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning-starts", type=int, default=2_000, help="random steps before the first update")
    parser.add_argument("--steps", type=int, default=8_000, help="training steps measured after learning starts")
    parser.add_argument("--buffer-size", type=int, default=100_000, help="replay capacity, ours and SB3's")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every phase (0: torch's default)")
    parser.add_argument("--bound-updates", type=int, default=200, help="updates timed for the bound (5x as many acts)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda: networks, batches and both agents")
    parser.add_argument("--no-sb3", action="store_true", help="measure ours alone (bound and training)")
    parser.add_argument("--no-bf16", action="store_true", help="ours in fp32 alone (--set amp=... picks one itself)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. amp=bf16"
    )
    parser.add_argument("--json", type=Path, help="also save the numbers to this JSON file")
    parser.add_argument("--out", type=Path, help="write/replace the section in this Markdown file")
    args = parser.parse_args()
    if args.out and (args.no_sb3 or args.no_bf16 or args.device != "cpu" or args.set):
        parser.error(
            "--out writes the CPU comparison of ours in fp32 and bf16 with SB3 at the config's settings: "
            "drop --no-sb3, --no-bf16, --device, --set"
        )
    torch.set_num_threads(args.threads or torch.get_num_threads())

    load = os.getloadavg()[0]
    print(f"torch threads {torch.get_num_threads()}, load average {load:.2f}", flush=True)
    amps = precisions(args.set, args.no_bf16)
    labels = run_labels(amps, args.device, with_sb3=not args.no_sb3)
    with tempfile.TemporaryDirectory(prefix="bench_dqn_") as runs_dir:
        overrides = [
            f"learning_starts={args.learning_starts}",
            f"total_timesteps={args.learning_starts + args.steps}",
            f"buffer_size={args.buffer_size}",
            "eval_frequency=0",
            "checkpoint_frequency=0",
            "checkpoint_replay=false",
            "progress=false",
            f"runs_dir={runs_dir}",
            f"device={args.device}",
            *args.set,
        ]
        cfgs = {
            amp: registry.resolve("dqn", "ALE/Pong-v5", "atari", overrides=[*overrides, f"amp={amp}"]) for amp in amps
        }
        cfg = cfgs[amps[0]]  # every setting but amp is the same in each
        runs = {amp: partial(train_ours, c) for amp, c in cfgs.items()}
        if not args.no_sb3:
            runs["sb3"] = partial(train_sb3, cfg, args.device)
        sb3_bound = None if args.no_sb3 else bound_sb3
        bound = partial(bound_phase, cfgs, bound_ours, sb3_bound, args.bound_updates, args.device)
        results, bounds = measure_in_turn(runs, bound, labels)

    def ours_numbers(amp: str) -> dict:
        t_update, t_act = mean_times(bounds, amp)
        return {
            "train_sps": results[amp]["sps"],
            "num_updates": results[amp]["updates"],
            "update_ms": 1e3 * t_update,
            "updates_per_s": 1 / t_update,
            "act_ms": 1e3 * t_act,
        }

    numbers = {
        "device": args.device,
        "settings": args.set,
        "train_frequency": cfg.train_frequency,
        "batch_size": cfg.batch_size,
        **precision_numbers(amps, ours_numbers, bounds),
        "sb3_train_sps": results["sb3"]["sps"] if "sb3" in results else None,
    }
    print(json.dumps(numbers))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    result_table = table(cfg, labels, results, bounds, replay_bytes())
    if args.no_sb3:
        print("\n" + result_table)
        return
    text = section(cfg, args, labels, result_table, load)
    print("\n" + text)
    if args.out:
        write_section(args.out, SECTION, text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
