"""RLHF Studio: the web service and the workers' glue."""

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def domain_parts(kind: str, domains: Sequence[str], attr: str, package: str = "app") -> list[Any]:
    """`attr` of every domain's `kind` module (`routes` → `router`, `cli` → `register`), in
    the order of `domains`; a domain without such a module has none.

    Discovery fails loudly rather than leave a part out: a listed domain that is not a
    package, a `kind` module in a domain that is not listed, a module without `attr`.
    """
    root = Path(importlib.import_module(package).__path__[0])
    missing = [d for d in domains if not (root / d / "__init__.py").is_file()]
    if missing:
        raise RuntimeError(f"Listed domains that are not packages of {package}: {missing}")
    unlisted = sorted(p.parent.name for p in root.glob(f"*/{kind}.py")
                      if p.parent.name not in domains)
    if unlisted:
        raise RuntimeError(f"{package}/<domain>/{kind}.py found for unlisted domains "
                           f"{unlisted}: add them to the list so their {kind} are included")
    parts = []
    for domain in domains:
        if not (root / domain / f"{kind}.py").is_file():
            continue
        module = importlib.import_module(f"{package}.{domain}.{kind}")
        if not hasattr(module, attr):
            raise RuntimeError(f"{module.__name__} has no `{attr}`")
        parts.append(getattr(module, attr))
    return parts
