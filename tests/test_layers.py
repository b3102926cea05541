"""Layers point down, and no module imports itself back through others.

Every import of a ``kairos`` module counts: at module level, inside a function (an import hidden
in a function still ties the modules together), relative, and under ``if TYPE_CHECKING:`` (a
type-only import is still a dependency a reader must follow, and a circle through it is still a
circle). Every module must be placed in exactly one layer by name; nothing is placed by a
catch-all. The checks run on the real tree, and on a copy with a planted violation to show they
can fail.
"""

from __future__ import annotations

import ast
import functools
import shutil
from pathlib import Path

import kairos

ROOT = Path(kairos.__file__).parent

# Low to high. A module may import its own layer and the layers below it. Packages that share
# a layer may not import each other (``SIBLINGS``): they are independent rooms.
LAYERS: list[tuple[str, ...]] = [
    ("kairos.errors", "kairos.registry", "kairos.text"),
    ("kairos", "kairos.limits", "kairos.aio", "kairos.data", "kairos.csvio"),
    ("kairos.profiles", "kairos.catalog", "kairos.workload", "kairos.traces"),
    ("kairos.scenario",),
    ("kairos.protocol",),
    ("kairos.distributor",),
    ("kairos.sim",),
    ("kairos.allocator", "kairos.models", "kairos.client"),
    ("kairos.serving",),
    ("kairos.profiling",),
    ("kairos.control",),
    ("kairos.compare", "kairos.demos"),
    ("kairos.plots",),
    ("kairos.cli", "kairos.__main__"),
]
# Rooms of one layer that must not lean on each other (the core's modules may).
SIBLINGS = [
    ("kairos.allocator", "kairos.models", "kairos.client"),
    ("kairos.compare", "kairos.demos"),
]

# The data plane serves; it never plans (the router gets its planner injected).
DATA_PLANE = "kairos.serving"
PLANNERS = ("kairos.allocator", "kairos.control", "kairos.compare")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def placement(module: str) -> str | None:
    """The layer prefix that places ``module``: the package root only by its exact name."""
    found = [
        p
        for layer in LAYERS
        for p in layer
        if (p == module or (p != "kairos" and within(module, p)))
    ]
    return max(found, key=len) if found else None


def layer_of(module: str) -> int:
    prefix = placement(module)
    assert prefix is not None, f"module {module} is in no layer: add it to LAYERS"
    return next(k for k, layer in enumerate(LAYERS) if prefix in layer)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, module: str) -> set[str]:
    """Every kairos module ``path`` imports, however and wherever it does."""
    return set(_imports_in(path.read_text(), module, path.name == "__init__.py"))


# Every test builds the graph anew from the files as they are, but parsing and walking the
# ~140 modules took about 1 s of CPU a graph (8 graphs, the planted copies included); the
# answer depends only on a file's text and name, so each distinct text is parsed once.
@functools.cache
def _imports_in(text: str, module: str, is_package: bool) -> frozenset[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if within(a.name, "kairos")}
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package)
            if within(target, "kairos"):
                found.add(target)
                # ``from kairos.x import y`` may name a submodule y.
                found |= {f"{target}.{a.name}" for a in node.names}
    return frozenset(found)


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    return {m: {i for i in imports(p, m) if i in modules and i != m} for m, p in modules.items()}


def unplaced(g: dict[str, set[str]]) -> list[str]:
    return sorted(m for m in g if placement(m) is None)


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} (layer {layer_of(m)}) imports {i} (layer {layer_of(i)})"
        for m, deps in g.items()
        for i in deps
        if layer_of(i) > layer_of(m)
    )


def sibling_imports(g: dict[str, set[str]]) -> list[str]:
    def room(m: str) -> tuple[int, str] | None:
        return next(
            ((k, r) for k, rooms in enumerate(SIBLINGS) for r in rooms if within(m, r)), None
        )

    return sorted(
        f"{m} imports {i}, a room beside it"
        for m, deps in g.items()
        for i in deps
        if (a := room(m)) is not None and (b := room(i)) is not None and a[0] == b[0] and a != b
    )


def planner_imports(g: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} (data plane) imports {i} (a planner)"
        for m, deps in g.items()
        if within(m, DATA_PLANE)
        for i in deps
        if any(within(i, p) for p in PLANNERS)
    )


def cycles(g: dict[str, set[str]]) -> list[str]:
    # A package's __init__ re-exporting its own modules is not a cycle of its modules.
    edges = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for i in sorted(edges[m]):
            if state.get(i) == 1:
                found.append(" -> ".join(stack[stack.index(i) :] + [i]))
            elif i not in state:
                visit(i)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def test_every_module_has_a_layer() -> None:
    assert not unplaced(graph())


def test_no_module_imports_a_higher_layer() -> None:
    wrong = upward_imports(graph())
    assert not wrong, "\n".join(wrong)


def test_rooms_of_one_layer_do_not_import_each_other() -> None:
    wrong = sibling_imports(graph())
    assert not wrong, "\n".join(wrong)


def test_the_data_plane_imports_no_planner() -> None:
    wrong = planner_imports(graph())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "\n".join(found)


def _planted(tmp_path: Path, module: Path, text: str) -> dict[str, set[str]]:
    """The import graph of a copy of the package with ``text`` appended to ``module`` (a new
    module when it does not exist)."""
    copy = tmp_path / "kairos"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    target = copy / module
    target.write_text((target.read_text() if target.exists() else "") + text)
    return graph(copy)


def test_a_planted_type_checking_import_upward_is_caught(tmp_path: Path) -> None:
    g = _planted(
        tmp_path,
        Path("protocol/tensors.py"),
        "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from kairos.serving.router.router import Router  # noqa\n",
    )
    assert any("kairos.protocol.tensors (layer" in w for w in upward_imports(g))


def test_a_planted_circle_and_planner_import_are_caught(tmp_path: Path) -> None:
    g = _planted(
        tmp_path,
        Path("serving/router/http.py"),
        "\ndef _late():\n    from ..router import router  # noqa\n"
        "    from kairos.allocator import plan  # noqa\n",
    )
    assert any("kairos.serving.router.http" in c for c in cycles(g))
    assert any(w.startswith("kairos.serving.router.http ") for w in planner_imports(g))


def test_a_module_outside_every_layer_is_caught(tmp_path: Path) -> None:
    assert unplaced(_planted(tmp_path, Path("stray.py"), "X = 1\n")) == ["kairos.stray"]
