"""factors/devices: "Remember this device": a random, hashed, per-user cookie that skips
the code (never the password) until it expires or is revoked (SC-13, SC-16, SC-30)."""

from __future__ import annotations

import hashlib
import re

import pytest
from support.app import NEW_PASSWORD, PASSWORD
from support.client import DEVICE_COOKIE, Browser, device_token, signed_in_as
from support.db import audit_rows, database_dump, devices_of, set_remember_days
from support.oath import fresh_code
from support.pages import location, text
from support.steps import (
    change_password,
    confirm_for_new_authenticator,
    new_authenticator_secret,
    pending_verify,
    remembered_browser,
    signed_in_with_code,
)

from standalone_mfa.accounts import reset
from standalone_mfa.core.messages import MESSAGES
from standalone_mfa.core.models import User


def set_cookie_headers(response, name) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]


def revoke_by_forget_all(app, new_browser, secret):
    browser = signed_in_with_code(new_browser, secret)
    browser.get("/account/security")
    assert location(browser.post("/account/devices/forget")) == "/account/security"


def revoke_by_password_change(app, new_browser, secret):
    browser = signed_in_with_code(new_browser, secret)
    assert location(change_password(browser, PASSWORD, NEW_PASSWORD)) == "/account/security"


def revoke_by_new_authenticator(app, new_browser, secret):
    browser = signed_in_with_code(new_browser, secret)
    response = confirm_for_new_authenticator(browser, PASSWORD, fresh_code(browser, secret))
    assert location(response) == "/account/authenticator/new"
    new_secret = new_authenticator_secret(browser)
    response = browser.post("/account/authenticator/new", {"code": browser.code(new_secret)})
    assert location(response) == "/account/security"


def revoke_by_admin_reset(app, new_browser, secret):
    with app.app_context():
        assert reset.reset_totp(User.get(User.username == "alice"), actor="root")


class HttpsBrowser(Browser):
    """A browser on https://localhost (the test client's cookie jar keeps Secure
    cookies for it)."""

    def get(self, path, **kwargs):
        return super().get(path, base_url="https://localhost", **kwargs)

    def post(self, path, data=None, csrf=True, **kwargs):
        return super().post(path, data, csrf, base_url="https://localhost", **kwargs)


# --- Remember this device: at sign-in


def test_verify_page_offers_to_remember_only_when_the_setting_is_on(totp_app, new_browser):
    new_browser().enrol()
    browser = pending_verify(new_browser)
    page = text(browser.get("/mfa/verify"))
    assert "Remember this device" not in page
    assert 'name="remember_device"' not in page
    assert "Only use on a private device." not in page

    for days, words in ((14, "Remember this device for 14 days"), (1, "for 1 day<")):
        set_remember_days(totp_app, days)
        page = text(browser.get("/mfa/verify"))
        assert words in page
        assert 'name="remember_device"' in page
        assert "Only use on a private device." in page


def test_remember_ticked_while_setting_is_zero_does_nothing(totp_app, new_browser):
    secret = new_browser().enrol()
    browser = pending_verify(new_browser)
    response = browser.post(
        "/mfa/verify", {"code": fresh_code(browser, secret), "remember_device": "y"}
    )
    assert location(response) == "/"
    assert set_cookie_headers(response, DEVICE_COOKIE) == []
    assert device_token(browser) is None
    assert devices_of(totp_app, "alice") == []
    browser.logout()
    assert location(browser.login()) == "/mfa/verify"


def test_remember_cookie_is_httponly_lax_random_and_only_hashed(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    tokens_seen = []
    for _ in range(2):
        browser = pending_verify(new_browser)
        response = browser.post(
            "/mfa/verify", {"code": fresh_code(browser, secret), "remember_device": "y"}
        )
        assert location(response) == "/"
        (header,) = set_cookie_headers(response, DEVICE_COOKIE)
        attributes = [part.strip() for part in header.split(";")]
        assert "HttpOnly" in attributes
        assert "SameSite=Lax" in attributes
        assert f"Max-Age={30 * 24 * 3600}" in attributes
        assert "Path=/" in attributes
        token = device_token(browser)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)  # 256 random bits, URL-safe
        assert token != browser.cookie()  # not the session id
        tokens_seen.append(token)
    assert len(set(tokens_seen)) == 2

    rows = devices_of(totp_app, "alice")
    assert {row.token_hash for row in rows} == {
        hashlib.sha256(t.encode()).hexdigest() for t in tokens_seen
    }
    dump = database_dump(totp_app)
    assert not any(token in dump for token in tokens_seen)
    assert [r[:3] for r in audit_rows(totp_app, "device_remembered")] == [
        ("device_remembered", "ok", "alice")
    ] * 2


def test_remembered_device_skips_the_code_but_never_the_password(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    browser = remembered_browser(new_browser, secret)

    response = browser.login(password="not the password at all")
    assert response.status_code == 200
    assert MESSAGES["wrong_password_or_username"] in text(response)
    assert not signed_in_as(browser, "alice")
    assert location(browser.get("/account/security")).startswith("/login")

    response = browser.login()
    assert location(response) == "/"
    assert signed_in_as(browser, "alice")
    assert browser.get("/account/security").status_code == 200
    assert ("remembered_device", "used", "alice") in {r[:3] for r in audit_rows(totp_app)}
    assert devices_of(totp_app, "alice")[0].last_used_at is not None


def test_sc13_remembered_device_of_one_user_is_useless_for_another(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    alice_secret = new_browser().enrol("alice")
    new_browser().enrol("bob")
    browser = remembered_browser(new_browser, alice_secret, "alice")
    alice_token = device_token(browser)

    # Bob signs in on the browser alice remembered: asked for his code.
    assert location(browser.login("bob")) == "/mfa/verify"
    assert not signed_in_as(browser, "bob")
    browser.post("/logout")

    # Alice's token copied into bob's own browser: asked for his code too.
    copied = new_browser()
    copied.client.set_cookie(DEVICE_COOKIE, alice_token)
    assert location(copied.login("bob")) == "/mfa/verify"
    assert not signed_in_as(copied, "bob")
    assert "used" not in {r[1] for r in audit_rows(totp_app, "remembered_device")}

    # The device still works for alice herself: the check above could have failed.
    assert location(browser.login("alice")) == "/"


def test_sc13_missing_or_forged_remember_cookie_is_asked_for_the_code(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    remembered = remembered_browser(new_browser, secret)
    token = device_token(remembered)
    stored_hash = devices_of(totp_app, "alice")[0].token_hash

    assert location(new_browser().login()) == "/mfa/verify"  # no cookie at all
    forged = {
        "flipped": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "extended": token + "x",
        "truncated": token[:-1],
        "the stored hash": stored_hash,
        "long": "A" * 500,
        "empty": "",
    }
    for what, value in forged.items():
        attacker = new_browser()
        attacker.client.set_cookie(DEVICE_COOKIE, value)
        assert location(attacker.login()) == "/mfa/verify", what
        assert not signed_in_as(attacker, "alice"), what
    assert location(remembered.login()) == "/"


def test_remembered_device_is_revoked_by_a_password_change(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    device = remembered_browser(new_browser, secret)
    account = signed_in_with_code(new_browser, secret)

    assert location(change_password(account, PASSWORD, NEW_PASSWORD)) == "/account/security"
    assert devices_of(totp_app, "alice") == []
    assert location(device.login(password=NEW_PASSWORD)) == "/mfa/verify"
    assert not signed_in_as(device, "alice")


def test_remembered_device_is_revoked_by_forget_all(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    device = remembered_browser(new_browser, secret)
    assert location(device.login()) == "/"
    page = device.page("/account/security")
    assert "Forget all remembered devices" in page
    assert "No device is remembered" not in page

    device.get("/account/security")
    response = device.post("/account/devices/forget")
    assert location(response) == "/account/security"
    page = text(device.get("/account/security"))
    assert "Forgot 1 remembered device." in page
    assert "No device is remembered" in page
    assert devices_of(totp_app, "alice") == []
    assert ("remembered_device", "revoked", "alice") in {r[:3] for r in audit_rows(totp_app)}

    device.logout()
    assert location(device.login()) == "/mfa/verify"


def test_remembered_device_is_revoked_by_a_new_authenticator(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    device = remembered_browser(new_browser, secret)
    account = signed_in_with_code(new_browser, secret)

    response = confirm_for_new_authenticator(account, PASSWORD, fresh_code(account, secret))
    assert location(response) == "/account/authenticator/new"
    new_secret = new_authenticator_secret(account)
    response = account.post("/account/authenticator/new", {"code": account.code(new_secret)})
    assert location(response) == "/account/security"
    assert devices_of(totp_app, "alice") == []
    assert location(device.login()) == "/mfa/verify"


@pytest.mark.parametrize(
    "revoke",
    [
        revoke_by_forget_all,
        revoke_by_password_change,
        revoke_by_new_authenticator,
        revoke_by_admin_reset,
    ],
)
def test_sc30_revoking_remembered_devices_is_audited(totp_app, new_browser, revoke):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    remembered_browser(new_browser, secret)
    remembered_browser(new_browser, secret)
    assert len(devices_of(totp_app, "alice")) == 2

    revoke(totp_app, new_browser, secret)
    assert devices_of(totp_app, "alice") == []
    revoked = [r for r in audit_rows(totp_app, "remembered_device") if r[1] == "revoked"]
    assert len(revoked) == 1
    assert revoked[0][2:4] == ("alice", "root" if revoke is revoke_by_admin_reset else "alice")
    assert revoked[0][4].startswith("2 ")


def test_remembered_device_is_not_honoured_while_the_setting_is_zero(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    device = remembered_browser(new_browser, secret)
    set_remember_days(totp_app, 0)
    assert location(device.login()) == "/mfa/verify"
    assert not signed_in_as(device, "alice")


def test_remembered_device_stays_revoked_when_the_setting_is_turned_back_on(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    device = remembered_browser(new_browser, secret)
    set_remember_days(totp_app, 0)
    set_remember_days(totp_app, 30)
    assert location(device.login()) == "/mfa/verify"
    assert devices_of(totp_app, "alice") == []


def test_fewer_remember_days_shorten_devices_remembered_before(totp_app, new_browser, clock):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol()
    device = remembered_browser(new_browser, secret)
    set_remember_days(totp_app, 1)
    clock.advance(2 * 24 * 3600)
    assert location(device.login()) == "/mfa/verify"


def test_remembered_device_expires_after_the_set_number_of_days(totp_app, new_browser, clock):
    set_remember_days(totp_app, 2)
    secret = new_browser().enrol()
    device = remembered_browser(new_browser, secret)

    clock.advance(2 * 24 * 3600 - 60)
    assert location(device.login()) == "/"
    device.logout()
    clock.advance(60)
    assert location(device.login()) == "/mfa/verify"
    assert not signed_in_as(device, "alice")


# --- SC-16: over HTTPS


def test_sc16_remember_cookie_over_https_is_secure_and_host_prefixed(totp_app, new_browser, clock):
    """Served over HTTPS, the remembered-device cookie follows the session cookie:
    Secure, HttpOnly, SameSite=Lax and named __Host-; it still skips only the code."""
    set_remember_days(totp_app, 7)
    secret = new_browser().enrol()
    browser = signed_in_with_code(lambda: HttpsBrowser(totp_app, clock), secret, remember=True)
    cookie = browser.client.get_cookie("__Host-smfa_device", domain="localhost")
    assert cookie is not None and browser.client.get_cookie(DEVICE_COOKIE) is None
    assert cookie.secure and cookie.http_only and cookie.same_site == "Lax" and cookie.path == "/"
    assert len(devices_of(totp_app, "alice")) == 1
    browser.logout()
    assert location(browser.login()) == "/"
