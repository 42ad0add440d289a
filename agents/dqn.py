"""Deep Q-Network (Mnih et al. 2015), read top to bottom in CleanRL's order.

Options: double DQN (van Hasselt et al. 2016), dueling head (Wang et al. 2016), n-step returns,
Huber or MSE loss, hard or Polyak target updates, gradient clipping, several envs at once, and
Rainbow's (Hessel et al. 2018) distributional C51 head (Bellemare et al. 2017), noisy nets
(Fortunato et al. 2018) and prioritized replay (Schaul et al. 2016); the network is in
agents/dqn_heads.py, the prioritized replay in agents/prioritized.py. Noisy nets draw new noise for
the online net before each env step, and for both nets before each update; they act with noise in
training and with their mean weights (eval mode) in evaluations, `rl eval` and `rl watch`.
Losses and targets are pure functions of tensors (names as in dqn_zoo: s_tm1, a_tm1, r_t,
discount_t, s_t), tested against hand-computed numbers in tests/test_dqn_math.py.
On a GPU (agents/accel.py, agents/replay.py): bf16 autocast (amp), torch.compile (compile), and the
replay on the GPU when it fits (replay_device). CUDA graphs for the update are not offered: a graph
needs the sampled batch copied into fixed buffers and a capturable optimizer, and whether that pays
for a Nature-CNN update has not been measured on a GPU yet.
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import envs
from agents import checkpoint
from agents.accel import channels_last, compile_in_place, network_amp, pick_threads
from agents.checkpoint import rng_from_json, rng_to_json
from agents.config import ConfigError, EnvRunFields, option
from agents.dqn_heads import QNetwork
from agents.encoders import encoder_from_config, freeze_batch_norm_stats
from agents.eval_round import evaluation_round
from agents.noisy import reset_noise
from agents.prioritized import PrioritizedFrameReplay, beta_schedule
from agents.replay import FrameReplay, ReplaySample, replay_device
from agents.run import Clock, Counters, Run, crossed, end_of_iteration, finish, make_eval_env, restoring
from envs.episodes import EpisodeStats


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DQNConfig(EnvRunFields):
    """Deep Q-Network (Mnih et al. 2015) with the usual extensions.

    Defaults are CleanRL's `dqn.py` (classic control); configs/dqn/atari.yaml holds the Nature/CleanRL
    Atari values. All counts are in environment steps summed over all envs ("global steps").
    """

    num_envs: int = option(1, positive=True)
    # --- learning
    learning_rate: float = option(2.5e-4, positive=True)
    adam_eps: float = 1e-8
    buffer_size: int = option(10_000, positive=True)
    # 1.0: hard copy every target_network_frequency steps; < 1: Polyak averaging at that period
    tau: float = option(1.0, low=0, high=1)
    target_network_frequency: int = option(500, positive=True)
    batch_size: int = option(128, positive=True)
    start_e: float = option(1.0, low=0, high=1)
    end_e: float = option(0.05, low=0, high=1)
    exploration_fraction: float = option(0.5, low=0, high=1)  # of total_timesteps, over which epsilon decays linearly
    learning_starts: int = 10_000
    train_frequency: int = option(10, positive=True)  # one round of gradient_steps updates every this many env steps
    gradient_steps: int = option(1, positive=True)
    n_step: int = option(1, positive=True)  # n-step returns (Sutton 1988; Hessel et al. 2018)
    double_dqn: bool = False  # van Hasselt et al. 2016: the online net picks, the target net evaluates
    dueling: bool = False  # Wang et al. 2016: V + A - mean(A)
    loss: str = option("mse", choices=("mse", "huber"))  # the Nature paper's error clipping is the Huber loss
    # C51 (Bellemare et al. 2017): learn the return's distribution on num_atoms atoms evenly spaced over
    # [v_min, v_max], with a cross-entropy loss (`loss` is then unused)
    distributional: bool = False
    num_atoms: int = option(51, low=2)
    v_min: float = -10.0
    v_max: float = 10.0
    # noisy nets (Fortunato et al. 2018): the head's linear layers get learned factorised Gaussian noise, which
    # replaces epsilon-greedy exploration (start_e, end_e and exploration_fraction are then unused; eval_epsilon is not)
    noisy: bool = False
    noisy_sigma0: float = option(0.5, positive=True)  # the paper's sigma_0 for factorised noise
    # proportional prioritized replay (Schaul et al. 2016; agents/prioritized.py): transition i is drawn with
    # probability proportional to (e_i + priority_eps)^priority_alpha, e_i its last |TD error| (C51: its
    # cross-entropy, as Rainbow), and its loss weighted by (N P(i))^-beta, beta annealed linearly from
    # priority_beta0 to 1 over total_timesteps
    prioritized: bool = False
    priority_alpha: float = option(0.5, low=0)  # Rainbow (Hessel et al. 2018) and Dopamine: 0.5; Schaul et al.: 0.6
    priority_beta0: float = option(0.4, low=0, high=1)  # Schaul et al. and Rainbow: 0.4; Dopamine holds 0.5 fixed
    priority_eps: float = option(1e-6, positive=True)  # keeps priorities above 0 (Schaul et al. Section 3.3; Baselines)
    max_grad_norm: float = 0.0  # 0 disables gradient clipping
    # auto: the training GPU when the frames fit (agents/replay.py)
    replay_device: str = option("auto", choices=("auto", "cpu", "cuda"))
    # --- evaluation, logging, checkpoints
    eval_epsilon: float = option(0.05, low=0, high=1)
    log_frequency: int = option(100, positive=True)  # env steps between loss logs
    checkpoint_replay: bool = True  # store the replay in checkpoints so that --resume is exact

    def _rules(self) -> None:
        if self.v_min >= self.v_max:
            raise ConfigError(
                f"config keys 'v_min' ({self.v_min}) and 'v_max' ({self.v_max}) bound C51's support: "
                "v_min must be below v_max"
            )
        super()._rules()


Config = DQNConfig  # the registry's protocol (agents/registry.py): every algorithm names its config class


# ---------------------------------------------------------------------------------------------- network
def make_q_network(config: DQNConfig, obs_shape: tuple[int, ...], n_actions: int, load_init: bool = True) -> QNetwork:
    """load_init=False skips encoder.init (a checkpoint's weights replace it, and the file may be gone).
    config.compile compiles it in place (agents/accel.py): its state_dict is the eager one's. Batch-norm statistics
    are frozen, as in PPO (encoders.freeze_batch_norm_stats): acting on one state cannot use batch statistics. Image
    networks are laid out channels-last (agents/accel.py)."""
    encoder = encoder_from_config(config.encoder, obs_shape, load_init)
    support = torch.linspace(config.v_min, config.v_max, config.num_atoms) if config.distributional else None
    sigma0 = config.noisy_sigma0 if config.noisy else None
    amp = network_amp(config.amp, encoder)
    q_network = freeze_batch_norm_stats(QNetwork(encoder, n_actions, config.dueling, amp, support, sigma0))
    return compile_in_place(channels_last(q_network, obs_shape), config.compile)


# ---------------------------------------------------------------------------------------------- maths
def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """Epsilon moves linearly from start_e to end_e over `duration` steps, then stays at end_e."""
    fraction = min(1.0, t / duration) if duration > 0 else 1.0
    return start_e + fraction * (end_e - start_e)


def td_target(
    r_t: torch.Tensor, discount_t: torch.Tensor, q_t_target: torch.Tensor, q_t_selector: torch.Tensor | None = None
) -> torch.Tensor:
    """Bellman target r_t + discount_t * Q_target(s_t, a*) with a* = argmax of q_t_selector (double DQN)
    or of q_t_target itself (DQN). discount_t already holds gamma^n, or 0 after a terminal.
    Shapes: r_t, discount_t (B,); q_t_* (B, A) -> (B,)."""
    selector = q_t_target if q_t_selector is None else q_t_selector
    a_star = selector.argmax(dim=1, keepdim=True)  # (B, 1)
    return r_t + discount_t * q_t_target.gather(1, a_star).squeeze(1)


def td_loss(q_tm1_a: torch.Tensor, target: torch.Tensor, loss: str, reduction: str = "mean") -> torch.Tensor:
    """TD error loss, its mean () or, with reduction="none", per sample (B,); Huber (delta 1) is the Nature
    paper's clipping of the error to [-1, 1]."""
    target = target.detach()
    loss_fn = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    return loss_fn(q_tm1_a, target, reduction=reduction)


def categorical_projection(
    r_t: torch.Tensor, discount_t: torch.Tensor, p_t: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """C51's target (Bellemare et al. 2017, Algorithm 1): the distribution of r_t + discount_t * Z, Z with
    probabilities p_t on the atoms z_j of `support` (evenly spaced), projected back onto the support. Each
    Tz_j = clamp(r_t + discount_t z_j, v_min, v_max) splits its mass between its two neighbouring atoms by
    linear interpolation; written as rlax's hat functions, atom i gets p_j max(0, 1 - |Tz_j - z_i| / dz), which
    gives atom i all of p_j when Tz_j lands on it (the paper's l == u case, where floor and ceil agree).
    Shapes: r_t, discount_t (B,); p_t (B, atoms); support (atoms,) -> (B, atoms)."""
    delta_z = support[1] - support[0]
    tz = (r_t[:, None] + discount_t[:, None] * support).clamp(support[0], support[-1])  # (B, atoms_j)
    hat = (1 - (tz[:, None, :] - support[None, :, None]).abs() / delta_z).clamp(min=0)  # (B, atoms_i, atoms_j)
    return (hat * p_t[:, None, :]).sum(dim=2)  # (B, atoms_i)


def categorical_td_target(
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    p_t_target: torch.Tensor,
    support: torch.Tensor,
    q_t_selector: torch.Tensor | None = None,
) -> torch.Tensor:
    """td_target for C51: the projected distribution of the target net at a* = argmax of q_t_selector (double
    DQN) or of the target net's own Q = E[Z] (C51). Shapes: p_t_target (B, A, atoms); q_t_selector (B, A) ->
    (B, atoms)."""
    selector = (p_t_target * support).sum(dim=2) if q_t_selector is None else q_t_selector  # (B, A)
    a_star = selector.argmax(dim=1)  # (B,)
    p_t = p_t_target[torch.arange(len(a_star), device=a_star.device), a_star]  # (B, atoms)
    return categorical_projection(r_t, discount_t, p_t, support)


def categorical_loss(log_p_tm1_a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy -sum_i target_i log p_i per sample (Bellemare et al. 2017, eq. 7): (B, atoms) -> (B,)."""
    return -(target.detach() * log_p_tm1_a).sum(dim=1)


def epsilon_greedy(
    q_net: nn.Module, obs: torch.Tensor, epsilon: float, n_actions: int, generator: torch.Generator
) -> np.ndarray:
    """Random action with probability epsilon per env, else argmax Q; skips the forward pass when
    every env explores (all of the warm-up)."""
    n = obs.shape[0]
    explore = torch.rand(n, generator=generator) < epsilon
    actions = torch.randint(n_actions, (n,), generator=generator)
    if not bool(explore.all()):
        with torch.inference_mode():
            greedy = q_net(obs).argmax(dim=1).cpu()
        actions = torch.where(explore, actions, greedy)
    return actions.numpy()


class UpdateOut(NamedTuple):
    """What one update reports, detached and still on the device (the caller syncs once per log, not per update)."""

    loss: torch.Tensor  # () the loss minimised: mean over the batch of weight * per_sample
    q_mean: torch.Tensor  # () mean Q(s_tm1, a_tm1)
    per_sample: torch.Tensor  # (B,) each transition's loss, unweighted: the TD loss, or C51's cross-entropy
    # (B,) what prioritized replay ranks the transition by: |TD error| (Schaul et al. 2016), not its Huber or squared
    # loss; with C51 the cross-entropy, i.e. per_sample (Hessel et al. 2018; Dopamine)
    error: torch.Tensor


def update(
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: ReplaySample,
    config: DQNConfig,
    weight: torch.Tensor | None = None,
) -> UpdateOut:
    """One gradient step on a replay batch. `weight` (B,) scales each transition's loss before the mean (the
    importance weights of prioritized replay, Schaul et al. 2016); None weighs them alike. Noisy nets draw
    new noise for both networks first, one draw for the whole step (Kaixhin's Rainbow)."""
    if config.noisy:
        reset_noise(q_network), reset_noise(target_network)
    support = q_network.support  # (atoms,), or None without C51
    with torch.no_grad():
        q_t_selector = q_network(batch.s_t) if config.double_dqn else None  # (B, A)
        if config.distributional:
            p_t_target = target_network.dist(batch.s_t).exp()  # (B, A, atoms)
            target = categorical_td_target(batch.r_t, batch.discount_t, p_t_target, support, q_t_selector)
        else:
            target = td_target(batch.r_t, batch.discount_t, target_network(batch.s_t), q_t_selector)  # (B,)
    if config.distributional:
        log_p_tm1 = q_network.dist(batch.s_tm1)  # (B, A, atoms)
        log_p_tm1_a = log_p_tm1[torch.arange(len(batch.a_tm1), device=log_p_tm1.device), batch.a_tm1]  # (B, atoms)
        per_sample = categorical_loss(log_p_tm1_a, target)  # (B,)
        q_tm1_a = (log_p_tm1_a.exp() * support).sum(dim=1)  # (B,)
        error = per_sample
    else:
        q_tm1_a = q_network(batch.s_tm1).gather(1, batch.a_tm1.unsqueeze(1)).squeeze(1)  # (B,)
        per_sample = td_loss(q_tm1_a, target, config.loss, reduction="none")  # (B,)
        error = (target - q_tm1_a).abs()  # (B,)
    loss = (per_sample if weight is None else weight * per_sample).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.max_grad_norm > 0:
        nn.utils.clip_grad_norm_(q_network.parameters(), config.max_grad_norm)
    optimizer.step()
    return UpdateOut(loss.detach(), q_tm1_a.detach().mean(), per_sample.detach(), error.detach())


def make_optimizer(q_network: nn.Module, config: DQNConfig) -> torch.optim.Adam:
    """Adam; the fused kernel does the whole update in one pass over the parameters."""
    return torch.optim.Adam(q_network.parameters(), lr=config.learning_rate, eps=config.adam_eps, fused=True)


def newest_frame(obs: np.ndarray | torch.Tensor, frame_stack: int) -> np.ndarray | torch.Tensor:
    """(N, 4, 84, 84) -> (N, 84, 84): the replay stores each frame once and rebuilds stacks."""
    return obs[:, -1] if frame_stack > 1 else obs


# ---------------------------------------------------------------------------------------------- training
def train(config: DQNConfig, run: Run) -> dict[str, Any]:
    device = run.device
    env = envs.make(config.env, config.num_envs, config.seed)
    eval_env = make_eval_env(config)
    obs_shape = env.single_observation_space.shape
    n_actions = int(env.single_action_space.n)
    frame_shape = obs_shape[1:] if env.frame_stack > 1 else obs_shape
    frame_dtype = torch.uint8 if env.single_observation_space.dtype == np.uint8 else torch.float32

    torch.manual_seed(config.seed)
    fresh = run.resume_from is None  # a resumed run takes every weight from its checkpoint
    q_network = make_q_network(config, obs_shape, n_actions, fresh).to(device)
    pick_threads(config.torch_threads, q_network)
    target_network = make_q_network(config, obs_shape, n_actions, fresh).to(device)
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)
    optimizer = make_optimizer(q_network, config)
    frame_bytes = FrameReplay.frame_bytes(config.buffer_size, config.num_envs, frame_shape, frame_dtype)
    free_bytes = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    storage = replay_device(config.replay_device, device, frame_bytes, free_bytes)  # samples come out on `device`
    layout = (config.buffer_size, config.num_envs, frame_shape, frame_dtype, env.frame_stack, config.n_step)
    if config.prioritized:
        priority = dict(alpha=config.priority_alpha, eps=config.priority_eps)
        replay = PrioritizedFrameReplay(*layout, config.gamma, storage, device, **priority)
    else:
        replay = FrameReplay(*layout, config.gamma, storage, device)
    act_rng = torch.Generator().manual_seed(config.seed)  # exploration
    sample_rng = torch.Generator().manual_seed(config.seed + 1)  # replay sampling (indices are drawn on the host)

    counters = Counters.restored(run.resume_from)
    if (ckpt := run.resume_from) is not None:  # restore everything that shapes the future of the run
        check_replay_priorities(config, ckpt.path / "replay")
        with restoring(ckpt):  # weights of another network, or a broken replay file: one error line
            q_network.load_state_dict(checkpoint.unprefixed("q", ckpt.tensors))
            target_network.load_state_dict(checkpoint.unprefixed("target", ckpt.tensors))
            optimizer.load_state_dict(ckpt.optimizer)
            if (ckpt.path / "replay").exists():  # a prioritized one with its priorities (PrioritizedFrameReplay.load)
                replay = type(replay).load(ckpt.path / "replay", storage, device)
        if config.prioritized:  # the config's exponent and eps (a --set on resume) apply to the coming updates
            replay.alpha, replay.eps = config.priority_alpha, config.priority_eps
        torch.set_rng_state(rng_from_json(ckpt.state["rng"]["torch"]))
        act_rng.set_state(rng_from_json(ckpt.state["rng"]["act"]))
        sample_rng.set_state(rng_from_json(ckpt.state["rng"]["sample"]))

    def save_checkpoint() -> None:
        tensors = {
            **checkpoint.prefixed("q", q_network.state_dict()),
            **checkpoint.prefixed("target", target_network.state_dict()),
        }
        state = {
            **counters.state(),
            "rng": {
                "torch": rng_to_json(torch.get_rng_state()),
                "act": rng_to_json(act_rng.get_state()),
                "sample": rng_to_json(sample_rng.get_state()),
            },
        }
        stored = replay if config.checkpoint_replay else None  # PrioritizedFrameReplay.save adds the priorities
        checkpoint.save(run.checkpoint_dir, counters.step, tensors, optimizer, state, stored, config.keep_checkpoints)

    def evaluate() -> float:
        def policy(o: np.ndarray) -> np.ndarray:
            return epsilon_greedy(q_network, torch.from_numpy(o).to(device), config.eval_epsilon, n_actions, eval_rng)

        eval_rng = torch.Generator().manual_seed(config.seed + counters.step)
        q_network.eval()  # noisy layers act with their mean weights, dropout is off
        try:
            weights = checkpoint.prefixed("q", q_network.state_dict())  # what load_network reads: no target network
            return evaluation_round(
                run, eval_env, policy, q_values(q_network, device), counters.step, counters.evals, weights
            )
        finally:
            q_network.train()

    evaluation = evaluate if eval_env is not None else None  # None: this process does not evaluate

    def scalars() -> dict[str, float]:
        out = {"charts/epsilon": epsilon, "charts/learning_rate": config.learning_rate}
        if config.prioritized:
            out["charts/priority_beta"] = beta_schedule(config.priority_beta0, counters.step, config.total_timesteps)
        if td_losses:  # one device sync per log, not per update
            out["losses/td_loss"] = torch.stack(td_losses).mean().item()
            out["losses/q_values"] = torch.stack(q_means).mean().item()
            td_losses.clear(), q_means.clear()
        return out

    # Envs restart at each (re)start; the seed depends on the step so a resumed run is reproducible.
    obs, _ = env.reset(seed=config.seed + counters.step)
    # Each obs crosses to the device once: acting reads it there, and so does a replay that lives there.
    obs_device = torch.from_numpy(obs).to(device)
    replay.add_first(newest_frame(obs_device if replay.device == device else obs, env.frame_stack))
    episodes = EpisodeStats(config.num_envs)
    next_is_first = np.zeros(config.num_envs, dtype=bool)
    fill_needed = min(config.learning_starts, config.buffer_size)
    td_losses: list[torch.Tensor] = []
    q_means: list[torch.Tensor] = []
    clock = Clock(counters.step)
    epsilon = config.start_e
    learn_start: tuple[int, float] | None = None  # (step, time) of the first update in this process

    while counters.step < config.total_timesteps and not run.stop_requested:
        # 1. act (epsilon-greedy on the device) and step every env once; noisy nets explore by their noise,
        # drawn anew for each step (Fortunato et al. 2018), with epsilon 0
        decay = config.exploration_fraction * config.total_timesteps
        epsilon = 0.0 if config.noisy else linear_schedule(config.start_e, config.end_e, decay, counters.step)
        if config.noisy:
            reset_noise(q_network)
        actions = epsilon_greedy(q_network, obs_device, epsilon, n_actions, act_rng)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        next_obs_device = torch.from_numpy(next_obs).to(device)
        prev_step = counters.step
        counters.step += config.num_envs

        # 2. log whole-game raw scores (a life loss is not an episode end)
        counters.log_games(run, episodes.update(reward, terminated, truncated))

        # 3. store: learning reward clipped, a life loss terminal for the TD target only (Nature protocol)
        r_learn = np.sign(reward) if config.clip_rewards else reward
        done_learn = terminated | (info["life_lost"] & config.terminal_on_life_loss)
        stored = next_obs_device if replay.device == device else next_obs
        replay.add(actions, r_learn, done_learn, truncated, newest_frame(stored, env.frame_stack), next_is_first)
        next_is_first = terminated | truncated  # NEXT_STEP autoreset: the next step returns a reset obs
        obs_device = next_obs_device

        # 4. learn: gradient_steps updates every train_frequency env steps (counted over all envs). Prioritized
        # replay (Schaul et al. 2016, Algorithm 1): draw by priority, weight each loss by its importance weight, then
        # give the drawn transitions their new errors as priorities (a device sync per update, as in Dopamine)
        if counters.step > config.learning_starts and len(replay) >= fill_needed:
            learn_start = learn_start or (prev_step, time.time())
            for _ in range(
                (counters.step // config.train_frequency - prev_step // config.train_frequency) * config.gradient_steps
            ):
                if config.prioritized:
                    beta = beta_schedule(config.priority_beta0, counters.step, config.total_timesteps)
                    drawn = replay.sample(config.batch_size, sample_rng, beta)
                    out = update(q_network, target_network, optimizer, drawn.sample, config, drawn.weight)
                    replay.update_priorities(drawn.index, out.error)
                else:
                    batch = replay.sample(config.batch_size, sample_rng)
                    out = update(q_network, target_network, optimizer, batch, config)
                counters.updates += 1
                td_losses.append(out.loss)
                q_means.append(out.q_mean)

            # 5. target network: hard copy (tau = 1) or Polyak averaging, every target_network_frequency steps
            if crossed(counters.step, prev_step, config.target_network_frequency):
                with torch.no_grad():
                    torch._foreach_lerp_(list(target_network.parameters()), list(q_network.parameters()), config.tau)

        # 6. logs, progress, evaluation, checkpoints (counters crossing a multiple, so num_envs > 1 works)
        end_of_iteration(run, counters, clock, prev_step, config, scalars, evaluation, save_checkpoint)

    end_time = time.time()
    summary = finish(run, counters, clock, config.total_timesteps, evaluation, save_checkpoint, (env, eval_env))
    # steps/s once learning runs (what the benchmark compares; warm-up steps are cheaper)
    summary["train_sps"] = (
        (counters.step - learn_start[0]) / max(end_time - learn_start[1], 1e-9) if learn_start else None
    )
    return summary


def check_replay_priorities(config: DQNConfig, folder: pathlib.Path) -> None:
    """A prioritized run resumes only from a replay saved with its priorities: one saved by a run with
    prioritized=false has none to restore, and is refused with one line rather than given made-up ones."""
    if config.prioritized and (folder / "meta.json").exists() and not (folder / "priority.json").exists():
        raise ConfigError(
            f"config key 'prioritized' is true but the checkpoint's replay {str(folder)!r} was saved without "
            "priorities (by a run with prioritized=false): resume with --set prioritized=false"
        )


def q_values(q_network: nn.Module, device: torch.device):
    """Q(s, .) as a numpy function: obs (N, ...) -> (N, A), for the overlay of `rl watch` and training videos."""

    def scores(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return q_network(torch.from_numpy(obs).to(device)).float().cpu().numpy()

    return scores


def load_network(config: DQNConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device) -> QNetwork:
    """The saved Q-network in eval mode, as it plays (also what `rl export` writes out)."""
    config = replace(config, compile=False)  # a few evaluation games do not repay compiling
    q_network = make_q_network(
        config, env.single_observation_space.shape, int(env.single_action_space.n), load_init=False
    ).to(device)
    q_network.load_state_dict(checkpoint.unprefixed("q", ckpt.tensors))
    return q_network.eval()  # noisy layers act with their mean weights, dropout is off


def load_policy(config: DQNConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device, epsilon: float, seed: int):
    """The saved Q-network as an epsilon-greedy policy over numpy observations (for `rl eval`)."""
    q_network = load_network(config, ckpt, env, device)
    rng = torch.Generator().manual_seed(seed)
    n_actions = int(env.single_action_space.n)
    return lambda o: epsilon_greedy(q_network, torch.from_numpy(o).to(device), epsilon, n_actions, rng)


def action_scores(config: DQNConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device):
    """The saved Q-values as a numpy function obs (N, ...) -> (N, A) (the overlay of `rl watch`)."""
    return q_values(load_network(config, ckpt, env, device), device)
