"""The shape of the core, from its source alone (AST, nothing imported): no import cycle
among the modules of ``noisybench/``, imports inside functions included, and no class over
300 lines, no function over 80.

An import is an edge to the module it names: ``from a.b import c`` to ``a.b.c`` where that
is a module of the package, else to ``a.b``. A package's ``__init__`` running before its
submodule is Python's import order, not a dependency, so it is no edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "noisybench"
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package in ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(node: ast.AST, name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that import statement ``node`` of module ``name`` names."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = node.module or ""
        if node.level:
            base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
        targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside functions."""
    modules = module_names(root)
    graph = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= imported_modules(node, name, path, modules)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def oversized(root: Path) -> list[str]:
    """Classes over MAX_CLASS_LINES and functions over MAX_FUNCTION_LINES (decorators counted)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {lines} lines (limit {limit})")
    return found


def test_the_core_has_no_import_cycle_lazy_imports_included():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and graph["noisybench.engine"], "the package was not read"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_class_over_300_lines_and_no_function_over_80():
    assert oversized(PACKAGE) == []


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "pkg"


def test_the_checks_find_a_cycle_through_a_lazy_import_and_an_oversized_function(tmp_path):
    """The checkers themselves: a cycle closed by an import inside a function (relative and
    absolute forms), a clean graph, and a function one line over the limit."""
    cyclic = write_package(tmp_path / "a", {
        "pkg/__init__.py": "",
        "pkg/data/__init__.py": "from pkg.data.base import Splits\n",
        "pkg/data/base.py": "def f():\n    from ..ident import h\n",
        "pkg/ident.py": "def h():\n    from pkg.data import base\n",
    })
    assert find_cycle(import_graph(cyclic)) == ["pkg.data.base", "pkg.ident", "pkg.data.base"]
    clean = write_package(tmp_path / "b", {
        "pkg/__init__.py": "",
        "pkg/low.py": "X = 1\n",
        "pkg/high.py": "def f():\n    from pkg.low import X\n",
    })
    assert import_graph(clean) == {"pkg": set(), "pkg.low": set(), "pkg.high": {"pkg.low"}}
    assert find_cycle(import_graph(clean)) is None
    body = "".join("    x = 1\n" for _ in range(MAX_FUNCTION_LINES - 1))
    sized = write_package(tmp_path / "c", {"pkg/__init__.py": "", "pkg/m.py": f"def fits():\n{body}\n\n"
                                           f"@staticmethod\ndef over():\n{body}"})
    assert oversized(sized) == [f"pkg/m.py:{MAX_FUNCTION_LINES + 4} over: {MAX_FUNCTION_LINES + 1} lines "
                                f"(limit {MAX_FUNCTION_LINES})"]
