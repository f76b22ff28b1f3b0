"""Administration » Users and Permissions » Users: the list, the step-up, and each
action on a user (reset MFA, unlock, create, make or revoke administrator, sign out
everywhere), through the browser as an administrator would use them.

SC-24 (who may use the pages), SC-25 (POST, CSRF, confirmation, audit), SC-26 (reset
from the page), and the step-up rules: a recent code (or, without an authenticator,
the password), used up, throttled and audited.
"""

from __future__ import annotations

import html
import logging
import re

import pytest
from conftest import PASSWORD, START, Browser, events, make_app

from standalone_mfa.accounts.users import find_user
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import (
    AuditEvent,
    MfaThrottle,
    PasswordThrottle,
    TotpCredential,
    User,
    WebSession,
)
from standalone_mfa.factors import throttle

WRONG_PASSWORD = "not the right password at all"
ACTIONS = ("reset-mfa", "unlock", "grant-admin", "revoke-admin", "sign-out")
ADMIN_USER_PATHS = (
    "/admin/users",
    "/admin/users?q=ali&page=2",
    "/admin/users/new",
    "/admin/step-up",
    *(f"/admin/users/alice/{action}" for action in ACTIONS),
)
# What each action's POST leaves in the database, for the "nothing changed" checks.


# --- helpers ----------------------------------------------------------------------------------


def user(app, username):
    with app.app_context():
        return User.get_or_none(User.username == username)


def has_credential(app, username):
    with app.app_context():
        return TotpCredential.select().join(User).where(User.username == username).exists()


def code_failures(app, username):
    with app.app_context():
        row = MfaThrottle.select().join(User).where(User.username == username).get_or_none()
        return row.failures if row else 0


def set_code_failures(app, username, failures):
    """As if `username` had entered `failures` wrong codes in a row."""
    with app.app_context():
        who = User.get(User.username == username)
        MfaThrottle.delete().where(MfaThrottle.user == who).execute()
        MfaThrottle.create(user=who, failures=failures, last_failure_at=START)


def sessions_of(app, username):
    with app.app_context():
        return WebSession.select().join(User).where(User.username == username).count()


def state_snapshot(app):
    """Everything an action on a user could change."""
    with app.app_context():
        return (
            sorted((u.username, u.is_admin) for u in User.select()),
            TotpCredential.select().count(),
            sorted((t.user_id, t.failures) for t in MfaThrottle.select()),
            WebSession.select().where(WebSession.user.is_null(False)).count(),
        )


def admin_signed_in(app, clock):
    """root signed in (through the second factor when the method is TOTP); returns the
    browser and root's TOTP secret (None without one)."""
    admin = Browser(app, clock)
    with app.app_context():
        from standalone_mfa.accounts import settings

        totp_on = settings.mfa_method() == "totp"
    secret = admin.enrol("root") if totp_on else None
    if not totp_on:
        assert admin.login("root").headers["Location"] == "/"
    assert admin.get("/admin/users").status_code == 200
    return admin, secret


def step_up(admin, secret=None, steps=1):
    """Prove it is root again: the code `steps` time steps ahead (the sign-in code's
    step is used up), or the password when root has no authenticator."""
    admin.get("/admin/step-up")
    if secret:
        admin.clock.advance(30 * steps)
        response = admin.post("/admin/step-up", {"code": admin.code(secret)})
    else:
        response = admin.post("/admin/step-up", {"password": PASSWORD})
    assert response.status_code == 302
    assert "/admin/step-up" not in response.headers["Location"], flashes(admin)
    return response


def act(admin, username, action):
    """Open the confirmation page, then press its button."""
    page = admin.get(f"/admin/users/{username}/{action}")
    assert page.status_code == 200, page.headers.get("Location")
    return admin.post(f"/admin/users/{username}/{action}")


def flashes(browser):
    page = browser.page("/admin/")
    return [html.unescape(m) for m in re.findall(r'<p class="message [^"]*"[^>]*>([^<]*)<', page)]


def row_of(page, username):
    """The cells of one user's line in the Users table."""
    match = re.search(rf'<th scope="row">{re.escape(username)}</th>(.*?)</tr>', page, re.S)
    assert match, f"no row for {username}"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]


def listed_usernames(page):
    return re.findall(r'<th scope="row">([^<]+)</th>', page)


def sign_in_with_code(browser, secret, username="alice"):
    browser.clock.advance(30)
    assert browser.login(username).headers["Location"] == "/mfa/verify"
    return browser.post("/mfa/verify", {"code": browser.code(secret)})


# --- the list ---------------------------------------------------------------------------------


def test_users_page_shows_admin_flag_mfa_status_dates_and_throttle(totp_app, clock, new_browser):
    new_browser().enrol("alice")  # set up at START, signed in at START
    set_code_failures(totp_app, "bob", DEFAULTS["MFA_BACKOFF_AFTER"])
    clock.advance(3600)
    admin, _ = admin_signed_in(totp_app, clock)
    with totp_app.app_context():
        User.create(username="carol", password_hash="x", created_at=START)
    set_code_failures(totp_app, "carol", DEFAULTS["MFA_LOCK_AFTER"])

    page = admin.page("/admin/users")
    assert listed_usernames(page) == ["alice", "bob", "carol", "root"]
    assert row_of(page, "alice")[:6] == [
        "No",
        "Set up",
        "2026-11-28 12:00",
        "2026-11-28 12:00",
        "OK",
        "Reset MFA Make administrator Sign out everywhere",
    ]
    assert row_of(page, "bob")[:5] == ["No", "Not set up", "—", "Never", "Throttled (5 wrong)"]
    assert "Unlock" in row_of(page, "bob")[5]
    assert row_of(page, "carol")[4] == "Locked (50 wrong)"
    assert row_of(page, "root")[:4] == ["Yes", "Set up", "2026-11-28 13:00", "2026-11-28 13:00"]
    assert "Revoke administrator" in row_of(page, "root")[5]
    # Headers for every column, for screen readers.
    assert page.count('<th scope="col">') == 7


def test_users_page_search_and_pagination(app, clock):
    with app.app_context():
        User.insert_many(
            [
                {"username": f"user{i:02d}", "password_hash": "x", "created_at": START}
                for i in range(60)
            ]
        ).execute()
    admin, _ = admin_signed_in(app, clock)

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


# --- step-up ----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_step_up_required_for_each_user_action(app, clock, action):
    set_code_failures(app, "alice", 3)
    admin, _ = admin_signed_in(app, clock)
    before = state_snapshot(app)
    response = admin.get(f"/admin/users/alice/{action}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/step-up?next=/admin/users/alice/{action}"
    # A POST straight away (a forged or stale form with a valid token) is not done either.
    response = admin.post(f"/admin/users/alice/{action}")
    assert response.headers["Location"] == f"/admin/step-up?next=/admin/users/alice/{action}"
    assert state_snapshot(app) == before

    response = admin.get(response.headers["Location"])
    assert 'name="password"' in response.get_data(as_text=True)  # root has no authenticator
    response = admin.post(
        f"/admin/step-up?next=/admin/users/alice/{action}", {"password": PASSWORD}
    )
    assert response.headers["Location"] == f"/admin/users/alice/{action}"
    assert act(admin, "alice", action).status_code == 302


def test_step_up_required_to_create_a_user(app, clock):
    admin, _ = admin_signed_in(app, clock)
    response = admin.get("/admin/users/new")
    assert response.headers["Location"] == "/admin/step-up?next=/admin/users/new"
    response = admin.post("/admin/users/new", {"username": "carol"})
    assert response.headers["Location"] == "/admin/step-up?next=/admin/users/new"
    assert user(app, "carol") is None
    step_up(admin)
    admin.get("/admin/users/new")
    assert admin.post("/admin/users/new", {"username": "carol"}).status_code == 200
    assert user(app, "carol") is not None


def test_step_up_lasts_the_configured_time_on_this_session_only(tmp_path, clock):
    app = make_app(tmp_path, clock, ADMIN_STEP_UP_SECONDS=120)
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    other_tab_of_root, _ = admin_signed_in(app, clock)  # another session of the same admin
    assert other_tab_of_root.get("/admin/users/alice/unlock").status_code == 302
    clock.advance(120)
    assert admin.get("/admin/users/alice/unlock").status_code == 200
    clock.advance(1)
    response = admin.get("/admin/users/alice/unlock")
    assert response.headers["Location"].startswith("/admin/step-up")
    # Signing out and in again starts without a step-up.
    step_up(admin)
    admin.logout()
    admin.login("root")
    assert admin.get("/admin/users/alice/unlock").headers["Location"].startswith("/admin/step-up")


def test_step_up_is_server_side(app, clock):
    admin, _ = admin_signed_in(app, clock)
    cookie_before = admin.cookie()
    step_up(admin)
    assert admin.cookie() == cookie_before  # nothing about the step-up rides in the cookie
    with app.app_context():
        (row,) = WebSession.select().join(User).where(User.username == "root")
        assert row.step_up_at == START


def test_step_up_with_code_uses_up_the_step_counts_failures_and_is_audited(totp_app, clock):
    admin, secret = admin_signed_in(totp_app, clock)
    page = admin.page("/admin/step-up")
    assert 'autocomplete="one-time-code"' in page and 'name="password"' not in page
    # The sign-in code's time step is used up: replaying it is refused.
    response = admin.post("/admin/step-up", {"code": admin.code(secret)})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert code_failures(totp_app, "root") == 1
    # A password is not what an administrator with an authenticator proves with.
    admin.get("/admin/step-up")
    admin.post("/admin/step-up", {"password": PASSWORD})
    assert code_failures(totp_app, "root") == 2
    assert admin.get("/admin/users/alice/unlock").status_code == 302
    # The next code works once, and forgives the failures.
    clock.advance(30)
    code = admin.code(secret)
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up?next=/admin/users/alice/unlock", {"code": code})
    assert response.headers["Location"] == "/admin/users/alice/unlock"
    assert code_failures(totp_app, "root") == 0
    assert admin.get("/admin/users/alice/unlock").status_code == 200

    outcomes = [(e.outcome, e.detail, e.username, e.actor) for e in events(totp_app, "reauth")]
    assert outcomes == [
        ("failed", "code", "root", "root"),
        ("failed", "code", "root", "root"),
        ("ok", "code", "root", "root"),
    ]
    # The code that served this step-up cannot serve another.
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up", {"code": code})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert [e.username for e in events(totp_app, "totp_replay")] == ["root", "root"]
    assert events(totp_app, "reauth")[-1].outcome == "failed"


def test_step_up_codes_are_throttled_like_sign_in_codes(totp_app, clock):
    admin, secret = admin_signed_in(totp_app, clock)
    for _ in range(DEFAULTS["MFA_BACKOFF_AFTER"]):
        admin.get("/admin/step-up")
        admin.post("/admin/step-up", {"code": "000000"})
    admin.get("/admin/step-up")
    # The next step's code would be right, but the back-off refuses it unseen.
    response = admin.post("/admin/step-up", {"code": admin.code(secret, steps=1)})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert flashes(admin) == ["Too many wrong codes. Wait 1 second, then try again."]
    assert events(totp_app, "reauth")[-1].outcome == "throttled"
    assert admin.get("/admin/users/alice/unlock").status_code == 302
    clock.advance(2)  # the back-off (1 s after the 5th failure) has passed
    step_up(admin, secret)


def test_step_up_password_counts_against_the_password_throttle(app, clock):
    admin, _ = admin_signed_in(app, clock)
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up", {"password": WRONG_PASSWORD})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert flashes(admin) == ["That password is not right."]
    with app.app_context():
        (row,) = PasswordThrottle.select()
        assert row.failures == 1
    (failed,) = events(app, "reauth")
    assert (failed.outcome, failed.detail, failed.actor) == ("failed", "password", "root")
    for _ in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"]):
        admin.get("/admin/step-up")
        admin.post("/admin/step-up", {"password": WRONG_PASSWORD})
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up", {"password": PASSWORD})  # right, but must wait
    assert response.headers["Location"].startswith("/admin/step-up")
    assert events(app, "reauth")[-1].outcome == "throttled"


def test_step_up_only_returns_to_admin_pages(app, clock):
    admin, _ = admin_signed_in(app, clock)
    for target in ("https://evil.example/", "//evil.example", "/", "/logout"):
        admin.get("/admin/step-up")
        response = admin.post(f"/admin/step-up?next={target}", {"password": PASSWORD})
        assert response.headers["Location"] == "/admin/users", target


# --- the actions ------------------------------------------------------------------------------


def test_sc26_reset_mfa_from_the_users_page(totp_app, clock, new_browser):
    alice = new_browser()
    alice.enrol()
    admin, secret = admin_signed_in(totp_app, clock)
    step_up(admin, secret)
    page = admin.page("/admin/users/alice/reset-mfa")
    assert "all their sessions end" in page
    response = admin.post("/admin/users/alice/reset-mfa")
    assert response.headers["Location"] == "/admin/users?q=alice"
    assert flashes(admin) == [
        "Two-factor authentication of alice was reset; their sessions ended."
    ]
    assert not has_credential(totp_app, "alice")
    assert sessions_of(totp_app, "alice") == 0
    assert alice.get("/").headers["Location"].startswith("/login")
    (event,) = events(totp_app, "totp_reset")
    assert (event.username, event.actor, event.outcome) == ("alice", "root", "ok")
    # Nothing left to reset: said so, nothing audited.
    admin.get("/admin/users/alice/reset-mfa")
    admin.post("/admin/users/alice/reset-mfa")
    assert flashes(admin) == ["alice has no authenticator to reset; nothing changed."]
    assert len(events(totp_app, "totp_reset")) == 1


def test_unlock_lets_a_locked_user_sign_in_again(totp_app, clock, new_browser):
    alice = new_browser()
    secret = alice.enrol()
    alice.logout()
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    response = sign_in_with_code(alice, secret)
    assert response.headers["Location"] == "/mfa/verify"
    assert "locked" in alice.page("/mfa/verify")

    admin, root_secret = admin_signed_in(totp_app, clock)
    assert "Locked (50 wrong)" in row_of(admin.page("/admin/users"), "alice")
    step_up(admin, root_secret)
    act(admin, "alice", "unlock")
    assert flashes(admin) == ["alice was unlocked and can enter a code again."]
    assert code_failures(totp_app, "alice") == 0
    assert has_credential(totp_app, "alice")  # the authenticator is kept

    alice.logout()
    assert sign_in_with_code(alice, secret).headers["Location"] == "/"
    (event,) = events(totp_app, "unlock")
    assert (event.username, event.actor, event.outcome, event.detail) == (
        "alice",
        "root",
        "ok",
        "50 failures",
    )
    act(admin, "alice", "unlock")
    assert flashes(admin) == ["alice was not throttled or locked; nothing changed."]
    assert events(totp_app, "unlock")[-1].outcome == "unchanged"


def test_create_user_with_generated_password_shown_once(app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    admin.get("/admin/users/new")
    response = admin.post("/admin/users/new", {"username": " Carol "})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    password = html.unescape(re.search(r'id="initial-password">([^<]+)<', page).group(1))
    assert len(password) >= 16
    assert "User carol was created." in page
    assert response.headers["Cache-Control"] == "no-store"

    # Shown in that response only: not in the next pages, the session, the audit, the logs.
    assert password not in admin.page("/admin/users")
    assert password not in admin.page("/admin/audit")
    with app.app_context():
        stored = [row.data for row in WebSession.select()]
        stored += [str(row.__data__) for row in AuditEvent.select()]
        assert User.get(User.username == "carol").password_hash != password
    logged = [record.getMessage() for record in caplog.records]
    for text in stored + logged:
        assert password not in text
    (created,) = [e for e in events(app, "user_created") if e.username == "carol"]
    assert (created.actor, created.outcome) == ("root", "ok")

    carol = Browser(app, clock)
    assert carol.login("carol", password).headers["Location"] == "/"


def test_create_user_with_typed_password(app, clock):
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    admin.get("/admin/users/new")
    typed = "a typed initial password"
    response = admin.post("/admin/users/new", {"username": "dave", "password": typed})
    assert response.headers["Location"] == "/admin/users?q=dave"
    page = admin.page("/admin/users?q=dave")
    assert "User dave was created." in page and typed not in page
    assert Browser(app, clock).login("dave", typed).headers["Location"] == "/"
    assert user(app, "dave").is_admin is False


@pytest.mark.parametrize(
    "form, message",
    [
        ({"username": "alice"}, "already exists"),
        ({"username": "no spaces allowed"}, "A username is 1-150 characters"),
        ({"username": "erin", "password": "short"}, "at least 8 characters"),
        ({"username": ""}, "This field is required"),
    ],
)
def test_create_user_refuses_bad_input(app, clock, form, message):
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    admin.get("/admin/users/new")
    before = state_snapshot(app)
    response = admin.post("/admin/users/new", form)
    assert response.status_code == 200
    assert message in html.unescape(response.get_data(as_text=True))
    assert 'role="alert"' in response.get_data(as_text=True)
    assert state_snapshot(app) == before


def test_make_and_revoke_administrator(app, clock, new_browser):
    admin, _ = admin_signed_in(app, clock)
    alice = new_browser()
    alice.login()
    assert alice.get("/admin/").status_code == 403
    step_up(admin)
    act(admin, "alice", "grant-admin")
    assert flashes(admin) == ["alice is now an administrator."]
    assert alice.get("/admin/users").status_code == 200  # at once, same session
    act(admin, "alice", "grant-admin")
    assert flashes(admin) == ["Nothing changed: alice already has these rights."]
    act(admin, "alice", "revoke-admin")
    assert flashes(admin) == ["alice is no longer an administrator."]
    assert alice.get("/admin/users").status_code == 403
    assert [
        (e.event, e.outcome, e.actor) for e in events(app) if e.event.startswith("admin_")
    ] == [
        ("admin_granted", "ok", "root"),
        ("admin_granted", "unchanged", "root"),
        ("admin_revoked", "ok", "root"),
    ]


def test_last_administrator_cannot_be_revoked(app, clock):
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    response = act(admin, "root", "revoke-admin")
    assert response.headers["Location"] == "/admin/users?q=root"
    assert flashes(admin) == ["root is the last administrator and cannot be revoked."]
    assert user(app, "root").is_admin
    (refused,) = events(app, "admin_revoked")
    assert (refused.outcome, refused.actor, refused.username) == ("refused", "root", "root")


def test_an_administrator_may_step_down_when_another_remains(app, clock, new_browser):
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    act(admin, "bob", "grant-admin")
    response = act(admin, "root", "revoke-admin")
    assert response.headers["Location"] == "/"
    assert not user(app, "root").is_admin
    assert admin.get("/admin/users").status_code == 403
    # bob is now the last one: root's old rights cannot remove him.
    bob = new_browser()
    bob.login("bob")
    step_up(bob)
    act(bob, "bob", "revoke-admin")
    assert user(app, "bob").is_admin


def test_sign_out_everywhere_ends_every_session_of_the_user(app, clock, new_browser):
    laptop, phone, bob = new_browser(), new_browser(), new_browser()
    laptop.login()
    phone.login()
    bob.login("bob")
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    act(admin, "alice", "sign-out")
    assert flashes(admin) == ["2 session(s) of alice ended."]
    assert laptop.get("/").headers["Location"].startswith("/login")
    assert phone.get("/").headers["Location"].startswith("/login")
    assert bob.get("/").status_code == 200
    (event,) = events(app, "session_revoked")
    assert (event.username, event.actor, event.outcome, event.detail) == (
        "alice",
        "root",
        "ok",
        "2 sessions",
    )


def test_action_on_unknown_user_is_404(app, clock):
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    assert admin.get("/admin/users/nobody/unlock").status_code == 404
    assert admin.post("/admin/users/nobody/unlock").status_code == 404
    assert admin.get("/admin/users/alice/delete").status_code == 404
    assert events(app, "unlock") == []


# --- SC-24: who may use the pages ---------------------------------------------------------------


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
    assert [e.event for e in events(app)].count("reauth") == 0


def test_sc24_normal_user_sees_no_users_page(app, browser):
    browser.login()
    response = browser.get("/admin/users")
    assert response.status_code == 403
    assert "root" not in response.get_data(as_text=True)


def test_sc24_admin_pending_mfa_cannot_reach_user_pages(totp_app, clock, new_browser):
    admin, secret = admin_signed_in(totp_app, clock)
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
    assert events(totp_app, "reauth") == []


# --- SC-25: POST only, CSRF, confirmation -----------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_sc25_user_actions_need_post_with_csrf(app, clock, new_browser, action):
    set_code_failures(app, "bob", 3)
    admin, _ = admin_signed_in(app, clock)
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
    assert not [e for e in events(app) if e.actor == "root" and e.event != "reauth"]


def test_sc25_create_user_needs_csrf(app, clock):
    admin, _ = admin_signed_in(app, clock)
    step_up(admin)
    response = admin.post("/admin/users/new", {"username": "mallory"}, csrf=False)
    assert response.status_code == 400
    assert user(app, "mallory") is None


def test_sc25_every_user_action_is_audited_with_actor_target_outcome(totp_app, clock, new_browser):
    new_browser().enrol("alice")
    set_code_failures(totp_app, "bob", 7)
    admin, secret = admin_signed_in(totp_app, clock)
    step_up(admin, secret)
    for action in ("unlock", "grant-admin", "revoke-admin", "sign-out", "reset-mfa"):
        target = "bob" if action == "unlock" else "alice"
        act(admin, target, action)
    admin.get("/admin/users/new")
    admin.post("/admin/users/new", {"username": "carol"})

    done = [
        (e.event, e.username, e.actor, e.outcome, e.ip)
        for e in events(totp_app)
        if e.actor == "root" and e.event != "reauth"
    ]
    assert done == [
        ("unlock", "bob", "root", "ok", "127.0.0.1"),
        ("admin_granted", "alice", "root", "ok", "127.0.0.1"),
        ("admin_revoked", "alice", "root", "ok", "127.0.0.1"),
        ("session_revoked", "alice", "root", "ok", "127.0.0.1"),
        ("totp_reset", "alice", "root", "ok", "127.0.0.1"),
        ("user_created", "carol", "root", "ok", "127.0.0.1"),
    ]


def test_admin_pages_link_to_each_other(app, clock):
    admin, _ = admin_signed_in(app, clock)
    index = admin.page("/admin/")
    for link in ("/admin/users", "/admin/mfa", "/admin/audit"):
        assert f'href="{link}"' in index
    for path in ("/admin/users", "/admin/mfa", "/admin/audit"):
        page = admin.page(path)
        for link in ("/admin/", "/admin/users", "/admin/mfa", "/admin/audit"):
            assert f'href="{link}"' in page, (path, link)
        assert 'aria-current="page"' in page
    assert "Users and Permissions » Users" in admin.page("/admin/users")


def test_two_administrators_revoking_each_other_at_once_leave_one(tmp_path, clock):
    """The last-administrator rule holds under a race (a file database, one
    connection per thread; on PostgreSQL the administrators' rows are locked)."""
    import threading

    from standalone_mfa.accounts import administration
    from standalone_mfa.core.db import db

    app = make_app(tmp_path, clock)
    with app.app_context():
        User.update(is_admin=True).where(User.username == "bob").execute()
        db.close()
    for _ in range(10):
        barrier = threading.Barrier(2)
        outcomes = []

        def revoke(target, actor, barrier=barrier, outcomes=outcomes):
            with app.app_context():
                victim = User.get(User.username == target)
                barrier.wait()
                outcomes.append(administration.set_admin(victim, False, actor=actor))
                db.close()

        threads = [
            threading.Thread(target=revoke, args=("root", "bob")),
            threading.Thread(target=revoke, args=("bob", "root")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [administration.LAST_ADMIN, administration.CHANGED]
        with app.app_context():
            assert User.select().where(User.is_admin).count() == 1
            User.update(is_admin=True).where(User.username.in_(["root", "bob"])).execute()
            db.close()


def test_password_back_off_is_shown_and_cleared_by_unlock(app, clock):
    """Eleven wrong passwords make alice wait; the Users page says so and Unlock
    lets her try again at once."""
    from standalone_mfa.accounts import administration

    guesser = Browser(app, clock)
    for _ in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"] + 1):
        guesser.login("alice", "wrong password")
        clock.advance(1)
    with app.app_context():
        row = administration.row_for(find_user("alice"))
        assert (
            row.password_throttled and row.password_failures > DEFAULTS["PASSWORD_BACKOFF_AFTER"]
        )
        assert row.as_json()["password_throttled"] is True
        assert throttle.unlock(find_user("alice"), actor="root") > 0
        row = administration.row_for(find_user("alice"))
        assert not row.password_throttled and row.password_failures == 0
    assert Browser(app, clock).login("alice").status_code == 302


def test_page_past_the_end_shows_the_last_page(app):
    from standalone_mfa.accounts import administration

    with app.app_context():
        page = administration.list_users(page=99, clamp=True)
        assert page.page == page.pages == 1 and len(page.items) == 3
