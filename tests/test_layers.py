"""The layers of ARCHITECTURE.md, enforced by reading every import in ``streamnb/`` (AST).

Ranks, lowest first; a module may import its own group and groups of a lower rank,
never a group of its own rank or higher ("nothing imports upward", and siblings such
as ``widget`` and ``server`` stay independent):

====  ==================================  ============================================
rank  group                               what it is
====  ==================================  ============================================
0     core (``streamnb._*``)              runtime, streams, sessions, ledger, frames,
                                          projection: asyncio + sqlite3 + pandas
1     ``streamnb.providers``              token sources (OpenAI-compatible, fakes)
2     ``streamnb.rooms``, ``demo``        multi-room chat; the seeds' handlers
3     ``streamnb.widget``, ``server``     the Jupyter layer; the HTTP layer
4     ``streamnb.testing``                test helpers (no production module uses them)
5     ``streamnb.cli``                    ``streamnb serve``
6     ``streamnb`` (``__init__.py``)      the package facade: re-exports, lazy names
====  ==================================  ============================================

Imports under ``if TYPE_CHECKING:`` never run: they are checked for direction like
the others but cannot close an import cycle (``Session.runtime`` names its owner's
type that way). Imports inside functions (lazy ones) count everywhere.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "streamnb"

#: group -> rank (see the module docstring)
RANKS = {
    "core": 0,
    "providers": 1,
    "rooms": 2,
    "demo": 2,
    "widget": 3,
    "server": 3,
    "testing": 4,
    "cli": 5,
    "package": 6,
}
JUPYTER = {
    "IPython",
    "anywidget",
    "comm",
    "ipykernel",
    "ipywidgets",
    "jupyter_client",
    "jupyter_server",
    "jupyterlab",
    "nbformat",
    "notebook",
    "traitlets",
}
HTTP = {"h11", "httpx", "httpx_sse", "starlette", "uvicorn", "websockets", "wsproto"}
PROVIDERS = {"openai"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "streamnb.rooms.room"
    target: str  # the imported module, e.g. "streamnb._runtime" or "starlette.routing"
    line: int
    type_checking: bool

    def __str__(self) -> str:
        where = " (TYPE_CHECKING)" if self.type_checking else ""
        return f"{self.source}:{self.line} imports {self.target}{where}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def group_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    top = parts[1]
    if top.startswith("_"):
        return "core"
    if top == "testing_widget":  # becomes a private module of streamnb.testing
        return "testing"
    return top


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_checking
                yield from _walk(stmt, type_checking)
            continue
        yield child, type_checking
        yield from _walk(child, type_checking)


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node, tc in _walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, node.lineno, tc) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # "from pkg import submodule" imports the submodule
                sub = f"{target}.{alias.name}"
                found.append(Import(module, sub if sub in MODULES else target, node.lineno, tc))
    return found


ALL_IMPORTS = [imp for module in MODULES for imp in imports_of(module)]
INTERNAL = [imp for imp in ALL_IMPORTS if imp.target.split(".")[0] == "streamnb"]


def third_party(groups: set[str], banned: set[str]) -> list[str]:
    return [
        str(imp)
        for imp in ALL_IMPORTS
        if group_of(imp.source) in groups and imp.target.split(".")[0] in banned
    ]


def test_the_import_analysis_sees_the_package() -> None:
    assert {"streamnb._runtime", "streamnb._ledger.sqlite", "streamnb.widget"} <= set(MODULES)
    runtime_imports = {imp.target for imp in imports_of("streamnb._runtime")}
    assert {"streamnb._stream", "streamnb._ledger", "asyncio"} <= runtime_imports
    assert any(imp.type_checking for imp in imports_of("streamnb._session"))


def test_core_imports_no_jupyter_http_or_provider_package() -> None:
    assert third_party({"core"}, JUPYTER | HTTP | PROVIDERS) == []


def test_providers_and_rooms_import_no_jupyter_package() -> None:
    assert third_party({"providers", "rooms", "demo"}, JUPYTER) == []


def test_rooms_imports_no_widget() -> None:
    assert [
        str(imp)
        for imp in INTERNAL
        if group_of(imp.source) == "rooms" and group_of(imp.target) == "widget"
    ] == []


def test_no_production_module_imports_testing() -> None:
    # the facade names streamnb.testing for type checkers only (it loads it lazily, as
    # the public sn.testing); any import that runs would count
    assert [
        str(imp)
        for imp in INTERNAL
        if group_of(imp.target) == "testing"
        and group_of(imp.source) != "testing"
        and not (group_of(imp.source) == "package" and imp.type_checking)
    ] == []


@pytest.mark.parametrize("group", sorted(RANKS))
def test_nothing_imports_upward_or_sideways(group: str) -> None:
    bad = [
        str(imp)
        for imp in INTERNAL
        if group_of(imp.source) == group
        and group_of(imp.target) != group
        and RANKS[group_of(imp.target)] >= RANKS[group]
    ]
    assert bad == []


def test_every_module_belongs_to_a_layer() -> None:
    assert {group_of(m) for m in MODULES} <= set(RANKS)


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk meets, as ``a -> b -> a``."""
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*path[path.index(n) :], n]))
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in INTERNAL:
        if not imp.type_checking and imp.target in MODULES and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    assert find_cycles(graph) == []


def test_importing_the_core_loads_no_jupyter_http_or_provider_package() -> None:
    # the same rule at run time: what `import streamnb` and the core really load
    core = sorted(m for m in MODULES if group_of(m) == "core")
    banned = sorted(JUPYTER | HTTP | PROVIDERS)
    code = (
        f"import sys, importlib\nfor m in {core!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {banned!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
