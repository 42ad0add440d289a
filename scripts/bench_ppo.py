"""PPO on Pong, CPU: our agent in fp32 and bf16 against stable-baselines3 and against the network's own cost.

Method: one process runs the phases in turn (never two at once) on one torch thread count, both agents
with our resolved configs/ppo/atari.yaml (8 envs x 128 steps, 4 epochs of 4 minibatches of 256) but for
the step budget. Ours runs twice, in fp32 (amp=none) and under bf16 autocast (amp=bf16, agents/accel.py);
SB3 has no bf16.
1. Network-only bound: one bare minibatch step (forward, loss, backward, gradient clipping, optimizer
   step) on a fixed random uint8 minibatch of 256, and the acting forward pass with sampling on one
   (8, 4, 84, 84) obs, giving bound_sps = rollout / (num_steps * t_act + epochs * minibatches * t_update);
   for ours at each precision (their update-time ratio is the bf16 / fp32 row), the same for SB3's
   ActorCriticCnnPolicy (its `evaluate_actions` and `forward`).
2. Ours, fp32 then bf16: `agents.run.start` + `agents.ppo.train`, whose `sps` counts env steps per second
   over the whole run (every rollout and update, logging; not the final checkpoint).
3. SB3: `PPO("CnnPolicy")` on `make_atari_env` (8 envs) + `VecFrameStack(4)`; a callback times learn()
   from its training start to its end.
The bound is measured before, between and after the three runs (the shared host drifts), after one
unreported warm-up phase; each run is divided by its own network's bound, the mean of the two on either side of it.
--no-bf16 runs ours in fp32 alone; --set amp=... (none, bf16, auto) runs ours at that precision alone.
On a GPU (scripts/bench_gpu.sh): --device cuda, --num-envs 16, --no-sb3 measures ours alone, --set passes
config keys (amp=bf16, compile=true), --json saves the numbers (ours at the first precision at the top
level, bf16's under "bf16").
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

import torch
from bench_common import (
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
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.vec_env import VecFrameStack

from agents import ppo, registry
from agents import run as run_lib

SECTION = "## PPO on Pong, CPU (2 cores)"
OBS_SHAPE, N_ACTIONS = (4, 84, 84), 6  # Pong's minimal action set has 6 actions


def fixed_inputs(cfg, device: str) -> dict[str, torch.Tensor]:
    """A random minibatch (obs, actions, old log-probs, advantages, returns, old values) and one acting obs."""
    gen = torch.Generator().manual_seed(0)
    mb = cfg.num_envs * cfg.num_steps // cfg.num_minibatches
    return {
        key: x.to(device)
        for key, x in {
            "obs": torch.randint(0, 256, (mb, *OBS_SHAPE), generator=gen, dtype=torch.uint8),
            "actions": torch.randint(N_ACTIONS, (mb,), generator=gen),
            "logprobs": torch.full((mb,), -1.79),
            "advantages": torch.randn(mb, generator=gen),
            "returns": torch.randn(mb, generator=gen),
            "values": torch.randn(mb, generator=gen),
            "act_obs": torch.randint(0, 256, (cfg.num_envs, *OBS_SHAPE), generator=gen, dtype=torch.uint8),
        }.items()
    }


def bound_ours(cfg, n_updates: int, device: str) -> tuple[float, float]:
    """(seconds per minibatch step, seconds per acting forward pass) of our agent and optimizer."""
    x = fixed_inputs(cfg, device)
    torch.manual_seed(0)
    agent = ppo.make_agent(cfg, OBS_SHAPE, N_ACTIONS).to(device)
    optimizer = ppo.make_optimizer(agent, cfg)
    gen = torch.Generator().manual_seed(0)  # on the host, as agents.ppo.train's

    def update() -> None:  # the body of agents.ppo.update's minibatch loop
        logits, new_value = agent(x["obs"])
        new_logprob, entropy = ppo.logprob_and_entropy(logits, x["actions"])
        adv = (x["advantages"] - x["advantages"].mean()) / (x["advantages"].std() + 1e-8)
        loss, _ = ppo.ppo_loss(
            new_logprob,
            x["logprobs"],
            adv,
            entropy,
            new_value,
            x["values"],
            x["returns"],
            cfg.clip_coef,
            cfg.clip_vloss,
            cfg.ent_coef,
            cfg.vf_coef,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
        optimizer.step()

    def act() -> None:
        with torch.inference_mode():
            ppo.sample_actions(agent(x["act_obs"])[0], gen)

    return seconds_per_call(update, n_updates), seconds_per_call(act, 5 * n_updates)


def bound_sb3(cfg, n_updates: int, device: str) -> tuple[float, float]:
    """The same for the policy PPO("CnnPolicy") builds, with its default Adam."""
    x = fixed_inputs(cfg, device)
    policy = ActorCriticCnnPolicy(
        spaces.Box(0, 255, OBS_SHAPE, "uint8"), spaces.Discrete(N_ACTIONS), lambda _: cfg.learning_rate
    ).to(device)
    obs = x["obs"].float()  # SB3's rollout buffer stores float32 observations; preprocess_obs divides by 255

    def update() -> None:  # stable_baselines3/ppo/ppo.py PPO.train: one minibatch, less logging
        values, log_prob, entropy = policy.evaluate_actions(obs, x["actions"])
        adv = (x["advantages"] - x["advantages"].mean()) / (x["advantages"].std() + 1e-8)
        ratio = torch.exp(log_prob - x["logprobs"])
        policy_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
        values_pred = x["values"] + torch.clamp(values.flatten() - x["values"], -cfg.clip_coef, cfg.clip_coef)
        value_loss = torch.nn.functional.mse_loss(x["returns"], values_pred)
        loss = policy_loss + cfg.ent_coef * -torch.mean(entropy) + cfg.vf_coef * value_loss
        policy.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        policy.optimizer.step()

    def act() -> None:  # OnPolicyAlgorithm.collect_rollouts: policy(obs) under no_grad
        with torch.no_grad():
            policy(x["act_obs"])

    return seconds_per_call(update, n_updates), seconds_per_call(act, 5 * n_updates)


class Clock(BaseCallback):
    """(num_timesteps, time) at the start and at the end of learn()."""

    start: tuple[int, float] | None = None
    end: tuple[int, float] | None = None

    def _on_training_start(self) -> None:
        self.start = (self.num_timesteps, time.time())

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.end = (self.num_timesteps, time.time())


def train_ours(cfg) -> dict:
    """Steps/s ("sps") of our PPO over the whole run, run as `rl train` runs it."""
    run = run_lib.start("ppo", cfg, "Pong")
    sps = ppo.train(cfg, run)["sps"]
    run.close()
    return {"sps": sps}


def train_sb3(cfg, device: str) -> dict:
    """The same of SB3's PPO on the same settings, over the whole of learn()."""
    # ALE/Pong-v5 skips 4 frames itself and has sticky actions; AtariWrapper skips 4 more.
    env = VecFrameStack(
        make_atari_env(
            "ALE/Pong-v5",
            n_envs=cfg.num_envs,
            seed=cfg.seed,
            env_kwargs=dict(frameskip=1, repeat_action_probability=0.0),
        ),
        n_stack=4,
    )
    lr = lambda progress: cfg.learning_rate * progress  # noqa: E731  linear annealing to 0, as ours
    model = PPO(
        "CnnPolicy",
        env,
        learning_rate=lr,
        n_steps=cfg.num_steps,
        batch_size=cfg.num_envs * cfg.num_steps // cfg.num_minibatches,
        n_epochs=cfg.update_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_coef,
        clip_range_vf=cfg.clip_coef,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        device=device,
        verbose=0,
    )
    clock = Clock()
    model.learn(total_timesteps=cfg.total_timesteps, callback=clock)
    env.close()
    (n0, t0), (n1, t1) = clock.start, clock.end
    return {"sps": (n1 - n0) / max(t1 - t0, 1e-9)}


def table(cfg, labels: dict[str, str], results: dict, bounds: list[dict]) -> str:
    rollout, n_updates = cfg.num_envs * cfg.num_steps, cfg.update_epochs * cfg.num_minibatches
    return comparison_table(
        labels,
        {name: r["sps"] for name, r in results.items()},
        bounds,
        lambda t_update, t_act: rollout / (n_updates * t_update + cfg.num_steps * t_act),
        "training steps/s",
        "minibatch step",
    )


def section(cfg, args, labels: dict[str, str], result_table: str, load: float) -> str:
    return f"""{SECTION}

Measured {date.today().isoformat()} with `{" ".join(["python scripts/bench_ppo.py", *sys.argv[1:]])}`
(load average {load:.2f} at the start). Machine: {machine_line()}.
Both agents: configs/ppo/atari.yaml for {args.steps:,} steps: {cfg.num_envs} envs x {cfg.num_steps} steps, \
{cfg.update_epochs} epochs of
{cfg.num_minibatches} minibatches, lr {cfg.learning_rate:g} annealed, clip {cfg.clip_coef:g} \
(value clipping too), ent {cfg.ent_coef:g}, vf {cfg.vf_coef:g},
grad-norm {cfg.max_grad_norm:g}, GAE gamma {cfg.gamma} lambda {cfg.gae_lambda}, Nature CNN shared by policy and value.
{precision_note(labels)}

{result_table}

- Training steps/s: all env steps over the wall time of training: env stepping, acting, GAE, updates and
  logging (ours: TensorBoard every rollout; SB3: its Python Atari wrappers with cv2, Monitor,
  VecFrameStack, VecTransposeImage, its float32 rollout buffer). Not included: evaluation, checkpoints.
- Network-only bound: {cfg.update_epochs * cfg.num_minibatches} bare minibatch steps (no indexing, no env) \
plus {cfg.num_steps} acting
  forward passes on {cfg.num_envs} obs per rollout of {cfg.num_envs * cfg.num_steps:,} steps. \
Ours steps a fused Adam, SB3 its default Adam.
  Each bound phase times every network back to back; a bf16 / fp32 time ratio is the mean over the phases
  of the ratio within each.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=8_192, help="env steps trained by each agent (8 rollouts by default)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every phase (0: torch's default)")
    parser.add_argument(
        "--bound-updates", type=int, default=20, help="minibatch steps timed for the bound (5x as many acts)"
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda: networks, batches and both agents")
    parser.add_argument("--num-envs", type=int, default=0, help="envs (0: the config's, 8)")
    parser.add_argument("--no-sb3", action="store_true", help="measure ours alone (bound and training)")
    parser.add_argument("--no-bf16", action="store_true", help="ours in fp32 alone (--set amp=... picks one itself)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. amp=bf16"
    )
    parser.add_argument("--json", type=Path, help="also save the numbers to this JSON file")
    parser.add_argument("--out", type=Path, help="write/replace the section in this Markdown file")
    args = parser.parse_args()
    if args.out and (args.no_sb3 or args.no_bf16 or args.device != "cpu" or args.set or args.num_envs):
        parser.error(
            "--out writes the CPU comparison of ours in fp32 and bf16 with SB3 at the config's settings: "
            "drop --no-sb3, --no-bf16, --device, --num-envs, --set"
        )
    torch.set_num_threads(args.threads or torch.get_num_threads())

    load = os.getloadavg()[0]
    print(f"torch threads {torch.get_num_threads()}, load average {load:.2f}", flush=True)
    amps = precisions(args.set, args.no_bf16)
    labels = run_labels(amps, args.device, with_sb3=not args.no_sb3)
    with tempfile.TemporaryDirectory(prefix="bench_ppo_") as runs_dir:
        overrides = [
            f"total_timesteps={args.steps}",
            "eval_frequency=0",
            "checkpoint_frequency=0",
            "progress=false",
            f"device={args.device}",
            f"runs_dir={runs_dir}",
            *([f"num_envs={args.num_envs}"] if args.num_envs else []),
            *args.set,
        ]
        cfgs = {
            amp: registry.resolve("ppo", "ALE/Pong-v5", "atari", overrides=[*overrides, f"amp={amp}"]) for amp in amps
        }
        cfg = cfgs[amps[0]]  # every setting but amp is the same in each
        runs = {amp: partial(train_ours, c) for amp, c in cfgs.items()}
        if not args.no_sb3:
            runs["sb3"] = partial(train_sb3, cfg, args.device)
        sb3_bound = None if args.no_sb3 else bound_sb3
        bound = partial(bound_phase, cfgs, bound_ours, sb3_bound, args.bound_updates, args.device)
        print(
            "phase: warm-up (one bound phase, not reported: the first one in a process ran 10x slower acts)", flush=True
        )
        bound()
        results, bounds = measure_in_turn(runs, bound, labels)

    def ours_numbers(amp: str) -> dict:
        t_update, t_act = mean_times(bounds, amp)
        return {"train_sps": results[amp]["sps"], "minibatch_ms": 1e3 * t_update, "act_ms": 1e3 * t_act}

    numbers = {
        "device": args.device,
        "settings": args.set,
        "num_envs": cfg.num_envs,
        "num_steps": cfg.num_steps,
        **precision_numbers(amps, ours_numbers, bounds),
        "sb3_train_sps": results["sb3"]["sps"] if "sb3" in results else None,
    }
    print(json.dumps(numbers))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    result_table = table(cfg, labels, results, bounds)
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
