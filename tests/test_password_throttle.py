"""Per-username back-off on wrong passwords (the password-step twin of SC-07/SC-08)."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import AuditEvent
from standalone_mfa.factors import passwords

MESSAGE_RE = re.compile(r'class="message message-error" role="alert">([^<]+)<')


def _attempt(person, username, password):
    person.get("/login")
    response = person.post("/login", {"username": username, "password": password})
    found = MESSAGE_RE.search(response.get_data(as_text=True))
    return response, found.group(1) if found else None


def _fail_times(person, username, times):
    for n in range(times):
        _attempt(person, username, f"wrong guess {n}")


@pytest.mark.parametrize("username", ["alice", "nobody-by-this-name"])
def test_sc07_wrong_passwords_back_off_per_username_known_or_not(new_browser, clock, username):
    _fail_times(new_browser(), username, DEFAULTS["PASSWORD_BACKOFF_AFTER"])
    # A fresh browser (new session, new cookie) meets the same counter.
    _, message = _attempt(new_browser(), username, PASSWORD)
    assert message == (
        "Too many failed sign-ins for this username. Wait 1 second, then try again."
    )
    clock.advance(1)
    response, message = _attempt(new_browser(), username, "still wrong")
    assert message == "The username or password is not right."
    # The next one waits twice as long.
    _, message = _attempt(new_browser(), username, PASSWORD)
    assert "Wait 2 seconds" in message


def test_sc07_right_password_after_the_wait_signs_in_and_resets(new_browser, clock, app):
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"])
    clock.advance(1)
    response, _ = _attempt(new_browser(), "alice", PASSWORD)
    assert response.headers["Location"] == "/"
    # Counting starts over: nine more wrong passwords do not throttle.
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"] - 1)
    response, _ = _attempt(new_browser(), "alice", PASSWORD)
    assert response.headers["Location"] == "/"


def test_sc08_while_throttled_the_password_is_not_checked_and_nothing_leaks(
    new_browser, monkeypatch, app
):
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"])
    checked = []
    real_check = passwords.check_password
    monkeypatch.setattr(
        passwords, "check_password", lambda *a: checked.append(1) or real_check(*a)
    )
    answers = {_attempt(new_browser(), "alice", pw)[1] for pw in (PASSWORD, "wrong one")}
    assert checked == []  # refused before the hash was even looked at
    assert len(answers) == 1  # the right and a wrong password get the same answer
    _attempt(new_browser(), "nobody-by-this-name", "x" * 9)
    assert checked == [1]  # another username is checked as usual
    with app.app_context():
        throttled = AuditEvent.select().where(
            (AuditEvent.event == "login") & (AuditEvent.outcome == "throttled")
        )
        assert throttled.count() == 2


def test_sc07_one_username_does_not_throttle_another(new_browser):
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"] + 3)
    response, _ = _attempt(new_browser(), "bob", PASSWORD)
    assert response.headers["Location"] == "/"


def test_username_case_and_spaces_share_one_counter(new_browser):
    for n in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"]):
        _attempt(new_browser(), ["alice", "ALICE", " Alice "][n % 3], f"wrong {n}")
    _, message = _attempt(new_browser(), "alice", PASSWORD)
    assert "Wait" in message
