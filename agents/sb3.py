"""`rl train dqn|ppo|a2c --impl sb3`: Stable-Baselines3's agent with our config, logged like ours.

Our resolved config (CleanRL key names, agents/config.py) is mapped onto SB3's hyperparameters; keys SB3
has no equivalent for are named in one note line, never dropped silently. The run folder is ours
(runs/<env>__<algo>-sb3__<seed>__<time>/, config.yaml with `impl: sb3`), and SB3's numbers reach our
TensorBoard tags through its logger (`OurTags`) and a callback (raw episode scores from SB3's Monitor,
evaluations), so `rl compare` and TensorBoard overlay both implementations on the same axes.

Envs follow SB3's own recipes: `make_vec_env` (Monitor) for gymnasium ids; for Atari `make_atari_env`
with `frameskip=1, repeat_action_probability=0` (its AtariWrapper skips 4 frames itself) and a
stack of 4 frames. SB3's model is saved as <run>/sb3_model.zip in SB3's format (our `rl eval`/`rl watch`
read our checkpoints only).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

import envs
from agents import config as config_lib
from agents.config import ConfigError
from agents.dqn import DQNConfig
from agents.ppo import PPOConfig
from agents.run import Run

SB3_TAGS = {  # SB3 logger key -> (our tag, factor): SB3's entropy loss is -entropy, its value loss twice ours
    "time/fps": ("charts/SPS", 1.0),
    "rollout/exploration_rate": ("charts/epsilon", 1.0),
    "train/learning_rate": ("charts/learning_rate", 1.0),
    "train/loss": (None, 1.0),  # losses/td_loss for DQN; PPO's total loss has no tag of ours
    "train/policy_gradient_loss": ("losses/policy_loss", 1.0),  # PPO
    "train/policy_loss": ("losses/policy_loss", 1.0),  # A2C
    "train/value_loss": ("losses/value_loss", 0.5),  # SB3's mean squared error; ours carries CleanRL's 0.5
    "train/entropy_loss": ("losses/entropy", -1.0),
    "train/approx_kl": ("losses/approx_kl", 1.0),
    "train/clip_fraction": ("losses/clipfrac", 1.0),
}


def _require_sb3():
    try:
        import stable_baselines3
    except ImportError:
        raise ConfigError("--impl sb3 needs stable-baselines3: pip install 'rl[sb3]'") from None
    return stable_baselines3


def make_sb3_env(config: Any, n_envs: int, seed: int):
    """SB3's vector env for our env name: Monitor-wrapped, Atari through SB3's AtariWrapper + 4 stacked frames."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    name = envs.canonical_name(config.env)
    if envs.family(name) != "atari":
        return make_vec_env(name, n_envs=n_envs, seed=seed)
    try:
        import cv2  # noqa: F401  (SB3's WarpFrame)
    except ImportError:
        raise ConfigError("--impl sb3 on Atari needs OpenCV for SB3's wrappers: pip install 'rl[sb3]'") from None
    wrapper_kwargs = dict(clip_reward=config.clip_rewards, terminal_on_life_loss=config.terminal_on_life_loss)
    env = make_atari_env(
        name,
        n_envs=n_envs,
        seed=seed,
        wrapper_kwargs=wrapper_kwargs,
        env_kwargs=dict(frameskip=1, repeat_action_probability=0.0),
    )
    return VecFrameStack(env, n_stack=4)


def _policy(config: Any, on_policy: bool) -> tuple[str, dict[str, Any]]:
    """CnnPolicy (SB3's NatureCNN) for images, else MlpPolicy with our hidden sizes and activation (SB3's own
    default would be tanh for PPO and A2C, ReLU for DQN, whatever our config says)."""
    from agents.encoders import ACTIVATIONS

    name = config.encoder.name
    if name == "nature_cnn" or (name == "auto" and envs.family(config.env) == "atari"):
        return "CnnPolicy", {}
    sizes = list(config.encoder.hidden_sizes)
    return "MlpPolicy", {
        "net_arch": dict(pi=sizes, vf=sizes) if on_policy else sizes,
        "activation_fn": ACTIVATIONS[config.encoder.activation],
    }


def sb3_model(algo: str, config: Any, env, device) -> tuple[Any, list[str]]:
    """SB3's model for our config, and the keys SB3 cannot honour (for the note)."""
    sb3 = _require_sb3()
    ignored: list[str] = []
    if config.amp == "bf16" or config.compile:
        ignored.append(f"amp={config.amp} compile={config.compile} (SB3 runs its networks fp32 and eager)")
    n_envs = config.num_envs
    if isinstance(config, DQNConfig):
        policy, policy_kwargs = _policy(config, on_policy=False)
        if config.loss != "huber":
            ignored.append(f"loss={config.loss} (SB3's DQN always uses the Huber loss)")
        extensions = dict(double_dqn="double DQN", dueling="dueling head", distributional="C51 head")
        for key, name in {**extensions, "noisy": "noisy layers", "prioritized": "prioritized replay"}.items():
            if getattr(config, key):
                ignored.append(f"{key}=true (SB3's DQN has no {name})")
        if config.replay_device == "cuda":
            ignored.append("replay_device=cuda (SB3's replay buffer is numpy arrays in host memory)")
        policy_kwargs["optimizer_kwargs"] = dict(eps=config.adam_eps)
        model = sb3.DQN(
            policy,
            env,
            learning_rate=config.learning_rate,
            buffer_size=config.buffer_size,
            learning_starts=config.learning_starts,
            batch_size=config.batch_size,
            tau=config.tau,
            gamma=config.gamma,
            train_freq=max(1, config.train_frequency // n_envs),  # SB3 counts vector steps
            gradient_steps=config.gradient_steps,
            n_steps=config.n_step,
            target_update_interval=config.target_network_frequency,  # SB3 divides by n_envs itself
            exploration_fraction=config.exploration_fraction,
            exploration_initial_eps=config.start_e,
            exploration_final_eps=config.end_e,
            max_grad_norm=config.max_grad_norm if config.max_grad_norm > 0 else float("inf"),
            policy_kwargs=policy_kwargs,
            seed=config.seed,
            device=device,
        )
        return model, ignored
    assert isinstance(config, PPOConfig)
    policy, policy_kwargs = _policy(config, on_policy=True)
    lr = config.learning_rate
    learning_rate = (lambda progress_remaining: progress_remaining * lr) if config.anneal_lr else lr
    if config.optimizer == "rmsprop":
        import torch

        policy_kwargs.update(
            optimizer_class=torch.optim.RMSprop,
            optimizer_kwargs=dict(alpha=config.rmsprop_alpha, eps=config.adam_eps, weight_decay=0),
        )
    else:
        policy_kwargs["optimizer_kwargs"] = dict(eps=config.adam_eps)
    common = dict(
        learning_rate=learning_rate,
        n_steps=config.num_steps,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        # SB3's value loss is the mean squared error, ours half of it (CleanRL): the same objective needs half vf_coef
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef / 2,
        normalize_advantage=config.norm_adv,
        max_grad_norm=config.max_grad_norm if config.max_grad_norm > 0 else float("inf"),
        policy_kwargs=policy_kwargs,
        seed=config.seed,
        device=device,
    )
    if algo == "a2c":
        if config.update_epochs != 1 or config.num_minibatches != 1 or config.clip_coef:
            ignored.append("update_epochs/num_minibatches/clip_coef (SB3's A2C: one epoch, one batch, no clipping)")
        return sb3.A2C(
            policy, env, use_rms_prop=config.optimizer == "rmsprop", rms_prop_eps=config.adam_eps, **common
        ), ignored
    clip = config.clip_coef
    clip_range = (lambda progress_remaining: progress_remaining * clip) if config.anneal_clip else clip
    if config.optimizer != "adam":
        ignored.append(f"optimizer={config.optimizer} is used, SB3's PPO default is Adam")
    return sb3.PPO(
        policy,
        env,
        batch_size=n_envs * config.num_steps // config.num_minibatches,
        n_epochs=config.update_epochs,
        clip_range=clip_range,
        clip_range_vf=clip if config.clip_vloss else None,
        target_kl=config.target_kl or None,
        **common,
    ), ignored


def _our_tags_writer(run: Run, algo: str):
    """An SB3 KVWriter that puts SB3's logged numbers under our tag names in our event file."""
    from stable_baselines3.common.logger import KVWriter

    class OurTags(KVWriter):
        def write(self, key_values, key_excluded, step=0):
            scalars = {}
            for key, value in key_values.items():
                if key in SB3_TAGS and isinstance(value, (int, float, np.floating, np.integer)):
                    tag, factor = SB3_TAGS[key]
                    tag = tag or ("losses/td_loss" if algo == "dqn" else None)
                    if tag:
                        scalars[tag] = factor * float(value)
            run.log(step, scalars)

        def close(self):
            pass

    return OurTags()


def train(algo: str, config: Any, run: Run) -> dict[str, Any]:
    """Train SB3's `algo` with our config inside our run folder; returns what our train() returns."""
    _require_sb3()
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import Logger

    config_lib.save(config, algo, run.dir / "config.yaml")
    with open(run.dir / "config.yaml", "a") as f:
        f.write("impl: sb3\n")
    env = make_sb3_env(config, config.num_envs, config.seed)
    eval_env = make_sb3_env(config, 1, config.seed + 100_000) if config.eval_frequency else None
    model, ignored = sb3_model(algo, config, env, run.device)
    if ignored:
        print(f"note: SB3 cannot honour: {'; '.join(ignored)}", flush=True)
    model.set_logger(Logger(folder=None, output_formats=[_our_tags_writer(run, algo)]))
    frame_skip = 4 if envs.family(config.env) == "atari" else 1  # SB3's Monitor counts emulator frames on Atari
    recent: deque[float] = deque(maxlen=20)
    evals: list[tuple[int, float]] = []
    start = time.time()

    def evaluate(step: int) -> None:
        saved = getattr(model, "exploration_rate", None)
        if saved is not None:  # DQN: act epsilon-greedy at eval_epsilon, as ours does
            model.exploration_rate = config.eval_epsilon
        # deterministic=False: DQN acts at its exploration_rate (eval_epsilon), PPO/A2C sample, as our agents do
        returns, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=config.eval_episodes, return_episode_rewards=True, deterministic=False
        )
        if saved is not None:
            model.exploration_rate = saved
        evals.append((step, float(np.mean(returns))))
        run.log(step, {"eval/episodic_return": evals[-1][1]})

    class OurCallback(BaseCallback):
        next_progress = 0.0

        def _on_step(self) -> bool:
            step, n = self.num_timesteps, self.training_env.num_envs
            for info in self.locals["infos"]:
                if "episode" in info:  # Monitor: a whole game's raw score and length (Monitor sits under the clipping)
                    recent.append(float(info["episode"]["r"]))
                    run.log(
                        step,
                        {
                            "charts/episodic_return": info["episode"]["r"],
                            "charts/episodic_length": info["episode"]["l"] // frame_skip,
                        },
                    )
            if (now := time.time()) >= self.next_progress:  # twice a second, as ours
                self.next_progress = now + 0.5
                run.progress(
                    step,
                    config.total_timesteps,
                    step / max(now - start, 1e-9),
                    float(np.mean(recent)) if recent else None,
                )
            if config.eval_frequency and step // config.eval_frequency > (step - n) // config.eval_frequency:
                evaluate(step)
            return not run.stop_requested

    model.learn(total_timesteps=config.total_timesteps, callback=OurCallback(), log_interval=1, progress_bar=False)
    sps = model.num_timesteps / max(time.time() - start, 1e-9)
    finished = model.num_timesteps >= config.total_timesteps
    if finished and config.eval_frequency and (not evals or evals[-1][0] != model.num_timesteps):
        evaluate(model.num_timesteps)
    model.save(run.dir / "sb3_model.zip")
    env.close()
    if eval_env is not None:
        eval_env.close()
    return {
        "sps": sps,
        "step": int(model.num_timesteps),
        "finished": finished,
        "evals": evals,
        "recent_return": float(np.mean(recent)) if recent else None,
    }
