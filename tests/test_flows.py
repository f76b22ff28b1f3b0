"""Whole sign-ins through the test client, as a person would do them."""

from __future__ import annotations

from standalone_mfa.core.messages import MESSAGES
from standalone_mfa.core.models import TotpCredential, WebSession
from standalone_mfa.signin.state import AUTHENTICATED


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
