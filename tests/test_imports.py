"""The import graph: the web process never loads torch, and app's packages import one way.

Every import counts, lazy ones inside functions included (a lazy import hides a cycle from
Python, not from a reader). A package is app's first level: a domain folder (`jobs`) or a
core module (`db`). app.wiring.ORDER lists them from the lowest layer to the highest; a
package imports only packages before it, so no cycle can form between packages, nor
between files of different packages.
"""

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "accelerate", "peft", "datasets")
# training/ modules the web process may load: standard library only.
WEB_SIDE_TRAINING = {"training", "training.contract", "training.records"}



def modules(top: str) -> dict[str, Path]:
    """Every module of a top-level package by dotted name (a package by its own name)."""
    out = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The known modules this module imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import app.jobs.x.y` -> the module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def file_graph(*tops: str) -> dict[str, set[str]]:
    """Module -> the modules it imports, over these top-level packages."""
    known = {k: v for top in tops for k, v in modules(top).items()}
    return {name: set(imported(name, path, known)) for name, path in known.items()}


def package_graph() -> dict[str, set[str]]:
    """app's first-level packages -> the ones they import."""
    graph: dict[str, set[str]] = {}
    for source, targets in file_graph("app").items():
        if source == "app":
            continue
        src = source.split(".")[1]
        graph.setdefault(src, set()).update(
            t.split(".")[1] for t in targets if t != "app" and t.split(".")[1] != src)
    return graph


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every node reachable from start."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycle_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The edges that lie on a cycle (their target reaches back to their source)."""
    reached = {node: reach(graph, node) for node in graph}
    return {(a, b) for a, targets in graph.items() for b in targets if a in reached.get(b, ())}


@pytest.mark.slow  # starts the app in a child process
def test_web_process_loads_no_torch_and_only_training_contract_and_records():
    code = ("import json, sys; from app.main import create_app; "
            "create_app(check_migrations=False); import app.worker; "
            "print(json.dumps([m for m in sys.modules if m.split('.')[0] in "
            f"{HEAVY!r} or m.startswith('training')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    loaded = set(json.loads(out))
    assert loaded <= WEB_SIDE_TRAINING, sorted(loaded - WEB_SIDE_TRAINING)


def test_training_never_imports_app():
    for name, targets in file_graph("app", "training").items():
        if name.startswith("training"):
            assert not {t for t in targets if t.startswith("app")}, name


def test_no_cycle_between_app_packages():
    assert not cycle_edges(package_graph())


def test_no_cycle_between_files():
    assert not cycle_edges(file_graph("app", "training", "simulation"))


def test_the_app_never_imports_its_client():
    """The simulated labelers use the app (its API, a few tables); the app never uses them:
    `rlhf-studio simulate` arrives through an entry point."""
    for name, targets in file_graph("app", "simulation").items():
        if name.startswith("app"):
            assert not {t for t in targets if t.startswith("simulation")}, name


def test_every_package_imports_only_the_layers_below_it():
    from app.wiring import ORDER

    graph = package_graph()
    unplaced = set(graph) - set(ORDER)
    assert not unplaced, f"place these in app.wiring.LAYERS: {unplaced}"
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if ORDER.index(b) > ORDER.index(a))
    assert not upward, f"imports of a higher layer (register from above instead): {upward}"


def test_the_layer_check_sees_an_upward_import():
    """The checks above read the real graph: an import of a face from the core fails them."""
    from app.wiring import ORDER

    graph = package_graph()
    graph.setdefault("db", set()).add("main")
    assert ("db", "main") in cycle_edges({**graph, "main": graph["main"] | {"db"}})
    assert ORDER.index("main") > ORDER.index("db")
