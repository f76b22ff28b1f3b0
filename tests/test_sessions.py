"""signin/sessions: the server-side session behind an opaque cookie: rotation on every
transition, what the cookie holds, lifetimes and races on one cookie (SC-10, SC-11,
SC-14, SC-15, SC-17)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from conftest import PASSWORD, Browser, make_app, together
from helpers import (
    HTTP_TIMEOUT,
    RecordingBrowser,
    client_with_cookie,
    cookie_name,
    enrol_then_pending_verify,
    failures,
    form_token,
    goes_to_login,
    http,
    http_signed_in_as,
    location,
    mfa_method,
    set_cookie_value,
    set_method,
    signed_in_as,
    table_dump,
)

from standalone_mfa.accounts import settings
from standalone_mfa.accounts.users import find_user
from standalone_mfa.core import crypto
from standalone_mfa.core.crypto import hash_token
from standalone_mfa.core.db import db
from standalone_mfa.core.models import User, WebSession
from standalone_mfa.signin.state import STATES

TAMPERS = {
    "flipped": lambda value: value[:-1] + ("A" if value[-1] != "A" else "B"),
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
    before = browser.cookie()
    assert before  # the login form's CSRF token lives in a server session already
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    pending = browser.cookie()
    assert pending and pending != before
    browser.get("/mfa/verify")
    assert location(browser.post("/mfa/verify", {"code": browser.code(secret)})) == "/"
    after = browser.cookie()
    assert after and after not in (before, pending)
    assert signed_in_as(browser, "alice")

    # The earlier ids are dead: whoever holds them is anonymous.
    for old in (before, pending):
        replay = client_with_cookie(totp_app, old)
        response = replay.get("/")
        assert response.status_code == 302 and location(response) == "/login"
        assert replay.get("/mfa/verify").status_code == 302


def test_sc14_cookie_changes_after_password_and_after_setup_code(totp_app, browser):
    browser.get("/login")
    before = browser.cookie()
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
    before = browser.cookie()
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert browser.cookie() != before
    assert signed_in_as(browser, "alice")
    assert not signed_in_as(client_with_cookie(app, before), "alice")


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
    planted = attacker.cookie()
    assert planted

    victim = new_browser()
    victim.client.set_cookie(cookie_name(app), planted)
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
    planted, attacker_token = attacker.cookie(), attacker.token

    victim = new_browser()  # the administrator, whose browser got the planted cookie
    victim.client.set_cookie(cookie_name(app), planted)
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
    # Only the session cookie is ever set (no Flask cookie session, no remember-me), and
    # once signed in the trusted-browser cookie (an opaque token too).
    assert {h.split("=", 1)[0] for h in set_cookies} == {cookie_name(totp_app), "smfa_browser"}
    values = [h.split("=", 1)[1].split(";", 1)[0] for h in set_cookies]
    forbidden = ("alice", "totp", "user", "state", secret, secret.lower(), code, *STATES)
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
        cookie = first.cookies.get("smfa_session")
        poster, home_getter, setup_getter = (http(base, cookie) for _ in range(3))
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
        assert not http_signed_in_as(base, cookie, "alice"), what
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
        web_session.update(
            {
                state.SHOWN_CODES_KEY: "ciphertext",
                "new_authenticator": "ciphertext",
                "_flashes": [("info", "kept")],
            }
        )
        state.fire(web_session, "mfa_required", now())
        assert dict(web_session) == {"_flashes": [("info", "kept")]}
