"""signin/reauth: the administrator's step-up before a user action: a password or a
code, throttled like sign-in, kept server-side for a set time on one session."""

from __future__ import annotations

import pytest
from support.app import PASSWORD, START, make_app
from support.client import client_with_cookie
from support.db import audit_events, failures, set_code_failures, state_snapshot, user
from support.pages import admin_messages, goes_to_login
from support.steps import ACTIONS, act, signed_in_admin, step_up

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.crypto import hash_token
from standalone_mfa.core.messages import MESSAGES
from standalone_mfa.core.models import PasswordThrottle, TrustedBrowser, User, WebSession

WRONG_PASSWORD = "not the right password at all"


# --- step-up


@pytest.mark.parametrize("action", ACTIONS)
def test_step_up_required_for_each_user_action(app, clock, action):
    set_code_failures(app, "alice", 3)
    admin = signed_in_admin(app, clock)
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
    admin = signed_in_admin(app, clock)
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
    admin = signed_in_admin(app, clock)
    step_up(admin)
    other_tab_of_root = signed_in_admin(app, clock)  # another session of the same admin
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
    admin = signed_in_admin(app, clock)
    cookie_before = admin.cookie()
    step_up(admin)
    # A new token (SC-67: a copy of the old cookie cannot ride on the step-up), of the
    # same opaque kind: nothing about the step-up rides in the cookie.
    assert admin.cookie() != cookie_before and len(admin.cookie()) == len(cookie_before)
    with app.app_context():
        (row,) = WebSession.select().join(User).where(User.username == "root")
        assert row.step_up_at == START
        assert row.token_hash == hash_token(admin.cookie())
    assert goes_to_login(client_with_cookie(app, cookie_before).get("/admin/users"))


def test_step_up_with_code_uses_up_the_step_counts_failures_and_is_audited(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    page = admin.page("/admin/step-up")
    assert 'autocomplete="one-time-code"' in page and 'name="password"' not in page
    # The sign-in code's time step is used up: replaying it is refused.
    response = admin.post("/admin/step-up", {"code": admin.code(secret)})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert failures(totp_app, "root") == 1
    # A password is not what an administrator with an authenticator proves with.
    admin.get("/admin/step-up")
    admin.post("/admin/step-up", {"password": PASSWORD})
    assert failures(totp_app, "root") == 2
    assert admin.get("/admin/users/alice/unlock").status_code == 302
    # The next code works once, and forgives the failures.
    clock.advance(30)
    code = admin.code(secret)
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up?next=/admin/users/alice/unlock", {"code": code})
    assert response.headers["Location"] == "/admin/users/alice/unlock"
    assert failures(totp_app, "root") == 0
    assert admin.get("/admin/users/alice/unlock").status_code == 200

    outcomes = [
        (e.outcome, e.detail, e.username, e.actor) for e in audit_events(totp_app, "reauth")
    ]
    assert outcomes == [
        ("failed", "code", "root", "root"),
        ("failed", "code", "root", "root"),
        ("ok", "code", "root", "root"),
    ]
    # The code that served this step-up cannot serve another.
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up", {"code": code})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert [e.username for e in audit_events(totp_app, "totp_replay")] == ["root", "root"]
    assert audit_events(totp_app, "reauth")[-1].outcome == "failed"


def test_step_up_codes_are_throttled_like_sign_in_codes(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    for _ in range(DEFAULTS["MFA_BACKOFF_AFTER"]):
        admin.get("/admin/step-up")
        admin.post("/admin/step-up", {"code": "000000"})
    admin.get("/admin/step-up")
    # The next step's code would be right, but the back-off refuses it unseen.
    response = admin.post("/admin/step-up", {"code": admin.code(secret, steps=1)})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert admin_messages(admin) == ["Too many wrong codes. Wait 1 second, then try again."]
    assert audit_events(totp_app, "reauth")[-1].outcome == "throttled"
    assert admin.get("/admin/users/alice/unlock").status_code == 302
    clock.advance(2)  # the back-off (1 s after the 5th failure) has passed
    step_up(admin, secret)


def test_sc44_step_up_hints_at_drift_only_on_a_second_code_at_the_same_offset(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    admin.get("/admin/step-up")
    admin.post("/admin/step-up", {"code": admin.code(secret, steps=6)})
    assert admin_messages(admin) == [MESSAGES["wrong_code"]]
    clock.advance(30)
    admin.get("/admin/step-up")
    admin.post("/admin/step-up", {"code": admin.code(secret, steps=6)})
    (hint,) = admin_messages(admin)
    assert hint.startswith("This code will only be valid in about 3 minutes.")
    assert admin.get("/admin/users/alice/unlock").status_code == 302  # still no step-up
    # A right code forgets the offset: the next drifted code alone gets no hint.
    clock.advance(30)
    step_up(admin, secret)
    clock.advance(30)
    admin.get("/admin/step-up")
    admin.post("/admin/step-up", {"code": admin.code(secret, steps=6)})
    assert admin_messages(admin) == [MESSAGES["wrong_code"]]


def test_step_up_password_counts_against_the_password_throttle(app, clock):
    """On the browser the administrator signed in with, its own counter (SC-41): the
    same back-off, and the username's counter, which strangers share, untouched."""
    admin = signed_in_admin(app, clock)
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up", {"password": WRONG_PASSWORD})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert admin_messages(admin) == ["That password is not right."]
    with app.app_context():
        (browser,) = TrustedBrowser.select()
        assert browser.failures == 1
        assert [row.failures for row in PasswordThrottle.select()] in ([], [0])
    (failed,) = audit_events(app, "reauth")
    assert (failed.outcome, failed.detail, failed.actor) == ("failed", "password", "root")
    for _ in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"]):
        admin.get("/admin/step-up")
        admin.post("/admin/step-up", {"password": WRONG_PASSWORD})
    admin.get("/admin/step-up")
    response = admin.post("/admin/step-up", {"password": PASSWORD})  # right, but must wait
    assert response.headers["Location"].startswith("/admin/step-up")
    assert audit_events(app, "reauth")[-1].outcome == "throttled"


def test_step_up_only_returns_to_admin_pages(app, clock):
    admin = signed_in_admin(app, clock)
    for target in ("https://evil.example/", "//evil.example", "/", "/logout"):
        admin.get("/admin/step-up")
        response = admin.post(f"/admin/step-up?next={target}", {"password": PASSWORD})
        assert response.headers["Location"] == "/admin/users", target


def test_sc70_throttled_re_authentications_are_audited_at_a_capped_rate(app, clock):
    """A scanner hammering the step-up while it is throttled: each wrong password is
    audited, the refusals while throttled once a minute at most, per user."""
    admin = signed_in_admin(app, clock)
    for _ in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"]):
        admin.get("/admin/step-up")
        admin.post("/admin/step-up", {"password": WRONG_PASSWORD})
    failed = len(audit_events(app, "reauth"))
    assert failed == DEFAULTS["PASSWORD_BACKOFF_AFTER"]
    for _ in range(30):
        admin.get("/admin/step-up")
        response = admin.post("/admin/step-up", {"password": WRONG_PASSWORD})
        assert response.headers["Location"].startswith("/admin/step-up")  # still refused
    throttled = [e for e in audit_events(app, "reauth") if e.outcome == "throttled"]
    assert len(throttled) == 1 and throttled[0].username == "root"
    assert len(audit_events(app, "reauth")) == failed + 1
