"""Accelerator options shared by the agents: bf16 autocast (config key `amp`), torch.compile (`compile`) and the
channels-last layout of the convolutional networks.

bf16 autocast (mixed precision, Micikevicius et al. 2018, with bfloat16): matrix multiplies and
convolutions of the forward pass run in bf16, everything else, the weights, their gradients and the
optimizer state stay fp32 ("master weights"). bf16 has fp32's exponent range, so gradients do not
underflow and no loss scaling (GradScaler) is needed, unlike fp16. The networks return fp32, so every
loss, target and softmax downstream is computed in fp32. Works on CPU and CUDA alike.

torch.compile in its default mode: TorchDynamo captures the forward pass and Inductor fuses its
elementwise work into a few kernels (Triton on CUDA, C++ on CPU); autograd runs the compiled backward.
Not "reduce-overhead": its CUDA graphs keep each output in a buffer that the next call overwrites,
which the training loops would have to clone around (the rollout and the TD target keep outputs).
The module is compiled in place (`nn.Module.compile`), so its state_dict, checkpoints and optimizer
see the very same parameters as without it. A new input shape or grad mode compiles once more
(acting, updating and evaluating each get their own graph); the first calls are slow.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): only there does bf16 autocast pay."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def network_amp(amp: str, encoder: nn.Module) -> str:
    """What a network built with `amp` runs: "auto" stays auto for the convolutional encoders (resolved per device by
    `autocast`) and is "none" for the others, whose small matrix multiplies gain nothing from bf16."""
    convolutional = any(isinstance(m, nn.Conv2d) for m in encoder.modules())
    return "none" if amp == "auto" and not convolutional else amp


def autocast(amp: str, device_type: str) -> contextlib.AbstractContextManager:
    """The context the forward passes run under: bf16 autocast when amp == "bf16", or "auto" on a CPU with native
    bf16 (docs/BENCHMARKS.md measures the Nature CNN's update there); a no-op otherwise (nullcontext: ~1 us, against
    ~10 us for a disabled torch.autocast, per forward pass of a small MLP)."""
    bf16 = amp == "bf16" or (amp == "auto" and device_type == "cpu" and native_bf16())
    return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def nhwc(obs: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) laid out channels-last, as `channels_last` lays out the convolutions' weights."""
    return obs.contiguous(memory_format=torch.channels_last) if obs.dim() == 4 else obs


def channels_last(module: nn.Module, obs_shape: tuple[int, ...]) -> nn.Module:
    """The module's weights laid out channels-last when it reads images (obs_shape (C, H, W)): oneDNN's convolutions
    on CPU run faster on that layout (the Nature CNN's update at batch 32 and 256: ~1.3x in fp32, docs/BENCHMARKS.md).
    Only the strides change; the values, the state_dict's keys and shapes stay the same."""
    return module.to(memory_format=torch.channels_last) if len(obs_shape) == 3 else module


def pick_threads(torch_threads: int, network: nn.Module) -> None:
    """Config key `torch_threads`: N > 0 sets N; 0 gives a network without convolutions (MLP, LSTM, transformer)
    one thread and leaves a convolutional one torch's default (one per core). Small matrix multiplies gain little
    from a second thread and lose most when the cores are shared (DQN on CartPole, quiet / beside a second job:
    1,159 / 121 steps/s with 2 threads, 967 / 988 with 1; docs/BENCHMARKS.md, "Torch threads on a shared CPU")."""
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    elif not any(isinstance(m, nn.Conv2d) for m in network.modules()):
        torch.set_num_threads(1)


COMPILE_BACKEND = "inductor"  # torch.compile's default; tests on CPU swap in "aot_eager" (same capture, no C++ build)


def compile_in_place(module: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile the module's forward in place (default mode) when enabled; returns the module."""
    if enabled:
        module.compile(backend=COMPILE_BACKEND)
    return module
