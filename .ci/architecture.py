"""Check faceprobe's layering and draw its import graph (the README's architecture section).

    python .ci/architecture.py --check            # exit 1 and list every violation
    python .ci/architecture.py --write-readme     # regenerate the graph between the README's markers

Rules checked (read from the source with ``ast``; nothing is imported):
- no import cycle among the modules of ``probes`` and of ``decoders``;
- ``probes`` never imports ``decoders``;
- no module imports a private (underscore) name, or a private module, of another module;
- no ``probes``/``decoders`` import inside a function (imports sit at module top; a package facade's
  ``LAZY_EXPORTS`` table, imported on first use, counts as top-level imports);
- the bottom layer of ``probes`` (:data:`BOTTOM_LAYER`) imports nothing above it (the package ``probes``
  itself is the facade on top, not part of it).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("probes", "decoders")
# The shared bottom layer of ``probes``: infrastructure every other part uses and that imports nothing above it.
BOTTOM_LAYER = ("cli", "config", "errors", "geometry", "images", "nn", "outputs", "resolve", "safe_pickle", "shipped",
                "stats", "tfjs", "tfjs_graph", "verification", "weight_files", "weights")
BEGIN, END = "<!-- import-graph:begin -->", "<!-- import-graph:end -->"


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # project modules imported at module top
    private: list[str] = field(default_factory=list)  # "target: name" of private names taken from elsewhere
    inner: list[str] = field(default_factory=list)  # "line: target" of project imports inside functions


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.path.name == "__init__.py" else module.name.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: Module, node: ast.stmt, known: set[str]) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) pairs of one import statement, project modules only."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name.split(".")[0] in PACKAGES]
    base = _absolute(module, node)
    if base.split(".")[0] not in PACKAGES:
        return []
    return [(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base, a.name) for a in node.names]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owner_package(name: str) -> str:
    """The package a module belongs to (a package's own ``__init__`` belongs to itself)."""
    return name.rpartition(".")[0]


def _lazy_exports(tree: ast.Module) -> set[str]:
    """Modules named by a top-level ``LAZY_EXPORTS = {name: "module", ...}`` (a package's PEP 562 facade):
    imported on first use, and counted as the package's imports."""
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "LAZY_EXPORTS"
                                                for t in node.targets) and isinstance(node.value, ast.Dict):
            out |= {v.value for v in node.value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
    return out


def read_modules(root: Path = ROOT) -> dict[str, Module]:
    paths = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    modules = {module_name(p, root): Module(module_name(p, root), p) for p in paths}
    known = set(modules)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), str(module.path))
        top = {id(n) for n in tree.body}
        module.imports |= {t for t in _lazy_exports(tree) if t.split(".")[0] in PACKAGES}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, name in _targets(module, node, known):
                if id(node) not in top:
                    module.inner.append(f"{node.lineno}: {target}")
                    continue
                module.imports.add(target)
                leaf = target.rpartition(".")[2]
                same_package = _owner_package(target) in (module.name, _owner_package(module.name))
                if (name and _is_private(name) and target != module.name) or (_is_private(leaf) and not same_package):
                    module.private.append(f"{target}: {name or leaf}")
    return modules


def find_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(modules[v].imports & set(modules)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(modules):
        if v not in index:
            visit(v)
    return cycles


def violations(modules: dict[str, Module]) -> list[str]:
    out = [f"import cycle: {' <-> '.join(c)}" for c in find_cycles(modules)]
    for m in modules.values():
        out += [f"{m.name} (probes) imports {t} (decoders)" for t in sorted(m.imports)
                if m.name.startswith("probes") and t.startswith("decoders")]
        out += [f"{m.name} (bottom layer) imports {t}, which is above it" for t in sorted(m.imports)
                if in_bottom_layer(m.name) and t in modules and not in_bottom_layer(t)]
        out += [f"{m.name} imports the private {p}" for p in m.private]
        out += [f"{m.name} imports inside a function, line {i}" for i in m.inner]
    return out


def in_bottom_layer(name: str) -> bool:
    """Whether ``name`` is a bottom-layer module. The package ``probes`` itself (its ``__init__``) is not: it is
    the facade that re-exports the one-call API (``probes.verify``, ``probes.embed``) from above."""
    parts = name.split(".")
    return parts[0] == "probes" and len(parts) > 1 and parts[1] in BOTTOM_LAYER


def component(name: str) -> str:
    """The node a module belongs to in the drawn graph: the bottom layer of ``probes``, or a (sub)package
    or top-level module."""
    return "probes bottom layer" if in_bottom_layer(name) else ".".join(name.split(".")[:2])


def component_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for m in modules.values():
        a = component(m.name)
        edges[a]
        for t in m.imports:
            if t in modules and component(t) != a:
                edges[a].add(component(t))
    return edges


def mermaid(modules: dict[str, Module]) -> str:
    edges = component_graph(modules)
    ids = {name: name.replace(".", "_").replace(" ", "_").replace("(", "").replace(")", "") for name in edges}
    lines = ["```mermaid", "flowchart TD"]
    lines += [f'    {ids[n]}["{n}"]' for n in sorted(edges)]
    lines += [f"    {ids[a]} --> {ids[b]}" for a in sorted(edges) for b in sorted(edges[a])]
    lines.append("```")
    return "\n".join(lines)


def write_readme(modules: dict[str, Module], readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: markers {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{mermaid(modules)}\n{END}{tail}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="list violations; exit 1 if any")
    p.add_argument("--write-readme", action="store_true", help="regenerate the README's import graph")
    args = p.parse_args(argv)
    modules = read_modules()
    if args.write_readme:
        write_readme(modules)
    found = violations(modules)
    for line in found:
        print(line)
    if not (args.check or args.write_readme):
        print(mermaid(modules))
    print(f"{len(modules)} modules, {len(found)} violation(s)", file=sys.stderr)
    return 1 if args.check and found else 0


if __name__ == "__main__":
    sys.exit(main())
