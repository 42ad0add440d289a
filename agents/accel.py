"""Accelerator options shared by the agents: bf16 autocast (config key `amp`) and torch.compile (`compile`).

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

import torch
from torch import nn


def autocast(amp: str, device_type: str) -> contextlib.AbstractContextManager:
    """The context the forward passes run under: bf16 autocast when amp == "bf16", a no-op for "none"
    (nullcontext: ~1 us, against ~10 us for a disabled torch.autocast, per forward pass of a small MLP)."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()


COMPILE_BACKEND = "inductor"  # torch.compile's default; tests on CPU swap in "aot_eager" (same capture, no C++ build)


def compile_in_place(module: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile the module's forward in place (default mode) when enabled; returns the module."""
    if enabled:
        module.compile(backend=COMPILE_BACKEND)
    return module
