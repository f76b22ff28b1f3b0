"""The architecture holds: layers import downwards only, no module imports itself in a
circle, only the web layer touches the request, and the state table is pure."""

from __future__ import annotations

import ast

import pytest
from support.paths import PACKAGE

# The floors, bottom first: each imports only the floors below it (and itself), so no
# two packages import each other. `directory` (users, groups, settings, tokens) is
# below `signin`, which reads them; `accounts` (the actions on accounts) is above it,
# as it ends sessions. `cli` and `instance` are the command-line entry points, on top.
# `migrations`, frozen history, import nothing of the package (a model that changes
# must not change an old migration). Only `standalone_mfa` itself (create_app, which
# assembles every floor) is exempt.
ORDER = (
    "migrations",
    "core",
    "notices",
    "factors",
    "directory",
    "signin",
    "accounts",
    "ops",
    "gateway",
    "oidc",
    "web",
    "cli",
    "instance",
)
ALLOWED = {floor: set(ORDER[:index]) for index, floor in enumerate(ORDER)}
REQUEST_NAMES = {"request", "url_for", "flash", "session", "g", "redirect"}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def package_of(name: str) -> list[str]:
    return name.split(".") if name in SUBPACKAGES else name.split(".")[:-1]


SUBPACKAGES = {
    f"standalone_mfa.{floor}" for floor in ORDER if (PACKAGE / floor / "__init__.py").exists()
} | {"standalone_mfa"}


def imports(name: str, tree: ast.Module, *, top_level_only: bool) -> set[str]:
    """The package modules `name` imports (at module level, or anywhere)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(name)[: len(package_of(name)) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("standalone_mfa"):
                continue
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in ALL else module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("standalone_mfa")}
    return found - {name}


ALL = modules()


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("name", sorted(ALL))
def test_each_layer_imports_only_the_layers_below_it(name):
    own = layer(name)
    if own is None:  # create_app assembles every floor
        assert name == "standalone_mfa", f"{name} is on no floor: add it to ORDER"
        return
    for target in imports(name, ALL[name], top_level_only=False):
        other = layer(target)
        assert other is None and target == "standalone_mfa" or other in ALLOWED[own] | {own}, (
            f"{name} imports {target}"
        )


def test_every_package_and_top_module_has_a_floor():
    on_disk = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    on_disk |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert on_disk == set(ORDER)


def test_no_two_packages_import_each_other():
    edges = {
        (layer(name), layer(target))
        for name, tree in ALL.items()
        for target in imports(name, tree, top_level_only=False)
        if layer(name) and layer(target) and layer(name) != layer(target)
    }
    both_ways = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
    assert not both_ways, f"packages importing each other: {both_ways}"
    # and the order is the one the floors follow
    assert all(ORDER.index(a) > ORDER.index(b) for a, b in edges), sorted(edges)


def test_no_import_cycles_between_modules():
    graph = {name: imports(name, tree, top_level_only=False) for name, tree in ALL.items()}
    # A subpackage's __init__ that gathers its modules is not a cycle through them.
    graph = {
        name: {t for t in targets if not (t in SUBPACKAGES and name.startswith(t + "."))}
        for name, targets in graph.items()
    }
    done, path = set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name) :] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done or name not in graph:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


@pytest.mark.parametrize("name", sorted(n for n in ALL if layer(n) not in (None, "web")))
def test_only_the_web_layer_touches_the_request(name):
    for node in ast.walk(ALL[name]):
        if isinstance(node, ast.ImportFrom) and node.module == "flask":
            touched = {alias.name for alias in node.names} & REQUEST_NAMES
            assert not touched, f"{name} imports {touched} from flask"


def test_the_state_table_is_pure():
    tree = ALL["standalone_mfa.signin.state"]
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "datetime"}, imported


def test_a_layer_violation_would_be_seen():
    """The checks above read real imports: a made-up upward import is caught."""
    tree = ast.parse("from ..web import guard\n")
    assert imports("standalone_mfa.core.fake", tree, top_level_only=True) == {
        "standalone_mfa.web.guard"
    }
