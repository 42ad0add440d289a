#!/usr/bin/env bash
# The GPU benchmark (issue 9): one command, at most 10 minutes on one GPU, writing a dated
# "## GPU benchmark (<date>, <GPU name>)" section of docs/BENCHMARKS.md with the numbers beside the targets.
#
#   scripts/bench_gpu.sh                 on a CUDA machine
#   scripts/bench_gpu.sh --cpu-smoke     every stage for a few seconds on CPU: proves the script end to end;
#                                        the section goes to a copy of BENCHMARKS.md, printed, never committed
#   RL_BENCH_SET="amp=bf16 compile=true" scripts/bench_gpu.sh     config keys for the DQN and PPO stages
#                                        (ours in fp32 alone, or at the precision an amp=... there names)
#
# Each stage is an existing script with GPU-sized flags, under its own time limit (the limits add up to 580 s);
# a stage that fails or runs out of time is reported as such and the others still run:
#   tests     the CUDA tests (tests/test_gpu.py, tests/test_replay.py; skipped without CUDA)
#   dqn       scripts/bench_dqn.py: bare updates/s (Nature CNN, batch 32) and training steps/s on Pong
#             at train-every-4 (configs/dqn/atari.yaml) from the first update on
#   ppo       scripts/bench_ppo.py: steps/s on Pong with 16 envs end to end (configs/ppo/atari.yaml)
#   go        scripts/bench_go.py: random self-play moves/s at batch 4096 on 9x9 and 19x19
#   planning  scripts/bench_planning.py: value-iteration backups/s on a dense random MDP, S=10,000, A=8
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

mode=gpu
case "${1-}" in
  "") ;;
  --cpu-smoke) mode=smoke ;;
  *) echo "bench_gpu.sh: unknown option '$1': run it with no option on a CUDA machine, or with --cpu-smoke" >&2; exit 2 ;;
esac
if [[ $mode == gpu ]] && ! python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "bench_gpu.sh: no CUDA device here (torch.cuda.is_available() is False): run it on a GPU machine, or --cpu-smoke to check it on CPU" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
set_args=()
for kv in ${RL_BENCH_SET-}; do set_args+=(--set "$kv"); done

if [[ $mode == gpu ]]; then
  device=cuda
  dqn=(--learning-starts 5000 --steps 30000 --buffer-size 100000 --bound-updates 500)
  ppo=(--num-envs 16 --steps 300000 --bound-updates 50)
  go=(--sizes 9,19 --batches 4096 --seconds 5)
  planning=(--states 10000 --actions 8 --repeats 1)
  limit=(100 170 150 60 100)  # seconds: tests dqn ppo go planning
else
  device=cpu
  dqn=(--learning-starts 100 --steps 100 --buffer-size 2000 --bound-updates 3)
  ppo=(--num-envs 2 --steps 512 --bound-updates 1)
  go=(--sizes 9 --batches 256 --seconds 1)
  planning=(--states 300 --actions 4 --repeats 1)
  limit=(300 120 120 60 60)
fi

stage() {  # stage NAME LIMIT COMMAND...: run it, keep its log, record ok / failed (rc) / timed out
  local name=$1 seconds=$2 rc=0
  shift 2
  echo "== $name (at most ${seconds}s): $*"
  timeout "$seconds" "$@" >"$work/$name.log" 2>&1 || rc=$?
  case $rc in
    0) echo ok >"$work/$name.status" ;;
    124) echo "timed out after ${seconds}s" >"$work/$name.status" ;;
    *) echo "failed (exit $rc)" >"$work/$name.status" ;;
  esac
  echo "   $(cat "$work/$name.status")"
  [[ $rc == 0 ]] || tail -n 15 "$work/$name.log"
}

start=$SECONDS
stage tests "${limit[0]}" python -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py tests/test_replay.py
stage dqn "${limit[1]}" python scripts/bench_dqn.py --device "$device" --no-sb3 --no-bf16 "${dqn[@]}" "${set_args[@]}" --json "$work/dqn.json"
stage ppo "${limit[2]}" python scripts/bench_ppo.py --device "$device" --no-sb3 --no-bf16 "${ppo[@]}" "${set_args[@]}" --json "$work/ppo.json"
stage go "${limit[3]}" python scripts/bench_go.py --device "$device" "${go[@]}" --json "$work/go.json"
stage planning "${limit[4]}" python scripts/bench_planning.py --device "$device" --ours-dense-only "${planning[@]}" --json "$work/planning.json"
elapsed=$((SECONDS - start))

if [[ $mode == gpu ]]; then out=docs/BENCHMARKS.md; else out=$work/BENCHMARKS.md; cp docs/BENCHMARKS.md "$out"; fi
python - "$mode" "$work" "$out" "$elapsed" "${RL_BENCH_SET-}" <<'PY'
import json, sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, "scripts")
from bench_common import machine_line, write_section

mode, work, out, elapsed, settings = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
device = torch.cuda.get_device_name(0) if mode == "gpu" else "CPU smoke test, not a GPU result"
status = {name: (work / f"{name}.status").read_text().strip() for name in ("tests", "dqn", "ppo", "go", "planning")}
data = {name: json.loads((work / f"{name}.json").read_text()) for name in status if (work / f"{name}.json").exists()}


def row(measure: str, stage: str, value, target: float | None = None, unit: str = "") -> str:
    if stage not in data:
        return f"| {measure} | {status[stage]} | {'-' if target is None else f'>= {target:,.0f}{unit}'} | |"
    if target is None:
        return f"| {measure} | {value(data[stage])} | - | |"
    number = value(data[stage])
    return f"| {measure} | {number:,.0f}{unit} | >= {target:,.0f}{unit} | {'met' if number >= target else '**not met**'} |"


tests_log = (work / "tests.log").read_text().strip().splitlines()
rows = [
    "| measure | result | target | |", "|---|---|---|---|",
    f"| CUDA tests (tests/test_gpu.py, tests/test_replay.py) | {tests_log[-1].strip('= ') if tests_log else status['tests']} | all pass | |",
    row("DQN bare updates/s (Nature CNN, batch 32, Adam fused)", "dqn",
        lambda d: f"{d['updates_per_s']:,.0f} ({d['update_ms']:.2f} ms; acting {d['act_ms']:.2f} ms)"),
    row(f"DQN training steps/s on Pong at train-every-{data.get('dqn', {}).get('train_frequency', 4)}, from the first update",
        "dqn", lambda d: d["train_sps"], 1_000),
    row(f"PPO steps/s on Pong, {data.get('ppo', {}).get('num_envs', 16)} envs, end to end", "ppo", lambda d: d["train_sps"], 10_000),
    *[row(f"Go {r['size']}x{r['size']} random self-play moves/s at batch {r['batch']:,}", "go", lambda d, r=r: r["sps"],
          1_000_000 if r["size"] == 9 else None) for r in data.get("go", {}).get("steps_per_s", [{"size": 9, "batch": 4096}])],
    row("value-iteration backups/s, dense S x A, float64 / float32", "planning",
        lambda d: f"{1 / d['backup_float64_s']:,.0f} / {1 / d['backup_float32_s']:,.0f} (S={d['S']:,}, A={d['A']}; "
                  f"{d['bytes_float64'] / d['backup_float64_s'] / 1e9:,.0f} / {d['bytes_float32'] / d['backup_float32_s'] / 1e9:,.0f} GB/s "
                  f"of P, streaming it: {d['bytes_float64'] / d['stream_float64_s'] / 1e9:,.0f} GB/s)"),
]
text = f"""## GPU benchmark ({date.today().isoformat()}, {device})

Measured with `{'scripts/bench_gpu.sh' if mode == 'gpu' else 'scripts/bench_gpu.sh --cpu-smoke'}` in {elapsed} s{f' (RL_BENCH_SET="{settings}")' if settings else ''}.
Host: {machine_line()}.

""" + "\n".join(rows) + """

- Each line is one stage of scripts/bench_gpu.sh (its header names the flags): bench_dqn.py and bench_ppo.py
  with --device cuda --no-sb3 (ours alone), bench_go.py --device cuda, bench_planning.py --device cuda
  --ours-dense-only. Targets from issue 9 (DQN, PPO) and issue 4 (Go at batch 4096).
- DQN and PPO steps/s count agent steps (4 frames each); DQN from its first update (random warm-up
  excluded), PPO over the whole run. DQN's replay holds 100,000 transitions (0.7 GB of frames), which
  replay_device=auto puts on the GPU when they take at most half of its free memory.
"""
write_section(out, text.splitlines()[0], text)
print("\n" + text)
print(f"section written to {out}" + (" (a temporary copy: docs/BENCHMARKS.md is untouched)" if mode != "gpu" else ""))
PY
for name in tests dqn ppo go planning; do [[ $(cat "$work/$name.status") == ok ]] || exit 1; done
