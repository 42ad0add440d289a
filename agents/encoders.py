"""Network bodies shared by every agent and by `rl supervised`: observation -> feature vector (B, output_dim).

Each encoder computes its own output size from the observation shape (a dummy forward pass, as SB3's
NatureCNN does), so heads never hard-code it. Configs name them through `encoder.name` (ENCODERS below);
`encoder_from_config` also loads `encoder.init` weights and applies `encoder.freeze`.

Initialisation, per encoder: mlp and nature_cnn keep PyTorch's default (kaiming_uniform, a=sqrt(5)), as
CleanRL's DQN does; impala and resnet_tower use He init (kaiming_normal, fan_out, ReLU; He et al. 2015) for
their convolutions; lstm uses orthogonal weights and zero biases (CleanRL's ppo_atari_lstm.py); the
transformer uses Xavier-uniform linears, zero biases and N(0, 0.02) learned positions (ViT). RL heads on top
(Q, policy, value) are the agents' business: orthogonal with gain sqrt(2) / 0.01 / 1 in PPO (Huang et al. 2022).

Pixels: uint8 observations are scaled to [0, 1] inside the image encoders, so replays and envs keep uint8.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from agents.config import ConfigError, EncoderConfig


def _pixels(obs: torch.Tensor) -> torch.Tensor:
    return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()


def _he_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _need_image(name: str, obs_shape: tuple[int, ...], min_side: int = 1) -> None:
    if len(obs_shape) != 3 or min(obs_shape[1:]) < min_side:
        raise ConfigError(
            f"encoder {name} needs image observations (C, H, W) of at least {min_side}x{min_side}, "
            f"got {tuple(obs_shape)}: use encoder.name=mlp (or transformer)"
        )


# ---------------------------------------------------------------------------------------------- MLP, CNNs
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}  # encoder.activation (mlp)


class MLP(nn.Module):
    """Fully connected body for vector observations (classic control, one-hot tabular states)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden_sizes: tuple[int, ...] = (120, 84),
        norm: str = "none",
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(obs_shape)
        for h in (
            hidden_sizes
        ):  # Linear [-> BatchNorm (Ioffe & Szegedy 2015) | LayerNorm (Ba et al. 2016)] -> ReLU | Tanh [-> dropout]
            layers.append(nn.Linear(width, h))
            if norm != "none":
                layers.append(nn.BatchNorm1d(h) if norm == "batch" else nn.LayerNorm(h))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))  # Srivastava et al. 2014
            width = h
        self.net = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float())


class NatureCNN(nn.Module):
    """The convolutional body of Mnih et al. (2015): 3 conv layers + a 512-unit layer. Input (B, C, H, W)."""

    def __init__(self, obs_shape: tuple[int, ...], features_dim: int = 512):
        super().__init__()
        _need_image("nature_cnn", obs_shape, 36)
        self.conv = nn.Sequential(
            nn.Conv2d(obs_shape[0], 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *obs_shape)).shape[1]  # 3136 for (4, 84, 84)
        self.fc = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())
        self.output_dim = features_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(_pixels(obs)))  # (B, 4, 84, 84) -> (B, 512)


class ImpalaResidual(nn.Module):
    """IMPALA's block: x + conv(relu(conv(relu(x)))), 3x3 convs, no normalisation."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class ImpalaCNN(nn.Module):
    """The 15-layer IMPALA ResNet (Espeholt et al. 2018, fig. 3 right): three stacks of conv 3x3 -> max-pool
    3x3 stride 2 -> two residual blocks, with [16, 32, 32] channels, then ReLU -> linear(256) -> ReLU.
    Each stack halves H and W (rounding up), so any image size works: (4, 84, 84) -> (32, 11, 11)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        channels: tuple[int, ...] = (16, 32, 32),
        features_dim: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        _need_image("impala", obs_shape)
        stacks, c_in = [], obs_shape[0]
        for c_out in channels:
            stacks += [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                ImpalaResidual(c_out),
                ImpalaResidual(c_out),
            ]
            c_in = c_out
        self.stacks = nn.Sequential(*stacks, nn.Flatten(), nn.ReLU(), nn.Dropout(dropout))
        with torch.no_grad():
            flat = self.stacks(torch.zeros(1, *obs_shape)).shape[1]  # 3872 = 32 * 11 * 11 for (4, 84, 84)
        self.fc = nn.Linear(flat, features_dim)
        self.output_dim = features_dim
        _he_init(self)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.stacks(_pixels(obs))))  # (B, C, H, W) -> (B, 256)


class TowerBlock(nn.Module):
    """AlphaZero's residual block (Silver et al. 2017/2018): relu(x + bn(conv(relu(bn(conv(x)))))), padding 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn1(self.conv1(F.relu(self.bn0(self.conv0(x))))))


class ResidualTower(nn.Module):
    """A small AlphaZero-style tower for board games: conv 3x3 + BN + ReLU, then `blocks` residual blocks.
    Padding keeps the board size, so every point keeps its own feature vector.

    Heads that need per-point features (a Go policy over N*N moves + pass) call `forward_spatial(obs)` ->
    (B, channels, H, W), e.g. AlphaZero's policy head conv1x1(2) -> BN -> ReLU -> linear(H*W + 1); `forward`
    returns the same features flattened channel-major, (B, channels*H*W), for heads that take a vector.
    Observations are planes taken as given (uint8 0/1 stone planes stay 0/1: no /255 here)."""

    def __init__(self, obs_shape: tuple[int, ...], channels: int = 64, blocks: int = 6):
        super().__init__()
        _need_image("resnet_tower", obs_shape)
        self.stem = nn.Sequential(
            nn.Conv2d(obs_shape[0], channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.blocks = nn.Sequential(*[TowerBlock(channels) for _ in range(blocks)])
        self.spatial_shape = (channels, *obs_shape[1:])
        self.output_dim = math.prod(self.spatial_shape)
        _he_init(self)

    def forward_spatial(self, obs: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(obs.float()))  # (B, C_in, H, W) -> (B, channels, H, W)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_spatial(obs).flatten(1)  # (B, channels*H*W)


# ---------------------------------------------------------------------------------------------- LSTM
class LSTMEncoder(nn.Module):
    """LSTM (Hochreiter & Schmidhuber 1997) over feature vectors, two ways:

    - whole sequences for classification: forward(x (B, T, F)) -> (B, H), the last step's output from a zero
      state (x (B, F) is a one-step sequence);
    - step by step for recurrent agents, with a carried state reset at episode starts (CleanRL's
      ppo_atari_lstm.py): state = initial_state(N) is (h, c), each (layers, N, H); step(x (N, F), state,
      episode_starts (N,)) -> (y (N, H), state); forward_sequence(x (T, N, F), state, episode_starts (T, N))
      -> (y (T, N, H), state) replays a rollout segment for backpropagation through time. A True in
      episode_starts[t, n] zeroes env n's state before step t.
    """

    def __init__(self, obs_shape: tuple[int, ...], hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if len(obs_shape) not in (1, 2):
            raise ConfigError(
                f"encoder lstm reads feature vectors (F,) or sequences (T, F), got {tuple(obs_shape)}: "
                "put a CNN in front for images, or use encoder.name=transformer"
            )
        self.lstm = nn.LSTM(obs_shape[-1], hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        for name, p in self.lstm.named_parameters():
            nn.init.zeros_(p) if "bias" in name else nn.init.orthogonal_(p)
        self.state_shape = (num_layers, hidden_size)
        self.output_dim = hidden_size

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.zeros(*self.state_shape[:1], batch_size, self.state_shape[1], device=device)
        return h, h.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        x = x.unsqueeze(1) if x.dim() == 2 else x  # (B, T, F)
        y, _ = self.lstm(x.transpose(0, 1))  # (T, B, H)
        return y[-1]

    def forward_sequence(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        episode_starts: torch.Tensor,
        final_state: bool = True,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Cuts each env's column at its episode starts into pieces and runs all pieces as one batch through nn.LSTM
        (sb3-contrib's RecurrentPPO pads such sequences too): a piece starting at step 0 carries the given state (zeroed
        if episode_starts[0]), every other piece starts from zeros. The same numbers and gradients as stepping with
        resets, without a Python loop over time. x (T, N, F), episode_starts (T, N) -> y (T, N, H), state after step
        T-1. Pieces are padded at their ends, which leaves their outputs exact but not the state after a short piece:
        final_state=True packs them (exact state, a slower backward than padding), False returns None."""
        x = x.float()
        T, N = episode_starts.shape
        keep = (~episode_starts[0].bool()).to(x.dtype).view(1, -1, 1)  # (1, N, 1): 0 where an episode starts at step 0
        state = (state[0] * keep, state[1] * keep)
        starts = episode_starts.detach().bool().cpu()
        if T == 1 or not bool(starts[1:].any()):  # no reset inside: one call over the segment
            return self.lstm(x, state)
        begins = starts.clone()
        begins[0] = True
        begins = begins.t().reshape(-1)  # (N*T,) env-major: True where a piece begins
        piece = begins.cumsum(0) - 1  # (N*T,) piece of each step; pieces are numbered env by env
        first = begins.nonzero().squeeze(1)  # (S,) env-major position of each piece's first step
        S, lengths = len(first), torch.bincount(piece, minlength=len(first))  # (S,)
        L = int(lengths.max())
        env, t0 = first // T, first % T  # (S,)
        t = t0 + torch.minimum(
            torch.arange(L).view(-1, 1), lengths - 1
        )  # (L, S) step in each slot (padding repeats the last)
        device = x.device
        padded = x.reshape(T * N, -1)[(t * N + env).view(-1).to(device)].view(L, S, -1)  # (L, S, F)
        carried = (t0 == 0).to(device, x.dtype).view(1, -1, 1)  # (1, S, 1): the pieces that continue the given state
        h0, c0 = state[0][:, env.to(device)] * carried, state[1][:, env.to(device)] * carried  # (layers, S, H)
        if final_state:
            out, (h, c) = self.lstm(nn.utils.rnn.pack_padded_sequence(padded, lengths, enforce_sorted=False), (h0, c0))
            out = nn.utils.rnn.pad_packed_sequence(out, total_length=L)[0]  # (L, S, H)
        else:
            out, _ = self.lstm(padded, (h0, c0))  # (L, S, H)
        slot = (torch.arange(N * T) - first[piece]) * S + piece  # (N*T,) where step (t, n) sits in out, env-major
        y = out.reshape(L * S, -1)[slot.view(N, T).t().reshape(-1).to(device)].view(T, N, -1)  # (T, N, H)
        if not final_state:
            return y, None
        last = piece.view(N, T)[:, -1].to(device)  # (N,) each env's last piece
        return y, (h[:, last], c[:, last])

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        y, state = self.forward_sequence(x.unsqueeze(0), state, episode_starts.unsqueeze(0))
        return y[0], state


# ---------------------------------------------------------------------------------------------- transformer
def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """Vaswani et al. 2017, sec. 3.5: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...). -> (n, d)."""
    position = torch.arange(n, dtype=torch.float32).unsqueeze(1)  # (n, 1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))  # (ceil(d/2),)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: d // 2])
    return pe


class TransformerBlock(nn.Module):
    """Pre-norm block (Xiong et al. 2020): x + MHA(LN(x)), then x + MLP(LN(x)); attention through
    torch's scaled_dot_product_attention (fused / flash kernels where the device has them)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.ln1, self.qkv, self.proj = (
            nn.LayerNorm(d_model),
            nn.Linear(d_model, 3 * d_model),
            nn.Linear(d_model, d_model),
        )
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = (
            self.qkv(self.ln1(x)).view(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        )  # 3 x (B, h, N, D/h)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # (B, h, N, D/h)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, N, D)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TransformerEncoder(nn.Module):
    """Transformer encoder over tokens made from the observation, read out at a [CLS] token (ViT,
    Dosovitskiy et al. 2021):
    - images (C, H, W): non-overlapping patch_size x patch_size patches, linearly embedded (a strided conv);
    - sequences (T, F): one token per time step;
    - vectors (F,): one token per feature (its value times a learned vector), the position telling which.
    Positions are learned or sinusoidal; the output is LayerNorm of the [CLS] token, (B, d_model)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        patch_size: int = 4,
        positions: str = "learned",
        dropout: float = 0.0,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ConfigError(f"encoder transformer: d_model {d_model} is not a multiple of num_heads {num_heads}")
        self.image = len(obs_shape) == 3
        if self.image:
            if min(obs_shape[1:]) < patch_size:
                raise ConfigError(
                    f"encoder transformer: patch_size {patch_size} is larger than the image {tuple(obs_shape)}"
                )
            self.embed = nn.Conv2d(obs_shape[0], d_model, patch_size, stride=patch_size)
            n_tokens = (obs_shape[1] // patch_size) * (obs_shape[2] // patch_size)
        elif len(obs_shape) in (1, 2):
            self.embed = nn.Linear(obs_shape[-1] if len(obs_shape) == 2 else 1, d_model)
            n_tokens = obs_shape[0]
        else:
            raise ConfigError(
                f"encoder transformer reads images (C, H, W), sequences (T, F) or vectors (F,), got {tuple(obs_shape)}"
            )
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        if positions == "learned":
            self.pos = nn.Parameter(torch.empty(1, n_tokens + 1, d_model))
            nn.init.trunc_normal_(self.pos, std=0.02)
        else:
            self.register_buffer("pos", sinusoidal_positions(n_tokens + 1, d_model).unsqueeze(0), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[TransformerBlock(d_model, num_heads, dropout) for _ in range(num_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.output_dim = d_model
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def tokens(self, obs: torch.Tensor) -> torch.Tensor:
        if self.image:
            return self.embed(_pixels(obs)).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, d, H/p, W/p) -> (B, N, d)
        x = obs.float()
        return self.embed(x if x.dim() == 3 else x.unsqueeze(-1))  # (B, T, F) or (B, F, 1) -> (B, N, d)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.tokens(obs)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos  # (B, N + 1, d)
        return self.ln_f(self.blocks(self.drop(x))[:, 0])  # (B, d)


# ---------------------------------------------------------------------------------------------- registry
ENCODERS = {
    "mlp": lambda shape, c: MLP(shape, c.hidden_sizes, c.norm, c.dropout, c.activation),
    "nature_cnn": lambda shape, c: NatureCNN(shape, c.features_dim or 512),
    "impala": lambda shape, c: ImpalaCNN(shape, c.channels, c.features_dim or 256, c.dropout),
    "resnet_tower": lambda shape, c: ResidualTower(shape, c.tower_channels, c.tower_blocks),
    "lstm": lambda shape, c: LSTMEncoder(shape, c.lstm_hidden, c.lstm_layers, c.dropout),
    "transformer": lambda shape, c: TransformerEncoder(
        shape, c.d_model, c.num_heads, c.num_layers, c.patch_size, c.positions, c.dropout
    ),
}


def make_encoder(
    name: str, obs_shape: tuple[int, ...], hidden_sizes: tuple[int, ...] = (120, 84), **options
) -> nn.Module:
    """Build the encoder a config names (options: the other EncoderConfig fields); `auto` picks NatureCNN for
    images (C, H, W), MLP otherwise."""
    if name == "auto":
        name = "nature_cnn" if len(obs_shape) == 3 else "mlp"
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}: valid: {', '.join(ENCODERS)}")
    return ENCODERS[name](tuple(obs_shape), EncoderConfig(name=name, hidden_sizes=tuple(hidden_sizes), **options))


def encoder_from_config(config: EncoderConfig, obs_shape: tuple[int, ...], load_init: bool = True) -> nn.Module:
    """The encoder `config` describes, with `config.init` weights loaded (unless load_init is False: a checkpoint
    will overwrite them anyway) and frozen if `config.freeze`."""
    options = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in ("name", "hidden_sizes", "init", "freeze")
    }
    encoder = make_encoder(config.name, obs_shape, config.hidden_sizes, **options)
    if config.init and load_init:
        load_encoder(encoder, config.init, f"this {config.name} encoder for observations {tuple(obs_shape)}")
    if config.freeze:
        freeze(encoder)
    return encoder


def save_encoder(encoder: nn.Module, path: Path) -> None:
    """The encoder's state_dict as one safetensors file, written to a temporary name and renamed (atomic)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def _read_init(path: Path, wanted: list[str]) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a run folder: its encoder.safetensors (`rl supervised`), else the
    first network in its latest checkpoint whose `<prefix>.<key>` names cover the encoder (q.encoder., ...)."""
    from agents import checkpoint

    if path.is_dir() and (path / "encoder.safetensors").exists():
        path = path / "encoder.safetensors"
    if path.is_dir():
        tensors = checkpoint.load(checkpoint.latest(path / "checkpoints")).tensors
        # The online network's body first: q.encoder. (DQN) before target.encoder., agent.encoder. (PPO's policy
        # body) before agent.critic_encoder.
        prefixes = sorted(
            {k[: -len(w)] for k in tensors for w in wanted[:1] if k.endswith("." + w)},
            key=lambda p: (p.startswith("target."), not p.endswith(".encoder."), p),
        )
        for prefix in prefixes:
            if all(prefix + w in tensors for w in wanted):
                return {w: tensors[prefix + w] for w in wanted}
        raise ConfigError(
            f"encoder.init {str(path)!r}: its latest checkpoint holds no network with this encoder's tensors "
            f"(e.g. {wanted[0]!r}): was it trained with another encoder.name?"
        )
    if not path.is_file():
        raise ConfigError(f"encoder.init {str(path)!r} does not exist: give a .safetensors file or a run folder")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ConfigError(
            f"encoder.init {str(path)!r} is not a readable safetensors file ({str(e).splitlines()[0]})"
        ) from None


def load_encoder(encoder: nn.Module, path: str | Path, what: str = "this encoder") -> None:
    """Copy saved weights into `encoder`; a missing tensor or a shape mismatch is one ConfigError naming both."""
    own = encoder.state_dict()
    tensors = _read_init(Path(path), list(own))
    for key, value in own.items():
        if key not in tensors:
            raise ConfigError(
                f"encoder.init {str(path)!r} has no tensor {key!r} that {what} needs "
                f"(it holds {', '.join(list(tensors)[:3])}, ...): was it saved from another encoder.name?"
            )
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise ConfigError(
                f"encoder.init {str(path)!r}: tensor {key!r} has shape {tuple(tensors[key].shape)} in the file "
                f"but {tuple(value.shape)} in {what}"
            )
    encoder.load_state_dict({k: tensors[k] for k in own})


def _batch_norm_frozen_stats(self, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class FrozenStatsBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that always normalises with its running statistics (never updated) and keeps a learnable affine."""

    forward = _batch_norm_frozen_stats


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its running statistics (never updated) and keeps a learnable affine."""

    forward = _batch_norm_frozen_stats


def freeze_batch_norm_stats(module: nn.Module) -> nn.Module:
    """Every batch-norm layer in `module` normalises with its running statistics, in train mode too, and never updates
    them; its affine weight and bias still learn. An RL policy needs this: in train mode a BN layer's output for one
    state depends on the other states in its batch, so the log-probability a PPO update computes for an action (a
    minibatch of 256) differs from the one the rollout stored (a batch of num_envs) even before any weight moves, and
    the clipped ratio then throws gradients away. Frozen at initialisation (mean 0, var 1) the layer is an affine map;
    after supervised pretraining (encoder.init) it keeps the statistics of the data it learned from. The state_dict is
    unchanged (same class layout, same buffers)."""
    for m in module.modules():
        if type(m) is nn.BatchNorm1d:
            m.__class__ = FrozenStatsBatchNorm1d
        elif type(m) is nn.BatchNorm2d:
            m.__class__ = FrozenStatsBatchNorm2d
    return module


def freeze(encoder: nn.Module) -> None:
    """No gradients and fixed batch-norm statistics/no dropout: the encoder stays in eval mode even when the
    agent calls .train() on the whole network."""
    encoder.requires_grad_(False)
    encoder.eval()
    encoder.train = types.MethodType(lambda self, mode=True: self, encoder)
