"""The import graph of the package ``hires/`` (and ``kernels/``, installed as ``hires.kernels``), and
the floors its sub-packages stand on.

    python tests/import_graph.py        # prints each module's imports of hires modules, exits 1 on any
                                        # cycle, upward import or module over MAX_LINES lines

Read from the source (``ast``), nothing is imported.  Imports at module level make the graph that
must have no cycle; imports inside functions (deferred on purpose, e.g. so that ``hires --help`` loads
no torch) are listed after a ``~``; a cycle through them is a knot too (one module reaching into another that
reaches back), so it fails as well.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each sub-package's floor: a module imports its own package and the floors below, never a floor
# above or a sibling on its own floor (type hints included: a TYPE_CHECKING import ties as any does)
FLOORS = {"kernels": 0, "core": 1, "engine": 2, "fast": 3, "planning": 4, "rendering": 5, "api": 6,
          "fit": 7, "studio": 7, "commands": 8}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "hires").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((ROOT / "kernels").glob("*.py")):
        out["hires.kernels" if path.stem == "__init__" else f"hires.kernels.{path.stem}"] = path
    return out


def package(module: str) -> str | None:
    """The sub-package (a key of FLOORS) that ``module`` belongs to; None for ``hires`` itself, the
    front door that may import any of them."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import of a floor above the importer's, or of a sibling package on its own floor."""
    out = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            pa, pb = package(a), package(b)
            if pa is None or pb is None or pa == pb:
                continue
            if FLOORS[pb] > FLOORS[pa] or FLOORS[pb] == FLOORS[pa]:
                out.append((a, b))
    return out


def too_long() -> dict[str, int]:
    """The modules over MAX_LINES lines: one job a module, and a job that long is several."""
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    return {name: n for name, n in lengths.items() if n > MAX_LINES}


def _targets(node: ast.AST, name: str, known: set[str]) -> set[str]:
    """The hires modules an import statement in module ``name`` brings in."""
    found = set()
    if isinstance(node, ast.Import):
        found = {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from . import x, from .y import z
            package = name if name in ("hires", "hires.kernels") else name.rsplit(".", 1)[0]
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        found = {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name}


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level imports, imports inside functions) of every hires module."""
    mods = modules()
    known = set(mods)
    top, deferred = {}, {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        top[name], deferred[name] = set(), set()
        for node in tree.body:  # module level, including try blocks; `if TYPE_CHECKING:` runs nothing,
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):  # but knots them
                for sub in ast.walk(node):
                    deferred[name] |= _targets(sub, name, known)
                continue
            for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
                top[name] |= _targets(sub, name, known)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    deferred[name] |= _targets(sub, name, known)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        for sub in ast.walk(item):
                            top[name] |= _targets(sub, name, known)
        deferred[name] -= top[name]
        # a package's own import of its submodule is how Python loads it: not an edge back
        top[name] = {m for m in top[name] if not m.startswith(name + ".")}
    return top, deferred


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search (each reported once, from its least name)."""
    found, seen = [], set()

    def visit(start, node, path):
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                cyc = path[:]
                key = tuple(sorted(cyc))
                if key not in seen:
                    seen.add(key)
                    found.append(cyc + [start])
            elif nxt > start and nxt not in path:
                visit(start, nxt, path + [nxt])

    for start in sorted(edges):
        visit(start, start, [start])
    return found


def main() -> int:
    top, deferred = graph()
    for name in sorted(top):
        line = f"{name}: {', '.join(sorted(top[name])) or '-'}"
        if deferred[name]:
            line += f"   ~ {', '.join(sorted(deferred[name]))}"
        print(line)
    found = cycles(top)
    for cyc in found:
        print("import cycle: " + " -> ".join(cyc))
    both = {m: top[m] | deferred[m] for m in top}
    late = [c for c in cycles(both) if c not in found]
    for cyc in late:
        print("import cycle through a deferred import: " + " -> ".join(cyc))
    up = upward(both)
    for a, b in up:
        print(f"upward import: {a} ({package(a)}) imports {b} ({package(b)})")
    long = too_long()
    for name, n in long.items():
        print(f"module over {MAX_LINES} lines: {name} ({n})")
    return 1 if found or late or up or long else 0


if __name__ == "__main__":
    sys.exit(main())
