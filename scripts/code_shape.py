#!/usr/bin/env python3
"""The shape of the package: its import graph, import cycles, layer violations, and its longest modules
and functions. Standard library only (ast), so it runs without the package's dependencies.

    python scripts/code_shape.py            # the 10 longest modules and functions, cycles, layer breaks
    python scripts/code_shape.py --top 20

tests/test_structure.py asserts on the same functions: no import cycle, imports follow the data order
text / images -> features -> evaluation -> pipeline (root modules are shared by all; only cli.py, api.py and
__main__.py import subpackages), no module over MAX_MODULE_LINES, no function over MAX_FUNCTION_LINES.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mmlightning"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Data order of the subpackages: a module may import its own subpackage, one of lower rank, or a root
# module; never one of higher rank, nor one of equal rank (text and images do not know each other).
RANK = {"text": 0, "images": 0, "features": 1, "evaluation": 2, "pipeline": 3}
# Root modules that may import subpackages (they dispatch to the commands).
ENTRY_POINTS = {f"{PACKAGE}.cli", f"{PACKAGE}.__main__", f"{PACKAGE}.api"}  # the entry points: CLI and Python API


def module_files(package_dir: Path = ROOT / PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (packages as their __init__)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module named by `from X import ...` (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Package modules that `module` imports anywhere in its file (functions included) -> first line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        while name and name not in modules:  # `import a.b.c` of a non-module attribute: its module
            name = name.rpartition(".")[0]
        if name and name != module:
            found.setdefault(name, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, path.name == "__init__.py")
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


def import_graph(modules: dict[str, Path] | None = None) -> dict[str, dict[str, int]]:
    """module -> {imported package module: line}."""
    modules = modules or module_files()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a closed path a -> ... -> a) per strongly connected component of more than one module."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def connect(v: str) -> None:  # Tarjan; the package is small, recursion depth is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_path_within(graph, comp) for comp in comps]


def _path_within(graph: dict[str, dict[str, int]], comp: list[str]) -> list[str]:
    """A closed import path through the first module of a strongly connected component."""
    members, start = set(comp), comp[0]
    parents, queue = {start: None}, [start]
    while queue:  # breadth-first back to start
        v = queue.pop(0)
        for w in graph[v]:
            if w == start:
                path = [v]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
            if w in members and w not in parents:
                parents[w] = v
                queue.append(w)
    return comp


def subpackage(module: str) -> str | None:
    """'text' for mmlightning.text.corpus; None for a root module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else None


def layer_violations(graph: dict[str, dict[str, int]], files: dict[str, Path] | None = None) -> list[str]:
    """'file:line: a imports b (why not)' for every import against the data order."""
    files = files or module_files()
    out = []
    for module, targets in sorted(graph.items()):
        src = subpackage(module)
        for target, line in targets.items():
            dst = subpackage(target)
            where = f"{files[module].relative_to(ROOT)}:{line}: {module} imports {target}"
            if dst is None or src == dst:
                continue
            if src is None:
                if module not in ENTRY_POINTS:
                    out.append(f"{where} (a root module imports no subpackage; only cli, api and __main__ do)")
            elif RANK[dst] >= RANK[src]:
                out.append(f"{where} (data order is text / images -> features -> evaluation -> pipeline)")
    return out


def module_lengths(files: dict[str, Path] | None = None) -> dict[str, int]:
    """'mmlightning/x/y.py' -> number of lines."""
    files = files or module_files()
    return {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in files.values()}


def function_lengths(files: dict[str, Path] | None = None) -> dict[str, int]:
    """'mmlightning/x/y.py:Class.method' -> lines from `def` to its last line (nested functions count in
    their parent and on their own)."""
    files = files or module_files()
    out = {}
    for path in files.values():
        rel = path.relative_to(ROOT)

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    out[f"{rel}:{name}"] = child.end_lineno - child.lineno + 1
                    visit(child, f"{name}.")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")
                else:
                    visit(child, prefix)

        visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def longest(lengths: dict[str, int], n: int) -> list[tuple[str, int]]:
    return sorted(lengths.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=10, help="how many modules and functions to list")
    args = parser.parse_args(argv)
    files = module_files()
    graph = import_graph(files)
    print(f"Longest modules (limit {MAX_MODULE_LINES} lines):")
    for name, n in longest(module_lengths(files), args.top):
        print(f"  {n:5d}  {name}{'  OVER' if n > MAX_MODULE_LINES else ''}")
    print(f"Longest functions (limit {MAX_FUNCTION_LINES} lines):")
    for name, n in longest(function_lengths(files), args.top):
        print(f"  {n:5d}  {name}{'  OVER' if n > MAX_FUNCTION_LINES else ''}")
    cycles, breaks = find_cycles(graph), layer_violations(graph, files)
    print(f"Import cycles: {len(cycles)}")
    for c in cycles:
        print("  " + " -> ".join(c))
    print(f"Imports against the data order: {len(breaks)}")
    for b in breaks:
        print("  " + b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
