"""The import graph of the project's own modules, read with ``ast``: the domain package must not
depend on the processes that host it, and no modules may import each other in a cycle.

Edges come from ``import`` and ``from ... import`` statements anywhere in a module (module level,
class bodies, functions), resolved to project module names, relative imports included. Imports
under ``if TYPE_CHECKING:`` never run, so they are left out. An edge is *deferred* when its
statement sits in a function: it runs on the first call, not when the module is imported.

Packages and their submodules: ``from P import x`` is an edge to ``P.x`` when ``x`` is a submodule,
else to ``P`` (the name comes from P's own namespace). Importing a submodule also runs the
``__init__`` of every package above it, so the importer gets an edge to those packages too, except
to packages that contain the importer: those are always imported before it, and counting them
would turn every "package imports its submodule, submodule imports a sibling" into a false cycle.
A module inside P gets an edge to P only where its statement names P's own namespace.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("octoprov", "api", "workers", "cli")
HOSTS = ("workers", "api", "cli")  # the processes around the domain package


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str
    line: int
    deferred: bool  # inside a function: runs on first call, not at import time

    def __str__(self) -> str:
        when = " (in a function)" if self.deferred else ""
        return f"{self.source} -> {self.target}  [{self.path}:{self.line}]{when}"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Module]:
    """Every importable module of the packages: a ``.py`` file whose folders up to the top are
    packages (Alembic's ``migrations/versions`` scripts, loaded by file path, are not modules)."""
    found: dict[str, Module] = {}
    for package in packages:
        top = root / package
        for path in sorted(top.rglob("*.py")):
            folders = path.relative_to(root).parts[:-1]
            if not all((root.joinpath(*folders[: i + 1]) / "__init__.py").is_file() for i in range(len(folders))):
                continue
            parts = list(folders) if path.name == "__init__.py" else [*folders, path.stem]
            if not all(part.isidentifier() for part in parts):
                continue
            name = ".".join(parts)
            found[name] = Module(name, path, path.name == "__init__.py")
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST, deferred: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """The import statements that can run, each with whether it sits in a function."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, deferred
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)  # the body runs for type checkers only
    else:
        children = list(ast.iter_child_nodes(node))
    inner = deferred or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    for child in children:
        yield from _imports(child, inner)


def _longest_module(dotted: str, modules: Mapping[str, Module]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def _targets(module: Module, statement: ast.Import | ast.ImportFrom, modules: Mapping[str, Module]) -> set[str]:
    named: set[str] = set()  # what the statement itself names
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            found = _longest_module(alias.name, modules)
            if found:
                named.add(found)
    else:
        if statement.level:
            base = module.name.split(".")
            if not module.is_package:
                base = base[:-1]
            base = base[: len(base) - (statement.level - 1)]
            origin = ".".join(base + ([statement.module] if statement.module else []))
        else:
            origin = statement.module or ""
        found = _longest_module(origin, modules)
        if found is None:
            return set()
        for alias in statement.names:
            submodule = f"{found}.{alias.name}"
            named.add(submodule if found == origin and submodule in modules else found)
    implicit = {parent for target in named for parent in _ancestors(target)}
    own = set(_ancestors(module.name))  # always imported before this module
    return (named | (implicit - own)) - {module.name}


def build_graph(root: Path, packages: Iterable[str]) -> tuple[dict[str, Module], list[Edge]]:
    modules = find_modules(root, packages)
    edges: set[Edge] = set()
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        shown = str(module.path.relative_to(root))
        for statement, deferred in _imports(tree):
            for target in _targets(module, statement, modules):
                edges.add(Edge(module.name, target, shown, statement.lineno, deferred))
    return modules, sorted(edges, key=lambda e: (e.source, e.target, e.line))


def adjacency(edges: Iterable[Edge], *, import_time_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if import_time_only and edge.deferred:
            continue
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    return graph


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that a deep chain cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def _shortest_cycle(graph: Mapping[str, Iterable[str]], start: str, within: set[str]) -> list[str]:
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor not in within:
                continue
            if successor == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    return []


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """For every strongly connected component of more than one module, a shortest cycle through each
    of its members (rotated to start at its smallest name, duplicates dropped): readable chains that
    together cover every module of the component."""
    cycles: list[list[str]] = []
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        for member in component:
            cycle = _shortest_cycle(graph, member, members)[:-1]
            first = cycle.index(min(cycle))
            rotated = [*cycle[first:], *cycle[:first], cycle[first]]
            if rotated not in cycles:
                cycles.append(rotated)
    return cycles


def chain(cycle: list[str]) -> str:
    return " -> ".join(cycle)


@pytest.fixture(scope="module")
def project() -> tuple[dict[str, Module], list[Edge]]:
    return build_graph(ROOT, PACKAGES)


# -- the checks on the project ---------------------------------------------------------------------


def test_the_graph_covers_the_project(project):
    """Guards the two checks below against passing on an empty or half-read graph."""
    modules, edges = project
    assert len(modules) > 100, sorted(modules)
    assert {name.split(".")[0] for name in modules} == set(PACKAGES)
    assert len(edges) > 200, len(edges)
    assert {edge.source.split(".")[0] for edge in edges} == set(PACKAGES)
    assert any(edge.deferred for edge in edges) and any(not edge.deferred for edge in edges)


def test_the_domain_package_imports_no_host_process_code(project):
    """octoprov is used by the API, the workers and the CLI: it must never reach back into them,
    not even from inside a function."""
    _, edges = project
    forbidden = [edge for edge in edges
                 if edge.source.split(".")[0] == "octoprov" and edge.target.split(".")[0] in HOSTS]
    assert not forbidden, "octoprov imports code of the processes that host it:\n" + "\n".join(map(str, forbidden))


def test_no_import_cycles(project):
    """Cycles among the imports that run when a module is imported: they make the import order
    matter (a partially initialised module) and tie the modules together."""
    _, edges = project
    graph = adjacency(edges, import_time_only=True)
    cycles = find_cycles(graph)
    lines = []
    for cycle in cycles:
        lines.append(chain(cycle))
        for source, target in pairwise(cycle):
            lines.extend(f"    {edge}" for edge in edges
                         if edge.source == source and edge.target == target and not edge.deferred)
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(lines)


# -- the checks on the checker ---------------------------------------------------------------------


def test_cycle_finder_on_hand_made_graphs():
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}, "x": {"y"}, "y": {"x"}}
    assert sorted(strongly_connected(cyclic)) == [["a", "b", "c"], ["d"], ["e"], ["x", "y"]]
    assert find_cycles(cyclic) == [["a", "b", "c", "a"], ["x", "y", "x"]]
    assert chain(find_cycles(cyclic)[0]) == "a -> b -> c -> a"
    acyclic = {"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}
    assert find_cycles(acyclic) == []
    assert len(strongly_connected(acyclic)) == 4
    long_chain = {str(i): {str(i + 1)} for i in range(5000)} | {"5000": {"0"}}  # no recursion limit
    assert [len(c) for c in strongly_connected(long_chain)] == [5001]


def test_graph_builder_on_a_hand_made_package(tmp_path):
    """Resolution rules on a small tree: submodule vs. package names, relative imports, the
    TYPE_CHECKING block, deferred imports, and no false cycle through a package's own __init__."""
    files = {
        "pkg/__init__.py": "from pkg import sub\nfrom .helpers import tool\nVALUE = 1\n",
        "pkg/sub.py": ("from typing import TYPE_CHECKING\n"
                       "import os\n"
                       "from pkg import helpers\n"
                       "if TYPE_CHECKING:\n    from other import thing\nelse:\n    from pkg.deep import leaf\n"
                       "def later():\n    from other.thing import run\n    return run\n"),
        "pkg/helpers.py": "from . import sub as _sub\nfrom .deep.leaf import name\n",
        "pkg/deep/__init__.py": "",
        "pkg/deep/leaf.py": "from .. import VALUE\nfrom ..deep import leaf\nname = VALUE\n",
        "pkg/versions/0001_script.py": "import pkg\n",  # not a package: not a module
        "other/__init__.py": "",
        "other/thing.py": "import pkg.deep.leaf\nfrom pkg import VALUE, missing_name\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules, edges = build_graph(tmp_path, ["pkg", "other"])
    assert sorted(modules) == ["other", "other.thing", "pkg", "pkg.deep", "pkg.deep.leaf", "pkg.helpers",
                               "pkg.sub"]
    found = {(edge.source, edge.target, edge.deferred) for edge in edges}
    assert found == {
        ("pkg", "pkg.sub", False),
        ("pkg", "pkg.helpers", False),
        ("pkg.sub", "pkg.helpers", False),  # not pkg: its own package is already being imported
        ("pkg.sub", "pkg.deep.leaf", False),  # the else branch of TYPE_CHECKING runs
        ("pkg.sub", "pkg.deep", False),  # importing leaf runs pkg.deep's __init__
        ("pkg.sub", "other.thing", True),
        ("pkg.sub", "other", True),
        ("pkg.helpers", "pkg.sub", False),
        ("pkg.helpers", "pkg.deep.leaf", False),
        ("pkg.helpers", "pkg.deep", False),
        ("pkg.deep.leaf", "pkg", False),  # VALUE comes from pkg's own namespace
        ("other.thing", "pkg.deep.leaf", False),
        ("other.thing", "pkg.deep", False),
        ("other.thing", "pkg", False),
    }
    cycles = find_cycles(adjacency(edges, import_time_only=True))
    assert cycles == [["pkg", "pkg.helpers", "pkg.deep.leaf", "pkg"], ["pkg.helpers", "pkg.sub", "pkg.helpers"]]
