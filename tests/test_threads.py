"""The thread defaults for a shared CPU (agents/accel.py pick_threads, agents/cli.py): measured in
docs/BENCHMARKS.md, "Torch threads on a shared CPU"."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from agents.accel import pick_threads


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE"), ("", "")])
def test_rl_makes_openmp_threads_sleep_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, agents.cli; print(repr(os.environ.get('OMP_WAIT_POLICY')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == repr(expected)


def test_pick_threads_gives_small_networks_one_thread_and_leaves_convolutions_alone():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        pick_threads(0, nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8, 2)))
        assert torch.get_num_threads() == 2
        pick_threads(0, nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 2)))
        assert torch.get_num_threads() == 1
        pick_threads(3, nn.Linear(4, 2))  # an explicit count wins
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
