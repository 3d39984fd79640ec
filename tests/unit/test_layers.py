"""The packages are layers, and imports point down only.

Bottom to top: ``ledger`` (the event model and its rules), then ``senders``
(translations of other systems' payloads) and ``storage`` (the stores), then
``app`` (the Flask receiver and read API, config, auth, errors, metrics), then
``broadcaster`` (the fan-out, WebSocket and SSE), then ``alerts``, then
``server`` (the entry points).  ``hubctl``, the command-line client, stands
beside ``server`` and builds on ``ledger`` and ``senders`` only, so that it
runs without the hub's web stack.

The import graph is read from the source with :mod:`ast`: every ``import``
and ``from ... import`` anywhere in a module (inside functions and under
``if TYPE_CHECKING`` too), relative ones resolved.  On top of that, fresh
interpreters prove that the pure layers and the client really load none of
the server's heavy dependencies.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: What each package may import besides itself.
LAYERS: dict[str, frozenset[str]] = {
    "ledger": frozenset(),
    "senders": frozenset({"ledger"}),
    "storage": frozenset({"ledger"}),
    "app": frozenset({"ledger", "senders", "storage"}),
    "broadcaster": frozenset({"app", "ledger", "senders", "storage"}),
    "alerts": frozenset({"broadcaster", "app", "ledger", "senders", "storage"}),
    "server": frozenset({"alerts", "broadcaster", "app", "ledger", "senders", "storage"}),
    "hubctl": frozenset({"ledger", "senders"}),
}
PACKAGES = tuple(LAYERS)

#: Third-party distributions a package must never import, even lazily inside a function.
FORBIDDEN_THIRD_PARTY: dict[str, frozenset[str]] = {
    "senders": frozenset({"flask", "gevent", "redis", "prometheus_client"}),
    "storage": frozenset({"flask", "prometheus_client"}),
    "hubctl": frozenset({"flask", "gevent", "redis", "prometheus_client"}),
}
#: The only third-party import the pure bottom layer allows.
LEDGER_THIRD_PARTY = frozenset({"orjson"})


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from ``module`` (``line`` for the report)."""

    module: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def sources() -> dict[str, Path]:
    """Every module of every package, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def known(name: str) -> str:
    """The longest prefix of ``name`` that is one of our modules (a package at worst)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in sources():
            return candidate
        parts.pop()
    return name


def raw_imports(module: str) -> Iterator[tuple[str, int]]:
    """Each dotted name ``module`` imports, with its line.

    ``from a import b`` gives ``a.b`` when that is one of our modules, else ``a``.
    """
    path = sources()[module]
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                keep = len(base) - (node.level - 1)
                assert keep > 0, f"{module} line {node.lineno}: relative import beyond the top"
                base = base[:keep]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                assert node.module is not None
                origin = node.module
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                yield (submodule if submodule in sources() else origin), node.lineno


@cache
def imports() -> tuple[Import, ...]:
    """Every import of every module of ours, third-party and standard library included."""
    return tuple(
        Import(module, target, line) for module in sources() for target, line in raw_imports(module)
    )


def package_of(name: str) -> str:
    return name.split(".")[0]


def internal(item: Import) -> bool:
    return package_of(item.target) in LAYERS


def module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in sources()}
    for item in imports():
        if internal(item) and known(item.target) != item.module:
            graph[item.module].add(known(item.target))
    return graph


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for item in imports():
        source, target = package_of(item.module), package_of(item.target)
        if internal(item) and source != target:
            graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_in(graph, component) for component in components]


def cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first node back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & component):
                if successor == start:
                    return [*paths[node], start]
                if successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - Tarjan found one


def xfail_for(reasons: dict[str, str], names: tuple[str, ...]) -> list[object]:
    """``names`` as parameters, the ones with a known violation marked strict xfail."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reasons[name]))
        if name in reasons
        else name
        for name in names
    ]


#: Violations someone is already restructuring: package -> the import that breaks the rule.
KNOWN_LAYER_VIOLATIONS: dict[str, str] = {}
#: Packages with a known cycle among their modules -> the cycle.
KNOWN_MODULE_CYCLES: dict[str, str] = {}


# -- the reader itself ------------------------------------------------------------------


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small package tree in place of the real one, for the reader's own tests."""
    files = {
        "pkg/__init__.py": "from . import a\n",
        "pkg/a.py": "from .sub import b\nimport pkg.sub.c as c\n",
        "pkg/bad.py": "from .. import elsewhere\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/worse.py": "from .... import elsewhere\n",
        "pkg/sub/b.py": "def f():\n    from ..a import name\n    from . import c\n",
        "pkg/sub/c.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from pkg.sub import b, missing\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr("tests.unit.test_layers.ROOT", tmp_path)
    found = {module_name(path): path for path in (tmp_path / "pkg").rglob("*.py")}
    monkeypatch.setattr("tests.unit.test_layers.sources", lambda: found)
    monkeypatch.setattr("tests.unit.test_layers.imports", imports.__wrapped__)  # keep the cache


@pytest.mark.usefixtures("sample")
def test_the_reader_sees_every_kind_of_import() -> None:
    assert list(raw_imports("pkg")) == [("pkg.a", 1)]  # ``from . import a``: the module
    assert list(raw_imports("pkg.a")) == [("pkg.sub.b", 1), ("pkg.sub.c", 2)]
    # Inside a function, and relative to a subpackage.
    assert sorted(raw_imports("pkg.sub.b")) == [("pkg.a", 2), ("pkg.sub.c", 3)]
    # Under ``if TYPE_CHECKING``; a name that is no module is an edge to its package.
    assert sorted(raw_imports("pkg.sub.c")) == [("pkg.sub", 3), ("pkg.sub.b", 3), ("typing", 1)]


@pytest.mark.usefixtures("sample")
def test_a_relative_import_beyond_the_top_is_an_error() -> None:
    for beyond in ("pkg.bad", "pkg.sub.worse"):
        with pytest.raises(AssertionError, match="beyond the top"):
            list(raw_imports(beyond))


def test_cycles_are_found_and_spelt_out() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c", "a"], ["e", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_package_is_a_layer() -> None:
    """A new top-level package must be given its place here before it can import anything."""
    on_disk = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert on_disk == set(PACKAGES)


# -- the rules -------------------------------------------------------------------------


@pytest.mark.parametrize("package", xfail_for(KNOWN_LAYER_VIOLATIONS, PACKAGES))
def test_imports_point_down_only(package: str) -> None:
    allowed = LAYERS[package] | {package}
    offending = [
        str(item)
        for item in imports()
        if package_of(item.module) == package
        and internal(item)
        and package_of(item.target) not in allowed
    ]
    assert not offending, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(offending)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_THIRD_PARTY))
def test_no_forbidden_third_party_import(package: str) -> None:
    forbidden = FORBIDDEN_THIRD_PARTY[package]
    offending = [
        str(item)
        for item in imports()
        if package_of(item.module) == package and package_of(item.target) in forbidden
    ]
    assert not offending, "\n".join(offending)


def test_ledger_imports_only_the_standard_library_and_orjson() -> None:
    allowed = set(sys.stdlib_module_names) | LEDGER_THIRD_PARTY | {"ledger", "__future__"}
    offending = [
        str(item)
        for item in imports()
        if package_of(item.module) == "ledger" and package_of(item.target) not in allowed
    ]
    assert not offending, "\n".join(offending)


def test_no_cycle_among_packages() -> None:
    found = cycles(package_graph())
    assert not found, "package import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("package", xfail_for(KNOWN_MODULE_CYCLES, PACKAGES))
def test_no_cycle_among_modules(package: str) -> None:
    """Each cycle is reported under the package of its first module (in sorted order)."""
    found = [c for c in cycles(module_graph()) if package_of(c[0]) == package]
    assert not found, "module import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


# -- what a fresh interpreter really loads ---------------------------------------------


def loaded_after_importing(packages: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    """Import every module of ``packages`` in a new interpreter; which of ``watched`` it loaded.

    ``__main__`` modules are left out: importing one runs the command.
    """
    modules = sorted(
        module
        for module in sources()
        if package_of(module) in packages and not module.endswith(".__main__")
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_ledger_senders_and_hubctl_load_no_server_dependency() -> None:
    assert (
        loaded_after_importing(
            ("ledger", "senders", "hubctl"), ("flask", "gevent", "redis", "prometheus_client")
        )
        == []
    )


def test_storage_loads_neither_flask_nor_prometheus() -> None:
    assert loaded_after_importing(("storage",), ("flask", "prometheus_client")) == []
