"""signin/methods: how each session signed in is recorded at each step, shown on
Account security, and read as phishing resistance (SC-56) and RFC 8176 `amr`."""

from __future__ import annotations

import pytest
from support.client import signed_in_as
from support.db import set_remember_days
from support.oath import fresh_code
from support.pages import location
from support.steps import give_credential, remembered_browser, use_recovery_code

from standalone_mfa.core.models import WebSession
from standalone_mfa.directory.users import find_user
from standalone_mfa.signin import methods, state


def recorded(app, username="alice") -> list[str | None]:
    with app.app_context():
        user = find_user(username)
        return [row.signin_methods for row in WebSession.select().where(WebSession.user == user)]


@pytest.mark.parametrize(
    ("record", "resistant", "amr"),
    [
        ("password", False, ["pwd"]),
        ("password,code", False, ["pwd", "otp", "mfa"]),
        ("password,recovery_code", False, ["pwd", "otp", "mfa"]),
        ("password,remembered_device", False, ["pwd"]),
        ("password,security_key", True, ["pwd", "hwk", "mfa"]),
        ("password,code,security_key", True, ["pwd", "otp", "hwk", "mfa"]),
        ("passkey", True, ["hwk", "user", "mfa"]),
        ("security_key", False, ["hwk"]),  # never alone; and not without the password
        ("remembered_device,security_key", False, ["hwk"]),
        (None, False, []),
        ("password,made_up", False, ["pwd"]),
    ],
)
def test_sc56_what_a_record_means(record, resistant, amr):
    found = methods.parse(record)
    assert methods.phishing_resistant(found) is resistant
    assert methods.amr(found) == amr


def test_every_method_the_machine_records_is_known():
    assert set(state.METHOD_OF_EVENT.values()) <= set(methods.METHODS)
    assert state.add_method(None, "password") == "password"
    assert state.add_method("password,code", "code") == "password,code"
    assert state.add_method("password", "code") == "password,code"


def test_password_alone_is_recorded(browser, app):
    browser.login("alice")
    assert signed_in_as(browser, "alice")
    assert recorded(app) == ["password"]


def test_password_and_code_are_recorded_and_shown(totp_app, new_browser, clock):
    secret = give_credential(totp_app, clock, "alice")
    browser = new_browser()
    assert location(browser.login("alice")) == "/mfa/verify"
    assert recorded(totp_app) == ["password"]
    browser.post("/mfa/verify", {"code": fresh_code(browser, secret)})
    assert signed_in_as(browser, "alice")
    assert recorded(totp_app) == ["password,code"]
    page = browser.page("/account/security")
    assert "Signed in with" in page
    assert "password, code from the app" in page
    assert "phishing-resistant" not in page


def test_set_up_records_the_code(totp_app, new_browser):
    browser = new_browser()
    browser.enrol("alice")
    assert signed_in_as(browser, "alice")
    assert recorded(totp_app) == ["password,code"]


def test_recovery_code_is_recorded(totp_app, new_browser):
    browser = new_browser()
    browser.enrol("alice")
    codes = browser.recovery_codes
    browser.logout()
    other = new_browser()
    other.login("alice")
    response = use_recovery_code(other, codes[0])
    assert response.status_code == 302
    assert recorded(totp_app) == ["password,recovery_code"]


def test_sc56_remembered_device_is_recorded_as_such(totp_app, new_browser, clock):
    set_remember_days(totp_app, 30)
    secret = give_credential(totp_app, clock, "alice")
    browser = remembered_browser(new_browser, secret)
    browser.login("alice")
    assert signed_in_as(browser, "alice")
    assert recorded(totp_app) == ["password,remembered_device"]
    assert not methods.phishing_resistant(methods.parse(recorded(totp_app)[0]))


def test_sign_out_clears_the_record(browser, app):
    browser.login("alice")
    browser.logout()
    browser.login("alice")
    assert recorded(app) == ["password"]
