"""The import graph of ``attnyolo/``, read from the source with ``ast``: no cycle, nothing below ``cli/`` imports
``cli/``, only ``cli/`` imports the package root, and ``graph/`` keeps its two layers (YAML below torch) with every
import at the top of its file.

Every import counts, those inside functions included (an import moved into a function still closes a cycle; it
only hides it until run time). ``import a.b.c`` and ``from a.b import c`` depend on the deepest module they name
(``a.b.c``, or ``a.b`` when ``c`` is not a module); the parent packages Python initialises first are not counted,
as Python always finishes them before their children run. Each checker is first shown to catch a planted fault
in a small package written by the test.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "attnyolo"  # the source tree next to these tests

GRAPH_YAML = {
    "errors",
    "layers",
    "yaml_io",
    "edit",
    "inside_syntax",
    "channels",
    "inside",
    "placement",
    "align",
    "names",
}
"""graph/ modules that read and write YAML dicts and build no module."""
GRAPH_TORCH = {"adapter", "attention_layers", "hints", "checks", "inside_modules", "ultralytics", "api"}
"""graph/ modules that create or run torch modules (the adapter, probing, the parse_model hook, build) or use them."""


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package at ``root`` (packages by their __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _deepest(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def import_nodes(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a parsed file, at any depth."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the package that module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in import_nodes(parse(path)):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
            continue
        base = node.module or ""
        if node.level:  # relative: from . import x, from ..sub import y
            parts = package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            targets.append(full if full in known else base)  # from pkg import submodule -> the submodule
    root = next(iter(known)).split(".")[0]
    out = set()
    for target in targets:
        if target.split(".")[0] == root:
            found = _deepest(target, known)
            if found is not None and found != name:
                out.add(found)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle (``[a, b, ..., a]``) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component (breadth first)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {sorted(component)}")  # a component of > 1 module always has one


def describe_cycles(found: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in found)


def importers_of(graph: dict[str, set[str]], target: str, exempt: str, *, below: bool = True) -> list[str]:
    """Modules outside package ``exempt`` that import ``target`` (or, with ``below``, any module under it)."""
    return sorted(
        m
        for m, deps in graph.items()
        if not (m == exempt or m.startswith(exempt + "."))
        and any(d == target or (below and d.startswith(target + ".")) for d in deps)
    )


def function_level_imports(path: Path) -> list[int]:
    """Lines of the imports of a file that are not statements of the module body itself."""
    tree = parse(path)
    top = {id(node) for node in tree.body}
    return sorted(node.lineno for node in import_nodes(tree) if id(node) not in top)


# ------------------------------------------------------------------------------------------- the checkers, proven


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / next(iter(files)).split("/")[0]


PLANTED = {
    "pkg/__init__.py": "from pkg.a import x\nfrom pkg import sub\n",  # parent -> children: not a cycle
    "pkg/a.py": "from pkg.b import y\nx = 1\n",
    "pkg/b.py": "import os\n\ndef f():\n    from . import c  # hidden in a function, relative\n\ny = 2\n",
    "pkg/c.py": "import pkg.a\n",  # closes a -> b -> c -> a
    "pkg/sub/__init__.py": "",
    "pkg/sub/d.py": "from ..a import x\nfrom pkg import __name__ as n\nfrom pkg.cli import tool\n",
    "pkg/sub/e.py": "from .d import x\n",
    "pkg/cli/__init__.py": "from pkg.sub import e\n",
    "pkg/cli/tool.py": "import pkg\n",
}


def test_the_graph_resolves_absolute_relative_and_submodule_imports(tmp_path):
    graph = import_graph(_write(tmp_path, PLANTED))
    assert graph == {
        "pkg": {"pkg.a", "pkg.sub"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.c"},
        "pkg.c": {"pkg.a"},
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.a", "pkg", "pkg.cli.tool"},
        "pkg.sub.e": {"pkg.sub.d"},
        "pkg.cli": {"pkg.sub.e"},
        "pkg.cli.tool": {"pkg"},
    }


def test_the_cycle_checker_names_a_planted_cycle(tmp_path):
    found = cycles(import_graph(_write(tmp_path, PLANTED)))
    # a -> b -> c -> a (b's import sits in a function, relative); pkg.sub.d -> pkg.cli.tool -> pkg closes nothing:
    # pkg imports the package pkg.sub (empty), not pkg.sub.d
    assert found == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert describe_cycles(found) == "pkg.a -> pkg.b -> pkg.c -> pkg.a"


def test_the_cycle_checker_passes_an_acyclic_package(tmp_path):
    files = {**PLANTED, "pkg/c.py": "import os\n"}  # c no longer imports a
    assert cycles(import_graph(_write(tmp_path, files))) == []


def test_the_layer_checkers_catch_planted_faults(tmp_path):
    root = _write(tmp_path, PLANTED)
    graph = import_graph(root)
    assert importers_of(graph, "pkg.cli", "pkg.cli") == ["pkg.sub.d"]
    assert importers_of(graph, "pkg", "pkg.cli", below=False) == ["pkg.sub.d"]  # not pkg.cli.tool: cli may
    assert function_level_imports(root / "b.py") == [4]
    assert function_level_imports(root / "a.py") == []


# ------------------------------------------------------------------------------------------------ on attnyolo/


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


def test_the_package_is_read(graph):
    assert {"attnyolo", "attnyolo.graph.adapter", "attnyolo.cli.app", "attnyolo.checkpoints.loading"} <= set(graph)
    assert "attnyolo.graph.adapter" in graph["attnyolo.graph.ultralytics"]


def test_attnyolo_has_no_import_cycle(graph):
    found = cycles(graph)
    assert not found, f"import cycles in attnyolo/: {describe_cycles(found)}"


def test_nothing_below_cli_imports_cli(graph):
    assert importers_of(graph, "attnyolo.cli", "attnyolo.cli") == []


def test_only_cli_imports_the_package_root(graph):
    # the root imports everything (and configures the runtime first); a module below it that imports it back
    # closes a cycle: a version is attnyolo._version, a feature its own module
    assert importers_of(graph, "attnyolo", "attnyolo.cli", below=False) == []


def test_graph_modules_are_sorted_into_the_two_layers(graph):
    names = {m.rpartition(".")[2] for m in graph if m.startswith("attnyolo.graph.")}
    assert names == GRAPH_YAML | GRAPH_TORCH, "classify each graph/ module as YAML or torch in this test"
    assert not GRAPH_YAML & GRAPH_TORCH


def test_graph_yaml_layer_imports_nothing_of_the_torch_layer(graph):
    torch_layer = {f"attnyolo.graph.{m}" for m in GRAPH_TORCH}
    upward = {
        f"attnyolo.graph.{m}": sorted(graph[f"attnyolo.graph.{m}"] & torch_layer)
        for m in GRAPH_YAML
        if graph[f"attnyolo.graph.{m}"] & torch_layer
    }
    assert upward == {}


def test_graph_imports_are_at_the_top_of_their_files():
    late = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted((PACKAGE / "graph").glob("*.py"))
        if (lines := function_level_imports(path))
    }
    assert late == {}
