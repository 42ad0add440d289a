"""The GPU options (agents/accel.py, replay_device in agents/replay.py): what runs on CPU is tested here on
CPU, through the very code the GPU takes (bf16 autocast and torch.compile exist on both); what needs CUDA
is skipped here with the reason and runs wherever CUDA is present (scripts/bench_gpu.sh runs them)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import scalars

import agents.dqn
import envs
from agents import accel, checkpoint, dqn, ppo, registry
from agents import run as run_lib
from agents.config import ConfigError
from agents.replay import GPU_SHARE, FrameReplay, replay_device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (this path exists only on a GPU)")
GB = 10**9
SMALL = {
    "dqn": [
        "learning_starts=64",
        "train_frequency=4",
        "gradient_steps=1",
        "batch_size=32",
        "buffer_size=1000",
        "target_network_frequency=50",
        "log_frequency=32",
        "encoder.hidden_sizes=32,32",
    ],
    "ppo": [
        "num_envs=2",
        "num_steps=32",
        "num_minibatches=2",
        "update_epochs=2",
        "log_frequency=64",
        "encoder.hidden_sizes=16,16",
    ],
}
LOSS = {"dqn": "losses/td_loss", "ppo": "losses/value_loss"}


def _train(tmp_path, algo: str, steps: int, device: str, *extra: str, monkeypatch=None):
    """A short CartPole run of `algo`; returns (config, run folder, the network object that trained)."""
    made = []
    if monkeypatch is not None:  # record the live network, as tests/conftest.py tiny_run does
        module, name = (agents.dqn, "make_q_network") if algo == "dqn" else (ppo, "make_agent")
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    cfg = registry.resolve(
        algo,
        "CartPole-v1",
        "cartpole",
        overrides=[
            *SMALL[algo],
            f"total_timesteps={steps}",
            f"device={device}",
            "eval_frequency=0",
            "checkpoint_frequency=0",
            "progress=false",
            "torch_threads=1",
            f"runs_dir={tmp_path}",
            *extra,
        ],
    )
    run = run_lib.start(algo, cfg, "CartPole-v1")
    try:
        (dqn if algo == "dqn" else ppo).train(cfg, run)
    finally:
        run.close()
    return cfg, run.dir, made[0] if made else None


def _assert_trained_and_round_trips(algo: str, cfg, run_dir, live) -> None:
    """Losses finite; the checkpoint holds fp32 master weights bit-identical to the live network's, under the
    eager module's names; the network load_policy rebuilds from it scores states exactly as the live one."""
    losses = [v for _, v in scalars(run_dir)[LOSS[algo]]]
    assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    prefix = "q" if algo == "dqn" else "agent"
    saved = checkpoint.unprefixed(prefix, ckpt.tensors)
    assert saved.keys() == live.state_dict().keys()  # no "_orig_mod." from torch.compile
    assert all(t.dtype == torch.float32 and torch.equal(t, live.state_dict()[k].cpu()) for k, t in saved.items())
    env = envs.make("CartPole-v1", 1, 0)
    obs = (
        torch.randn(256, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 1.5, 0.15, 1.5])
    ).numpy()
    device = next(live.parameters()).device  # the same device: CPU and CUDA kernels round differently
    scores = (dqn if algo == "dqn" else ppo).action_scores(cfg, ckpt, env, device)(obs)
    with (
        torch.no_grad(),
        torch.compiler.set_stance("force_eager"),
    ):  # evaluation runs eager (no compile for a few games)
        out = live(torch.from_numpy(obs).to(device))
    expected = (out if algo == "dqn" else torch.softmax(out[0], 1)).cpu().numpy()
    np.testing.assert_array_equal(scores, expected)
    env.close()


# ---------------------------------------------------------------------------------------------- CPU
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_bf16_autocast_trains_with_fp32_master_weights(tmp_path, monkeypatch, algo):
    cfg, run_dir, live = _train(tmp_path, algo, 384, "cpu", "amp=bf16", monkeypatch=monkeypatch)
    _assert_trained_and_round_trips(algo, cfg, run_dir, live)
    obs = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    live.amp = "none"
    with torch.no_grad():
        fp32 = live(obs)
        live.amp = "bf16"
        bf16 = live(obs)
    fp32, bf16 = (x if algo == "dqn" else x[0] for x in (fp32, bf16))
    assert bf16.dtype == torch.float32  # losses downstream see fp32
    assert not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, rtol=0.05, atol=0.05)  # bf16 maths, bf16 rounding


def test_compiled_networks_train_dqn_and_ppo(tmp_path, monkeypatch):
    """compile=true through Dynamo's capture and AOTAutograd, as on a GPU, with the aot_eager backend: Inductor's
    code generation differs by device anyway (C++ here at ~9 s a graph, Triton on CUDA; the next test runs it once
    here, test_bf16_and_compile_train_on_cuda trains with it on CUDA)."""
    monkeypatch.setattr(accel, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for algo in ("dqn", "ppo"):
        with monkeypatch.context() as patch:
            cfg, run_dir, live = _train(
                tmp_path / algo, algo, 256, "cpu", "compile=true", "amp=bf16", monkeypatch=patch
            )
        assert live._compiled_call_impl is not None  # compiled in place
        _assert_trained_and_round_trips(algo, cfg, run_dir, live)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 4  # acting and updating graphs of both


@pytest.mark.slow
def test_inductor_compiled_network_matches_eager():
    """The one Inductor compile on CPU (one graph: ~10 s on a 2-core machine)."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = registry.resolve("ppo", "CartPole-v1", "cartpole", overrides=["compile=true", "encoder.hidden_sizes=16,16"])
    compiled = ppo.make_agent(cfg, (4,), 2)
    eager = ppo.make_agent(replace(cfg, compile=False), (4,), 2)
    eager.load_state_dict(compiled.state_dict())
    obs = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got, expected = compiled(obs), eager(obs)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    for x, y in zip(got, expected):
        torch.testing.assert_close(x, y)


def test_compile_leaves_names_and_evaluation_eager():
    cfg = registry.resolve("dqn", "CartPole-v1", "cartpole", overrides=["compile=true", "encoder.hidden_sizes=8"])
    compiled, eager = dqn.make_q_network(cfg, (4,), 2), dqn.make_q_network(replace(cfg, compile=False), (4,), 2)
    assert compiled._compiled_call_impl is not None and eager._compiled_call_impl is None
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints load either way
    ckpt = checkpoint.Checkpoint(
        path=None, step=0, tensors=checkpoint.prefixed("q", compiled.state_dict()), optimizer={}, state={}
    )
    assert dqn.load_network(cfg, ckpt, envs.make("CartPole-v1", 1, 0), torch.device("cpu"))._compiled_call_impl is None


def test_gpu_keys_are_checked():
    with pytest.raises(ConfigError, match="'amp' is 'fp16': did you mean 'bf16'"):
        registry.resolve("ppo", "CartPole-v1", "cartpole", overrides=["amp=fp16"])
    with pytest.raises(ConfigError, match="did you mean 'cuda'"):
        registry.resolve("dqn", "CartPole-v1", "cartpole", overrides=["replay_device=cud"])
    with pytest.raises(ConfigError, match="encoder.name=lstm"):
        registry.resolve("ppo", "CartPole-v1", "cartpole", overrides=["encoder.name=lstm", "compile=true"])


def test_replay_device_choice_from_memory_numbers():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    atari_1m = FrameReplay.frame_bytes(1_000_000, 1, (84, 84), torch.uint8)  # 7.1 GB of frames
    assert atari_1m == FrameReplay(1_000_000, 1, (84, 84), torch.uint8, 4)._flat_frames.nbytes
    assert replay_device("auto", cpu, atari_1m, None) == cpu
    assert replay_device("cpu", cpu, atari_1m, None) == cpu
    assert replay_device("auto", cuda, atari_1m, 78 * GB) == cuda  # an H100 with its 80 GB
    assert replay_device("auto", cuda, atari_1m, int(atari_1m / GPU_SHARE)) == cuda  # exactly the share
    assert replay_device("auto", cuda, atari_1m, int(atari_1m / GPU_SHARE) - 1) == cpu  # pinned host memory
    assert replay_device("auto", cuda, atari_1m, 10 * GB) == cpu  # a 12 GB card: over half its free memory
    assert replay_device("cpu", cuda, atari_1m, 78 * GB) == cpu
    assert replay_device("cuda", cuda, atari_1m, 10 * GB) == cuda  # asked for, and it fits
    with pytest.raises(ConfigError, match="needs 7.1 GB and cuda has 4.0 GB free"):
        replay_device("cuda", cuda, atari_1m, 4 * GB)
    with pytest.raises(ConfigError, match="training runs on cpu"):
        replay_device("cuda", cpu, atari_1m, None)


# ---------------------------------------------------------------------------------------------- CUDA
@CUDA
@pytest.mark.parametrize("replay", ["cuda", "cpu"])
def test_dqn_on_cuda_with_replay_on_device_or_pinned_host(tmp_path, monkeypatch, replay):
    made = []
    real = FrameReplay.__init__
    monkeypatch.setattr(FrameReplay, "__init__", lambda self, *a, **k: made.append(self) or real(self, *a, **k))
    cfg, run_dir, live = _train(tmp_path, "dqn", 384, "cuda", f"replay_device={replay}", monkeypatch=monkeypatch)
    assert made[0].frames.device.type == replay and made[0].sample_device.type == "cuda"
    assert made[0]._pinned == (replay == "cpu")
    _assert_trained_and_round_trips("dqn", cfg, run_dir, live)


@CUDA
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_bf16_and_compile_train_on_cuda(tmp_path, monkeypatch, algo):
    cfg, run_dir, live = _train(tmp_path, algo, 384, "cuda", "amp=bf16", "compile=true", monkeypatch=monkeypatch)
    assert next(live.parameters()).is_cuda
    _assert_trained_and_round_trips(algo, cfg, run_dir, live)


@CUDA
def test_go_env_on_cuda_plays_exactly_as_on_cpu():
    from envs.go.env import GoEnv

    games = {d: GoEnv(9, 64, seed=0, device=d, opponent=None) for d in ("cpu", "cuda")}
    first = {d: env.reset(seed=0) for d, env in games.items()}
    np.testing.assert_array_equal(first["cpu"][0], first["cuda"][0])
    mask, rng, ended = first["cpu"][1]["action_mask"], np.random.default_rng(0), 0
    for _ in range(300):  # random legal moves, weighted against passing so games last: captures, ko, ends
        weights = mask * np.r_[np.ones(81), 0.05]
        actions = np.array([rng.choice(82, p=w / w.sum()) for w in weights])
        out = {d: env.step(actions) for d, env in games.items()}
        for a, b in zip(out["cpu"][:4], out["cuda"][:4]):
            np.testing.assert_array_equal(a, b)
        for key in ("action_mask", "to_play"):
            np.testing.assert_array_equal(out["cpu"][4][key], out["cuda"][4][key])
        mask, ended = out["cpu"][4]["action_mask"], ended + int(out["cpu"][2].sum())
    assert ended > 0  # some games were scored on both devices
