"""Audit events in people's words: every (event, outcome) the package writes through
`audit.record` has a label in `core.messages.EVENT_LABELS`, found by reading the code
(as tests/meta/test_messages.py does for message keys), so a new event cannot reach a page
as `totp_reenrolled`; and a row no label knows (an older release's) still reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.paths import PACKAGE

from standalone_mfa.core import messages

WHERE = "EVENT_LABELS in standalone_mfa/core/messages.py"


class Unresolved(Exception):
    """An argument of `audit.record` this reader cannot follow to string constants."""


class Module:
    """One source file, read for the values the arguments of its `audit.record` calls
    can take: string constants, `a if c else b`, local variables, the function's own
    parameters (their default and every call in the file), module constants, the audit
    module's own constants (`audit.CHANGED`, or imported from it), and the return
    values of the file's own functions."""

    def __init__(self, path: Path, source: str | None = None):
        self.path = path
        self.tree = ast.parse(source if source is not None else path.read_text())
        self.parents = {
            child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)
        }
        self.functions = {
            node.name: node
            for node in ast.walk(self.tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self.constants = {
            node.targets[0].id: node.value
            for node in self.tree.body
            if isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        }
        self.audit_names, self.record_names = self._imports()
        self.from_audit = {
            alias.asname or alias.name: alias.name
            for node in ast.walk(self.tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("audit")
            for alias in node.names
            if alias.name not in ("audit", "record")
        }

    def _imports(self) -> tuple[set[str], set[str]]:
        """The local names of the audit module, and of its `record` function."""
        modules, functions = set(), set()
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            for alias in node.names:
                if alias.name == "audit":
                    modules.add(alias.asname or alias.name)
                elif alias.name == "record" and (node.module or "").endswith("audit"):
                    functions.add(alias.asname or alias.name)
        if self.path.parts[-2:] == ("core", "audit.py"):
            functions.add("record")
        return modules, functions

    def record_calls(self):
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "record"
                and isinstance(func.value, ast.Name)
                and func.value.id in self.audit_names
            ) or (isinstance(func, ast.Name) and func.id in self.record_names):
                yield node

    def enclosing(self, node):
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None

    def values(self, node, depth: int = 0) -> set[str]:
        if depth > 12:
            raise Unresolved(ast.unparse(node))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            orelse = self.values(node.orelse, depth + 1)
            test = node.test
            # `"refused" if outcome == LAST_ADMIN else outcome`: the last branch is
            # never LAST_ADMIN.
            if (
                isinstance(test, ast.Compare)
                and len(test.ops) == 1
                and isinstance(test.ops[0], ast.Eq)
                and isinstance(node.orelse, ast.Name)
                and ast.dump(test.left) == ast.dump(node.orelse)
            ):
                orelse -= self.values(test.comparators[0], depth + 1)
            return self.values(node.body, depth + 1) | orelse
        if isinstance(node, ast.Name):
            return self._name(node, depth)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in self.audit_names
        ):
            return _audit_constant(node.attr, depth)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            function = self.functions.get(node.func.id)
            if function is not None:
                returns = [
                    r.value
                    for r in ast.walk(function)
                    if isinstance(r, ast.Return) and r.value is not None
                ]
                if returns:
                    return set().union(*(self.values(r, depth + 1) for r in returns))
        raise Unresolved(ast.unparse(node))

    def _name(self, node: ast.Name, depth: int) -> set[str]:
        function = self.enclosing(node)
        if function is not None:
            assigned = list(self._assignments(function, node.id))
            if assigned:
                return set().union(*(self.values(v, depth + 1) for v in assigned))
            if node.id in {a.arg for a in _parameters(function)}:
                return self._parameter(function, node.id, depth)
        if node.id in self.constants:
            return self.values(self.constants[node.id], depth + 1)
        if node.id in self.from_audit:
            return _audit_constant(self.from_audit[node.id], depth)
        raise Unresolved(node.id)

    def _assignments(self, function, name: str):
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        yield node.value
                    elif isinstance(target, ast.Tuple):
                        for i, element in enumerate(target.elts):
                            if isinstance(element, ast.Name) and element.id == name:
                                yield from _element(node.value, i)
            elif (
                isinstance(node, ast.AnnAssign)
                and node.value is not None
                and isinstance(node.target, ast.Name)
                and node.target.id == name
            ):
                yield node.value

    def _parameter(self, function, name: str, depth: int) -> set[str]:
        """A parameter: its default, and what every call of the function in this file
        passes (by position or by name)."""
        arguments = function.args
        positional = [*arguments.posonlyargs, *arguments.args]
        found: set[str] = set()
        with_defaults = positional[len(positional) - len(arguments.defaults) :]
        defaults = dict(zip((a.arg for a in with_defaults), arguments.defaults, strict=True))
        defaults |= {
            a.arg: d
            for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
            if d is not None
        }
        if name in defaults:
            found |= self.values(defaults[name], depth + 1)
        index = next((i for i, a in enumerate(positional) if a.arg == name), None)
        calls = 0
        for call in ast.walk(self.tree):
            if not (
                isinstance(call, ast.Call) and getattr(call.func, "id", None) == function.name
            ):
                continue
            calls += 1
            passed = [kw.value for kw in call.keywords if kw.arg == name]
            if index is not None and index < len(call.args):
                passed.append(call.args[index])
            for value in passed:
                found |= self.values(value, depth + 1)
        if not found or calls == 0 and name not in defaults:
            raise Unresolved(f"parameter {name} of {function.name}")
        return found


def _audit_constant(name: str, depth: int) -> set[str]:
    """A constant of core/audit.py (such as the outcomes CHANGED and UNCHANGED)."""
    audit_module = Module(PACKAGE / "core" / "audit.py")
    if name not in audit_module.constants:
        raise Unresolved(f"audit.{name}")
    return audit_module.values(audit_module.constants[name], depth + 1)


def _parameters(function):
    arguments = function.args
    return [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]


def _element(value, index: int):
    """Element `index` of `(a, b)` or of `(a, b) if c else (d, e)`."""
    if isinstance(value, ast.Tuple) and index < len(value.elts):
        return [value.elts[index]]
    if isinstance(value, ast.IfExp):
        return [*_element(value.body, index), *_element(value.orelse, index)]
    raise Unresolved(ast.unparse(value))


def written_events(modules) -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """Every (event, outcome) the modules' `audit.record` calls can write, with where;
    and the calls this reader could not follow."""
    pairs: dict[tuple[str, str], list[str]] = {}
    unreadable = []
    for module in modules:
        for call in module.record_calls():
            where = f"{module.path.relative_to(PACKAGE.parent)}:{call.lineno}"
            if len(call.args) < 2:
                unreadable.append(f"{where}: event and outcome are not the first two arguments")
                continue
            try:
                events = module.values(call.args[0])
                outcomes = module.values(call.args[1])
            except Unresolved as problem:
                unreadable.append(f"{where}: cannot follow {problem} to string constants")
                continue
            for event in events:
                for outcome in outcomes:
                    pairs.setdefault((event, outcome), []).append(where)
    return pairs, unreadable


def package_modules():
    return [Module(path) for path in sorted(PACKAGE.rglob("*.py"))]


def missing_labels(pairs) -> list[str]:
    return [
        f"{places[0]} writes the audit event ({event!r}, {outcome!r}), which has no label: "
        f'add ({event!r}, {outcome!r}): "..." to {WHERE}'
        for (event, outcome), places in sorted(pairs.items())
        if (event, outcome) not in messages.EVENT_LABELS
    ]


def test_every_audit_event_the_code_writes_has_a_label():
    pairs, unreadable = written_events(package_modules())
    assert unreadable == [], (
        "write the event and outcome of these audit.record calls as string literals "
        "(or constants, parameters or variables set from literals):\n" + "\n".join(unreadable)
    )
    problems = missing_labels(pairs)
    assert problems == [], "\n".join(problems)


def test_every_label_is_for_an_event_the_code_writes():
    """No stale label: one for a pair nothing writes is a typo or a removed event
    (rows of a removed event still read, with the fallback)."""
    pairs, _ = written_events(package_modules())
    assert set(messages.EVENT_LABELS) - set(pairs) == set()


def test_the_reader_finds_the_events_it_must():
    """It reads the real calls: these are written by the sign-in, an administrator's
    reset, a setting (through a parameter) and the groups (through a constant and a
    function's return value); the audit module's own `record(...)` counts too."""
    pairs, _ = written_events(package_modules())
    for pair in [
        ("login", "ok"),
        ("login", "failed"),
        ("totp", "failed"),
        ("recovery_code", "failed"),
        ("totp_throttled", "wait"),
        ("totp_reset", "ok"),
        ("mfa_method_changed", "unchanged"),
        ("group_add", "unchanged"),
        ("admin_revoked", "refused"),
        ("reauth", "throttled"),
        ("audit_pruned", "ok"),
    ]:
        assert pair in pairs, pair
    assert ("admin_revoked", "last_admin") not in pairs  # never written: it says "refused"


def test_a_new_event_without_a_label_is_named_with_where_to_add_it():
    source = (
        "from ..core import audit\n"
        "KIND = 'email_changed'\n"
        "def change(user, outcome='ok'):\n"
        "    audit.record(KIND, outcome, user=user)\n"
        "def caller(user):\n"
        "    change(user, 'refused' if user else 'ok')\n"
    )
    module = Module(PACKAGE / "accounts" / "email.py", source)
    pairs, unreadable = written_events([module])
    assert unreadable == []
    assert set(pairs) == {("email_changed", "ok"), ("email_changed", "refused")}
    problems = missing_labels(pairs)
    assert problems == [
        "standalone_mfa/accounts/email.py:4 writes the audit event ('email_changed', 'ok'), "
        f"which has no label: add ('email_changed', 'ok'): \"...\" to {WHERE}",
        "standalone_mfa/accounts/email.py:4 writes the audit event ('email_changed', "
        f"'refused'), which has no label: add ('email_changed', 'refused'): \"...\" to {WHERE}",
    ]


def test_an_event_the_reader_cannot_follow_is_reported_not_skipped():
    source = "from ..core import audit\ndef f(user, kind):\n    audit.record(kind(), 'ok')\n"
    module = Module(PACKAGE / "accounts" / "odd.py", source)
    pairs, unreadable = written_events([module])
    assert pairs == {}
    assert unreadable == [
        "standalone_mfa/accounts/odd.py:3: cannot follow kind() to string constants"
    ]


@pytest.mark.parametrize(
    ("event", "outcome", "expected"),
    [
        ("login", "ok", "Signed in"),
        ("login", "failed", "Wrong password"),
        ("totp", "ok", "Code accepted"),
        ("remembered_device", "used", "Remembered device used"),
        ("totp_reset", "ok", "Authenticator reset by an administrator"),
    ],
)
def test_the_issue_s_words(event, outcome, expected):
    assert messages.event_label(event, outcome) == expected


@pytest.mark.parametrize(
    ("event", "outcome"),
    [("login", "exploded"), ("written_by_release_0_9", "ok"), ("", ""), (None, None)],
)
def test_a_pair_no_label_knows_reads_as_a_generic_event(event, outcome):
    assert messages.event_label(event, outcome) == messages.text("event_unknown")


def test_labels_are_sentence_case_words_not_code_names():
    for pair, label in messages.EVENT_LABELS.items():
        assert label[0].isupper() and "_" not in label and not label.endswith("."), pair
        assert label != label.title() or len(label.split()) == 1, pair
