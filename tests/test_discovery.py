"""Route and command discovery (app.domain_parts) includes every domain's part or fails
loudly: a part left out silently is a feature that quietly is not there."""

import itertools
import sys

import pytest

from app import domain_parts

_names = itertools.count()


@pytest.fixture
def package(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """make({domain: {module: source}}) -> the name of a fresh package on sys.path."""

    def make(domains: dict[str, dict[str, str]]) -> str:
        name = f"discovery_probe_{next(_names)}"
        root = tmp_path / name
        root.mkdir()
        (root / "__init__.py").write_text("")
        for domain, modules in domains.items():
            (root / domain).mkdir()
            (root / domain / "__init__.py").write_text("")
            for module, source in modules.items():
                (root / domain / f"{module}.py").write_text(source)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for mod in [m for m in sys.modules if m.startswith("discovery_probe_")]:
        del sys.modules[mod]


def test_parts_in_the_listed_order_and_domains_without_one_skipped(package):
    name = package({"b": {"routes": "router = 'b'"}, "a": {"routes": "router = 'a'"},
                    "c": {"models": ""}})
    assert domain_parts("routes", ("b", "c", "a"), "router", package=name) == ["b", "a"]


def test_a_routes_module_of_an_unlisted_domain_is_refused(package):
    name = package({"a": {"routes": "router = 'a'"}, "new": {"routes": "router = 'n'"}})
    with pytest.raises(RuntimeError, match=r"unlisted domains \['new'\]"):
        domain_parts("routes", ("a",), "router", package=name)


def test_a_listed_domain_that_does_not_exist_is_refused(package):
    name = package({"agreement": {"routes": "router = 'a'"}})
    with pytest.raises(RuntimeError, match="agreemnt"):
        domain_parts("routes", ("agreemnt", "agreement"), "router", package=name)


def test_a_module_without_its_part_is_refused(package):
    name = package({"a": {"routes": "routes = 'misnamed'"}})
    with pytest.raises(RuntimeError, match=r"a\.routes has no `router`"):
        domain_parts("routes", ("a",), "router", package=name)


def test_an_import_error_inside_a_part_is_raised(package):
    name = package({"a": {"routes": "import not_a_module_anywhere\nrouter = 1"}})
    with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere"):
        domain_parts("routes", ("a",), "router", package=name)
