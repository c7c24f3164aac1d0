"""RLHF Studio: the web service and the workers' glue."""

import importlib
from types import ModuleType


def optional_module(name: str) -> ModuleType | None:
    """Import a domain's optional module (routes, cli); None when the domain has none.

    Only the module's own absence counts as absent: an import error inside it is raised.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None
