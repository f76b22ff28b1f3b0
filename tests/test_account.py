"""Issue 3, the user side: recovery codes, "Remember this device", the Account security
page (sessions, a new authenticator, a new password) and the clock-drift hint.

Security tests carry the ID of the item of /work/shared/SECURITY-CHECKLIST.md they
cover (SC-13, SC-21, SC-26, SC-30). Every test looks at what a user or an attacker
observes: status codes, where the browser lands, the messages on the page, cookies,
and what the database holds afterwards.

A TOTP time step is usable once per user: `fresh_code` moves the frozen clock to the
next step before it reads a code, so every code a test sends is a new one.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re

import pyotp
import pytest
from conftest import PASSWORD, RECOVERY_CODE_RE, SECRET_RE, Browser

from standalone_mfa.accounts import reset, settings, tokens
from standalone_mfa.core.db import db
from standalone_mfa.core.messages import MESSAGES
from standalone_mfa.core.models import (
    ALL_MODELS,
    AuditEvent,
    RecoveryCode,
    RememberedDevice,
    TotpCredential,
    User,
    WebSession,
)
from standalone_mfa.factors import recovery, throttle

NEW_PASSWORD = "a brand new passphrase for alice"
DEVICE_COOKIE = "smfa_device"
DRIFT_ADVICE = "Your phone's clock may be wrong; turn on automatic time."
CODE_SHAPE = re.compile(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}")
# Well-formed (base32, 16 characters) but nobody's code.
UNKNOWN_RECOVERY_CODE = "abcd-efgh-ijkl-mnop"

# --------------------------------------------------------------------------- helpers


def location(response) -> str | None:
    return response.headers.get("Location")


def text(page_or_response) -> str:
    """The page as a person reads it: entities such as &#39; decoded, white space
    (line breaks in the templates) collapsed."""
    if not isinstance(page_or_response, str):
        page_or_response = page_or_response.get_data(as_text=True)
    return re.sub(r"\s+", " ", html.unescape(page_or_response))


def signed_in_as(browser_or_client, username) -> bool:
    """The home page answers and names `username` as the signed-in user."""
    client = getattr(browser_or_client, "client", browser_or_client)
    response = client.get("/")
    page = response.get_data(as_text=True)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in page


def client_with_cookie(app, value):
    """A fresh client (another person's browser) that presents `value` as its cookie."""
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return client


def wrong_code(secret, clock) -> str:
    """A well-formed code that matches no step anywhere near now (not even the ±10
    steps the clock-drift hint looks at)."""
    totp = pyotp.TOTP(secret)
    near = {totp.at(clock.timestamp() + 30 * s) for s in range(-25, 26)}
    number = 123456
    while f"{number:06d}" in near:
        number += 1
    return f"{number:06d}"


def fresh_code(browser, secret, steps=0) -> str:
    """Move to the next time step, then read the code `steps` steps from now."""
    browser.clock.advance(30)
    return browser.code(secret, steps)


def spellings(code: str) -> set[str]:
    """Every way a recovery code could be written down or stored in plain."""
    plain = code.replace("-", "")
    return {code, code.upper(), plain, plain.upper()}


def table_dump(app, model) -> str:
    """Every column of every row of a table, as one string (raw SQL: nothing hidden)."""
    with app.app_context():
        cursor = db.execute_sql(f'SELECT * FROM "{model._meta.table_name}"')  # noqa: S608
        return "\n".join(repr(row) for row in cursor.fetchall())


def database_dump(app) -> str:
    return "\n".join(table_dump(app, model) for model in ALL_MODELS)


def user_of(app, username) -> User:
    with app.app_context():
        return User.get(User.username == username)


def recovery_hashes(app, username) -> set[str]:
    with app.app_context():
        rows = RecoveryCode.select().join(User).where(User.username == username)
        return {row.code_hash for row in rows}


def codes_left(app, username) -> int:
    with app.app_context():
        return recovery.remaining(User.get(User.username == username))


def devices_of(app, username) -> list[RememberedDevice]:
    with app.app_context():
        return list(RememberedDevice.select().join(User).where(User.username == username))


def sessions_of(app, username) -> list[WebSession]:
    with app.app_context():
        return list(WebSession.select().join(User).where(User.username == username))


def credential_secret(app, username) -> str | None:
    from standalone_mfa.core import crypto

    with app.app_context():
        credential = (
            TotpCredential.select().join(User).where(User.username == username).get_or_none()
        )
        return crypto.decrypt(credential.secret_encrypted) if credential else None


def password_hash(app, username) -> str:
    return user_of(app, username).password_hash


def failures(app, username) -> int:
    with app.app_context():
        return throttle.failures(User.get(User.username == username))


def audit_rows(app, event=None) -> list[tuple]:
    """(event, outcome, username, actor, detail) of every audit row, oldest first."""
    with app.app_context():
        query = AuditEvent.select().order_by(AuditEvent.id)
        if event:
            query = query.where(AuditEvent.event == event)
        return [(e.event, e.outcome, e.username, e.actor, e.detail) for e in query]


def set_remember_days(app, days: int) -> None:
    with app.app_context():
        settings.set_remember_days(days, actor="test")


def remember_days(app) -> int:
    with app.app_context():
        return settings.remember_days()


def device_token(browser) -> str | None:
    cookie = browser.client.get_cookie(DEVICE_COOKIE)
    return cookie.value if cookie else None


def set_cookie_headers(response, name) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]


# ------------------------------------------------------------------ browser steps


def pending_verify(new_browser, username="alice"):
    """A new browser that passed the password step and waits at /mfa/verify."""
    browser = new_browser()
    response = browser.login(username)
    assert location(response) == "/mfa/verify"
    return browser


def pending_setup(new_browser, username="alice"):
    """A new browser at /mfa/setup of a first sign-in; returns it and its secret."""
    browser = new_browser()
    assert location(browser.login(username)) == "/mfa/setup"
    return browser, browser.setup_secret()


def signed_in_with_code(new_browser, secret, username="alice", remember=False):
    """A new browser signed in with the password and a fresh code."""
    browser = pending_verify(new_browser, username)
    data = {"code": fresh_code(browser, secret)}
    if remember:
        data["remember_device"] = "y"
    response = browser.post("/mfa/verify", data)
    assert location(response) == "/", text(browser.page("/mfa/verify"))
    return browser


def remembered_browser(new_browser, secret, username="alice"):
    """A browser that ticked "Remember this device" with a code, then signed out."""
    browser = signed_in_with_code(new_browser, secret, username, remember=True)
    assert device_token(browser)
    browser.logout()
    assert not signed_in_as(browser, username)
    return browser


def use_recovery_code(browser, code):
    """At the code step: "Use a recovery code instead", then enter `code`."""
    page = browser.page("/mfa/recovery")
    assert 'name="recovery_code"' in page
    return browser.post("/mfa/recovery", {"recovery_code": code})


def regenerate(browser, password, code=None, recovery_code=None):
    browser.get("/account/recovery-codes")
    data = {"password": password}
    if code is not None:
        data["code"] = code
    if recovery_code is not None:
        data["recovery_code"] = recovery_code
    return browser.post("/account/recovery-codes", data)


def confirm_for_new_authenticator(browser, password, code=None, recovery_code=None):
    browser.get("/account/authenticator")
    data = {"password": password}
    if code is not None:
        data["code"] = code
    if recovery_code is not None:
        data["recovery_code"] = recovery_code
    return browser.post("/account/authenticator", data)


def new_authenticator_secret(browser) -> str:
    page = browser.page("/account/authenticator/new")
    match = SECRET_RE.search(page)
    assert match, page
    return html.unescape(match.group(1)).replace(" ", "")


def change_password(browser, current, new, confirm=None):
    browser.get("/account/password")
    return browser.post(
        "/account/password",
        {
            "current_password": current,
            "new_password": new,
            "confirm_password": new if confirm is None else confirm,
        },
    )


def admin_browser(new_browser):
    """root, an administrator, signed in with TOTP."""
    root = new_browser()
    root.enrol("root")
    return root


def post_admin_settings(root, **fields):
    root.get("/admin/mfa")
    return root.post("/admin/mfa", {"mfa_method": "totp", **fields})


# ======================================================================================
# 1. Recovery codes shown once after set-up
# ======================================================================================


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


# ======================================================================================
# 1. Recovery codes at sign-in
# ======================================================================================


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


# ======================================================================================
# 2. New recovery codes from the Account security page
# ======================================================================================


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


# ======================================================================================
# 3. Remember this device: the administrator's setting
# ======================================================================================


def test_remember_days_defaults_to_zero_and_accepts_up_to_31_audited(totp_app, new_browser):
    root = admin_browser(new_browser)
    assert remember_days(totp_app) == 0
    page = root.page("/admin/mfa")
    assert re.search(r'<input[^>]*name="remember_days"[^>]*value="0"', page)

    response = post_admin_settings(root, remember_days="31")
    assert location(response) == "/admin/mfa"
    assert "Devices are remembered for 31 days." in text(root.get("/admin/mfa"))
    assert remember_days(totp_app) == 31
    assert ("remember_days_changed", "ok", None, "root", "0 -> 31") in audit_rows(
        totp_app, "remember_days_changed"
    )

    assert location(post_admin_settings(root, remember_days="0")) == "/admin/mfa"
    assert remember_days(totp_app) == 0
    assert ("remember_days_changed", "ok", None, "root", "31 -> 0") in audit_rows(totp_app)


@pytest.mark.parametrize("value", ["32", "-1", "abc", "7.5"])
def test_remember_days_out_of_range_is_refused_with_a_message(totp_app, new_browser, value):
    root = admin_browser(new_browser)
    assert location(post_admin_settings(root, remember_days="7")) == "/admin/mfa"
    audited = len(audit_rows(totp_app, "remember_days_changed"))

    response = post_admin_settings(root, remember_days=value)
    assert response.status_code == 200
    assert "Remember devices for 0 to 31 days." in text(response)
    assert remember_days(totp_app) == 7
    assert len(audit_rows(totp_app, "remember_days_changed")) == audited


# ======================================================================================
# 3. Remember this device: at sign-in
# ======================================================================================


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


# ======================================================================================
# 7. SC-26: an administrator's reset
# ======================================================================================


def reset_by_function(app):
    with app.app_context():
        assert reset.reset_totp(User.get(User.username == "alice"), actor="root")


def reset_by_cli(app):
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["mfa", "reset", "alice"])
    assert result.exit_code == 0, result.output


def reset_by_api(app):
    with app.app_context():
        token = tokens.create_token(User.get(User.username == "root"), actor="test")
    response = app.test_client().delete(
        "/api/v1/users/alice/totp", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 204


@pytest.mark.parametrize("reset_how", [reset_by_function, reset_by_cli, reset_by_api])
def test_sc26_reset_deletes_recovery_codes_and_remembered_devices(
    totp_app, new_browser, reset_how
):
    set_remember_days(totp_app, 30)
    enrolling = new_browser()
    secret = enrolling.enrol()
    old_codes = enrolling.recovery_codes
    device = remembered_browser(new_browser, secret)
    assert location(use_recovery_code(pending_verify(new_browser), old_codes[0])) == "/"
    assert len(recovery_hashes(totp_app, "alice")) == 10
    assert len(devices_of(totp_app, "alice")) == 1

    reset_how(totp_app)
    assert recovery_hashes(totp_app, "alice") == set()
    assert devices_of(totp_app, "alice") == []
    assert ("totp_reset", "ok", "alice") in {r[:3] for r in audit_rows(totp_app)}

    # The remembered browser is sent to set up again, and is told why.
    assert location(device.login()) == "/mfa/setup"
    assert "An administrator reset your two-factor authentication" in text(
        device.get("/mfa/setup")
    )
    new_secret = device.setup_secret()
    assert location(device.submit_code("/mfa/setup", device.code(new_secret))) == "/"
    device.logout()
    # With the new authenticator: the old device token and old codes are worthless.
    assert location(device.login()) == "/mfa/verify"
    assert location(use_recovery_code(device, old_codes[1])) == "/mfa/recovery"
    assert not signed_in_as(device, "alice")


# ======================================================================================
# 4. The Account security page
# ======================================================================================


def with_client(browser, ip, agent):
    browser.client.environ_base.update({"REMOTE_ADDR": ip, "HTTP_USER_AGENT": agent})
    return browser


def test_account_security_page_shows_status_codes_devices_sessions_events(totp_app, new_browser):
    set_remember_days(totp_app, 30)
    laptop = with_client(new_browser(), "198.51.100.7", "AliceLaptop/1.0")
    secret = laptop.enrol()
    phone = with_client(new_browser(), "203.0.113.9", "AlicePhone/2.0")
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
    assert "AlicePhone/2.0" in devices_section
    assert "Forget all remembered devices" in devices_section

    sessions_section = page.split('id="sessions"')[1].split('id="password"')[0]
    rows = sessions_section.split("<tr>")[2:]
    assert len(rows) == len(sessions_of(totp_app, "alice")) == 3
    this = [row for row in rows if "(this session)" in row]
    assert len(this) == 1
    assert "198.51.100.7" in this[0] and "AliceLaptop/1.0" in this[0]
    assert any("203.0.113.9" in row and "AlicePhone/2.0" in row for row in rows)
    assert "Sign out other sessions" in sessions_section

    events_section = page.split('id="events"')[1]
    event_rows = events_section.split("<tr>")[2:]
    assert 3 <= len(event_rows) <= 20
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in event_rows]
    assert ["login", "failed", "203.0.113.9"] in [c[1:] for c in cells]
    assert ["totp", "ok", "203.0.113.9"] in [c[1:] for c in cells]
    assert ["recovery_code", "ok"] in [c[1:3] for c in cells]
    assert "192.0.2.44" not in page and "BobBrowser" not in page  # bob's, not alice's


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


ACCOUNT_PAGES = (
    "/account/security",
    "/account/recovery-codes",
    "/account/authenticator",
    "/account/authenticator/new",
    "/account/password",
)
ACCOUNT_ACTIONS = ("/account/sessions/end-others", "/account/devices/forget")


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


# ======================================================================================
# 5. A new authenticator app (SC-21)
# ======================================================================================


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


# ======================================================================================
# 6. Changing the password (SC-21)
# ======================================================================================


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


# ======================================================================================
# 8. The clock-drift hint
# ======================================================================================

DRIFTS = [(-3, "This code was valid about 2 minutes ago."), (3, "about 2 minutes from now.")]


def at_code_step(where, new_browser):
    """(browser, secret, path) at /mfa/verify (enrolled) or /mfa/setup (first time)."""
    if where == "verify":
        secret = new_browser().enrol()
        browser = pending_verify(new_browser)
        browser.clock.advance(30)
        return browser, secret, "/mfa/verify"
    browser, secret = pending_setup(new_browser)
    return browser, secret, "/mfa/setup"


@pytest.mark.parametrize("where", ["verify", "setup"])
@pytest.mark.parametrize(("steps", "words"), DRIFTS)
def test_drifted_code_is_refused_counted_and_explained(totp_app, new_browser, where, steps, words):
    browser, secret, path = at_code_step(where, new_browser)
    response = browser.post(path, {"code": browser.code(secret, steps)})
    assert location(response) == path
    page = text(browser.get(path))
    assert words in page and DRIFT_ADVICE in page
    assert failures(totp_app, "alice") == 1
    assert not signed_in_as(browser, "alice")
    assert ("totp", "failed", "alice", None, "clock drift") in audit_rows(totp_app, "totp")


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


# ======================================================================================
# 9. SC-30: nothing secret in the audit trail or the logs
# ======================================================================================


def test_sc30_no_recovery_code_device_token_or_password_in_audit_or_logs(
    totp_app, new_browser, clock, caplog
):
    caplog.set_level(logging.DEBUG)
    set_remember_days(totp_app, 30)
    wrong_password = "Tr0ub4dor&3 is not it"

    account = new_browser()
    secret = account.enrol()
    first_codes = account.recovery_codes
    # Sign-ins: a wrong and a right recovery code, a wrong password, a remembered device.
    signing_in = pending_verify(new_browser)
    use_recovery_code(signing_in, UNKNOWN_RECOVERY_CODE)
    assert location(use_recovery_code(signing_in, first_codes[4].upper())) == "/"
    new_browser().login(password=wrong_password)
    device = remembered_browser(new_browser, secret)
    token = device_token(device)
    assert location(device.login()) == "/"
    # Account changes: new codes, a password, a new authenticator with a recovery code.
    regenerate(account, wrong_password, fresh_code(account, secret))
    assert location(regenerate(account, PASSWORD, fresh_code(account, secret)))
    second_codes = RECOVERY_CODE_RE.findall(account.page("/mfa/recovery-codes"))
    account.post("/mfa/recovery-codes")
    change_password(account, wrong_password, NEW_PASSWORD)
    assert location(change_password(account, PASSWORD, NEW_PASSWORD)) == "/account/security"
    assert location(device.login(password=NEW_PASSWORD)) == "/mfa/verify"
    response = confirm_for_new_authenticator(account, NEW_PASSWORD, recovery_code=second_codes[2])
    assert location(response) == "/account/authenticator/new"
    new_secret = new_authenticator_secret(account)
    account.post("/account/authenticator/new", {"code": account.code(new_secret)})

    secrets_used = {PASSWORD, NEW_PASSWORD, wrong_password, token}
    for code in [*first_codes, *second_codes, UNKNOWN_RECOVERY_CODE]:
        secrets_used |= spellings(code)
    audit_table = table_dump(totp_app, AuditEvent)
    audit_lines = [r.getMessage() for r in caplog.records if r.name == "standalone_mfa.audit"]
    events = {row[:2] for row in audit_rows(totp_app)}
    # The flows above were audited (so the search below looks at something).
    for expected in (
        ("recovery_code", "ok"),
        ("recovery_code", "failed"),
        ("device_remembered", "ok"),
        ("remembered_device", "used"),
        ("remembered_device", "revoked"),
        ("recovery_codes_generated", "ok"),
        ("reauth", "failed"),
        ("totp_reenrolled", "ok"),
        ("password_changed", "ok"),
    ):
        assert expected in events, expected
    assert len(audit_lines) >= len(events)
    for secret_value in secrets_used:
        assert secret_value not in audit_table
        assert secret_value not in caplog.text
        assert not any(secret_value in line for line in audit_lines)


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


def test_prune_deletes_remembered_devices_past_their_day(totp_app, new_browser, clock):
    from standalone_mfa.ops import maintenance

    set_remember_days(totp_app, 1)
    secret = new_browser().enrol()
    remembered_browser(new_browser, secret)
    with totp_app.app_context():
        assert maintenance.prune(clock.now())["remembered_devices"] == 0
    clock.advance(24 * 3600 + 1)
    with totp_app.app_context():
        assert maintenance.prune(clock.now())["remembered_devices"] == 1
    assert devices_of(totp_app, "alice") == []


def test_account_page_lists_only_live_sessions(totp_app, new_browser, clock):
    secret = new_browser().enrol()  # this browser goes idle past the 30-minute limit
    clock.advance(31 * 60)
    browser = signed_in_with_code(new_browser, secret)
    page = browser.page("/account/security")
    sessions_table = page.split('id="sessions"')[1].split('id="password"')[0]
    assert sessions_table.count("<tr>") == 2  # the header and this session
    assert "(this session)" in sessions_table


class HttpsBrowser(Browser):
    """A browser on https://localhost (the test client's cookie jar keeps Secure
    cookies for it)."""

    def get(self, path, **kwargs):
        return super().get(path, base_url="https://localhost", **kwargs)

    def post(self, path, data=None, csrf=True, **kwargs):
        return super().post(path, data, csrf, base_url="https://localhost", **kwargs)


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
