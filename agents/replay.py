"""Replay memory that stores each observation frame once, with n-step returns (DQN family).

Row layout. The N sub-envs step in lockstep, so one absolute (never wrapped) row counter serves all
of them; row k lives in slot k % rows of every array. Row k of env e holds
    frame[k]       the newest frame of the obs the env returned at step k (Atari: one 84x84 frame)
    action[k], reward[k], terminated[k], truncated[k]   the step taken from that obs
    first[k]       obs k is a reset obs (the start of an episode)
The newest row (rows_written - 1) is pending: its frame is stored, its step not yet.

States. The stack for row k is frames k-S+1..k (S = frame_stack, oldest first); frames before the
episode's first row are zeros, exactly as the env fills a reset obs [0, 0, 0, first_frame]. Life
losses are not episode starts, so stacks run across them (the game goes on).

n-step (Sutton & Barto 7.1; dqn_zoo's names). From row k the window runs m = n steps, or stops after
the first step with terminated or truncated (m = j + 1). r_t = sum_{j<m} gamma^j reward[k+j];
discount_t = 0 if terminated[k+m-1] (no bootstrap: true end or life loss) else gamma^m (truncation
bootstraps from the final obs); s_t is the stack of row k+m.

Validity of (k, e): rows k+1..k+m all written; no first among rows k+1..k+m (this excludes the fake
NEXT_STEP autoreset transition final obs -> reset obs, whose next row is first); and every frame the
stack of row k needs (those not zeroed) still stored, i.e. not overwritten by the cursor. A resume
(add_first after data) marks the last stored step truncated, so windows stop at the pending obs and
bootstrap from it, and the pending row becomes the fake transition into the new reset obs.

Devices (config key replay_device, `replay_device` below). The frames live on `device`; samples come
out on `sample_device`. When both are the training GPU, a sample is an index_select on the GPU. When
the frames stay in host memory for a GPU learner, a sample is gathered on the host into page-locked
(pinned) memory and copied with non_blocking=True: the copy runs on the GPU's copy engine while the
host goes on, and torch's caching host allocator keeps each pinned block until its copy has finished.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import NamedTuple

import numpy as np
import torch

from agents.config import ConfigError

_ARRAYS = ("frames", "action", "reward", "terminated", "truncated", "first")


class ReplaySample(NamedTuple):
    s_tm1: torch.Tensor  # (B, *state_shape) stored dtype
    a_tm1: torch.Tensor  # (B,) int64
    r_t: torch.Tensor  # (B,) float32 n-step discounted reward sum
    discount_t: torch.Tensor  # (B,) float32 gamma^m, or 0 when a terminal came within the window
    s_t: torch.Tensor  # (B, *state_shape) state m steps later


GPU_SHARE = 0.5  # replay_device=auto: the frames may take this share of the GPU's free memory


def replay_device(requested: str, device: torch.device, frame_bytes: int, free_bytes: int | None) -> torch.device:
    """Where the frames live for a learner on `device` (config key replay_device): `free_bytes` is the GPU's
    free memory (torch.cuda.mem_get_info), None on CPU. auto: on the GPU when the frames take at most
    GPU_SHARE of its free memory (networks, activations and the allocator's cache need the rest), else in
    host memory, sampled through pinned buffers; cpu: host memory; cuda: the learner's GPU."""
    if device.type != "cuda":
        if requested == "cuda":
            raise ConfigError(
                f"config key 'replay_device' is 'cuda' but training runs on {device}: use replay_device=auto or cpu"
            )
        return torch.device("cpu")
    if requested == "cuda" and free_bytes is not None and frame_bytes > free_bytes:
        raise ConfigError(
            f"config key 'replay_device' is 'cuda' but the replay needs {frame_bytes / 1e9:.1f} GB and {device} has "
            f"{free_bytes / 1e9:.1f} GB free: use replay_device=auto or cpu, or a smaller buffer_size"
        )
    if requested == "cuda" or (
        requested == "auto" and free_bytes is not None and frame_bytes <= GPU_SHARE * free_bytes
    ):
        return device
    return torch.device("cpu")


class FrameReplay:
    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_shape: tuple[int, ...],
        frame_dtype: torch.dtype,
        frame_stack: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        device: str | torch.device = "cpu",
        sample_device: str | torch.device | None = None,
    ):
        self.rows = capacity // num_envs
        if self.rows < frame_stack + n_step + 1:
            raise ValueError(f"capacity {capacity} gives {self.rows} rows per env; need >= frame_stack + n_step + 1")
        self.capacity, self.num_envs, self.frame_shape = capacity, num_envs, tuple(frame_shape)
        self.frame_dtype, self.frame_stack, self.n_step, self.gamma = frame_dtype, frame_stack, n_step, gamma
        self.device = torch.device(device)  # where the frames live
        self.sample_device = self.device if sample_device is None else torch.device(sample_device)  # where samples go
        self._pinned = self.device.type == "cpu" and self.sample_device.type == "cuda"  # host frames, GPU learner
        self.rows_written = 0  # absolute count of rows holding a frame; the cursor is rows_written % rows
        shape, dev = (self.rows, num_envs), self.device
        # torch.empty does not touch the pages, so a 1M Atari buffer commits memory only as it fills. One extra
        # zero frame at the end of the flat store stands in for the frames before an episode's first frame.
        self._flat_frames = torch.empty(self.rows * num_envs + 1, *self.frame_shape, dtype=frame_dtype, device=dev)
        self._flat_frames[-1] = 0
        self.frames = self._flat_frames[:-1].view(*shape, *self.frame_shape)  # (R, N, *frame)
        # The per-step fields are small and live in numpy on the host whatever the device: the index
        # arithmetic of a sample is ~30 tiny ops, ~1 us each in numpy against ~8 us each as torch ops.
        self.action = np.zeros(shape, dtype=np.int32)  # (R, N)
        self.reward = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.first = np.zeros(shape, dtype=bool)

    @staticmethod
    def frame_bytes(capacity: int, num_envs: int, frame_shape: tuple[int, ...], frame_dtype: torch.dtype) -> int:
        """Bytes of the frame store a FrameReplay of these arguments allocates (see replay_device)."""
        return ((capacity // num_envs) * num_envs + 1) * math.prod(frame_shape) * frame_dtype.itemsize

    def _to_sample_device(self, host: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A host array or tensor onto the sample device, through pinned memory when that is a GPU."""
        tensor = torch.as_tensor(host)
        return (tensor.pin_memory() if self._pinned else tensor).to(self.sample_device, non_blocking=True)

    def _put(self, name: str, row: int, value) -> None:
        if name == "frames":
            self.frames[row % self.rows] = torch.as_tensor(value).to(self.device, self.frame_dtype, non_blocking=True)
        else:
            getattr(self, name)[row % self.rows] = value.cpu().numpy() if isinstance(value, torch.Tensor) else value

    def add_first(self, frames: torch.Tensor | np.ndarray) -> None:
        """Newest frame (N, *frame_shape) of each env's obs after a reset; starts an episode everywhere."""
        if self.rows_written > 0:  # resume: cut the stored episodes at the pending obs (like a time limit)
            if self.rows_written >= 2:
                self._put("truncated", self.rows_written - 2, True)
            for name in ("action", "reward", "terminated", "truncated"):
                self._put(name, self.rows_written - 1, 0)
        self._put("frames", self.rows_written, frames)
        self._put("first", self.rows_written, True)
        self.rows_written += 1

    def add(self, actions, rewards, terminated, truncated, next_frames, next_is_first) -> None:
        """One lockstep env step: fills the pending row's step and writes the next obs' frame as a new row."""
        if self.rows_written == 0:
            raise RuntimeError("FrameReplay.add before add_first: call add_first with the reset obs' frames")
        k = self.rows_written - 1
        step = {"action": actions, "reward": rewards, "terminated": terminated, "truncated": truncated}
        for name, value in step.items():
            self._put(name, k, value)
        self._put("frames", k + 1, next_frames)
        self._put("first", k + 1, next_is_first)
        self.rows_written += 1

    def __len__(self) -> int:
        return max(0, min(self.rows_written, self.rows) - 1) * self.num_envs

    @property
    def nbytes(self) -> int:
        return self._flat_frames.nbytes + sum(
            getattr(self, name).nbytes for name in _ARRAYS[1:]
        )  # numpy and torch alike

    def _oldest(self) -> int:
        return max(0, self.rows_written - self.rows)  # oldest absolute row still stored

    def _stack(self, k: np.ndarray, env: np.ndarray):
        """Absolute rows (B, S) of the stack ending at rows k (B,), and which of them belong to its episode."""
        rows = k[:, None] + np.arange(1 - self.frame_stack, 1)  # (B, S) oldest first
        first = self.first[rows % self.rows, env[:, None]]  # (B, S)
        # row i belongs iff no first row comes after it: reverse cumulative count over rows i+1..k
        later_first = first[:, :0:-1].cumsum(1)[:, ::-1]  # (B, S-1)
        in_episode = np.concatenate([later_first == 0, np.ones_like(first[:, :1])], axis=1)  # (B, S)
        return rows, in_episode

    def _state(self, k: np.ndarray, env: np.ndarray) -> torch.Tensor:
        rows, in_episode = self._stack(k, env)
        flat = np.where(in_episode, (rows % self.rows) * self.num_envs + env[:, None], len(self._flat_frames) - 1)
        # index_select copies whole frames, where advanced indexing or a broadcast torch.where goes element by element
        index = torch.from_numpy(flat.reshape(-1)).to(self.device, non_blocking=True)
        if self.device.type == "cpu":  # gather on the host (into pinned memory for a GPU learner), then one copy
            out = torch.empty(len(index), *self.frame_shape, dtype=self.frame_dtype, pin_memory=self._pinned)
            frames = torch.index_select(self._flat_frames, 0, index, out=out).to(self.sample_device, non_blocking=True)
        else:
            frames = self._flat_frames.index_select(0, index)  # (B * S, *frame)
        frames = frames.view(*rows.shape, *self.frame_shape)  # (B, S, *frame)
        return frames[:, 0] if self.frame_stack == 1 else frames  # (B, *state_shape)

    def _window(self, k: np.ndarray, env: np.ndarray):
        """n-step window from absolute rows k (B,): (valid (B,), m (B,), r_t (B,), discount_t (B,))."""
        j = np.arange(self.n_step)
        slots, env2 = (k[:, None] + j) % self.rows, env[:, None]  # (B, n)
        done = (self.terminated[slots, env2] | self.truncated[slots, env2]).astype(np.int64)  # (B, n)
        in_window = (done.cumsum(1) - done) == 0  # (B, n) no done before step j
        m = in_window.sum(1)  # (B,) in 1..n
        powers = (self.gamma**j).astype(np.float32)
        r_t = (self.reward[slots, env2] * powers * in_window).sum(1, dtype=np.float32)
        last = (k + m - 1) % self.rows
        discount_t = np.where(self.terminated[last, env], 0.0, self.gamma**m).astype(np.float32)
        next_first = (self.first[(slots + 1) % self.rows, env2] & in_window).any(1)  # first among rows k+1..k+m
        rows, in_episode = self._stack(k, env)
        overwritten = (in_episode & (rows < self._oldest())).any(1)
        valid = (k >= self._oldest()) & (k + m <= self.rows_written - 1) & ~next_first & ~overwritten
        return valid, m, r_t, discount_t

    def _transitions(self, k: np.ndarray, env: np.ndarray) -> tuple[np.ndarray, ReplaySample]:
        valid, m, r_t, discount_t = self._window(k, env)
        small = [self._to_sample_device(x) for x in (self.action[k % self.rows, env].astype(np.int64), r_t, discount_t)]
        return valid, ReplaySample(self._state(k, env), small[0], small[1], small[2], self._state(k + m, env))

    def _absolute(self, row: np.ndarray) -> np.ndarray:
        """Slot index -> the absolute row stored there (negative when never written)."""
        base = self.rows_written - self.rows
        return base + (row - base) % self.rows

    def gather(self, env_index: torch.Tensor, row: torch.Tensor) -> ReplaySample:
        """Transitions at slots `row` (B,) of envs `env_index` (B,); meaningful where valid_mask() holds."""
        return self._transitions(self._absolute(np.asarray(row.cpu())), np.asarray(env_index.cpu()))[1]

    def valid_mask(self) -> torch.Tensor:
        """(rows, N) bool: the (slot, env) transitions sample() can return now."""
        slots = np.repeat(np.arange(self.rows), self.num_envs)
        env = np.tile(np.arange(self.num_envs), self.rows)
        return torch.from_numpy(self._window(self._absolute(slots), env)[0].reshape(self.rows, self.num_envs))

    def sample(self, batch_size: int, generator: torch.Generator, max_rounds: int = 32) -> ReplaySample:
        """Uniform over valid transitions: draw from all stored rows, redraw the invalid few (exact
        rejection sampling); after max_rounds fall back to drawing from the valid set directly."""
        oldest = self._oldest()
        count = max(0, self.rows_written - 1 - oldest) * self.num_envs  # stored steps, all envs
        if count == 0:
            raise RuntimeError("FrameReplay.sample: the replay holds no transitions yet")
        index = torch.randint(count, (batch_size,), generator=generator).numpy()
        for _ in range(max_rounds):
            k, env = oldest + index // self.num_envs, index % self.num_envs
            valid, sample = self._transitions(k, env)
            if valid.all():
                return sample
            redraw = torch.randint(count, (batch_size,), generator=generator).numpy()
            index = np.where(valid, index, redraw)
        valid = self.valid_mask().flatten().nonzero()[:, 0]  # (V,) slot * N + env
        if len(valid) == 0:
            raise RuntimeError("FrameReplay.sample: no valid transition yet (episodes shorter than the stored window?)")
        pick = valid[torch.randint(len(valid), (batch_size,), generator=generator)]
        return self.gather(pick % self.num_envs, pick // self.num_envs)

    def save(self, folder: pathlib.Path) -> None:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stored = min(self.rows_written, self.rows)  # slots 0..stored-1 hold data; the rest was never written
        for name in _ARRAYS:
            array = getattr(self, name)[:stored]
            np.save(folder / f"{name}.npy", array.cpu().numpy() if isinstance(array, torch.Tensor) else array)
        meta = dict(
            capacity=self.capacity,
            num_envs=self.num_envs,
            frame_shape=list(self.frame_shape),
            frame_dtype=str(self.frame_dtype).removeprefix("torch."),
            frame_stack=self.frame_stack,
            n_step=self.n_step,
            gamma=self.gamma,
            rows_written=self.rows_written,
            cursor=self.rows_written % self.rows,
        )
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(
        cls, folder: pathlib.Path, device: str | torch.device = "cpu", sample_device: str | torch.device | None = None
    ) -> "FrameReplay":
        folder = pathlib.Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            dtype = getattr(torch, meta["frame_dtype"])
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown frame_dtype {meta['frame_dtype']!r}")
            replay = cls(
                meta["capacity"],
                meta["num_envs"],
                tuple(meta["frame_shape"]),
                dtype,
                meta["frame_stack"],
                meta["n_step"],
                meta["gamma"],
                device,
                sample_device,
            )
            replay.rows_written = int(meta["rows_written"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"replay file {folder / 'meta.json'} is missing or corrupt: {error}") from error
        stored = min(replay.rows_written, replay.rows)
        for name in _ARRAYS:
            path, target = folder / f"{name}.npy", getattr(replay, name)
            try:
                array = np.load(path, allow_pickle=False)
                if array.shape != (stored, *target.shape[1:]):
                    raise ValueError(f"shape {array.shape}, expected {(stored, *target.shape[1:])}")
                if isinstance(target, torch.Tensor):
                    target[:stored] = torch.from_numpy(array).to(device=replay.device, dtype=target.dtype)
                else:
                    target[:stored] = array
            except (OSError, ValueError, TypeError) as error:
                raise ValueError(f"replay file {path} is missing or corrupt: {error}") from error
        return replay
