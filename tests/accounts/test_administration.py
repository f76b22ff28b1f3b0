"""accounts/administration: the actions on a user from the Users page (reset MFA,
unlock, create, make or revoke administrator, sign out everywhere), each audited (SC-25)."""

from __future__ import annotations

import html
import logging
import re

import pytest
from support.app import make_app
from support.client import Browser
from support.db import audit_events, failures, sessions_of, set_code_failures, state_snapshot, user
from support.pages import admin_messages, row_of
from support.steps import act, signed_in_admin, step_up

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import AuditEvent, TotpCredential, User, WebSession
from standalone_mfa.directory.users import find_user
from standalone_mfa.factors import throttle


def has_credential(app, username):
    with app.app_context():
        return TotpCredential.select().join(User).where(User.username == username).exists()


def sign_in_with_code(browser, secret, username="alice"):
    browser.clock.advance(30)
    assert browser.login(username).headers["Location"] == "/mfa/verify"
    return browser.post("/mfa/verify", {"code": browser.code(secret)})


# --- the actions


def test_sc26_reset_mfa_from_the_users_page(totp_app, clock, new_browser):
    alice = new_browser()
    alice.enrol()
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    step_up(admin, secret)
    page = admin.page("/admin/users/alice/reset-mfa")
    assert "all their sessions end" in page
    response = admin.post("/admin/users/alice/reset-mfa")
    assert response.headers["Location"] == "/admin/users?q=alice"
    assert admin_messages(admin) == [
        "Two-factor authentication of alice was reset; their sessions ended."
    ]
    assert not has_credential(totp_app, "alice")
    assert len(sessions_of(totp_app, "alice")) == 0
    assert alice.get("/").headers["Location"].startswith("/login")
    (event,) = audit_events(totp_app, "totp_reset")
    assert (event.username, event.actor, event.outcome) == ("alice", "root", "ok")
    # Nothing left to reset: said so, nothing audited.
    admin.get("/admin/users/alice/reset-mfa")
    admin.post("/admin/users/alice/reset-mfa")
    assert admin_messages(admin) == ["alice has no authenticator to reset; nothing changed."]
    assert len(audit_events(totp_app, "totp_reset")) == 1


def test_unlock_lets_a_locked_user_sign_in_again(totp_app, clock, new_browser):
    alice = new_browser()
    secret = alice.enrol()
    alice.logout()
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    response = sign_in_with_code(alice, secret)
    assert response.headers["Location"] == "/mfa/verify"
    assert "locked" in alice.page("/mfa/verify")

    admin = signed_in_admin(totp_app, clock)

    root_secret = admin.secret
    assert "Locked (50 wrong codes)" in row_of(admin.page("/admin/users"), "alice")
    step_up(admin, root_secret)
    act(admin, "alice", "unlock")
    assert admin_messages(admin) == ["alice was unlocked and can enter a code again."]
    assert failures(totp_app, "alice") == 0
    assert has_credential(totp_app, "alice")  # the authenticator is kept

    alice.logout()
    assert sign_in_with_code(alice, secret).headers["Location"] == "/"
    (event,) = audit_events(totp_app, "unlock")
    assert (event.username, event.actor, event.outcome, event.detail) == (
        "alice",
        "root",
        "ok",
        "50 failures",
    )
    act(admin, "alice", "unlock")
    assert admin_messages(admin) == ["alice was not throttled or locked; nothing changed."]
    assert audit_events(totp_app, "unlock")[-1].outcome == "unchanged"


def test_create_user_with_generated_password_shown_once(app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    admin = signed_in_admin(app, clock)
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
    (created,) = [e for e in audit_events(app, "user_created") if e.username == "carol"]
    assert (created.actor, created.outcome) == ("root", "ok")

    carol = Browser(app, clock)
    assert carol.login("carol", password).headers["Location"] == "/"


def test_create_user_with_typed_password(app, clock):
    admin = signed_in_admin(app, clock)
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
    admin = signed_in_admin(app, clock)
    step_up(admin)
    admin.get("/admin/users/new")
    before = state_snapshot(app)
    response = admin.post("/admin/users/new", form)
    assert response.status_code == 200
    assert message in html.unescape(response.get_data(as_text=True))
    assert 'role="alert"' in response.get_data(as_text=True)
    assert state_snapshot(app) == before


def test_make_and_revoke_administrator(app, clock, new_browser):
    admin = signed_in_admin(app, clock)
    alice = new_browser()
    alice.login()
    assert alice.get("/admin/").status_code == 403
    step_up(admin)
    act(admin, "alice", "grant-admin")
    assert admin_messages(admin) == ["alice is now an administrator."]
    assert alice.get("/admin/users").status_code == 200  # at once, same session
    act(admin, "alice", "grant-admin")
    assert admin_messages(admin) == ["Nothing changed: alice already has these rights."]
    act(admin, "alice", "revoke-admin")
    assert admin_messages(admin) == ["alice is no longer an administrator."]
    assert alice.get("/admin/users").status_code == 403
    assert [
        (e.event, e.outcome, e.actor) for e in audit_events(app) if e.event.startswith("admin_")
    ] == [
        ("admin_granted", "ok", "root"),
        ("admin_granted", "unchanged", "root"),
        ("admin_revoked", "ok", "root"),
    ]


def test_last_administrator_cannot_be_revoked(app, clock):
    admin = signed_in_admin(app, clock)
    step_up(admin)
    response = act(admin, "root", "revoke-admin")
    assert response.headers["Location"] == "/admin/users?q=root"
    assert admin_messages(admin) == ["root is the last administrator and cannot be revoked."]
    assert user(app, "root").is_admin
    (refused,) = audit_events(app, "admin_revoked")
    assert (refused.outcome, refused.actor, refused.username) == ("refused", "root", "root")


def test_an_administrator_may_step_down_when_another_remains(app, clock, new_browser):
    admin = signed_in_admin(app, clock)
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
    admin = signed_in_admin(app, clock)
    step_up(admin)
    act(admin, "alice", "sign-out")
    assert admin_messages(admin) == ["2 sessions of alice ended."]
    assert laptop.get("/").headers["Location"].startswith("/login")
    assert phone.get("/").headers["Location"].startswith("/login")
    assert bob.get("/").status_code == 200
    (event,) = audit_events(app, "session_revoked")
    assert (event.username, event.actor, event.outcome, event.detail) == (
        "alice",
        "root",
        "ok",
        "2 sessions",
    )


def test_action_on_unknown_user_is_404(app, clock):
    admin = signed_in_admin(app, clock)
    step_up(admin)
    assert admin.get("/admin/users/nobody/unlock").status_code == 404
    assert admin.post("/admin/users/nobody/unlock").status_code == 404
    assert admin.get("/admin/users/alice/delete").status_code == 404
    assert audit_events(app, "unlock") == []


# --- every action audited; races; the password back-off


def test_sc25_every_user_action_is_audited_with_actor_target_outcome(totp_app, clock, new_browser):
    new_browser().enrol("alice")
    set_code_failures(totp_app, "bob", 7)
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    step_up(admin, secret)
    for action in ("unlock", "grant-admin", "revoke-admin", "sign-out", "reset-mfa"):
        target = "bob" if action == "unlock" else "alice"
        act(admin, target, action)
    admin.get("/admin/users/new")
    admin.post("/admin/users/new", {"username": "carol"})

    done = [
        (e.event, e.username, e.actor, e.outcome, e.ip)
        for e in audit_events(totp_app)
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
