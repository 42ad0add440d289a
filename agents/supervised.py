"""Supervised training of any encoder (`rl supervised MODEL --data DATASET`), to check it learns and to pretrain it.

The model is encoder (agents/encoders.py) + one linear layer, trained with cross-entropy on data that ships
offline: scikit-learn's handwritten digits (Alpaydin & Kaynak 1998; 1,797 8x8 images) as images (1, 8, 8)
or as sequences of 8 rows of 8 pixels, generated parity of random bit strings (a memory task: the label
depends on every bit), and Go positions with GNU Go's moves (scripts/gnugo_games.py; `--set data_path=FILE.npz`):
the supervised policy network of AlphaGo (Silver et al. 2016), whose illegal moves are masked out of the softmax
and whose games are split whole between train, validation and test (positions of one game are alike). The
field's training options are all here: SGD with (Nesterov) momentum, Adagrad,
RMSprop, Adam, AdamW; L1/L2 penalties; dropout and batch/layer norm (encoder options); early stopping on
the validation loss (Prechelt 1998); random-shift augmentation; cosine/step/linear learning-rate schedules.

The run folder is an agent's (config.yaml, TensorBoard, checkpoints/) plus `metrics.json`, a confusion
matrix `confusion_matrix.png` of the test split and `encoder.safetensors`, which any agent loads with
`--set encoder.init=RUN_DIR` (or the file's path).

Under torchrun (agents/distributed.py) every rank draws the same batch order and takes its 1/K share of
each batch; DDP averages the gradients, so a step is the one-process step on the whole batch (exactly
when K divides the batch). Every rank validates (same weights, same early stop); rank 0 writes.
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents import checkpoint, distributed
from agents.config import ConfigError, RunFields, option
from agents.encoders import encoder_from_config, save_encoder
from agents.rollout import masked_logits
from agents.run import Run, run_folder


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SupervisedConfig(RunFields):
    """`rl supervised MODEL --data DATASET` (agents/supervised.py): an encoder + a linear classifier trained on
    data that ships offline; its encoder weights then load into any agent through encoder.init."""

    # digits: 8x8 images (1, 8, 8); digit_rows: the same as 8 steps of 8 pixels; parity: bit strings;
    # go: GNU Go's moves in positions of the file data_path (scripts/gnugo_games.py)
    data: str = option("digits", choices=("digits", "digit_rows", "parity", "go"))
    epochs: int = option(30, positive=True)
    batch_size: int = option(64, positive=True)
    # --- optimisation
    optimizer: str = option("adam", choices=("sgd", "adagrad", "rmsprop", "adam", "adamw"))
    learning_rate: float = option(1e-3, positive=True)
    momentum: float = option(0.9, low=0, high=1)  # sgd, rmsprop
    nesterov: bool = False  # sgd: Nesterov momentum (Sutskever et al. 2013)
    weight_decay: float = 0.0  # the optimizer's own: coupled L2 for sgd/adagrad/rmsprop/adam, decoupled for adamw
    l1: float = 0.0  # coefficient of the L1 penalty sum|w| on weight matrices (not biases or norms) added to the loss
    l2: float = 0.0  # coefficient of the L2 penalty sum w^2 on weight matrices added to the loss
    max_grad_norm: float = 0.0  # 0 disables gradient clipping
    # learning rate over the epochs (linear: to 0)
    schedule: str = option("constant", choices=("constant", "cosine", "step", "linear"))
    step_size: int = option(10, positive=True)  # step schedule: epochs between decays
    step_gamma: float = 0.1  # step schedule: decay factor
    # --- data
    shift: int = 0  # augmentation for digits: random shifts of up to this many pixels (0 = none)
    val_fraction: float = option(0.1, low=0, high=1)  # of the training split, held out for early stopping
    test_fraction: float = option(0.2, low=0, high=1)  # stratified test split
    patience: int = 0  # early stopping: epochs without a better validation loss before stopping (0 = never stop)
    sequence_length: int = option(16, positive=True)  # parity: bits per sequence
    num_samples: int = option(4000, positive=True)  # parity: sequences generated
    data_path: str = ""  # go: the .npz file of scripts/gnugo_games.py
    # --- checkpoints
    checkpoint_frequency: int = 10  # epochs between checkpoints; 0: only at the end


Config = SupervisedConfig  # the registry's protocol (agents/registry.py): every algorithm names its config class


# ---------------------------------------------------------------------------------------------- data
class Split(NamedTuple):
    x: torch.Tensor  # (N, *obs_shape) float32 (go: uint8 planes, made float a batch at a time)
    y: torch.Tensor  # (N,) int64 class labels
    mask: torch.Tensor | None = None  # (N, n_classes) bool: the classes allowed (go: legal moves); None: all


class Dataset(NamedTuple):
    train: Split
    val: Split
    test: Split
    obs_shape: tuple[int, ...]
    n_classes: int
    grid: bool  # the last two axes are an image grid (shift augmentation applies)


def load_data(config: SupervisedConfig) -> Dataset:
    """Stratified train/validation/test splits, fixed by config.seed (go: split by game, load_go)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if config.shift and config.data in ("parity", "go"):
        raise ConfigError(f"config key 'shift' shifts digit images: set shift=0 for data={config.data}")
    if config.data == "go":
        return load_go(config)
    if config.data in ("digits", "digit_rows"):
        digits = load_digits()
        x = digits.images.astype(np.float32) / 16.0  # (1797, 8, 8), pixels 0..16 -> [0, 1]
        x = x[:, None] if config.data == "digits" else x  # images (N, 1, 8, 8) | 8 time steps of 8 pixels (N, 8, 8)
        y = digits.target
    else:  # parity of random bit strings, one bit per time step: (N, L, 1)
        rng = np.random.default_rng(config.seed)
        bits = rng.integers(0, 2, (config.num_samples, config.sequence_length))
        x, y = bits[..., None].astype(np.float32), bits.sum(axis=1) % 2
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=config.test_fraction, stratify=y, random_state=config.seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=config.val_fraction, stratify=y_rest, random_state=config.seed
    )
    split = lambda a, b: Split(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(b).long())  # noqa: E731
    return Dataset(
        split(x_train, y_train),
        split(x_val, y_val),
        split(x_test, y_test),
        tuple(x.shape[1:]),
        int(y.max()) + 1,
        config.data != "parity",
    )


GO_KEYS = ("obs", "action", "legal", "game")
MAKE_GO_DATA = "python scripts/gnugo_games.py --size 5 --games 200 --out FILE.npz"


def read_go_file(path: str, key: str = "data_path", extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays GO_KEYS (and `extra`) of a scripts/gnugo_games.py file (np.load without pickles), checked; a
    ConfigError naming the config `key` otherwise."""
    if not path:
        raise ConfigError(f"data=go needs a file of positions: --set {key}=FILE.npz (make one with: {MAKE_GO_DATA})")
    if not Path(path).is_file():
        raise ConfigError(f"{key} {path!r} does not exist (make one with: {MAKE_GO_DATA})")
    keys = (*GO_KEYS, *extra)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in keys if k in f.files}
    except (OSError, ValueError, AttributeError, zipfile.BadZipFile) as e:  # AttributeError: a .npy array, no .files
        raise ConfigError(
            f"{key} {path!r} is not a readable .npz file ({type(e).__name__}): make one with: {MAKE_GO_DATA}"
        ) from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ConfigError(
            f"{key} {path!r} has no {', '.join(missing)}: it holds {', '.join(arrays) or 'nothing usable'}, "
            f"not the positions of scripts/gnugo_games.py"
        )
    obs, action, legal, game = (arrays[k] for k in GO_KEYS)
    P = len(action)
    if (
        obs.ndim != 4
        or obs.shape[2] != obs.shape[3]
        or legal.shape != (P, obs.shape[2] ** 2 + 1)
        or len(obs) != P
        or game.shape != (P,)
    ):
        raise ConfigError(
            f"{key} {path!r}: inconsistent shapes obs {obs.shape}, action {action.shape}, legal {legal.shape}, "
            f"game {game.shape}; expected (P, 2k+1, N, N), (P,), (P, N*N+1), (P,)"
        )
    if P == 0 or not legal[np.arange(P), np.clip(action, 0, legal.shape[1] - 1)].all() or action.min() < 0:
        raise ConfigError(f"{key} {path!r}: no positions, or a move target that its own legal mask forbids")
    return arrays


def load_go(config: SupervisedConfig) -> Dataset:
    """Positions of scripts/gnugo_games.py: test_fraction of the games for test, val_fraction of the others for
    validation (whole games, chosen by config.seed); classes are the N*N+1 moves, masked by `legal`."""
    from sklearn.model_selection import GroupShuffleSplit

    arrays = read_go_file(config.data_path)
    obs, action, legal, game = (arrays[k] for k in GO_KEYS)
    if len(np.unique(game)) < 3:
        raise ConfigError(
            f"data_path {config.data_path!r} holds {len(np.unique(game))} game(s): a train/validation/test "
            "split by game needs at least 3 (--games 3 or more)"
        )

    def split_of(idx, frac):
        return next(GroupShuffleSplit(1, test_size=frac, random_state=config.seed).split(idx, groups=game[idx]))

    every = np.arange(len(action))
    rest, test = split_of(every, config.test_fraction)
    train, val = (rest[i] for i in split_of(rest, config.val_fraction))

    def pick(idx):
        return Split(torch.from_numpy(obs[idx]), torch.from_numpy(action[idx]).long(), torch.from_numpy(legal[idx]))

    return Dataset(pick(train), pick(val), pick(test), tuple(obs.shape[1:]), legal.shape[1], grid=False)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels in each direction, filling with zeros (the augmentation of
    LeCun et al. 1998 / DrQ's random shift). x (B, ..., H, W) -> same shape."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    padded = F.pad(x, (max_shift,) * 4).reshape(B, -1, H + 2 * max_shift, W + 2 * max_shift)  # (B, C, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, B), generator=generator)
    rows = (dy[:, None] + torch.arange(H))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(W))[:, None, :]  # (B, 1, W)
    out = padded[torch.arange(B)[:, None, None], :, rows, cols]  # advanced indices first: (B, H, W, C)
    return out.permute(0, 3, 1, 2).reshape(x.shape)


# ---------------------------------------------------------------------------------------------- model, maths
class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # (B, n_classes) logits


def weight_penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor:
    """l1 * sum|w| + l2 * sum w^2 over weight matrices and kernels (dim >= 2): biases, norms' scales and
    position embeddings are left alone, as is usual (e.g. Goodfellow et al. 2016, sec. 7.1)."""
    weights = [p for name, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and "pos" not in name]
    total = torch.zeros((), device=weights[0].device if weights else None)
    for w in weights:
        if l1:
            total = total + l1 * w.abs().sum()
        if l2:
            total = total + l2 * w.pow(2).sum()
    return total


def make_optimizer(params, config: SupervisedConfig) -> torch.optim.Optimizer:
    lr, wd = config.learning_rate, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0, weight_decay=wd
        )
    if config.optimizer == "adagrad":  # Duchi et al. 2011
        return torch.optim.Adagrad(params, lr, weight_decay=wd)
    if config.optimizer == "rmsprop":  # Tieleman & Hinton 2012
        return torch.optim.RMSprop(params, lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adamw":  # Loshchilov & Hutter 2019: decay decoupled from the gradient
        return torch.optim.AdamW(params, lr, weight_decay=wd)
    return torch.optim.Adam(params, lr, weight_decay=wd)  # Kingma & Ba 2015


def lr_factor(schedule: str, epoch: int, epochs: int, step_size: int, step_gamma: float) -> float:
    """Multiplier of the learning rate during `epoch` (0-based): cosine annealing without restarts (Loshchilov &
    Hutter 2017), step decay, linear decay to 0, or constant."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "step":
        return step_gamma ** (epoch // step_size)
    if schedule == "linear":
        return 1.0 - epoch / epochs
    return 1.0


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, device: torch.device, batch_size: int = 512
) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy, predictions (N,)) with the model in eval mode; masked classes excluded."""
    model.eval()
    logits = torch.cat(
        [model(split.x[i : i + batch_size].to(device).float()).cpu() for i in range(0, len(split.y), batch_size)]
    )
    logits = masked_logits(logits, split.mask)
    return (
        F.cross_entropy(logits, split.y).item(),
        (logits.argmax(1) == split.y).float().mean().item(),
        logits.argmax(1),
    )


def save_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    few = len(np.union1d(y_true, y_pred)) <= 20  # a count in each cell only where they stay readable
    display = ConfusionMatrixDisplay.from_predictions(y_true, y_pred, colorbar=not few, include_values=few)
    display.ax_.set_title(title)
    display.figure_.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(display.figure_)


# ---------------------------------------------------------------------------------------------- training
def check(config: SupervisedConfig) -> None:
    """Raise the ConfigError a run would hit (data options, encoder vs data shape, encoder.init) before the CLI
    creates a run folder."""
    encoder_from_config(config.encoder, load_data(config).obs_shape)


def train(config: SupervisedConfig, run: Run) -> dict[str, Any]:
    device = run.device
    data = load_data(config)
    torch.manual_seed(config.seed)
    model = Classifier(encoder_from_config(config.encoder, data.obs_shape), data.n_classes).to(device)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    rng = torch.Generator().manual_seed(config.seed)  # batch order and shifts, the same on every rank
    learner, rank, world = distributed.wrap(model, device), distributed.rank(), distributed.world_size()
    best_val, best_state, bad_epochs, epoch, seen = math.inf, None, 0, 0, 0
    start_time = time.time()

    def save_checkpoint() -> None:
        if distributed.is_main():
            checkpoint.save(
                run.checkpoint_dir,
                epoch,
                checkpoint.prefixed("model", model.state_dict()),
                optimizer,
                {
                    "best_val_loss": best_val,
                    "bad_epochs": bad_epochs,
                    "obs_shape": list(data.obs_shape),
                    "n_classes": data.n_classes,
                },
                keep=config.keep_checkpoints,
            )

    while epoch < config.epochs and not distributed.any_rank(run.stop_requested):
        # 1. one pass over the shuffled training split
        factor = lr_factor(config.schedule, epoch, config.epochs, config.step_size, config.step_gamma)
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * factor
        model.train()
        losses, correct, count = [], 0, 0
        order = torch.randperm(len(data.train.y), generator=rng)
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < world:  # a last batch too small for one example per rank
                continue
            x, y = data.train.x[idx].float(), data.train.y[idx]
            mask = None if data.train.mask is None else data.train.mask[idx].tensor_split(world)[rank].to(device)
            if config.shift and data.grid:
                x = random_shift(x, config.shift, rng)
            x, y = x.tensor_split(world)[rank], y.tensor_split(world)[rank]  # this rank's share of the batch
            logits = masked_logits(learner(x.to(device)), mask)
            loss = F.cross_entropy(logits, y.to(device)) + weight_penalty(model, config.l1, config.l2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            losses.append(loss.detach())
            correct, count = correct + (logits.argmax(1).cpu() == y).sum().item(), count + len(y)
        epoch, seen = epoch + 1, seen + len(order)
        correct, count = distributed.all_reduce_sum(torch.tensor([correct, count])).tolist()

        # 2. validation, early stopping on its loss (the best weights are kept)
        val_loss, val_acc, _ = evaluate(model, data.val, device)
        run.log(
            epoch,
            {
                "supervised/train_loss": torch.stack(losses).mean().item(),
                "supervised/train_accuracy": correct / count,
                "supervised/val_loss": val_loss,
                "supervised/val_accuracy": val_acc,
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
            },
        )
        if val_loss < best_val:
            best_val, bad_epochs = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        run.progress(epoch, config.epochs, seen / max(time.time() - start_time, 1e-9), None)
        if config.checkpoint_frequency and epoch % config.checkpoint_frequency == 0:
            run.write_checkpoint(save_checkpoint)
        if config.patience and bad_epochs >= config.patience:
            break

    # 3. test the weights of the best validation loss; save the picture, the metrics and the encoder
    elapsed = time.time() - start_time
    if config.patience and best_state is not None:
        model.load_state_dict(best_state)
    test_loss, test_acc, predictions = evaluate(model, data.test, device)
    metrics = {
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "best_val_loss": best_val,
        "epochs": epoch,
        "train_size": len(data.train.y),
        "val_size": len(data.val.y),
        "test_size": len(data.test.y),
        "seconds": elapsed,
    }
    if data.test.mask is not None:  # the accuracy of a uniformly random allowed class (go: a random legal move)
        metrics["chance_accuracy"] = (1.0 / data.test.mask.sum(1).double()).mean().item()
    summary = {
        **metrics,
        "step": epoch,
        "finished": epoch >= config.epochs or bool(config.patience and bad_epochs >= config.patience),
        "sps": seen / max(elapsed, 1e-9),
        "evals": [],
    }
    if not distributed.is_main():
        return summary
    run.log(epoch, {"test/loss": test_loss, "test/accuracy": test_acc})
    save_confusion_matrix(
        data.test.y.numpy(),
        predictions.numpy(),
        run.dir / "confusion_matrix.png",
        f"{config.encoder.name} on {config.data}: test accuracy {test_acc:.1%}",
    )
    save_encoder(model.encoder, run.dir / "encoder.safetensors")
    run.write_checkpoint(save_checkpoint)
    (run.dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return summary


# ---------------------------------------------------------------------------------------------- reuse
def load_classifier(run_dir: Path, device: torch.device) -> tuple[SupervisedConfig, Classifier]:
    """The encoder + linear head of a supervised run's latest checkpoint, in eval mode on `device`."""
    from agents import config as config_lib

    path = run_folder(run_dir) / "config.yaml"
    algo, values = config_lib.read_saved(path)
    if algo != "supervised":
        raise checkpoint.CheckpointError(
            f"{str(run_dir)!r} is a {algo} run, not a supervised one (rl supervised MODEL --data go)"
        )
    config = config_lib.from_saved(SupervisedConfig, values, str(path))
    ckpt = checkpoint.load(checkpoint.latest(Path(run_dir) / "checkpoints"))
    if "obs_shape" not in ckpt.state:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(ckpt.path)!r} does not record its input shape: train the run again"
        )
    encoder = encoder_from_config(
        replace(config.encoder, init="", freeze=False), tuple(ckpt.state["obs_shape"]), load_init=False
    )
    model = Classifier(encoder, int(ckpt.state["n_classes"]))
    model.load_state_dict(checkpoint.unprefixed("model", ckpt.tensors))
    return config, model.to(device).eval()


def greedy_policy(model: Classifier, device: torch.device):
    """policy(obs (B, ...), action_mask (B, A) bool | None) -> (B,) int64: the most likely allowed class, e.g. a
    supervised Go network playing its top legal move (agents/evaluate.py's policy convention)."""

    @torch.no_grad()
    def policy(obs: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        logits = model(torch.as_tensor(obs, device=device).float())  # (B, A)
        mask = None if action_mask is None else torch.as_tensor(action_mask, device=device)
        return masked_logits(logits, mask).argmax(1).cpu().numpy()

    return policy
