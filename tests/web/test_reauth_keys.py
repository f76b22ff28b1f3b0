"""Re-authentication and the administrators' step-up with one of the user's OWN
passkeys or security keys (issue 20, item 4): the pages offer "Use your security key or
passkey" only to a user who has keys; the answer must be to this session's re-auth
challenge (own purpose, used once, SC-51), from one of the user's keys whose
userHandle, when sent, is the user's (SC-52); failures are counted like codes."""

from __future__ import annotations

from support.app import PASSWORD
from support.db import audit_events, failures
from support.pages import location
from support.passkeys import ORIGIN, add_key, options_on
from support.softkey import SoftKey
from support.steps import signed_in_admin

REAUTH = "webauthn-options-reauth"
CODES = "/account/recovery-codes"  # always asks the password and a second factor


def alice_with_key(browser, **kw):
    secret = browser.enrol()
    key = SoftKey(ORIGIN, **kw)
    add_key(browser, key, code=browser.code(secret, 1))
    return key


def reauth_with(browser, answer_for, path=CODES, password=PASSWORD):
    """Open the page, answer its re-auth options with `answer_for(options)`."""
    options = options_on(browser.page(path), REAUTH)
    return browser.post(path, {"password": password, "credential": answer_for(options)})


def test_sc52_reauth_with_ones_own_key_passes(totp_app, browser):
    key = alice_with_key(browser)
    response = reauth_with(browser, key.get)
    assert location(response) == "/mfa/recovery-codes"
    last = audit_events(totp_app, "reauth")[-1]
    assert (last.outcome, last.detail) == ("ok", "security key")


def test_sc52_reauth_still_needs_the_password(totp_app, browser):
    key = alice_with_key(browser)
    response = reauth_with(browser, key.get, password="wrong")
    assert response.status_code == 200  # the form again, nothing done
    assert audit_events(totp_app, "reauth")[-1].outcome == "failed"


def test_sc52_another_users_key_is_refused_at_reauth(totp_app, browser, new_browser):
    bob = new_browser()
    bob_secret = bob.enrol("bob")
    bobs = SoftKey(ORIGIN)
    add_key(bob, bobs, code=bob.code(bob_secret, 1))
    alice_with_key(browser)
    response = reauth_with(browser, bobs.get)
    assert response.status_code == 200
    assert failures(totp_app, "alice") == 1  # counted as a wrong code
    assert audit_events(totp_app, "reauth")[-1].outcome == "failed"


def test_sc52_a_wrong_user_handle_is_refused_at_reauth(totp_app, browser):
    key = alice_with_key(browser)
    key.user_handle = b"\1" * 64  # alice's key, answering in someone else's name
    response = reauth_with(browser, key.get)
    assert response.status_code == 200
    assert failures(totp_app, "alice") == 1


def test_sc51_a_replayed_or_expired_reauth_answer_is_refused(totp_app, browser, clock):
    key = alice_with_key(browser)
    answers = []
    assert location(reauth_with(browser, lambda o: answers.append(key.get(o)) or answers[-1]))
    browser.get(CODES)  # a new challenge: the used answer is dead
    replay = browser.post(CODES, {"password": PASSWORD, "credential": answers[0]})
    assert replay.status_code == 200
    options = options_on(browser.page(CODES), REAUTH)
    clock.advance(301)  # past WEBAUTHN_TIMEOUT
    late = browser.post(CODES, {"password": PASSWORD, "credential": key.get(options)})
    assert late.status_code == 200
    keys = [e.outcome for e in audit_events(totp_app, "reauth") if e.detail == "security key"]
    assert keys == ["ok", "failed", "failed"]


def test_sc51_a_second_factor_challenge_does_not_serve_for_reauth(totp_app, browser, new_browser):
    key = alice_with_key(browser)
    other = new_browser()
    other.login()
    second_factor = key.get(
        options_on(other.page("/mfa/verify"), "webauthn-options-second-factor")
    )
    browser.page(CODES)
    response = browser.post(CODES, {"password": PASSWORD, "credential": second_factor})
    assert response.status_code == 200  # another session's, another purpose


def test_the_key_option_is_absent_without_keys(totp_app, browser, clock):
    browser.enrol()
    page = browser.page(CODES)
    assert REAUTH not in page and "security-key-reauth" not in page
    assert "security-key-reauth" not in browser.page("/account/app-passwords")
    admin = signed_in_admin(totp_app, clock)
    assert "security-key-reauth" not in admin.page("/admin/step-up")


def test_app_passwords_accept_ones_own_key(totp_app, browser):
    key = alice_with_key(browser)
    options = options_on(browser.page("/account/app-passwords"), REAUTH)
    response = browser.post(
        "/account/app-passwords",
        {"name": "Phone", "password": PASSWORD, "credential": key.get(options)},
    )
    assert response.status_code == 200 and "Phone" in response.get_data(as_text=True)
    assert audit_events(totp_app, "reauth")[-1].detail == "security key"


def test_a_keys_only_admin_steps_up_with_a_passkey(app, clock):
    admin = signed_in_admin(app, clock)  # no authenticator app
    key = SoftKey(ORIGIN)
    add_key(admin, key)  # a passkey, its only second factor
    admin.save_recovery_codes()
    page = admin.page("/admin/step-up?next=/admin/mfa")
    response = admin.post(
        "/admin/step-up/key?next=/admin/mfa", {"credential": key.get(options_on(page, REAUTH))}
    )
    assert location(response) == "/admin/mfa"
    assert audit_events(app, "reauth")[-1].detail == "security key"
    assert admin.get("/admin/mfa").status_code == 200


def test_sc52_a_stranger_key_does_not_step_up(app, clock):
    admin = signed_in_admin(app, clock)
    add_key(admin, SoftKey(ORIGIN))
    admin.save_recovery_codes()
    stranger = SoftKey(ORIGIN)
    stranger.rp_id, stranger.user_handle = "localhost", b"\1" * 64
    page = admin.page("/admin/step-up")
    response = admin.post(
        "/admin/step-up/key", {"credential": stranger.get(options_on(page, REAUTH))}
    )
    assert location(response).startswith("/admin/step-up")
    assert failures(app, "root") == 1


def keys_only_admin(app, clock):
    """root, whose only second factor is a passkey (no authenticator app)."""
    admin = signed_in_admin(app, clock)
    key = SoftKey(ORIGIN)
    add_key(admin, key)
    admin.save_recovery_codes()
    return admin, key


def test_a_keys_only_user_cannot_reauth_with_the_password_alone(app, clock):
    """Their sign-in asks for the key: so does proving it is them again (a stolen
    session plus a phished password must not remove their keys or make new codes)."""
    admin, key = keys_only_admin(app, clock)
    response = admin.post(CODES, {"password": PASSWORD})
    assert response.status_code == 200  # the form again, nothing done
    assert "Use your security key or passkey to confirm it is you." in response.get_data(
        as_text=True
    )
    response = reauth_with(admin, key.get)
    assert location(response) == "/mfa/recovery-codes"


def test_a_keys_only_user_may_reauth_with_a_recovery_code_where_offered(app, clock):
    admin, _ = keys_only_admin(app, clock)
    new_key = "/account/passkeys/new"
    admin.get(new_key)
    refused = admin.post(new_key, {"password": PASSWORD})
    assert refused.status_code == 200
    recovery = admin.recovery_codes[0]
    response = admin.post(new_key, {"password": PASSWORD, "recovery_code": recovery})
    assert location(response) == new_key
    assert audit_events(app, "reauth")[-1].detail == "recovery code"


def test_a_keys_only_admin_cannot_step_up_with_the_password(app, clock):
    admin, key = keys_only_admin(app, clock)
    page = admin.page("/admin/step-up?next=/admin/mfa")
    assert 'name="password"' not in page and "security-key-reauth" in page
    before = len(audit_events(app, "reauth"))
    response = admin.post("/admin/step-up?next=/admin/mfa", {"password": PASSWORD})
    assert location(response).startswith("/admin/step-up")
    assert len(audit_events(app, "reauth")) == before  # nothing proved
    response = admin.post(
        "/admin/step-up/key?next=/admin/mfa", {"credential": key.get(options_on(page, REAUTH))}
    )
    assert location(response) == "/admin/mfa"


def test_a_keys_only_users_app_password_counts_two_factors(app, clock):
    """Made after the password and the key, it passes `two_factor` rules (SC-50)."""
    from standalone_mfa.core.models import AppPassword

    admin, key = keys_only_admin(app, clock)
    options = options_on(admin.page("/account/app-passwords"), REAUTH)
    response = admin.post(
        "/account/app-passwords",
        {"name": "Calendar", "password": PASSWORD, "credential": key.get(options)},
    )
    assert response.status_code == 200 and "Calendar" in response.get_data(as_text=True)
    with app.app_context():
        assert AppPassword.get(AppPassword.name == "Calendar").two_factor
