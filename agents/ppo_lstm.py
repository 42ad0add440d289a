"""Recurrent PPO: agents/ppo.py with an LSTM between the body and the heads (CleanRL's `ppo_atari_lstm.py`).

Selected by config: `rl train ppo --env CartPoleNoVel-v1 --set encoder.name=lstm` (agents/registry.py picks this
module for a recurrent encoder). What changes against ppo.py:
- the network: images go through a Nature CNN first, vectors straight into the LSTM (encoder.lstm_hidden,
  encoder.lstm_layers); one LSTM feeds both heads (CleanRL's recurrent agent) with shared_encoder true, else
  the value has its own (rl-zoo's recurrent PPO); encoder.hidden_sizes are ReLU layers after the LSTM;
  encoder.obs_norm normalizes vector observations by their running mean and std first (rl-zoo's VecNormalize;
  without it the LSTM reads pole angles of ~0.05 rad moving by ~0.01 a step: docs/BENCHMARKS.md measures both);
- acting carries the LSTM state (h, c) from step to step and zeroes an env's state on the first obs of its
  episodes. With NEXT_STEP autoreset (agents/rollout.py) that is the obs after the autoreset step, so the
  final obs still sees its own episode's memory (its value bootstraps a truncation);
- each rollout remembers the state it started from; the update replays the rollout segment through the LSTM
  from there (truncated backpropagation through time over num_steps steps), with minibatches made of whole
  envs, not of shuffled time steps, so every sequence stays in order (num_minibatches <= num_envs). The replay
  runs the pieces between episode starts as one padded nn.LSTM batch (LSTMEncoder.forward_sequence), not step by step.
The loss, sampling, GAE, masks and optimizer are agents/pg.py's and agents/rollout.py's, as for ppo.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import envs
from agents import checkpoint, distributed
from agents.accel import channels_last, nhwc, pick_threads
from agents.checkpoint import rng_from_json, rng_to_json
from agents.config import ConfigError
from agents.encoders import MLP, LSTMEncoder, make_encoder
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
from agents.ppo import PPOConfig
from agents.rollout import Rollout, gae, make_rollout, masked_logits, sample_actions
from agents.run import Clock, Counters, Run, end_of_iteration, finish, make_eval_env, restoring
from envs.episodes import EpisodeStats

Config = PPOConfig  # the registry's protocol (agents/registry.py): recurrent PPO trains PPO's config
State = tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c), each (layers, N, hidden)


# ---------------------------------------------------------------------------------------------- network
class ObsNorm(nn.Module):
    """Running mean and variance of vector observations, obs -> clip((obs - mean) / sqrt(var + 1e-8), +-10): SB3's
    VecNormalize(norm_obs=True), which rl-zoo's recurrent PPO uses on CartPoleNoVel-v1. Its statistics are buffers,
    so they travel in the checkpoint and evaluation normalizes as training last did. Batches merge by Chan et al.'s
    parallel variance formula (1979), as SB3's RunningMeanStd."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(1e-4))
        self.clip = clip

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """x (B, *shape): fold the batch's mean and (biased) variance into the running ones."""
        x = x.float()
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-self.clip, self.clip)


class RecurrentActorCritic(nn.Module):
    """Policy logits and state value from body -> LSTM -> linear heads (CleanRL's ppo_atari_lstm Agent), with a
    second LSTM for the value unless shared (rl-zoo's enable_critic_lstm: the value's large gradients then never
    reach the policy's memory). The state stacks both LSTMs' layers: (h, c), each (layers [x 2], N, hidden)."""

    def __init__(
        self,
        body: nn.Module | None,
        lstm: LSTMEncoder,
        critic_lstm: LSTMEncoder | None,
        n_actions: int,
        head_sizes: tuple[int, ...],
        obs_norm: ObsNorm | None = None,
    ):
        super().__init__()
        self.obs_norm = obs_norm  # vectors: normalized before the LSTMs read them (statistics fixed within a rollout)
        self.body = body  # None: the LSTMs read the observation vector itself
        self.lstm = lstm
        self.critic_lstm = critic_lstm  # None: shared
        # ReLU layers between the memory and each head (rl-zoo's net_arch): the tanh-bounded LSTM output then need
        # not reach value targets of tens through one linear layer; () gives CleanRL's linear heads.
        self.actor_mlp, self.critic_mlp = MLP((lstm.output_dim,), head_sizes), MLP((lstm.output_dim,), head_sizes)
        self.actor = nn.Linear(self.actor_mlp.output_dim, n_actions)
        self.critic = nn.Linear(self.critic_mlp.output_dim, 1)

    def initial_state(self, num_envs: int, device: torch.device | str | None = None) -> State:
        h, c = self.lstm.initial_state(num_envs, device)
        return (h, c) if self.critic_lstm is None else (torch.cat([h, h]), torch.cat([c, c]))

    def forward(
        self, obs: torch.Tensor, state: State, episode_starts: torch.Tensor, final_state: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, State | None]:
        """obs (T, N, *obs_shape), state from before step 0, episode_starts (T, N) bool
        -> logits (T, N, A), values (T, N), state after step T-1 (None with final_state=False: the update's replay
        needs none, and LSTMEncoder.forward_sequence then runs its fastest path)."""
        T, N = episode_starts.shape
        x = obs.flatten(0, 1)  # (T*N, *obs_shape)
        if self.obs_norm is not None:
            x = self.obs_norm(x)
        features = (x.float() if self.body is None else self.body(nhwc(x))).view(T, N, -1)  # (T, N, F)
        layers = self.lstm.state_shape[0]
        h, pi_state = self.lstm.forward_sequence(
            features, (state[0][:layers], state[1][:layers]), episode_starts, final_state
        )  # (T, N, H)
        if self.critic_lstm is None:
            h_v, state = h, pi_state
        else:
            h_v, vf_state = self.critic_lstm.forward_sequence(
                features, (state[0][layers:], state[1][layers:]), episode_starts, final_state
            )
            state = (
                None
                if pi_state is None
                else (torch.cat([pi_state[0], vf_state[0]]), torch.cat([pi_state[1], vf_state[1]]))
            )
        logits = self.actor(self.actor_mlp(h.flatten(0, 1)))  # (T*N, A)
        values = self.critic(self.critic_mlp(h_v.flatten(0, 1)))  # (T*N, 1)
        return logits.view(T, N, -1), values.view(T, N), state


def make_agent(config: PPOConfig, obs_shape: tuple[int, ...], n_actions: int) -> RecurrentActorCritic:
    """A Nature CNN body for images (its features_dim), none for vectors; one LSTM, or one each for policy and value
    (shared_encoder false); encoder.hidden_sizes ReLU layers before each head; orthogonal init as ppo.py's (the
    LSTMs keep their own: orthogonal weights, zero biases)."""
    image = len(obs_shape) == 3
    if image and config.encoder.obs_norm:
        raise ConfigError(
            "encoder.obs_norm normalizes vector observations; images go through the CNN as they are "
            "(drop --set encoder.obs_norm=true)"
        )
    body = make_encoder("nature_cnn", obs_shape, features_dim=config.encoder.features_dim or 512) if image else None

    def lstm():
        inputs = body.output_dim if image else int(np.prod(obs_shape))
        return LSTMEncoder((inputs,), config.encoder.lstm_hidden, config.encoder.lstm_layers)

    agent = orthogonal_init(
        RecurrentActorCritic(
            body,
            lstm(),
            None if config.shared_encoder else lstm(),
            n_actions,
            config.encoder.hidden_sizes,
            ObsNorm(obs_shape) if config.encoder.obs_norm else None,
        )
    )
    return channels_last(agent, obs_shape)


# ---------------------------------------------------------------------------------------------- update
def update(
    agent: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    starts: torch.Tensor,
    initial_state: State,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    clip_coef: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """ppo.update with minibatches of whole envs: each replays its envs' (T, n) segment from the rollout's initial
    state, and the loss averages over the valid (non-autoreset) steps in it. starts: (T, N) bool."""
    num_envs = rollout.actions.shape[1]
    stats: dict[str, torch.Tensor] = {}
    for _ in range(config.update_epochs):
        order = torch.randperm(num_envs, generator=generator).to(starts.device)
        for mb in torch.tensor_split(order, config.num_minibatches):  # (n,) env indices
            logits, new_value, _ = agent(
                rollout.obs[:, mb], (initial_state[0][:, mb], initial_state[1][:, mb]), starts[:, mb], final_state=False
            )
            valid = rollout.valid[:, mb].reshape(-1)  # (T*n,)
            pick = lambda x: x[:, mb].reshape(-1, *x.shape[2:])[valid]  # noqa: E731 (T, n, ...) -> (B, ...)
            masks = None if rollout.action_masks is None else pick(rollout.action_masks)
            new_logprob, entropy = logprob_and_entropy(
                masked_logits(logits.flatten(0, 1)[valid], masks), pick(rollout.actions)
            )
            mb_advantages = pick(advantages)
            if config.norm_adv and len(mb_advantages) > 1:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
            loss, stats = ppo_loss(
                new_logprob,
                pick(rollout.logprobs),
                mb_advantages,
                entropy,
                new_value.reshape(-1)[valid],
                pick(rollout.values),
                pick(returns),
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
        if config.target_kl > 0 and stats["losses/approx_kl"].item() > config.target_kl:
            break
    out = {k: v.item() for k, v in stats.items()}
    valid = rollout.valid.reshape(-1)
    b_returns, b_values = returns.reshape(-1)[valid], rollout.values.reshape(-1)[valid]
    var_returns = b_returns.var().item()
    out["losses/explained_variance"] = (
        float("nan") if var_returns == 0 else 1 - (b_returns - b_values).var().item() / var_returns
    )
    return out


# ---------------------------------------------------------------------------------------------- training
def train(config: PPOConfig, run: Run) -> dict[str, Any]:
    if distributed.world_size() > 1:
        raise ConfigError("recurrent PPO (encoder.name=lstm) runs in one process: drop torchrun / --nproc")
    if config.num_minibatches > config.num_envs:
        raise ConfigError(
            f"recurrent PPO makes minibatches of whole envs: num_minibatches {config.num_minibatches} "
            f"must be <= num_envs {config.num_envs} (e.g. --set num_minibatches={config.num_envs})"
        )
    device = run.device
    env = envs.make(config.env, config.num_envs, config.seed)
    eval_env = make_eval_env(config)
    obs_shape = env.single_observation_space.shape
    n_actions = int(env.single_action_space.n)
    obs_dtype = torch.uint8 if env.single_observation_space.dtype == np.uint8 else torch.float32
    batch_size = config.num_envs * config.num_steps

    torch.manual_seed(config.seed)
    agent = make_agent(config, obs_shape, n_actions).to(device)
    pick_threads(config.torch_threads, agent)
    optimizer = make_optimizer(agent, config)
    rng = torch.Generator().manual_seed(config.seed)  # action sampling and minibatch order

    counters = Counters.restored(run.resume_from)
    if (ckpt := run.resume_from) is not None:
        with restoring(ckpt):
            agent.load_state_dict(checkpoint.unprefixed("agent", ckpt.tensors))
            optimizer.load_state_dict(ckpt.optimizer)
        rng.set_state(rng_from_json(ckpt.state["rng"]))

    def save_checkpoint() -> None:
        checkpoint.save(
            run.checkpoint_dir,
            counters.step,
            checkpoint.prefixed("agent", agent.state_dict()),
            optimizer,
            {**counters.state(), "rng": rng_to_json(rng.get_state())},
            None,
            config.keep_checkpoints,
        )

    def evaluate() -> float:
        policy = make_policy(agent, device, config.eval_epsilon, config.eval_greedy, config.seed + counters.step)
        scores = _stateful(agent, device, lambda logits, mask: torch.softmax(logits, 1))  # its own memory, in step
        weights = checkpoint.prefixed("agent", agent.state_dict())
        return evaluation_round(run, eval_env, policy, scores, counters.step, counters.evals, weights)

    evaluation = evaluate if eval_env is not None else None  # None: this process does not evaluate

    # Envs restart at each (re)start, seeded by the step, and so does the LSTM's memory (it is not checkpointed).
    next_obs_np, info = env.reset(seed=config.seed + counters.step)
    next_obs = torch.as_tensor(next_obs_np, device=device)
    next_mask = action_mask_of(info, device)
    rollout = make_rollout(
        config.num_steps, config.num_envs, obs_shape, obs_dtype, n_actions, next_mask is not None, device
    )
    starts = torch.zeros(
        (config.num_steps, config.num_envs), dtype=torch.bool, device=device
    )  # (T, N) first obs of an episode
    next_valid = torch.ones(config.num_envs, dtype=torch.bool, device=device)  # False: the next step is an autoreset
    next_start = torch.ones(config.num_envs, dtype=torch.bool, device=device)  # True: the next obs starts an episode
    next_state = agent.initial_state(config.num_envs, device)
    episodes = EpisodeStats(config.num_envs)
    clock = Clock(counters.step)

    while counters.step < config.total_timesteps and not run.stop_requested:
        initial_state = (next_state[0].clone(), next_state[1].clone())  # where the update replays this rollout from
        # 1. anneal the learning rate (and the clip range) linearly to 0 over the run (CleanRL)
        lr, clip_coef = anneal(config, optimizer, counters.step)

        # 2. collect num_steps x num_envs transitions with the current policy, carrying the LSTM state
        for t in range(config.num_steps):
            rollout.obs[t], rollout.valid[t], starts[t] = next_obs, next_valid, next_start
            if next_mask is not None:
                rollout.action_masks[t] = next_mask
            with torch.inference_mode():
                logits, value, next_state = agent(next_obs.unsqueeze(0), next_state, next_start.unsqueeze(0))
                action, logprob = sample_actions(masked_logits(logits[0], next_mask), rng)
            rollout.actions[t], rollout.logprobs[t], rollout.values[t] = action, logprob, value[0]
            next_obs_np, reward, terminated, truncated, info = env.step(action.cpu().numpy())
            counters.step += config.num_envs
            counters.log_games(run, episodes.update(reward, terminated, truncated))
            store_rewards(rollout, t, reward, terminated, truncated, info, config)
            next_start = ~next_valid  # this step was an autoreset: the obs it returned is a reset obs
            next_valid = torch.as_tensor(~(terminated | truncated), device=device)
            next_obs = torch.as_tensor(next_obs_np, device=device)
            next_mask = action_mask_of(info, device)

        # 3. advantages (GAE) and returns; the obs after the last step bootstraps the rollout's cut
        with torch.inference_mode():
            next_value = agent(next_obs.unsqueeze(0), next_state, next_start.unsqueeze(0))[1][0]  # (N,)
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

        # 4. optimize the policy and value network, backpropagating through the rollout's time steps
        stats = update(agent, optimizer, rollout, starts, initial_state, advantages, returns, config, clip_coef, rng)
        if agent.obs_norm is not None:  # after the update, which replayed the rollout as acting normalized it
            agent.obs_norm.update(rollout.obs.flatten(0, 1))
        counters.updates += 1
        prev_step = counters.step - batch_size

        # 5. logs, progress, evaluation, checkpoints (counters crossing a multiple of their frequency)
        logged = {**stats, "charts/learning_rate": lr, "charts/clip_coef": clip_coef}
        end_of_iteration(run, counters, clock, prev_step, config, lambda: logged, evaluation, save_checkpoint)

    return finish(run, counters, clock, config.total_timesteps, evaluation, save_checkpoint, (env, eval_env))


# ---------------------------------------------------------------------------------------------- acting
def _stateful(agent: RecurrentActorCritic, device: torch.device, head):
    """A callable obs (N, ...) -> head(logits (N, A), rng-free) that carries the LSTM state between calls and
    zeroes env i's state where episode_starts[i] (agents/evaluate.py passes it; without it the memory runs on,
    from a zero state at the first call or when N changes). `.recurrent` tells run_episodes to pass it."""
    memory: dict[str, State] = {}

    def call(
        obs: np.ndarray, episode_starts: np.ndarray | None = None, action_mask: np.ndarray | None = None
    ) -> np.ndarray:
        n = len(obs)
        state = memory.get("state")
        if state is None or state[0].shape[1] != n:
            state = agent.initial_state(n, device)
        starts = (
            torch.zeros(n, dtype=torch.bool)
            if episode_starts is None
            else torch.as_tensor(np.asarray(episode_starts, dtype=bool))
        )
        mask = None if action_mask is None else torch.as_tensor(action_mask, dtype=torch.bool, device=device)
        with torch.inference_mode():
            logits, _, memory["state"] = agent(
                torch.as_tensor(obs, device=device).unsqueeze(0), state, starts.to(device).unsqueeze(0)
            )
            return head(masked_logits(logits[0], mask), mask).cpu().numpy()

    call.recurrent = True
    return call


def make_policy(agent: RecurrentActorCritic, device: torch.device, epsilon: float, greedy: bool, seed: int):
    """ppo.make_policy with memory: samples from pi(.|history) (its argmax when `greedy`), and with probability
    epsilon a uniformly random legal action instead."""
    rng = torch.Generator().manual_seed(seed)

    def act(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        actions = logits.argmax(1) if greedy else sample_actions(logits, rng)[0]
        if epsilon > 0:
            uniform = masked_logits(torch.zeros_like(logits), mask)
            explore = torch.rand(len(actions), generator=rng).to(logits.device) < epsilon
            actions = torch.where(explore, sample_actions(uniform, rng)[0], actions)
        return actions

    return _stateful(agent, device, act)


def _load_agent(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device) -> RecurrentActorCritic:
    agent = make_agent(config, env.single_observation_space.shape, int(env.single_action_space.n)).to(device)
    agent.load_state_dict(checkpoint.unprefixed("agent", ckpt.tensors))
    return agent.eval()


def load_policy(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device, epsilon: float, seed: int):
    """The saved recurrent policy for `rl eval`, as ppo.load_policy (config.eval_greedy: argmax; epsilon mixes in
    random legal actions); call it with episode_starts to reset its memory (run_episodes does)."""
    return make_policy(_load_agent(config, ckpt, env, device), device, epsilon, config.eval_greedy, seed)


def action_scores(config: PPOConfig, ckpt: checkpoint.Checkpoint, env, device: torch.device):
    """obs (N, ...) [, episode_starts] -> pi(.|history) (N, A), carrying its own LSTM state between calls."""
    return _stateful(_load_agent(config, ckpt, env, device), device, lambda logits, mask: torch.softmax(logits, 1))
