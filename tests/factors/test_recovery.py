"""factors/recovery: the ten recovery codes shown once after set-up, stored hashed,
each signing in once in place of a code, and counted by the throttle (SC-13)."""

from __future__ import annotations

import hashlib
import re

from support.client import signed_in_as
from support.db import audit_rows, codes_left, database_dump, failures, table_dump
from support.oath import UNKNOWN_RECOVERY_CODE, spellings, wrong_code
from support.pages import RECOVERY_CODE_RE, location, text
from support.steps import pending_verify, use_recovery_code

from standalone_mfa.core.messages import MESSAGES
from standalone_mfa.core.models import RecoveryCode, User, WebSession
from standalone_mfa.factors import recovery, throttle

CODE_SHAPE = re.compile(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}")


# --- Recovery codes shown once after set-up


def test_setup_shows_ten_codes_once_and_holds_the_browser_until_saved(totp_app, browser):
    browser.login()
    secret = browser.setup_secret()
    response = browser.post("/mfa/setup", {"code": browser.code(secret)})
    assert location(response) == "/mfa/recovery-codes"

    page = text(browser.get("/mfa/recovery-codes"))
    codes = RECOVERY_CODE_RE.findall(page)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(CODE_SHAPE.fullmatch(code) for code in codes)
    assert "Your authenticator app is set up" in page
    assert "I have saved these codes" in page
    assert 'href="/mfa/recovery-codes.txt"' in page and "Download as text" in page
    # Reloading shows the same set, not a new one.
    assert RECOVERY_CODE_RE.findall(browser.page("/mfa/recovery-codes")) == codes

    # Until the codes are saved, every other page sends the browser back to them.
    for path in ("/", "/account/security", "/account/password", "/mfa/setup", "/mfa/verify"):
        response = browser.get(path)
        assert response.status_code == 302 and location(response) == "/mfa/recovery-codes", path
    assert not signed_in_as(browser, "alice")

    response = browser.post("/mfa/recovery-codes")
    assert location(response) == "/"
    assert signed_in_as(browser, "alice")

    # Shown once: the page and the download are gone, and no code is on any page.
    for path in ("/mfa/recovery-codes", "/mfa/recovery-codes.txt"):
        response = browser.get(path)
        assert response.status_code == 302 and location(response) == "/account/security", path
    security = browser.page("/account/security")
    assert "10 of 10 recovery codes left." in security
    assert not any(s in security for code in codes for s in spellings(code))


def test_recovery_codes_download_is_a_private_text_attachment(totp_app, browser):
    browser.login()
    secret = browser.setup_secret()
    browser.post("/mfa/setup", {"code": browser.code(secret)})
    codes = RECOVERY_CODE_RE.findall(browser.page("/mfa/recovery-codes"))

    response = browser.get("/mfa/recovery-codes.txt")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and "recovery-codes.txt" in disposition
    assert "no-store" in response.headers["Cache-Control"]
    body = response.get_data(as_text=True)
    assert [line for line in body.splitlines() if CODE_SHAPE.fullmatch(line)] == codes
    assert "alice" in body


def test_recovery_codes_are_stored_only_as_hashes(totp_app, browser):
    browser.login()
    secret = browser.setup_secret()
    browser.post("/mfa/setup", {"code": browser.code(secret)})
    codes = RECOVERY_CODE_RE.findall(browser.page("/mfa/recovery-codes"))
    assert len(codes) == 10
    plain = {s for code in codes for s in spellings(code)}

    # While the codes are on screen: not in the session row, not anywhere in the DB.
    sessions_table = table_dump(totp_app, WebSession)
    assert sessions_table and not any(p in sessions_table for p in plain)
    assert not any(p in database_dump(totp_app) for p in plain)

    browser.post("/mfa/recovery-codes")
    assert not any(p in database_dump(totp_app) for p in plain)

    # The table holds ten one-way hashes (SHA-256 of the normalised code), unused.
    with totp_app.app_context():
        rows = list(RecoveryCode.select().join(User).where(User.username == "alice"))
    assert len(rows) == 10
    assert all(re.fullmatch(r"[0-9a-f]{64}", row.code_hash) for row in rows)
    assert all(row.used_at is None for row in rows)
    expected = {hashlib.sha256(c.replace("-", "").upper().encode()).hexdigest() for c in codes}
    assert {row.code_hash for row in rows} == expected


# --- Recovery codes at sign-in


def test_verify_page_links_to_the_recovery_code_form(totp_app, new_browser):
    new_browser().enrol()
    browser = pending_verify(new_browser)
    page = text(browser.get("/mfa/verify"))
    assert '<a href="/mfa/recovery"' in page and "Use a recovery code instead" in page
    page = browser.page("/mfa/recovery")
    assert 'name="recovery_code"' in page
    assert 'name="code"' not in page


def test_recovery_code_works_once_in_any_order_and_any_spelling(totp_app, new_browser):
    enrolling = new_browser()
    enrolling.enrol()
    codes = enrolling.recovery_codes

    used = [
        (codes[7], codes[7]),
        (codes[2], codes[2].upper()),
        (codes[9], codes[9].replace("-", "")),
        (codes[0], " " + codes[0].replace("-", " ").upper() + " "),
    ]
    for number, (_code, typed) in enumerate(used, start=1):
        browser = pending_verify(new_browser)
        response = use_recovery_code(browser, typed)
        assert location(response) == "/", typed
        home = text(browser.get("/"))
        assert f"You have {10 - number} recovery codes left." in home
        assert signed_in_as(browser, "alice")
        assert failures(totp_app, "alice") == 0
    assert codes_left(totp_app, "alice") == 6

    # A used code, in any spelling, never works again.
    for typed in (codes[7], codes[2].upper(), codes[0].replace("-", "")):
        browser = pending_verify(new_browser)
        response = use_recovery_code(browser, typed)
        assert location(response) == "/mfa/recovery", typed
        assert MESSAGES["wrong_recovery_code"] in text(browser.get("/mfa/recovery"))
        assert not signed_in_as(browser, "alice")
    assert codes_left(totp_app, "alice") == 6
    assert ("recovery_code", "ok", "alice") in {r[:3] for r in audit_rows(totp_app)}


def test_sc13_recovery_code_of_another_user_does_not_sign_in(totp_app, new_browser):
    alice = new_browser()
    alice.enrol("alice")
    new_browser().enrol("bob")
    bob = pending_verify(new_browser, "bob")
    response = use_recovery_code(bob, alice.recovery_codes[0])
    assert location(response) == "/mfa/recovery"
    assert not signed_in_as(bob, "bob") and not signed_in_as(bob, "alice")
    assert failures(totp_app, "bob") == 1
    # Alice's code was not spent by the attempt.
    assert codes_left(totp_app, "alice") == 10


def test_recovery_codes_left_count_down_and_urge_new_ones_at_three(totp_app, new_browser):
    enrolling = new_browser()
    enrolling.enrol()
    codes = enrolling.recovery_codes

    def spend_elsewhere(code):
        """The code used at another sign-in (by the service, to keep the test short)."""
        with totp_app.app_context():
            assert recovery.spend(User.get(User.username == "alice"), code)

    # A sign-in with a code at 9, 4, 3 and 1 left; the other codes spent elsewhere.
    for number, code in enumerate(codes[:9], start=1):
        left = 10 - number
        if left not in (9, 4, 3, 1):
            spend_elsewhere(code)
            continue
        browser = pending_verify(new_browser)
        assert location(use_recovery_code(browser, code)) == "/"
        home = text(browser.get("/"))
        noun = "code" if left == 1 else "codes"
        assert f"Recovery code accepted. You have {left} recovery {noun} left." in home
        urged = "Generate new codes on your Account security page soon." in home
        assert urged == (left <= 3), left
        security = text(browser.get("/account/security"))
        assert f"{left} of 10 recovery codes left." in security
        running_out = "You are running out of recovery codes." in security
        assert running_out == (left <= 3), left


def test_wrong_recovery_codes_count_against_the_mfa_throttle_and_end_the_login(
    totp_app, new_browser, clock
):
    enrolling = new_browser()
    secret = enrolling.enrol()
    codes = enrolling.recovery_codes
    browser = pending_verify(new_browser)

    # Two wrong app codes, then wrong recovery codes: one counter for both.
    for _ in range(2):
        response = browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
        assert location(response) == "/mfa/verify"
    assert failures(totp_app, "alice") == 2
    for attempt, typed in enumerate((UNKNOWN_RECOVERY_CODE, "not a recovery code"), start=3):
        response = use_recovery_code(browser, typed)
        assert location(response) == "/mfa/recovery"
        assert MESSAGES["wrong_recovery_code"] in text(browser.get("/mfa/recovery"))
        assert failures(totp_app, "alice") == attempt
    with totp_app.app_context():
        assert throttle.failures(User.get(User.username == "alice")) == 4

    # The fifth failure ends the pending steps.
    response = use_recovery_code(browser, UNKNOWN_RECOVERY_CODE.upper())
    assert location(response) == "/login"
    assert MESSAGES["too_many_codes"] in text(browser.get("/login"))
    assert failures(totp_app, "alice") == 5
    assert location(browser.get("/mfa/recovery")).startswith("/login")
    assert not signed_in_as(browser, "alice")

    # While backing off, even a right recovery code is refused and not spent.
    again = pending_verify(new_browser)
    response = use_recovery_code(again, codes[3])
    assert location(response) == "/mfa/recovery"
    assert "Too many wrong codes. Wait" in text(again.get("/mfa/recovery"))
    assert not signed_in_as(again, "alice")
    assert codes_left(totp_app, "alice") == 10

    clock.advance(2)
    assert location(use_recovery_code(again, codes[3])) == "/"
    assert signed_in_as(again, "alice")
    assert failures(totp_app, "alice") == 0
    assert codes_left(totp_app, "alice") == 9


def test_code_field_rejects_a_recovery_code(totp_app, new_browser):
    enrolling = new_browser()
    enrolling.enrol()
    code = enrolling.recovery_codes[0]
    browser = pending_verify(new_browser)
    for typed in (code, code.replace("-", "")):
        response = browser.post("/mfa/verify", {"code": typed})
        assert location(response) == "/mfa/verify"
        assert MESSAGES["wrong_code"] in text(browser.get("/mfa/verify"))
        assert not signed_in_as(browser, "alice")
    assert failures(totp_app, "alice") == 2
    assert codes_left(totp_app, "alice") == 10
    # The code was not spent: it still works in its own field.
    assert location(use_recovery_code(browser, code)) == "/"
