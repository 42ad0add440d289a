"""Helpers every benchmark script shares: timing a call, the machine line, and writing its section; for the
agent-against-SB3 scripts (bench_dqn.py, bench_ppo.py) the precisions ours runs at, the phase schedule with its
network-only bounds, and the fp32 / bf16 / SB3 table."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.accel import autocast

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


def native_bf16() -> str:
    """Which bf16 units this CPU has: only with one does bf16 autocast run faster than fp32 (agents/accel.py)."""
    units = [
        name
        for name, present in (
            ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
            ("AMX", torch.cpu._is_amx_tile_supported()),
        )
        if present
    ]
    return f"native bf16: {' and '.join(units)}" if units else "no native bf16 (neither AVX512-BF16 nor AMX)"


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
        f"{cpu}, {os.cpu_count()} cores, {RAM_GB:.0f} GB RAM, {native_bf16()}; Python {platform.python_version()}, "
        f"torch {torch.__version__} (threads: {torch.get_num_threads()}), stable-baselines3 "
        f"{version('stable-baselines3')}, ale-py {version('ale-py')}"
    )


def write_section(path: Path, section: str, text: str) -> None:
    """Insert or replace one benchmark's `## ...` section, leaving the rest of the file as it is."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")


# ------------------------------------------------------------------ ours at fp32 and bf16 against SB3
Times = tuple[float, float]  # (seconds per update, seconds per acting forward pass) of one network-only bound


def precisions(settings: list[str], no_bf16: bool) -> tuple[str, ...]:
    """The values of config key `amp` ours is measured at: the one a `--set amp=...` names, alone;
    else "none" (fp32) and "bf16", or "none" alone with no_bf16."""
    named = [raw.strip() for key, _, raw in (item.partition("=") for item in settings) if key.strip() == "amp"]
    return (named[-1],) if named else ("none",) if no_bf16 else ("none", "bf16")


def precision_name(amp: str, device: str) -> str:
    """What agents/accel.py's autocast runs for `amp` on `device`: fp32, bf16, or for "auto" which of them."""
    name = "bf16" if isinstance(autocast(amp, torch.device(device).type), torch.autocast) else "fp32"
    return f"auto: {name}" if amp == "auto" else name


def run_labels(amps: tuple[str, ...], device: str, with_sb3: bool) -> dict[str, str]:
    """The runs in the order they are measured, keyed as bound_phase keys its times: ours at each amp, then SB3."""
    return {amp: f"ours {precision_name(amp, device)}" for amp in amps} | ({"sb3": "SB3 (fp32)"} if with_sb3 else {})


def precision_note(labels: dict[str, str]) -> str:
    """The sentence a section gives on the precision of each run."""
    ours = [label.removeprefix("ours ") for name, label in labels.items() if name != "sb3"]
    note = f"Ours runs in {' and in '.join(ours)}"
    if any("bf16" in precision for precision in ours):
        note += " (bf16: the forward passes under bf16 autocast, weights, gradients and Adam in fp32; agents/accel.py)"
    return note + ("; SB3 in fp32, as it has no bf16." if "sb3" in labels else ".")


def bound_phase(cfgs: dict[str, Any], bound_ours: Callable, bound_sb3: Callable | None, n: int, device: str) -> dict:
    """One network-only bound phase: {amp: Times} of ours at each precision (cfgs maps amp -> config), then
    {"sb3": Times} unless bound_sb3 is None; each bound_*(cfg, n, device) -> Times."""
    times = {amp: bound_ours(cfg, n, device) for amp, cfg in cfgs.items()}
    if bound_sb3 is not None:
        times["sb3"] = bound_sb3(next(iter(cfgs.values())), n, device)
    return times


def measure_in_turn(
    runs: dict[str, Callable[[], dict]], bound: Callable[[], dict], labels: dict[str, str]
) -> tuple[dict[str, dict], list[dict]]:
    """bound, run 1, bound, run 2, ..., bound: one at a time, never two at once. Each run is later divided by
    the mean of the two bounds measured on either side of it, which corrects for the host's drift.
    Returns ({name: the run's result}, [bound phase: {name: Times}])."""
    results, bounds = {}, []

    def next_bound() -> None:
        print(f"phase: network-only bound {len(bounds) + 1}/{len(runs) + 1}", flush=True)
        bounds.append(bound())

    next_bound()
    for name, run in runs.items():
        print(f"phase: {labels[name]} training", flush=True)
        results[name] = run()
        next_bound()
    return results, bounds


def mean_times(bounds: list[dict], name: str) -> Times:
    """(seconds per update, seconds per act) of `name`, averaged over the bound phases."""
    return tuple(float(np.mean([phase[name][i] for phase in bounds])) for i in range(2))


def bf16_over_fp32(bounds: list[dict], which: int) -> list[float]:
    """bf16's time over fp32's in each bound phase, for Times element `which` (0: update, 1: act)."""
    return [phase["bf16"][which] / phase["none"][which] for phase in bounds]


def precision_numbers(amps: tuple[str, ...], numbers_of: Callable[[str], dict], bounds: list[dict]) -> dict:
    """Ours in the --json numbers: the first precision's at the top level (scripts/bench_gpu.sh reads them
    there), and when bf16 ran beside fp32, its numbers under "bf16" and its update time over fp32's."""
    out = {"amp": amps[0], **numbers_of(amps[0])}
    if amps == ("none", "bf16"):
        out["bf16"] = numbers_of("bf16")
        out["bf16_over_fp32_update_time"] = float(np.mean(bf16_over_fp32(bounds, 0)))
    return out


def comparison_table(
    labels: dict[str, str],
    sps: dict[str, float],
    bounds: list[dict],
    bound_sps: Callable[[float, float], float],
    sps_measure: str,
    update_measure: str,
    extra_rows: Sequence[tuple[str, dict[str, str]]] = (),
) -> str:
    """Markdown: one column per run in `labels` (ours at each precision, keyed by amp, then "sb3"), in the order
    they ran, which measure_in_turn's bound phases follow; rows: training steps/s, each bound phase, steps/s over
    the bounds around the run, ours / SB3 and bf16 / fp32, then `extra_rows` (measure, {name: cell})."""
    names = list(labels)
    ms = lambda t: f"{1e3 * t:.1f}"  # noqa: E731
    row = lambda measure, cells: f"| {measure} | " + " | ".join(cells.get(n, "") for n in names) + " |"  # noqa: E731
    rows = [
        row("measure", labels),
        "|" + "---|" * (len(names) + 1),
        row(sps_measure, {n: f"{sps[n]:.1f}" for n in names}),
    ]
    for i, phase in enumerate(bounds):
        cells = {n: f"{ms(phase[n][0])}, {ms(phase[n][1])} -> {bound_sps(*phase[n]):.1f}" for n in names}
        rows.append(row(f"network-only bound {i + 1}/{len(bounds)}: {update_measure} ms, act ms -> steps/s", cells))
    # run i ran between bound phases i and i + 1
    around = {n: (bound_sps(*bounds[i][n]) + bound_sps(*bounds[i + 1][n])) / 2 for i, n in enumerate(names)}
    rows.append(
        row(
            "training steps/s / own bound (mean of the two measured around the run)",
            {n: f"{sps[n] / around[n]:.2f}" for n in names},
        )
    )
    if "sb3" in names:
        rows.append(row("ours / SB3 training steps/s", {n: f"{sps[n] / sps['sb3']:.2f}" for n in names if n != "sb3"}))
    if {"none", "bf16"} <= set(names):
        rows.append(row("bf16 / fp32 training steps/s", {"bf16": f"{sps['bf16'] / sps['none']:.2f}"}))
        for which, measure in enumerate((update_measure, "act")):
            ratios = bf16_over_fp32(bounds, which)
            rows.append(
                row(
                    f"bf16 / fp32 {measure} time (mean of the {len(bounds)} bound phases, range)",
                    {"bf16": f"{np.mean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"},
                )
            )
    rows += [row(measure, cells) for measure, cells in extra_rows]
    return "\n".join(rows)
