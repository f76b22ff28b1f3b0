"""Security tests for the sign-in flow, sessions, enrolment and headers.

Each test name carries the ID of the item of /work/shared/SECURITY-CHECKLIST.md it
covers. Every test looks at what a user or an attacker observes: status codes, where
the browser lands, the headers and page text, and what the database holds afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from urllib.parse import quote, urlsplit

import pyotp
import pytest
from conftest import PASSWORD, Browser

from standalone_mfa.accounts import settings
from standalone_mfa.accounts.users import create_user
from standalone_mfa.core import crypto
from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent, TotpCredential, User, WebSession
from standalone_mfa.factors import throttle
from standalone_mfa.signin.state import AUTHENTICATED, STATES

# --------------------------------------------------------------------------- helpers


def cookie_name(app) -> str:
    return app.config["SESSION_COOKIE_NAME"]


def client_with_cookie(app, value):
    """A fresh client (another person's browser) that presents `value` as its cookie."""
    client = app.test_client()
    client.set_cookie(cookie_name(app), value)
    return client


def valid_codes(secret, clock, spread=3):
    totp = pyotp.TOTP(secret)
    return {totp.at(clock.timestamp() + 30 * s) for s in range(-spread, spread + 1)}


def wrong_code(secret, clock) -> str:
    """A well-formed code that matches no step anywhere near now."""
    valid = valid_codes(secret, clock)
    number = 123456
    while f"{number:06d}" in valid:
        number += 1
    return f"{number:06d}"


def other_secret(*secrets_in_use) -> str:
    while True:
        secret = pyotp.random_base32(32)
        if secret not in secrets_in_use:
            return secret


def signed_in_as(browser_or_client, username) -> bool:
    """The home page answers and names `username` as the signed-in user."""
    client = getattr(browser_or_client, "client", browser_or_client)
    response = client.get("/")
    page = response.get_data(as_text=True)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in page


def location(response) -> str | None:
    return response.headers.get("Location")


def table_dump(app, model) -> str:
    """Every column of every row of a table, as one string (raw SQL: nothing hidden)."""
    with app.app_context():
        cursor = db.execute_sql(f'SELECT * FROM "{model._meta.table_name}"')  # noqa: S608
        return "\n".join(repr(row) for row in cursor.fetchall())


def credential_secret(app, username) -> str | None:
    with app.app_context():
        credential = (
            TotpCredential.select().join(User).where(User.username == username).get_or_none()
        )
        return crypto.decrypt(credential.secret_encrypted) if credential else None


def credential_count(app) -> int:
    with app.app_context():
        return TotpCredential.select().count()


def throttle_failures(app, username) -> int:
    with app.app_context():
        return throttle.failures(User.get(User.username == username))


def mfa_method(app) -> str:
    with app.app_context():
        return settings.mfa_method()


def sessions_of(app, username) -> list[WebSession]:
    with app.app_context():
        return list(WebSession.select().join(User).where(User.username == username))


def enrol_then_pending_verify(new_browser, clock, username="alice"):
    """`username` enrols in one browser; later, another browser passes the password
    step and waits at /mfa/verify. Returns (that browser, the secret)."""
    secret = new_browser().enrol(username)
    clock.advance(60)  # the enrolment step is used; start from a fresh one
    pending = new_browser()
    response = pending.login(username)
    assert location(response) == "/mfa/verify"
    return pending, secret


def pending_setup(new_browser, username="alice"):
    browser = new_browser()
    response = browser.login(username)
    assert location(response) == "/mfa/setup"
    return browser, browser.setup_secret()


class RecordingBrowser(Browser):
    """A Browser that keeps every (method, path, response) it saw."""

    def __init__(self, app, clock):
        super().__init__(app, clock)
        self.seen = []

    def get(self, path, **kwargs):
        response = super().get(path, **kwargs)
        self.seen.append(("GET", path, response))
        return response

    def post(self, path, data=None, csrf=True, **kwargs):
        response = super().post(path, data, csrf, **kwargs)
        self.seen.append(("POST", path, response))
        return response


# ------------------------------------------------ SC-09 forced browsing while pending

PLACEHOLDERS = {"username": "alice", "filename": "style.css"}
ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
STEP_PAGES = {"totp_setup": "/mfa/setup", "totp_verify": "/mfa/verify"}


def every_request(app):
    """(url, method, rule) for every rule of the app and every method it allows;
    sign-out comes last since it ends the session."""
    requests = []
    for rule in app.url_map.iter_rules():
        missing = set(rule.arguments) - PLACEHOLDERS.keys()
        assert not missing, f"add a placeholder for {missing} (rule {rule.rule})"
        url = ARGUMENT.sub(lambda m: PLACEHOLDERS[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            requests.append((url, method, rule))
    requests.sort(key=lambda r: (r[0] == "/logout", r[0], r[1]))
    return requests


@pytest.mark.parametrize("pending_state", ["totp_setup", "totp_verify"])
def test_sc09_every_rule_redirects_to_current_step_while_pending(
    totp_app, new_browser, clock, pending_state
):
    if pending_state == "totp_setup":
        browser, secret = pending_setup(new_browser)
    else:
        browser, secret = enrol_then_pending_verify(new_browser, clock)
    step = STEP_PAGES[pending_state]
    assert browser.get(step).status_code == 200  # also picks up this session's CSRF token
    credential_before = credential_secret(totp_app, "alice")
    requests = every_request(totp_app)
    assert len(requests) >= 10  # the whole map, not an empty loop
    urls_seen = {url for url, _method, _rule in requests}
    assert {"/", "/login", "/logout", "/admin/", "/admin/mfa", step} <= urls_seen

    answered = set()
    for url, method, rule in requests:
        data = None
        if method == "POST":
            data = {
                "csrf_token": browser.token,
                "username": "bob",
                "password": PASSWORD,
                "code": wrong_code(secret, clock),
                "mfa_method": "disabled",
            }
        response = browser.client.open(url, method=method, data=data)
        what = f"{method} {url} ({rule.endpoint}) while {pending_state}"

        if url.startswith("/api/"):
            # No bearer token: the pending browser session is no credential for the API.
            assert response.status_code == 401, what
            assert response.is_json and "error" in response.get_json(), what
            continue
        if url == step and method == "GET":
            assert response.status_code == 200, what
            assert 'name="code"' in response.get_data(as_text=True), what
            answered.add(url)
            continue
        if url == step and method == "POST":
            # The step's own view judged the (wrong) code and said so.
            assert location(response) == step, what
            assert "That code is not right" in browser.page(step), what
            answered.add(url)
            continue
        if url == "/mfa/recovery" and pending_state == "totp_verify":
            # The other way through the code step: a recovery code (a wrong one here).
            if method == "GET":
                assert 'name="recovery_code"' in response.get_data(as_text=True), what
            else:
                assert location(response) == url, what
            answered.add(url)
            continue
        if url.startswith(totp_app.static_url_path + "/"):
            assert response.status_code == 200, what
            answered.add(url)
            continue
        if url == "/healthz":
            # The load balancer's probe: no session, no state, only the database's health.
            assert response.get_json() == {"status": "ok"}, what
            continue
        if url == "/logout":
            assert response.status_code == 302 and location(response) == "/login", what
            answered.add(url)
            continue
        # Anything else: straight back to the current step, nothing done.
        assert response.status_code == 302, what
        assert location(response) == step, what

    also = {"/mfa/recovery"} if pending_state == "totp_verify" else set()
    assert answered == {step, "/logout", "/static/style.css"} | also
    # Nothing the sweep sent changed anything: no credential, no new method, not bob.
    assert credential_secret(totp_app, "alice") == credential_before
    assert credential_secret(totp_app, "bob") is None
    assert mfa_method(totp_app) == "totp"
    assert sessions_of(totp_app, "bob") == []
    # Alice's only session left is the enrolling browser's (verify case): the pending
    # one was never promoted and the sign-out at the end unbound it.
    expected = [AUTHENTICATED] if pending_state == "totp_verify" else []
    assert [s.state for s in sessions_of(totp_app, "alice")] == expected
    # The sign-out at the end really ended the pending login.
    response = browser.get(step)
    assert response.status_code == 302 and location(response).startswith("/login")


def test_sc09_static_files_answer_while_pending(totp_app, new_browser):
    browser, _secret = pending_setup(new_browser)
    for name in ("style.css", "app.js"):
        response = browser.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.get_data()


# ------------------------------------------- SC-10 the pending user is server state


def test_sc10_forged_user_fields_on_verify_never_choose_the_account(totp_app, new_browser, clock):
    bob_secret = new_browser().enrol("bob")
    alice, alice_secret = enrol_then_pending_verify(new_browser, clock)
    with totp_app.app_context():
        bob_id = User.get(User.username == "bob").id
    forged = {"username": "bob", "user_id": str(bob_id), "user": "bob"}
    query = f"?username=bob&user_id={bob_id}&user=bob"

    # Bob's valid code, with bob named in the form or in the query: refused.
    for path, extra in (("/mfa/verify", forged), ("/mfa/verify" + query, {})):
        response = alice.post(path, {"code": alice.code(bob_secret), **extra})
        assert location(response) == "/mfa/verify", path
        assert not signed_in_as(alice, "bob")
        assert location(alice.get("/")) == "/mfa/verify"

    # Alice's code, with bob named everywhere: alice, never bob.
    response = alice.post("/mfa/verify" + query, {"code": alice.code(alice_secret), **forged})
    assert location(response) == "/"
    assert signed_in_as(alice, "alice")
    assert not signed_in_as(alice, "bob")


def test_sc10_forged_user_fields_on_setup_enrol_the_pending_user_only(totp_app, new_browser):
    alice, secret = pending_setup(new_browser)
    with totp_app.app_context():
        bob_id = User.get(User.username == "bob").id
    query = f"?username=bob&user_id={bob_id}"
    page = alice.page("/mfa/setup" + query)
    assert "Standalone MFA: alice" in page
    assert "bob" not in page

    data = {"code": alice.code(secret), "username": "bob", "user_id": str(bob_id)}
    response = alice.submit_code("/mfa/setup" + query, data)
    assert location(response) == "/"
    assert signed_in_as(alice, "alice")
    assert credential_secret(totp_app, "alice") == secret
    assert credential_secret(totp_app, "bob") is None


TAMPERS = {
    "flipped": lambda value: value[:-1] + ("A" if value[-1] != "A" else "B"),
    "extended": lambda value: value + "x",
    "truncated": lambda value: value[:-1],
    "username": lambda value: "alice",
    "json": lambda value: '{"user":"bob","state":"authenticated"}',
    "empty": lambda value: "",
}


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
    assert throttle_failures(totp_app, "alice") == 0
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


def test_sc10_interleaved_pending_logins_never_cross(totp_app, new_browser, clock):
    alice_secret = new_browser().enrol("alice")
    bob_secret = new_browser().enrol("bob")
    clock.advance(60)
    alice, bob = new_browser(), new_browser()
    assert location(alice.login("alice")) == "/mfa/verify"
    assert location(bob.login("bob")) == "/mfa/verify"
    alice.get("/mfa/verify")
    bob.get("/mfa/verify")

    # Each browser sends the other person's valid code: refused both ways.
    assert location(alice.post("/mfa/verify", {"code": alice.code(bob_secret)})) == ("/mfa/verify")
    assert location(bob.post("/mfa/verify", {"code": bob.code(alice_secret)})) == "/mfa/verify"
    assert not signed_in_as(alice, "bob") and not signed_in_as(alice, "alice")
    assert not signed_in_as(bob, "alice") and not signed_in_as(bob, "bob")

    # Each with their own code: each becomes themself, never the other.
    assert location(bob.post("/mfa/verify", {"code": bob.code(bob_secret)})) == "/"
    assert location(alice.post("/mfa/verify", {"code": alice.code(alice_secret)})) == "/"
    assert signed_in_as(alice, "alice") and not signed_in_as(alice, "bob")
    assert signed_in_as(bob, "bob") and not signed_in_as(bob, "alice")


def test_sc10_interleaved_setups_never_cross(totp_app, new_browser):
    alice, alice_secret = pending_setup(new_browser, "alice")
    bob, bob_secret = pending_setup(new_browser, "bob")
    assert alice_secret != bob_secret
    assert "Standalone MFA: bob" in bob.page("/mfa/setup")

    assert location(alice.post("/mfa/setup", {"code": alice.code(bob_secret)})) == "/mfa/setup"
    assert location(bob.post("/mfa/setup", {"code": bob.code(alice_secret)})) == "/mfa/setup"
    assert credential_count(totp_app) == 0

    assert location(bob.submit_code("/mfa/setup", {"code": bob.code(bob_secret)})) == "/"
    assert location(alice.submit_code("/mfa/setup", alice.code(alice_secret))) == "/"
    assert credential_secret(totp_app, "alice") == alice_secret
    assert credential_secret(totp_app, "bob") == bob_secret
    assert signed_in_as(alice, "alice") and signed_in_as(bob, "bob")


# ------------------------------------------------ SC-14 rotation and session fixation


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


# ---------------------------------------------------------- SC-15 what the cookie holds


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
    # Only the one session cookie is ever set (no Flask cookie session, no remember-me).
    assert {h.split("=", 1)[0] for h in set_cookies} == {cookie_name(totp_app)}
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


# ---------------------------------------------------------------------- SC-18 logout


def test_sc18_logout_is_post_only(app, browser):
    browser.login()
    response = browser.get("/logout")
    assert response.status_code == 405
    assert signed_in_as(browser, "alice")
    assert [s.state for s in sessions_of(app, "alice")] == [AUTHENTICATED]


def test_sc18_logout_405_says_post_is_allowed(app, browser):
    browser.login()
    response = browser.get("/logout")
    assert response.status_code == 405
    assert "POST" in response.headers.get("Allow", "")


def test_sc18_logout_needs_csrf(app, browser, new_browser):
    browser.login()
    other = new_browser()
    other.login("bob")
    other.get("/")
    for data in ({}, {"csrf_token": other.token}, {"csrf_token": ""}):
        response = browser.post("/logout", data, csrf=False)
        assert response.status_code == 400, data
        assert signed_in_as(browser, "alice")
        assert [s.state for s in sessions_of(app, "alice")] == [AUTHENTICATED]
    assert location(browser.post("/logout")) == "/login"  # with its token it works
    assert sessions_of(app, "alice") == []


def test_sc18_logout_ends_the_server_session(app, browser):
    browser.login()
    old = browser.cookie()
    assert len(sessions_of(app, "alice")) == 1
    response = browser.logout()
    assert response.status_code == 302 and location(response) == "/login"
    assert sessions_of(app, "alice") == []  # nothing on the server is alice's any more
    with app.app_context():
        assert WebSession.get_or_none(WebSession.token_hash == crypto.hash_token(old)) is None
    assert not signed_in_as(browser, "alice")
    assert not signed_in_as(client_with_cookie(app, old), "alice")
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "logout").count() == 1


def test_sc18_logout_while_pending_ends_the_pending_login(totp_app, new_browser, clock):
    browser, secret = enrol_then_pending_verify(new_browser, clock)
    old = browser.cookie()
    browser.get("/mfa/verify")
    assert location(browser.post("/logout")) == "/login"
    for client in (browser.client, client_with_cookie(totp_app, old)):
        response = client.get("/mfa/verify")
        assert response.status_code == 302 and location(response).startswith("/login")
    replay = client_with_cookie(totp_app, old)
    response = replay.post("/mfa/verify", data={"code": browser.code(secret)})
    assert response.status_code in (302, 400)
    assert not signed_in_as(replay, "alice")
    assert all(s.state == AUTHENTICATED for s in sessions_of(totp_app, "alice"))
    assert len(sessions_of(totp_app, "alice")) == 1  # the enrolment browser only


# ------------------------------------------------- SC-20 the server makes the secret


def test_sc20_forged_secret_field_does_not_enrol(totp_app, browser, clock):
    browser.login()
    server_secret = browser.setup_secret()
    attacker_secret = other_secret(server_secret)
    forged = {"secret": attacker_secret, "totp_secret": attacker_secret}
    attempts = (("/mfa/setup", forged), ("/mfa/setup?secret=" + attacker_secret, {}))
    for path, extra in attempts:
        response = browser.post(path, {"code": browser.code(attacker_secret), **extra})
        assert location(response) == "/mfa/setup", path
        assert credential_count(totp_app) == 0
        assert not signed_in_as(browser, "alice")

    # Reload: the server's secret, unchanged, and never the attacker's.
    page = browser.page("/mfa/setup?secret=" + attacker_secret)
    assert browser.setup_secret() == server_secret
    assert attacker_secret not in page.replace(" ", "")

    # The server's secret works, and it is what gets stored.
    data = {"code": browser.code(server_secret), **forged}
    assert location(browser.submit_code("/mfa/setup", data)) == "/"
    assert credential_secret(totp_app, "alice") == server_secret


def test_sc20_reload_shows_same_secret_and_wrong_code_does_not_activate(totp_app, browser, clock):
    browser.login()
    secret = browser.setup_secret()
    for _ in range(3):
        clock.advance(40)
        assert browser.setup_secret() == secret
    for bad in (wrong_code(secret, clock), "", "12345", "abcdef"):
        response = browser.post("/mfa/setup", {"code": bad})
        assert location(response) == "/mfa/setup"
        assert credential_count(totp_app) == 0
        assert browser.setup_secret() == secret
    assert not signed_in_as(browser, "alice")
    assert location(browser.submit_code("/mfa/setup", browser.code(secret))) == "/"
    assert credential_secret(totp_app, "alice") == secret


def test_sc20_active_secret_is_never_shown_again(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    # Signed in: the set-up page sends the user home, without the secret.
    response = browser.get("/mfa/setup")
    assert response.status_code == 302 and location(response) == "/"
    for page in (browser.page("/"), browser.page("/mfa/setup", follow_redirects=True)):
        assert secret not in page and grouped not in page

    clock.advance(60)
    later = new_browser()
    assert location(later.login()) == "/mfa/verify"
    response = later.get("/mfa/setup")
    assert response.status_code == 302 and location(response) == "/mfa/verify"
    page = later.page("/mfa/verify")
    assert secret not in page and grouped not in page and 'id="totp-secret"' not in page
    # Posting a new "set-up" from the verify state changes nothing.
    new = other_secret(secret)
    response = later.post("/mfa/setup", {"code": later.code(new), "secret": new})
    assert location(response) == "/mfa/verify"
    assert credential_secret(totp_app, "alice") == secret


def test_sc20_second_parallel_setup_cannot_replace_the_first(totp_app, new_browser):
    first, first_secret = pending_setup(new_browser)
    second, second_secret = pending_setup(new_browser)
    assert first_secret != second_secret  # each pending set-up has its own secret
    assert location(first.submit_code("/mfa/setup", first.code(first_secret))) == "/"
    response = second.post("/mfa/setup", {"code": second.code(second_secret)})
    assert location(response) != "/"
    assert not signed_in_as(second, "alice")
    assert credential_secret(totp_app, "alice") == first_secret
    assert credential_count(totp_app) == 1


# -------------------------------------------------------------------- SC-22 no leakage

EXTERNAL_REF = re.compile(
    r"""(?:\bsrc|\bhref|\baction|\bxlink:href|\bposter|\bdata)\s*=\s*["']?\s*"""
    r"""(?:[a-z][a-z0-9+.-]*:|//|\\)""",
    re.IGNORECASE,
)


def no_store(response) -> bool:
    directives = [d.strip().lower() for d in response.headers.get("Cache-Control", "").split(",")]
    return "no-store" in directives


def test_sc22_setup_and_verify_are_not_cached(totp_app, new_browser, clock):
    browser, secret = pending_setup(new_browser)
    responses = [
        browser.get("/mfa/setup"),
        browser.post("/mfa/setup", {"code": wrong_code(secret, clock)}),
        browser.post("/mfa/setup", {"code": browser.code(secret)}),
    ]
    clock.advance(60)
    later = new_browser()
    later.login()
    responses += [
        later.get("/mfa/verify"),
        later.post("/mfa/verify", {"code": wrong_code(secret, clock)}),
        later.post("/mfa/verify", {"code": later.code(secret)}),
    ]
    assert [r.status_code for r in responses] == [200, 302, 302, 200, 302, 302]
    for response in responses:
        assert no_store(response), (response.request.path, response.headers)


def test_sc22_setup_page_loads_nothing_from_elsewhere_and_draws_qr_inline(totp_app, browser):
    browser.login()
    page = browser.page("/mfa/setup")
    assert 'id="totp-secret"' in page
    assert not EXTERNAL_REF.findall(page), EXTERNAL_REF.findall(page)
    assert not re.search(r"<(?:img|iframe|object|embed|image)\b", page, re.IGNORECASE)
    assert re.search(r'id="totp-qr"[^>]*>\s*<svg\b', page)
    assert "otpauth://" not in page  # the URI is only inside the QR drawing
    assert "url(" not in page
    # Every script and stylesheet the page loads is our own static file.
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert ref.startswith(("/", "#")) and not ref.startswith("//"), ref


def test_sc22_secret_never_in_headers_cookies_urls_logs_or_audit(totp_app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    browser = RecordingBrowser(totp_app, clock)
    browser.login()
    secret = browser.setup_secret()
    assert browser.setup_secret() == secret
    wrong = wrong_code(secret, clock)
    browser.post("/mfa/setup", {"code": wrong})
    browser.get("/mfa/setup")
    setup_code = browser.code(secret)
    assert location(browser.submit_code("/mfa/setup", setup_code)) == "/"
    browser.get("/")
    browser.logout()
    clock.advance(60)
    browser.login()
    browser.get("/mfa/verify")
    verify_code = browser.code(secret)
    assert location(browser.post("/mfa/verify", {"code": verify_code})) == "/"
    browser.get("/")
    cookie = browser.cookie()

    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    needles = {secret, secret.lower(), grouped, quote(grouped), grouped.replace(" ", "+")}
    seen_setup_page = False
    for method, path, response in browser.seen:
        assert secret not in path
        for name, value in response.headers.items():
            for needle in needles:
                assert needle not in value, f"{method} {path}: secret in {name}"
        body = response.get_data(as_text=True)
        if method == "GET" and path == "/mfa/setup" and response.status_code == 200:
            seen_setup_page = True
            continue  # the one place the secret belongs (checked in its own test)
        for needle in needles:
            assert needle not in body, f"{method} {path}: secret in the body"
    assert seen_setup_page

    # Not in the audit trail, nor in any log line (even at DEBUG), nor in clear text
    # in the credential row.
    audit = table_dump(totp_app, AuditEvent)
    assert "totp_enrolled" in audit  # the trail was written, so the search means something
    logs = "\n".join(
        record.getMessage() + repr(record.args) + str(record.exc_text or "")
        for record in caplog.records
    )
    assert '"totp_enrolled"' in logs
    for text, where in ((audit, "audit_event"), (logs, "logs")):
        for needle in (secret, secret.lower(), grouped, cookie, PASSWORD):
            assert needle not in text, f"found in {where}"
        for code in (wrong, setup_code, verify_code):
            assert not re.search(rf"(?<!\d){code}(?!\d)", text), f"code in {where}"

    credentials = table_dump(totp_app, TotpCredential)
    assert credentials and secret not in credentials and secret.lower() not in credentials
    assert credential_secret(totp_app, "alice") == secret  # encrypted, not lost
    with totp_app.app_context():
        stored = TotpCredential.get().secret_encrypted
    assert secret not in stored
    assert base64.b32encode(base64.b32decode(secret)).decode() not in stored


# ------------------------------------------------------------------------ SC-28 CSRF


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
        assert throttle_failures(totp_app, "alice") == 0
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
        assert throttle_failures(totp_app, "alice") == 0
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
    assert location(browser.post("/admin/mfa", {"mfa_method": "totp"})) == "/admin/mfa"
    assert mfa_method(app) == "totp"


# -------------------------------------------------------- SC-29 open redirect via next

EVIL_NEXT = [
    "//evil.example",
    "/\\evil.example",
    "https://evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "https:evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    " //evil.example",
    "\\\\evil.example",
    "HTTPS://evil.example/",
]


def assert_local(target: str | None):
    """A path on this site, as a browser (WHATWG URL rules) would read it."""
    assert target is not None
    parts = urlsplit(target)
    assert not parts.scheme and not parts.netloc, target
    assert target.startswith("/") and not target.startswith("//"), target
    assert "\\" not in target and target.isprintable(), target


def test_sc29_external_next_lands_home_after_setup(totp_app, new_browser):
    for number, evil in enumerate(EVIL_NEXT[:6]):  # the same check as verify: fewer here
        username = f"evil{number}"
        with totp_app.app_context():
            create_user(username, PASSWORD)
        browser = new_browser()
        response = browser.login(username, next=quote(evil, safe=""))
        assert location(response) == "/mfa/setup", evil
        secret = browser.setup_secret()
        response = browser.submit_code("/mfa/setup", {"code": browser.code(secret)})
        assert_local(location(response))
        assert location(response) == "/", evil
        assert signed_in_as(browser, username)


def test_sc29_external_next_lands_home_after_verify(totp_app, new_browser, clock):
    secret = new_browser().enrol()
    for evil in EVIL_NEXT:
        clock.advance(30)  # a fresh time step for each sign-in
        browser = new_browser()
        response = browser.login(next=quote(evil, safe=""))
        assert location(response) == "/mfa/verify", evil
        response = browser.post("/mfa/verify", {"code": browser.code(secret)})
        assert_local(location(response))
        assert location(response) == "/", evil
        assert signed_in_as(browser, "alice")


def test_sc29_external_next_lands_home_without_mfa(app, new_browser):
    for evil in EVIL_NEXT:
        response = new_browser().login(next=quote(evil, safe=""))
        assert_local(location(response))
        assert location(response) == "/", evil


def test_sc29_triple_slash_next_is_not_kept(totp_app, browser):
    response = browser.login(next=quote("///evil.example", safe=""))
    assert location(response) == "/mfa/setup"
    with totp_app.app_context():  # the pending login keeps no network-path reference
        kept = [s.next_url for s in WebSession.select() if s.next_url]
    assert kept == []
    secret = browser.setup_secret()
    response = browser.submit_code("/mfa/setup", {"code": browser.code(secret)})
    assert_local(location(response))
    assert location(response) == "/"


def test_sc29_safe_next_survives_the_mfa_steps(totp_app, new_browser, clock):
    browser = new_browser()
    response = browser.get("/admin/mfa")  # anonymous: sent to sign in, path remembered
    assert response.status_code == 302
    to_login = location(response)
    assert to_login.startswith("/login?next=")
    browser.get(to_login)
    response = browser.post(to_login, {"username": "root", "password": PASSWORD})
    assert location(response) == "/mfa/setup"
    secret = browser.setup_secret()
    response = browser.submit_code("/mfa/setup", browser.code(secret))
    assert location(response) == "/admin/mfa"
    page = browser.page("/admin/mfa")
    assert 'name="mfa_method"' in page

    clock.advance(60)
    later = new_browser()
    assert location(later.login("root", next=quote("/admin/mfa", safe=""))) == "/mfa/verify"
    later.get("/mfa/verify")
    response = later.post("/mfa/verify", {"code": later.code(secret)})
    assert location(response) == "/admin/mfa"
    assert later.get("/admin/mfa").status_code == 200
    # Used once: the next sign-in without `next` goes home.
    clock.advance(60)
    third = new_browser()
    third.login("root")
    third.get("/mfa/verify")
    assert location(third.post("/mfa/verify", {"code": third.code(secret)})) == "/"


# ------------------------------------------------------------ SC-31 headers and errors


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, (response.request.path, "no CSP")
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = [w.lower() for w in words[1:]]
    return directives


def assert_security_headers(response):
    what = f"{response.request.method} {response.request.path} -> {response.status_code}"
    directives = csp_directives(response)
    policy = response.headers["Content-Security-Policy"].lower()
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, what
    assert directives.get("frame-ancestors") == ["'none'"], what
    scripts = directives.get("script-src") or directives.get("default-src")
    assert scripts, what
    assert not {"*", "data:", "http:", "https:"} & set(scripts), what
    assert directives.get("object-src") == ["'none'"] or "object-src" not in directives, what
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert response.headers.get("Referrer-Policy") in {
        "no-referrer",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
    }, what


def pages_in_every_state(totp_app, new_browser, clock):
    """(response, is_html) for pages, redirects, errors and the API in every state."""
    seen = []
    anonymous = new_browser()
    seen += [anonymous.get("/login"), anonymous.get("/"), anonymous.get("/nowhere")]
    seen.append(anonymous.post("/login", {"username": "alice", "password": "wrong!"}))
    seen.append(anonymous.post("/login", {"username": "x"}, csrf=False))  # CSRF 400
    setup, secret = pending_setup(new_browser)
    seen += [setup.get("/mfa/setup"), setup.get("/admin/")]
    setup.post("/mfa/setup", {"code": setup.code(secret)})
    seen += [setup.get("/mfa/recovery-codes"), setup.get("/mfa/recovery-codes.txt")]
    setup.post("/mfa/recovery-codes")
    seen += [setup.get("/"), setup.get("/logout"), setup.get("/mfa/setup")]
    seen += [setup.get("/account/security"), setup.get("/account/password")]
    clock.advance(60)
    verify = new_browser()
    verify.login()
    seen += [verify.get("/mfa/verify"), verify.get("/api/v1/users/alice/totp")]
    seen.append(verify.get("/mfa/recovery"))
    root = new_browser()
    root_secret = root.enrol("root")
    assert root_secret
    seen += [root.get("/admin/"), root.get("/admin/mfa")]
    seen.append(setup.get("/admin/mfa"))  # 403 for a normal user
    seen.append(setup.get("/static/style.css"))
    return seen


def test_sc31_security_headers_on_every_kind_of_response(totp_app, new_browser, clock):
    responses = pages_in_every_state(totp_app, new_browser, clock)
    statuses = {r.status_code for r in responses}
    assert {200, 302, 400, 401, 403, 404, 405} <= statuses
    for response in responses:
        assert_security_headers(response)


def test_sc31_rendered_pages_have_no_inline_script_or_style(totp_app, new_browser, clock):
    responses = pages_in_every_state(totp_app, new_browser, clock)
    html_pages = [r for r in responses if r.mimetype == "text/html" and r.status_code != 302]
    assert len(html_pages) >= 8
    for response in html_pages:
        page = response.get_data(as_text=True)
        what = f"{response.request.path} ({response.status_code})"
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script\s*>", page, re.I | re.S)
        assert scripts, what  # the page does load our script; the check below is real
        for attributes, body in scripts:
            assert "src=" in attributes and not body.strip(), f"inline script on {what}"
        assert not re.search(r"<style\b", page, re.I), f"<style> on {what}"
        assert not re.search(r"\sstyle\s*=", page, re.I), f"style= on {what}"
        assert not re.search(r"\son[a-z]+\s*=", page, re.I), f"event handler on {what}"
        assert "javascript:" not in page.lower(), what
        assert "Traceback" not in page, what


def normalised_login_page(response) -> str:
    page = response.get_data(as_text=True)
    page = re.sub(r'name="csrf_token"( type="hidden")? value="[^"]*"', "CSRF", page)
    page = re.sub(r'value="[^"]*"', 'value=""', page)  # the username as typed
    return page


def test_sc31_wrong_username_and_wrong_password_look_the_same(app, new_browser):
    unknown = new_browser()
    unknown.get("/login")
    by_username = unknown.post("/login", {"username": "mallory", "password": PASSWORD})
    known = new_browser()
    known.get("/login")
    by_password = known.post("/login", {"username": "alice", "password": PASSWORD + "x"})
    assert by_username.status_code == by_password.status_code == 200
    assert "The username or password is not right." in by_username.get_data(as_text=True)
    assert normalised_login_page(by_username) == normalised_login_page(by_password)
    assert set(by_username.headers.keys()) == set(by_password.headers.keys())
    assert bool(unknown.cookie()) == bool(known.cookie())
    assert not signed_in_as(known, "alice") and not signed_in_as(unknown, "mallory")


@pytest.mark.parametrize("step", ["/mfa/verify", "/mfa/setup"])
def test_sc06_second_click_after_the_first_rotated_is_sent_on_not_a_400(
    totp_app, new_browser, clock, step
):
    """A double click: the second POST carries the cookie and CSRF token the first
    click has just rotated away. It is redirected (no error page), and changes nothing."""
    if step == "/mfa/verify":
        secret = new_browser().enrol()
        clock.advance(60)
        browser = new_browser()
        browser.login()
    else:
        browser = new_browser()
        browser.login()
        secret = browser.setup_secret()
    stale_cookie, stale_token = browser.cookie(), browser.token
    code = browser.code(secret)
    assert location(browser.submit_code(step, code)) == "/"
    second = client_with_cookie(totp_app, stale_cookie)
    response = second.post(step, data={"code": code, "csrf_token": stale_token})
    assert response.status_code == 302
    assert location(response) == "/login"
    assert signed_in_as(browser, "alice")
