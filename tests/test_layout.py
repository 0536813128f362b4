"""The package's shape: one package per stage, data flowing one way, no import circles, no module past ~400 lines.

Every module's imports are read with ``ast`` (top-level and inside functions alike, since a lazy import is still a
dependency; ``if TYPE_CHECKING:`` blocks are left out, as they never run). ``attacks/`` is read as
``privaudit.attacks``, the name it is installed under. Inside one package the ``TYPE_CHECKING`` imports count too:
a module that names another's types for its hints depends on it as well, so shared types sit in a module below the
ones that use them (``mia/types.py``, ``training/config.py``), and no two modules of a package lean on each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
# Modules allowed past MAX_LINES, each with the reason a split would be worse.
LONG_MODULES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    if path.parts[len(ROOT.parts)] == "attacks":
        parts = ["privaudit", "attacks", *path.relative_to(ROOT / "attacks").with_suffix("").parts]
    else:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = sorted((ROOT / "privaudit").rglob("*.py")) + sorted((ROOT / "attacks").rglob("*.py"))
    return {_module_name(path): path for path in files}


MODULES = _sources()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, *, type_checking: bool = False) -> set[str]:
    """The privaudit modules ``name`` imports at run time; with ``type_checking``, for its type hints as well."""
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        # The longest known module that `target` names or lies inside.
        while target:
            if target in MODULES:
                return target
            target = target.rpartition(".")[0]
        return None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not type_checking:
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("privaudit"):
                        found.add(resolve(alias.name) or alias.name)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith("privaudit"):
                    for alias in child.names:
                        # `from privaudit.cli import train` imports the module privaudit.cli.train.
                        found.add(resolve(f"{child.module}.{alias.name}") or resolve(child.module) or child.module)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
TYPED_GRAPH = {name: _imports(name, path, type_checking=True) for name, path in MODULES.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in graph:
                continue
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_is_read():
    # A sanity check that the reader sees real edges, so the rules below cannot pass on an empty graph.
    assert "privaudit.mia.run" in GRAPH and "privaudit.stats.metrics" in GRAPH["privaudit.mia.run"]
    assert "privaudit.cli.app" in GRAPH["privaudit.cli.mia"]


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def _package(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _within_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The edges between two modules of one package (a package's ``__init__`` counts as one of its modules)."""
    return {
        module: {t for t in targets if t in MODULES and _package(t) == _package(module) and t != _package(module)}
        for module, targets in graph.items()
    }


def test_type_imports_are_read():
    # mia/records.py names AttackResult for its hints only: the typed graph sees that edge, the run-time one does not.
    assert "privaudit.mia.types" in TYPED_GRAPH["privaudit.mia.records"]
    assert "privaudit.canary.run" in TYPED_GRAPH["privaudit.report.canary_table"]


def test_the_cycle_check_inside_packages_catches_a_type_only_circle():
    # What mia/records <-> run was: run imports records, records imports run's types under TYPE_CHECKING.
    graph = {"privaudit.mia.run": {"privaudit.mia.records"}, "privaudit.mia.records": {"privaudit.mia.run"}}
    assert _cycles(_within_packages(graph)) == [["privaudit.mia.records", "privaudit.mia.run"]]


def test_no_import_cycles_inside_a_package_counting_type_hints():
    assert _cycles(_within_packages(TYPED_GRAPH)) == []


def _violations(stage: str, forbidden: set[str], allowed_ground: set[str] | None = None) -> list[str]:
    bad = []
    for module, imported in GRAPH.items():
        if _stage(module) != stage:
            continue
        for target in imported:
            target_stage = _stage(target)
            if target_stage == stage:
                continue
            if allowed_ground is not None:
                if target not in allowed_ground:
                    bad.append(f"{module} -> {target}")
            elif target_stage in forbidden:
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def test_stats_imports_only_errors():
    assert _violations("stats", set(), allowed_ground={"privaudit.errors"}) == []


@pytest.mark.parametrize(("stage", "other"), [("mia", "canary"), ("canary", "mia")])
def test_mia_and_canary_never_import_each_other(stage, other):
    assert _violations(stage, {other}) == []


def test_nothing_imports_the_cli():
    bad = [
        f"{module} -> {target}"
        for module, imported in GRAPH.items()
        if _stage(module) not in ("cli", "__main__")
        for target in imported
        if _stage(target) == "cli"
    ]
    assert bad == []


def test_nothing_imports_the_front_door():
    # privaudit.api and the CLI are two doors onto the same library, neither through the other; the package loads
    # the api by name on first use (PEP 562), and nothing else imports it.
    bad = [
        f"{module} -> {target}"
        for module, imported in GRAPH.items()
        if _stage(module) != "api"
        for target in imported
        if _stage(target) == "api"
    ]
    assert bad == []


def test_integrations_sit_on_training_and_nothing_imports_them():
    # The hooks into users' own training loops (privaudit.integrations) reuse training's canaries and format, and the
    # ground floor; they are a front door of their own, so nothing in privaudit imports them.
    assert _violations("integrations", {"cli", "api", "gate", "report", "mia", "canary", "sweep", "endpoint"}) == []
    bad = [
        f"{module} -> {target}"
        for module, imported in GRAPH.items()
        if _stage(module) != "integrations"
        for target in imported
        if _stage(target) == "integrations"
    ]
    assert bad == [] and "privaudit.training.canary_insertion" in GRAPH["privaudit.integrations.opacus"]


def test_report_never_imports_training_or_target():
    assert _violations("report", {"training", "target"}) == []


def test_cli_console_is_the_bottom_of_cli():
    assert not {target for target in GRAPH["privaudit.cli.console"] if _stage(target) == "cli"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    if name in LONG_MODULES:
        return
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines; split it by concept"
