"""web/admin: the site-wide MFA settings on /admin/mfa change only after a fresh step-up
of the administrator's own session, as the actions on users do (SC-43). The CLI, which
needs shell access, does not ask for one."""

from __future__ import annotations

from support.app import PASSWORD
from support.client import cli
from support.db import audit_events, mfa_method
from support.pages import admin_messages, location, text
from support.steps import signed_in_admin, step_up

from standalone_mfa.directory import settings

CHANGE = {"mfa_method": "disabled", "remember_days": "31"}
STEP_UP_FIRST = "Confirm it is you, then confirm the change again."


def remember_days(app) -> int:
    with app.app_context():
        return settings.remember_days()


def setting_changes(app) -> list:
    return audit_events(app, "mfa_method_changed") + audit_events(app, "remember_days_changed")


def post_settings(admin, data=CHANGE):
    admin.get("/admin/mfa")
    return admin.post("/admin/mfa", data)


def test_sc43_settings_post_without_step_up_changes_nothing(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)  # through the second factor, no step-up
    before = setting_changes(totp_app)
    page = admin.get("/admin/mfa")
    assert page.status_code == 200  # reading needs no step-up
    assert "Saving a change asks you to confirm it is you first" in text(page)

    response = admin.post("/admin/mfa", CHANGE)
    assert location(response) == "/admin/step-up?next=/admin/mfa"
    assert mfa_method(totp_app) == "totp"
    assert remember_days(totp_app) == 0
    assert setting_changes(totp_app) == before
    assert STEP_UP_FIRST in admin_messages(admin)


def test_sc43_unchanged_settings_post_also_needs_the_step_up(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)
    response = post_settings(admin, {"mfa_method": "totp", "remember_days": "0"})
    assert location(response) == "/admin/step-up?next=/admin/mfa"
    assert [e for e in setting_changes(totp_app) if e.actor == "root"] == []


def test_sc43_after_a_fresh_step_up_the_change_is_saved_and_audited(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    refused = post_settings(admin)
    # The step-up page sends the administrator back to the settings, to save again.
    admin.get(location(refused))
    clock.advance(30)
    response = admin.post(location(refused), {"code": admin.code(secret)})
    assert location(response) == "/admin/mfa"
    assert mfa_method(totp_app) == "totp"  # nothing was kept from the refused POST

    response = admin.post("/admin/mfa", CHANGE)
    assert location(response) == "/admin/mfa"
    assert mfa_method(totp_app) == "disabled"
    assert remember_days(totp_app) == 31
    changes = [(e.event, e.actor, e.outcome, e.detail) for e in setting_changes(totp_app)]
    assert ("mfa_method_changed", "root", "ok", "totp -> disabled") in changes
    assert ("remember_days_changed", "root", "ok", "0 -> 31") in changes


def test_sc43_an_expired_step_up_is_refused_again(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    step_up(admin, secret)
    clock.advance(totp_app.config["ADMIN_STEP_UP_SECONDS"] + 1)
    before = setting_changes(totp_app)

    response = post_settings(admin)
    assert location(response) == "/admin/step-up?next=/admin/mfa"
    assert (mfa_method(totp_app), remember_days(totp_app)) == ("totp", 0)
    assert setting_changes(totp_app) == before


def test_sc43_a_step_up_counts_only_on_the_session_that_made_it(app, clock, new_browser):
    # While the method is Disabled the step-up is root's password.
    admin = signed_in_admin(app, clock)
    other = signed_in_admin(app, clock)
    step_up(admin)

    response = post_settings(other, {"mfa_method": "totp", "remember_days": "7"})
    assert location(response) == "/admin/step-up?next=/admin/mfa"
    assert (mfa_method(app), remember_days(app)) == ("disabled", 0)

    assert location(post_settings(admin, {"mfa_method": "disabled", "remember_days": "7"})) == (
        "/admin/mfa"
    )
    assert remember_days(app) == 7


def test_sc43_a_wrong_step_up_saves_nothing(app, clock):
    admin = signed_in_admin(app, clock)
    admin.get("/admin/step-up?next=/admin/mfa")
    response = admin.post("/admin/step-up?next=/admin/mfa", {"password": PASSWORD + "x"})
    assert location(response) == "/admin/step-up?next=/admin/mfa"
    response = post_settings(admin, {"mfa_method": "totp", "remember_days": "7"})
    assert location(response) == "/admin/step-up?next=/admin/mfa"
    assert (mfa_method(app), remember_days(app)) == ("disabled", 0)


def test_sc43_the_cli_switches_the_method_without_a_step_up(totp_app):
    result = cli(totp_app, "mfa", "method", "disabled")
    assert result.exit_code == 0, result.output
    assert mfa_method(totp_app) == "disabled"
    (change,) = [
        e for e in audit_events(totp_app, "mfa_method_changed") if e.detail == "totp -> disabled"
    ]
    assert change.outcome == "ok"
