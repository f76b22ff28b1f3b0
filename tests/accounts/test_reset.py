"""accounts/reset: an administrator's MFA reset deletes the credential, recovery codes,
remembered devices and sessions, is audited, and races nothing into a dead end (SC-26)."""

from __future__ import annotations

import peewee
import pytest
from support.app import PASSWORD
from support.client import signed_in_as, totp_api
from support.db import (
    audit_events,
    audit_rows,
    credential,
    devices_of,
    failures,
    recovery_hashes,
    sessions_of,
    set_remember_days,
)
from support.pages import location, text
from support.steps import (
    api_token,
    give_credential,
    pending_setup,
    pending_verify,
    remembered_browser,
    use_recovery_code,
)

from standalone_mfa.accounts import reset
from standalone_mfa.core.models import MfaThrottle, TotpCredential, User, WebSession
from standalone_mfa.directory import tokens
from standalone_mfa.factors import totp
from standalone_mfa.signin import sessions, state


def reset_by_function(app):
    with app.app_context():
        assert reset.reset_totp(User.get(User.username == "alice"), actor="root")


def reset_by_cli(app):
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["mfa", "reset", "alice"])
    assert result.exit_code == 0, result.output


def reset_by_api(app):
    with app.app_context():
        token = tokens.create_token(User.get(User.username == "root"), actor="test")
    response = app.test_client().delete(
        "/api/v1/users/alice/totp", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 204


def throttle_failures(app, username):
    with app.app_context():
        row = MfaThrottle.select().join(User).where(User.username == username).get_or_none()
        return row.failures if row else None


# --- SC-26: what a reset does


def test_sc26_reset_deletes_credential_ends_sessions_and_audits(totp_app, clock, new_browser):
    alice = new_browser()
    old_secret = alice.enrol()
    bob = new_browser()
    bob.enrol("bob")
    clock.advance(60)
    pending = new_browser()  # a second sign-in of alice, waiting for her code
    assert pending.login().headers["Location"] == "/mfa/verify"
    pending.post("/mfa/verify", {"code": "000000"})  # one failure on the throttle
    assert throttle_failures(totp_app, "alice") == 1
    assert len(sessions_of(totp_app, "alice")) == 2

    response = totp_api(totp_app, "DELETE", "alice", api_token(totp_app, "root"))
    assert response.status_code == 204

    assert credential(totp_app, "alice") is None
    assert throttle_failures(totp_app, "alice") is None
    assert len(sessions_of(totp_app, "alice")) == 0
    # Her signed-in browser is signed out; her pending login is over.
    response = alice.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    response = pending.post("/mfa/verify", {"code": pending.code(old_secret)})
    # Refused either by CSRF (its secret went with the session) or by the guard.
    assert response.status_code in (302, 400)
    assert response.headers.get("Location", "/login").startswith("/login")
    response = pending.get("/mfa/verify")
    assert response.headers["Location"].startswith("/login")
    assert credential(totp_app, "alice") is None
    # Other people are not affected.
    assert bob.get("/").status_code == 200
    assert credential(totp_app, "bob") is not None

    (event,) = audit_events(totp_app, "totp_reset")
    assert (event.username, event.actor, event.outcome) == ("alice", "root", "ok")
    assert event.ip == "127.0.0.1"


def test_sc26_after_reset_next_login_sets_up_new_secret(totp_app, clock, new_browser):
    old_secret = new_browser().enrol()
    assert totp_api(totp_app, "DELETE", "alice", api_token(totp_app, "root")).status_code == 204

    clock.advance(60)
    again = new_browser()
    assert again.login().headers["Location"] == "/mfa/setup"
    new_secret = again.setup_secret()
    assert new_secret != old_secret
    # The old app's code does not set up the new credential.
    response = again.post("/mfa/setup", {"code": again.code(old_secret)})
    assert response.headers["Location"] == "/mfa/setup"
    assert credential(totp_app, "alice") is None
    response = again.submit_code("/mfa/setup", {"code": again.code(new_secret)})
    assert response.headers["Location"] == "/"
    assert "signed in as" in again.page("/")
    assert credential(totp_app, "alice") is not None

    # From now on the new secret is the one that counts.
    clock.advance(60)
    later = new_browser()
    assert later.login().headers["Location"] == "/mfa/verify"
    response = later.post("/mfa/verify", {"code": later.code(old_secret)})
    assert response.headers["Location"] == "/mfa/verify"
    response = later.post("/mfa/verify", {"code": later.code(new_secret)})
    assert response.headers["Location"] == "/"


def test_sc26_user_is_told_at_next_login_after_reset(totp_app, clock, new_browser):
    new_browser().enrol()
    assert totp_api(totp_app, "DELETE", "alice", api_token(totp_app, "root")).status_code == 204
    clock.advance(60)
    again = new_browser()
    again.get("/login")
    response = again.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.headers["Location"] == "/mfa/setup"
    page = again.page("/mfa/setup").lower()  # the first page after the password
    assert "reset" in page or "removed" in page


# --- SC-26: an administrator's reset


@pytest.mark.parametrize("reset_how", [reset_by_function, reset_by_cli, reset_by_api])
def test_sc26_reset_deletes_recovery_codes_and_remembered_devices(
    totp_app, new_browser, reset_how
):
    set_remember_days(totp_app, 30)
    enrolling = new_browser()
    secret = enrolling.enrol()
    old_codes = enrolling.recovery_codes
    device = remembered_browser(new_browser, secret)
    assert location(use_recovery_code(pending_verify(new_browser), old_codes[0])) == "/"
    assert len(recovery_hashes(totp_app, "alice")) == 10
    assert len(devices_of(totp_app, "alice")) == 1

    reset_how(totp_app)
    assert recovery_hashes(totp_app, "alice") == set()
    assert devices_of(totp_app, "alice") == []
    assert ("totp_reset", "ok", "alice") in {r[:3] for r in audit_rows(totp_app)}

    # The remembered browser is sent to set up again, and is told why.
    assert location(device.login()) == "/mfa/setup"
    assert "An administrator reset your two-factor authentication" in text(
        device.get("/mfa/setup")
    )
    new_secret = device.setup_secret()
    assert location(device.submit_code("/mfa/setup", device.code(new_secret))) == "/"
    device.logout()
    # With the new authenticator: the old device token and old codes are worthless.
    assert location(device.login()) == "/mfa/verify"
    assert location(use_recovery_code(device, old_codes[1])) == "/mfa/recovery"
    assert not signed_in_as(device, "alice")


# --- a database error half-way through a multi-step change


def test_reset_database_error_half_way_is_503_and_changes_nothing(
    totp_app, new_browser, clock, monkeypatch
):
    alice = new_browser()
    alice.enrol()
    with totp_app.app_context():
        MfaThrottle.update(failures=3).execute()
    token = api_token(totp_app)

    def lost_database(_user):
        raise peewee.OperationalError("database is locked")

    # Called after the credential and the throttle rows were already deleted.
    monkeypatch.setattr(sessions, "end_sessions_of", lost_database)
    response = totp_app.test_client().delete(
        "/api/v1/users/alice/totp", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)
    assert credential(totp_app, "alice") is not None
    assert failures(totp_app, "alice") == 3
    assert signed_in_as(alice.client, "alice")
    assert audit_events(totp_app, "totp_reset") == []


# --- a reset racing a sign-in or a set-up


def test_sc26_reset_racing_the_password_step_leaves_no_dead_end(
    totp_app, new_browser, clock, monkeypatch
):
    secret = give_credential(totp_app, clock, "alice")
    real_password_accepted = state.password_accepted

    def reset_commits_meanwhile(web_session, user, *args, **kwargs):
        target = real_password_accepted(web_session, user, *args, **kwargs)
        reset.reset_totp(user, actor="root")
        return target

    monkeypatch.setattr(state, "password_accepted", reset_commits_meanwhile)
    browser = new_browser()
    browser.login()
    monkeypatch.undo()
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert failures(totp_app, "alice") == 0
    assert location(response).startswith(("/login", "/mfa/setup"))


def test_sc26_reset_committing_during_setup_keeps_no_credential(
    totp_app, new_browser, monkeypatch
):
    """An admin reset that ends the session while its set-up code is being saved: the
    credential is rolled back with the session, and the browser is sent to sign in."""
    browser, secret = pending_setup(new_browser)
    real_enrol = totp.enrol

    def enrol_while_reset(user, *args):
        credential = real_enrol(user, *args)
        # The reset's session delete lands before this request writes its session.
        WebSession.delete().where(WebSession.user == user).execute()
        return credential

    monkeypatch.setattr(totp, "enrol", enrol_while_reset)
    response = browser.post("/mfa/setup", {"code": browser.code(secret)})
    assert location(response) == "/login"
    with totp_app.app_context():
        assert TotpCredential.select().count() == 0
    assert not signed_in_as(browser.client, "alice")
