"""directory/users: usernames are matched by one normal form, and an odd username gets
the one generic answer (SC-31)."""

from __future__ import annotations

import pytest
from support.app import PASSWORD
from support.client import signed_in_as
from support.db import bound_sessions
from support.pages import location, messages

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


# --- what an administrator is told when a user cannot be made


@pytest.mark.parametrize(
    ("username", "password", "english", "french"),
    [
        ("no spaces", PASSWORD, "A username is 1-150 characters", "Un nom d'utilisateur compte"),
        ("carol", "short", "at least 8 characters", "au moins 8 caractères"),
        ("carol", "p" * 2000, "at most 1024 characters", "au plus 1024 caractères"),
        ("Alice", PASSWORD, "A user named alice already exists", "Un utilisateur nommé alice"),
    ],
)
def test_a_user_that_cannot_be_made_is_told_in_the_readers_language(
    app, username, password, english, french
):
    from standalone_mfa.core.models import User
    from standalone_mfa.directory.users import UserError, create_user
    from standalone_mfa.factors import passwords

    assert passwords.MIN_LENGTH == 8 and passwords.MAX_LENGTH == 1024
    for language, expected in (("en", english), ("fr", french)):
        with app.test_request_context("/", headers={"Accept-Language": language}):
            before = User.select().count()
            with pytest.raises(UserError) as refused:
                create_user(username, password)
            assert expected in str(refused.value) and "." in str(refused.value)
            assert User.select().count() == before
