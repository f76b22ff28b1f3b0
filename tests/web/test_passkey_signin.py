"""Signing in with a passkey, through the sign-in page (the test client plays the
browser, tests/support/softkey.py the authenticator): no username and no password, both
factors in one step when the authenticator verified the user (SC-54), the same answer
whatever was wrong (SC-52), failures counted per client address, and the page as it
is without JavaScript."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from support.app import make_app
from support.client import Browser, signed_in_as
from support.db import audit_rows
from support.pages import location
from support.passkeys import options_in, register
from support.softkey import SoftKey

from standalone_mfa.core.models import MfaThrottle, User, WebSession
from standalone_mfa.directory import settings
from standalone_mfa.factors import throttle, webauthn

ORIGIN = "http://localhost:5000"


def page_options(browser, path="/login") -> dict:
    return options_in(browser.page(path))


def passkey_sign_in(browser, key, path="/login", **get):
    """Open the sign-in page, let `key` answer its options, post the answer."""
    answer = key.get(page_options(browser, path), **get)
    action = "/login/passkey" + path[len("/login") :]
    return browser.post(action, {"credential": answer})


def row(app, username="alice"):
    with app.app_context():
        found = list(WebSession.select().join(User).where(User.username == username))
    return found[0] if found else None


@pytest.fixture
def passkey(app, clock):
    return register(app, clock, "alice", SoftKey(ORIGIN))


def test_the_page_offers_passkeys_to_scripts_only_and_in_the_username_autofill(browser):
    page = browser.page("/login")
    assert 'autocomplete="username webauthn"' in page
    form = re.search(r'<form[^>]*id="passkey-form"[^>]*>', page).group(0)
    assert " hidden" in form  # without JavaScript the password form is the page
    assert 'action="/login/passkey"' in form
    assert 'id="passkey-signin"' in page
    assert 'name="credential"' in page and "csrf_token" in page
    assert 'src="/static/webauthn.js"' in page
    options = page_options(browser)
    assert options["userVerification"] == "required"
    assert options.get("allowCredentials", []) == []  # usernameless: no user named
    assert options["rpId"] == "localhost"


def test_sc54_a_verified_passkey_signs_in_in_one_step_as_both_factors(app, browser, passkey):
    before = browser.cookie()
    response = passkey_sign_in(browser, passkey)
    assert location(response) == "/"
    assert signed_in_as(browser, "alice")
    session = row(app)
    assert session.state == "authenticated"
    assert session.signin_methods == "passkey"
    assert session.second_factor_at is not None
    assert browser.cookie() and browser.cookie() != before  # a new session id
    assert ("login", "ok", "alice", None, "passkey") in audit_rows(app)


def test_sc54_a_passkey_counts_as_both_factors_on_a_totp_site(app, new_browser, clock):
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    key = register(app, clock, "alice", SoftKey(ORIGIN))
    browser = new_browser()
    assert location(passkey_sign_in(browser, key)) == "/"
    assert signed_in_as(browser, "alice")
    assert browser.get("/account/security").status_code == 200  # no set-up asked


def test_sc54_a_passkey_that_did_not_verify_the_user_does_not_sign_in(app, browser, passkey):
    passkey.uv = False
    response = passkey_sign_in(browser, passkey)
    assert location(response) == "/login"
    page = browser.page("/login")
    assert "The passkey sign-in did not go through" in page
    assert not signed_in_as(browser, "alice")
    assert row(app) is None
    assert ("webauthn_used", "refused", "alice") in {r[:3] for r in audit_rows(app)}


def test_sc54_a_security_key_alone_is_no_sign_in(app, new_browser, clock):
    """A security key (not discoverable: no userHandle) is only a second factor after
    the password, even one that verifies its user."""
    key = register(app, clock, "alice", SoftKey(ORIGIN, resident=False), webauthn.SECURITY_KEY)
    browser = new_browser()
    assert location(passkey_sign_in(browser, key)) == "/login"
    assert not signed_in_as(browser, "alice") and row(app) is None


def test_usernameless_refusals_tell_nothing_of_users_or_keys(app, new_browser, clock, passkey):
    """An unknown key, another site's key, and a known key with a wrong flag all get
    the same page."""
    pages = []
    for key in (SoftKey(ORIGIN), passkey):
        key.rp_id, key.user_handle = "localhost", b"\x01" * 64
        browser = new_browser()
        if key is passkey:
            key.uv = False
        response = passkey_sign_in(browser, key)
        assert location(response) == "/login"
        text = browser.page("/login")
        pages.append(
            re.sub(r'value="[^"]*"|<script type="application/json".*?</script>', "", text)
        )
    assert pages[0] == pages[1]


def test_an_answer_signs_in_once(app, new_browser, passkey):
    browser = new_browser()
    answer = passkey.get(page_options(browser))
    assert location(browser.post("/login/passkey", {"credential": answer})) == "/"
    replayer = new_browser()
    replayer.get("/login")
    assert location(replayer.post("/login/passkey", {"credential": answer})) == "/login"
    assert not signed_in_as(replayer, "alice")


def test_a_passkey_sign_in_without_the_form_token_is_refused(app, browser, passkey):
    answer = passkey.get(page_options(browser))
    response = browser.post("/login/passkey", {"credential": answer}, csrf=False)
    assert response.status_code == 400
    assert not signed_in_as(browser, "alice")


@pytest.mark.parametrize("answer", ["", "not json", "{}", "x" * 20000, '{"id": 1}'])
def test_bad_answers_are_refused_with_the_same_message(app, browser, answer):
    response = browser.post("/login/passkey", {"credential": answer})
    assert location(response) == "/login"
    assert "The passkey sign-in did not go through" in browser.page("/login")


def test_failures_are_counted_per_address_then_wait(tmp_path, clock):
    app = make_app(tmp_path, clock, PASSWORD_IP_BACKOFF_AFTER=3)
    browser = Browser(app, clock)
    for _ in range(3):
        browser.post("/login/passkey", {"credential": "{}"})
    browser.get("/login")
    browser.post("/login/passkey", {"credential": "{}"})
    page = browser.page("/login")
    assert "Too many failed sign-ins from your network" in page
    # The address's counter is the one passwords from untrusted browsers use too.
    browser.login("alice")
    assert not signed_in_as(browser, "alice")


def test_sc42_a_passkey_sign_in_gives_back_its_own_claim_only(app, browser, passkey):
    """Counted before its outcome is known, in the transaction that commits it: a
    failure stays counted, a success leaves the address's count as it found it."""
    browser.post("/login/passkey", {"credential": "{}"})
    browser.post("/login/passkey", {"credential": "{}"})
    with app.app_context():
        assert throttle.address_failures("127.0.0.1") == 2
    assert location(passkey_sign_in(browser, passkey)) == "/"
    with app.app_context():
        assert throttle.address_failures("127.0.0.1") == 2


def test_a_locked_second_factor_stays_locked(app, browser, passkey):
    with app.app_context():
        user = User.get(User.username == "alice")
        MfaThrottle.insert(user=user, failures=throttle.policy().lock_after).execute()
    assert location(passkey_sign_in(browser, passkey)) == "/login"
    assert not signed_in_as(browser, "alice")


def test_next_is_followed_after_a_passkey_sign_in(app, browser, passkey):
    response = passkey_sign_in(browser, passkey, "/login?next=" + quote("/account/security"))
    assert location(response) == "/account/security"


def test_a_signed_in_browser_does_not_sign_in_again(app, browser, passkey):
    passkey_sign_in(browser, passkey)
    response = browser.post("/login/passkey", {"credential": "{}"})
    assert location(response) == "/"


def test_the_sign_in_challenge_is_this_browsers_and_expires(app, new_browser, clock, passkey):
    """Nothing is stored when the page is shown (SC-45), yet the challenge is bound to
    the browser that was shown it, and lives WEBAUTHN_TIMEOUT seconds."""
    shown = new_browser()
    answer = passkey.get(page_options(shown))
    other = new_browser()
    other.get("/login")
    assert location(other.post("/login/passkey", {"credential": answer})) == "/login"
    late = new_browser()
    answer = passkey.get(page_options(late))
    clock.advance(app.config["WEBAUTHN_TIMEOUT"] + 1)
    assert location(late.post("/login/passkey", {"credential": answer})) == "/login"
    assert not signed_in_as(other, "alice") and not signed_in_as(late, "alice")
    fresh = new_browser()
    assert location(passkey_sign_in(fresh, passkey)) == "/"


def test_a_forged_challenge_is_refused_not_an_error(app, browser, passkey):
    options = page_options(browser)
    for forged in ("A" * 75, "_" * 75, "_" * 10, ""):
        answer = passkey.get({**options, "challenge": forged})
        assert location(browser.post("/login/passkey", {"credential": answer})) == "/login"
    assert not signed_in_as(browser, "alice")
