"""The package's shape: imports run one way (envs below agents, no loops between modules), and the generic code
reaches Go only through agents/hooks.py, so a run on another env loads nothing of Go."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(top_level_only: bool = False) -> dict[str, set[str]]:
    """Each module of agents/ and envs/ -> the project modules it imports, inside functions too (those run on use),
    or with `top_level_only` those it imports when it is loaded."""
    files = {_module_name(p): p for pkg in ("agents", "envs") for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found = set()
        tree = ast.parse(path.read_text())
        for node in tree.body if top_level_only else ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in files and t != name}
        graph[name] = found
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_loops_and_envs_import_no_agents():
    graph = _imports()
    assert len(graph) > 30  # the walk found the packages
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    upward = {m: sorted(t for t in ts if t.startswith("agents")) for m, ts in graph.items() if m.startswith("envs")}
    assert not any(upward.values()), upward


def test_cycle_finder_finds_a_loop():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_generic_modules_reach_go_only_through_the_hooks():
    """No generic module imports agents.go or envs.go when it is loaded; Go code is loaded on use, by the hooks."""
    graph = _imports(top_level_only=True)
    for name, targets in graph.items():
        if name.startswith(("agents.go", "envs.go")) or name == "envs":
            continue
        assert not any(t.startswith(("agents.go", "envs.go")) for t in targets), (name, targets)


def test_a_ppo_run_on_pong_imports_nothing_from_go(tmp_path):
    """One short PPO run on Pong (training, an evaluation, a checkpoint) in a fresh interpreter."""
    code = f"""
import sys
from agents import config as config_lib, registry, run as run_lib
cfg = registry.resolve("ppo", "ALE/Pong-v5", "atari", overrides=["total_timesteps=64", "num_envs=2", "num_steps=16",
    "num_minibatches=2", "update_epochs=1", "eval_frequency=64", "eval_episodes=1", "progress=false", "device=cpu",
    "runs_dir={tmp_path}", "torch_threads=1"])
# one short game: the evaluation plays Pong to its end otherwise
import envs.atari
run = run_lib.start("ppo", cfg, "Pong")
try:
    registry.implementation("ppo", cfg).train(cfg, run)
finally:
    run.close()
print(sorted(m for m in sys.modules if m.startswith(("agents.go", "envs.go"))))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
