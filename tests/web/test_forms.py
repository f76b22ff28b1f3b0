"""web/forms: CSRF on every form: a missing, foreign or tampered token changes nothing
(SC-28)."""

from __future__ import annotations

import pytest
from flask import g
from flask_wtf.csrf import validate_csrf
from support.app import PASSWORD
from support.client import signed_in_as
from support.db import credential_count, failures, mfa_method, sessions_of
from support.pages import location
from support.steps import enrol_then_pending_verify, pending_setup, save_mfa_settings
from wtforms import ValidationError

from standalone_mfa.core.models import AuditEvent
from standalone_mfa.signin.state import AUTHENTICATED
from standalone_mfa.web.forms import VerifyForm


def bad_token_data(kind: str, own_token: str, foreign_token: str) -> dict:
    if kind == "missing":
        return {}
    if kind == "foreign":
        return {"csrf_token": foreign_token}
    # "tampered": this session's own token with its signature broken
    return {"csrf_token": own_token[:-2] + ("AA" if own_token[-2:] != "AA" else "BB")}


def foreign_token(new_browser) -> str:
    """A valid token of someone else's (the attacker's own) signed-in session."""
    attacker = new_browser()
    attacker.login("bob")
    attacker.get("/")
    assert attacker.token
    return attacker.token


TOKEN_KINDS = ["missing", "foreign", "tampered"]


# --- SC-28 CSRF


def test_sc28_login_without_valid_csrf_changes_nothing(app, browser, new_browser):
    stolen = foreign_token(new_browser)
    browser.get("/login")
    for kind in TOKEN_KINDS:
        data = {"username": "alice", "password": PASSWORD}
        data.update(bad_token_data(kind, browser.token, stolen))
        response = browser.post("/login", data, csrf=False)
        assert response.status_code == 400, kind
        assert not signed_in_as(browser, "alice")
        browser.get("/login")
    assert sessions_of(app, "alice") == []
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "login").count() == 1  # bob's
    # The same request with the page's token works, so the refusal was the token's.
    assert location(browser.post("/login", {"username": "alice", "password": PASSWORD})) == "/"


def test_sc28_setup_without_valid_csrf_changes_nothing(totp_app, new_browser):
    stolen = foreign_token(new_browser)
    browser, secret = pending_setup(new_browser)
    for kind in TOKEN_KINDS:
        data = {"code": browser.code(secret)}
        data.update(bad_token_data(kind, browser.token, stolen))
        response = browser.post("/mfa/setup", data, csrf=False)
        assert response.status_code == 400, kind
        assert credential_count(totp_app) == 0
        assert failures(totp_app, "alice") == 0
        assert location(browser.get("/")) == "/mfa/setup"
        assert browser.setup_secret() == secret
    assert location(browser.submit_code("/mfa/setup", browser.code(secret))) == "/"


def test_sc28_verify_without_valid_csrf_changes_nothing(totp_app, new_browser, clock):
    browser, secret = enrol_then_pending_verify(new_browser, clock)
    stolen = foreign_token(new_browser)
    browser.get("/mfa/verify")
    for kind in TOKEN_KINDS:
        data = {"code": browser.code(secret)}
        data.update(bad_token_data(kind, browser.token, stolen))
        response = browser.post("/mfa/verify", data, csrf=False)
        assert response.status_code == 400, kind
        assert failures(totp_app, "alice") == 0
        assert location(browser.get("/")) == "/mfa/verify"
        browser.get("/mfa/verify")
    # The code was not consumed by the refused requests: it still signs in.
    assert location(browser.post("/mfa/verify", {"code": browser.code(secret)})) == "/"


def test_sc28_logout_without_valid_csrf_changes_nothing(app, browser, new_browser):
    stolen = foreign_token(new_browser)
    browser.login()
    browser.get("/")
    for kind in TOKEN_KINDS:
        data = bad_token_data(kind, browser.token, stolen)
        response = browser.post("/logout", data, csrf=False)
        assert response.status_code == 400, kind
        assert signed_in_as(browser, "alice")
        assert [s.state for s in sessions_of(app, "alice")] == [AUTHENTICATED]


def test_sc28_admin_setting_without_valid_csrf_changes_nothing(app, browser, new_browser):
    stolen = foreign_token(new_browser)
    browser.login("root")
    browser.get("/admin/mfa")
    for kind in TOKEN_KINDS:
        data = {"mfa_method": "totp"}
        data.update(bad_token_data(kind, browser.token, stolen))
        response = browser.post("/admin/mfa", data, csrf=False)
        assert response.status_code == 400, kind
        assert mfa_method(app) == "disabled"
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.actor == "root").count() == 0
    assert location(save_mfa_settings(browser, {"mfa_method": "totp"})) == "/admin/mfa"
    assert mfa_method(app) == "totp"


def test_sc28_a_form_only_read_signs_no_token_and_a_shown_one_is_checked(app):
    """A form built to read a POST (the code step's) signs no CSRF token it never sends;
    rendered, it carries this session's token, which the check accepts."""
    with app.test_request_context("/mfa/verify", method="POST", data={"code": "123456"}):
        form = VerifyForm()
        assert form.code.data == "123456"
        assert "csrf_token" not in g  # nothing signed while the form was only read
        shown = str(form.csrf_token)
        token = form.csrf_token.current_token
        assert token and f'value="{token}"' in shown
        validate_csrf(token)  # raises if it were not this session's
        with pytest.raises(ValidationError):
            validate_csrf(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
