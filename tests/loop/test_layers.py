"""The loop sits above the domains it reads: no module of app/ outside it imports it, lazily
or not (DESIGN.md, "Dependencies point one way"); only the faces may, to start it."""

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
FACES = {"main.py", "cli.py", "worker.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _below_the_loop(path: Path) -> bool:
    """Any module of app/ but the loop's own and the faces at the top."""
    rel = path.relative_to(APP)
    return rel.parts[0] != "loop" and not (len(rel.parts) == 1 and rel.name in FACES)


def test_no_lower_module_imports_the_loop():
    offenders = [str(p.relative_to(APP)) for p in sorted(APP.rglob("*.py"))
                 if _below_the_loop(p)
                 and any(n == "app.loop" or n.startswith("app.loop.") for n in _imports(p))]
    assert offenders == []
