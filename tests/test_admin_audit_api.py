"""The audit log page (/admin/audit), `audit prune`, the users API (`GET /api/v1/users`,
`POST /api/v1/users/<username>/unlock`) and `user unlock`.

SC-24 (who may read the log and use the API) and SC-30 (the new events are recorded,
with actor and target, and no secret reaches a record, a log line or the page). Also
`init-db` upgrading a database made before the step-up column existed.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re

import pytest
from conftest import PASSWORD, START, Browser, events

from standalone_mfa.accounts import tokens
from standalone_mfa.core import audit
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import MfaThrottle, User, WebSession

WRONG_PASSWORD = "not the right password at all"


# --- helpers ---------------------------------------------------------------------------------


def make_token(app, username):
    with app.app_context():
        return tokens.create_token(User.get(User.username == username), actor="test")


def call(app, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().open(path, method=method, headers=headers, **kwargs)


def set_code_failures(app, username, failures):
    with app.app_context():
        who = User.get(User.username == username)
        MfaThrottle.delete().where(MfaThrottle.user == who).execute()
        MfaThrottle.create(user=who, failures=failures, last_failure_at=START)


def code_failures(app, username):
    with app.app_context():
        row = MfaThrottle.select().join(User).where(User.username == username).get_or_none()
        return row.failures if row else 0


def sessions_of(app, username):
    with app.app_context():
        return WebSession.select().join(User).where(User.username == username).count()


def cli(app, *args):
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def signed_in_root(app, clock):
    admin = Browser(app, clock)
    assert admin.login("root").headers["Location"] == "/"
    return admin


def add_events(app, clock, specs):
    """Audit events at given offsets (seconds) from now, as (event, user, actor)."""
    start = clock.now()
    with app.app_context():
        for offset, event, username, actor in specs:
            clock.set(start + dt.timedelta(seconds=offset))
            audit.record(event, "ok", username=username, actor=actor)
    clock.set(start)


def listed(page):
    """(event, user, actor) of each row of the audit table, top to bottom."""
    rows = re.findall(r"<tr>\s*<td><time[^>]*>[^<]*</time></td>(.*?)</tr>", page, re.S)
    out = []
    for row in rows:
        cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        out.append((cells[0], cells[2], cells[3]))
    return out


# --- /admin/audit ----------------------------------------------------------------------------


def test_audit_page_lists_every_event_newest_first(app, clock):
    admin = signed_in_root(app, clock)
    add_events(
        app, clock, [(60, "unlock", "bob", "root"), (120, "admin_granted", "alice", "root")]
    )
    page = admin.page("/admin/audit")
    rows = listed(page)
    assert rows[:3] == [
        ("admin_granted", "alice", "root"),
        ("unlock", "bob", "root"),
        ("login", "root", "—"),
    ]
    assert len(rows) == len(events(app))
    assert '<time datetime="2026-11-28T12:02:00Z">2026-11-28 12:02:00</time>' in page
    assert page.count('<th scope="col">') == 7
    assert "Administration</a> » Security » Audit log" in page


def test_audit_page_filters_by_user_event_and_dates(app, clock):
    admin = signed_in_root(app, clock)
    day = 24 * 3600
    add_events(
        app,
        clock,
        [
            (-3 * day, "totp_reset", "alice", "root"),
            (-2 * day, "unlock", "bob", "alice"),
            (-1 * day, "unlock", "bob", "root"),
            (-1 * day + 60, "session_revoked", "carol", "root"),
        ],
    )
    # By user: the events about alice and the ones she did.
    assert listed(admin.page("/admin/audit?user=Alice")) == [
        ("user_created", "alice", "—"),  # by the test fixture, at START
        ("unlock", "bob", "alice"),
        ("totp_reset", "alice", "root"),
    ]
    assert listed(admin.page("/admin/audit?event=unlock")) == [
        ("unlock", "bob", "root"),
        ("unlock", "bob", "alice"),
    ]
    # Dates are UTC days, both ends included.
    assert listed(admin.page("/admin/audit?start=2026-11-26&end=2026-11-27")) == [
        ("session_revoked", "carol", "root"),
        ("unlock", "bob", "root"),
        ("unlock", "bob", "alice"),
    ]
    assert listed(admin.page("/admin/audit?end=2026-11-25")) == [("totp_reset", "alice", "root")]
    combined = "/admin/audit?user=bob&event=unlock&start=2026-11-27"
    assert listed(admin.page(combined)) == [("unlock", "bob", "root")]
    # The event filter offers every kind of event on record.
    page = admin.page("/admin/audit")
    for event in ("login", "session_revoked", "totp_reset", "unlock", "user_created"):
        assert f'<option value="{event}">' in page


@pytest.mark.parametrize(
    "query, message",
    [
        ("start=yesterday", "Not a valid date value"),
        ("start=2026-11-28&end=2026-11-01", "The end date is before the start date."),
        ("event=no_such_event", "Not a valid choice"),
    ],
)
def test_audit_page_explains_a_bad_filter(app, clock, query, message):
    admin = signed_in_root(app, clock)
    response = admin.get(f"/admin/audit?{query}")
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert re.search(rf'role="alert">[^<]*{re.escape(message)}', page), page
    assert listed(page)  # every event is still shown


def test_audit_page_is_paginated(app, clock):
    admin = signed_in_root(app, clock)
    add_events(app, clock, [(i, "unlock", f"user{i:02d}", "root") for i in range(1, 61)])
    total = len(events(app))
    first = admin.page("/admin/audit?event=unlock")
    assert len(listed(first)) == 50
    assert listed(first)[0] == ("unlock", "user60", "root")
    assert "Page 1 of 2" in first
    assert 'href="/admin/audit?event=unlock&amp;page=2"' in first
    second = admin.page("/admin/audit?event=unlock&page=2")
    assert [row[1] for row in listed(second)] == [f"user{i:02d}" for i in range(10, 0, -1)]
    assert f"{total} events" in admin.page("/admin/audit")


@pytest.mark.parametrize("path", ["/admin/audit", "/admin/audit?user=alice"])
def test_sc24_audit_page_only_for_signed_in_administrators(app, clock, new_browser, path):
    assert new_browser().get(path).headers["Location"].startswith("/login")
    alice = new_browser()
    alice.login()
    response = alice.get(path)
    assert response.status_code == 403
    assert "login" not in response.get_data(as_text=True).split("<main", 1)[1]


def test_sc24_audit_page_not_for_admin_pending_mfa(totp_app, clock, new_browser):
    new_browser().enrol("root")
    clock.advance(60)
    pending = new_browser()
    assert pending.login("root").headers["Location"] == "/mfa/verify"
    assert pending.get("/admin/audit").headers["Location"] == "/mfa/verify"


# --- SC-30: the new events, and no secret anywhere ----------------------------------------


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
    token = make_token(totp_app, "root")
    assert call(totp_app, "POST", "/api/v1/users/alice/unlock", token).status_code == 200
    cli(totp_app, "user", "unlock", "bob")

    seen = {(e.event, e.outcome, e.username, e.actor) for e in events(totp_app)}
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
    for event in events(totp_app):
        assert event.at.tzinfo is None and START <= event.at <= clock.now()

    audit_page = admin.page("/admin/audit")
    texts = [json.dumps(e.__data__, default=str) for e in events(totp_app)]
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


# --- audit prune -----------------------------------------------------------------------------


def test_cli_audit_prune_deletes_old_events_and_says_how_many(app, clock):
    day = 24 * 3600
    add_events(
        app,
        clock,
        [(-400 * day, "unlock", "bob", "root"), (-366 * day, "unlock", "bob", "root")]
        + [(-365 * day + 1, "unlock", "alice", "root"), (-10 * day, "unlock", "alice", "root")],
    )
    before = len(events(app))
    result = cli(app, "audit", "prune", "--older-than", "365d")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Deleted 2 audit events older than 365 days."
    remaining = events(app)
    assert len(remaining) == before - 2 + 1
    assert [(e.event, e.username) for e in remaining if e.event == "unlock"] == [
        ("unlock", "alice"),
        ("unlock", "alice"),
    ]
    (pruned,) = events(app, "audit_pruned")
    assert (pruned.actor, pruned.outcome) == ("cli", "ok")
    assert pruned.detail.startswith("2 events before 2025-11-28T12:00:00")
    result = cli(app, "audit", "prune", "--older-than", "30d")  # the one from 365 days ago
    assert result.output.strip() == "Deleted 1 audit events older than 30 days."


@pytest.mark.parametrize("value", ["365", "abc", "0d", "-5d", "12w", "", "1.5d", "99999999d"])
def test_cli_audit_prune_refuses_bad_input(app, value):
    before = len(events(app))
    result = cli(app, "audit", "prune", "--older-than", value)
    assert result.exit_code == 2
    assert "is not a number of days such as 365d" in result.output
    assert len(events(app)) == before


def test_cli_audit_prune_needs_the_option(app):
    result = cli(app, "audit", "prune")
    assert result.exit_code == 2
    assert "--older-than" in result.output


# --- GET /api/v1/users -----------------------------------------------------------------------


def test_api_users_lists_mfa_status(totp_app, clock, new_browser):
    new_browser().enrol("alice")
    set_code_failures(totp_app, "bob", DEFAULTS["MFA_LOCK_AFTER"])
    response = call(totp_app, "GET", "/api/v1/users", make_token(totp_app, "root"))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (1, 50, 3, 1)
    by_name = {u["username"]: u for u in body["users"]}
    assert list(by_name) == ["alice", "bob", "root"]
    assert by_name["alice"] == {
        "username": "alice",
        "is_admin": False,
        "enrolled": True,
        "confirmed_at": "2026-11-28T12:00:00Z",
        "last_sign_in": "2026-11-28T12:00:00Z",
        "code_failures": 0,
        "throttle": "ok",
        "password_failures": 0,
        "password_throttled": False,
    }
    assert by_name["bob"]["enrolled"] is False
    assert by_name["bob"]["throttle"] == "locked"
    assert by_name["root"]["is_admin"] is True
    assert "password_hash" not in response.get_data(as_text=True)


def test_api_users_pagination_and_search(app):
    with app.app_context():
        User.insert_many(
            [
                {"username": f"user{i:02d}", "password_hash": "x", "created_at": START}
                for i in range(25)
            ]
        ).execute()
    token = make_token(app, "root")
    body = call(app, "GET", "/api/v1/users?per_page=10&page=3", token).get_json()
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (3, 10, 28, 3)
    assert [u["username"] for u in body["users"]] == [f"user{i:02d}" for i in range(17, 25)]
    body = call(app, "GET", "/api/v1/users?q=user1", token).get_json()
    assert [u["username"] for u in body["users"]] == [f"user{i}" for i in range(10, 20)]
    assert call(app, "GET", "/api/v1/users?page=9", token).get_json()["users"] == []


@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page=x", "per_page=0", "per_page=201", "page=" + "9" * 5000]
)
def test_api_users_bad_pagination_is_400_json(app, query):
    response = call(app, "GET", f"/api/v1/users?{query}", make_token(app, "root"))
    assert response.status_code == 400
    assert response.is_json
    assert "must be a whole number from 1 to" in response.get_json()["error"]


def test_sc24_api_users_needs_an_admin_token(app):
    for path, method in (("/api/v1/users", "GET"), ("/api/v1/users/alice/unlock", "POST")):
        response = call(app, method, path)
        assert response.status_code == 401
        assert response.is_json
        assert call(app, method, path, "smfa_forged").status_code == 401
        response = call(app, method, path, make_token(app, "alice"))
        assert response.status_code == 403
        assert "users" not in response.get_json()
    assert events(app, "unlock") == []


def test_sc24_api_unlock_ignores_a_browser_session(app, clock):
    set_code_failures(app, "bob", DEFAULTS["MFA_LOCK_AFTER"])
    admin = signed_in_root(app, clock)
    response = admin.client.post("/api/v1/users/bob/unlock")
    assert response.status_code == 401
    assert code_failures(app, "bob") == DEFAULTS["MFA_LOCK_AFTER"]


# --- POST /api/v1/users/<username>/unlock ----------------------------------------------------


def test_api_unlock_clears_the_code_throttle_and_is_audited(totp_app, new_browser):
    alice = new_browser()
    alice.enrol()
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    token = make_token(totp_app, "root")
    response = call(totp_app, "POST", "/api/v1/users/alice/unlock", token)
    assert response.status_code == 200
    assert response.get_json() == {"username": "alice", "unlocked": True, "failures_cleared": 50}
    assert code_failures(totp_app, "alice") == 0
    assert sessions_of(totp_app, "alice") == 1  # unlocking ends no session
    (event,) = events(totp_app, "unlock")
    assert (event.username, event.actor, event.outcome) == ("alice", "root", "ok")
    again = call(totp_app, "POST", "/api/v1/users/alice/unlock", token).get_json()
    assert again == {"username": "alice", "unlocked": False, "failures_cleared": 0}
    assert events(totp_app, "unlock")[-1].outcome == "unchanged"


def test_api_unlock_unknown_user_is_404_with_a_message(app):
    response = call(app, "POST", "/api/v1/users/nobody/unlock", make_token(app, "root"))
    assert response.status_code == 404
    assert response.get_json() == {"error": "No such user."}
    assert (
        call(app, "GET", "/api/v1/users/alice/unlock", make_token(app, "root")).status_code == 405
    )
    assert events(app, "unlock") == []


def test_api_delete_totp_of_locked_user_without_credential_is_404_pointing_to_unlock(
    totp_app, new_browser
):
    # Stuck in set-up: no credential, but locked by wrong codes, and signed in pending.
    pending = new_browser()
    assert pending.login().headers["Location"] == "/mfa/setup"
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    token = make_token(totp_app, "root")
    response = call(totp_app, "DELETE", "/api/v1/users/alice/totp", token)
    assert response.status_code == 404
    assert "/api/v1/users/alice/unlock" in response.get_json()["error"]
    # Nothing was reset: no "an administrator reset your MFA" for a user who had none.
    assert code_failures(totp_app, "alice") == DEFAULTS["MFA_LOCK_AFTER"]
    assert sessions_of(totp_app, "alice") == 1
    assert events(totp_app, "totp_reset") == []
    with totp_app.app_context():
        assert User.get(User.username == "alice").mfa_reset_at is None
    assert call(totp_app, "POST", "/api/v1/users/alice/unlock", token).status_code == 200
    assert code_failures(totp_app, "alice") == 0


# --- user unlock (CLI) -----------------------------------------------------------------------


def test_cli_user_unlock(app):
    set_code_failures(app, "alice", 7)
    result = cli(app, "user", "unlock", "Alice")
    assert result.exit_code == 0
    assert result.output.strip() == "Unlocked 'alice' (7 wrong codes forgiven)."
    assert code_failures(app, "alice") == 0
    (event,) = events(app, "unlock")
    assert (event.username, event.actor, event.outcome) == ("alice", "cli", "ok")
    result = cli(app, "user", "unlock", "alice")
    assert result.exit_code == 0
    assert "was not throttled or locked; nothing changed" in result.output


def test_cli_user_unlock_unknown_user_fails(app):
    result = cli(app, "user", "unlock", "nobody")
    assert result.exit_code == 1
    assert "No user named 'nobody'." in result.output
    assert events(app, "unlock") == []


def test_cli_mfa_reset_without_credential_points_to_unlock(totp_app):
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    result = cli(totp_app, "mfa", "reset", "alice")
    assert result.exit_code == 1
    assert "user unlock alice" in result.output
    assert code_failures(totp_app, "alice") == DEFAULTS["MFA_LOCK_AFTER"]
    assert events(totp_app, "totp_reset") == []


def test_sc24_api_wrong_method_without_token_is_401(app):
    for method in ("HEAD", "GET", "PUT"):
        response = call(app, method, "/api/v1/users/alice/unlock")
        assert response.status_code == 401, method
    assert (
        call(app, "PUT", "/api/v1/users/alice/unlock", make_token(app, "alice")).status_code == 403
    )
    assert (
        call(app, "PUT", "/api/v1/users/alice/unlock", make_token(app, "root")).status_code == 405
    )


# --- upgrading a database made before the step-up column ------------------------------------


def test_init_db_adds_the_step_up_column_to_an_older_database(app, clock):
    from playhouse.migrate import SchemaMigrator, migrate

    from standalone_mfa.core.db import db

    with app.app_context():
        migrate(SchemaMigrator.from_database(db.obj).drop_column("web_session", "step_up_at"))
        assert "step_up_at" not in {c.name for c in db.get_columns("web_session")}
    assert cli(app, "init-db").exit_code == 0
    with app.app_context():
        assert "step_up_at" in {c.name for c in db.get_columns("web_session")}
    admin = signed_in_root(app, clock)
    admin.get("/admin/step-up")
    assert (
        admin.post("/admin/step-up", {"password": PASSWORD}).headers["Location"] == "/admin/users"
    )
    assert admin.get("/admin/users/alice/unlock").status_code == 200
