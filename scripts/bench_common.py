"""Helpers every benchmark script shares: timing a call, the machine line, and writing its section."""

from __future__ import annotations

import os
import platform
import re
import time
from importlib.metadata import version
from pathlib import Path

import torch

RAM_GB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def synchronize() -> None:
    """Wait for queued CUDA work (a no-op on CPU): GPU calls return before their kernels finish."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def seconds_per_call(fn, n: int) -> float:
    """Mean wall time of fn() over n calls, after a warm-up (allocator, kernel choice, Adam state)."""
    for _ in range(max(5, n // 20)):
        fn()
    synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    synchronize()
    return (time.perf_counter() - start) / n


def machine_line() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {RAM_GB:.0f} GB RAM; Python {platform.python_version()}, "
        f"torch {torch.__version__} (threads: {torch.get_num_threads()}), stable-baselines3 "
        f"{version('stable-baselines3')}, ale-py {version('ale-py')}"
    )


def write_section(path: Path, section: str, text: str) -> None:
    """Insert or replace one benchmark's `## ...` section, leaving the rest of the file as it is."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")
