"""The architecture holds: layers import downwards only, no module imports itself in a
circle, only the web layer touches the request, and the state table is pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "standalone_mfa"
# What each layer may import from the package, besides itself.
ALLOWED = {
    "core": set(),
    "notices": {"core"},
    "factors": {"core", "notices"},
    "signin": {"core", "notices", "factors", "accounts"},
    "accounts": {"core", "notices", "factors", "signin"},
    "ops": {"core", "notices", "factors", "signin"},
    "gateway": {"core", "factors", "signin", "accounts"},
    "web": {"core", "notices", "factors", "signin", "accounts", "gateway", "ops"},
}
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


SUBPACKAGES = {f"standalone_mfa.{layer}" for layer in ALLOWED} | {"standalone_mfa"}


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
    if own is None:  # create_app, cli, instance: they assemble every layer
        return
    for target in imports(name, ALL[name], top_level_only=False):
        other = layer(target)
        assert other is None and target == "standalone_mfa" or other in ALLOWED[own] | {own}, (
            f"{name} imports {target}"
        )


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
