"""docs/SECURITY.md cannot rot: every checklist ID has a row with a test carrying its
ID (or a reason it does not apply), every test the table names exists, and every test
whose name carries an ID is listed in that ID's row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support.paths import ROOT

TABLE = ROOT / "docs" / "SECURITY.md"
CHECKLIST_IDS = [f"SC-{n:02d}" for n in range(1, 71)]

ROW = re.compile(r"^\|\s*(SC-\d{2})\s*\|(?P<what>[^|]*)\|(?P<how>[^|]*)\|(?P<tests>[^|]*)\|\s*$")
TEST_NAME = re.compile(r"`(test_\w+)`")
NOT_APPLICABLE = re.compile(r"not applicable:\s*\S", re.IGNORECASE)
ID_IN_NAME = re.compile(r"^test_sc(\d{2})_")


def collected_test_names(tests_dir: Path = ROOT / "tests") -> set[str]:
    """Every test function defined in tests/ (module level or in a class)."""
    names = set()
    for path in tests_dir.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and node.name.startswith("test_"):
                names.add(node.name)
    return names


def table_problems(table: str, existing: set[str], ids=CHECKLIST_IDS) -> list[str]:
    """What is wrong with the table, given the tests that exist (empty: nothing)."""
    problems = []
    rows = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        sc_id = match.group(1)
        if sc_id in rows:
            problems.append(f"{sc_id}: two rows")
        rows[sc_id] = match
    for sc_id in ids:
        if sc_id not in rows:
            problems.append(f"{sc_id}: no row in docs/SECURITY.md")
    for sc_id, row in rows.items():
        if not row.group("what").strip() or not row.group("how").strip():
            problems.append(f"{sc_id}: say what is protected and how")
        named = TEST_NAME.findall(row.group("tests"))
        for name in named:
            if name not in existing:
                problems.append(f"{sc_id}: {name} is not a test in tests/")
        number = sc_id.removeprefix("SC-")
        carrying = [n for n in named if n.startswith(f"test_sc{number}_") and n in existing]
        if not carrying and not NOT_APPLICABLE.search(row.group("tests")):
            problems.append(
                f"{sc_id}: needs a test named test_sc{number}_... or 'not applicable: reason'"
            )
        missing = sorted(
            n for n in existing if n.startswith(f"test_sc{number}_") and n not in named
        )
        for name in missing:
            problems.append(f"{sc_id}: add `{name}` to its row")
    for name in sorted(existing):
        match = ID_IN_NAME.match(name)
        if match and f"SC-{match.group(1)}" not in rows:
            problems.append(f"{name}: its ID SC-{match.group(1)} has no row")
    return problems


def test_security_table_lists_a_test_or_a_reason_for_every_checklist_id():
    problems = table_problems(TABLE.read_text(), collected_test_names())
    assert not problems, "docs/SECURITY.md:\n" + "\n".join(problems)


# The checker itself: each kind of rot is caught.

GOOD = """
| ID | What | How | Tests |
|----|------|-----|-------|
| SC-01 | codes | pyotp | `test_sc01_known_answers` `test_helper_check` |
| SC-02 | other | none | not applicable: no such feature |
"""
EXISTING = {"test_sc01_known_answers", "test_helper_check"}
IDS = ["SC-01", "SC-02"]


def test_checker_accepts_a_complete_table():
    assert table_problems(GOOD, EXISTING, IDS) == []


def test_checker_flags_a_missing_row():
    table = GOOD.replace("| SC-02 |", "| XX-02 |")
    assert table_problems(table, EXISTING, IDS) == ["SC-02: no row in docs/SECURITY.md"]


def test_checker_flags_an_id_with_neither_test_nor_reason():
    table = GOOD.replace("not applicable: no such feature", "`test_helper_check`")
    assert table_problems(table, EXISTING, IDS) == [
        "SC-02: needs a test named test_sc02_... or 'not applicable: reason'"
    ]


def test_checker_flags_a_named_test_that_does_not_exist():
    problems = table_problems(GOOD, EXISTING - {"test_sc01_known_answers"}, IDS)
    assert "SC-01: test_sc01_known_answers is not a test in tests/" in problems
    assert "SC-01: needs a test named test_sc01_... or 'not applicable: reason'" in problems


def test_checker_flags_an_id_test_missing_from_its_row():
    problems = table_problems(GOOD, EXISTING | {"test_sc01_new_case"}, IDS)
    assert problems == ["SC-01: add `test_sc01_new_case` to its row"]


def test_checker_flags_a_test_whose_id_has_no_row():
    problems = table_problems(GOOD, EXISTING | {"test_sc40_future_item"}, IDS)
    assert problems == ["test_sc40_future_item: its ID SC-40 has no row"]


def test_collects_real_test_names():
    names = collected_test_names()
    assert "test_sc06_same_code_on_20_pending_logins_signs_in_exactly_one" in names
    assert "test_security_table_lists_a_test_or_a_reason_for_every_checklist_id" in names
    assert "table_problems" not in names
