"""signin/steps: whole sign-ins as a person does them, sign-out, where `next` may lead,
double submits, the clock-drift hint and one answer for a wrong username or password
(SC-06, SC-18, SC-29, SC-31)."""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urljoin, urlsplit

import pyotp
import pytest
from support.app import PASSWORD, make_app
from support.client import client_with_cookie, http, http_signed_in_as, signed_in_as, together
from support.db import (
    audit_events,
    audit_rows,
    bound_sessions,
    failures,
    raise_on_audit,
    sessions_of,
)
from support.oath import wrong_code
from support.pages import form_token, location, set_cookie_value, text
from support.proxies import HTTP_TIMEOUT
from support.steps import (
    enrol_then_pending_verify,
    give_credential,
    pending_setup,
    pending_verify,
    pending_verify_with_credential,
)

from standalone_mfa.core import crypto
from standalone_mfa.core.db import db
from standalone_mfa.core.messages import MESSAGES
from standalone_mfa.core.models import AuditEvent, TotpCredential, WebSession
from standalone_mfa.directory import settings
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import totp
from standalone_mfa.signin.state import AUTHENTICATED

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


def normalised_login_page(response) -> str:
    page = response.get_data(as_text=True)
    page = re.sub(r'name="csrf_token"( type="hidden")? value="[^"]*"', "CSRF", page)
    page = re.sub(r'value="[^"]*"', 'value=""', page)  # the username as typed
    page = re.sub(r'"challenge": "[^"]*"', '"challenge": ""', page)  # the passkey options'
    return page


def double_click(base, cookie, path, code, token):
    """The same form posted twice at once from one browser (one cookie)."""
    clicks = [http(base, cookie) for _ in range(2)]
    return together(
        *(
            lambda c=c: c.post(
                base + path,
                data={"code": code, "csrf_token": token},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT,
            )
            for c in clicks
        )
    )


NEXT_VALUES = [
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "%5C%5Cevil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d%0aSet-Cookie:%20x=1",
    "%20//evil.example",
    "%E3%80%80//evil.example",
    "/./%2Fevil.example",
    "/%252F%252Fevil.example",
    "https%3A%2F%2Fevil.example",
    "javascript%3Aalert(1)",
    "//%2Fevil.example",
    "/%00",
    "/" + "a" * 3000,
]


DRIFT_ADVICE = "Your phone's clock may be wrong; turn on automatic time."


DRIFTS = [
    (-3, "This code was valid about 2 minutes ago."),
    (3, "will only be valid in about 2 minutes."),
]


def at_code_step(where, new_browser):
    """(browser, secret, path) at /mfa/verify (enrolled) or /mfa/setup (first time)."""
    if where == "verify":
        secret = new_browser().enrol()
        browser = pending_verify(new_browser)
        browser.clock.advance(30)
        return browser, secret, "/mfa/verify"
    browser, secret = pending_setup(new_browser)
    return browser, secret, "/mfa/setup"


def test_disabled_method_signs_in_with_password_only(browser):
    response = browser.login()
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = browser.page("/")
    assert "Signed in as <strong>alice</strong>" in page


def test_first_login_with_totp_sets_up_then_home(totp_app, browser):
    response = browser.login()
    assert response.headers["Location"] == "/mfa/setup"
    page = browser.page("/mfa/setup")
    assert "Set up Multi-Factor Authentication" in page
    assert 'id="totp-qr"' in page and "<svg" in page
    secret = browser.setup_secret()
    response = browser.submit_code("/mfa/setup", {"code": browser.code(secret)})
    assert response.headers["Location"] == "/"
    assert "You are signed in as" in browser.page("/")
    with totp_app.app_context():
        credential = TotpCredential.get()
        assert credential.user.username == "alice"
        assert secret not in credential.secret_encrypted


def test_later_login_asks_for_code_then_home(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    clock.advance(60)
    later = new_browser()
    response = later.login()
    assert response.headers["Location"] == "/mfa/verify"
    assert "Enter your code" in later.page("/mfa/verify")
    response = later.post("/mfa/verify", {"code": later.code(secret)})
    assert response.headers["Location"] == "/"
    assert "signed in as" in later.page("/")


def test_wrong_code_stays_on_verify_with_message(totp_app, browser, new_browser, clock):
    browser.enrol()
    clock.advance(60)
    later = new_browser()
    later.login()
    response = later.post("/mfa/verify", {"code": "000000"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "That code is not right" in page
    assert 'role="alert"' in page
    assert response.request.path == "/mfa/verify"


def test_reload_shows_same_secret(totp_app, browser, clock):
    browser.login()
    first = browser.setup_secret()
    clock.advance(120)
    assert browser.setup_secret() == first
    assert len(first) == 32


def test_setup_expires_after_ten_minutes_and_reload_does_not_extend(totp_app, browser, clock):
    browser.login()
    secret = browser.setup_secret()
    clock.advance(590)
    browser.setup_secret()  # a reload just before the end does not renew it
    clock.advance(20)
    response = browser.post("/mfa/setup", {"code": browser.code(secret)})
    assert response.headers["Location"].startswith("/login")
    assert MESSAGES["expired"] in browser.page("/login")
    with totp_app.app_context():
        assert TotpCredential.select().count() == 0


def test_verify_expires_after_five_minutes(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    later = new_browser()
    clock.advance(60)
    later.login()
    clock.advance(301)
    response = later.post("/mfa/verify", {"code": later.code(secret)})
    assert response.headers["Location"].startswith("/login")
    assert MESSAGES["expired"] in later.page("/login")
    assert later.get("/").status_code == 302


def test_logout_ends_session(browser, app):
    browser.login()
    assert browser.get("/").status_code == 200
    response = browser.logout()
    assert response.headers["Location"] == "/login"
    assert browser.get("/").status_code == 302
    with app.app_context():
        assert WebSession.select().where(WebSession.state == AUTHENTICATED).count() == 0


# --- SC-18 logout


def test_sc18_logout_by_get_only_asks_to_confirm(app, browser):
    """A link (a protected app's "sign out", or one planted on another site) signs
    nobody out: GET shows a button that posts, with its CSRF token."""
    browser.login()
    response = browser.get("/logout?rd=https://wiki.example.test/")
    assert response.status_code == 200
    assert 'id="confirm-sign-out"' in response.get_data(as_text=True)
    assert signed_in_as(browser, "alice")
    assert [s.state for s in sessions_of(app, "alice")] == [AUTHENTICATED]


def test_sc18_logout_405_says_get_and_post_are_allowed(app, browser):
    browser.login()
    response = browser.client.put("/logout")
    assert response.status_code == 405
    assert "POST" in response.headers.get("Allow", "")
    assert signed_in_as(browser, "alice")


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


# --- SC-29 open redirect via next


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


@pytest.mark.parametrize("target", NEXT_VALUES, ids=lambda t: t[:30])
def test_sc29_encoded_next_values_stay_on_this_site(totp_app, new_browser, clock, target):
    secret = give_credential(totp_app, clock, "alice")
    fresh = new_browser()
    fresh.get("/login?next=" + target)
    response = fresh.post("/login?next=" + target, {"username": "alice", "password": PASSWORD})
    assert location(response) == "/mfa/verify"
    fresh.get("/mfa/verify")
    response = fresh.post("/mfa/verify", {"code": fresh.code(secret)})
    landing = location(response)
    assert landing and landing.startswith("/") and not landing.startswith("//")
    assert "\\" not in landing and landing.isprintable()  # browsers read "\" and tabs too
    resolved = urlsplit(urljoin("https://mfa.example/", landing))
    assert (resolved.scheme, resolved.netloc) == ("https", "mfa.example")


# --- SC-31 and SC-06: one answer for a wrong username, a second click


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


# --- double-submitting the code forms (SC-06/SC-20)


@pytest.mark.server
def test_sc06_double_submit_of_verify_form_signs_in_once(tmp_path, clock, serve):
    app = make_app(tmp_path, clock)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    base = serve(app)
    for round_no in range(8):
        clock.advance(totp.PERIOD)  # no request in flight
        username = f"double{round_no}"
        secret = give_credential(app, clock, username)
        visitor = http(base)
        token = form_token(visitor.get(base + "/login", timeout=HTTP_TIMEOUT))
        response = visitor.post(
            base + "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert response.headers["Location"] == "/mfa/verify"
        token = form_token(visitor.get(base + "/mfa/verify", timeout=HTTP_TIMEOUT))
        cookie = visitor.cookies.get("smfa_session")
        code = pyotp.TOTP(secret).at(clock.timestamp())
        answers = double_click(base, cookie, "/mfa/verify", code, token)
        what = f"round {round_no}: {[(a.status_code, a.headers.get('Location')) for a in answers]}"
        assert all(a.status_code == 302 for a in answers), what
        assert [a.headers["Location"] for a in answers].count("/") == 1, what
        new_cookies = [c for c in map(set_cookie_value, answers) if c]
        assert len(new_cookies) == 1, what  # the browser ends with one, signed-in, cookie
        assert http_signed_in_as(base, new_cookies[0], username), what
        assert not http_signed_in_as(base, cookie, username), what
        assert [s for s in bound_sessions(app) if s[0] == username] == [
            (username, "authenticated")
        ], what
        ok = [e for e in audit_events(app, "totp") if e.username == username and e.outcome == "ok"]
        assert len(ok) == 1, what
    with app.app_context():
        db.close()


@pytest.mark.server
def test_sc20_double_submit_of_setup_form_enrols_once(tmp_path, clock, serve):
    app = make_app(tmp_path, clock)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
        for n in range(6):
            create_user(f"setup{n}", PASSWORD)
    base = serve(app)
    for round_no in range(6):
        clock.advance(totp.PERIOD)
        username = f"setup{round_no}"
        visitor = http(base)
        token = form_token(visitor.get(base + "/login", timeout=HTTP_TIMEOUT))
        visitor.post(
            base + "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        page = visitor.get(base + "/mfa/setup", timeout=HTTP_TIMEOUT)
        secret = html.unescape(
            re.search(r'id="totp-secret"[^>]*>([^<]+)<', page.text).group(1)
        ).replace(" ", "")
        token = form_token(page)
        cookie = visitor.cookies.get("smfa_session")
        code = pyotp.TOTP(secret).at(clock.timestamp())
        answers = double_click(base, cookie, "/mfa/setup", code, token)
        what = f"round {round_no}: {[(a.status_code, a.headers.get('Location')) for a in answers]}"
        assert all(a.status_code == 302 for a in answers), what
        # One click set up the app and shows the recovery codes; the other is sent on.
        assert [a.headers["Location"] for a in answers].count("/mfa/recovery-codes") == 1, what
        with app.app_context():
            credentials = list(
                TotpCredential.select().where(TotpCredential.user == find_user(username))
            )
            assert len(credentials) == 1, what
            assert crypto.decrypt(credentials[0].secret_encrypted) == secret, what
        new_cookies = [c for c in map(set_cookie_value, answers) if c]
        assert len(new_cookies) == 1, what
        codes_page = http(base, new_cookies[0]).get(
            base + "/mfa/recovery-codes", allow_redirects=False, timeout=HTTP_TIMEOUT
        )
        assert codes_page.status_code == 200 and "I have saved these codes" in codes_page.text
    with app.app_context():
        db.close()


# --- a database error after the code step


def test_verify_database_error_after_step_consumed_leaves_nothing_half_done(
    totp_app, new_browser, clock, monkeypatch
):
    browser, secret = pending_verify_with_credential(new_browser, totp_app, clock)
    raise_on_audit(monkeypatch, "totp")
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert response.status_code == 503
    monkeypatch.undo()
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert location(response) == "/"
    assert audit_events(totp_app, "totp_replay") == []


# --- The clock-drift hint


@pytest.mark.parametrize("where", ["verify", "setup"])
@pytest.mark.parametrize(("steps", "words"), DRIFTS)
def test_drifted_code_is_refused_counted_and_explained(totp_app, new_browser, where, steps, words):
    """A phone whose clock is off: its first code gets the plain message (one code alone
    may be a guess, SC-44); its next code, at the same offset, is explained."""
    browser, secret, path = at_code_step(where, new_browser)
    response = browser.post(path, {"code": browser.code(secret, steps)})
    assert location(response) == path
    page = text(browser.get(path))
    assert MESSAGES["wrong_code"] in page and DRIFT_ADVICE not in page
    assert ("totp", "failed", "alice", None, None) in audit_rows(totp_app, "totp")
    browser.clock.advance(30)  # the phone's next code
    response = browser.post(path, {"code": browser.code(secret, steps)})
    assert location(response) == path
    page = text(browser.get(path))
    assert words in page and DRIFT_ADVICE in page
    assert failures(totp_app, "alice") == 2
    assert not signed_in_as(browser, "alice")
    assert ("totp", "failed", "alice", None, "clock drift") in audit_rows(totp_app, "totp")


@pytest.mark.parametrize("where", ["verify", "setup"])
def test_sc44_a_single_future_code_at_sign_in_gets_the_generic_message(
    totp_app, new_browser, where
):
    """The finding: one code that matches a step two minutes ahead. The answer is the
    plain one, as for any wrong code; the code signs in once its step comes (that is
    TOTP), but nothing told the sender so."""
    browser, secret, path = at_code_step(where, new_browser)
    ahead = browser.code(secret, 4)
    response = browser.post(path, {"code": ahead})
    assert location(response) == path
    page = text(browser.get(path))
    assert MESSAGES["wrong_code"] in page
    assert "This code was valid" not in page and DRIFT_ADVICE not in page
    assert ("totp", "failed", "alice", None, None) in audit_rows(totp_app, "totp")
    browser.clock.advance(4 * 30)
    response = browser.post(path, {"code": ahead})
    assert location(response) in ("/", "/mfa/recovery-codes")
    assert "clock drift" not in {row[4] for row in audit_rows(totp_app, "totp")}


@pytest.mark.parametrize("where", ["verify", "setup"])
def test_sc44_two_codes_from_a_fast_phone_at_sign_in_get_the_hint(totp_app, new_browser, where):
    browser, secret, path = at_code_step(where, new_browser)
    browser.post(path, {"code": browser.code(secret, 6)})
    assert "This code was valid" not in text(browser.get(path))
    browser.clock.advance(30)
    browser.post(path, {"code": browser.code(secret, 6)})
    page = text(browser.get(path))
    assert "This code will only be valid in about 3 minutes." in page and DRIFT_ADVICE in page
    assert not signed_in_as(browser, "alice")
    # The phone's clock set right: its code signs in.
    response = browser.post(path, {"code": browser.code(secret)})
    assert location(response) in ("/", "/mfa/recovery-codes")


@pytest.mark.parametrize("where", ["verify", "setup"])
def test_sc44_two_codes_at_different_offsets_at_sign_in_get_no_hint(totp_app, new_browser, where):
    browser, secret, path = at_code_step(where, new_browser)
    for steps in (6, -4):
        browser.post(path, {"code": browser.code(secret, steps)})
        page = text(browser.get(path))
        assert MESSAGES["wrong_code"] in page and "This code was valid" not in page
    assert failures(totp_app, "alice") == 2
    assert "clock drift" not in {row[4] for row in audit_rows(totp_app, "totp")}


def test_sc44_a_code_without_drift_in_between_starts_again(totp_app, new_browser, clock):
    """A drifted code then a right one: the signed-in session keeps no offset. In a
    pending login, a wrong code without drift between two drifted ones: no hint."""
    secret = new_browser().enrol()
    clock.advance(30)
    browser = pending_verify(new_browser)
    browser.post("/mfa/verify", {"code": browser.code(secret, 6)})
    with totp_app.app_context():
        (pending,) = [r for r in WebSession.select() if r.state != AUTHENTICATED]
        assert '"code_drift":6' in pending.data  # kept server-side, for this login only
    assert location(browser.post("/mfa/verify", {"code": browser.code(secret)})) == "/"
    with totp_app.app_context():
        rows = [r for r in WebSession.select() if r.state == AUTHENTICATED]
        assert len(rows) == 2 and all("code_drift" not in r.data for r in rows)

    clock.advance(30)
    again = pending_verify(new_browser)
    for code in (browser.code(secret, 6), wrong_code(secret, clock), browser.code(secret, 6)):
        again.post("/mfa/verify", {"code": code})
        page = text(again.get("/mfa/verify"))
        assert MESSAGES["wrong_code"] in page and "This code was valid" not in page
    assert failures(totp_app, "alice") == 3


@pytest.mark.parametrize("where", ["verify", "setup"])
@pytest.mark.parametrize("code_kind", ["20 steps ago", "20 steps ahead", "no step"])
def test_far_or_unmatched_code_gets_the_plain_message(totp_app, new_browser, where, code_kind):
    browser, secret, path = at_code_step(where, new_browser)
    code = {
        "20 steps ago": browser.code(secret, -20),
        "20 steps ahead": browser.code(secret, 20),
        "no step": wrong_code(secret, browser.clock),
    }[code_kind]
    response = browser.post(path, {"code": code})
    assert location(response) == path
    page = text(browser.get(path))
    assert MESSAGES["wrong_code"] in page
    assert "This code was valid" not in page and "clock may be wrong" not in page
    assert failures(totp_app, "alice") == 1


@pytest.mark.parametrize("where", ["verify", "setup"])
def test_no_drift_hint_while_throttled(totp_app, new_browser, clock, where):
    browser, secret, path = at_code_step(where, new_browser)
    for _ in range(5):
        response = browser.post(path, {"code": wrong_code(secret, clock)})
    assert location(response) == "/login"
    assert failures(totp_app, "alice") == 5

    # Back at the code step while the back-off lasts: no hint, not counted.
    browser, secret, path = (
        (pending_verify(new_browser), secret, "/mfa/verify")
        if where == "verify"
        else (*pending_setup(new_browser), "/mfa/setup")
    )
    response = browser.post(path, {"code": browser.code(secret, -3)})
    assert location(response) == path
    page = text(browser.get(path))
    assert "Too many wrong codes. Wait" in page
    assert "This code was valid" not in page and "clock may be wrong" not in page
    assert failures(totp_app, "alice") == 5

    # After the wait the drifted code is a sixth failure: the login ends, no hint.
    clock.advance(2)
    response = browser.post(path, {"code": browser.code(secret, -3)})
    assert location(response) == "/login"
    page = text(browser.get("/login"))
    assert MESSAGES["too_many_codes"] in page
    assert "This code was valid" not in page and "clock may be wrong" not in page
    assert failures(totp_app, "alice") == 6
