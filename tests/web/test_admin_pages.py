"""web/admin: the Administration pages (the MFA setting, Users, the audit log): who may
open them, POST with CSRF only, lists, filters and pages (SC-24, SC-25)."""

from __future__ import annotations

import html
import re

import pytest
from support.app import PASSWORD, START
from support.client import totp_api
from support.db import (
    add_events,
    audit_events,
    mfa_method,
    set_code_failures,
    state_snapshot,
    user,
)
from support.pages import VALUE_RE, row_of
from support.steps import (
    ACTIONS,
    api_token,
    save_mfa_settings,
    signed_in_admin,
    step_up,
)

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import User
from standalone_mfa.directory import groups

SELECT_RE = re.compile(r'<select[^>]*\bname="mfa_method"[^>]*>(.*?)</select>', re.S)


OPTION_RE = re.compile(r"<option([^>]*)>([^<]*)</option>")


ADMIN_PATHS = ("/admin/", "/admin/mfa")


def select_options(page):
    """[(value, label, selected)] of the mfa_method select."""
    match = SELECT_RE.search(page)
    assert match, "no <select name=mfa_method> on the page"
    options = []
    for attributes, label in OPTION_RE.findall(match.group(1)):
        value = VALUE_RE.search(attributes)
        options.append((value.group(1) if value else None, label, "selected" in attributes))
    return options


ADMIN_USER_PATHS = (
    "/admin/users",
    "/admin/users?q=ali&page=2",
    "/admin/users/new",
    "/admin/step-up",
    "/admin/users/alice/groups",
    *(f"/admin/users/alice/{action}" for action in ACTIONS),
)


def listed_usernames(page):
    return re.findall(r'<th scope="row">([^<]+)</th>', page)


def audit_rows(page):
    """The cells of each row of the audit table after the time, top to bottom."""
    rows = re.findall(r"<tr>\s*<td><time[^>]*>[^<]*</time></td>(.*?)</tr>", page, re.S)
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)] for row in rows]


def event_cell(cell):
    """(label, event, outcome) of an audit row's Event cell: the words people read,
    then the names as recorded."""
    found = re.fullmatch(
        r'([^<]*)<br><span class="event-code"[^>]*>([^ <]+) · ([^ <]+)</span>', cell
    )
    assert found, cell
    return found.groups()


def listed(page):
    """(event, user, actor) of each row of the audit table, top to bottom."""
    return [(event_cell(cells[0])[1], cells[1], cells[2]) for cells in audit_rows(page)]


# --- the Administration pages


def test_admin_index_links_to_mfa_setting_under_users_and_permissions(app, clock):
    admin = signed_in_admin(app, clock)
    page = admin.page("/admin/")
    assert "<title>Administration" in page
    section = page.index("Users and Permissions")
    link = re.search(r'<a href="/admin/mfa">\s*Multi-Factor Authentication\s*</a>', page)
    assert link, "no link to /admin/mfa labelled Multi-Factor Authentication"
    assert section < link.start()
    # And the home page of an admin leads there.
    assert 'href="/admin/"' in admin.page("/")


def test_admin_mfa_page_offers_disabled_and_totp(app, clock):
    admin = signed_in_admin(app, clock)
    response = admin.get("/admin/mfa")
    assert response.status_code == 200
    options = select_options(response.get_data(as_text=True))
    assert [(value, label) for value, label, _ in options] == [
        ("disabled", "Disabled"),
        ("totp", "TOTP"),
    ]
    assert [value for value, _, selected in options if selected] == ["disabled"]


def test_admin_saves_totp_with_confirmation_and_audit(app, clock):
    admin = signed_in_admin(app, clock)
    response = save_mfa_settings(admin, {"mfa_method": "totp"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/mfa"
    assert mfa_method(app) == "totp"
    # The admin signed in with a password only: TOTP now applies to them too (SC-27).
    response = admin.get("/admin/mfa")
    assert response.headers["Location"] == "/login?next=/admin/mfa"
    page = admin.page(response.headers["Location"])
    assert "Multi-Factor Authentication is now set to TOTP." in page
    assert "Please sign in again" in page
    admin.login("root", PASSWORD, next="/admin/mfa")
    secret = admin.setup_secret()
    response = admin.submit_code("/mfa/setup", {"code": admin.code(secret)})
    assert response.headers["Location"] == "/admin/mfa"
    page = admin.page("/admin/mfa")
    assert [value for value, _, selected in select_options(page) if selected] == ["totp"]
    (event,) = audit_events(app, "mfa_method_changed")
    assert (event.actor, event.outcome) == ("root", "ok")
    assert "disabled" in event.detail and "totp" in event.detail


@pytest.mark.parametrize("value", ["sms", "", "TOTP", "totp "])
def test_admin_refuses_unknown_method(app, clock, value):
    admin = signed_in_admin(app, clock)
    response = save_mfa_settings(admin, {"mfa_method": value}, follow_redirects=True)
    assert response.status_code == 200
    assert "Choose Disabled or TOTP." in response.get_data(as_text=True)
    assert mfa_method(app) == "disabled"
    assert audit_events(app, "mfa_method_changed") == []


# --- the Users list


def test_users_page_shows_admin_flag_groups_mfa_status_dates_and_throttle(
    totp_app, clock, new_browser
):
    new_browser().enrol("alice")  # set up at START, signed in at START
    set_code_failures(totp_app, "bob", DEFAULTS["MFA_BACKOFF_AFTER"])
    clock.advance(3600)
    admin = signed_in_admin(totp_app, clock)
    with totp_app.app_context():
        User.create(username="carol", password_hash="x", created_at=START)
        for group in ("wiki", "staff"):
            groups.add(User.get(User.username == "alice"), group, actor="test")
    set_code_failures(totp_app, "carol", DEFAULTS["MFA_LOCK_AFTER"])

    page = admin.page("/admin/users")
    assert listed_usernames(page) == ["alice", "bob", "carol", "root"]
    assert row_of(page, "alice")[:8] == [
        "No",
        "staff, wiki Change",
        "None Change",
        "Set up",
        "2026-11-28 12:00",
        "2026-11-28 12:00",
        "OK",
        "Reset MFA Make administrator Sign out everywhere",
    ]
    assert 'href="/admin/users/alice/groups" aria-label="Change groups: alice"' in page
    assert row_of(page, "bob")[:7] == [
        "No",
        "None Change",
        "None Change",
        "Not set up",
        "—",
        "Never",
        "Throttled (5 wrong codes)",
    ]
    assert "Unlock" in row_of(page, "bob")[7]
    assert row_of(page, "carol")[6] == "Locked (50 wrong codes)"
    assert row_of(page, "root")[:6] == [
        "Yes",
        "None Change",
        "None Change",
        "Set up",
        "2026-11-28 13:00",
        "2026-11-28 13:00",
    ]
    assert "Revoke administrator" in row_of(page, "root")[7]
    # Headers for every column, for screen readers.
    assert page.count('<th scope="col">') == 9


def test_users_page_search_and_pagination(app, clock):
    with app.app_context():
        User.insert_many(
            [
                {"username": f"user{i:02d}", "password_hash": "x", "created_at": START}
                for i in range(60)
            ]
        ).execute()
    admin = signed_in_admin(app, clock)

    first = admin.page("/admin/users")
    assert len(listed_usernames(first)) == 50
    assert listed_usernames(first)[:3] == ["alice", "bob", "root"]
    assert "63 users" in first
    assert "Page 1 of 2" in first
    assert 'href="/admin/users?page=2"' in first
    second = admin.page("/admin/users?page=2")
    assert listed_usernames(second) == [f"user{i:02d}" for i in range(47, 60)]
    assert 'href="/admin/users?page=1"' in second

    assert listed_usernames(admin.page("/admin/users?q=USER05")) == ["user05"]
    assert listed_usernames(admin.page("/admin/users?q=ali")) == ["alice"]
    # A search term is text, not a pattern.
    assert listed_usernames(admin.page("/admin/users?q=_")) == []
    assert listed_usernames(admin.page("/admin/users?q=%25")) == []
    # Pages keep the search; odd page numbers do no harm.
    page = admin.page("/admin/users?q=user&page=2")
    assert "q=user" in page and listed_usernames(page) == [f"user{i:02d}" for i in range(50, 60)]
    assert admin.get("/admin/users?page=abc").status_code == 200
    assert listed_usernames(admin.page("/admin/users?page=-3"))[:1] == ["alice"]
    assert listed_usernames(admin.page("/admin/users?q=nobody")) == []


# --- links between the pages, and paging


def test_admin_pages_link_to_each_other(app, clock):
    admin = signed_in_admin(app, clock)
    index = admin.page("/admin/")
    for link in ("/admin/users", "/admin/mfa", "/admin/audit"):
        assert f'href="{link}"' in index
    for path in ("/admin/users", "/admin/mfa", "/admin/audit"):
        page = admin.page(path)
        for link in ("/admin/", "/admin/users", "/admin/mfa", "/admin/audit"):
            assert f'href="{link}"' in page, (path, link)
        assert 'aria-current="page"' in page
    assert "Users and Permissions » Users" in admin.page("/admin/users")


def test_page_past_the_end_shows_the_last_page(app):
    from standalone_mfa.accounts import administration

    with app.app_context():
        page = administration.list_users(page=99, clamp=True)
        assert page.page == page.pages == 1 and len(page.items) == 3


# --- /admin/audit


def test_audit_page_lists_every_event_newest_first(app, clock):
    admin = signed_in_admin(app, clock)
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
    assert len(rows) == len(audit_events(app))
    assert '<time datetime="2026-11-28T12:02:00Z">2026-11-28 12:02:00</time>' in page
    assert page.count('<th scope="col">') == 6
    # Each row in people's words, the recorded names beside them.
    labelled = [event_cell(cells[0]) for cells in audit_rows(page)][:3]
    assert labelled == [
        ("Administrator rights granted", "admin_granted", "ok"),
        ("Unlocked by an administrator", "unlock", "ok"),
        ("Signed in", "login", "ok"),
    ]
    assert "Administration</a> » Security » Audit log" in page


def test_audit_page_filters_by_user_event_and_dates(app, clock):
    admin = signed_in_admin(app, clock)
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
    admin = signed_in_admin(app, clock)
    response = admin.get(f"/admin/audit?{query}")
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert re.search(rf'role="alert">[^<]*{re.escape(message)}', page), page
    assert listed(page)  # every event is still shown


def test_audit_page_is_paginated(app, clock):
    admin = signed_in_admin(app, clock)
    add_events(app, clock, [(i, "unlock", f"user{i:02d}", "root") for i in range(1, 61)])
    total = len(audit_events(app))
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


# --- SC-24: who may use the admin pages


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_sc24_admin_pages_send_anonymous_to_login(app, browser, path):
    response = browser.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_sc24_admin_post_as_anonymous_changes_nothing(app, browser):
    browser.get("/login")  # a valid CSRF token, so only the authorisation can refuse
    response = browser.post("/admin/mfa", {"mfa_method": "totp"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert mfa_method(app) == "disabled"
    assert audit_events(app, "mfa_method_changed") == []


def test_sc24_admin_pages_forbidden_to_normal_user(app, browser):
    assert browser.login("alice").headers["Location"] == "/"
    for path in ADMIN_PATHS:
        response = browser.get(path)
        assert response.status_code == 403, path
        assert "Multi-Factor Authentication method" not in response.get_data(as_text=True)
    assert "/admin/" not in browser.page("/")
    response = browser.post("/admin/mfa", {"mfa_method": "totp"})
    assert response.status_code == 403
    assert mfa_method(app) == "disabled"
    assert audit_events(app, "mfa_method_changed") == []


def test_sc24_admin_pending_mfa_cannot_reach_admin_pages(totp_app, clock, new_browser):
    # Pending set-up: root has no authenticator yet.
    pending = new_browser()
    assert pending.login("root").headers["Location"] == "/mfa/setup"
    for path in ADMIN_PATHS:
        response = pending.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/mfa/setup"
    pending.get("/mfa/setup")  # a CSRF token of this session: only the state may refuse
    response = pending.post("/admin/mfa", {"mfa_method": "disabled"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/mfa/setup"
    assert mfa_method(totp_app) == "totp"

    # Pending code: root has set up, a later sign-in has only passed the password.
    pending.enrol("root")
    clock.advance(60)
    later = new_browser()
    assert later.login("root").headers["Location"] == "/mfa/verify"
    for path in ADMIN_PATHS:
        response = later.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/mfa/verify"
    later.get("/mfa/verify")
    response = later.post("/admin/mfa", {"mfa_method": "disabled"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/mfa/verify"
    assert mfa_method(totp_app) == "totp"
    # Only the fixture's own change is on record.
    assert [e.actor for e in audit_events(totp_app, "mfa_method_changed")] == ["test"]


# --- SC-24: who may use the Users pages


@pytest.mark.parametrize("path", ADMIN_USER_PATHS)
def test_sc24_admin_user_pages_send_anonymous_to_login(app, browser, path):
    response = browser.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("action", ACTIONS)
def test_sc24_anonymous_and_normal_user_cannot_act(app, clock, new_browser, action):
    set_code_failures(app, "bob", 3)
    alice = new_browser()
    alice.login()
    alice.get("/")
    before = state_snapshot(app)
    anonymous = new_browser()
    anonymous.get("/login")  # a valid CSRF token: only the authorisation may refuse
    response = anonymous.post(f"/admin/users/bob/{action}")
    assert response.headers["Location"].startswith("/login")
    # A normal user, on someone else's account and on their own.
    for target in ("bob", "alice"):
        assert alice.get(f"/admin/users/{target}/{action}").status_code == 403
        assert alice.post(f"/admin/users/{target}/{action}").status_code == 403
    assert alice.post("/admin/step-up", {"password": PASSWORD}).status_code == 403
    assert alice.post("/admin/users/new", {"username": "mallory"}).status_code == 403
    assert state_snapshot(app) == before
    assert [e.event for e in audit_events(app)].count("reauth") == 0


def test_sc24_normal_user_sees_no_users_page(app, browser):
    browser.login()
    response = browser.get("/admin/users")
    assert response.status_code == 403
    assert "root" not in response.get_data(as_text=True)


def test_sc24_admin_pending_mfa_cannot_reach_user_pages(totp_app, clock, new_browser):
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    clock.advance(60)
    pending = new_browser()
    assert pending.login("root").headers["Location"] == "/mfa/verify"
    for path in ADMIN_USER_PATHS:
        response = pending.get(path)
        assert response.headers["Location"] == "/mfa/verify", path
    pending.get("/mfa/verify")
    before = state_snapshot(totp_app)
    # Even the step-up cannot be taken from a pending login.
    response = pending.post("/admin/step-up", {"code": pending.code(secret)})
    assert response.headers["Location"] == "/mfa/verify"
    response = pending.post("/admin/users/alice/grant-admin")
    assert response.headers["Location"] == "/mfa/verify"
    assert state_snapshot(totp_app) == before
    assert audit_events(totp_app, "reauth") == []


# --- SC-25: the MFA setting is POST only, with CSRF, audited


def test_sc25_admin_post_without_csrf_is_400_and_changes_nothing(app, clock):
    admin = signed_in_admin(app, clock)
    admin.get("/admin/mfa")
    response = admin.post("/admin/mfa", {"mfa_method": "totp"}, csrf=False)
    assert response.status_code == 400
    response = admin.post("/admin/mfa", {"mfa_method": "totp", "csrf_token": "forged"})
    assert response.status_code == 400
    assert mfa_method(app) == "disabled"
    assert audit_events(app, "mfa_method_changed") == []


def test_sc25_admin_csrf_token_of_another_session_is_refused(app, clock, new_browser):
    admin = signed_in_admin(app, clock)
    attacker = new_browser()
    attacker.get("/login")
    admin.get("/admin/mfa")
    response = admin.post("/admin/mfa", {"mfa_method": "totp", "csrf_token": attacker.token})
    assert response.status_code == 400
    assert mfa_method(app) == "disabled"


def test_sc25_admin_setting_changes_only_by_post(app, clock):
    admin = signed_in_admin(app, clock)
    assert admin.get("/admin/mfa?mfa_method=totp").status_code == 200
    for method in ("put", "patch", "delete"):
        response = getattr(admin.client, method)("/admin/mfa", data={"mfa_method": "totp"})
        assert response.status_code in (400, 405), method
    assert mfa_method(app) == "disabled"
    assert audit_events(app, "mfa_method_changed") == []


def test_sc25_admin_actions_are_audited_with_actor_target_outcome(totp_app, clock, new_browser):
    new_browser().enrol("alice")
    admin = signed_in_admin(totp_app, clock)
    save_mfa_settings(admin, {"mfa_method": "disabled"})
    save_mfa_settings(admin, {"mfa_method": "disabled"})  # saved again: no change
    totp_api(totp_app, "DELETE", "alice", api_token(totp_app, "root"))

    changes = [e for e in audit_events(totp_app, "mfa_method_changed") if e.actor == "root"]
    assert [(e.outcome, e.ip) for e in changes] == [
        ("ok", "127.0.0.1"),
        ("unchanged", "127.0.0.1"),
    ]
    assert "totp" in changes[0].detail and "disabled" in changes[0].detail
    (reset,) = audit_events(totp_app, "totp_reset")
    assert (reset.actor, reset.username, reset.outcome) == ("root", "alice", "ok")


# --- SC-25: user actions are POST only, with CSRF


@pytest.mark.parametrize("action", ACTIONS)
def test_sc25_user_actions_need_post_with_csrf(app, clock, new_browser, action):
    set_code_failures(app, "bob", 3)
    admin = signed_in_admin(app, clock)
    step_up(admin)
    before = state_snapshot(app)
    # The confirmation page changes nothing, whatever its query string says.
    page = admin.page(f"/admin/users/bob/{action}?confirm=1")
    assert 'method="post"' in page and 'name="csrf_token"' in page
    for method in ("put", "patch", "delete"):
        assert getattr(admin.client, method)(f"/admin/users/bob/{action}").status_code == 405
    assert admin.post(f"/admin/users/bob/{action}", csrf=False).status_code == 400
    attacker = new_browser()
    attacker.get("/login")
    response = admin.post(f"/admin/users/bob/{action}", {"csrf_token": attacker.token})
    assert response.status_code == 400
    assert state_snapshot(app) == before
    assert not [e for e in audit_events(app) if e.actor == "root" and e.event != "reauth"]


def test_sc25_create_user_needs_csrf(app, clock):
    admin = signed_in_admin(app, clock)
    step_up(admin)
    response = admin.post("/admin/users/new", {"username": "mallory"}, csrf=False)
    assert response.status_code == 400
    assert user(app, "mallory") is None
