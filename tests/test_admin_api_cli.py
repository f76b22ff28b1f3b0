"""Administration: the admin pages, the reset API and the command line.

SC-24 (who may use them), SC-25 (POST, CSRF, audit), SC-26 (what a reset does), SC-30
(the audit trail), and the public contract in PRODUCT.md: `/admin/`, `/admin/mfa`,
`/api/v1/users/<username>/totp` and the `flask` commands.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

import pytest
from conftest import PASSWORD, START, Browser, events, make_app, test_config
from cryptography.fernet import Fernet, InvalidToken
from peewee import fn

from standalone_mfa import create_app
from standalone_mfa.accounts import settings, tokens
from standalone_mfa.core.crypto import generate_key, hash_token
from standalone_mfa.core.db import db, is_sqlite
from standalone_mfa.core.models import (
    ALL_MODELS,
    ApiToken,
    AuditEvent,
    MfaThrottle,
    TotpCredential,
    User,
    WebSession,
)

WRONG_PASSWORD = "not the right password at all"
SELECT_RE = re.compile(r'<select[^>]*\bname="mfa_method"[^>]*>(.*?)</select>', re.S)
OPTION_RE = re.compile(r"<option([^>]*)>([^<]*)</option>")
VALUE_RE = re.compile(r'\bvalue="([^"]*)"')
ADMIN_PATHS = ("/admin/", "/admin/mfa")


# --- helpers -----------------------------------------------------------------------------


def api(app, method, username, token=None, *, client=None, headers=None):
    """One request to the reset API, as a script would send it (no cookies)."""
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    client = client or app.test_client()
    return client.open(f"/api/v1/users/{username}/totp", method=method, headers=headers)


def make_token(app, username):
    with app.app_context():
        return tokens.create_token(User.get(User.username == username), actor="test")


def mfa_method(app):
    with app.app_context():
        return settings.mfa_method()


def credential(app, username):
    with app.app_context():
        return TotpCredential.select().join(User).where(User.username == username).get_or_none()


def throttle_failures(app, username):
    with app.app_context():
        row = MfaThrottle.select().join(User).where(User.username == username).get_or_none()
        return row.failures if row else None


def sessions_of(app, username):
    with app.app_context():
        return WebSession.select().join(User).where(User.username == username).count()


def signed_in_admin(app, clock):
    """root, signed in (and through the second factor when the method is TOTP)."""
    admin = Browser(app, clock)
    if mfa_method(app) == "totp":
        admin.enrol("root")
    else:
        assert admin.login("root").headers["Location"] == "/"
    assert admin.get("/admin/").status_code == 200
    return admin


def select_options(page):
    """[(value, label, selected)] of the mfa_method select."""
    match = SELECT_RE.search(page)
    assert match, "no <select name=mfa_method> on the page"
    options = []
    for attributes, label in OPTION_RE.findall(match.group(1)):
        value = VALUE_RE.search(attributes)
        options.append((value.group(1) if value else None, label, "selected" in attributes))
    return options


def cli(app, *args, input=None):
    # `flask --app standalone_mfa ...` (FlaskGroup) pushes an app context for every
    # command; the test runner invokes `app.cli` directly, so push one here.
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args), input=input)


def close_db():
    if not db.is_closed():
        db.close()


def reopen(tmp_path, clock, **overrides):
    """A second app (another process, say) on the same database, without make_app's
    users. The database handle is global: the previous app's connection is closed."""
    close_db()
    return create_app(test_config(tmp_path, clock, **overrides))


# --- the Administration pages --------------------------------------------------------------


def test_admin_index_links_to_mfa_setting_under_users_and_permissions(app, clock):
    admin = signed_in_admin(app, clock)
    page = admin.page("/admin/")
    assert "<title>Administration" in page
    section = page.index("Users and Permissions")
    link = re.search(r'<a href="/admin/mfa">\s*Multi-Factor Authentication\s*</a>', page)
    assert link, "no link to /admin/mfa labelled Multi-Factor Authentication"
    assert section < link.start()
    # And the home page of an admin leads there.
    assert 'href="/admin/"' in admin.page("/")


def test_admin_mfa_page_offers_disabled_and_totp(app, clock):
    admin = signed_in_admin(app, clock)
    response = admin.get("/admin/mfa")
    assert response.status_code == 200
    options = select_options(response.get_data(as_text=True))
    assert [(value, label) for value, label, _ in options] == [
        ("disabled", "Disabled"),
        ("totp", "TOTP"),
    ]
    assert [value for value, _, selected in options if selected] == ["disabled"]


def test_admin_saves_totp_with_confirmation_and_audit(app, clock):
    admin = signed_in_admin(app, clock)
    admin.get("/admin/mfa")
    response = admin.post("/admin/mfa", {"mfa_method": "totp"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/mfa"
    assert mfa_method(app) == "totp"
    # The admin signed in with a password only: TOTP now applies to them too (SC-27).
    response = admin.get("/admin/mfa")
    assert response.headers["Location"] == "/login?next=/admin/mfa"
    page = admin.page(response.headers["Location"])
    assert "Multi-Factor Authentication is now set to TOTP." in page
    assert "Please sign in again" in page
    admin.login("root", PASSWORD, next="/admin/mfa")
    secret = admin.setup_secret()
    response = admin.submit_code("/mfa/setup", {"code": admin.code(secret)})
    assert response.headers["Location"] == "/admin/mfa"
    page = admin.page("/admin/mfa")
    assert [value for value, _, selected in select_options(page) if selected] == ["totp"]
    (event,) = events(app, "mfa_method_changed")
    assert (event.actor, event.outcome) == ("root", "ok")
    assert "disabled" in event.detail and "totp" in event.detail


@pytest.mark.parametrize("value", ["sms", "", "TOTP", "totp "])
def test_admin_refuses_unknown_method(app, clock, value):
    admin = signed_in_admin(app, clock)
    admin.get("/admin/mfa")
    response = admin.post("/admin/mfa", {"mfa_method": value}, follow_redirects=True)
    assert response.status_code == 200
    assert "Choose Disabled or TOTP." in response.get_data(as_text=True)
    assert mfa_method(app) == "disabled"
    assert events(app, "mfa_method_changed") == []


# --- SC-24: who may use the admin pages and the API -----------------------------------------


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_sc24_admin_pages_send_anonymous_to_login(app, browser, path):
    response = browser.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_sc24_admin_post_as_anonymous_changes_nothing(app, browser):
    browser.get("/login")  # a valid CSRF token, so only the authorisation can refuse
    response = browser.post("/admin/mfa", {"mfa_method": "totp"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert mfa_method(app) == "disabled"
    assert events(app, "mfa_method_changed") == []


def test_sc24_admin_pages_forbidden_to_normal_user(app, browser):
    assert browser.login("alice").headers["Location"] == "/"
    for path in ADMIN_PATHS:
        response = browser.get(path)
        assert response.status_code == 403, path
        assert "Multi-Factor Authentication method" not in response.get_data(as_text=True)
    assert "/admin/" not in browser.page("/")
    response = browser.post("/admin/mfa", {"mfa_method": "totp"})
    assert response.status_code == 403
    assert mfa_method(app) == "disabled"
    assert events(app, "mfa_method_changed") == []


def test_sc24_admin_pending_mfa_cannot_reach_admin_pages(totp_app, clock, new_browser):
    # Pending set-up: root has no authenticator yet.
    pending = new_browser()
    assert pending.login("root").headers["Location"] == "/mfa/setup"
    for path in ADMIN_PATHS:
        response = pending.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/mfa/setup"
    pending.get("/mfa/setup")  # a CSRF token of this session: only the state may refuse
    response = pending.post("/admin/mfa", {"mfa_method": "disabled"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/mfa/setup"
    assert mfa_method(totp_app) == "totp"

    # Pending code: root has set up, a later sign-in has only passed the password.
    pending.enrol("root")
    clock.advance(60)
    later = new_browser()
    assert later.login("root").headers["Location"] == "/mfa/verify"
    for path in ADMIN_PATHS:
        response = later.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/mfa/verify"
    later.get("/mfa/verify")
    response = later.post("/admin/mfa", {"mfa_method": "disabled"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/mfa/verify"
    assert mfa_method(totp_app) == "totp"
    # Only the fixture's own change is on record.
    assert [e.actor for e in events(totp_app, "mfa_method_changed")] == ["test"]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_sc24_api_without_token_is_401_json(totp_app, browser, method):
    browser.enrol()
    response = api(totp_app, method, "alice")
    assert response.status_code == 401
    assert response.is_json
    assert "error" in response.get_json()
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert credential(totp_app, "alice") is not None


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer smfa_not-a-real-token",
        "Bearer ",
        "Bearer",
        "Basic cm9vdDpjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl",
        "Bearer " + "x" * 500,
        "smfa_valid",  # a real token without the scheme (replaced below)
        "Bearer smfa_valid!",  # a real token with one character more
    ],
)
def test_sc24_api_bad_token_is_401(totp_app, browser, authorization):
    browser.enrol()
    real = make_token(totp_app, "root")
    authorization = authorization.replace("smfa_valid", real)
    for method in ("GET", "DELETE"):
        response = api(totp_app, method, "alice", headers={"Authorization": authorization})
        assert response.status_code == 401, method
        assert response.is_json
        assert "WWW-Authenticate" in response.headers
    assert credential(totp_app, "alice") is not None


def test_sc24_api_bad_token_does_not_reveal_unknown_users(app):
    response = api(app, "GET", "nobody", "smfa_wrong")
    assert response.status_code == 401


def test_sc24_api_normal_user_token_is_403(totp_app, browser):
    browser.enrol()
    bob_token = make_token(totp_app, "bob")
    alice_token = make_token(totp_app, "alice")
    for token in (bob_token, alice_token):  # another user's credential, and one's own
        for method in ("GET", "DELETE"):
            response = api(totp_app, method, "alice", token)
            assert response.status_code == 403, method
            assert response.is_json
            assert "enrolled" not in response.get_json()
        assert api(totp_app, "GET", "nobody", token).status_code == 403
    assert credential(totp_app, "alice") is not None
    assert events(totp_app, "totp_reset") == []


def test_sc24_api_admin_token_is_allowed(totp_app, browser):
    browser.enrol()
    token = make_token(totp_app, "root")
    assert api(totp_app, "GET", "alice", token).status_code == 200
    assert api(totp_app, "DELETE", "alice", token).status_code == 204


def test_sc24_api_ignores_browser_session(totp_app, clock, browser):
    browser.enrol()
    admin = signed_in_admin(totp_app, clock)
    # The admin's fully signed-in browser, without a bearer token: 401.
    for method in ("GET", "DELETE"):
        response = api(totp_app, method, "alice", client=admin.client)
        assert response.status_code == 401, method
        assert "Set-Cookie" not in response.headers
    # An admin cookie does not lift a normal user's token.
    response = api(totp_app, "DELETE", "alice", make_token(totp_app, "bob"), client=admin.client)
    assert response.status_code == 403
    assert credential(totp_app, "alice") is not None


def test_sc24_api_token_opens_no_browser_session(totp_app, browser):
    browser.enrol("root")
    token = make_token(totp_app, "root")
    client = totp_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/", "/admin/", "/admin/mfa"):
        response = client.get(path, headers=headers)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login")
    response = api(totp_app, "GET", "root", token)
    assert "Set-Cookie" not in response.headers


# --- the reset API -------------------------------------------------------------------------


def test_api_get_reports_enrolment(totp_app, browser, clock):
    token = make_token(totp_app, "root")
    response = api(totp_app, "GET", "alice", token)
    assert response.status_code == 200
    assert response.get_json() == {"username": "alice", "enrolled": False, "confirmed_at": None}

    clock.advance(7)
    browser.enrol()
    response = api(totp_app, "GET", "alice", token)
    assert response.status_code == 200
    body = response.get_json()
    assert body["username"] == "alice"
    assert body["enrolled"] is True
    assert isinstance(body["confirmed_at"], str)
    confirmed = dt.datetime.fromisoformat(body["confirmed_at"])
    assert confirmed == (START + dt.timedelta(seconds=7)).replace(tzinfo=dt.UTC)
    # Nothing about the secret goes out.
    assert set(body) == {"username", "enrolled", "confirmed_at"}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_api_unknown_user_is_404_json(app, method):
    response = api(app, method, "nobody", make_token(app, "root"))
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"]


def test_api_delete_without_credential_is_404(totp_app):
    token = make_token(totp_app, "root")
    response = api(totp_app, "DELETE", "bob", token)
    assert response.status_code == 404
    assert response.is_json
    assert events(totp_app, "totp_reset") == []


def test_api_delete_enrolled_user_is_204_then_404(totp_app, browser):
    browser.enrol()
    token = make_token(totp_app, "root")
    response = api(totp_app, "DELETE", "alice", token)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert api(totp_app, "GET", "alice", token).get_json()["enrolled"] is False
    assert api(totp_app, "DELETE", "alice", token).status_code == 404


def test_api_tokens_are_stored_hashed(app):
    token = make_token(app, "root")
    assert token.startswith("smfa_")
    with app.app_context():
        (row,) = ApiToken.select()
        assert row.token_hash == hash_token(token)
        assert token not in json.dumps(row.__data__, default=str)
        assert token[len("smfa_") :] not in json.dumps(row.__data__, default=str)


# --- SC-26: what a reset does -----------------------------------------------------------------


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
    assert sessions_of(totp_app, "alice") == 2

    response = api(totp_app, "DELETE", "alice", make_token(totp_app, "root"))
    assert response.status_code == 204

    assert credential(totp_app, "alice") is None
    assert throttle_failures(totp_app, "alice") is None
    assert sessions_of(totp_app, "alice") == 0
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

    (event,) = events(totp_app, "totp_reset")
    assert (event.username, event.actor, event.outcome) == ("alice", "root", "ok")
    assert event.ip == "127.0.0.1"


def test_sc26_after_reset_next_login_sets_up_new_secret(totp_app, clock, new_browser):
    old_secret = new_browser().enrol()
    assert api(totp_app, "DELETE", "alice", make_token(totp_app, "root")).status_code == 204

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
    assert api(totp_app, "DELETE", "alice", make_token(totp_app, "root")).status_code == 204
    clock.advance(60)
    again = new_browser()
    again.get("/login")
    response = again.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.headers["Location"] == "/mfa/setup"
    page = again.page("/mfa/setup").lower()  # the first page after the password
    assert "reset" in page or "removed" in page


# --- SC-25: admin actions are POST only, with CSRF, audited --------------------------------------


def test_sc25_admin_post_without_csrf_is_400_and_changes_nothing(app, clock):
    admin = signed_in_admin(app, clock)
    admin.get("/admin/mfa")
    response = admin.post("/admin/mfa", {"mfa_method": "totp"}, csrf=False)
    assert response.status_code == 400
    response = admin.post("/admin/mfa", {"mfa_method": "totp", "csrf_token": "forged"})
    assert response.status_code == 400
    assert mfa_method(app) == "disabled"
    assert events(app, "mfa_method_changed") == []


def test_sc25_admin_csrf_token_of_another_session_is_refused(app, clock, new_browser):
    admin = signed_in_admin(app, clock)
    attacker = new_browser()
    attacker.get("/login")
    admin.get("/admin/mfa")
    response = admin.post("/admin/mfa", {"mfa_method": "totp", "csrf_token": attacker.token})
    assert response.status_code == 400
    assert mfa_method(app) == "disabled"


def test_sc25_admin_setting_changes_only_by_post(app, clock):
    admin = signed_in_admin(app, clock)
    assert admin.get("/admin/mfa?mfa_method=totp").status_code == 200
    for method in ("put", "patch", "delete"):
        response = getattr(admin.client, method)("/admin/mfa", data={"mfa_method": "totp"})
        assert response.status_code in (400, 405), method
    assert mfa_method(app) == "disabled"
    assert events(app, "mfa_method_changed") == []


def test_sc25_admin_actions_are_audited_with_actor_target_outcome(totp_app, clock, new_browser):
    new_browser().enrol("alice")
    admin = signed_in_admin(totp_app, clock)
    admin.get("/admin/mfa")
    admin.post("/admin/mfa", {"mfa_method": "disabled"})
    admin.get("/admin/mfa")
    admin.post("/admin/mfa", {"mfa_method": "disabled"})  # saved again: no change
    api(totp_app, "DELETE", "alice", make_token(totp_app, "root"))

    changes = [e for e in events(totp_app, "mfa_method_changed") if e.actor == "root"]
    assert [(e.outcome, e.ip) for e in changes] == [
        ("ok", "127.0.0.1"),
        ("unchanged", "127.0.0.1"),
    ]
    assert "totp" in changes[0].detail and "disabled" in changes[0].detail
    (reset,) = events(totp_app, "totp_reset")
    assert (reset.actor, reset.username, reset.outcome) == ("root", "alice", "ok")


def test_sc27_switch_to_totp_ends_password_only_sessions(app, clock, new_browser):
    alice = new_browser()
    assert alice.login().headers["Location"] == "/"
    admin = signed_in_admin(app, clock)
    admin.get("/admin/mfa")
    admin.post("/admin/mfa", {"mfa_method": "totp"})
    assert mfa_method(app) == "totp"
    response = alice.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(("/login", "/mfa/setup"))


# --- the command line ----------------------------------------------------------------------------


def fresh_app(tmp_path, clock):
    """An app on an empty database (no tables, no users), as after installation."""
    app = create_app(test_config(tmp_path, clock))
    with app.app_context():
        db.drop_tables(ALL_MODELS, safe=True, cascade=not is_sqlite())
        close_db()
    return app


def test_cli_init_db_creates_first_admin_once(tmp_path, clock):
    app = fresh_app(tmp_path, clock)
    try:
        first = cli(app, "init-db")
        assert first.exit_code == 0, first.output
        passwords = re.findall(r"password: (\S+)", first.output)
        assert len(passwords) == 1, first.output
        password = passwords[0]
        assert first.output.count(password) == 1
        with app.app_context():
            (admin,) = User.select()
            assert (admin.username, admin.is_admin) == ("admin", True)
            hash_before = admin.password_hash
            assert password not in hash_before

        second = cli(app, "init-db")
        assert second.exit_code == 0, second.output
        assert "password" not in second.output.lower()
        with app.app_context():
            assert User.select().count() == 1
            assert User.get().password_hash == hash_before
            created = AuditEvent.select().where(AuditEvent.event == "user_created")
            assert [(e.username, e.actor) for e in created] == [("admin", "cli")]

        browser = Browser(app, clock)
        assert browser.login("admin", password).headers["Location"] == "/"
        assert browser.get("/admin/mfa").status_code == 200
    finally:
        close_db()


def test_cli_init_db_on_existing_users_creates_no_admin(app):
    result = cli(app, "init-db")
    assert result.exit_code == 0, result.output
    assert "password" not in result.output.lower()
    with app.app_context():
        assert User.get_or_none(User.username == "admin") is None
        assert User.select().count() == 3


@pytest.mark.parametrize("admin_flag", [False, True])
def test_cli_user_create_can_sign_in(app, clock, admin_flag):
    password = "a long enough password"
    args = ["user", "create", "carol", "--password-stdin"] + (["--admin"] if admin_flag else [])
    result = cli(app, *args, input=password + "\n")
    assert result.exit_code == 0, result.output
    assert "carol" in result.output
    assert password not in result.output
    with app.app_context():
        assert User.get(User.username == "carol").is_admin is admin_flag
    browser = Browser(app, clock)
    assert browser.login("carol", password).headers["Location"] == "/"
    assert browser.get("/admin/").status_code == (200 if admin_flag else 403)


def test_cli_user_create_duplicate_fails(app):
    with app.app_context():
        hash_before = User.get(User.username == "alice").password_hash
    result = cli(app, "user", "create", "alice", "--password-stdin", input="another password\n")
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert User.get(User.username == "alice").password_hash == hash_before
        assert User.select().count() == 3


def test_cli_user_create_short_password_fails(app):
    result = cli(app, "user", "create", "dave", "--password-stdin", input="short\n")
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert User.get_or_none(User.username == "dave") is None


def test_cli_mfa_method_shows_and_sets(app):
    result = cli(app, "mfa", "method")
    assert result.exit_code == 0
    assert result.output.strip() == "disabled"

    result = cli(app, "mfa", "method", "totp")
    assert result.exit_code == 0, result.output
    assert "TOTP" in result.output
    assert mfa_method(app) == "totp"
    assert cli(app, "mfa", "method").output.strip() == "totp"
    (event,) = events(app, "mfa_method_changed")
    assert (event.actor, event.outcome) == ("cli", "ok")


def test_cli_mfa_method_refuses_unknown(totp_app):
    result = cli(totp_app, "mfa", "method", "sms")
    assert result.exit_code != 0
    assert "sms" in result.output
    assert mfa_method(totp_app) == "totp"
    assert [e.actor for e in events(totp_app, "mfa_method_changed")] == ["test"]


def test_cli_mfa_reset_enrolled_user_ends_sessions(totp_app, browser):
    browser.enrol()
    assert browser.get("/").status_code == 200
    result = cli(totp_app, "mfa", "reset", "alice")
    assert result.exit_code == 0, result.output
    assert "alice" in result.output
    assert credential(totp_app, "alice") is None
    assert sessions_of(totp_app, "alice") == 0
    response = browser.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    (event,) = events(totp_app, "totp_reset")
    assert (event.username, event.actor, event.outcome) == ("alice", "cli", "ok")


def test_cli_mfa_reset_unknown_or_not_enrolled_fails(totp_app):
    result = cli(totp_app, "mfa", "reset", "nobody")
    assert result.exit_code != 0
    assert "No user named 'nobody'" in result.output
    result = cli(totp_app, "mfa", "reset", "bob")
    assert result.exit_code != 0
    assert "no TOTP credential" in result.output
    assert events(totp_app, "totp_reset") == []


def test_cli_token_create_prints_working_token_last(totp_app, browser):
    browser.enrol()
    result = cli(totp_app, "token", "create", "root")
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("smfa_")
    response = api(totp_app, "GET", "alice", token)
    assert response.status_code == 200
    assert response.get_json()["enrolled"] is True
    (event,) = events(totp_app, "token_created")
    assert (event.username, event.actor) == ("root", "cli")
    with totp_app.app_context():
        assert ApiToken.select().where(ApiToken.token_hash == token).count() == 0


def test_cli_token_create_for_normal_user_warns_and_api_refuses(app):
    result = cli(app, "token", "create", "alice")
    assert result.exit_code == 0, result.output
    assert "not an administrator" in result.output
    token = result.output.strip().splitlines()[-1]
    assert api(app, "GET", "alice", token).status_code == 403


def test_sc30_cli_token_revoke_stops_the_token_at_once_and_is_audited(app):
    tokens_made = [cli(app, "token", "create", "root").output.strip().splitlines()[-1]]
    tokens_made.append(cli(app, "token", "create", "root").output.strip().splitlines()[-1])
    listing = cli(app, "token", "list", "root")
    assert listing.exit_code == 0 and listing.output.count("created ") == 2
    assert not any(token in listing.output for token in tokens_made)  # never shown again
    first_id = listing.output.split("\t", 1)[0]

    result = cli(app, "token", "revoke", "root", "--id", first_id)
    assert result.exit_code == 0 and "Revoked 1 API token" in result.output
    assert api(app, "GET", "alice", tokens_made[0]).status_code == 401
    assert api(app, "GET", "alice", tokens_made[1]).status_code == 200  # the other still works
    result = cli(app, "token", "revoke", "root", "--id", first_id)
    assert result.exit_code != 0 and "has no token" in result.output

    result = cli(app, "token", "revoke", "root")
    assert result.exit_code == 0 and "Revoked 1 API token" in result.output
    assert api(app, "GET", "alice", tokens_made[1]).status_code == 401
    revoked = events(app, "token_revoked")
    assert [(e.username, e.actor) for e in revoked] == [("root", "cli")] * 3
    assert all(token not in (e.detail or "") for e in revoked for token in tokens_made)
    assert cli(app, "token", "revoke", "nobody").exit_code != 0


def test_cli_token_create_unknown_user_fails(app):
    result = cli(app, "token", "create", "nobody")
    assert result.exit_code != 0
    assert "No user named 'nobody'" in result.output
    with app.app_context():
        assert ApiToken.select().count() == 0


def test_cli_rotate_keys_reencrypts_with_newest_key(tmp_path, clock):
    old_key, new_key = generate_key(), generate_key()
    try:
        first = make_app(tmp_path, clock, MFA_ENCRYPTION_KEYS=[old_key])
        with first.app_context():
            settings.set_mfa_method("totp", actor="test")
        secret = Browser(first, clock).enrol()

        rotating = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key, old_key])
        result = cli(rotating, "mfa", "rotate-keys")
        assert result.exit_code == 0, result.output
        assert "1" in result.output
        with rotating.app_context():
            ciphertext = TotpCredential.get().secret_encrypted
        assert Fernet(new_key).decrypt(ciphertext.encode()).decode() == secret
        with pytest.raises(InvalidToken):
            Fernet(old_key).decrypt(ciphertext.encode())

        # With the old key gone, alice still signs in with her app.
        newest_only = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key])
        clock.advance(60)
        browser = Browser(newest_only, clock)
        assert browser.login().headers["Location"] == "/mfa/verify"
        response = browser.post("/mfa/verify", {"code": browser.code(secret)})
        assert response.headers["Location"] == "/"
    finally:
        close_db()


def test_cli_rotate_keys_reencrypts_pending_setup_secrets(tmp_path, clock):
    old_key, new_key = generate_key(), generate_key()
    try:
        first = make_app(tmp_path, clock, MFA_ENCRYPTION_KEYS=[old_key])
        with first.app_context():
            settings.set_mfa_method("totp", actor="test")
        browser = Browser(first, clock)
        assert browser.login().headers["Location"] == "/mfa/setup"
        secret = browser.setup_secret()
        cookie = browser.cookie()

        rotating = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key, old_key])
        assert cli(rotating, "mfa", "rotate-keys").exit_code == 0

        newest_only = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key])
        browser = Browser(newest_only, clock)
        browser.client.set_cookie(newest_only.config["SESSION_COOKIE_NAME"], cookie)
        response = browser.get("/mfa/setup")
        assert response.status_code == 200
        assert browser.setup_secret() == secret
        response = browser.submit_code("/mfa/setup", {"code": browser.code(secret)})
        assert response.headers["Location"] == "/"
    finally:
        close_db()


# --- SC-30: the audit trail ----------------------------------------------------------------------


def test_sc30_audit_records_are_utc_complete_and_hold_no_secrets(app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        first_new_id = AuditEvent.select(fn.MAX(AuditEvent.id)).scalar() or 0
    browsers = []
    cookies = set()
    codes = []

    def browser():
        b = Browser(app, clock)
        browsers.append(b)
        return b

    def note_cookies():
        cookies.update(b.cookie() for b in browsers if b.cookie())

    # Setting changed (root signs in while the method is still Disabled).
    admin = browser()
    admin.login("root")
    note_cookies()
    admin.get("/admin/mfa")
    admin.post("/admin/mfa", {"mfa_method": "totp"})
    note_cookies()
    # Failed then successful password, and enrolment.
    alice = browser()
    alice.login("alice", WRONG_PASSWORD)
    note_cookies()
    alice.login("alice")
    note_cookies()
    secret = alice.setup_secret()
    codes.append(alice.code(secret))
    alice.post("/mfa/setup", {"code": codes[-1]})
    note_cookies()
    # A wrong code, the right one, then the same one replayed.
    clock.advance(60)
    later = browser()
    later.login()
    codes.append(later.code(secret, steps=20))
    later.post("/mfa/verify", {"code": codes[-1]})
    codes.append(later.code(secret))
    later.post("/mfa/verify", {"code": codes[-1]})
    note_cookies()
    replay = browser()
    replay.login()
    replay.post("/mfa/verify", {"code": codes[-1]})
    note_cookies()
    # A token is made and used for a reset; alice starts a new set-up.
    token = make_token(app, "root")
    assert api(app, "DELETE", "alice", token).status_code == 204
    clock.advance(60)
    again = browser()
    again.login()
    second_secret = again.setup_secret()
    note_cookies()

    with app.app_context():
        rows = list(AuditEvent.select().where(AuditEvent.id > first_new_id))
    seen = {(row.event, row.outcome) for row in rows}
    assert {
        ("mfa_method_changed", "ok"),
        ("login", "failed"),
        ("login", "ok"),
        ("totp_enrolled", "ok"),
        ("totp", "failed"),
        ("totp", "ok"),
        ("totp_replay", "refused"),
        ("token_created", "ok"),
        ("totp_reset", "ok"),
    } <= seen

    for row in rows:
        assert row.event and row.outcome, row.__data__
        assert isinstance(row.at, dt.datetime)
        assert row.at.tzinfo is None  # naive UTC, from the app's clock
        assert START <= row.at <= clock.now()
        if row.event in {"totp", "totp_enrolled", "totp_replay", "totp_reset"}:
            assert row.username == "alice", row.__data__
        if row.event in {"login", "totp", "totp_enrolled", "totp_replay", "totp_reset"}:
            assert row.username in {"alice", "root"}, row.__data__
            assert row.ip == "127.0.0.1", row.__data__
        if row.event in {"mfa_method_changed", "totp_reset", "token_created"}:
            assert row.actor, row.__data__

    # One JSON log line per record, with the same UTC time.
    audit_lines = [r for r in caplog.records if r.name == "standalone_mfa.audit"]
    assert len(audit_lines) == len(rows)
    for row, line in zip(rows, audit_lines, strict=True):
        logged = json.loads(line.getMessage())
        assert (logged["event"], logged["outcome"]) == (row.event, row.outcome)
        assert logged["at"].endswith("Z")
        assert dt.datetime.fromisoformat(logged["at"]) == row.at.replace(tzinfo=dt.UTC)

    secrets_seen = {
        "password": [PASSWORD, WRONG_PASSWORD],
        "TOTP secret": [secret, second_secret, secret[:16], second_secret[:16]],
        "code": codes,
        "API token": [token, token.removeprefix("smfa_")],
        "session cookie": sorted(cookies),
    }
    assert len(cookies) >= len(browsers)
    texts = [json.dumps(row.__data__, default=str) for row in rows]
    texts += [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    for kind, values in secrets_seen.items():
        for value in values:
            assert value
            for text in texts:
                assert value not in text, f"{kind} found in: {text}"
