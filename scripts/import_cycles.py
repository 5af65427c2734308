#!/usr/bin/env python3
"""Find import cycles among the modules of one package.

Usage: python scripts/import_cycles.py [-v] PACKAGE_DIR [PACKAGE_DIR ...]

Each module's imports of its own package are read from the source (nothing
is imported), counting every import statement wherever it stands: one inside
a function or under `if TYPE_CHECKING:` still ties the two modules together
for a reader. Modules that reach each other are reported as one cycle, with
the imports among them, as

    CYCLE: ['pkg.a', 'pkg.b']
       pkg.a -> ['pkg.b']
       pkg.b -> ['pkg.a']

Exits 1 when any package has a cycle, 0 otherwise. With -v, every module's
imports are listed too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

Graph = dict[str, set[str]]


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under the package."""
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _from_source(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name a `from ... import` statement reads from."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules one module imports. `from X import Y` counts
    as an import of X.Y when that is a module (a submodule), else of X."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _from_source(module, path, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    return {name for name in found if name in modules and name != module}


def import_graph(package_dir: Path) -> Graph:
    """Module -> the modules of the same package it imports."""
    modules = module_files(package_dir)
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module
    (Tarjan's algorithm), each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def report(graph: Graph, verbose: bool = False) -> list[str]:
    """The CYCLE lines for a graph (and every module's imports when verbose)."""
    lines: list[str] = []
    for component in cycles(graph):
        lines.append(f"CYCLE: {component}")
        members = set(component)
        for module in component:
            lines.append(f"   {module} -> {sorted(graph[module] & members)}")
    if verbose:
        lines.extend(f"{module} -> {sorted(graph[module])}" for module in sorted(graph))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args
    packages = [arg for arg in args if arg != "-v"] or ["h2serve"]
    status = 0
    for package in packages:
        package_dir = Path(package)
        if not (package_dir / "__init__.py").is_file():
            print(f"{package}: not a package directory", file=sys.stderr)
            return 2
        graph = import_graph(package_dir)
        if cycles(graph):
            status = 1
        for line in report(graph, verbose):
            print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
