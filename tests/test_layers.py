"""The house rules of movierec's layout, read from the source: which modules may import which.

Layers, from the ground up: ``errors``, ``metrics`` and ``data`` know no model; ``models.core`` (the
contract and its shared machinery) knows no model family; the families (``rating``, ``ranking``,
``classic``) build on ``core`` alone; the combiners (``combine``) may also build on the families and
the registry; nothing in ``models`` reaches up to the artifact layer, evaluation, the service or the
CLI. And no two modules import each other, directly or round a longer loop. Every import counts,
including those deferred into functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
FAMILIES = ("rating", "ranking", "classic")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in SRC.joinpath("movierec").rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The movierec modules that module ``name`` imports (a package's names resolve to the package,
    a submodule named in ``from package import submodule`` to that submodule)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m == "movierec" or m.startswith("movierec.")} - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_was_read():
    assert "movierec.models.core.recommender" in GRAPH["movierec.models.registry"]
    assert "movierec.models" in GRAPH["movierec.artifacts"]
    assert len(GRAPH) > 50


def offending(source: tuple[str, ...], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()
              ) -> list[str]:
    return sorted(f"{name} -> {target}" for name, targets in GRAPH.items() if under(name, *source)
                  for target in targets if under(target, *forbidden) and not under(target, *allowed))


def test_models_never_reach_up_to_artifacts_evaluation_service_or_cli():
    above = ("movierec.artifacts", "movierec.eval", "movierec.service", "movierec.cli", "movierec.tune",
             "movierec.plots")
    assert offending(("movierec.models",), above) == []


def test_core_knows_no_model_family_and_no_registry():
    families = tuple(f"movierec.models.{f}" for f in (*FAMILIES, "combine", "registry"))
    assert offending(("movierec.models.core",), families) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_builds_on_core_alone(family):
    others = tuple(f"movierec.models.{f}" for f in (*FAMILIES, "combine", "registry") if f != family)
    assert offending((f"movierec.models.{family}",), others) == []


def test_the_ground_floor_knows_no_model():
    assert offending(("movierec.data", "movierec.metrics", "movierec.errors"),
                     ("movierec.models", "movierec.eval", "movierec.artifacts", "movierec.service",
                      "movierec.cli", "movierec.tune", "movierec.plots")) == []
    assert GRAPH["movierec.metrics"] == set()


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH.get(name, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []
