"""directory/users: usernames are matched by one normal form, and an odd username gets
the one generic answer (SC-31)."""

from __future__ import annotations

import pytest
from conftest import PASSWORD
from helpers import bound_sessions, location, messages, signed_in_as

WRONG_PASSWORD_MESSAGE = "The username or password is not right."


ODD_USERNAMES = [
    "alice\x00",
    "al\x00ice",
    "\u0430lice",  # Cyrillic a
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
    "alice\u200b",
    "ALİCE",
    "alice:root",
    "%61lice",
    "x" * 10_000,
    " ",
]


# --- odd inputs (SC-31)


@pytest.mark.parametrize("username", ODD_USERNAMES, ids=lambda u: repr(u[:12]))
def test_sc31_odd_username_gets_the_generic_answer(app, new_browser, username):
    browser = new_browser()
    browser.get("/login")
    response = browser.post("/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 200
    assert messages(response) == [WRONG_PASSWORD_MESSAGE]
    assert bound_sessions(app) == []


@pytest.mark.parametrize("username", ["ALICE", " alice ", "\talice\n", "Alice"])
def test_username_case_and_surrounding_space_are_ignored(app, new_browser, username):
    browser = new_browser()
    browser.get("/login")
    response = browser.post("/login", {"username": username, "password": PASSWORD})
    assert location(response) == "/"
    assert signed_in_as(browser.client, "alice")
