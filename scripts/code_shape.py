"""The shape of the code: the longest functions and the import graph of ``swallowlib`` (and whether it has cycles).

Run it from the repository root (no third-party imports, nothing is executed: the sources are parsed)::

    python scripts/code_shape.py            # the 15 longest functions, import cycles, the stage graph
    python scripts/code_shape.py --top 30 --edges

Imports are read with :mod:`ast`. A *module-level* import is one Python runs when the module is imported; an import
inside a function is *deferred*. The graph is acyclic when no module reaches itself through either kind: a deferred
import only hides a cycle from the interpreter, not from a reader. Importing a package (``swallowlib.corpus``) counts
as importing its ``__init__``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "swallowlib"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package (a package is its ``__init__``)."""
    out = {}
    for f in sorted((root / PKG).rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a module or a module's attribute) lies in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(mod: str, path: Path, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """``(imported module, deferred)`` for every import of the package in one module."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    deferred_nodes = {
        id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the submodule; `from mod import name` imports mod
            targets = [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t.split(".")[0] != PKG:
                continue
            r = _resolve(t, known)
            if r and r != mod:
                found.append((r, id(node) in deferred_nodes))
    return found


def graph(root: Path = ROOT) -> dict[str, dict[str, bool]]:
    """``{module: {imported module: deferred only}}`` over the package."""
    known = modules(root)
    g: dict[str, dict[str, bool]] = {}
    for mod, path in known.items():
        edges: dict[str, bool] = {}
        for target, deferred in imports(mod, path, known):
            edges[target] = edges.get(target, True) and deferred
        g[mod] = edges
    return g


def cycles(g: dict[str, dict[str, bool]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(g):
        if start in index:
            continue
        work = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(g.get(nxt, {})))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def functions(root: Path = ROOT) -> list[tuple[int, str]]:
    """``(lines, "module:qualname")`` for every function and method, longest first."""
    out = []
    for mod, path in modules(root).items():
        tree = ast.parse(path.read_text(), str(path))

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    out.append((child.end_lineno - child.lineno + 1, f"{mod}:{name}"))
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

        visit(tree, "")
    return sorted(out, key=lambda t: (-t[0], t[1]))


def private_crossings(root: Path = ROOT) -> list[str]:
    """``a -> b._name``: a module that imports another module's private (underscore) name."""
    known = modules(root)
    out = []
    for mod, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PKG):
                out += [f"{mod} -> {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if isinstance(node.value, ast.Name) and node.value.id in _imported_modules(path, known):
                    out.append(f"{mod} -> {_imported_modules(path, known)[node.value.id]}.{node.attr}")
    return sorted(set(out))


def _imported_modules(path: Path, known: dict[str, Path]) -> dict[str, str]:
    """``{local name: module}`` for the package modules a file binds by import (``from swallowlib.x import y``)."""
    names = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PKG):
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known and a.asname:
                    names[a.asname] = a.name
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=15, help="how many of the longest functions to list (count)")
    ap.add_argument("--edges", action="store_true", help="also print every import edge (* = deferred only)")
    args = ap.parse_args(argv)

    fns = functions()
    print(f"longest functions (lines, of {len(fns)}):")
    for n, name in fns[: args.top]:
        print(f"  {n:4d}  {name}")
    print(f"functions over 80 lines: {sum(n > 80 for n, _ in fns)}; over 50: {sum(n > 50 for n, _ in fns)}")

    g = graph()
    n_edges = sum(len(e) for e in g.values())
    n_deferred = sum(d for e in g.values() for d in e.values())
    print(f"\nimport graph: {len(g)} modules, {n_edges} edges ({n_deferred} only inside functions)")
    if args.edges:
        for m in sorted(g):
            print(f"  {m} -> " + ", ".join(f"{t}{'*' if d else ''}" for t, d in sorted(g[m].items())))
    comps = cycles(g)
    print(f"import cycles: {len(comps)}")
    for comp in comps:
        print("  " + " <-> ".join(comp))
    crossings = private_crossings()
    print(f"private names used across modules: {len(crossings)}")
    for c in crossings:
        print(f"  {c}")
    return 1 if comps else 0


if __name__ == "__main__":
    sys.exit(main())
