"""`core.messages`: one table for what people read. Every key the code asks for
exists, every message in the table is used, and the wait and drift texts read right."""

from __future__ import annotations

import ast
import re

import pytest
from support.paths import PACKAGE

from standalone_mfa.core import messages

MESSAGES_FILE = PACKAGE / "core" / "messages.py"


def keys_used_in_code() -> set[str]:
    """The message keys the package asks for: the string constants in the first
    argument of `text(...)` and `counted(...)`, the second of
    `Proof(...)`, and any `problem=`."""
    used = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        # A module with a `text` of its own (core/config.py's kind of setting) calls
        # that one by its bare name: those calls name no message.
        own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if path.name == "messages.py":
            own = set()  # its own text() is the one that names messages
        for node in ast.walk(tree):
            if isinstance(node, ast.arguments):  # def f(..., problem="wrong_code")
                with_defaults = node.args[len(node.args) - len(node.defaults) :]
                pairs = [
                    *zip(with_defaults, node.defaults, strict=True),
                    *zip(node.kwonlyargs, node.kw_defaults, strict=True),
                ]
                used |= {
                    default.value
                    for arg, default in pairs
                    if arg.arg == "problem" and isinstance(default, ast.Constant)
                }
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            places = [kw.value for kw in node.keywords if kw.arg == "problem"]
            bare_own = isinstance(node.func, ast.Name) and node.func.id in own
            if name in ("text", "counted") and node.args and not bare_own:
                places.append(node.args[0])
            if name == "Proof" and len(node.args) > 1:
                places.append(node.args[1])
            for place in places:
                pieces = {
                    id(c)
                    for j in ast.walk(place)
                    if isinstance(j, ast.JoinedStr)
                    for c in j.values
                }
                used |= {
                    c.value
                    for c in ast.walk(place)
                    if isinstance(c, ast.Constant)
                    and isinstance(c.value, str)
                    and id(c) not in pieces
                }
    return used


def test_every_key_the_code_asks_for_exists_and_every_message_is_used():
    used = keys_used_in_code()
    assert used - set(messages.MESSAGES) == set()
    assert set(messages.MESSAGES) - used == set()


def test_an_unknown_key_is_an_error_not_a_blank_message():
    with pytest.raises(KeyError):
        messages.text("no_such_message")


@pytest.mark.parametrize(
    ("seconds", "code", "expected"),
    [
        (1, True, "Too many wrong codes. Wait 1 second, then try again."),
        (32, True, "Too many wrong codes. Wait 32 seconds, then try again."),
        (2, False, "Too many failed sign-ins for this username. Wait 2 seconds, then try again."),
    ],
)
def test_the_wait_message_counts_right(seconds, code, expected):
    assert messages.wait(seconds, code=code) == expected


def test_the_drift_hint_says_how_far_and_which_way():
    assert messages.drift_hint(-2, 30).startswith("This code was valid about 1 minute ago.")
    assert messages.drift_hint(6, 30).startswith(
        "This code will only be valid in about 3 minutes."
    )


def test_counted_picks_the_form_for_the_number():
    assert messages.counted("devices_forgotten", 1) == "Forgot 1 remembered device."
    assert messages.counted("devices_forgotten", 0) == "Forgot 0 remembered devices."


def test_no_message_names_a_secret():
    for key, message in messages.MESSAGES.items():
        for form in [message] if isinstance(message, str) else message:
            assert not re.search(r"\{(code|secret|password|token)\}", form), key


def test_a_plural_message_is_read_only_through_counted():
    with pytest.raises(TypeError, match="counted"):
        messages.text("devices_forgotten", count=2)


def test_the_extractor_gives_babel_every_message_with_its_plural():
    from io import BytesIO

    found = list(messages.extract(BytesIO(MESSAGES_FILE.read_bytes()), (), (), {}))
    singular = {text for _, how, text, _ in found if how == "gettext"}
    plural = {forms for _, how, forms, _ in found if how == "ngettext"}
    assert singular == {m for m in messages.MESSAGES.values() if isinstance(m, str)} | set(
        messages.EVENT_LABELS.values()
    )
    assert plural == {m for m in messages.MESSAGES.values() if not isinstance(m, str)}
    assert all(len(forms) == 2 for forms in plural)


def test_the_extractor_gives_babel_every_event_label_with_its_event():
    """The audit labels are translated too (`event_label` reads them through gettext):
    each is extracted, named by its event and outcome for the translator."""
    from io import BytesIO

    found = list(messages.extract(BytesIO(MESSAGES_FILE.read_bytes()), (), (), {}))
    labels = {(text, comment[0]) for _, how, text, comment in found if how == "gettext"}
    for (event, outcome), label in messages.EVENT_LABELS.items():
        assert (label, f"event {event} {outcome}") in labels
