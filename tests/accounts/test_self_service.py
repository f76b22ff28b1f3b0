"""accounts/self_service, the account area: the Account security page, new recovery
codes, a new authenticator and a new password, each needing proof (SC-21)."""

from __future__ import annotations

import re

from support.app import NEW_PASSWORD, PASSWORD
from support.client import ARGUMENT, PLACEHOLDERS, client_with_cookie, signed_in_as
from support.db import (
    audit_events,
    audit_rows,
    codes_left,
    credential_secret,
    devices_of,
    recovery_hashes,
    sessions_of,
    set_remember_days,
    table_dump,
)
from support.oath import UNKNOWN_RECOVERY_CODE, fresh_code, wrong_code
from support.pages import RECOVERY_CODE_RE, location, text
from support.steps import (
    change_password,
    confirm_for_new_authenticator,
    new_authenticator_secret,
    pending_setup,
    pending_verify,
    regenerate,
    remembered_browser,
    signed_in_with_code,
    use_recovery_code,
)

from standalone_mfa.core.messages import MESSAGES
from standalone_mfa.core.models import RecoveryCode, TotpCredential, User


def user_of(app, username) -> User:
    with app.app_context():
        return User.get(User.username == username)


def password_hash(app, username) -> str:
    return user_of(app, username).password_hash


def with_client(browser, ip, agent):
    browser.client.environ_base.update({"REMOTE_ADDR": ip, "HTTP_USER_AGENT": agent})
    return browser


ACCOUNT_PAGES = (
    "/account/security",
    "/account/recovery-codes",
    "/account/authenticator",
    "/account/authenticator/new",
    "/account/password",
)


ACCOUNT_ACTIONS = ("/account/sessions/end-others", "/account/devices/forget")


# --- The Account security page

FIREFOX_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


def test_account_security_page_shows_status_codes_devices_sessions_events(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    laptop = with_client(new_browser(), "198.51.100.7", FIREFOX_WINDOWS)
    secret = laptop.enrol()
    phone = with_client(new_browser(), "203.0.113.9", SAFARI_IPHONE)
    assert phone.login(password="wrong password here").status_code == 200
    assert location(phone.login()) == "/mfa/verify"
    phone.post("/mfa/verify", {"code": fresh_code(phone, secret), "remember_device": "y"})
    assert signed_in_as(phone, "alice")
    assert location(use_recovery_code(pending_verify(new_browser), laptop.recovery_codes[0]))
    bob = with_client(new_browser(), "192.0.2.44", "BobBrowser/3.0")
    bob.login("bob", password="bob typed this wrong")

    page = text(laptop.get("/account/security"))
    assert "An authenticator app is set up since" in page and "28 November 2026" in page
    assert "9 of 10 recovery codes left." in page
    devices_section = page.split('id="devices"')[1].split('id="sessions"')[0]
    assert "<td>Safari 18 on iPhone</td>" in devices_section
    assert "Forget all remembered devices" in devices_section

    sessions_section = page.split('id="sessions"')[1].split('id="password"')[0]
    rows = sessions_section.split("<tr>")[2:]
    assert len(rows) == len(sessions_of(totp_app, "alice")) == 3
    this = [row for row in rows if "(this session)" in row]
    assert len(this) == 1
    assert "198.51.100.7" in this[0] and "<td>Firefox 133 on Windows</td>" in this[0]
    assert any("203.0.113.9" in row and "<td>Safari 18 on iPhone</td>" in row for row in rows)
    assert "Sign out other sessions" in sessions_section

    events_section = page.split('id="events"')[1]
    event_rows = events_section.split("<tr>")[2:]
    assert 3 <= len(event_rows) <= 20
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in event_rows]
    assert ["Wrong password", "203.0.113.9"] in [c[1:] for c in cells]
    assert ["Signed in", "203.0.113.9"] in [c[1:] for c in cells]
    assert ["Code accepted", "203.0.113.9"] in [c[1:] for c in cells]
    assert "Recovery code accepted" in [c[1] for c in cells]
    assert "192.0.2.44" not in page and "BobBrowser" not in page  # bob's, not alice's
    # People's words only: no recorded event name, outcome or raw user agent.
    for raw in ("login", "totp", "recovery_code", ">ok<", ">failed<", "Mozilla/5.0", "Gecko"):
        assert raw not in events_section + devices_section + sessions_section, raw


def test_sign_out_other_sessions_ends_the_others_but_not_this_one(totp_app, new_browser):
    secret = new_browser().enrol()
    this = signed_in_with_code(new_browser, secret)
    other = signed_in_with_code(new_browser, secret)
    other_cookie = other.cookie()
    pending = pending_verify(new_browser)
    assert len(sessions_of(totp_app, "alice")) == 4

    this.get("/account/security")
    response = this.post("/account/sessions/end-others")
    assert location(response) == "/account/security"
    assert "Signed out 3 other sessions." in text(this.get("/account/security"))
    assert signed_in_as(this, "alice")
    assert [s.state for s in sessions_of(totp_app, "alice")] == ["authenticated"]

    assert not signed_in_as(other, "alice")
    assert location(other.get("/account/security")).startswith("/login")
    assert not signed_in_as(client_with_cookie(totp_app, other_cookie), "alice")
    response = pending.post("/mfa/verify", {"code": fresh_code(pending, secret)})
    assert not signed_in_as(pending, "alice")
    assert ("session_revoked", "ok", "alice") in {r[:3] for r in audit_rows(totp_app)}


def test_account_pages_need_a_session_that_proved_the_second_factor(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    secret = new_browser().enrol("alice")
    remembered_browser(new_browser, secret, "alice")
    signed_in_with_code(new_browser, secret, "alice")
    sessions_before = len(sessions_of(totp_app, "alice"))
    anonymous = new_browser()
    verifying = pending_verify(new_browser, "alice")
    setting_up, _secret = pending_setup(new_browser, "bob")
    codes_unsaved = new_browser()
    codes_unsaved.login("root")
    root_secret = codes_unsaved.setup_secret()
    codes_unsaved.post("/mfa/setup", {"code": codes_unsaved.code(root_secret)})

    cases = (
        (anonymous, "/login"),
        (verifying, "/mfa/verify"),
        (setting_up, "/mfa/setup"),
        (codes_unsaved, "/mfa/recovery-codes"),
    )
    for browser, step in cases:
        for path in ACCOUNT_PAGES:
            response = browser.get(path)
            assert response.status_code == 302, (step, path)
            assert location(response).split("?")[0] == step, (step, path)
        for path in ACCOUNT_ACTIONS:
            response = browser.post(path)
            assert response.status_code == 302, (step, path)
            assert location(response).split("?")[0] == step, (step, path)
    # The forbidden actions did nothing.
    assert len(devices_of(totp_app, "alice")) == 1
    assert len(sessions_of(totp_app, "alice")) == sessions_before + 1  # + verifying


# --- the sessions list


def test_account_page_lists_only_live_sessions(totp_app, new_browser, clock):
    secret = new_browser().enrol()  # this browser goes idle past the 30-minute limit
    clock.advance(31 * 60)
    browser = signed_in_with_code(new_browser, secret)
    page = browser.page("/account/security")
    sessions_table = page.split('id="sessions"')[1].split('id="password"')[0]
    assert sessions_table.count("<tr>") == 2  # the header and this session
    assert "(this session)" in sessions_table


# --- New recovery codes from the Account security page


def test_sc21_new_recovery_codes_need_the_password_and_a_current_code(totp_app, new_browser):
    browser = new_browser()
    secret = browser.enrol()
    old_codes = browser.recovery_codes
    before = recovery_hashes(totp_app, "alice")
    page = browser.page("/account/security")
    assert 'href="/account/recovery-codes"' in page

    refused = [
        ("wrong password", {"password": "not my password", "code": "fresh"}, "password is not"),
        ("no code", {"password": PASSWORD}, "Enter the current code from your authenticator"),
        ("wrong code", {"password": PASSWORD, "code": "wrong"}, "That code is not right"),
        ("recovery code as code", {"password": PASSWORD, "code": old_codes[0]}, "not right"),
        (
            "recovery code instead of a code",
            {"password": PASSWORD, "recovery_code": old_codes[1]},
            "Enter the current code from your authenticator",
        ),
    ]
    for what, data, message in refused:
        if data.get("code") == "fresh":
            data["code"] = fresh_code(browser, secret)
        elif data.get("code") == "wrong":
            data["code"] = wrong_code(secret, browser.clock)
        response = regenerate(browser, **data)
        assert response.status_code == 200, what
        assert message in text(response), what
        assert recovery_hashes(totp_app, "alice") == before, what
        assert codes_left(totp_app, "alice") == 10, what
        assert browser.get("/mfa/recovery-codes").status_code == 302, what  # nothing to show
    assert signed_in_as(browser, "alice")


def test_sc21_new_recovery_codes_refuse_a_replayed_code(totp_app, new_browser):
    secret = new_browser().enrol()
    browser = pending_verify(new_browser)
    code = fresh_code(browser, secret)
    assert location(browser.post("/mfa/verify", {"code": code})) == "/"
    before = recovery_hashes(totp_app, "alice")

    response = regenerate(browser, PASSWORD, code)  # the code just used to sign in
    assert response.status_code == 200
    assert "That code is not right, or it was already used." in text(response)
    assert recovery_hashes(totp_app, "alice") == before
    assert ("reauth", "failed", "alice", "alice", "code") in audit_rows(totp_app, "reauth")


def test_new_recovery_codes_void_the_old_set_and_are_shown_once(totp_app, new_browser):
    browser = new_browser()
    secret = browser.enrol()
    old_codes = browser.recovery_codes

    response = regenerate(browser, PASSWORD, fresh_code(browser, secret))
    assert location(response) == "/mfa/recovery-codes"
    page = text(browser.get("/mfa/recovery-codes"))
    assert "New recovery codes were made. The old ones no longer work." in page
    new_codes = RECOVERY_CODE_RE.findall(page)
    assert len(set(new_codes)) == 10 and not set(new_codes) & set(old_codes)
    download = browser.get("/mfa/recovery-codes.txt").get_data(as_text=True)
    assert all(code in download for code in new_codes)

    response = browser.post("/mfa/recovery-codes")
    assert location(response) == "/account/security"
    assert location(browser.get("/mfa/recovery-codes")) == "/account/security"
    security = browser.page("/account/security")
    assert "10 of 10 recovery codes left." in security
    assert not any(code in security for code in new_codes)
    with totp_app.app_context():
        assert RecoveryCode.select().count() == 10  # the old rows are gone, not kept aside
    assert ("recovery_codes_generated", "ok", "alice", "alice") in {
        r[:4] for r in audit_rows(totp_app)
    }

    # At sign-in: an old code is refused, a new one works.
    attempt = pending_verify(new_browser)
    assert location(use_recovery_code(attempt, old_codes[0])) == "/mfa/recovery"
    assert not signed_in_as(attempt, "alice")
    assert location(use_recovery_code(attempt, new_codes[0])) == "/"
    assert signed_in_as(attempt, "alice")


# --- A new authenticator app (SC-21)


def test_sc21_new_authenticator_needs_the_password_and_a_code_or_recovery_code(
    totp_app, new_browser
):
    browser = new_browser()
    secret = browser.enrol()
    codes = browser.recovery_codes
    replayed = browser.code(secret)  # the set-up code, this very step

    refused = [
        ("wrong password", {"password": "not it at all", "code": "fresh"}, "password is not"),
        ("nothing", {"password": PASSWORD}, "or a recovery code"),
        ("wrong code", {"password": PASSWORD, "code": "wrong"}, "That code is not right"),
        ("replayed code", {"password": PASSWORD, "code": replayed}, "That code is not right"),
        (
            "unknown recovery code",
            {"password": PASSWORD, "recovery_code": UNKNOWN_RECOVERY_CODE},
            "That recovery code is not right",
        ),
        (
            "recovery code, wrong password",
            {"password": "not it at all", "recovery_code": codes[1]},
            "password is not",
        ),
    ]
    for what, data, message in refused:
        if data.get("code") == "fresh":
            data["code"] = fresh_code(browser, secret)
        elif data.get("code") == "wrong":
            data["code"] = wrong_code(secret, browser.clock)
        response = confirm_for_new_authenticator(browser, **data)
        assert response.status_code == 200, what
        assert message in text(response), what
        step_two = browser.get("/account/authenticator/new")
        assert location(step_two) == "/account/authenticator", what
        assert credential_secret(totp_app, "alice") == secret, what
    assert codes_left(totp_app, "alice") == 10

    # The password and a current code: on to step two.
    response = confirm_for_new_authenticator(browser, PASSWORD, fresh_code(browser, secret))
    assert location(response) == "/account/authenticator/new"

    # Or the password and a recovery code (the old app is lost): spent once.
    other = signed_in_with_code(new_browser, secret)
    response = confirm_for_new_authenticator(other, PASSWORD, recovery_code=codes[1])
    assert location(response) == "/account/authenticator/new"
    assert codes_left(totp_app, "alice") == 9
    assert credential_secret(totp_app, "alice") == secret  # nothing replaced yet


def test_sc21_new_authenticator_replaces_the_old_ends_other_sessions_and_tells_the_user(
    totp_app, new_browser
):
    browser = new_browser()
    old_secret = browser.enrol()
    other = signed_in_with_code(new_browser, old_secret)
    response = confirm_for_new_authenticator(browser, PASSWORD, fresh_code(browser, old_secret))
    assert location(response) == "/account/authenticator/new"

    page = browser.page("/account/authenticator/new")
    assert 'id="totp-qr"' in page and "<svg" in page
    new_secret = new_authenticator_secret(browser)
    assert new_secret != old_secret and len(new_secret) >= 32
    assert new_authenticator_secret(browser) == new_secret  # reload: the same secret

    # A code of the old app does not confirm the new one.
    response = browser.post(
        "/account/authenticator/new", {"code": fresh_code(browser, old_secret)}
    )
    assert location(response) == "/account/authenticator/new"
    assert "That code is not right" in text(browser.get("/account/authenticator/new"))
    assert credential_secret(totp_app, "alice") == old_secret
    assert signed_in_as(other, "alice")

    response = browser.post("/account/authenticator/new", {"code": browser.code(new_secret)})
    assert location(response) == "/account/security"
    page = text(browser.get("/account/security"))
    assert "Your new authenticator app is set up; the old one no longer works." in page
    assert credential_secret(totp_app, "alice") == new_secret
    assert signed_in_as(browser, "alice")
    assert not signed_in_as(other, "alice")
    assert len(sessions_of(totp_app, "alice")) == 1
    assert ("totp_reenrolled", "ok", "alice") in {r[:3] for r in audit_rows(totp_app)}

    # At sign-in the old app's code fails, the new app's works.
    attempt = pending_verify(new_browser)
    response = attempt.post("/mfa/verify", {"code": fresh_code(attempt, old_secret)})
    assert location(response) == "/mfa/verify"
    assert not signed_in_as(attempt, "alice")
    assert location(attempt.post("/mfa/verify", {"code": attempt.code(new_secret)})) == "/"


def test_sc44_new_authenticator_hints_at_drift_only_on_a_second_code(totp_app, new_browser):
    browser = new_browser()
    old_secret = browser.enrol()
    confirm_for_new_authenticator(browser, PASSWORD, fresh_code(browser, old_secret))
    new_secret = new_authenticator_secret(browser)
    browser.post("/account/authenticator/new", {"code": browser.code(new_secret, 6)})
    page = text(browser.get("/account/authenticator/new"))
    assert MESSAGES["wrong_code"] in page and "This code was valid" not in page
    response = browser.post(
        "/account/authenticator/new", {"code": fresh_code(browser, new_secret, 6)}
    )
    assert location(response) == "/account/authenticator/new"
    page = text(browser.get("/account/authenticator/new"))
    assert "This code will only be valid in about 3 minutes." in page
    assert credential_secret(totp_app, "alice") == old_secret


def test_new_authenticator_setup_expires_after_the_setup_timeout(totp_app, new_browser):
    browser = new_browser()
    old_secret = browser.enrol()
    confirm_for_new_authenticator(browser, PASSWORD, fresh_code(browser, old_secret))
    new_secret = new_authenticator_secret(browser)

    browser.clock.advance(totp_app.config["MFA_SETUP_TIMEOUT"] + 1)
    response = browser.post("/account/authenticator/new", {"code": browser.code(new_secret)})
    assert location(response) == "/account/authenticator"
    assert credential_secret(totp_app, "alice") == old_secret
    response = browser.get("/account/authenticator/new")
    assert location(response) == "/account/authenticator"
    assert "Start by confirming your password and a current code." in text(
        browser.get("/account/authenticator")
    )
    assert signed_in_as(browser, "alice")


# --- Changing the password (SC-21)


def test_sc21_change_password_needs_the_current_one_and_a_valid_new_one(totp_app, new_browser):
    browser = new_browser()
    browser.enrol()
    before = password_hash(totp_app, "alice")
    refused = [
        ("wrong current", ("not my password", NEW_PASSWORD, None), "That password is not right."),
        ("mismatch", (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!"), "The new passwords differ."),
        ("too short", (PASSWORD, "short", None), "8"),
        ("empty", (PASSWORD, "", None), "required"),
    ]
    for what, (current, new, confirm), message in refused:
        response = change_password(browser, current, new, confirm)
        assert response.status_code == 200, what
        page = text(response)
        errors = re.findall(r'class="message message-error"[^>]*>([^<]*)<', page)
        assert errors and message in errors[0], (what, errors)
        assert password_hash(totp_app, "alice") == before, what
    assert signed_in_as(browser, "alice")
    assert location(new_browser().login(password=PASSWORD)) == "/mfa/verify"


def test_sc21_change_password_ends_other_sessions_and_devices_and_tells_the_user(
    totp_app, new_browser
):
    set_remember_days(totp_app, 30)
    browser = new_browser()
    secret = browser.enrol()
    device = remembered_browser(new_browser, secret)
    other = signed_in_with_code(new_browser, secret)
    pending = pending_verify(new_browser)

    response = change_password(browser, PASSWORD, NEW_PASSWORD)
    assert location(response) == "/account/security"
    page = text(browser.get("/account/security"))
    assert (
        "Your password was changed. 2 other sessions were signed out "
        "and remembered devices were forgotten." in page
    )
    assert signed_in_as(browser, "alice")
    assert not signed_in_as(other, "alice")
    pending.post("/mfa/verify", {"code": fresh_code(pending, secret)})
    assert not signed_in_as(pending, "alice")
    assert devices_of(totp_app, "alice") == []
    assert len(sessions_of(totp_app, "alice")) == 1
    assert ("password_changed", "ok", "alice") in {r[:3] for r in audit_rows(totp_app)}

    # The old password is refused, the new one works (and the device needs a code).
    assert MESSAGES["wrong_password_or_username"] in text(new_browser().login(password=PASSWORD))
    assert location(device.login(password=NEW_PASSWORD)) == "/mfa/verify"
    assert location(device.post("/mfa/verify", {"code": fresh_code(device, secret)})) == "/"
    assert signed_in_as(device, "alice")


# --- SC-21 changing one's own factor needs proof


def test_sc21_no_request_changes_ones_own_factor_without_password_and_code(
    totp_app, new_browser, clock
):
    """A signed-in user (or someone at their unlocked browser) sends every route every
    method with forged fields and no password: the credential stays as it is."""
    alice = new_browser()
    secret = alice.enrol()
    before = table_dump(totp_app, TotpCredential)
    forged = {
        "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "code": wrong_code(secret, clock),
        "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "action": "remove",
        "mfa_method": "disabled",
        "confirm": "yes",
    }
    sent = 0
    rules = sorted(totp_app.url_map.iter_rules(), key=lambda r: r.endpoint == "auth.logout")
    for rule in rules:
        url = ARGUMENT.sub(lambda m: PLACEHOLDERS[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            alice.get("/")  # a fresh CSRF token of alice's signed-in session
            alice.client.open(url, method=method, data={**forged, "csrf_token": alice.token})
            sent += 1
    assert sent >= 8
    assert table_dump(totp_app, TotpCredential) == before
    assert audit_events(totp_app, "totp_reset") == []
    assert len(audit_events(totp_app, "totp_enrolled")) == 1  # the enrolment above only
