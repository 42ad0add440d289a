"""Recurrent PPO on CartPoleNoVel-v1 (CartPole with the velocities hidden), CPU: our agents/ppo_lstm.py against
sb3-contrib's RecurrentPPO with rl-baselines3-zoo's hyperparameters (hyperparams/ppo_lstm.yml), and our update's
time with the LSTM replayed step by step against the padded pieces of LSTMEncoder.forward_sequence.

Method, one torch thread per process:
1. Learning curves: each agent trains `--steps` env steps per seed; every 10k steps its greedy policy (argmax,
   memory reset at episode starts, observations normalized with the frozen training statistics) plays 10 episodes
   of a separate env (seed + 100000); the mean return is recorded. Ours: configs/ppo/cartpolenovel.yaml through
   agents.run + ppo.train. sb3-contrib: RecurrentPPO("MlpLstmPolicy") on 8 envs with VecNormalize(norm_obs=True,
   norm_reward=False), n_steps 32, batch 256, 20 epochs, lr and clip range linear from 1e-3 and 0.2, gamma 0.98,
   gae_lambda 0.8, ent_coef 0, ReLU, lstm_hidden_size 64, enable_critic_lstm, net_arch pi=[64] vf=[64],
   ortho_init False. Steps/s count training time only (evaluations excluded).
2. Update time: agents.ppo_lstm.update (the config's 20 epochs, one minibatch of 8 envs x 32 steps) on a rollout
   collected by a random policy (episodes of ~20 steps: ~9 resets inside the segment), with forward_sequence as it
   is (pieces padded into one nn.LSTM call) and with the per-step loop it replaced (REFERENCE below).
Each call runs some agents and seeds and adds them to `--results` (JSON); `--out` writes the section from it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from bench_common import machine_line, seconds_per_call, write_section
from torch import nn

import envs
from agents import ppo, ppo_lstm, registry
from agents import run as run_lib
from agents.encoders import LSTMEncoder
from agents.rollout import gae, make_rollout
from envs.gym_envs import MASKED, KeepObservation

SECTION = "## Recurrent PPO on CartPoleNoVel-v1"
ENV = "CartPoleNoVel-v1"
EVAL_EVERY, EVAL_EPISODES = 10_000, 10


def config(seed: int, steps: int, runs_dir: str, *extra: str):
    return registry.resolve(
        "ppo",
        ENV,
        "cartpolenovel",
        overrides=[
            f"seed={seed}",
            f"total_timesteps={steps}",
            f"eval_frequency={EVAL_EVERY}",
            f"eval_episodes={EVAL_EPISODES}",
            "checkpoint_frequency=0",
            "progress=false",
            "device=cpu",
            "torch_threads=1",
            f"runs_dir={runs_dir}",
            *extra,
        ],
    )


def train_ours(seed: int, steps: int, *extra: str) -> dict:
    cfg = config(seed, steps, tempfile.mkdtemp(), *extra)
    run = run_lib.start("ppo", cfg, ENV)
    try:
        res = ppo.train(cfg, run)
    finally:
        run.close()
    return {"evals": [[int(s), float(r)] for s, r in res["evals"]], "sps": res["train_sps"]}


def train_sb3(seed: int, steps: int) -> dict:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    base, keep = MASKED[ENV]
    make = lambda: KeepObservation(gym.make(base), keep)  # noqa: E731 the env envs.make builds
    env = VecNormalize(make_vec_env(make, n_envs=8, seed=seed), norm_obs=True, norm_reward=False)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        ent_coef=0.0,
        learning_rate=lambda p: 1e-3 * p,
        clip_range=lambda p: 0.2 * p,
        seed=seed,
        device="cpu",
        policy_kwargs=dict(
            ortho_init=False,
            activation_fn=nn.ReLU,
            lstm_hidden_size=64,
            enable_critic_lstm=True,
            net_arch=dict(pi=[64], vf=[64]),
        ),
    )

    def evaluate() -> float:
        eval_env = VecNormalize(
            make_vec_env(make, n_envs=1, seed=seed + 100_000), norm_obs=True, norm_reward=False, training=False
        )
        eval_env.obs_rms = env.obs_rms
        obs, state, start, ret, returns = eval_env.reset(), None, np.ones(1, dtype=bool), 0.0, []
        while len(returns) < EVAL_EPISODES:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
            obs, reward, start, _ = eval_env.step(action)
            ret += float(reward[0])
            if start[0]:
                returns, ret = returns + [ret], 0.0
        return float(np.mean(returns))

    class Evaluations(BaseCallback):
        def __init__(self):
            super().__init__()
            self.evals, self.eval_time, self.start = [], 0.0, time.time()

        def _on_step(self) -> bool:
            if self.num_timesteps // EVAL_EVERY > (self.num_timesteps - 8) // EVAL_EVERY:
                t = time.time()
                self.evals.append([self.num_timesteps, evaluate()])
                self.eval_time += time.time() - t
            return True

    callback = Evaluations()
    model.learn(steps, callback=callback)
    return {"evals": callback.evals, "sps": steps / (time.time() - callback.start - callback.eval_time)}


def reference_forward_sequence(self, x, state, episode_starts, final_state=True):
    """The per-step loop forward_sequence ran before: one nn.LSTM call per time step, state zeroed at starts."""
    outputs = []
    for x_t, start_t in zip(x.float(), episode_starts):  # (N, F), (N,)
        keep = (~start_t.bool()).float().view(1, -1, 1)
        y_t, state = self.lstm(x_t.unsqueeze(0), (state[0] * keep, state[1] * keep))
        outputs.append(y_t)
    return torch.cat(outputs), state


def update_seconds(n: int) -> dict:
    """Seconds per ppo_lstm.update on a random-policy rollout of the config's shape, pieces padded vs per-step loop."""
    cfg = config(1, 100_000, tempfile.mkdtemp())
    env = envs.make(ENV, cfg.num_envs, 0)
    torch.manual_seed(0)
    agent = ppo_lstm.make_agent(cfg, env.single_observation_space.shape, 2)
    T, N = cfg.num_steps, cfg.num_envs
    rollout = make_rollout(T, N, env.single_observation_space.shape, torch.float32, 2, False, torch.device("cpu"))
    starts, rng = torch.zeros(T, N, dtype=torch.bool), np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    valid, start = np.ones(N, dtype=bool), np.ones(N, dtype=bool)
    state = agent.initial_state(N)
    for t in range(T):
        rollout.obs[t], rollout.valid[t], starts[t] = (
            torch.as_tensor(obs),
            torch.as_tensor(valid),
            torch.as_tensor(start),
        )
        with torch.no_grad():
            logits, value, state = agent(rollout.obs[t : t + 1], state, starts[t : t + 1])
        action = rng.integers(0, 2, N)
        rollout.actions[t], rollout.values[t] = torch.as_tensor(action), value[0]
        rollout.logprobs[t] = torch.log_softmax(logits[0], 1).gather(1, rollout.actions[t].unsqueeze(1)).squeeze(1)
        obs, reward, terminated, truncated, _ = env.step(action)
        rollout.rewards[t], rollout.terminated[t] = torch.as_tensor(reward), torch.as_tensor(terminated)
        rollout.episode_end[t] = torch.as_tensor(terminated | truncated)
        start, valid = ~valid, ~(terminated | truncated)
    advantages = gae(
        rollout.rewards,
        rollout.values,
        torch.zeros(N),
        rollout.terminated,
        rollout.episode_end,
        cfg.gamma,
        cfg.gae_lambda,
    )
    initial = agent.initial_state(N)
    out = {"resets_inside": int(starts[1:].sum()), "epochs": cfg.update_epochs}
    for name, forward in [("loop", reference_forward_sequence), ("pieces", LSTMEncoder.forward_sequence)]:
        LSTMEncoder.forward_sequence = forward
        optimizer = ppo.make_optimizer(agent, cfg)
        out[name] = seconds_per_call(
            lambda: ppo_lstm.update(
                agent,
                optimizer,
                rollout,
                starts,
                initial,
                advantages,
                advantages + rollout.values,
                cfg,
                0.2,
                torch.Generator(),
            ),
            n,
        )
    return out


def section(results: dict, command: str, note: str) -> str:
    lines = [
        SECTION,
        "",
        f"Written by `{command}` on {date.today()}: {machine_line()}, sb3-contrib "
        f"{version('sb3-contrib')}. Greedy evaluation (10 episodes, CartPole's cap is 500) every 10k steps of a "
        "100k-step run; steps/s exclude evaluations, one torch thread, on a host shared with other jobs "
        f"(load average {os.getloadavg()[0]:.1f} when written), so compare them loosely. {note}".rstrip(),
        "",
    ]
    for agent, title in [
        ("ours", "ours (configs/ppo/cartpolenovel.yaml)"),
        ("ours_raw", "ours with `encoder.obs_norm=false` (raw observations; all else as above)"),
        ("sb3", "sb3-contrib RecurrentPPO, rl-zoo values"),
    ]:
        runs = results.get(agent, {})
        if not runs:
            continue
        steps = sorted({s // 1000 * 1000 for r in runs.values() for s, _ in r["evals"]})
        lines += [
            f"{title}:",
            "",
            "| seed | " + " | ".join(f"{s // 1000}k" for s in steps) + " | first 500 | steps/s |",
            "|---" * (len(steps) + 3) + "|",
        ]
        for seed, r in sorted(runs.items()):
            by_step = {s // 1000 * 1000: v for s, v in r["evals"]}
            cells = [f"{by_step[s]:.0f}" if s in by_step else "" for s in steps]
            solved = next((f"{s // 1000}k" for s, v in r["evals"] if v >= 500), "never")
            lines.append(f"| {seed} | " + " | ".join(cells) + f" | {solved} | {r['sps']:.0f} |")
        lines.append("")
    if "update" in results:
        u = results["update"]
        lines += [
            f"One update ({u['epochs']} epochs over 8 envs x 32 steps, {u['resets_inside']} episode starts inside): "
            f"{1e3 * u['loop']:.0f} ms replaying the LSTM step by step, {1e3 * u['pieces']:.0f} ms with the "
            f"pieces between starts padded into one nn.LSTM call ({u['loop'] / u['pieces']:.1f}x faster).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--agents",
        nargs="*",
        default=[],
        choices=["ours", "ours_raw", "sb3", "update"],
        help="ours_raw: ours with encoder.obs_norm=false (the LSTM reads raw observations)",
    )
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--results", type=Path, default=Path("bench_ppo_lstm.json"), help="JSON the runs accumulate in")
    parser.add_argument("--out", type=Path, help="write/replace the section in this Markdown file")
    parser.add_argument(
        "--note", default="", help="how the runs were made (e.g. which ran side by side), for the section"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    for agent in args.agents:
        if agent == "update":
            results["update"] = update_seconds(30)
            print(results["update"], flush=True)
            continue
        for seed in args.seeds:
            train = {
                "ours": train_ours,
                "ours_raw": lambda *a: train_ours(*a, "encoder.obs_norm=false"),
                "sb3": train_sb3,
            }[agent]
            results.setdefault(agent, {})[str(seed)] = train(seed, args.steps)
            print(agent, seed, results[agent][str(seed)], flush=True)
            args.results.write_text(json.dumps(results))
    args.results.write_text(json.dumps(results))
    if args.out:
        write_section(
            args.out,
            SECTION,
            section(
                results,
                "python scripts/bench_ppo_lstm.py --agents ours ours_raw sb3 update --out docs/BENCHMARKS.md",
                args.note,
            ),
        )


if __name__ == "__main__":
    main()
