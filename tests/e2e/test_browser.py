"""The product in a real browser: Debian's Chromium, driven by Playwright, against the
app served by gunicorn (a real process, on the real clock) from a temporary instance
folder on 127.0.0.1. Codes come from oathtool, the set-up QR code is read back from
Chromium screenshots by zbarimg, and axe-core checks every page in light and dark mode.

One server and one browser serve the whole module; each test opens fresh browser
contexts (cookie jars) and, to stay clear of TOTP replay protection, fresh users; no
flow needs more codes of one key than the window accepts at once, so none waits.
With SCREENSHOTS_DIR set (`make screenshots`) the main pages are also saved as PNGs.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect
from support.app import PASSWORD
from support.browser import (
    ACTION_TIMEOUT_MS,
    AXE_RUN_JS,
    CODE_LABEL,
    RECOVERY_FORMAT,
    SET_UP,
    UNLABELLED_FIELDS_JS,
    Account,
    Person,
)
from support.oath import tool
from support.paths import TRANSLATIONS

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.pagination import PER_PAGE
from standalone_mfa.oidc import clients

pytestmark = [pytest.mark.browser, pytest.mark.server]

MOBILE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
ISSUER = "Standalone MFA"  # the default MFA_ISSUER the server runs with
WRONG_PASSWORD = "The username or password is not right."
WRONG_CODE = "That code is not right"
WRONG_RECOVERY_CODE = "That recovery code is not right, or it was already used."
NEW_PASSWORD = "a new and longer passphrase"

# ---------------------------------------------------------------------------- flows


def test_first_sign_in_sets_up_then_signs_out_and_in_with_a_code(
    site, open_window, javascript, totp_on
):
    account = site.new_account()
    person = open_window(java_script_enabled=javascript)

    person.sign_in(account)
    person.expect_path("/mfa/setup")
    expect(person.page.get_by_role("heading", level=1)).to_have_text(
        "Set up Multi-Factor Authentication"
    )
    # The copy button is a script's nicety: shown only where the script runs.
    copy = person.page.get_by_role("button", name="Copy")
    if javascript:
        expect(copy).to_be_visible()
    else:
        expect(copy).to_be_hidden()
    person.set_up(account)  # "Your authenticator app is set up", on the codes page

    person.sign_out()
    person.goto("/")
    person.expect_path("/login")  # the old session is gone

    person.sign_in(account)
    person.expect_path("/mfa/verify")
    # Off by default: no "Remember this device" until an administrator allows it.
    expect(person.page.get_by_label(re.compile("Remember this device"))).to_have_count(0)
    person.enter_code(account.wrong_code())
    person.expect_path("/mfa/verify")
    person.expect_alert(WRONG_CODE)
    expect(person.page.get_by_label(CODE_LABEL)).to_be_focused()
    expect(person.page.get_by_label(CODE_LABEL)).to_have_value("")

    person.enter_code(account.fresh_code())
    person.expect_path("/")
    person.expect_signed_in(account)
    assert person.console_errors == []  # no CSP violation, no script error


def test_admin_switches_between_disabled_and_totp(site, open_window, javascript):
    site.set_mfa_method("disabled")
    try:
        admin = site.new_account(admin=True)
        user = site.new_account()
        person = open_window(java_script_enabled=javascript)

        person.sign_in(admin)  # Disabled: the password is enough
        person.expect_path("/")
        person.page.get_by_role("link", name="Administration").first.click()
        person.expect_path("/admin/")
        expect(person.page.get_by_role("heading", name="Users and Permissions")).to_be_visible()
        person.page.get_by_role("link", name="Multi-Factor Authentication").click()
        person.expect_path("/admin/mfa")
        method = person.page.get_by_label("Multi-Factor Authentication method")
        expect(method.locator("option")).to_have_text(["Disabled", "TOTP"])
        expect(method).to_have_value("disabled")

        # Saving needs a step-up first (the password: the admin has no authenticator yet).
        person.change_mfa_settings(admin, method="TOTP")
        # The admin's own password-only session ends with the change.
        person.expect_path("/login")
        person.expect_alert("now requires Multi-Factor Authentication")
        assert site.mfa_method() == "totp"

        person.sign_in(admin)
        person.set_up(admin)
        person.goto("/admin/mfa")
        expect(method).to_have_value("totp")
        person.change_mfa_settings(admin, method="Disabled")  # a step-up with a code now
        person.expect_path("/admin/mfa")
        expect(person.page.get_by_role("status")).to_have_text(
            "Multi-Factor Authentication is now set to Disabled."
        )
        expect(method).to_have_value("disabled")

        changes = [
            e.detail for e in site.audit_events("mfa_method_changed") if e.actor == admin.username
        ]
        assert changes == ["disabled -> totp", "totp -> disabled"]

        other = open_window(java_script_enabled=javascript)
        other.sign_in(user)  # Disabled again: no code asked
        other.expect_path("/")
        other.expect_signed_in(user)
        assert person.console_errors == other.console_errors == []
    finally:
        site.set_mfa_method("totp")


def test_admin_reset_by_api_then_cli_each_followed_by_set_up_again(
    site, open_window, javascript, totp_on
):
    account = site.new_account()
    person = open_window(java_script_enabled=javascript)
    person.sign_in(account)
    person.set_up(account)

    for reset_by in ("api", "cli"):
        old_secret = account.secret
        if reset_by == "api":
            response = site.api_reset(account)
            assert response.status_code == 204, response.text
        else:
            result = site.flask("mfa", "reset", account.username)
            assert result.returncode == 0, result.stderr
            assert f"Reset TOTP for '{account.username}'" in result.stdout

        person.page.reload()  # the reset ended the open session
        person.expect_path("/login")

        person.sign_in(account)
        person.expect_path("/mfa/setup")
        expect(person.page.get_by_role("status")).to_contain_text(
            "An administrator reset your two-factor authentication"
        )
        person.set_up(account)
        assert account.secret != old_secret, f"after the {reset_by} reset: the old key again"
    assert person.console_errors == []


def test_recovery_codes_download_then_sign_in_with_one_once(
    site, open_window, javascript, totp_on
):
    account = site.new_account()
    person = open_window(java_script_enabled=javascript)
    person.sign_in(account)
    codes = person.confirm_set_up(account)

    # "Download as text": a file with the ten codes, and the page stays put.
    with person.page.expect_download() as download_info:
        person.page.get_by_role("link", name="Download as text").click()
    download = download_info.value
    assert download.suggested_filename == "recovery-codes.txt"
    text = Path(download.path()).read_text()
    assert f"recovery codes for {account.username}" in text
    assert [line for line in text.splitlines() if RECOVERY_FORMAT.fullmatch(line)] == list(codes)
    person.expect_path("/mfa/recovery-codes")
    served = person.page.context.request.get("/mfa/recovery-codes.txt")
    assert served.headers["cache-control"] == "no-store", served.headers  # kept by no cache
    assert served.headers["content-type"].startswith("text/plain"), served.headers
    person.save_recovery_codes()
    person.expect_path("/")
    # Shown once: Back does not bring them back, nor does the file.
    person.page.go_back()
    person.expect_path("/account/security")
    expect(person.page.locator("#recovery-codes")).to_have_count(0)
    assert person.page.context.request.get("/mfa/recovery-codes.txt").url.endswith(
        "/account/security"
    )
    person.sign_out()

    # Any code, in any order; dashes and capitals do not matter.
    person.sign_in(account)
    person.use_recovery_code(codes[6].upper().replace("-", ""))
    person.expect_path("/")
    person.expect_signed_in(account)
    person.expect_status("Recovery code accepted. You have 9 recovery codes left.")
    person.sign_out()

    # The same code a second time: refused, and the field is there to try again.
    person.sign_in(account)
    person.use_recovery_code(codes[6])
    person.expect_path("/mfa/recovery")
    person.expect_alert(WRONG_RECOVERY_CODE)
    expect(person.page.get_by_label("Recovery code")).to_be_focused()
    site.spend_recovery_codes(account, codes[:2] + codes[3:6])  # as if used on other days
    person.page.get_by_label("Recovery code").fill(codes[2])
    person.page.get_by_role("button", name="Verify").click()
    person.expect_path("/")
    person.expect_status(  # three or fewer left: urged to make new ones
        "Recovery code accepted. You have 3 recovery codes left. "
        "Generate new codes on your Account security page soon."
    )
    person.open_account_security()
    expect(person.page.locator("#recovery-codes-left")).to_have_text(
        "3 of 10 recovery codes left."
    )
    person.expect_status("You are running out of recovery codes.")
    assert person.console_errors == []


def test_remembered_device_skips_the_code_until_forgotten(site, open_window, javascript, totp_on):
    admin = site.new_account(admin=True, enrolled=True)
    account = site.new_account(enrolled=True)
    person = open_window(java_script_enabled=javascript)
    try:
        person.sign_in_with_code(admin)
        person.goto("/admin/mfa")
        days = person.page.get_by_label("Remember devices for N days")
        expect(days).to_have_value("0")  # off until an administrator turns it on
        person.change_mfa_settings(admin, remember_days="7")
        person.expect_path("/admin/mfa")
        person.expect_status(
            "Multi-Factor Authentication is now set to TOTP. Devices are remembered for 7 days."
        )
        expect(days).to_have_value("7")
        assert site.remember_days() == 7
        person.sign_out()

        person.sign_in(account)
        person.expect_path("/mfa/verify")
        remember = person.page.get_by_label("Remember this device for 7 days")
        expect(remember).not_to_be_checked()
        expect(remember).to_have_accessible_description(
            re.compile(r"^Only use on a private device\.")
        )
        remember.check()
        person.enter_code(account.fresh_code())
        person.expect_path("/")
        person.expect_signed_in(account)
        cookie = next(c for c in person.page.context.cookies() if c["name"] == "smfa_device")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax", cookie
        assert cookie["expires"] > time.time() + 6.9 * 24 * 3600, cookie
        if javascript:  # the token lives in the HttpOnly cookie only
            stored = person.page.evaluate("JSON.stringify([localStorage, sessionStorage])")
            assert cookie["value"] not in stored
        person.sign_out()

        # The password only: straight home, no code asked.
        person.sign_in(account)
        person.expect_path("/")
        person.expect_signed_in(account)

        person.open_account_security()
        devices = person.page.locator("table", has_text="Remembered on")
        expect(devices.locator("tbody tr")).to_have_count(1)
        person.page.get_by_role("button", name="Forget all remembered devices").click()
        person.expect_path("/account/security")
        person.expect_status("Forgot 1 remembered device.")
        expect(person.page.locator("#devices + p")).to_have_text("No device is remembered.")
        person.sign_out()

        person.sign_in(account)  # the browser still sends its cookie: the server says no
        assert any(c["name"] == "smfa_device" for c in person.page.context.cookies())
        person.expect_path("/mfa/verify")
        assert person.console_errors == []
    finally:
        site.set_remember_days(0)


def test_account_security_signs_out_other_sessions_then_changes_the_password(
    site, open_window, javascript, totp_on
):
    account = site.new_account(enrolled=True)
    person = open_window(java_script_enabled=javascript)
    other = open_window(java_script_enabled=javascript)  # the same person's other browser
    person.sign_in_with_code(account)
    other.sign_in_with_code(account)

    person.open_account_security()
    sessions = person.page.locator("table", has_text="Last seen").locator("tbody tr")
    expect(sessions).to_have_count(2)
    expect(sessions.filter(has_text="(this session)")).to_have_count(1)
    person.page.get_by_role("button", name="Sign out other sessions").click()
    person.expect_path("/account/security")
    person.expect_status("Signed out 1 other session.")
    expect(sessions).to_have_count(1)
    other.page.reload()
    other.expect_path("/login")

    person.page.get_by_role("link", name="Change your password").click()
    person.expect_path("/account/password")
    person.page.get_by_label("Current password").fill(PASSWORD)
    person.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    person.page.get_by_label("New password again").fill(NEW_PASSWORD)
    person.page.get_by_role("button", name="Change password").click()
    person.expect_path("/account/security")
    person.expect_status("Your password was changed.")
    expect(person.page.locator("header")).to_contain_text(account.username)  # still in
    person.sign_out()

    person.sign_in(account)  # the old password
    person.expect_path("/login")
    person.expect_alert(WRONG_PASSWORD)
    person.sign_in(account, NEW_PASSWORD)
    person.expect_path("/mfa/verify")  # the new one, and still the code after it
    assert person.console_errors == other.console_errors == []


def test_account_security_new_recovery_codes_then_a_new_authenticator(
    site, open_window, javascript, totp_on
):
    account = site.new_account(enrolled=True)
    site.give_recovery_codes(account)
    first_codes = account.recovery_codes
    person = open_window(java_script_enabled=javascript)
    person.sign_in(account)  # with a recovery code: the two codes below never wait
    person.use_recovery_code(first_codes[0])
    person.expect_path("/")

    person.open_account_security()
    expect(person.page.locator("#recovery-codes-left")).to_have_text(
        "9 of 10 recovery codes left."
    )
    person.page.get_by_role("link", name="Generate new recovery codes").click()
    person.expect_path("/account/recovery-codes")
    person.confirm_identity(PASSWORD, code=account.fresh_code())
    new_codes = person.read_recovery_codes(account)
    person.expect_status("The old ones no longer work.")
    assert not set(new_codes) & set(first_codes)
    person.save_recovery_codes()
    person.expect_path("/account/security")
    expect(person.page.locator("#recovery-codes-left")).to_have_text(
        "10 of 10 recovery codes left."
    )

    person.page.get_by_role("link", name="Move to a new authenticator app").click()
    person.expect_path("/account/authenticator")
    if javascript:  # the current code
        person.confirm_identity(PASSWORD, code=account.fresh_code())
    else:  # or, the old phone gone, a recovery code
        person.confirm_identity(PASSWORD, recovery_code=new_codes[0])
    person.expect_path("/account/authenticator/new")
    old_secret = account.secret
    new_secret = person.read_secret(account)
    assert new_secret != old_secret
    expect(person.page.locator("#totp-qr").get_by_role("img")).to_have_accessible_name(
        re.compile("new authenticator app")
    )
    person.page.get_by_label(CODE_LABEL).fill(account.fresh_code())  # from the NEW key
    person.page.get_by_role("button", name="Confirm the new app").click()
    person.expect_path("/account/security")
    person.expect_status("Your new authenticator app is set up; the old one no longer works.")
    person.sign_out()

    person.sign_in(account)
    person.expect_path("/mfa/verify")
    person.enter_code(account.code_of(old_secret))  # the old app's current code
    person.expect_alert(WRONG_CODE)
    person.page.get_by_role("link", name="Use a recovery code instead").click()
    person.page.get_by_label("Recovery code").fill(first_codes[1])  # voided by the new set
    person.page.get_by_role("button", name="Verify").click()
    person.expect_alert(WRONG_RECOVERY_CODE)
    person.page.get_by_role("link", name="Use the code from your authenticator app").click()
    person.enter_code(account.fresh_code())
    person.expect_path("/")
    person.expect_signed_in(account)
    assert person.console_errors == []


def test_account_security_lists_only_live_sessions(site, open_window, totp_on):
    account = site.new_account(enrolled=True)
    person = open_window()
    person.sign_in_with_code(account)  # a browser left signed in...
    site.backdate_sessions(account, days=3)  # ...and unused since: that session is over
    person.page.context.clear_cookies()
    person.sign_in_with_code(account)
    person.open_account_security()
    sessions = person.page.locator("table", has_text="Last seen").locator("tbody tr")
    assert sessions.all_inner_texts() == [sessions.filter(has_text="(this session)").inner_text()]


def test_recovery_step_cancels_then_the_account_page_speaks_people_s_words(
    site, open_window, totp_on
):
    """ "Cancel and sign out" leaves the recovery-code step (a POST, with its token);
    the activity then reads "Signed in", "Code accepted", and this browser has a name."""
    account = site.new_account(enrolled=True)
    site.give_recovery_codes(account)
    person = open_window()
    person.sign_in(account)
    person.expect_path("/mfa/verify")
    person.page.get_by_role("link", name="Use a recovery code instead").click()
    person.expect_path("/mfa/recovery")
    person.page.get_by_role("button", name="Cancel and sign out").click()
    person.expect_path("/login")
    person.expect_status("You have signed out.")
    person.just_signed_out = True
    person.sign_in_with_code(account)
    person.open_account_security()
    activity = person.page.get_by_role("table", name="The last 20 sign-in events of this account")
    expect(activity.locator("tbody td:nth-child(2)")).to_have_text(
        ["Code accepted", "Signed in", "Signed out", "Signed in"]  # newest first
    )
    sessions = person.page.get_by_role("table", name="Your sessions")
    expect(sessions.locator("tbody td:nth-child(4)")).to_have_text(
        [re.compile(r"^(Headless )?Chrome \d+ on Linux$")]
    )
    expect(person.page.locator("main")).not_to_contain_text("Mozilla/5.0")
    assert person.console_errors == []


def test_expired_sign_in_says_so(site, open_window, totp_on):
    account = site.new_account(enrolled=True)
    person = open_window()
    person.sign_in(account)
    person.expect_path("/mfa/verify")
    site.backdate_pending_sign_in(account, 301)  # the code step lives 5 minutes
    person.enter_code(account.fresh_code())
    person.expect_path("/login")
    person.expect_alert("Your sign-in expired. Please sign in again.")


# ------------------------------------------------------------------- administration


STEPPED_UP = "Thank you. You can make administrative changes for the next 5 minutes."


def test_admin_steps_up_then_resets_one_user_and_unlocks_another(
    site, open_window, javascript, totp_on
):
    admin = site.new_account(admin=True, enrolled=True)
    lost_phone = site.new_account(enrolled=True)
    guesser = site.new_account(enrolled=True)
    user = open_window(java_script_enabled=javascript)
    user.sign_in_with_code(lost_phone)
    person = open_window(java_script_enabled=javascript)
    person.sign_in_with_code(admin)

    person.page.locator("header").get_by_role("link", name="Administration").click()
    person.page.get_by_role("link", name="Users", exact=True).click()
    person.expect_path("/admin/users")
    person.search_users(lost_phone.username)
    expect(person.user_row(lost_phone)).to_contain_text("Set up")
    person.act_on_user("Reset MFA", lost_phone)
    # Not yet: first the administrator proves again who they are.
    person.step_up(admin)
    person.expect_path(f"/admin/users/{lost_phone.username}/reset-mfa")
    person.expect_status(STEPPED_UP)
    expect(person.page.get_by_role("heading", level=1)).to_have_text(
        f"Reset two-factor authentication: {lost_phone.username}"
    )
    person.page.get_by_role("button", name="Reset two-factor authentication").click()
    person.expect_path("/admin/users")
    person.expect_status(
        f"Two-factor authentication of {lost_phone.username} was reset; their sessions ended."
    )
    expect(person.user_row(lost_phone)).to_contain_text("Not set up")

    user.page.reload()  # the reset ended their session
    user.expect_path("/login")
    user.sign_in(lost_phone)
    user.expect_path("/mfa/setup")
    user.expect_status("An administrator reset your two-factor authentication")

    # Another user guessed codes until each try has to wait (16 s after the 9th).
    site.throttle_codes(guesser, failures=DEFAULTS["MFA_BACKOFF_AFTER"] + 4)
    user.page.context.clear_cookies()
    user.sign_in(guesser)
    user.expect_path("/mfa/verify")
    user.enter_code(guesser.fresh_code())
    user.expect_alert("Too many wrong codes. Wait")
    person.search_users(guesser.username)
    expect(person.user_row(guesser)).to_contain_text("Throttled (9 wrong codes)")
    person.act_on_user("Unlock", guesser)
    # The step-up still counts: straight to the confirmation.
    person.expect_path(f"/admin/users/{guesser.username}/unlock")
    person.page.get_by_role("button", name="Unlock").click()
    person.expect_path("/admin/users")
    person.expect_status(f"{guesser.username} was unlocked and can enter a code again.")
    expect(person.user_row(guesser).locator("td").nth(6)).to_have_text("OK")  # the Codes column
    user.enter_code(guesser.fresh_code())  # at once, no wait
    user.expect_path("/")
    user.expect_signed_in(guesser)

    # The proof lasts ADMIN_STEP_UP_SECONDS (300), then the next action asks again.
    site.backdate_step_up(admin, 301)
    person.act_on_user("Sign out everywhere", guesser)
    person.expect_path("/admin/step-up")

    person.goto(f"/admin/audit?user={lost_phone.username}&event=totp_reset")
    expect(person.page.locator("main tbody tr")).to_have_count(1)
    expect(person.page.locator("main tbody tr td").nth(3)).to_have_text(admin.username)
    assert person.console_errors == user.console_errors == []


def test_admin_creates_a_user_makes_them_admin_then_revokes_and_reads_the_audit_log(
    site, open_window, javascript, totp_on
):
    admin = site.new_account(admin=True, enrolled=True)
    person = open_window(java_script_enabled=javascript)
    person.sign_in_with_code(admin)
    person.goto("/admin/users")
    person.page.get_by_role("link", name="Create a user").click()
    person.step_up(admin)
    person.expect_path("/admin/users/new")

    newcomer = Account(site.new_name())
    person.page.get_by_label("Username").fill(newcomer.username)
    person.page.get_by_role("button", name="Create user").click()  # no password: generated
    expect(person.page.get_by_role("heading", level=1)).to_have_text(
        f"User {newcomer.username} created"
    )
    person.expect_status(f"User {newcomer.username} was created.")
    password = person.page.locator("#initial-password").inner_text()
    assert len(password) >= 12, password
    site.secrets_seen.append(password)  # never in the server log (test_sc22)
    person.page.get_by_role("link", name="Back to Users").click()
    person.expect_path("/admin/users")
    expect(person.page.locator("main")).not_to_contain_text(password)  # shown once

    other = open_window(java_script_enabled=javascript)
    other.sign_in(newcomer, password)
    other.set_up(newcomer)  # TOTP is on: their first sign-in sets up the app

    expect(person.user_row(newcomer)).to_have_count(1)
    person.act_on_user("Make administrator", newcomer)  # the step-up still counts
    person.expect_path(f"/admin/users/{newcomer.username}/grant-admin")
    person.page.get_by_role("button", name="Make administrator").click()
    person.expect_status(f"{newcomer.username} is now an administrator.")
    expect(person.user_row(newcomer).locator("td").first).to_have_text("Yes")
    other.goto("/admin/")
    expect(other.page.get_by_role("heading", name="Administration", level=1)).to_be_visible()

    person.act_on_user("Revoke administrator", newcomer)
    person.expect_path(f"/admin/users/{newcomer.username}/revoke-admin")
    person.page.get_by_role("button", name="Revoke administrator").click()
    person.expect_status(f"{newcomer.username} is no longer an administrator.")
    expect(person.user_row(newcomer).locator("td").first).to_have_text("No")
    assert not site.is_admin(newcomer)
    other.page.reload()
    other.expect_alert("permission")

    with site.sole_admin(admin):  # the last administrator cannot revoke themselves
        person.search_users(admin.username)
        person.act_on_user("Revoke administrator", admin)
        person.page.get_by_role("button", name="Revoke administrator").click()
        person.expect_path("/admin/users")
        person.expect_alert(f"{admin.username} is the last administrator and cannot be revoked.")
        expect(person.user_row(admin).locator("td").first).to_have_text("Yes")
        assert site.is_admin(admin)

    person.page.get_by_role("navigation", name="Administration pages").get_by_role(
        "link", name="Audit log"
    ).click()
    person.expect_path("/admin/audit")
    # Each row says what happened in words, the recorded event and outcome beside them.
    events = person.page.locator("main tbody tr td:nth-child(2) .event-code")
    person.filter_audit(user=newcomer.username)
    expect(events.first).to_have_text("admin_revoked · ok")  # newest first
    expect(events.last).to_have_text("user_created · ok")
    assert {"user_created · ok", "login · ok", "totp_enrolled · ok", "admin_granted · ok"} <= set(
        events.all_inner_texts()
    )
    person.filter_audit(event="admin_revoked")  # and still that user
    expect(events).to_have_text(["admin_revoked · ok"])
    row = person.page.locator("main tbody tr")
    expect(row.locator("td").nth(1)).to_contain_text("Administrator rights revoked")
    expect(row.locator("td").nth(3)).to_have_text(admin.username)
    # The administrator's: what they did, and (newest) the refused revocation of the last one.
    person.filter_audit(user=admin.username)
    expect(events).to_have_text(["admin_revoked · refused", "admin_revoked · ok"])
    expect(row.first.locator("td").nth(1)).to_contain_text("last administrator kept")
    expect(row.first.locator("td").nth(2)).to_have_text(admin.username)
    expect(row.first.locator("td").nth(5)).to_have_text("last administrator")
    expect(row.last.locator("td").nth(2)).to_have_text(newcomer.username)
    expect(person.page.get_by_label("Event type")).to_have_value("admin_revoked")
    assert person.console_errors == []
    assert [e for e in other.console_errors if "status of 403" not in e] == []  # the 403 page


def test_users_and_audit_log_page_through_keeping_the_filter(site, open_window, totp_on):
    site.add_users("paged", PER_PAGE + 1)
    admin = site.new_account(admin=True, enrolled=True)
    person = open_window()
    person.sign_in_with_code(admin)
    rows = person.page.locator("main tbody tr")
    pages = person.page.get_by_role("navigation", name="Pages", exact=True)
    for path, caption in (
        ("/admin/users?q=paged", f"{PER_PAGE + 1} users matching “paged”"),
        ("/admin/audit?user=browser-tests&event=user_created", f"{PER_PAGE + 1} events"),
    ):
        person.goto(path)
        expect(person.page.locator("main table caption")).to_contain_text(caption)
        expect(rows).to_have_count(PER_PAGE)
        expect(pages).to_contain_text("Page 1 of 2")
        expect(pages.get_by_role("link", name="Previous page")).to_have_count(0)
        pages.get_by_role("link", name="Next page").click()
        expect(pages).to_contain_text("Page 2 of 2")
        expect(rows).to_have_count(1)
        expect(person.page.locator("main table caption")).to_contain_text(caption)
        pages.get_by_role("link", name="Previous page").click()
        expect(rows).to_have_count(PER_PAGE)
    # Newest first: the last one created heads page 1.
    expect(rows.first.locator("td").nth(2)).to_have_text("paged.051")


# ------------------------------------------------------------ the QR code, by camera


def zbar_decode(png: Path) -> list[str]:
    """Every QR code zbarimg finds in the image, one text each."""
    result = subprocess.run(
        [tool("zbarimg"), "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(png)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode in (0, 4), f"zbarimg failed: {result.stderr!r}"  # 4: none found
    return result.stdout.decode("utf-8").splitlines()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("window", ["desktop", "mobile-360"])
def test_qr_screenshot_decodes_to_the_otpauth_uri(
    site, open_window, tmp_path, window, scheme, totp_on
):
    account = site.new_account()
    person = open_window(color_scheme=scheme, **(MOBILE if window != "desktop" else {}))
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    secret = person.read_secret(account)
    qr = person.page.locator("#totp-qr svg")
    expect(qr).to_be_visible()

    png = tmp_path / "qr.png"
    if window == "desktop":
        qr.screenshot(path=str(png))  # the element alone
    else:
        # What a phone shows: the QR code fits beside nothing and nothing scrolls sideways.
        box = qr.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, box
        scroll_width = person.page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= 360, f"the page scrolls sideways: {scroll_width}px"
        person.page.screenshot(path=str(png), full_page=True)  # the whole page
        person.screenshot(f"setup-mobile-{scheme}")

    issuer = ISSUER.replace(" ", "%20")
    assert zbar_decode(png) == [
        f"otpauth://totp/{issuer}:{account.username}?secret={secret}&issuer={issuer}"
    ]


# ---------------------------------------------------------------------- keyboard only


def test_keyboard_only_sign_in_with_a_wrong_then_right_code(site, open_window, totp_on):
    account = site.new_account(enrolled=True)
    person = open_window()
    keyboard = person.page.keyboard
    person.goto("/login")

    expect(person.page.get_by_label("Username")).to_be_focused()
    keyboard.type(account.username)
    keyboard.press("Tab")
    expect(person.page.get_by_label("Password")).to_be_focused()
    keyboard.type(PASSWORD)
    keyboard.press("Enter")

    person.expect_path("/mfa/verify")
    code_field = person.page.get_by_label(CODE_LABEL)
    expect(code_field).to_be_focused()
    keyboard.type(account.wrong_code())
    keyboard.press("Enter")
    person.expect_alert(WRONG_CODE)
    expect(code_field).to_be_focused()
    keyboard.type(account.fresh_code())
    keyboard.press("Enter")
    person.expect_path("/")
    person.expect_signed_in(account)

    # Sign out from the keyboard too: Tab reaches the button, Enter presses it.
    sign_out = person.page.locator("header").get_by_role("button", name="Sign out")
    for _ in range(10):
        keyboard.press("Tab")
        if sign_out.evaluate("button => document.activeElement === button"):
            break
    expect(sign_out).to_be_focused()
    keyboard.press("Enter")
    person.expect_path("/login")


def test_setup_page_focuses_the_code_and_describes_the_qr_code(site, open_window, totp_on):
    account = site.new_account()
    person = open_window()
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    expect(person.page.get_by_label(CODE_LABEL)).to_be_focused()
    # The QR code is one image with a name that says what it is and what else to do.
    qr_image = person.page.locator("#totp-qr").get_by_role("img")
    expect(qr_image).to_have_count(1)
    expect(qr_image).to_have_accessible_name(re.compile(r"QR code .*secret key", re.S))


# ------------------------------------------------------- every page: axe, labels, PNGs


def _signed_in(person: Person, *, admin: bool = False, at: str = "/") -> Account:
    """Signed in with a code, at `at`. The catalogue signs in once per kind of user and
    then puts that session's cookies back for each page (a sign-in per page cost more
    than the page); if the session is gone, it signs in afresh."""
    saved = person.saved_sessions.get(admin)
    if saved:
        account, cookies = saved
        person.page.context.add_cookies(cookies)
        person.goto(at)
        if not person.page.url.startswith(person.site.url + "/login"):
            return account
        person.page.context.clear_cookies()
    account = person.site.new_account(admin=admin, enrolled=True)
    person.sign_in_with_code(account)
    person.saved_sessions[admin] = (account, person.page.context.cookies())
    if at != "/":
        person.goto(at)
    return account


def _at_setup(person: Person) -> Account:
    account = person.site.new_account()
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    return account


def _at_verify(person: Person) -> Account:
    account = person.site.new_account(enrolled=True)
    person.sign_in(account)
    person.expect_path("/mfa/verify")
    return account


def _setup_after_reset(person: Person) -> None:
    account = person.site.new_account(enrolled=True)
    person.site.reset_in_process(account)
    person.sign_in(account)


def _expired(person: Person) -> None:
    account = _at_verify(person)
    person.site.backdate_pending_sign_in(account, 301)
    person.page.reload()


def _setup_error(person: Person) -> None:
    account = _at_setup(person)
    person.read_secret(account)
    person.enter_code(account.wrong_code())


def _verify_error(person: Person) -> None:
    _at_verify(person)
    person.enter_code("12345")  # malformed: the same message as a wrong code


def _signed_in_at(path: str, *, admin: bool = False) -> Callable[[Person], None]:
    def reach(person: Person) -> None:
        _signed_in(person, admin=admin, at=path)

    return reach


def _signed_out(person: Person) -> None:
    person.sign_in_with_code(person.site.new_account(enrolled=True))  # its own session
    person.sign_out()


def _admin_mfa_saved(person: Person) -> None:
    account = _signed_in(person, admin=True, at="/admin/mfa")
    person.change_mfa_settings(account)


def _at_recovery_codes(person: Person) -> None:
    account = _at_setup(person)
    person.read_secret(account)
    person.enter_code(account.fresh_code())
    person.read_recovery_codes(account)
    # Each code on one line: a code broken across two is easily copied wrong.
    lines = person.page.locator("#recovery-codes code").evaluate_all(
        "codes => codes.map(c => c.getClientRects().length)"
    )
    assert lines == [1] * 10, f"recovery codes broken across lines: {lines}"


def _at_recovery(person: Person) -> None:
    _at_verify(person)
    person.page.get_by_role("link", name="Use a recovery code instead").click()


def _recovery_error(person: Person) -> None:
    _at_recovery(person)
    person.page.get_by_label("Recovery code").fill("abcd-efgh-ijkl-mnop")
    person.page.get_by_role("button", name="Verify").click()


def _at_verify_with_remember(person: Person) -> None:
    person.site.set_remember_days(7)
    _at_verify(person)
    expect(person.page.get_by_label("Remember this device for 7 days")).to_be_visible()


def _account_security_in_use(person: Person) -> None:
    """Every table filled: a remembered device, two sessions, sign-in events."""
    person.site.set_remember_days(7)
    account = person.site.new_account(enrolled=True)
    person.site.give_recovery_codes(account)
    person.sign_in(account)
    person.page.get_by_label("Remember this device for 7 days").check()
    person.enter_code(account.fresh_code())
    person.expect_path("/")
    person.page.context.clear_cookies(name="smfa_session")  # another browser, same device
    person.sign_in(account)
    person.expect_path("/")  # remembered: no code
    person.goto("/account/security")
    expect(person.page.locator("main tbody tr")).not_to_have_count(0)
    expect(person.page.get_by_role("button", name="Forget all remembered devices")).to_be_visible()
    expect(person.page.get_by_role("button", name="Sign out other sessions")).to_be_visible()


def _account_security_codes_low(person: Person) -> None:
    """Three recovery codes left: the warning, in both colour schemes."""
    account = person.site.new_account(enrolled=True)
    person.site.give_recovery_codes(account)
    person.site.spend_recovery_codes(account, account.recovery_codes[:7])
    person.sign_in_with_code(account)
    person.goto("/account/security")


def _password_error(person: Person) -> None:
    _signed_in_at("/account/password")(person)
    person.page.get_by_label("Current password").fill("not the password")
    person.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    person.page.get_by_label("New password again").fill(NEW_PASSWORD)
    person.page.get_by_role("button", name="Change password").click()


def _confirm_error(person: Person) -> None:
    account = _signed_in(person, at="/account/recovery-codes")
    person.confirm_identity(PASSWORD, code=account.wrong_code())


def _at_new_authenticator(person: Person) -> None:
    account = _signed_in(person, at="/account/authenticator")
    person.confirm_identity(PASSWORD, code=account.fresh_code())


def _make_app_password(person: Person, name: str, password: str = PASSWORD) -> None:
    """On /account/app-passwords, signed in with a code: fill in the form and send it."""
    account = _signed_in(person, at="/account/app-passwords")
    person.page.get_by_label("Name (which app or device will use it)").fill(name)
    person.page.get_by_label("Your password").fill(password)
    person.page.get_by_label(CODE_LABEL).fill(account.fresh_code())
    person.page.get_by_role("button", name="Make the app password").click()


def _app_password_made(person: Person) -> None:
    """The secret, shown once, with its copy button (the script shows it)."""
    _make_app_password(person, f"Phone calendar {secrets.token_hex(3)}")
    expect(person.page.locator("#app-password")).to_have_text(re.compile(r"^[a-z2-7-]{39}$"))
    expect(person.page.get_by_role("button", name="Copy")).to_be_visible()


def _app_passwords_listed(person: Person) -> None:
    """The list, with at least one app password in it (and its Revoke button)."""
    _app_password_made(person)
    person.page.get_by_role("link", name="Done").click()
    expect(person.page.locator("#app-passwords tbody tr")).not_to_have_count(0)


def _admin_mfa_error(person: Person) -> None:
    account = _signed_in(person, admin=True, at="/admin/mfa")
    person.change_mfa_settings(account, remember_days="99")


def _stepped_up(person: Person, at: str) -> Account:
    """An administrator at `at`, past the step-up page if their proof is not fresh."""
    account = _signed_in(person, admin=True, at=at)
    if person.page.url.startswith(person.site.url + "/admin/step-up"):
        person.step_up(account)
    return account


def _admin_users(person: Person) -> None:
    """Users, with a throttled user at the top (named to sort first in the screenshot)."""
    if not person.site.has_user("aaron"):
        person.site.throttle_codes(person.site.new_account(enrolled=True, name="aaron"), 9)
    _signed_in(person, admin=True, at="/admin/users")
    expect(person.page.locator("main tbody")).to_contain_text("Throttled (9 wrong codes)")


def _step_up_error(person: Person) -> None:
    admin = _signed_in(person, admin=True, at="/admin/step-up")
    person.page.get_by_label(CODE_LABEL).fill(admin.wrong_code())
    person.page.get_by_role("button", name="Confirm").click()


def _user_action(person: Person) -> None:
    """The confirmation page (one template for every action) of a throttled user."""
    if not person.site.has_user("zoe"):
        person.site.throttle_codes(person.site.new_account(enrolled=True, name="zoe"), 9)
    _stepped_up(person, "/admin/users/zoe/reset-mfa")


def _new_user_error(person: Person) -> None:
    _stepped_up(person, "/admin/users/new")
    person.page.get_by_role("button", name="Create user").click()  # no username


def _new_user_created(person: Person) -> None:
    _stepped_up(person, "/admin/users/new")
    person.page.get_by_label("Username").fill(person.site.new_name())
    person.page.get_by_role("button", name="Create user").click()
    expect(person.page.locator("#initial-password")).to_be_visible()
    person.site.secrets_seen.append(person.page.locator("#initial-password").inner_text())


def _user_groups(person: Person, group: str = "staff") -> None:
    """An administrator adds a user to a group on its page (stepping up when asked)."""
    if not person.site.has_user("yann"):
        person.site.new_account(name="yann")
    admin = _signed_in(person, admin=True, at="/admin/users/yann/groups")
    for _ in range(2):  # the second time, after the step-up it asked for
        person.page.get_by_label("Group name").fill(group)
        person.page.get_by_role("button", name="Add to group").click()
        if not person.page.url.startswith(person.site.url + "/admin/step-up"):
            return
        person.step_up(admin)


def _audit_filtered(person: Person) -> None:
    admin = _signed_in(person, admin=True, at="/admin/audit")
    person.filter_audit(user=admin.username, event="login")
    expect(person.page.locator("main tbody tr")).not_to_have_count(0)


def _audit_error(person: Person) -> None:
    _signed_in(person, admin=True, at="/admin/audit")
    person.page.get_by_label("From (UTC)").fill("2026-01-02")
    person.page.get_by_label("To (UTC)").fill("2026-01-01")
    person.page.get_by_role("button", name="Filter").click()


def _with_applications(person: Person) -> None:
    """Three registered OpenID clients (made once, in-process): two for everyone, one
    for the group `data` only."""
    with person.site.app.app_context():
        for name, uri, subjects in (
            ("Grafana", "https://grafana.example.com/login/generic_oauth", []),
            ("Nextcloud", "https://cloud.example.com/apps/user_oidc/code", []),
            ("JupyterHub", "https://hub.example.com/hub/oauth_callback", ["group:data"]),
        ):
            if clients.by_name(name) is None:
                clients.add(name, [uri], subjects=subjects, actor="test")


def _home_with_applications(person: Person) -> None:
    _with_applications(person)
    _signed_in(person)
    expect(person.page.get_by_role("link", name="Grafana")).to_be_visible()


def _applications(person: Person) -> None:
    _with_applications(person)
    _signed_in(person, admin=True, at="/admin/applications")
    expect(person.page.get_by_role("heading", name="JupyterHub")).to_be_visible()


def _add_application(person: Person, uri: str) -> None:
    _stepped_up(person, "/admin/applications/new")
    person.page.get_by_label("Name", exact=True).fill(f"Wiki {secrets.token_hex(2)}")
    person.page.get_by_label("Redirect URIs, one per line").fill(uri)
    person.page.get_by_label("Who may use it (optional)").fill("group:staff user:alice")
    person.page.get_by_role("button", name="Add the application").click()


def _application_added(person: Person) -> None:
    """The client ID and secret, shown once after the form."""
    _add_application(person, "https://wiki.example.com/oauth2/callback")
    secret = person.page.locator("#client-secret")
    expect(secret).to_have_text(re.compile(r"^[A-Za-z0-9_-]{43}$"))
    person.site.secrets_seen.append(secret.inner_text())


@dataclass(frozen=True)
class Visit:
    """How to reach one page in one state, what it must show, and whether the docs show it."""

    path: str
    reach: Callable[[Person], object]
    alert: str | None = None  # the error the page must announce
    status: str | None = None  # the (polite) message it must show
    screenshot: bool = False
    full_page: bool = True  # False: the screenshot shows what fits in the window


# Every page of the product in each state worth checking; a new page is one line here.
PAGES = {
    "login": Visit("/login", lambda p: p.goto("/login"), screenshot=True),
    "login-error": Visit(
        "/login", lambda p: p.sign_in(p.site.new_account(), "wrong"), alert=WRONG_PASSWORD
    ),
    "signed-out": Visit("/login", _signed_out, status="You have signed out."),
    "expired": Visit("/login", _expired, alert="Your sign-in expired."),
    "setup": Visit("/mfa/setup", _at_setup, screenshot=True),
    "setup-error": Visit("/mfa/setup", _setup_error, alert=WRONG_CODE),
    "setup-after-reset": Visit("/mfa/setup", _setup_after_reset, status="An administrator reset"),
    "verify": Visit("/mfa/verify", _at_verify),
    "verify-error": Visit("/mfa/verify", _verify_error, alert=WRONG_CODE, screenshot=True),
    "home": Visit("/", _home_with_applications, screenshot=True),
    "admin": Visit("/admin/", _signed_in_at("/admin/", admin=True)),
    "admin-mfa": Visit("/admin/mfa", _signed_in_at("/admin/mfa", admin=True), screenshot=True),
    "admin-mfa-saved": Visit("/admin/mfa", _admin_mfa_saved, status="is now set to TOTP"),
    "admin-mfa-error": Visit("/admin/mfa", _admin_mfa_error, alert="0 to 31 days"),
    "recovery-codes": Visit(
        "/mfa/recovery-codes", _at_recovery_codes, status=SET_UP, screenshot=True
    ),
    "recovery": Visit("/mfa/recovery", _at_recovery),
    "recovery-error": Visit("/mfa/recovery", _recovery_error, alert=WRONG_RECOVERY_CODE),
    "verify-remember": Visit("/mfa/verify", _at_verify_with_remember),
    "account-security": Visit("/account/security", _account_security_in_use, screenshot=True),
    "account-security-no-codes": Visit(  # set up before recovery codes existed
        "/account/security", _signed_in_at("/account/security"), status="no recovery codes yet"
    ),
    "account-security-codes-low": Visit(
        "/account/security", _account_security_codes_low, status="running out"
    ),
    "password": Visit("/account/password", _signed_in_at("/account/password")),
    "password-error": Visit("/account/password", _password_error, alert="password is not right"),
    "confirm-codes": Visit("/account/recovery-codes", _signed_in_at("/account/recovery-codes")),
    "confirm-authenticator": Visit(
        "/account/authenticator", _signed_in_at("/account/authenticator")
    ),
    "confirm-error": Visit("/account/recovery-codes", _confirm_error, alert=WRONG_CODE),
    "new-authenticator": Visit("/account/authenticator/new", _at_new_authenticator),
    "app-passwords": Visit("/account/app-passwords", _app_passwords_listed),
    "app-password-made": Visit("/account/app-passwords", _app_password_made),
    "app-passwords-error": Visit(
        "/account/app-passwords",
        lambda p: _make_app_password(p, "Laptop sync", "not the password"),
        alert="password is not right",
    ),
    "admin-users": Visit("/admin/users", _admin_users, screenshot=True, full_page=False),
    "admin-users-no-match": Visit(
        "/admin/users", _signed_in_at("/admin/users?q=nobody.here", admin=True)
    ),
    "step-up": Visit("/admin/step-up", _signed_in_at("/admin/step-up", admin=True)),
    "step-up-error": Visit("/admin/step-up", _step_up_error, alert=WRONG_CODE),
    "user-action": Visit("/admin/users/zoe/reset-mfa", _user_action),
    "user-new": Visit("/admin/users/new", lambda p: _stepped_up(p, "/admin/users/new")),
    "user-new-error": Visit("/admin/users/new", _new_user_error, alert="required"),
    "user-created": Visit("/admin/users/new", _new_user_created, status="was created"),
    "user-groups": Visit("/admin/users/yann/groups", _user_groups, status="is now in the group"),
    "user-groups-error": Visit(
        "/admin/users/yann/groups",
        lambda p: _user_groups(p, "staff,admins"),
        alert="A group name is 1-64 characters",
    ),
    "audit": Visit(
        "/admin/audit", _signed_in_at("/admin/audit", admin=True), screenshot=True, full_page=False
    ),
    "audit-filtered": Visit("/admin/audit", _audit_filtered),
    "audit-error": Visit("/admin/audit", _audit_error, alert="end date is before the start"),
    "applications": Visit("/admin/applications", _applications, screenshot=True),
    "application-new": Visit(
        "/admin/applications/new", lambda p: _stepped_up(p, "/admin/applications/new")
    ),
    "application-new-error": Visit(
        "/admin/applications/new",
        lambda p: _add_application(p, "http://wiki.example.com/cb#x"),
        alert="Some fields need a change",
    ),
    "application-added": Visit("/admin/applications/new", _application_added, screenshot=True),
    "error-403": Visit("/admin/", _signed_in_at("/admin/"), alert="permission"),
    "error-404": Visit("/no-such-page", lambda p: p.goto("/no-such-page"), alert="no page"),
}


@pytest.fixture(scope="module")
def catalogue_window(site, chromium):
    """One window for every page of the catalogue (a new page costs more than the
    check); its cookies are cleared before each page, so each visit starts signed out
    (pages for a signed-in user put back one saved session: see _signed_in).
    axe is injected as an inline script, which the site's CSP rightly forbids: this
    context bypasses the CSP (the flows above run with it)."""
    context = chromium.new_context(base_url=site.url, bypass_csp=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    yield Person(site, context.new_page())
    context.close()


@pytest.mark.parametrize("name", PAGES)
def test_page_is_accessible_in_light_and_dark(site, catalogue_window, axe_source, name, totp_on):
    visit = PAGES[name]
    person = catalogue_window
    person.page.context.clear_cookies()
    person.just_signed_out = False  # what the window shows belongs to the last visit
    person.page.emulate_media(color_scheme="light")
    try:
        visit.reach(person)
    finally:
        if site.remember_days():  # turned on to show a page: off again for the others
            site.set_remember_days(0)
    person.expect_path(visit.path)
    page = person.page
    page.wait_for_load_state()
    if visit.alert:
        person.expect_alert(visit.alert)
    if visit.status:
        person.expect_status(visit.status)
    assert page.evaluate(UNLABELLED_FIELDS_JS) == [], "form fields without a label"

    page.add_script_tag(content=axe_source)
    found, background = {}, {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        background[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        found[scheme] = page.evaluate(AXE_RUN_JS)
        if visit.screenshot:
            person.screenshot(f"{name}-{scheme}", full_page=visit.full_page)
    assert background["light"] != background["dark"], "the dark scheme did not apply"
    assert found == {"light": [], "dark": []}, json.dumps(found, indent=1)


# ----------------------------------------------------------------------- what leaks


def test_sc22_server_log_never_holds_a_secret_or_password(site, open_window, totp_on):
    """Whatever this module did (this test's own set-up included), gunicorn's output,
    audit lines included, holds no TOTP secret and no password."""
    account = site.new_account()
    person = open_window()
    person.sign_in(account)
    person.set_up(account)
    open_window().sign_in(site.new_account(), "not the password")

    log = site.log()
    assert '"event": "totp_enrolled"' in log, "no audit line reached the log: nothing checked"
    leaked = [s for s in site.secrets_seen if s in log]
    assert not leaked, f"{len(leaked)} TOTP secrets in the server log"
    assert PASSWORD not in log and "not the password" not in log


# --------------------------------------------------- every page in every language


LANGUAGES = ("fr", "de", "es")
PLACEHOLDER = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)[sd]|<[^>]+>")
PHONE_WIDTH = 360


def english_left_behind(locale: str) -> list[str]:
    """The English sentences a page in `locale` must not show: every catalogue entry
    the language translates differently, as its longest run of words between
    placeholders and tags (at least three words: a name like "TOTP" may stay)."""
    from babel.messages.pofile import read_po

    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalogue = read_po(handle, locale=locale)
    sentences = set()
    for message in catalogue:
        english = message.id if isinstance(message.id, str) else message.id[1]
        translated = message.string if isinstance(message.string, str) else message.string[-1]
        if not english or not translated or translated == english:
            continue
        longest = max(PLACEHOLDER.split(english), key=len).strip(" .,:;()")
        if longest.count(" ") >= 2 and longest not in translated:
            sentences.add(longest)
    return sorted(sentences, key=len, reverse=True)


@pytest.fixture(scope="module")
def english_sentences() -> dict[str, list[str]]:
    return {locale: english_left_behind(locale) for locale in LANGUAGES}


@pytest.mark.parametrize("name", PAGES)
def test_page_in_each_language_has_no_english_left_and_fits_a_phone(
    site, catalogue_window, axe_source, english_sentences, name, totp_on
):
    """Each page of the catalogue, reached as above, then shown again in French,
    German and Spanish (the `lang` cookie, as the picker sets it): `<html lang>` says
    which, no English sentence of the catalogue is left, axe finds nothing serious,
    and at 360 px nothing is wider than the screen (the longest German words)."""
    visit = PAGES[name]
    person = catalogue_window
    person.page.context.clear_cookies()
    person.just_signed_out = False
    person.page.emulate_media(color_scheme="light")
    person.page.set_viewport_size({"width": 1280, "height": 720})
    try:
        visit.reach(person)
    finally:
        if site.remember_days():
            site.set_remember_days(0)
    person.expect_path(visit.path)
    page = person.page
    url = page.url
    page.set_viewport_size({"width": PHONE_WIDTH, "height": 800})
    try:
        for locale in LANGUAGES:
            page.context.add_cookies([{"name": "lang", "value": locale, "url": site.url}])
            page.goto(url)
            page.wait_for_load_state()
            if not page.url.startswith(url.split("?")[0]):
                continue  # a page shown once (it moved on): its first visit was checked
            assert page.evaluate("document.documentElement.lang") == locale, name
            shown = page.evaluate("document.body.innerText")
            left = [s for s in english_sentences[locale] if s in shown]
            assert left == [], f"{name} in {locale}: English left: {left[:5]}"
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= PHONE_WIDTH, f"{name} in {locale} is {wide}px wide at 360px"
            if visit.screenshot and locale == "fr":  # the docs show French on a phone
                person.screenshot(f"{name}-fr-phone")
            page.add_script_tag(content=axe_source)
            found = page.evaluate(AXE_RUN_JS)
            assert found == [], json.dumps(found, indent=1)
    finally:
        page.set_viewport_size({"width": 1280, "height": 720})
        page.context.clear_cookies()
