"""core/audit: every event is one UTC row and one JSON log line with user, IP and
outcome, and no secret is ever written to the audit trail or the logs (SC-30)."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re

from peewee import fn
from support.app import NEW_PASSWORD, PASSWORD, START
from support.client import Browser, api_request, cli, device_token, totp_api
from support.db import audit_events, audit_rows, set_code_failures, set_remember_days, table_dump
from support.oath import UNKNOWN_RECOVERY_CODE, fresh_code, spellings, wrong_code
from support.pages import RECOVERY_CODE_RE, location
from support.steps import (
    api_token,
    change_password,
    confirm_for_new_authenticator,
    new_authenticator_secret,
    pending_verify,
    regenerate,
    remembered_browser,
    save_mfa_settings,
    use_recovery_code,
)

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import AuditEvent


def new_audit_rows(app, since: int) -> list[AuditEvent]:
    with app.app_context():
        return list(AuditEvent.select().where(AuditEvent.id > since).order_by(AuditEvent.id))


def last_audit_id(app) -> int:
    with app.app_context():
        row = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
        return row.id if row else 0


WRONG_PASSWORD = "not the right password at all"


def test_audit_events_are_json_log_lines(browser, caplog):
    caplog.set_level("INFO", logger="standalone_mfa.audit")
    browser.login(password="wrong password")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "standalone_mfa.audit"]
    event = json.loads(line)
    assert event["event"] == "login" and event["outcome"] == "failed"
    assert event["user"] == "alice" and event["ip"] == "127.0.0.1"
    assert event["at"].endswith("Z")


# --- SC-30: the audit trail


def test_sc30_audit_records_are_utc_complete_and_hold_no_secrets(app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        first_new_id = AuditEvent.select(fn.MAX(AuditEvent.id)).scalar() or 0
    browsers = []
    cookies = set()
    codes = []

    def browser():
        b = Browser(app, clock)
        browsers.append(b)
        return b

    def note_cookies():
        cookies.update(b.cookie() for b in browsers if b.cookie())

    # Setting changed (root signs in while the method is still Disabled).
    admin = browser()
    admin.login("root")
    note_cookies()
    save_mfa_settings(admin, {"mfa_method": "totp"})
    note_cookies()
    # Failed then successful password, and enrolment.
    alice = browser()
    alice.login("alice", WRONG_PASSWORD)
    note_cookies()
    alice.login("alice")
    note_cookies()
    secret = alice.setup_secret()
    codes.append(alice.code(secret))
    alice.post("/mfa/setup", {"code": codes[-1]})
    note_cookies()
    # A wrong code, the right one, then the same one replayed.
    clock.advance(60)
    later = browser()
    later.login()
    codes.append(later.code(secret, steps=20))
    later.post("/mfa/verify", {"code": codes[-1]})
    codes.append(later.code(secret))
    later.post("/mfa/verify", {"code": codes[-1]})
    note_cookies()
    replay = browser()
    replay.login()
    replay.post("/mfa/verify", {"code": codes[-1]})
    note_cookies()
    # A token is made and used for a reset; alice starts a new set-up.
    token = api_token(app, "root")
    assert totp_api(app, "DELETE", "alice", token).status_code == 204
    clock.advance(60)
    again = browser()
    again.login()
    second_secret = again.setup_secret()
    note_cookies()

    with app.app_context():
        rows = list(AuditEvent.select().where(AuditEvent.id > first_new_id))
    seen = {(row.event, row.outcome) for row in rows}
    assert {
        ("mfa_method_changed", "ok"),
        ("login", "failed"),
        ("login", "ok"),
        ("totp_enrolled", "ok"),
        ("totp", "failed"),
        ("totp", "ok"),
        ("totp_replay", "refused"),
        ("token_created", "ok"),
        ("totp_reset", "ok"),
    } <= seen

    for row in rows:
        assert row.event and row.outcome, row.__data__
        assert isinstance(row.at, dt.datetime)
        assert row.at.tzinfo is None  # naive UTC, from the app's clock
        assert START <= row.at <= clock.now()
        if row.event in {"totp", "totp_enrolled", "totp_replay", "totp_reset"}:
            assert row.username == "alice", row.__data__
        if row.event in {"login", "totp", "totp_enrolled", "totp_replay", "totp_reset"}:
            assert row.username in {"alice", "root"}, row.__data__
            assert row.ip == "127.0.0.1", row.__data__
        if row.event in {"mfa_method_changed", "totp_reset", "token_created"}:
            assert row.actor, row.__data__

    # One JSON log line per record, with the same UTC time.
    audit_lines = [r for r in caplog.records if r.name == "standalone_mfa.audit"]
    assert len(audit_lines) == len(rows)
    for row, line in zip(rows, audit_lines, strict=True):
        logged = json.loads(line.getMessage())
        assert (logged["event"], logged["outcome"]) == (row.event, row.outcome)
        assert logged["at"].endswith("Z")
        assert dt.datetime.fromisoformat(logged["at"]) == row.at.replace(tzinfo=dt.UTC)

    secrets_seen = {
        "password": [PASSWORD, WRONG_PASSWORD],
        "TOTP secret": [secret, second_secret, secret[:16], second_secret[:16]],
        "code": codes,
        "API token": [token, token.removeprefix("smfa_")],
        "session cookie": sorted(cookies),
    }
    assert len(cookies) >= len(browsers)
    texts = [json.dumps(row.__data__, default=str) for row in rows]
    texts += [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    for kind, values in secrets_seen.items():
        for value in values:
            assert value
            for text in texts:
                assert value not in text, f"{kind} found in: {text}"


# --- SC-30: one UTC record per event


def test_sc30_each_event_is_one_utc_record_with_user_ip_and_outcome(totp_app, new_browser, clock):
    secret = new_browser().enrol("alice")
    clock.advance(60)
    alice = new_browser()
    steps = [
        ("wrong password", lambda: alice.login(password="wrong password!"), ("login", "failed")),
        ("password", lambda: alice.login(), ("login", "ok")),
        (
            "wrong code",
            lambda: alice.post("/mfa/verify", {"code": wrong_code(secret, clock)}),
            ("totp", "failed"),
        ),
        ("code", lambda: alice.post("/mfa/verify", {"code": alice.code(secret)}), ("totp", "ok")),
        ("sign-out", alice.logout, ("logout", "ok")),
    ]
    for name, act, expected in steps:
        since = last_audit_id(totp_app)
        act()
        rows = new_audit_rows(totp_app, since)
        assert [(r.event, r.outcome) for r in rows] == [expected], name
        (row,) = rows
        assert (row.username, row.ip) == ("alice", "127.0.0.1"), name
        assert row.at == clock.now(), name  # naive UTC, from the one clock
    # Throttling and the lock are one record each, too.
    for _ in range(4):
        alice.login()
        alice.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    alice.login()
    since = last_audit_id(totp_app)
    alice.post("/mfa/verify", {"code": wrong_code(secret, clock)})  # the 5th failure
    alice.login()
    alice.post("/mfa/verify", {"code": alice.code(secret)})  # must wait: throttled
    events = [(r.event, r.outcome) for r in new_audit_rows(totp_app, since)]
    assert events.count(("totp", "failed")) == 1
    assert events.count(("totp_throttled", "wait")) == 1


# --- SC-30: the new events, and no secret anywhere


def test_sc30_admin_events_recorded_without_secrets(totp_app, clock, new_browser, caplog):
    caplog.set_level(logging.DEBUG)
    cookies, codes = set(), []
    alice = new_browser()
    alice_secret = alice.enrol()
    cookies.add(alice.cookie())
    admin = new_browser()
    root_secret = admin.enrol("root")
    cookies.add(admin.cookie())
    clock.advance(30)
    admin.get("/admin/step-up")
    codes.append(admin.code(root_secret, steps=5))
    admin.post("/admin/step-up", {"code": codes[-1]})  # wrong: step-up failed
    codes.append(admin.code(root_secret))
    admin.post("/admin/step-up", {"code": codes[-1]})  # step-up ok
    cookies.add(admin.cookie())
    set_code_failures(totp_app, "bob", DEFAULTS["MFA_LOCK_AFTER"])
    for target, action in (("bob", "unlock"), ("alice", "grant-admin"), ("alice", "revoke-admin")):
        admin.get(f"/admin/users/{target}/{action}")
        admin.post(f"/admin/users/{target}/{action}")
    admin.get("/admin/users/alice/sign-out")
    admin.post("/admin/users/alice/sign-out")
    admin.get("/admin/users/new")
    generated_page = admin.post("/admin/users/new", {"username": "carol"}).get_data(as_text=True)
    generated = html.unescape(re.search(r'id="initial-password">([^<]+)<', generated_page)[1])
    typed = "typed initial password for dave"
    admin.get("/admin/users/new")
    admin.post("/admin/users/new", {"username": "dave", "password": typed})
    token = api_token(totp_app, "root")
    assert api_request(totp_app, "POST", "/api/v1/users/alice/unlock", token).status_code == 200
    cli(totp_app, "user", "unlock", "bob")

    seen = {(e.event, e.outcome, e.username, e.actor) for e in audit_events(totp_app)}
    assert {
        ("reauth", "failed", "root", "root"),
        ("reauth", "ok", "root", "root"),
        ("unlock", "ok", "bob", "root"),
        ("admin_granted", "ok", "alice", "root"),
        ("admin_revoked", "ok", "alice", "root"),
        ("session_revoked", "ok", "alice", "root"),
        ("user_created", "ok", "carol", "root"),
        ("user_created", "ok", "dave", "root"),
        ("unlock", "unchanged", "alice", "root"),
        ("unlock", "unchanged", "bob", "cli"),
    } <= seen
    for event in audit_events(totp_app):
        assert event.at.tzinfo is None and START <= event.at <= clock.now()

    audit_page = admin.page("/admin/audit")
    texts = [json.dumps(e.__data__, default=str) for e in audit_events(totp_app)]
    texts += [record.getMessage() for record in caplog.records]
    texts.append(audit_page.split("<main", 1)[1])
    secrets_seen = {
        "password": [PASSWORD, generated, typed],
        "TOTP secret": [alice_secret, root_secret, root_secret[:16]],
        "code": codes,
        "API token": [token, token.removeprefix("smfa_")],
        "session cookie": sorted(c for c in cookies if c),
    }
    for kind, values in secrets_seen.items():
        for value in values:
            for text in texts:
                assert value not in text, f"{kind} found in: {text[:200]}"


# --- SC-30: nothing secret in the audit trail or the logs


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
