"""Data-parallel training with torchrun and DistributedDataParallel, in one place.

`torchrun --nproc_per_node K -m agents.cli train ppo ...` starts K processes ("ranks") and sets RANK,
LOCAL_RANK and WORLD_SIZE in each; `init()` joins them into one process group (NCCL on CUDA, gloo on
CPU). Without those variables everything here is a no-op for one process (rank 0 of 1), so a plain
`rl train` runs exactly as before. Each rank steps its own envs; `wrap` makes the model a DDP module,
whose backward pass averages the gradients over ranks (Li et al. 2020, "PyTorch Distributed"), so every
optimizer step is the same on every rank and the parameters stay identical.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def launched() -> bool:
    """This process was started by torchrun (or another launcher that sets WORLD_SIZE) with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def relaunch(nproc: int) -> int:
    """Run this same command line (without --nproc) as `torchrun --standalone --nproc_per_node nproc -m
    agents.cli ...` through torch's elastic launcher; returns its exit code."""
    from torch.distributed.run import get_args_parser, run

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc"
            continue
        argv.append(arg)
    try:
        run(get_args_parser().parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "agents.cli", *argv]))
    except Exception as e:  # torch's ChildFailedError: a rank failed; its own error is already on stderr
        print(
            f"error: a training process failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            file=sys.stderr,
        )
        return 1
    return 0


def init() -> None:
    """Join torchrun's process group when WORLD_SIZE > 1 (idempotent); CUDA ranks take GPU LOCAL_RANK."""
    if launched() and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")


def close() -> None:
    """Leave the process group. After a normal end the ranks first meet at a barrier, so that they leave
    together: rank 0 may still be evaluating and checkpointing when the others finish. (Once in CI, rank 1
    died at exit with SIGABRT, "terminate called without an active exception", after rank 0 had finished;
    it left before rank 0 then. Whether that caused it is not shown: it did not recur in 80 runs here.)
    While an exception propagates there is no barrier: the other ranks may never reach it."""
    if dist.is_initialized():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one that writes the run folder, logs, shows progress, evaluates and checkpoints."""
    return rank() == 0


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` (a path, a small picklable value) on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over ranks (a new tensor; autograd does not flow through it)."""
    if world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out


def mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of a statistic over ranks (so that decisions taken on it agree)."""
    return all_reduce_sum(tensor) / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (a Ctrl-C seen by one rank stops all at the same step)."""
    if world_size() == 1:
        return flag
    return bool(all_reduce_sum(torch.tensor([int(flag)])).item())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around `model` when there are several ranks (it copies rank 0's parameters to all), else `model`."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def device_for_rank(device: torch.device) -> torch.device:
    """cuda -> cuda:LOCAL_RANK under torchrun, one GPU per rank; other devices unchanged."""
    if device.type == "cuda" and device.index is None and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / (std + 1e-8) with the mean and unbiased std of x over all ranks' x together, so that K
    ranks holding parts of a batch normalize it as one process holding all of it does. x (B,) -> (B,)."""
    if world_size() == 1:
        return (x - x.mean()) / (x.std() + 1e-8)
    n, s, ss = all_reduce_sum(
        torch.stack([torch.tensor(float(len(x)), device=x.device), x.sum(), (x * x).sum()]).detach()
    )
    mu = s / n
    var = (ss - n * mu * mu) / (n - 1)
    return (x - mu) / (var.clamp_min(0).sqrt() + 1e-8)
