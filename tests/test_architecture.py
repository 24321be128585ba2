"""The shape of `core/`: its parts import each other without cycles.

A part is a domain package (`core/cases/`, …) or a top-level module (`core/db.py`, …). Every
import counts, including those inside functions (they hide a cycle, they do not remove it) and
those only for type checking. A domain below tells a domain above what happened through
`core.events`; it never imports it. See docs/architecture.md.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"


def part_of(module: str) -> str | None:
    """`core.cases.service` → `cases`; `core.db` → `db`; anything outside core → None."""
    bits = module.split(".")
    return bits[1] if bits[0] == "core" and len(bits) > 1 else None


def is_part(name: str) -> bool:
    return (CORE / name).is_dir() or (CORE / f"{name}.py").is_file()


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            # `from core import db` imports the module core.db
            yield from (f"{module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in CORE.rglob("*.py"):
        if "piccolo_migrations" in path.parts:
            continue
        source = part_of(module_name(path))
        if source is None:
            continue
        targets = graph.setdefault(source, set())
        for module in imported_modules(path):
            target = part_of(module)
            if target and target != source and is_part(target):
                targets.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop inside a component, for the failure message."""
    start = component[0]
    members = set(component)
    path, seen = [start], {start}
    while True:
        following = sorted(graph[path[-1]] & members)
        back = start if start in following else None
        if back and len(path) > 1:
            return [*path, start]
        nxt = next((node for node in following if node not in seen), None)
        if nxt is None:
            return [*path, "…"]
        path.append(nxt)
        seen.add(nxt)


def test_core_parts_import_each_other_without_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles in core/: " + "; ".join(
        f"{{{', '.join(component)}}}, e.g. {' → '.join(a_path(graph, component))}"
        for component in found
    )


def test_the_cycle_finder_finds_cycles() -> None:
    # The test above can only fail if this can.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert a_path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # core/app.py imports the domains' routes inside create_app().
    assert {"cases", "documents", "payments"} <= graph["app"]


# Templates and styles ---------------------------------------------------------------------------

ROOT = CORE.parent
# Classes htmx sets while it works (not written in any template).
RUNTIME_CLASSES = {"htmx-request", "htmx-swapping", "htmx-settling", "htmx-added"}


def test_every_css_class_is_used() -> None:
    """A class in static/app.css that no template, script or service writes is dead weight (a
    `.status-ready` once waited for a state whose class is `status-report-ready`)."""
    from core.cases import states

    css = re.sub(r"/\*.*?\*/", "", (ROOT / "static" / "app.css").read_text(), flags=re.S)
    classes = set(re.findall(r"\.([a-zA-Z][\w-]*)", css))
    written = "\n".join(
        path.read_text()
        for folder in ("templates", "plugins", "core", "static")
        for pattern in ("*.html", "*.js", "*.py")
        for path in (ROOT / folder).rglob(pattern)
        if "vendor" not in path.parts
    )
    # Status badges are written as status-{{ case.status|replace('_', '-') }}.
    state_classes = {
        f"status-{value.replace('_', '-')}"
        for name, value in vars(states).items()
        if name.isupper() and isinstance(value, str)
    }
    unused = sorted(
        name
        for name in classes - RUNTIME_CLASSES - state_classes
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", written)
    )
    assert unused == []


def test_templates_hold_no_state_rules() -> None:
    """Which states allow what is decided in the services (e.g. core.cases.service.flags_of,
    PaymentSummary.refunds): a template comparing a status to a list of states copies a rule."""
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("templates", "plugins")
        for path in (ROOT / folder).rglob("*.html")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.status\s*(==|!=|\bin\b|\bnot in\b)|\"status\",\s*\"equalto\"", line)
    ]
    assert found == []
