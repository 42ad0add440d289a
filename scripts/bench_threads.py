"""Torch threads on a shared CPU: steps/s of `rl train` alone and beside a second identical job.

Each measurement runs the real command for a fixed wall time, stops it as Ctrl-C does, and reads the steps/s it
prints (training steps over training time, warm-up included, start-up excluded). "Loaded" starts the same command
twice at once, the usual way a 2-core machine gets shared (two runs, or a run beside the test suite), and reports
the slower of the two. Settings: torch's thread count (config key `torch_threads`; 0 is torch's default, one per
core) and OpenMP's wait policy (OMP_WAIT_POLICY: torch's threads spin between operations by default, PASSIVE makes
them sleep, so a thread whose core was taken does not keep the others spinning).

    python scripts/bench_threads.py --out docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import machine_line, write_section

SECTION = "## Torch threads on a shared CPU"
CASES = {  # name -> (algo, env, overrides): small replay and early learning so that updates start at once
    "dqn-mlp": ("dqn", "CartPole-v1", ["learning_starts=500"]),
    "ppo-mlp": ("ppo", "CartPole-v1", []),
    "dqn-cnn": ("dqn", "Pong", ["learning_starts=1000", "buffer_size=20000"]),
    "ppo-cnn": ("ppo", "Pong", []),
}
LABELS = {
    "dqn-mlp": "DQN, MLP (CartPole-v1)",
    "ppo-mlp": "PPO, MLP (CartPole-v1)",
    "dqn-cnn": "DQN, Nature CNN (Pong)",
    "ppo-cnn": "PPO, Nature CNN (Pong)",
}
SETTINGS = {  # name -> (torch_threads, OMP_WAIT_POLICY or None for unset)
    "2 threads": (2, None),
    "1 thread": (1, None),
    "2 threads, PASSIVE": (2, "PASSIVE"),
    "1 thread, PASSIVE": (1, "PASSIVE"),
}
SPS = re.compile(r"(?:finished|stopped) at step [\d,]+ \(([\d.,]+) SPS")


def command(case: str, threads: int, runs_dir: str) -> list[str]:
    algo, env, overrides = CASES[case]
    sets = overrides + [
        f"torch_threads={threads}",
        f"runs_dir={runs_dir}",
        "progress=false",
        "eval_frequency=0",
        "checkpoint_frequency=0",
    ]
    return ["rl", "train", algo, "--env", env, "--steps", "100000000"] + [a for s in sets for a in ("--set", s)]


def measure(case: str, setting: str, copies: int, seconds: float) -> float:
    """Steps/s of the slowest of `copies` identical runs started together and stopped after `seconds`."""
    threads, policy = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["OMP_WAIT_POLICY"] = policy or ""  # "": OpenMP's default (spin, then sleep); rl sets only an unset one
    with tempfile.TemporaryDirectory() as runs:
        procs = [
            subprocess.Popen(
                command(case, threads, f"{runs}/{i}"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(copies)
        ]
        try:
            outs = [p.communicate(timeout=seconds)[0] for p in procs]  # they never finish: 1e8 steps
        except subprocess.TimeoutExpired:
            for p in procs:
                p.send_signal(signal.SIGINT)
            outs = [p.communicate(timeout=120)[0] for p in procs]
    rates = [float(m.group(1).replace(",", "")) for out in outs if (m := SPS.search(out))]
    if len(rates) != copies:
        raise RuntimeError(f"{case} {setting}: no steps/s in the output:\n" + "\n".join(o[-500:] for o in outs))
    return min(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--seconds", type=float, default=30.0, help="wall time of each run")
    parser.add_argument("--out", type=Path, help="write/replace the section in this Markdown file")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    rows = []
    for case in args.cases:
        cells = []
        for setting in args.settings:
            alone, shared = (measure(case, setting, copies, args.seconds) for copies in (1, 2))
            cells.append(f"{alone:,.0f} / {shared:,.0f}")
            print(f"{LABELS[case]:<24} {setting:<20} alone {alone:8.1f}  beside a second job {shared:8.1f}", flush=True)
        rows.append(f"| {LABELS[case]} | " + " | ".join(cells) + " |")
    text = "\n".join(
        [
            SECTION,
            "",
            f"Measured with `python {shlex.join(sys.argv)}` (load average {load:.2f} at the start, {args.seconds:g} s "
            f"per run). Machine: {machine_line()}.",
            "Steps/s of `rl train` alone / beside a second identical job (the slower of the two), "
            "by torch thread count and OpenMP wait policy (unset: torch's threads spin; PASSIVE: they sleep).",
            "",
            "| run | " + " | ".join(args.settings) + " |",
            "|---" * (len(args.settings) + 1) + "|",
            *rows,
        ]
    )
    print(text)
    if args.out:
        write_section(args.out, SECTION, text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
