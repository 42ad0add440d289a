"""AlphaZero-style expert iteration on Go (Silver et al. 2017, "Mastering the game of Go without human knowledge";
Anthony et al. 2017), read top to bottom: config, network, loss, loop.

Each iteration: (1) num_envs games of self-play from the empty board, every move chosen by the PUCT search
(agents/go/search.py, the one `rl eval --search` and `rl gtp --search` play with) over the current network, with
root noise, playout cap randomisation and temperature-1 opening moves (agents/go/selfplay.py); (2) the recorded
positions into the replay (agents/go/positions.py); (3) gradient_steps minibatches from the replay, each position
under a random board symmetry, on

    loss = -sum_a pi(a) log p(a|s)  +  vf_coef (v(s) - z)^2

with pi the search's visit distribution at s, z the game's result from the mover's view (+1/-1, no shaping), and
(p, v) the network's two heads: PPO's actor-critic on Go (agents/ppo.py make_agent), so `load_network`,
`load_policy` and the Go tools (rl eval --opponent [--search], rl gtp) read an alphazero run as they read a PPO one.
The step counter counts moves played in self-play; evaluations play the network's policy without search against
go.eval_opponents (agents/go/hooks.py). Iterations end with every game over, so a checkpoint (weights, optimizer,
replay, generators) taken between them resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import envs
from agents import checkpoint, hooks
from agents.accel import pick_threads
from agents.checkpoint import rng_from_json, rng_to_json
from agents.config import ConfigError, EnvRunFields, GoConfig, option
from agents.eval_round import evaluation_round
from agents.ppo import action_scores, load_network, load_policy, make_agent, make_policy, probabilities
from agents.run import Clock, Counters, Run, end_of_iteration, finish, make_eval_env, restoring

__all__ = ["AlphaZeroConfig", "Config", "action_scores", "load_network", "load_policy", "train"]


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class AlphaZeroConfig(EnvRunFields):
    """Expert iteration on Go: PUCT self-play as the policy-improvement operator, the network trained on its visit
    distributions and game results. Counts (total_timesteps, the frequencies) are self-play moves, all games
    together. configs/alphazero/go*.yaml hold the sizes for each board."""

    num_envs: int = option(64, positive=True)  # games of self-play per iteration, searched as one batch
    # --- search (agents/go/search.py)
    playouts: int = option(32, positive=True)  # per full search: a recorded move with root noise
    fast_playouts: int = option(8, positive=True)  # per fast search: a move not recorded (KataGo's cheap search)
    full_search_prob: float = option(0.25, low=0, high=1)  # share of moves searched in full (1: every move, AlphaZero)
    c_puct: float = option(1.5, positive=True)
    noise_fraction: float = option(0.25, low=0, high=1)  # Dirichlet noise's weight in the root's priors (0: none)
    noise_concentration: float = option(10.0, positive=True)  # alpha = this / the offered moves (KataGo ~10.8)
    temperature_moves: int = option(8, low=0)  # moves drawn in proportion to visits at a game's start, then argmax
    # --- learning
    buffer_size: int = option(50_000, positive=True)  # positions kept in the replay (the most recent)
    learning_starts: int = option(512, low=0)  # positions in the replay before the first gradient step
    batch_size: int = option(256, positive=True)
    gradient_steps: int = option(16, positive=True)  # minibatches per iteration
    optimizer: str = option("adam", choices=("adam", "sgd"))  # adam: AdamW; sgd: momentum (AlphaGo Zero's)
    learning_rate: float = option(1e-3, positive=True)
    momentum: float = option(0.9, low=0, high=1)  # sgd only
    weight_decay: float = option(1e-4, low=0)  # AlphaGo Zero's L2 coefficient c = 1e-4
    vf_coef: float = option(1.0, low=0)  # weight of the value's squared error beside the policy's cross-entropy
    max_grad_norm: float = option(0.0, low=0)  # 0 disables gradient clipping
    heads: str = option("alphazero", choices=("linear", "alphazero"))  # agents/ppo.py ActorCritic's heads
    # --- supervised start (AlphaGo's first stage, with GNU Go for the experts): the same loss on GNU Go's move
    # (a one-hot target) and the game's result in the positions of a scripts/gnugo_games.py file, before self-play
    pretrain_data: str = ""  # that .npz file; "": self-play from random weights
    pretrain_steps: int = option(0, low=0)  # minibatches of batch_size on it (each position under a random symmetry)
    go: GoConfig = field(default_factory=GoConfig)
    # --- evaluation, logging (the network's policy, no search: `rl eval --search N` reads ahead)
    eval_epsilon: float = option(0.0, low=0, high=1)
    eval_greedy: bool = True  # the policy's most likely move; false: a move drawn from it
    eval_symmetries: bool = False
    log_frequency: int = option(1_000, positive=True)

    shared_encoder = True  # one tower, two heads (AlphaGo Zero); not a key: what ppo.make_agent reads
    # Batch norm as AlphaGo Zero's: batch statistics in training, running ones in the search (ppo.make_agent freezes
    # them for PPO, whose ratio needs one state's output independent of its batch; this loss has no ratio). Frozen,
    # a batch-norm layer is a plain affine map: on 9x9 the value head's single 1x1 filter drifted negative at every
    # point within 100k moves, its ReLU passed nothing and the value stayed constant (loss 1.000 to 235k moves).
    batch_statistics = True

    def _rules(self) -> None:
        if envs.family(self.env) != "go":
            raise ConfigError(f"alphazero trains on Go (Go5, Go7, Go9, Go19), not {self.env}: e.g. --env Go9")
        if self.fast_playouts > self.playouts:
            raise ConfigError(
                f"config key 'fast_playouts' ({self.fast_playouts}) is more than 'playouts' ({self.playouts}): "
                "a fast search is the cheap one; lower it"
            )
        if self.go.shaping or self.go.score_reward:
            raise ConfigError(
                "config keys 'go.shaping' and 'go.score_reward' must be 0 for alphazero: its value target is the "
                "game's result, +1/-1"
            )
        if bool(self.pretrain_data) != (self.pretrain_steps > 0):
            raise ConfigError(
                "config keys 'pretrain_data' and 'pretrain_steps' go together: a scripts/gnugo_games.py file and "
                "the minibatches on it, e.g. --set pretrain_data=data/go9.npz --set pretrain_steps=4000"
            )
        if self.encoder.name not in ("auto", "resnet_tower"):
            raise ConfigError(f"config key 'encoder.name' is {self.encoder.name!r}: alphazero uses resnet_tower")
        super()._rules()


Config = AlphaZeroConfig  # the registry's protocol (agents/registry.py)


# ---------------------------------------------------------------------------------------------- maths
def alphazero_loss(
    logits: torch.Tensor, value: torch.Tensor, policy: torch.Tensor, result: torch.Tensor, vf_coef: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """AlphaGo Zero's loss without its L2 term (the optimizer's weight decay): cross-entropy of the network's
    policy (B, A) to the search's visit distribution (B, A), plus vf_coef * the squared error of the value (B,) to
    the result (B,)."""
    policy_loss = -(policy * F.log_softmax(logits, 1)).sum(1).mean()
    value_loss = F.mse_loss(value, result)
    entropy = -(policy * policy.clamp_min(1e-12).log()).sum(1).mean()  # the targets': the loss's floor
    stats = {"losses/policy_loss": policy_loss, "losses/value_loss": value_loss, "losses/target_entropy": entropy}
    return policy_loss + vf_coef * value_loss, stats


def make_optimizer(agent: nn.Module, config: AlphaZeroConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            agent.parameters(), config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(agent.parameters(), config.learning_rate, weight_decay=config.weight_decay)


def descend(agent: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> None:
    """One optimizer step on `loss` (gradients clipped to max_grad_norm when it is > 0)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
    optimizer.step()


# ---------------------------------------------------------------------------------------------- supervised start
HELD_OUT = 20  # every 20th game of pretrain_data is held out: the move accuracy and value loss logged on it


def expert_positions(config: AlphaZeroConfig, obs_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The positions of config.pretrain_data as tensors (obs uint8 (P, 2k+1, N, N), action (P,), legal (P, A+1),
    outcome (P,) from the mover's view, held_out (P,) bool); a ConfigError names a file that does not fit the run."""
    from agents.supervised import read_go_file

    path = config.pretrain_data
    arrays = read_go_file(path, "pretrain_data", extra=("outcome", "komi"))
    if tuple(arrays["obs"].shape[1:]) != tuple(obs_shape):
        size, planes = obs_shape[-1], obs_shape[0]
        raise ConfigError(
            f"pretrain_data {path!r} holds observations {tuple(arrays['obs'].shape[1:])}, {config.env} shows "
            f"{tuple(obs_shape)}: make it with --size {size} --history {(planes - 1) // 2}"
        )
    if float(arrays["komi"]) != config.go.komi:
        raise ConfigError(
            f"pretrain_data {path!r} was played with komi {float(arrays['komi'])}, this run's go.komi is "
            f"{config.go.komi}: its results would be another game's (--set go.komi={float(arrays['komi'])})"
        )
    tensors = {k: torch.from_numpy(arrays[k]) for k in ("obs", "action", "legal", "outcome")}
    tensors["held_out"] = torch.from_numpy(arrays["game"] % HELD_OUT == 0)
    if tensors["held_out"].all() or not tensors["held_out"].any():
        raise ConfigError(f"pretrain_data {path!r} holds {len(np.unique(arrays['game']))} game(s): need {HELD_OUT}+")
    return tensors


def check(config: AlphaZeroConfig) -> None:
    """Raise the ConfigError a new run would hit on its pretrain_data file, before the CLI creates its folder."""
    if config.pretrain_steps:
        env = envs.make(config.env, 1, config.seed, **hooks.for_config(config).env_options())
        try:
            expert_positions(config, env.single_observation_space.shape)
        finally:
            env.close()


@torch.no_grad()
def held_out_scores(agent: nn.Module, data: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """Share of held-out positions where the policy's most likely legal move is GNU Go's, and the value's squared
    error to their results (running batch-norm statistics, as the search plays)."""
    was_training = agent.training
    agent.eval()
    rows = data["held_out"].nonzero().view(-1)[:8192]
    hits, errors = 0.0, 0.0
    for chunk in rows.split(1024):
        logits, value = agent(data["obs"][chunk].float().to(device))
        logits = logits.masked_fill(~data["legal"][chunk].to(device), float("-inf"))
        hits += (logits.argmax(1).cpu() == data["action"][chunk]).sum().item()
        errors += (value.cpu() - data["outcome"][chunk]).pow(2).sum().item()
    agent.train(was_training)
    return {"pretrain/held_out_accuracy": hits / len(rows), "pretrain/held_out_value_loss": errors / len(rows)}


def pretrain(
    agent: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: AlphaZeroConfig,
    data: dict[str, torch.Tensor],
    done: int,
    generator: torch.Generator,
    run: Run,
) -> int:
    """Minibatches done+1..pretrain_steps of alphazero_loss on GNU Go's moves (one-hot) and results, each position
    under a random symmetry; logs pretrain/* against the minibatch count, in <run>/pretrain/ (TensorBoard's run
    RUN/pretrain: its own x axis, which a resume's purge of later self-play steps leaves alone). Returns the
    minibatches done (fewer on a stop request: a resume continues from there)."""
    from torch.utils.tensorboard import SummaryWriter

    from agents.go.positions import augment
    from envs.go import symmetry

    device, size, n_actions = run.device, data["obs"].shape[-1], data["legal"].shape[1]
    train_rows = (~data["held_out"]).nonzero().view(-1)
    run.say(
        f"pretraining on {config.pretrain_data}: {len(train_rows):,} positions "
        f"({int(data['held_out'].sum()):,} held out), minibatches {done + 1:,}..{config.pretrain_steps:,}"
    )
    writer = SummaryWriter(str(run.dir / "pretrain"), purge_step=done + 1) if run.is_main else None
    agent.train()
    try:
        while done < config.pretrain_steps and not run.stop_requested:
            rows = train_rows[torch.randint(len(train_rows), (config.batch_size,), generator=generator)]
            g = torch.randint(symmetry.COUNT, (config.batch_size,), generator=generator)
            target = F.one_hot(data["action"][rows], n_actions).float()
            planes, target = augment(data["obs"][rows].float(), target, g, size)
            logits, value = agent(planes.to(device))
            result = data["outcome"][rows].to(device)
            loss, stats = alphazero_loss(logits, value, target.to(device), result, config.vf_coef)
            descend(agent, optimizer, loss, config.max_grad_norm)
            done += 1
            if writer is None or (done % 100 and done < config.pretrain_steps):
                continue
            scores = held_out_scores(agent, data, device) if done % 1000 == 0 or done == config.pretrain_steps else {}
            logged = {k.replace("losses/", "pretrain/"): v.item() for k, v in stats.items()} | scores
            for tag, number in logged.items():
                writer.add_scalar(tag, number, done)
            if scores:
                run.say(
                    f"pretraining {done:,}/{config.pretrain_steps:,}: GNU Go's move in "
                    f"{scores['pretrain/held_out_accuracy']:.1%} of held-out positions, value loss "
                    f"{scores['pretrain/held_out_value_loss']:.3f}"
                )
    finally:
        if writer is not None:
            writer.close()
    return done


# ---------------------------------------------------------------------------------------------- training
def train(config: AlphaZeroConfig, run: Run) -> dict[str, Any]:
    from agents.go import selfplay  # Go only, loaded on use (a Pong run imports nothing of Go)
    from agents.go.positions import PositionReplay
    from agents.go.search import Search

    device = run.device
    family = hooks.for_config(config)  # Go's komi, offered moves and evaluation matches; no league
    env = envs.make(config.env, 1, config.seed, **family.env_options())  # its shapes only: self-play runs the rules
    eval_env = make_eval_env(config, True, **family.env_options())
    obs_shape, n_actions, size, history = (
        env.single_observation_space.shape,
        int(env.single_action_space.n),
        env.size,
        env.history,
    )

    torch.manual_seed(config.seed)
    agent = make_agent(config, obs_shape, n_actions, load_init=run.resume_from is None).to(device)
    pick_threads(config.torch_threads, agent)
    optimizer = make_optimizer(agent, config)
    replay = PositionReplay(config.buffer_size, history, size)
    games_rng = np.random.default_rng(config.seed)  # full or fast searches, root noise, temperature-1 moves
    batch_rng = torch.Generator().manual_seed(config.seed)  # minibatch rows and their symmetries

    counters = Counters.restored(run.resume_from)
    if (ckpt := run.resume_from) is not None:
        with restoring(ckpt):
            agent.load_state_dict(checkpoint.unprefixed("agent", ckpt.tensors))
            optimizer.load_state_dict(ckpt.optimizer)
            replay.load(ckpt.path / "replay")
            games_rng.bit_generator.state = ckpt.state["games_rng"]
            batch_rng.set_state(rng_from_json(ckpt.state["rng"]))
    pretrained = {"updates": 0 if ckpt is None else int(ckpt.state.get("pretrain_updates", 0))}
    go = config.go
    search = Search(
        agent,
        config.playouts,
        go.komi,
        go.eye_fill,
        go.pass_rule,
        c_puct=config.c_puct,
        device=device,
        noise_fraction=config.noise_fraction,
        noise_concentration=config.noise_concentration,
    )

    def save_checkpoint() -> None:
        state = {
            **counters.state(),
            "rng": rng_to_json(batch_rng.get_state()),
            "games_rng": games_rng.bit_generator.state,
            "pretrain_updates": pretrained["updates"],
        }
        weights = checkpoint.prefixed("agent", agent.state_dict())
        checkpoint.save(run.checkpoint_dir, counters.step, weights, optimizer, state, replay, config.keep_checkpoints)

    def evaluate() -> float:
        policy = make_policy(agent, device, config.eval_epsilon, config.eval_greedy, config.seed + counters.step)
        weights = checkpoint.prefixed("agent", agent.state_dict())
        return evaluation_round(
            run, eval_env, policy, probabilities(agent, device), counters.step, counters.evals, weights
        )

    evaluation = evaluate if eval_env is not None else None
    clock = Clock(counters.step)
    stats: dict[str, float] = {}

    if pretrained["updates"] < config.pretrain_steps:  # the supervised start, before the first self-play game
        data = expert_positions(config, obs_shape)
        pretrained["updates"] = pretrain(agent, optimizer, config, data, pretrained["updates"], batch_rng, run)
        del data
        clock.charge(counters)  # the pretraining's CPU time into charts/cpu_hours
        clock = Clock(counters.step)  # steps/s of self-play alone
        if not run.stop_requested:  # checkpoints/step_0: the supervised network alone, for rl eval --checkpoint 0
            run.write_checkpoint(save_checkpoint)
    while counters.step < config.total_timesteps and not run.stop_requested:
        # 1. self-play: num_envs whole games, every move read by the search over the current network
        agent.eval()
        games = selfplay.play(
            search,
            config.num_envs,
            size,
            history,
            games_rng,
            config.fast_playouts,
            config.full_search_prob,
            config.temperature_moves,
        )
        prev_step, counters.step = counters.step, counters.step + games.moves

        # 2. the recorded positions (full searches only) into the replay
        replay.add(games.positions)

        # 3. gradient_steps minibatches of augmented positions
        agent.train()
        if len(replay) >= max(config.learning_starts, 1):
            for _ in range(config.gradient_steps):
                planes, policy, result = replay.sample(config.batch_size, batch_rng, device)
                logits, value = agent(planes)
                loss, step_stats = alphazero_loss(logits, value, policy, result, config.vf_coef)
                descend(agent, optimizer, loss, config.max_grad_norm)
                counters.updates += 1
            stats = {k: v.item() for k, v in step_stats.items()}  # the last minibatch's, as CleanRL logs

        # 4. logs, progress, evaluation, checkpoints (counters crossing a multiple of their frequency)
        logged = {
            **stats,
            "charts/episodic_length": float(games.lengths.mean()),
            "charts/black_win_rate": float((games.margins > 0).mean()),
            "charts/positions": float(len(games.positions.turn)),
            "charts/replay_size": float(len(replay)),
            "charts/learning_rate": config.learning_rate,
        }
        agent.eval()
        end_of_iteration(run, counters, clock, prev_step, config, lambda: logged, evaluation, save_checkpoint)

    return finish(run, counters, clock, config.total_timesteps, evaluation, save_checkpoint, (env, eval_env))
