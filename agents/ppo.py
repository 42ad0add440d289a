"""Proximal Policy Optimization (Schulman et al. 2017), read top to bottom in CleanRL's `ppo_atari.py` order.

Clipped surrogate objective with an optional clip schedule, clipped value loss, entropy bonus,
per-minibatch advantage normalization, orthogonal init, learning-rate annealing, gradient clipping,
optional KL early stop, minibatch epochs. A2C (Mnih et al. 2016) is the special case of one epoch over
one minibatch of a short rollout without clipping (agents/a2c.py): the ratio is then exactly 1 and
the surrogate's gradient is the policy gradient A * grad log pi.

Rollouts, GAE and the masking of autoreset steps live in agents/rollout.py; action masks
(`info["action_mask"]`) enter every policy through `rollout.masked_logits`; the losses and schedules are
agents/pg.py's, shared with the recurrent sibling agents/ppo_lstm.py (agents/registry.py picks it for
encoder.name=lstm). An env family's own needs (Go's league and matches) come in through agents/hooks.py.

Data-parallel over K ranks (torchrun, agents/distributed.py): each rank steps its own num_envs envs
(seeds offset by rank * num_envs), so one iteration collects K x num_envs x num_steps transitions and
global_step counts them all. Each rank splits its own part into num_minibatches; DDP averages the
gradients, and advantages are normalized with statistics over all ranks, so a step on K equal parts
is the step one process takes on their union. Rank 0 logs, evaluates and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

import envs
from agents import checkpoint, distributed, hooks
from agents.accel import autocast, channels_last, compile_in_place, network_amp, nhwc, pick_threads
from agents.checkpoint import rng_from_json, rng_to_json
from agents.config import ConfigError, EnvRunFields, GoConfig, option
from agents.encoders import encoder_from_config, freeze, freeze_batch_norm_stats, load_encoder
from agents.eval_round import evaluation_round
from agents.pg import (
    action_mask_of,
    anneal,
    logprob_and_entropy,
    make_optimizer,
    orthogonal_init,
    ppo_loss,
    store_rewards,
)
from agents.rollout import Rollout, gae, make_rollout, masked_logits, sample_actions
from agents.run import Clock, Counters, Run, end_of_iteration, finish, make_eval_env, restoring
from envs.episodes import EpisodeStats


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class PPOConfig(EnvRunFields):
    """Proximal Policy Optimization (Schulman et al. 2017) in CleanRL's `ppo.py` order and names.

    Defaults are CleanRL's classic-control values; configs/ppo/atari.yaml holds the CleanRL/rl-zoo Atari
    values. A rollout is num_envs x num_steps env steps; each update runs update_epochs passes
    over it in num_minibatches minibatches. All counts are global env steps (summed over envs).
    """

    num_envs: int = option(4, positive=True)
    # --- learning
    learning_rate: float = option(2.5e-4, positive=True)
    anneal_lr: bool = True  # linear decay of the learning rate to 0 over the run
    optimizer: str = option("adam", choices=("adam", "rmsprop"))  # rmsprop: A2C's (Mnih et al. 2016)
    adam_eps: float = 1e-5  # epsilon of Adam or RMSprop
    rmsprop_alpha: float = option(0.99, low=0, high=1)  # RMSprop smoothing constant (rmsprop only)
    num_steps: int = option(128, positive=True)  # env steps per env per rollout
    # GAE (Schulman et al. 2016); 1.0 gives discounted returns minus the value
    gae_lambda: float = option(0.95, low=0, high=1)
    num_minibatches: int = option(4, positive=True)
    update_epochs: int = option(4, positive=True)
    norm_adv: bool = True  # normalize advantages per minibatch
    clip_coef: float = 0.2  # surrogate clipping epsilon; 0 disables clipping (A2C)
    anneal_clip: bool = False  # decay clip_coef linearly to 0 with the learning rate (the paper's Atari setting)
    clip_vloss: bool = True  # clip the value update around the rollout's values (CleanRL, baselines)
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5  # 0 disables gradient clipping
    target_kl: float = 0.0  # stop the epochs early once the approximate KL passes this; 0 disables
    shared_encoder: bool = False  # one encoder for policy and value (CleanRL's Atari agent); False: one each
    # linear: one layer on the feature vector; alphazero: AlphaGo Zero's conv heads (needs encoder resnet_tower)
    heads: str = option("linear", choices=("linear", "alphazero"))
    go: GoConfig = field(default_factory=GoConfig)  # Go envs only
    # --- evaluation, logging
    # probability of a uniformly random legal action; else the policy acts (see ppo.load_policy)
    eval_epsilon: float = option(0.0, low=0, high=1)
    eval_greedy: bool = False  # the policy acts by its most likely action instead of sampling
    # Go, at play time: the network averaged over the board's 8 symmetries (rl eval --symmetries)
    eval_symmetries: bool = False
    log_frequency: int = option(1_000, positive=True)

    def _rules(self) -> None:
        if self.encoder.name == "lstm" and (self.amp == "bf16" or self.compile):
            raise ConfigError(
                "config keys 'amp' and 'compile' apply to feed-forward PPO: recurrent PPO "
                "(encoder.name=lstm) runs fp32 and eager; set amp=none compile=false"
            )
        if self.heads == "alphazero" and self.encoder.name != "resnet_tower":
            raise ConfigError(
                f"config key 'heads' is 'alphazero', which reads the per-point features of "
                f"encoder.name=resnet_tower, not {self.encoder.name}: "
                "set heads=linear or encoder.name=resnet_tower"
            )
        super()._rules()


Config = PPOConfig  # the registry's protocol (agents/registry.py): every algorithm names its config class


# ---------------------------------------------------------------------------------------------- network
class ActorCritic(nn.Module):
    """Policy logits and state value. One encoder shared by both heads (CleanRL's Atari agent), or one
    each (its classic-control agent: the value's gradients then never reach the policy's features).
    heads="linear": one linear layer per head on the encoder's feature vector (CleanRL); "alphazero": BoardHead
    on the per-point features of a board encoder (resnet_tower's forward_spatial). amp="bf16" runs the forward
    passes under bf16 autocast; logits and values come out fp32 either way."""

    def __init__(
        self,
        actor_encoder: nn.Module,
        critic_encoder: nn.Module | None,
        n_actions: int,
        amp: str = "none",
        heads: str = "linear",
    ):
        super().__init__()
        self.amp, self.spatial = amp, heads == "alphazero"
        self.encoder = actor_encoder
        self.critic_encoder = critic_encoder  # None: shared
        if self.spatial:
            from agents.go.heads import BoardHead

            if not hasattr(actor_encoder, "forward_spatial"):
                raise ConfigError(
                    "heads=alphazero reads per-point features: it needs encoder.name=resnet_tower (or heads=linear)"
                )
            self.actor = BoardHead(actor_encoder.spatial_shape, 2, n_actions)
            self.critic = BoardHead(actor_encoder.spatial_shape, 1, 1, hidden=256)
        else:
            self.actor = nn.Linear(actor_encoder.output_dim, n_actions)
            self.critic = nn.Linear((critic_encoder or actor_encoder).output_dim, 1)

    def _features(self, encoder: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return encoder.forward_spatial(obs) if self.spatial else encoder(obs)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = nhwc(obs)
        with autocast(self.amp, obs.device.type):
            h = self._features(self.encoder, obs)  # (B, features) or (B, C, H, W)
            h_critic = h if self.critic_encoder is None else self._features(self.critic_encoder, obs)
            logits, value = self.actor(h), self.critic(h_critic).squeeze(1)  # (B, A), (B,)
        return logits.float(), value.float()

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy's logits alone (B, A): league opponents (agents/go/league.py) need no value."""
        return self.actor(self._features(self.encoder, nhwc(obs)))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        obs = nhwc(obs)
        with autocast(self.amp, obs.device.type):
            value = self.critic(self._features(self.critic_encoder or self.encoder, obs)).squeeze(1)
        return value.float()


def make_agent(config: PPOConfig, obs_shape: tuple[int, ...], n_actions: int, load_init: bool = True) -> ActorCritic:
    """The actor-critic a config names. Orthogonal init first, then `encoder.init` weights (supervised
    pretraining, another run) into every encoder, then `encoder.freeze`; load_init=False when a checkpoint's
    weights replace them anyway. Convolutions get channels-last weights, so oneDNN's CPU kernels run in NHWC
    without converting layouts (scripts/bench_ppo.py measures it). config.amp and
    config.compile as in agents/accel.py (compiled in place: the state_dict is the eager one's)."""
    if config.encoder.name == "lstm":
        raise ConfigError(
            "encoder.name=lstm is recurrent PPO (agents/ppo_lstm.py, which agents/registry.py picks for it)"
        )
    encoder = lambda: encoder_from_config(replace(config.encoder, init="", freeze=False), obs_shape)  # noqa: E731
    actor, critic = encoder(), None if config.shared_encoder else encoder()
    agent = orthogonal_init(ActorCritic(actor, critic, n_actions, network_amp(config.amp, actor), config.heads))
    for body in (agent.encoder, agent.critic_encoder):
        if body is not None and config.encoder.init and load_init:
            load_encoder(
                body, config.encoder.init, f"this {config.encoder.name} encoder for observations {tuple(obs_shape)}"
            )
        if body is not None and config.encoder.freeze:
            freeze(body)
    if not getattr(config, "batch_statistics", False):
        freeze_batch_norm_stats(agent)
    return compile_in_place(channels_last(agent, obs_shape), config.compile)


# ---------------------------------------------------------------------------------------------- maths
def update(
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    clip_coef: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """update_epochs passes over the rollout's valid transitions in num_minibatches shuffled minibatches;
    returns the last minibatch's statistics (CleanRL logs those) plus the explained variance.
    Under DDP a minibatch is the union of every rank's minibatch (gradients averaged over ranks: the
    union's gradient when ranks hold equally many transitions), normalized as one (distributed.normalize)."""
    valid = rollout.valid.reshape(-1)  # (T*N,) autoreset steps are no transitions
    obs = rollout.obs.reshape(-1, *rollout.obs.shape[2:])[valid]  # (B, *obs_shape)
    actions, old_logprob, old_value = (
        x.reshape(-1)[valid] for x in (rollout.actions, rollout.logprobs, rollout.values)
    )
    b_advantages, b_returns = advantages.reshape(-1)[valid], returns.reshape(-1)[valid]  # (B,)
    masks = (
        None
        if rollout.action_masks is None
        else rollout.action_masks.reshape(-1, rollout.action_masks.shape[-1])[valid]
    )
    stats: dict[str, torch.Tensor] = {}
    for _ in range(config.update_epochs):
        order = torch.randperm(len(actions), generator=generator).to(obs.device)
        for mb in torch.tensor_split(order, config.num_minibatches):
            logits, new_value = agent(obs[mb])
            new_logprob, entropy = logprob_and_entropy(
                masked_logits(logits, None if masks is None else masks[mb]), actions[mb]
            )
            mb_advantages = b_advantages[mb]
            if config.norm_adv and len(mb) > 1:
                mb_advantages = distributed.normalize(mb_advantages)
            loss, stats = ppo_loss(
                new_logprob,
                old_logprob[mb],
                mb_advantages,
                entropy,
                new_value,
                old_value[mb],
                b_returns[mb],
                clip_coef,
                config.clip_vloss,
                config.ent_coef,
                config.vf_coef,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            optimizer.step()
        if config.target_kl > 0 and distributed.mean(stats["losses/approx_kl"]).item() > config.target_kl:
            break
    out = {k: v.item() for k, v in stats.items()}
    var_returns = b_returns.var().item()  # 1 - Var(R - V) / Var(R): how much of the return the critic explains
    out["losses/explained_variance"] = (
        float("nan") if var_returns == 0 else 1 - (b_returns - old_value).var().item() / var_returns
    )
    return out


# ---------------------------------------------------------------------------------------------- training
def train(config: PPOConfig, run: Run) -> dict[str, Any]:
    device = run.device
    world, env_seed = distributed.world_size(), config.seed + distributed.rank() * config.num_envs
    # the env family's own needs (Go: the run's komi, a league of past versions to play, matches at evaluation)
    family = hooks.for_config(config, config.num_envs, env_seed, device)
    env = envs.make(config.env, config.num_envs, env_seed, **family.env_options(training=True))
    eval_env = make_eval_env(config, distributed.is_main(), **family.env_options())
    obs_shape = env.single_observation_space.shape
    n_actions = int(env.single_action_space.n)
    obs_dtype = torch.uint8 if env.single_observation_space.dtype == np.uint8 else torch.float32
    batch_size = config.num_envs * config.num_steps * world  # over all ranks

    torch.manual_seed(config.seed)
    agent = make_agent(config, obs_shape, n_actions, load_init=run.resume_from is None).to(device)
    pick_threads(config.torch_threads, agent)
    optimizer = make_optimizer(agent, config)
    rng = torch.Generator().manual_seed(env_seed)  # action sampling and minibatch order

    counters = Counters.restored(run.resume_from)
    if (ckpt := run.resume_from) is not None:
        with restoring(ckpt):
            agent.load_state_dict(checkpoint.unprefixed("agent", ckpt.tensors))
            optimizer.load_state_dict(ckpt.optimizer)
        rngs = ckpt.state.get("rngs", [ckpt.state["rng"]])  # one per rank; a different K: rank 0's, then reseeded
        if len(rngs) == world:
            rng.set_state(rng_from_json(rngs[distributed.rank()]))
        else:
            rng.manual_seed(env_seed + counters.step)
    family.start(agent, None if ckpt is None else ckpt.state, None if ckpt is None else ckpt.tensors, counters.updates)
    learner = distributed.wrap(agent, device)  # the forward pass that trains; `agent` acts, evaluates and is saved

    def save_checkpoint() -> None:
        rngs = distributed.all_gather_object(rng_to_json(rng.get_state()))
        family_state, family_tensors = family.checkpoint()
        state = {**counters.state(), "rng": rngs[0], **({"rngs": rngs} if world > 1 else {}), **family_state}
        if distributed.is_main():
            checkpoint.save(
                run.checkpoint_dir,
                counters.step,
                checkpoint.prefixed("agent", agent.state_dict()) | family_tensors,
                optimizer,
                state,
                None,
                config.keep_checkpoints,
            )

    def evaluate() -> float:
        policy = make_policy(agent, device, config.eval_epsilon, config.eval_greedy, config.seed + counters.step)
        weights = checkpoint.prefixed("agent", agent.state_dict())  # what load_network reads: no league, optimizer
        return evaluation_round(
            run, eval_env, policy, probabilities(agent, device), counters.step, counters.evals, weights
        )

    evaluation = evaluate if eval_env is not None else None  # None: this process does not evaluate

    # Envs restart at each (re)start, seeded by the step, so a resumed run is reproducible.
    next_obs_np, info = env.reset(seed=env_seed + counters.step)
    next_obs = torch.as_tensor(next_obs_np, device=device)
    next_mask = action_mask_of(info, device)
    rollout = make_rollout(
        config.num_steps, config.num_envs, obs_shape, obs_dtype, n_actions, next_mask is not None, device
    )
    next_valid = torch.ones(config.num_envs, dtype=torch.bool, device=device)  # False: the next step is an autoreset
    episodes = EpisodeStats(config.num_envs)
    clock = Clock(counters.step)

    while counters.step < config.total_timesteps and not distributed.any_rank(run.stop_requested):
        # 1. anneal the learning rate (and the clip range) linearly to 0 over the run (CleanRL)
        lr, clip_coef = anneal(config, optimizer, counters.step)

        # 2. collect num_steps x num_envs transitions with the current policy
        for t in range(config.num_steps):
            rollout.obs[t] = next_obs
            rollout.valid[t] = next_valid
            if next_mask is not None:
                rollout.action_masks[t] = next_mask
            with torch.inference_mode():
                logits, value = agent(next_obs)
                action, logprob = sample_actions(masked_logits(logits, next_mask), rng)
            rollout.actions[t], rollout.logprobs[t], rollout.values[t] = action, logprob, value
            next_obs_np, reward, terminated, truncated, info = env.step(action.cpu().numpy())
            counters.step += config.num_envs * world
            counters.log_games(run, episodes.update(reward, terminated, truncated))
            store_rewards(rollout, t, reward, terminated, truncated, info, config)
            next_valid = torch.as_tensor(~(terminated | truncated), device=device)
            next_obs = torch.as_tensor(next_obs_np, device=device)
            next_mask = action_mask_of(info, device)

        # 3. advantages (GAE) and returns; the obs after the last step bootstraps the rollout's cut
        with torch.inference_mode():
            next_value = agent.value(next_obs)  # (N,)
        advantages = gae(
            rollout.rewards,
            rollout.values,
            next_value,
            rollout.terminated,
            rollout.episode_end,
            config.gamma,
            config.gae_lambda,
        )
        returns = advantages + rollout.values

        # 4. optimize the policy and value network
        stats = update(learner, optimizer, rollout, advantages, returns, config, clip_coef, rng)
        counters.updates += 1
        stats |= family.after_update(agent, counters.updates)
        prev_step = counters.step - batch_size

        # 5. logs, progress, evaluation, checkpoints (counters crossing a multiple of their frequency)
        logged = {**stats, "charts/learning_rate": lr, "charts/clip_coef": clip_coef}
        end_of_iteration(run, counters, clock, prev_step, config, lambda: logged, evaluation, save_checkpoint)

    return finish(run, counters, clock, config.total_timesteps, evaluation, save_checkpoint, (env, eval_env))


# ---------------------------------------------------------------------------------------------- acting
def make_policy(agent: ActorCritic, device: torch.device, epsilon: float, greedy: bool, seed: int):
    """numpy obs (N, ...) -> actions (N,): with probability epsilon a uniformly random legal action,
    else a sample from pi(.|s) (the policy PPO learned and is scored by during training), or its most
    likely action when `greedy`. `action_mask` (N, A) bool, when given, is applied to both."""
    rng = torch.Generator().manual_seed(seed)

    def policy(obs: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        mask = None if action_mask is None else torch.as_tensor(action_mask, dtype=torch.bool, device=device)
        with torch.inference_mode():
            logits = masked_logits(agent(torch.as_tensor(obs, device=device))[0], mask)
            actions = logits.argmax(1) if greedy else sample_actions(logits, rng)[0]
            if epsilon > 0:
                uniform = torch.zeros_like(logits) if mask is None else masked_logits(torch.zeros_like(logits), mask)
                explore = torch.rand(len(actions), generator=rng).to(device) < epsilon
                actions = torch.where(explore, sample_actions(uniform, rng)[0], actions)
        return actions.cpu().numpy()

    return policy


def load_network(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device) -> nn.Module:
    """The saved actor-critic in eval mode, as it plays (the env family may wrap it: Go's 8-symmetry average when
    config.eval_symmetries). Also what a Go search reads (agents/go/search.py)."""
    config = replace(config, compile=False)  # a few evaluation games do not repay compiling
    agent = make_agent(config, env.single_observation_space.shape, int(env.single_action_space.n), load_init=False).to(
        device
    )
    agent.load_state_dict(checkpoint.unprefixed("agent", ckpt.tensors))
    return hooks.for_config(config).playing_network(agent.eval(), env, config)


def load_policy(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device, epsilon: float, seed: int):
    """The saved policy for `rl eval`: it samples from pi(.|s) (config.eval_greedy: its argmax), and
    `epsilon` > 0 mixes in uniformly random legal actions, as for DQN. Default eval_epsilon is 0."""
    return make_policy(load_network(config, ckpt, env, device), device, epsilon, config.eval_greedy, seed)


def action_scores(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device):
    """numpy obs (N, ...) -> action probabilities pi(.|s) (N, A), for overlays in `rl watch`."""
    return probabilities(load_network(config, ckpt, env, device), device)


def probabilities(agent: ActorCritic, device: torch.device):
    """pi(.|s) as a numpy function: obs (N, ...) -> (N, A), for overlays and training videos."""

    def scores(obs: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        mask = None if action_mask is None else torch.as_tensor(action_mask, dtype=torch.bool, device=device)
        with torch.inference_mode():
            return torch.softmax(masked_logits(agent(torch.as_tensor(obs, device=device))[0], mask), 1).cpu().numpy()

    return scores
