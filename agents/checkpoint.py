"""Atomic checkpoints that never unpickle.

Layout of `checkpoints/step_<N>/`: model.safetensors (all networks, prefixed by name), optimizer.safetensors
(the optimizer's tensors) + its non-tensor part in state.json, state.json (step, counters, RNG states,
config, versions), optional replay/*.npy. A checkpoint is written into `.tmp-step_<N>-<pid>` and renamed
into place, then `latest.json` is replaced atomically: a crash at any moment leaves the previous
checkpoint complete and pointed to, and a half-written folder is never loaded.

`checkpoints/best/` holds the network weights of the run's best evaluation so far (model.safetensors, and state.json
with its step and mean return): no optimizer, no replay, so it plays but never resumes. Pruning never deletes it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

LATEST = "latest.json"
BEST = "best"


class CheckpointError(ValueError):
    """A missing or unreadable checkpoint; str(error) is one line for the user."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    tensors: dict[str, torch.Tensor]  # model.safetensors
    optimizer: dict[str, Any] | None  # a torch optimizer state_dict, rebuilt; None: weights only (checkpoints/best)
    state: dict[str, Any]  # state.json


def versions() -> dict[str, str]:
    import gymnasium
    import numpy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "gymnasium": gymnasium.__version__,
    }


def prefixed(prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Several networks share one model.safetensors: each one's tensors under `<prefix>.<name>`."""
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict of the network saved under `prefix` (inverse of `prefixed`)."""
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{prefix}.")}


def rng_to_json(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode()


def rng_from_json(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def _optimizer_split(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors for safetensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for idx, per_param in opt_state["state"].items():
        for key, v in per_param.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{key}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = v
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for flat, v in [*tensors.items(), *rest["scalars"].items()]:
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    return {"state": state, "param_groups": rest["param_groups"]}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no half-written file


def save(
    folder: Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    replay=None,
    keep: int = 2,
) -> Path:
    """Write checkpoints/step_<step>/ atomically, point latest.json at it, prune older ones. A write that fails (a
    full disk) removes what it wrote and is one CheckpointError line; the checkpoints before it stay as they were."""
    final = folder / f"step_{step}"
    if final.exists() and _named_by_latest(folder) == final.name:  # saved at this step (Ctrl-C after a periodic save)
        return final
    tmp = folder / f".tmp-step_{step}-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a step folder latest.json does not name was left by a process killed before it pointed latest.json there:
        # another trajectory's state, replaced
        for stale in (final, tmp):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "model.safetensors"))
        opt_tensors, opt_rest = _optimizer_split(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        if replay is not None:
            replay.save(tmp / "replay")
        # state.json is written last: its presence means the folder is complete.
        _write_json(tmp / "state.json", {**state, "step": step, "optimizer": opt_rest, "versions": versions()})
        os.rename(tmp, final)
        _write_json(folder / LATEST, {"step": step, "path": final.name})
    except Exception as e:  # a full disk, or a part that cannot be saved (replay.save's ValueError): no leftovers
        for written in (tmp, final):  # final: renamed into place, but latest.json does not name it
            shutil.rmtree(written, ignore_errors=True)
        if not isinstance(e, (OSError, SafetensorError)):
            raise
        reason = getattr(e, "strerror", None) or (str(e) or type(e).__name__).splitlines()[0]
        raise CheckpointError(
            f"cannot save checkpoint {str(final)!r}: {reason} (the checkpoints before it are untouched)"
        ) from None
    _prune(folder, keep, step)
    return final


def _named_by_latest(folder: Path) -> str | None:
    try:
        return json.loads((folder / LATEST).read_text())["path"]
    except (OSError, ValueError, KeyError, TypeError):  # ValueError: not JSON, not UTF-8
        return None


def _prune(folder: Path, keep: int, step: int) -> None:
    steps = sorted((int(p.name.split("_")[1]), p) for p in folder.glob("step_*") if p.name.split("_")[1].isdigit())
    # Folders past `step` are stale (a killed process renamed them in but never pointed latest.json at them):
    # counting them as the newest would prune the checkpoint latest.json now names.
    current = [(s, p) for s, p in steps if s <= step]
    # step_0 is kept: a checkpoint before any training step is the run's start (alphazero's supervised network)
    for _, p in [(s, p) for s, p in current[:-keep] if s > 0] + [(s, p) for s, p in steps if s > step]:
        shutil.rmtree(p, ignore_errors=True)
    # leftovers of a process killed while writing a checkpoint, latest.json or the best
    _tidy_best(folder)
    for p in [*folder.glob(".tmp-step_*"), *folder.glob(f".{LATEST}.tmp-*")]:
        if not p.name.endswith(f"-{os.getpid()}"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def latest(folder: Path) -> Path:
    """The newest complete checkpoint folder, as latest.json names it."""
    pointer = folder / LATEST
    if not pointer.exists():
        raise CheckpointError(f"no checkpoint in {str(folder)!r}: {LATEST} is missing (was the run ever checkpointed?)")
    try:
        path = folder / json.loads(pointer.read_text())["path"]
    except (OSError, ValueError, KeyError, TypeError):  # ValueError: not JSON, not UTF-8
        raise CheckpointError(f"{str(pointer)!r} is corrupt") from None
    if not (path / "state.json").exists():
        raise CheckpointError(f"checkpoint {str(path)!r} named by {LATEST} is incomplete or missing")
    return path


def load(path: Path) -> Checkpoint:
    """Read one checkpoint folder (safetensors + JSON only)."""
    name = "state.json"  # the file being read, for the message (safetensors' FileNotFoundError has no filename)
    try:
        state = json.loads((path / name).read_text())
        name = "model.safetensors"
        tensors = load_file(str(path / name))
        optimizer = None
        if not state.get("weights_only"):
            name = "optimizer.safetensors"
            opt_tensors = load_file(str(path / name))
            name = "state.json"
            optimizer = _optimizer_join(opt_tensors, state.pop("optimizer"))
        name = "state.json"
        step = int(state["step"])
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} is missing {name}") from None
    except (ValueError, KeyError, TypeError, AttributeError, SafetensorError, OSError) as e:  # ValueError: JSON, UTF-8
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: {name} ({type(e).__name__})") from None
    return Checkpoint(path=path, step=step, tensors=tensors, optimizer=optimizer, state=state)


# ---------------------------------------------------------------------------------------------- the best evaluation
def best(folder: Path) -> Path | None:
    """checkpoints/best, or None before any evaluation. A process killed between save_best's two renames left the
    previous best set aside in `.old-best` and no `best`: that one is the best."""
    for path in (folder / BEST, folder / ".old-best"):
        if (path / "state.json").exists():
            return path
    return None


def best_evaluation(folder: Path) -> tuple[int, float] | None:
    """(step, mean return) of checkpoints/best, or None before any evaluation. An unreadable best counts as none: the
    next evaluation replaces it, rather than its error stopping the training."""
    if (path := best(folder)) is None:
        return None
    try:
        state = json.loads((path / "state.json").read_text())
        return int(state["step"]), float(state["return"])
    except (OSError, ValueError, KeyError, TypeError):  # ValueError: not JSON, not UTF-8
        return None


def save_best(folder: Path, step: int, mean: float, tensors: dict[str, torch.Tensor]) -> float:
    """Write `tensors` (the playing network's weights only) as checkpoints/best when the evaluation's `mean` return
    is strictly higher than best's own; returns the best return after this evaluation. The new best is written whole
    into `.tmp-best`, the old one renamed aside to `.old-best`, the new one renamed in, the old one deleted: killed at
    any moment, the folder keeps a complete best (`best` finds the one set aside)."""
    current = best_evaluation(folder)
    if current is not None and not mean > current[1]:
        return current[1]
    final, tmp = folder / BEST, folder / ".tmp-best"
    try:
        _tidy_best(folder)  # what a process killed in here left
        folder.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "model.safetensors"))
        _write_json(tmp / "state.json", {"step": step, "return": mean, "weights_only": True, "versions": versions()})
        if final.exists():
            os.rename(final, folder / ".old-best")
        os.rename(tmp, final)
    except (OSError, SafetensorError) as e:
        _tidy_best(folder)  # the previous best back in place, the new one's folder removed
        reason = getattr(e, "strerror", None) or (str(e) or type(e).__name__).splitlines()[0]
        raise CheckpointError(
            f"cannot save the best checkpoint {str(final)!r}: {reason} (the previous best is untouched)"
        ) from None
    _tidy_best(folder)  # the previous best, set aside, deleted
    return mean


def _tidy_best(folder: Path) -> None:
    """Put a best set aside back when `best` is missing, and remove the temp folder and the set-aside copy."""
    final, old = folder / BEST, folder / ".old-best"
    if not final.exists() and (old / "state.json").exists():
        with contextlib.suppress(OSError):  # should this fail too, `best` keeps finding the one set aside
            os.rename(old, final)
    shutil.rmtree(folder / ".tmp-best", ignore_errors=True)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
