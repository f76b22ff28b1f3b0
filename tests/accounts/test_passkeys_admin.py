"""Administering passkeys and security keys: `user show`, `mfa reset`, the API's
GET and DELETE /api/v1/users/<username>/webauthn, the Users page; and the mails a
key added, removed or refused sends."""

from __future__ import annotations

from support.client import Browser, cli, signed_in_as
from support.db import audit_rows, sessions_of
from support.pages import location
from support.softkey import SoftKey
from support.steps import api_token

from standalone_mfa.core.models import Notice, User, WebAuthnCredential
from standalone_mfa.factors import webauthn
from standalone_mfa.notices import sender

ORIGIN = "http://localhost:5000"


def give_key(app, clock, username, name="Laptop", kind="passkey") -> SoftKey:
    key = SoftKey(ORIGIN, uv=kind == "passkey", resident=kind == "passkey")
    with app.test_request_context():
        user = User.get(User.username == username)
        options = webauthn.registration_options(user, kind, binding="x" * 43, at=clock.now())
        outcome = webauthn.verify_registration(
            user, key.create(options), kind=kind, name=name, binding="x" * 43, at=clock.now()
        )
        assert outcome.ok
    return key


def key_count(app, username) -> int:
    with app.app_context():
        user = User.get(User.username == username)
        return WebAuthnCredential.select().where(WebAuthnCredential.user == user).count()


def test_user_show_lists_the_keys(app, clock):
    give_key(app, clock, "alice", "Work laptop")
    give_key(app, clock, "alice", "Blue USB", kind="security_key")
    output = cli(app, "user", "show", "alice").output
    assert "Work laptop (passkey; added 2026-11-28 12:00 UTC; never used)" in output
    assert "Blue USB (security key; added" in output
    assert "keys:          none" in cli(app, "user", "show", "bob").output


def test_mfa_reset_removes_every_key_and_ends_sessions(app, clock, browser):
    give_key(app, clock, "alice")
    browser.login()
    assert sessions_of(app, "alice")
    result = cli(app, "mfa", "reset", "alice")
    assert result.exit_code == 0, result.output
    assert key_count(app, "alice") == 0
    assert sessions_of(app, "alice") == []
    assert "1 keys removed" in audit_rows(app, "totp_reset")[-1][4]
    assert cli(app, "mfa", "reset", "alice").exit_code != 0  # nothing left to reset


def test_the_api_lists_and_removes_a_users_keys(app, clock, browser):
    give_key(app, clock, "alice", "Phone")
    headers = {"Authorization": f"Bearer {api_token(app)}"}
    client = app.test_client()
    listed = client.get("/api/v1/users/alice/webauthn", headers=headers).get_json()
    assert [k["name"] for k in listed["keys"]] == ["Phone"]
    assert listed["keys"][0]["kind"] == "passkey" and "public_key" not in listed["keys"][0]
    browser.login()
    response = client.delete("/api/v1/users/alice/webauthn", headers=headers)
    assert response.status_code == 204
    assert key_count(app, "alice") == 0 and sessions_of(app, "alice") == []
    assert audit_rows(app, "webauthn_reset")[-1][:4] == ("webauthn_reset", "ok", "alice", "root")
    assert client.delete("/api/v1/users/alice/webauthn", headers=headers).status_code == 404
    assert client.get("/api/v1/users/nobody/webauthn", headers=headers).status_code == 404
    assert client.get("/api/v1/users/alice/webauthn").status_code == 401


def test_after_the_api_removed_the_only_keys_the_user_sets_up_again(totp_app, clock, browser):
    give_key(totp_app, clock, "alice")
    headers = {"Authorization": f"Bearer {api_token(totp_app)}"}
    totp_app.test_client().delete("/api/v1/users/alice/webauthn", headers=headers)
    assert location(browser.login()) == "/mfa/setup"


def test_the_users_page_shows_keys_and_offers_the_reset(app, clock, browser):
    give_key(app, clock, "alice")
    give_key(app, clock, "alice", "Second")
    browser.login("root")
    page = browser.page("/admin/users")
    assert "2 passkeys or security keys" in page
    assert "/admin/users/alice/reset-mfa" in page


def test_mails_for_a_key_added_and_removed(mail_app, clock, smtp):
    give_key(mail_app, clock, "alice", "Phone")
    browser = Browser(mail_app, clock)
    browser.login()
    with mail_app.app_context():
        key_id = WebAuthnCredential.get().id
    browser.get("/account/passkeys")
    browser.post(f"/account/passkeys/{key_id}/remove")
    with mail_app.app_context():
        kinds = [n.kind for n in Notice.select().order_by(Notice.id)]
    assert kinds == ["webauthn_added", "webauthn_removed"]
    assert signed_in_as(browser, "alice")
    sender.wait_idle(10)
    mails = smtp.wait_for(2)
    assert 'A passkey named "Phone" was added to your account' in mails[0].text
    assert 'named "Phone" was removed from your account' in mails[1].text
