"""The tests keep their own layout (docs/development/testing.md): every test file in a
layer's folder, tests/e2e or tests/meta; plain helpers only in tests/support, one name
each; no test imports `conftest` or another test module; a test outside tests/e2e that
starts a server itself says so with the `server` marker."""

from __future__ import annotations

import ast

from support.paths import SUPPORT, TESTS

FOLDERS = {
    *("core", "factors", "directory", "signin", "accounts", "gateway", "notices", "ops", "web"),
    *("oidc", "e2e", "meta"),
}
# Starting one of these (from tests/support) means a real server on 127.0.0.1 (the
# fixtures `serve`, `smtp` and `mail_app` are marked by the root conftest).
STARTERS = {
    "quiet_server", "gunicorn", "portal_instances", "nginx", "caddy", "traefik",
    "SmtpServer", "echo_upstream", "radicale", "django_probe", "probe",
}  # fmt: skip
SERVER_MODULES = ("support.servers", "support.proxies", "support.smtp", "support.real_apps")


def python_files():
    return [p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts]


def test_every_test_file_is_in_a_folder_of_the_tree():
    misplaced = [
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("test_*.py")
        if "node_modules" not in p.parts
        and not (p.parent.parent == TESTS and p.parent.name in FOLDERS)
    ]
    assert misplaced == []


def test_no_test_imports_conftest_or_another_test_module():
    found = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                last = module.rsplit(".", 1)[-1]
                if last == "conftest" or last.startswith("test_") or module == "helpers":
                    found.append(f"{path.relative_to(TESTS)}:{node.lineno} imports {module}")
    assert found == []


def test_each_helper_has_one_name_in_one_module():
    defined: dict[str, list[str]] = {}
    for path in sorted(SUPPORT.glob("*.py")):
        if path.stem.startswith("legacy_models_") or path.stem == "probe_app":
            continue  # frozen schemas, and a server run as a script
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                continue
            for name in names:
                defined.setdefault(name, []).append(path.stem)
    twice = {name: modules for name, modules in defined.items() if len(modules) > 1}
    assert twice == {}


def test_conftest_files_hold_fixtures_and_hooks_only():
    for path in TESTS.rglob("conftest.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                decorated = any("fixture" in ast.unparse(d) for d in node.decorator_list)
                assert decorated or node.name.startswith("pytest_"), (
                    f"{path.relative_to(TESTS)}: {node.name} is a plain helper: "
                    "it belongs in tests/support"
                )
            assert not isinstance(node, ast.ClassDef), f"{path.relative_to(TESTS)}: a class"


def starts_a_server(function: ast.FunctionDef, starters: set[str]) -> bool:
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            called = node.func
            if isinstance(called, ast.Name) and called.id in starters:
                return True
            if isinstance(called, ast.Attribute) and called.attr in STARTERS:
                owner = ast.unparse(called.value)
                if owner in {m.rsplit(".", 1)[1] for m in SERVER_MODULES}:
                    return True
    return False


def test_a_test_that_starts_a_server_outside_e2e_is_marked():
    unmarked = []
    for path in TESTS.rglob("test_*.py"):
        if "node_modules" in path.parts or path.parent.name == "e2e":
            continue
        tree = ast.parse(path.read_text())
        starters = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module in SERVER_MODULES
            for alias in node.names
            if alias.name in STARTERS
        }
        module_marked = "pytest.mark.server" in "".join(
            ast.unparse(node) for node in tree.body if isinstance(node, ast.Assign)
        )
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            marked = module_marked or any(
                "pytest.mark.server" in ast.unparse(d) for d in node.decorator_list
            )
            if starts_a_server(node, starters) and not marked:
                unmarked.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert unmarked == []
