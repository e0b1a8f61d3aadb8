"""Every import runs down the floors of docs/architecture.md ("Where things live"), never up.

Imports are read from the source (ast), so an import inside a function counts as much as one at
the top of a module, and nothing is imported to find them.
"""

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"

# Floor of each folder, lowest first, as docs/architecture.md's table gives them. A module may
# import its own floor and lower ones. `hprune` is the package root: its lazy public names reach
# every floor, so it sits with the entry points.
FLOORS = {
    "hprune.core": 0,
    "hprune.model": 1,
    "hprune.toy": 2,
    "hprune.metrics": 3,
    "hprune.prune": 4,
    "hprune.analysis": 5,
    "hprune.planning": 6,
    "hprune.distill": 7,
    "hprune.quant": 8,
    "hprune.folders": 9,
    "hprune.generate": 10,
    "hprune.report": 11,
    "hprune.runs": 12, "hprune.bench": 12, "hprune.study": 12,
    "hprune.experiments": 13,
    "hprune.commands": 14, "hprune.cli": 14, "hprune.__main__": 14, "hprune": 14,
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted((SRC / "hprune").rglob("*.py"))}


def imported(module: str, tree: ast.AST) -> set[str]:
    """The hprune modules `module` imports anywhere in its body; `from pkg import sub` names
    the submodule `pkg.sub` when one exists."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            out |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return {name for name in out if name == "hprune" or name.startswith("hprune.")}


def floor_of(module: str) -> int | None:
    """The floor of the longest folder that holds `module`."""
    holders = [name for name in FLOORS if module == name or (name != "hprune" and module.startswith(name + "."))]
    return FLOORS[max(holders, key=len)] if holders else None


GRAPH = {m: imported(m, ast.parse(p.read_text(), str(p))) for m, p in MODULES.items()}


def test_every_module_has_a_floor():
    assert [m for m in MODULES if floor_of(m) is None] == [], "add the new folder to FLOORS and docs/architecture.md"


def test_no_import_climbs_a_floor():
    climbs = [f"{m} (floor {floor_of(m)}) -> {d} (floor {floor_of(d)})"
              for m, deps in sorted(GRAPH.items()) for d in sorted(deps)
              if floor_of(d) is not None and floor_of(m) is not None and floor_of(d) > floor_of(m)]
    assert climbs == [], "move the shared piece down a floor:\n  " + "\n  ".join(climbs)


def test_no_import_cycle():
    """Within a floor too: a module never imports, through others, a module that imports it
    (a package's `__init__` and its own submodules excepted)."""
    def deps(m):
        return {d for d in GRAPH[m] if d in GRAPH and d != m and not m.startswith(d + ".")}

    cycles, done = [], set()

    def visit(m, path):
        for d in sorted(deps(m)):
            if d in path:
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in done:
                visit(d, path + [d])
        done.add(m)

    for m in sorted(GRAPH):
        if m not in done:
            visit(m, [m])
    assert cycles == [], "data flows one way; move the shared piece down:\n  " + "\n  ".join(cycles)
