"""directory/settings: the administrator's settings (the MFA method, remembered days),
checked, audited, and written whole or not at all (SC-25, SC-27)."""

from __future__ import annotations

import re

import pytest
from support.db import (
    audit_events,
    audit_rows,
    credential_secret,
    raise_on_audit,
    set_method,
)
from support.pages import location, text
from support.steps import save_mfa_settings

from standalone_mfa.directory import settings


def remember_days(app) -> int:
    with app.app_context():
        return settings.remember_days()


def admin_browser(new_browser):
    """root, an administrator, signed in with TOTP."""
    root = new_browser()
    root.enrol("root")
    return root


def post_admin_settings(root, **fields):
    return save_mfa_settings(root, {"mfa_method": "totp", **fields})


# --- Remember this device: the administrator's setting


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


# --- SC-27 and SC-30: the policy, audited


def test_sc27_totp_to_disabled_is_audited_and_keeps_credentials(totp_app, new_browser, clock):
    secret = new_browser().enrol("alice")
    admin = new_browser()
    admin_secret = admin.enrol("root")
    assert admin_secret
    save_mfa_settings(admin, {"mfa_method": "disabled"})
    (change,) = audit_events(totp_app, "mfa_method_changed")[-1:]
    assert (change.actor, change.outcome, change.detail) == ("root", "ok", "totp -> disabled")
    before = credential_secret(totp_app, "alice")
    assert before == secret
    alice = new_browser()
    assert location(alice.login()) == "/"  # password only while Disabled
    set_method(totp_app, "totp")
    # Back on TOTP the same authenticator is asked for, not a new set-up.
    clock.advance(60)
    again = new_browser()
    assert location(again.login()) == "/mfa/verify"
    assert location(again.post("/mfa/verify", {"code": again.code(secret)})) == "/"


# --- a database error half-way through a multi-step change


def test_sc25_admin_setting_database_error_changes_nothing_unaudited(
    app, new_browser, monkeypatch
):
    admin = new_browser()
    admin.login("root")
    raise_on_audit(monkeypatch, "mfa_method_changed")
    response = save_mfa_settings(admin, {"mfa_method": "totp"})
    assert response.status_code == 503
    with app.app_context():
        changed = settings.mfa_method() == "totp"
    assert changed == bool(audit_events(app, "mfa_method_changed"))
