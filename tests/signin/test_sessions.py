"""signin/sessions: the server-side session behind an opaque cookie: rotation on every
transition, what the cookie holds, lifetimes and races on one cookie (SC-10, SC-11,
SC-14, SC-15, SC-17)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from itsdangerous import URLSafeTimedSerializer
from support.app import PASSWORD, make_app
from support.client import (
    Browser,
    RecordingBrowser,
    client_with_anonymous_cookie,
    client_with_cookie,
    cookie_name,
    http,
    http_signed_in_as,
    signed_in_as,
    together,
)
from support.db import failures, mfa_method, set_method, table_dump
from support.pages import form_token, goes_to_login, location, set_cookie_value, signed_payload
from support.proxies import HTTP_TIMEOUT
from support.steps import enrol_then_pending_verify

from standalone_mfa.core import crypto
from standalone_mfa.core.crypto import hash_token
from standalone_mfa.core.db import db
from standalone_mfa.core.models import User, WebSession
from standalone_mfa.directory import settings
from standalone_mfa.directory.users import find_user
from standalone_mfa.signin.state import STATES
from standalone_mfa.web.session_cookie import ANONYMOUS_COOKIE

TAMPERS = {
    # The first character: every one of its bits counts (the signature's last one has
    # two padding bits that base64 ignores, so flipping it may change nothing).
    "flipped": lambda value: ("B" if value[0] == "A" else "A") + value[1:],
    "extended": lambda value: value + "x",
    "truncated": lambda value: value[:-1],
    "username": lambda value: "alice",
    "json": lambda value: '{"user":"bob","state":"authenticated"}',
    "empty": lambda value: "",
}


# --- SC-14 rotation and session fixation


def test_sc14_cookie_changes_after_password_and_after_code(totp_app, new_browser, clock):
    secret = new_browser().enrol()
    clock.advance(60)
    browser = new_browser()
    browser.get("/login")
    # The login form's CSRF secret lives in the anonymous session's signed cookie (no
    # row before the password, SC-45).
    before = browser.anonymous_cookie()
    assert before and browser.cookie() is None
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    pending = browser.cookie()
    assert pending and pending != before
    assert browser.anonymous_cookie() is None  # moved into the row
    browser.get("/mfa/verify")
    assert location(browser.post("/mfa/verify", {"code": browser.code(secret)})) == "/"
    after = browser.cookie()
    assert after and after not in (before, pending)
    assert signed_in_as(browser, "alice")

    # The earlier ids are dead: whoever holds them is anonymous.
    for replay in (
        client_with_anonymous_cookie(totp_app, before),
        client_with_cookie(totp_app, pending),
    ):
        response = replay.get("/")
        assert response.status_code == 302 and location(response) == "/login"
        assert replay.get("/mfa/verify").status_code == 302


def test_sc14_cookie_changes_after_password_and_after_setup_code(totp_app, browser):
    browser.get("/login")
    before = browser.anonymous_cookie()
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    pending = browser.cookie()
    secret = browser.setup_secret()
    assert browser.cookie() == pending  # reloading does not rotate
    assert location(browser.submit_code("/mfa/setup", browser.code(secret))) == "/"
    after = browser.cookie()
    assert len({before, pending, after}) == 3
    assert not signed_in_as(client_with_cookie(totp_app, pending), "alice")


def test_sc14_cookie_changes_when_mfa_disabled(app, browser):
    browser.get("/login")
    before = browser.anonymous_cookie()
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert browser.cookie() not in (before, None)
    assert signed_in_as(browser, "alice")
    assert not signed_in_as(client_with_anonymous_cookie(app, before), "alice")


def test_sc14_planted_attacker_chosen_cookie_is_useless(totp_app, new_browser, clock):
    secret = new_browser().enrol()
    clock.advance(60)
    planted = "attacker-chosen-" + "A" * 27
    victim = new_browser()
    victim.client.set_cookie(cookie_name(totp_app), planted)
    victim.login()
    victim.get("/mfa/verify")
    assert location(victim.post("/mfa/verify", {"code": victim.code(secret)})) == "/"
    assert victim.cookie() != planted
    assert signed_in_as(victim, "alice")

    attacker = client_with_cookie(totp_app, planted)
    response = attacker.get("/")
    assert response.status_code == 302 and location(response) == "/login"
    assert table_dump(totp_app, WebSession).count(crypto.hash_token(planted)) == 0


@pytest.mark.parametrize("method", ["disabled", "totp"])
def test_sc14_planted_real_session_is_useless_after_login(app, new_browser, clock, method):
    if method == "totp":
        with app.app_context():
            settings.set_mfa_method("totp", actor="test")
        secret = new_browser().enrol()
        clock.advance(60)
    attacker = new_browser()
    attacker.get("/login")  # a genuine anonymous session the attacker knows
    planted = attacker.anonymous_cookie()
    assert planted

    victim = new_browser()
    victim.client.set_cookie(ANONYMOUS_COOKIE, planted)
    response = victim.login()
    assert victim.cookie() != planted
    if method == "totp":
        assert location(response) == "/mfa/verify"
        # Mid-way, the attacker's copy is not the pending login either.
        assert location(attacker.get("/mfa/verify")).startswith("/login")
        victim.get("/mfa/verify")
        victim.post("/mfa/verify", {"code": victim.code(secret)})
    assert signed_in_as(victim, "alice")

    response = attacker.get("/")
    assert response.status_code == 302 and location(response) == "/login"
    assert not signed_in_as(attacker, "alice")
    with app.app_context():
        assert WebSession.get_or_none(WebSession.token_hash == crypto.hash_token(planted)) is None


def test_sc14_csrf_token_of_planted_session_is_useless_after_login(app, new_browser):
    # Regression: the CSRF secret once survived the id rotation, so whoever planted
    # a session knew a valid form token of the signed-in session.
    attacker = new_browser()
    attacker.get("/login")
    planted, attacker_token = attacker.anonymous_cookie(), attacker.token

    victim = new_browser()  # the administrator, whose browser got the planted cookie
    victim.client.set_cookie(ANONYMOUS_COOKIE, planted)
    victim.login("root")
    assert signed_in_as(victim, "root")
    victim.get("/admin/mfa")

    # The attacker's page makes the victim's browser post with the token it knows.
    response = victim.client.post(
        "/admin/mfa", data={"csrf_token": attacker_token, "mfa_method": "totp"}
    )
    assert response.status_code == 400
    assert mfa_method(app) == "disabled"


def test_sc17_idle_timeout_ends_session(browser, clock, app):
    browser.login()
    clock.advance(29 * 60)
    assert browser.get("/").status_code == 200  # activity keeps it alive
    clock.advance(29 * 60)
    assert browser.get("/").status_code == 200
    clock.advance(30 * 60 + 1)
    response = browser.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    with app.app_context():
        assert WebSession.select().where(WebSession.state == "authenticated").count() == 0


def test_sc17_absolute_timeout_ends_even_an_active_session(browser, clock):
    browser.login()
    for _ in range(47):  # busy for 11 h 45 min
        clock.advance(15 * 60)
        assert browser.get("/").status_code == 200
    clock.advance(16 * 60)
    assert browser.get("/").status_code == 302


def test_sc14_csrf_token_from_before_sign_in_is_void_after(browser):
    browser.get("/login")
    old_token = browser.token
    browser.login()
    response = browser.post("/logout", {"csrf_token": old_token})
    assert response.status_code == 400
    assert browser.get("/").status_code == 200  # still signed in
    browser.get("/")
    assert browser.token != old_token
    assert browser.post("/logout").status_code == 302
    assert browser.get("/").status_code == 302


# --- SC-15 what the cookie holds


def test_sc15_cookie_is_opaque_random_and_carries_nothing(totp_app, new_browser, clock):
    browser = RecordingBrowser(totp_app, clock)
    browser.login()
    secret = browser.setup_secret()
    code = browser.code(secret)
    browser.submit_code("/mfa/setup", {"code": code})
    assert signed_in_as(browser, "alice")

    set_cookies = [
        header
        for _method, _path, response in browser.seen
        for header in response.headers.getlist("Set-Cookie")
    ]
    assert set_cookies
    # Only the session cookie is ever set (no Flask cookie session, no remember-me),
    # before the password the anonymous session's signed cookie (SC-45), and once
    # signed in the trusted-browser cookie (an opaque token too).
    names = {h.split("=", 1)[0] for h in set_cookies}
    assert names == {cookie_name(totp_app), ANONYMOUS_COOKIE, "smfa_browser"}
    forbidden = ("alice", "totp", "user", "state", secret, secret.lower(), code, *STATES)
    anonymous = [
        h.split(";", 1)[0].split("=", 1)[1] for h in set_cookies if h.startswith("smfa_anon=")
    ]
    # The CSRF secret, messages, and the random token passkey ceremonies are bound to
    # (the sign-in page offers a passkey sign-in): nothing else.
    for value in filter(None, anonymous):
        payload = signed_payload(value)
        assert set(payload) <= {"csrf_token", "_flashes", "webauthn_binding"}, payload
        for word in forbidden:
            assert word.lower() not in json.dumps(payload).lower()
    values = [
        h.split("=", 1)[1].split(";", 1)[0]
        for h in set_cookies
        if h.startswith(cookie_name(totp_app) + "=")
    ]
    for value in values:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,128}", value), value
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        assert len(raw) >= 16  # at least 128 bits
        assert "." not in value  # not a signed (itsdangerous) payload
        for word in forbidden:
            assert word.lower() not in value.lower()
            assert word.encode() not in raw

    # Independent logins get independent ids.
    cookies = set(values)
    for _ in range(5):
        other = new_browser()
        other.login("bob")
        cookies.add(other.cookie())
    assert len(cookies) == len(values) + 5


def test_sc15_database_keeps_only_the_hash(totp_app, browser):
    browser.login()
    secret = browser.setup_secret()
    pending = browser.cookie()
    dump = table_dump(totp_app, WebSession)
    assert pending not in dump
    assert secret not in dump and secret.lower() not in dump  # encrypted while pending
    assert crypto.hash_token(pending) == hashlib.sha256(pending.encode()).hexdigest()
    assert crypto.hash_token(pending) in dump

    browser.post("/mfa/setup", {"code": browser.code(secret)})
    token = browser.cookie()
    dump = table_dump(totp_app, WebSession)
    assert token not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump


@pytest.mark.parametrize("method", ["disabled", "totp"])
def test_sc15_cookie_captured_before_logout_is_rejected_after(app, new_browser, clock, method):
    browser = new_browser()
    if method == "totp":
        with app.app_context():
            settings.set_mfa_method("totp", actor="test")
        browser.enrol()
    else:
        browser.login()
    assert signed_in_as(browser, "alice")
    captured = browser.cookie()
    thief = client_with_cookie(app, captured)
    assert signed_in_as(thief, "alice")  # the capture was a working session...

    browser.logout()
    response = client_with_cookie(app, captured).get("/")
    assert response.status_code == 302 and location(response) == "/login"
    assert not signed_in_as(thief, "alice")  # ...and is nothing now
    with app.app_context():
        row = WebSession.get_or_none(WebSession.token_hash == crypto.hash_token(captured))
    assert row is None


# --- SC-15: odd cookie values


def test_sc15_odd_cookie_values_are_nobody(app, new_browser):
    alice = new_browser()
    alice.login()
    real = alice.cookie()
    with app.app_context():
        stored_hash = WebSession.get(WebSession.user == find_user("alice")).token_hash
    odd_values = [
        "a" * 129,
        "a" * 3000,
        "\u00e9" * 40,
        "\x00" * 10,
        real.upper(),
        real[:-1],
        "' OR 1=1 --",
        stored_hash,  # the database column, stolen, is not a cookie
        hash_token(real),
    ]
    for value in odd_values:
        client = app.test_client()
        client.set_cookie(cookie_name(app), value)
        response = client.get("/")
        assert response.status_code == 302, repr(value[:20])
        assert location(response).startswith("/login"), repr(value[:20])
    # Several cookies of the same name: never someone else, never an error.
    for header in (
        f"smfa_session=junk; smfa_session={real}",
        f"smfa_session={real}; smfa_session=junk",
        "smfa_session=; smfa_session=x",
    ):
        response = app.test_client().get("/", headers={"Cookie": header})
        page = response.get_data(as_text=True)
        assert response.status_code in (200, 302), header
        if response.status_code == 200:
            assert 'id="signed-in-user">alice<' in page, header
    # The real session is untouched by all of this.
    assert signed_in_as(alice.client, "alice")


# --- SC-10: a tampered or forged cookie is nobody


def test_sc10_tampered_cookie_is_nobody(totp_app, new_browser, clock):
    alice, secret = enrol_then_pending_verify(new_browser, clock)
    for name, tamper in TAMPERS.items():
        attacker = client_with_cookie(totp_app, tamper(alice.cookie()))
        response = attacker.get("/mfa/verify")
        assert response.status_code == 302 and location(response).startswith("/login"), name
        # Even with a valid code the tampered client is not signed in.
        response = attacker.post("/mfa/verify", data={"code": alice.code(secret)})
        assert response.status_code in (302, 400), name
        assert not signed_in_as(attacker, "alice"), name
    # The real pending login was not disturbed by the attempts.
    assert failures(totp_app, "alice") == 0
    response = alice.post("/mfa/verify", {"code": alice.code(secret)})
    assert location(response) == "/"


def test_sc10_forged_flask_login_remember_cookie_is_nobody(app, browser):
    with app.app_context():
        root_id = User.get(User.username == "root").id
    client = app.test_client()
    client.set_cookie("remember_token", f"{root_id}|forged")
    client.set_cookie("user_id", str(root_id))
    client.set_cookie("_user_id", str(root_id))
    response = client.get("/")
    assert response.status_code == 302 and location(response).startswith("/login")
    assert client.get("/admin/mfa").status_code == 302


# --- SC-17 timeouts


def test_sc17_idle_timeout_is_configurable_and_a_kept_cookie_is_refused(tmp_path, clock):
    app = make_app(tmp_path, clock, SESSION_IDLE_TIMEOUT=300)
    alice = Browser(app, clock)
    alice.login()
    kept = alice.cookie()
    clock.advance(301)
    # A browser that ignores expiry (or a stolen copy of the cookie) gets nothing.
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], kept)
    assert goes_to_login(client.get("/"))
    with app.app_context():
        assert WebSession.select().where(WebSession.user.is_null(False)).count() == 0


def test_sc17_absolute_timeout_applies_to_pending_logins_too(tmp_path, clock):
    app = make_app(tmp_path, clock, SESSION_ABSOLUTE_TIMEOUT=120, MFA_SETUP_TIMEOUT=600)
    set_method(app, "totp")
    alice = Browser(app, clock)
    alice.login()
    clock.advance(60)
    assert alice.get("/mfa/setup").status_code == 200
    clock.advance(61)
    assert goes_to_login(alice.get("/mfa/setup"))


# --- SC-11: the password POST racing a GET


@pytest.mark.server
@pytest.mark.parametrize("method", ["totp", "disabled"])
def test_sc11_password_post_racing_protected_gets_never_shows_them(tmp_path, clock, serve, method):
    app = make_app(tmp_path, clock)
    with app.app_context():
        settings.set_mfa_method(method, actor="test")
    base = serve(app)
    expected_step = "/mfa/setup" if method == "totp" else "/"
    for round_no in range(12):
        first = http(base)
        token = form_token(first.get(base + "/login", timeout=HTTP_TIMEOUT))
        cookie = first.cookies.get("smfa_anon")  # before the password: no row (SC-45)
        poster, home_getter, setup_getter = (http(base, cookie, "smfa_anon") for _ in range(3))
        posted, home, setup = together(
            lambda p=poster, t=token: p.post(
                base + "/login",
                data={"username": "alice", "password": PASSWORD, "csrf_token": t},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT,
            ),
            lambda g=home_getter: g.get(base + "/", allow_redirects=False, timeout=HTTP_TIMEOUT),
            lambda g=setup_getter: g.get(
                base + "/mfa/setup", allow_redirects=False, timeout=HTTP_TIMEOUT
            ),
        )
        what = f"round {round_no}"
        assert posted.status_code == 302 and posted.headers["Location"] == expected_step, what
        # The GETs carried the cookie from before the password: never a protected page,
        # never the set-up secret, never an error.
        for response in (home, setup):
            assert response.status_code == 302, what
            assert response.headers["Location"].startswith("/login"), what
            assert 'id="totp-secret"' not in response.text, what
        # The cookie state is sane: the new cookie is at its step, the old one is nobody.
        new_cookie = set_cookie_value(posted)
        assert new_cookie and new_cookie != cookie, what
        step = http(base, new_cookie).get(
            base + expected_step, allow_redirects=False, timeout=HTTP_TIMEOUT
        )
        assert step.status_code == 200, what
        assert not http_signed_in_as(base, cookie, "alice", "smfa_anon"), what
        with app.app_context():
            WebSession.delete().execute()
    with app.app_context():
        db.close()


# --- what a session keeps


def test_nothing_kept_for_a_user_outlives_their_sign_in_in_the_session(totp_app):
    """Keys stored for the signed-in user (codes on show, a new authenticator being set
    up) are dropped when the session goes back to anonymous; flashed messages stay."""
    from standalone_mfa.core.clock import now
    from standalone_mfa.signin import state
    from standalone_mfa.signin.sessions import ServerSession

    with totp_app.test_request_context("/"):
        web_session = ServerSession()
        record = web_session.ensure_record(now())
        record.state = state.AUTHENTICATED
        record.pending_secret_encrypted = "ciphertext"  # a new authenticator being set up
        web_session.update(
            {
                state.SHOWN_CODES_KEY: "ciphertext",
                state.SETUP_SINCE_KEY: now().isoformat(),
                "_flashes": [("info", "kept")],
            }
        )
        state.fire(web_session, "mfa_required", now())
        assert dict(web_session) == {"_flashes": [("info", "kept")]}
        assert record.pending_secret_encrypted is None


# --- SC-45: no row before a password is accepted


def session_rows(app) -> int:
    with app.app_context():
        return WebSession.select().count()


def test_sc45_cookieless_gets_and_failed_posts_write_no_session_row(totp_app, clock):
    app = totp_app
    assert session_rows(app) == 0
    for _ in range(500):
        response = app.test_client().get("/login")
        assert response.status_code == 200
        assert set_cookie_value(response) is None  # no session cookie either
    assert session_rows(app) == 0

    # 500 wrong passwords with a valid CSRF token (its secret in the signed cookie),
    # for a real account and for unknown names, and 500 without a token.
    browser = Browser(app, clock)
    browser.get("/login")
    for n in range(250):
        for username in ("alice", f"nobody{n}"):
            response = browser.post("/login", {"username": username, "password": "guess"})
            assert response.status_code == 200
            assert browser.cookie() is None
    for _ in range(500):
        response = app.test_client().post("/login", data={"username": "alice", "password": "x"})
        assert response.status_code == 400
    assert session_rows(app) == 0
    # The form still works: the first row is written by the right password (bob's:
    # alice's wrong passwords made her wait), once this address's hour of failures is
    # over (SC-42 cut it off after PASSWORD_IP_BACKOFF_AFTER of them).
    clock.advance(3601)
    browser.login("bob")
    assert session_rows(app) == 1


def test_sc45_cookieless_get_touches_no_database(app, monkeypatch):
    client = app.test_client()
    client.get("/login")  # the app warmed up (templates, first connection)
    with app.app_context():
        database = db.obj
    statements = []
    real_execute = database.execute_sql
    monkeypatch.setattr(
        database,
        "execute_sql",
        lambda sql, *a, **k: statements.append(sql) or real_execute(sql, *a, **k),
    )
    for path in ("/login", "/", "/admin/mfa", "/mfa/verify", "/login?next=/admin/mfa"):
        response = app.test_client().get(path)
        assert response.status_code in (200, 302), path
    # And the same browser again, with the signed cookie it was given.
    assert client.get("/login").status_code == 200
    assert statements == []


def test_sc45_sign_in_end_to_end_first_row_at_the_password_step(totp_app, new_browser, clock):
    secret = new_browser().enrol()
    clock.advance(60)
    with totp_app.app_context():
        WebSession.delete().execute()
    alice = new_browser()
    alice.get("/login")
    page = alice.post("/login", {"username": "alice", "password": "wrong"}).get_data(as_text=True)
    assert "The username or password is not right." in page
    assert session_rows(totp_app) == 0 and alice.anonymous_cookie()

    response = alice.post("/login", {"username": "alice", "password": PASSWORD})
    assert location(response) == "/mfa/verify"
    with totp_app.app_context():
        (row,) = WebSession.select()
        assert row.state == "totp_verify" and row.user.username == "alice"
        assert "csrf_token" not in json.loads(row.data)  # the anonymous one was dropped
    assert alice.anonymous_cookie() is None  # its data moved into the row
    alice.get("/mfa/verify")
    assert location(alice.post("/mfa/verify", {"code": alice.code(secret)})) == "/"
    assert signed_in_as(alice, "alice") and session_rows(totp_app) == 1

    # Signing out deletes the row: the browser is back to its signed cookie.
    assert location(alice.logout()) == "/login"
    assert session_rows(totp_app) == 0
    assert alice.cookie() is None and alice.anonymous_cookie()
    assert "You have signed out." in alice.page("/login")
    assert session_rows(totp_app) == 0


def test_sc45_an_expired_pending_sign_in_leaves_no_row(totp_app, new_browser, clock):
    alice = new_browser()
    alice.login()  # set-up pending
    assert session_rows(totp_app) == 1
    clock.advance(11 * 60)
    response = alice.get("/mfa/setup")
    assert goes_to_login(response)
    assert session_rows(totp_app) == 0
    assert "Your sign-in expired" in alice.page("/login")
    assert alice.login().status_code == 302  # and signs in again


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_sc45_tampered_anonymous_cookie_is_a_fresh_anonymous_session(app, browser, tamper):
    browser.get("/login")
    signed = browser.anonymous_cookie()
    browser.client.set_cookie(ANONYMOUS_COOKIE, TAMPERS[tamper](signed))
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 400  # the CSRF page: the secret was not accepted
    assert "This form has expired" in response.get_data(as_text=True)
    assert browser.cookie() is None and session_rows(app) == 0
    # A fresh anonymous session: a new secret, and the form works again.
    assert browser.login().status_code == 302
    assert signed_in_as(browser, "alice")


def test_sc45_anonymous_cookie_signed_with_another_key_or_expired_is_ignored(app, clock, browser):
    browser.get("/login")
    payload = signed_payload(browser.client.get_cookie(ANONYMOUS_COOKIE).value)
    # The same secret, signed with another key (another site's, or a guess).
    forged = URLSafeTimedSerializer("another key", salt="standalone-mfa.anonymous-session")
    browser.client.set_cookie(ANONYMOUS_COOKIE, forged.dumps(payload))
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 400

    browser.get("/login")
    clock.advance(30 * 60 + 1)  # SESSION_IDLE_TIMEOUT: an anonymous session ends too
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert session_rows(app) == 0


def test_sc45_anonymous_cookie_is_refreshed_while_in_use(app, browser, clock):
    browser.get("/login")
    first = browser.anonymous_cookie()
    for _ in range(3):  # 45 minutes on the sign-in page, reloading it
        clock.advance(15 * 60)
        browser.get("/login")
    assert browser.anonymous_cookie() != first
    assert location(browser.post("/login", {"username": "alice", "password": PASSWORD})) == "/"


def test_sc45_csrf_token_of_the_anonymous_cookie_is_void_after_sign_in(app, browser):
    browser.get("/login")
    anonymous_token = browser.token
    browser.login("root")
    browser.get("/admin/mfa")
    response = browser.client.post(
        "/admin/mfa", data={"csrf_token": anonymous_token, "mfa_method": "totp"}
    )
    assert response.status_code == 400
    assert mfa_method(app) == "disabled"
    assert browser.post("/logout", {"csrf_token": anonymous_token}).status_code == 400
    assert signed_in_as(browser, "root")


def test_sc45_an_anonymous_row_from_an_earlier_release_moves_to_the_cookie(app, clock):
    from standalone_mfa.core.clock import now
    from standalone_mfa.signin.sessions import ServerSession

    with app.test_request_context("/"):
        old = ServerSession()
        record = old.ensure_record(now())
        record.data = json.dumps({"csrf_token": "0" * 40, "_flashes": [["info", "hello"]]})
        record.save(force_insert=True)  # as an earlier release wrote it
        token = old.new_token
    assert session_rows(app) == 1
    client = client_with_cookie(app, token)
    page = client.get("/login").get_data(as_text=True)
    assert "hello" in page
    assert session_rows(app) == 0
    assert client.get_cookie(cookie_name(app)) is None
    assert client.get_cookie(ANONYMOUS_COOKIE) is not None
