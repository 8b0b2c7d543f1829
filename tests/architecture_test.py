"""The package keeps the shape docs/architecture.md draws: no import cycle among govsnap's
modules (every import counts: at the top, inside a function, for type checking only), and
only the presentation layer (cli.py, commands/, render.py, tables.py, pager.py, the error
edge, __main__.py) prints; the library returns what it decided."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "govsnap"
PRESENTATION = (
    "govsnap.cli",
    "govsnap.render",
    "govsnap.pager",
    "govsnap.tables",
    "govsnap.error_handler",
    "govsnap.__main__",
)


def module_name(path: Path) -> str:
    """Return the dotted name of a module file of the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    """Return every module of the package, parsed, by dotted name."""
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Return the package's modules that `tree` imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found & known


def import_graph() -> dict[str, set[str]]:
    """Return module -> the package's modules it imports (itself and its package left out:
    importing govsnap.x runs govsnap/__init__.py, which imports nothing)."""
    parsed = modules()
    known = set(parsed)
    graph = {}
    for name, tree in parsed.items():
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = imports(tree, known) - {name} - parents
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """Return one cycle of `graph` (its modules in import order, the first repeated last),
    or None when it has none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle is not None:
            return cycle
    return None


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


def test_the_graph_is_the_package() -> None:
    graph = import_graph()
    assert "govsnap.commands.snapshots" in graph["govsnap.cli"]
    assert "govsnap.audit" in graph["govsnap.store"]
    # An import inside a function counts (the commands import the library lazily).
    assert "govsnap.store" in graph["govsnap.commands.snapshots"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def prints(tree: ast.Module) -> list[str]:
    """Return what in `tree` writes to the terminal: print(), sys.stdout, sys.stderr, rich,
    govsnap.render."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            found.append(f"line {node.lineno}: print()")
        elif isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr"):
            if getattr(node.value, "id", None) == "sys":
                found.append(f"line {node.lineno}: sys.{node.attr}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            wanted = [module, *names, *(f"{module}.{n}" for n in names)]
            if any(w and (w == "rich" or w.startswith("rich.")) for w in wanted):
                found.append(f"line {node.lineno}: imports rich")
            if "govsnap.render" in wanted:
                found.append(f"line {node.lineno}: imports govsnap.render")
    return found


def presentation(name: str) -> bool:
    return name in PRESENTATION or name.startswith("govsnap.commands.")


def test_prints_finds_each_way_of_printing() -> None:
    source = (
        "import sys\nfrom rich.table import Table\nfrom govsnap import render\n"
        "print('x')\nsys.stderr.write('y')\n"
    )
    assert len(prints(ast.parse(source))) == 4


def test_only_the_presentation_layer_prints() -> None:
    printing = {
        name: found
        for name, tree in modules().items()
        if not presentation(name) and (found := prints(tree))
    }
    assert printing == {}
