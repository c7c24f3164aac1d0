"""The shape of the house: import cycles, sizes per package, long functions, complex blocks.

    python bench/measure_house.py [ROOT]      # ROOT: a checkout (default: this one)

Cycles use the same graph as tests/test_imports.py (every import, lazy ones included).
Radon's cyclomatic complexity is reported when radon is importable (it is not a dependency).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import test_imports as graph  # noqa: E402

LONG = 40  # STYLE.md: functions mostly under 40 lines


def components(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (each holds a cycle)."""
    nodes = set(edges) | {t for ts in edges.values() for t in ts}
    reached = {n: graph.reach(edges, n) for n in nodes}
    out, seen = [], set()
    for node in sorted(nodes):
        if node not in seen:
            comp = {node} | {m for m in reached[node] if node in reached[m]}
            seen |= comp
            if len(comp) > 1:
                out.append(sorted(comp))
    return out


def sizes_and_long_functions(root: Path) -> tuple[dict[str, list[int]], list[tuple[int, str]]]:
    """Files and lines per package, and every function longer than LONG lines."""
    sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    long = []
    for top in ("app", "training", "simulation"):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            package = "/".join(rel.parts[:2]) if len(rel.parts) > 2 else f"{top}/(modules)"
            text = path.read_text(encoding="utf-8")
            sizes[package][0] += 1
            sizes[package][1] += len(text.splitlines())
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > LONG:
                        long.append((n, f"{rel}:{node.name}"))
    return dict(sizes), sorted(long, reverse=True)


def complex_blocks(root: Path) -> list[tuple[int, str]] | None:
    """Radon's C-or-worse blocks (complexity over 10), or None without radon."""
    tops = [t for t in ("app", "training", "simulation") if (root / t).is_dir()]
    proc = subprocess.run([sys.executable, "-m", "radon", "cc", "-n", "C", "-j", *tops],
                          capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout)
    return sorted(((b["complexity"], f"{f}:{b['name']}") for f, bs in found.items() for b in bs),
                  reverse=True)


def main() -> None:
    """Print the measures of the checkout at ROOT."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else graph.ROOT).resolve()
    graph.ROOT = root
    files = graph.file_graph(*(t for t in ("app", "training", "simulation") if (root / t).is_dir()))
    packages = graph.package_graph()
    file_cycles, package_cycles = components(files), components(packages)
    print(f"file cycles: {len(file_cycles)} components, "
          f"{sum(map(len, file_cycles))} files, {len(graph.cycle_edges(files))} edges on cycles")
    print(f"package cycles: {len(package_cycles)} components "
          f"{[len(c) for c in package_cycles]} packages, "
          f"{len(graph.cycle_edges(packages))} edges on cycles")
    mutual = sorted({tuple(sorted((a, b))) for a, ts in packages.items() for b in ts
                     if a in packages.get(b, ())})
    print(f"packages importing each other: {mutual}")
    sizes, long = sizes_and_long_functions(root)
    for package, (n_files, n_lines) in sorted(sizes.items()):
        print(f"  {package:22} {n_files:3} files {n_lines:6} lines")
    print(f"functions over {LONG} lines: {len(long)}: {long}")
    blocks = complex_blocks(root)
    print("radon C-or-worse blocks: " + ("radon not installed" if blocks is None
                                          else f"{len(blocks)}: {blocks[:10]} …"))


if __name__ == "__main__":
    main()
