"""Pages in people's words (issue 13, item 3): the Account security page and the audit
log show labels and browser names, never the recorded names or raw user agents; a row
no label knows still reads; the recovery-code step can be left ("Cancel and sign
out", a POST with CSRF); and the recovery-codes warning tells apart someone who never
had codes from someone who used them all."""

from __future__ import annotations

import html
import re

from support.client import signed_in_as
from support.db import audit_events, audit_rows, codes_left, sessions_of
from support.pages import location, text
from support.steps import (
    give_credential,
    pending_verify,
    signed_in_admin,
    signed_in_with_code,
    use_recovery_code,
)

from standalone_mfa.core import audit
from standalone_mfa.core.models import User
from standalone_mfa.factors import recovery
from standalone_mfa.signin.state import TOTP_VERIFY

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
WARNING_RE = re.compile(
    r'<p class="message message-warning" role="status" id="recovery-codes-warning">(.*?)</p>',
    re.S,
)


def recovery_section(page: str) -> str:
    return page.split('id="recovery"')[1].split('id="devices"')[0]


def warning(page: str) -> str | None:
    found = WARNING_RE.search(recovery_section(page))
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split()) if found else None


def links(section: str) -> dict[str, str]:
    """{link text: href} of a piece of a page."""
    return {
        html.unescape(name): href
        for href, name in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', section)
    }


# --- Recovery codes on the Account security page


def test_someone_who_never_had_recovery_codes_is_offered_to_make_them(
    totp_app, clock, new_browser
):
    """Set up before recovery codes existed: no "0 of 10 left", an offer instead."""
    secret = give_credential(totp_app, clock, "alice")  # an authenticator, no codes
    browser = signed_in_with_code(new_browser, secret)
    page = browser.page("/account/security")
    section = recovery_section(page)
    assert "recovery codes left" not in section
    assert warning(page) == (
        "Warning: You have no recovery codes yet. "
        "If you lose your phone, a recovery code lets you sign in without it."
    )
    assert links(section) == {"Make recovery codes": "/account/recovery-codes"}


def test_someone_who_used_every_code_is_warned_to_make_new_ones(totp_app, new_browser):
    laptop = new_browser()
    laptop.enrol()
    for code in laptop.recovery_codes:
        with totp_app.app_context():
            assert recovery.spend(User.get(User.username == "alice"), code)
    assert codes_left(totp_app, "alice") == 0
    page = laptop.page("/account/security")
    section = recovery_section(page)
    assert "0 of 10 recovery codes left." in section
    assert warning(page) == (
        "Warning: You have used all your recovery codes. "
        "Make new ones, or you cannot sign in if you lose your phone."
    )
    assert links(section) == {"Generate new recovery codes": "/account/recovery-codes"}


def test_the_warning_comes_at_three_left_and_not_before(totp_app, new_browser):
    laptop = new_browser()
    laptop.enrol()
    with totp_app.app_context():
        alice = User.get(User.username == "alice")
        for code in laptop.recovery_codes[:6]:
            assert recovery.spend(alice, code)
    assert warning(laptop.page("/account/security")) is None  # 4 left
    with totp_app.app_context():
        assert recovery.spend(User.get(User.username == "alice"), laptop.recovery_codes[6])
    page = laptop.page("/account/security")
    assert "3 of 10 recovery codes left." in page
    assert warning(page) == (
        "Warning: You are running out of recovery codes. Generate new ones soon."
    )


def test_no_authenticator_no_recovery_codes_section(app, browser):
    browser.login()  # MFA disabled: a password-only account
    page = browser.page("/account/security")
    assert 'id="recovery"' not in page and "Make recovery codes" not in page


# --- Sign-in activity and browsers on the Account security page


def test_activity_and_browsers_read_as_words_not_recorded_names(totp_app, clock, new_browser):
    laptop = new_browser()
    laptop.client.environ_base["HTTP_USER_AGENT"] = CHROME_LINUX
    laptop.enrol()
    with totp_app.app_context():  # a row written by another release
        audit.record("login", "with_a_passkey", username="alice")
    odd = new_browser()
    # Garbage (no NUL: PostgreSQL text cannot hold one, and gunicorn refuses it).
    odd.client.environ_base["HTTP_USER_AGENT"] = "\x1b[2J\x7f" + "\u202e" * 50
    odd.login()
    page = laptop.page("/account/security")
    activity = page.split('id="events"')[1]
    cells = [
        html.unescape(cell) for cell in re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td>", activity)
    ]
    assert "Signed in" in cells and "Authenticator app set up" not in cells  # not sign-in
    assert "Other security event" in cells  # no label knows that row
    assert "with_a_passkey" not in page
    for raw in ("login", "totp", ">ok<", "with_a_passkey"):
        assert raw not in activity, raw
    sessions = page.split('id="sessions"')[1].split('id="password"')[0]
    assert "<td>Chrome 131 on Linux</td>" in sessions
    assert "<td>Unknown browser</td>" in sessions  # the odd one's garbage user agent
    assert "Mozilla" not in page and "\u202e" not in page and "\x1b" not in page


# --- The audit log


def test_the_audit_log_reads_as_words_with_the_recorded_names_beside(app, clock):
    admin = signed_in_admin(app, clock)
    with app.app_context():
        audit.record("totp_reset", "ok", username="alice", actor="root")
        audit.record("written_by_release_0_9", "ok", username="bob")
    page = admin.page("/admin/audit")
    cells = re.findall(r'<td>([^<]*)<br><span class="event-code"[^>]*>([^<]*)</span></td>', page)
    assert len(cells) == len(audit_events(app))
    assert cells[:3] == [
        ("Other security event", "written_by_release_0_9 · ok"),
        ("Authenticator reset by an administrator", "totp_reset · ok"),
        ("Signed in", "login · ok"),
    ]
    # The filter still goes by the recorded names, the unknown one included.
    assert '<option value="written_by_release_0_9">' in page
    filtered = admin.page("/admin/audit?event=written_by_release_0_9")
    assert 'role="alert"' not in filtered
    assert re.findall(r'<span class="event-code"[^>]*>([^<]*)</span>', filtered) == [
        "written_by_release_0_9 · ok"
    ]


# --- "Cancel and sign out" on the recovery-code step


def test_the_recovery_code_step_can_be_left_with_a_post(totp_app, new_browser):
    laptop = new_browser()
    laptop.enrol()
    browser = pending_verify(new_browser)
    page = browser.page("/mfa/recovery")
    form = re.search(
        r'<form class="inline" method="post" action="/logout">(.*?)</form>', page, re.S
    )
    assert form, page
    assert 'name="csrf_token"' in form.group(1)
    assert re.search(r'<button type="submit"[^>]*>Cancel and sign out</button>', form.group(1))
    assert [s.state for s in sessions_of(totp_app, "alice") if s.state == TOTP_VERIFY]
    # Without its CSRF token nothing happens; with it the pending sign-in ends.
    assert browser.post("/logout", {}, csrf=False).status_code == 400
    assert location(browser.get("/mfa/recovery")) is None  # still at the code step
    response = browser.post("/logout")
    assert location(response) == "/login"
    assert [s for s in sessions_of(totp_app, "alice") if s.state == TOTP_VERIFY] == []
    assert location(browser.get("/mfa/recovery")).startswith("/login")
    assert not signed_in_as(browser, "alice")
    assert ("logout", "ok", "alice", None, None) in audit_rows(totp_app, "logout")
    # The recovery code was not needed, nor spent.
    assert codes_left(totp_app, "alice") == 10
    assert location(use_recovery_code(pending_verify(new_browser), laptop.recovery_codes[0]))
    assert "Signed out" in text(laptop.page("/account/security"))
