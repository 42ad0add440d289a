"""Proximal Policy Optimization (Schulman et al. 2017), read top to bottom in CleanRL's `ppo_atari.py` order.

Clipped surrogate objective with an optional clip schedule, clipped value loss, entropy bonus,
per-minibatch advantage normalization, orthogonal init, learning-rate annealing, gradient clipping,
optional KL early stop, minibatch epochs. A2C (Mnih et al. 2016) is the special case of one epoch over
one minibatch of a short rollout without clipping (agents/a2c.py): the ratio is then exactly 1 and
the surrogate's gradient is the policy gradient A * grad log pi.

Rollouts, GAE and the masking of autoreset steps live in agents/rollout.py; action masks
(`info["action_mask"]`) enter every policy through `rollout.masked_logits`. With `encoder.name=lstm`,
train, load_policy and action_scores hand over to the recurrent sibling agents/ppo_lstm.py.

Data-parallel over K ranks (torchrun, agents/distributed.py): each rank steps its own num_envs envs
(seeds offset by rank * num_envs), so one iteration collects K x num_envs x num_steps transitions and
global_step counts them all. Each rank splits its own part into num_minibatches; DDP averages the
gradients, and advantages are normalized with statistics over all ranks, so a step on K equal parts
is the step one process takes on their union. Rank 0 logs, evaluates and checkpoints.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

import envs
from agents import checkpoint, distributed
from agents.accel import autocast, compile_in_place
from agents.checkpoint import rng_from_json, rng_to_json
from agents.config import ConfigError, PPOConfig
from agents.encoders import encoder_from_config, freeze, freeze_batch_norm_stats, load_encoder
from agents.evaluate import evaluation_round
from agents.league import League, env_options
from agents.rollout import Rollout, gae, make_rollout, masked_logits, sample_actions
from agents.run import Run
from envs.episodes import EpisodeStats


# ---------------------------------------------------------------------------------------------- network
class BoardHead(nn.Module):
    """AlphaGo Zero's heads (Silver et al. 2017, Methods) on a tower's per-point features (B, C, H, W): a 1x1
    convolution to `filters` planes -> batch norm -> ReLU -> linear to `out` (the policy: 2 planes, N*N+1 logits),
    or -> linear to `hidden` -> ReLU -> linear to `out` (the value: 1 plane, 256 hidden, 1 output). The 1x1
    convolution keeps each point's own features, so the linear layer reads 2*N*N numbers instead of C*N*N."""

    def __init__(self, spatial_shape: tuple[int, int, int], filters: int, out: int, hidden: int = 0):
        super().__init__()
        channels, height, width = spatial_shape
        self.conv, self.bn = nn.Conv2d(channels, filters, 1, bias=False), nn.BatchNorm2d(filters)
        inputs = filters * height * width
        self.fc = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, out)) if hidden else nn.Linear(inputs, out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(h))).flatten(1))


class ActorCritic(nn.Module):
    """Policy logits and state value. One encoder shared by both heads (CleanRL's Atari agent), or one
    each (its classic-control agent: the value's gradients then never reach the policy's features).
    heads="linear": one linear layer per head on the encoder's feature vector (CleanRL); "alphazero": BoardHead
    on the per-point features of a board encoder (resnet_tower's forward_spatial). amp="bf16" runs the forward
    passes under bf16 autocast; logits and values come out fp32 either way."""

    def __init__(self, actor_encoder: nn.Module, critic_encoder: nn.Module | None, n_actions: int, amp: str = "none",
                 heads: str = "linear"):
        super().__init__()
        self.amp, self.spatial = amp, heads == "alphazero"
        self.encoder = actor_encoder
        self.critic_encoder = critic_encoder  # None: shared
        if self.spatial:
            if not hasattr(actor_encoder, "forward_spatial"):
                raise ConfigError("heads=alphazero reads per-point features: it needs encoder.name=resnet_tower (or heads=linear)")
            self.actor = BoardHead(actor_encoder.spatial_shape, 2, n_actions)
            self.critic = BoardHead(actor_encoder.spatial_shape, 1, 1, hidden=256)
        else:
            self.actor = nn.Linear(actor_encoder.output_dim, n_actions)
            self.critic = nn.Linear((critic_encoder or actor_encoder).output_dim, 1)

    def _features(self, encoder: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return encoder.forward_spatial(obs) if self.spatial else encoder(obs)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = _nhwc(obs)
        with autocast(self.amp, obs.device.type):
            h = self._features(self.encoder, obs)  # (B, features) or (B, C, H, W)
            h_critic = h if self.critic_encoder is None else self._features(self.critic_encoder, obs)
            logits, value = self.actor(h), self.critic(h_critic).squeeze(1)  # (B, A), (B,)
        return logits.float(), value.float()

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy's logits alone (B, A): league opponents (agents/league.py) need no value."""
        return self.actor(self._features(self.encoder, _nhwc(obs)))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        obs = _nhwc(obs)
        with autocast(self.amp, obs.device.type):
            value = self.critic(self._features(self.critic_encoder or self.encoder, obs)).squeeze(1)
        return value.float()


def _nhwc(obs: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) laid out channels-last, as the convolutions' weights are (see make_agent)."""
    return obs.contiguous(memory_format=torch.channels_last) if obs.dim() == 4 else obs


def orthogonal_init(net: ActorCritic) -> ActorCritic:
    """CleanRL's layer_init: orthogonal weights with gain sqrt(2) in the bodies, 0.01 on the policy head
    (near-uniform first policy) and 1 on the value head, biases 0 (Andrychowicz et al. 2021, sec. 3.2)."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(module.weight, math.sqrt(2))
            if module.bias is not None:  # convolutions followed by batch norm have none
                nn.init.zeros_(module.bias)
    nn.init.orthogonal_(_last_linear(net.actor).weight, 0.01)
    nn.init.orthogonal_(_last_linear(net.critic).weight, 1.0)
    return net


def _last_linear(head: nn.Module) -> nn.Linear:
    return [m for m in head.modules() if isinstance(m, nn.Linear)][-1]


def make_agent(config: PPOConfig, obs_shape: tuple[int, ...], n_actions: int, load_init: bool = True) -> ActorCritic:
    """The actor-critic a config names. Orthogonal init first, then `encoder.init` weights (supervised
    pretraining, another run) into every encoder, then `encoder.freeze`; load_init=False when a checkpoint's
    weights replace them anyway. Convolutions get channels-last weights: oneDNN's CPU kernels then run in
    NHWC, ~30% faster a PPO minibatch step on the Nature CNN here (scripts/bench_ppo.py). config.amp and
    config.compile as in agents/accel.py (compiled in place: the state_dict is the eager one's)."""
    encoder = lambda: encoder_from_config(replace(config.encoder, init="", freeze=False), obs_shape)  # noqa: E731
    agent = orthogonal_init(ActorCritic(encoder(), None if config.shared_encoder else encoder(), n_actions, config.amp,
                                        config.heads))
    for body in (agent.encoder, agent.critic_encoder):
        if body is not None and config.encoder.init and load_init:
            load_encoder(body, config.encoder.init, f"this {config.encoder.name} encoder for observations {tuple(obs_shape)}")
        if body is not None and config.encoder.freeze:
            freeze(body)
    freeze_batch_norm_stats(agent)
    agent = agent.to(memory_format=torch.channels_last) if len(obs_shape) == 3 else agent
    return compile_in_place(agent, config.compile)


def make_optimizer(agent: nn.Module, config: PPOConfig) -> torch.optim.Optimizer:
    """Adam (PPO) or RMSprop (A2C, Mnih et al. 2016); foreach kernels, one pass over all parameters."""
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(agent.parameters(), lr=config.learning_rate, alpha=config.rmsprop_alpha,
                                   eps=config.adam_eps, foreach=True)
    return torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=config.adam_eps, fused=True)


# ---------------------------------------------------------------------------------------------- maths
def logprob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a|s) and H(pi(.|s)) = -sum_a p log p (masked actions contribute 0 * -1e9 = 0).
    Shapes: logits (B, A), actions (B,) -> (B,), (B,)."""
    logp = torch.log_softmax(logits, dim=1)  # (B, A)
    return logp.gather(1, actions.unsqueeze(1)).squeeze(1), -(logp.exp() * logp).sum(1)


def ppo_loss(new_logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor, entropy: torch.Tensor,
             new_value: torch.Tensor, old_value: torch.Tensor, returns: torch.Tensor, clip_coef: float,
             clip_vloss: bool, ent_coef: float, vf_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = L_clip - ent_coef * H + vf_coef * L_V (Schulman et al. 2017, eq. 7 and 9), as minimized.

    L_clip = mean(max(-A r, -A clip(r, 1 - eps, 1 + eps))) with r = pi/pi_old; eps = clip_coef, and
    clip_coef = 0 means no clipping (A2C: -A r, whose gradient at r = 1 is -A grad log pi).
    L_V = 0.5 mean((V - R)^2), or with clip_vloss the max of that and the error of the old value moved
    at most clip_coef (CleanRL, OpenAI baselines). Also returns detached statistics: approx_kl is
    Schulman's unbiased estimator mean((r - 1) - log r), clipfrac the share of ratios outside 1 +- eps.
    Shapes: every argument (B,) -> scalar loss.
    """
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    if clip_coef > 0:
        policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    else:
        policy_loss = (-advantages * ratio).mean()
    value_loss = (new_value - returns) ** 2
    if clip_vloss and clip_coef > 0:
        clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        value_loss = torch.max(value_loss, (clipped - returns) ** 2)
    value_loss = 0.5 * value_loss.mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
    with torch.no_grad():
        stats = {"losses/policy_loss": policy_loss.detach(), "losses/value_loss": value_loss.detach(),
                 "losses/entropy": entropy_mean.detach(), "losses/approx_kl": ((ratio - 1) - log_ratio).mean(),
                 "losses/clipfrac": ((ratio - 1).abs() > clip_coef).float().mean() if clip_coef > 0 else torch.zeros(())}
    return loss, stats


def anneal(config: PPOConfig, optimizer: torch.optim.Optimizer, global_step: int) -> tuple[float, float]:
    """The learning rate (set in `optimizer`) and clip range at `global_step`: linear to 0 over the run when
    anneal_lr / anneal_clip (CleanRL; the original paper's Atari schedule), else constant."""
    frac = 1.0 - global_step / config.total_timesteps
    lr = config.learning_rate * frac if config.anneal_lr else config.learning_rate
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr, config.clip_coef * frac if config.anneal_clip else config.clip_coef


def update(agent: ActorCritic, optimizer: torch.optim.Optimizer, rollout: Rollout, advantages: torch.Tensor,
           returns: torch.Tensor, config: PPOConfig, clip_coef: float, generator: torch.Generator) -> dict[str, float]:
    """update_epochs passes over the rollout's valid transitions in num_minibatches shuffled minibatches;
    returns the last minibatch's statistics (CleanRL logs those) plus the explained variance.
    Under DDP a minibatch is the union of every rank's minibatch (gradients averaged over ranks: the
    union's gradient when ranks hold equally many transitions), normalized as one (distributed.normalize)."""
    valid = rollout.valid.reshape(-1)  # (T*N,) autoreset steps are no transitions
    obs = rollout.obs.reshape(-1, *rollout.obs.shape[2:])[valid]  # (B, *obs_shape)
    actions, old_logprob, old_value = (x.reshape(-1)[valid] for x in (rollout.actions, rollout.logprobs, rollout.values))
    b_advantages, b_returns = advantages.reshape(-1)[valid], returns.reshape(-1)[valid]  # (B,)
    masks = None if rollout.action_masks is None else rollout.action_masks.reshape(-1, rollout.action_masks.shape[-1])[valid]
    stats: dict[str, torch.Tensor] = {}
    for _ in range(config.update_epochs):
        order = torch.randperm(len(actions), generator=generator).to(obs.device)
        for mb in torch.tensor_split(order, config.num_minibatches):
            logits, new_value = agent(obs[mb])
            new_logprob, entropy = logprob_and_entropy(masked_logits(logits, None if masks is None else masks[mb]), actions[mb])
            mb_advantages = b_advantages[mb]
            if config.norm_adv and len(mb) > 1:
                mb_advantages = distributed.normalize(mb_advantages)
            loss, stats = ppo_loss(new_logprob, old_logprob[mb], mb_advantages, entropy, new_value, old_value[mb],
                                   b_returns[mb], clip_coef, config.clip_vloss, config.ent_coef, config.vf_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            optimizer.step()
        if config.target_kl > 0 and distributed.mean(stats["losses/approx_kl"]).item() > config.target_kl:
            break
    out = {k: v.item() for k, v in stats.items()}
    var_returns = b_returns.var().item()  # 1 - Var(R - V) / Var(R): how much of the return the critic explains
    out["losses/explained_variance"] = float("nan") if var_returns == 0 else 1 - (b_returns - old_value).var().item() / var_returns
    return out


def action_mask_of(info: dict[str, Any], device: torch.device) -> torch.Tensor | None:
    """The env's legal actions (N, A) bool, when it has any illegal ones (contract: info["action_mask"])."""
    mask = info.get("action_mask")
    return None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool), device=device)


# ---------------------------------------------------------------------------------------------- training
def train(config: PPOConfig, run: Run) -> dict[str, Any]:
    if config.encoder.name == "lstm":
        from agents import ppo_lstm

        if distributed.world_size() > 1:
            raise ConfigError("recurrent PPO (encoder.name=lstm) runs in one process: drop torchrun / --nproc")
        return ppo_lstm.train(config, run)
    device = run.device
    world, env_seed = distributed.world_size(), config.seed + distributed.rank() * config.num_envs
    # Go with go.self_play: the opponents are past versions of this agent (agents/league.py), colours alternate
    go_self_play = envs.family(config.env) == "go" and config.go.self_play
    league = League(config.num_envs, config.go.league_size, config.go.latest_prob, env_seed, device,
                    config.go.anchor_prob) if go_self_play else None
    env = envs.make(config.env, config.num_envs, env_seed, **env_options(config, training=True, league=league, device=device))
    evaluating = config.eval_frequency and distributed.is_main()
    eval_env = envs.make(config.env, min(config.eval_episodes, 8), config.seed + 100_000, **env_options(config)) if evaluating else None
    obs_shape = env.single_observation_space.shape
    n_actions = int(env.single_action_space.n)
    obs_dtype = torch.uint8 if env.single_observation_space.dtype == np.uint8 else torch.float32
    batch_size = config.num_envs * config.num_steps * world  # over all ranks

    torch.manual_seed(config.seed)
    agent = make_agent(config, obs_shape, n_actions, load_init=run.resume_from is None).to(device)
    optimizer = make_optimizer(agent, config)
    rng = torch.Generator().manual_seed(env_seed)  # action sampling and minibatch order

    global_step, num_updates = 0, 0
    recent_returns: deque[float] = deque(maxlen=20)
    evals: list[tuple[int, float]] = []
    if run.resume_from is not None:
        ckpt = run.resume_from
        try:
            agent.load_state_dict(checkpoint.unprefixed("agent", ckpt.tensors))
            optimizer.load_state_dict(ckpt.optimizer)
        except (RuntimeError, ValueError, KeyError) as e:
            raise checkpoint.CheckpointError(f"checkpoint {str(ckpt.path)!r} does not fit this config: {str(e).splitlines()[0]}") from None
        global_step, num_updates = ckpt.step, ckpt.state["num_updates"]
        recent_returns.extend(ckpt.state["recent_returns"])
        evals = [tuple(e) for e in ckpt.state["evals"]]
        rngs = ckpt.state.get("rngs", [ckpt.state["rng"]])  # one per rank; a different K: rank 0's, then reseeded
        if len(rngs) == world:
            rng.set_state(rng_from_json(rngs[distributed.rank()]))
        else:
            rng.manual_seed(env_seed + global_step)
        if league is not None and "league" in ckpt.state:
            league.load(agent, ckpt.tensors, ckpt.state["league"])
    if league is not None and not league.members:
        league.add(agent, num_updates)  # the first opponent: the initial policy
    learner = distributed.wrap(agent, device)  # the forward pass that trains; `agent` acts, evaluates and is saved

    def save_checkpoint() -> None:
        rngs = distributed.all_gather_object(rng_to_json(rng.get_state()))
        state = {"num_updates": num_updates, "recent_returns": list(recent_returns), "evals": evals, "rng": rngs[0]}
        if world > 1:
            state["rngs"] = rngs
        tensors = checkpoint.prefixed("agent", agent.state_dict())
        if league is not None:
            state["league"] = league.state()
            tensors |= league.tensors()
        if distributed.is_main():
            checkpoint.save(run.checkpoint_dir, global_step, tensors, optimizer, state, None, config.keep_checkpoints)

    def evaluate() -> float:
        policy = make_policy(agent, device, config.eval_epsilon, config.eval_greedy, config.seed + global_step)
        return evaluation_round(run, eval_env, policy, probabilities(agent, device), global_step, evals)

    # Envs restart at each (re)start, seeded by the step, so a resumed run is reproducible.
    next_obs_np, info = env.reset(seed=env_seed + global_step)
    next_obs = torch.as_tensor(next_obs_np, device=device)
    next_mask = action_mask_of(info, device)
    rollout = make_rollout(config.num_steps, config.num_envs, obs_shape, obs_dtype, n_actions, next_mask is not None, device)
    next_valid = torch.ones(config.num_envs, dtype=torch.bool, device=device)  # False: the next step is an autoreset
    episodes = EpisodeStats(config.num_envs)
    start_step, start_time = global_step, time.time()
    next_progress = start_time

    while global_step < config.total_timesteps and not distributed.any_rank(run.stop_requested):
        # 1. anneal the learning rate (and the clip range) linearly to 0 over the run (CleanRL)
        lr, clip_coef = anneal(config, optimizer, global_step)

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
            global_step += config.num_envs * world
            for episodic_return, episodic_length in episodes.update(reward, terminated, truncated):
                recent_returns.append(episodic_return)
                run.log(global_step, {"charts/episodic_return": episodic_return, "charts/episodic_length": episodic_length})
            # learning signal: clipped rewards, a lost life terminal for the advantage only (Nature protocol)
            r_learn = np.sign(reward) if config.clip_rewards else reward
            done_learn = terminated | (info["life_lost"] & config.terminal_on_life_loss)
            rollout.rewards[t] = torch.as_tensor(r_learn, device=device)
            rollout.terminated[t] = torch.as_tensor(done_learn, device=device)
            rollout.episode_end[t] = torch.as_tensor(done_learn | truncated, device=device)
            next_valid = torch.as_tensor(~(terminated | truncated), device=device)
            next_obs = torch.as_tensor(next_obs_np, device=device)
            next_mask = action_mask_of(info, device)

        # 3. advantages (GAE) and returns; the obs after the last step bootstraps the rollout's cut
        with torch.inference_mode():
            next_value = agent.value(next_obs)  # (N,)
        advantages = gae(rollout.rewards, rollout.values, next_value, rollout.terminated, rollout.episode_end,
                         config.gamma, config.gae_lambda)
        returns = advantages + rollout.values

        # 4. optimize the policy and value network
        stats = update(learner, optimizer, rollout, advantages, returns, config, clip_coef, rng)
        num_updates += 1
        if league is not None and num_updates % config.go.snapshot_frequency == 0:
            league.add(agent, num_updates)
            stats["go/league_size"] = len(league.members)
        prev_step = global_step - batch_size

        # 5. logs, progress, evaluation, checkpoints (counters crossing a multiple of their frequency)
        if global_step // config.log_frequency > prev_step // config.log_frequency:
            sps = (global_step - start_step) / max(time.time() - start_time, 1e-9)
            run.log(global_step, {**stats, "charts/SPS": sps, "charts/learning_rate": lr, "charts/clip_coef": clip_coef})
        if (now := time.time()) >= next_progress:
            next_progress = now + 0.5
            run.progress(global_step, config.total_timesteps, (global_step - start_step) / max(now - start_time, 1e-9),
                         np.mean(recent_returns) if recent_returns else None)
        if evaluating and global_step // config.eval_frequency > prev_step // config.eval_frequency:
            evaluate()
        if config.checkpoint_frequency and global_step // config.checkpoint_frequency > prev_step // config.checkpoint_frequency:
            save_checkpoint()

    end_time = time.time()  # throughput excludes the final evaluation and checkpoint
    summary = {"sps": (global_step - start_step) / max(end_time - start_time, 1e-9)}
    finished = global_step >= config.total_timesteps
    if finished and evaluating and (not evals or evals[-1][0] != global_step):
        evaluate()
    save_checkpoint()
    env.close()
    if eval_env is not None:
        eval_env.close()
    return {**summary, "train_sps": summary["sps"], "step": global_step, "finished": finished, "num_updates": num_updates,
            "evals": evals, "recent_return": float(np.mean(recent_returns)) if recent_returns else None}


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


def _load_agent(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device) -> ActorCritic:
    config = replace(config, compile=False)  # a few evaluation games do not repay compiling
    agent = make_agent(config, env.single_observation_space.shape, int(env.single_action_space.n), load_init=False).to(device)
    agent.load_state_dict(checkpoint.unprefixed("agent", ckpt.tensors))
    if config.eval_symmetries:  # Go: read every position on its 8 images and average (envs/go/symmetry.py)
        from envs.go.symmetry import Averaged

        return Averaged(agent.eval(), int(config.env[2:]))
    return agent.eval()


def load_policy(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device, epsilon: float, seed: int):
    """The saved policy for `rl eval`: it samples from pi(.|s) (config.eval_greedy: its argmax), and
    `epsilon` > 0 mixes in uniformly random legal actions, as for DQN. Default eval_epsilon is 0."""
    if config.encoder.name == "lstm":
        from agents import ppo_lstm
        return ppo_lstm.load_policy(config, ckpt, env, device, epsilon, seed)
    return make_policy(_load_agent(config, ckpt, env, device), device, epsilon, config.eval_greedy, seed)


def load_search(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device, playouts: int):
    """Go: the saved network read through a PUCT tree search of `playouts` per move (agents/go_search.py), for
    `rl eval / gtp / play --search N`: called as search(state, boards, offered) -> moves."""
    from agents.go_search import for_run

    if config.encoder.name == "lstm":
        raise ConfigError("--search evaluates positions out of order: it needs a feed-forward encoder, not lstm")
    return for_run(_load_agent(config, ckpt, env, device), config, playouts, device)


def action_scores(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device):
    """numpy obs (N, ...) -> action probabilities pi(.|s) (N, A), for overlays in `rl watch`."""
    if config.encoder.name == "lstm":
        from agents import ppo_lstm

        return ppo_lstm.action_scores(config, ckpt, env, device)
    return probabilities(_load_agent(config, ckpt, env, device), device)


def probabilities(agent: ActorCritic, device: torch.device):
    """pi(.|s) as a numpy function: obs (N, ...) -> (N, A), for overlays and training videos."""

    def scores(obs: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        mask = None if action_mask is None else torch.as_tensor(action_mask, dtype=torch.bool, device=device)
        with torch.inference_mode():
            return torch.softmax(masked_logits(agent(torch.as_tensor(obs, device=device))[0], mask), 1).cpu().numpy()

    return scores
