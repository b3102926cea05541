"""Layers point down, and no module imports itself back through others.

Every ``import kairos...`` in the package counts, at module level or inside a function (an
import hidden in a function still ties the modules together); only imports under
``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kairos

ROOT = Path(kairos.__file__).parent

# Low to high. A module may import its own layer and the layers below it.
LAYERS: list[tuple[str, ...]] = [
    ("kairos", "kairos.errors", "kairos.registry", "kairos.text"),
    ("kairos.data", "kairos.csvio", "kairos.profiles", "kairos.catalog", "kairos.workload"),
    ("kairos.scenario",),
    ("kairos.distributor",),
    ("kairos.sim",),
    ("kairos.allocator", "kairos.models", "kairos.runtime"),
    ("kairos.compare",),
    ("kairos.plots",),
    ("kairos.cli", "kairos.__main__"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for k, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > depth:
                best, depth = k, len(p)
    assert best >= 0, f"module {module} is in no layer: add it to LAYERS"
    return best


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kairos")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("kairos")
        ):
            found.add(str(node.module))
            # ``from kairos.x import y`` may name a submodule y.
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: {i for i in imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_no_module_imports_a_higher_layer() -> None:
    wrong = [
        f"{m} (layer {layer_of(m)}) imports {i} (layer {layer_of(i)})"
        for m, deps in graph().items()
        for i in deps
        if layer_of(i) > layer_of(m)
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    g = graph()
    # A package's __init__ re-exporting its own modules is not a cycle of its modules.
    edges = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for i in sorted(edges[m]):
            if state.get(i) == 1:
                cycles.append(" -> ".join(stack[stack.index(i) :] + [i]))
            elif i not in state:
                visit(i)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)
