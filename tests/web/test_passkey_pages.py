"""The passkey pages through the test client, with the software authenticator: adding,
renaming and removing keys at /account/passkeys, a security key after the password on
the code page, a passkey at set-up in place of an app (SC-51, SC-52, SC-54)."""

from __future__ import annotations

import html
import re

from support.app import PASSWORD
from support.client import signed_in_as
from support.db import failures
from support.pages import location
from support.passkeys import ORIGIN, add_key, options_on
from support.softkey import SoftKey

from standalone_mfa.core.models import User, WebAuthnCredential


def use_key(browser, key, **get):
    page = browser.page("/mfa/verify")
    assert 'id="security-key-verify"' in page
    options = options_on(page, "webauthn-options-second-factor")
    return browser.post("/mfa/security-key", {"credential": key.get(options, **get)})


def keys_of(app, username) -> list[str]:
    with app.app_context():
        user = User.get(User.username == username)
        return [k.name for k in WebAuthnCredential.select().where(WebAuthnCredential.user == user)]


# --- /account/passkeys


def test_adding_a_first_passkey_needs_the_password_then_shows_recovery_codes(app, browser):
    browser.login()
    page = browser.page("/account/passkeys/new")
    assert "passkey-create" not in page and 'name="password"' in page  # proof first
    wrong = browser.post("/account/passkeys/new", {"password": "wrong"})
    assert wrong.status_code == 200 and "passkey-create" not in wrong.get_data(as_text=True)
    response = add_key(browser, SoftKey(ORIGIN), name="My laptop")
    assert location(response) == "/mfa/recovery-codes"  # the first second factor
    browser.save_recovery_codes()
    page = browser.page("/account/passkeys")
    assert "My laptop" in page and "Passkey" in page and "On one device" in page
    assert keys_of(app, "alice") == ["My laptop"]


def test_the_page_works_without_javascript_its_passkey_parts_hidden(app, browser):
    browser.login()
    browser.post("/account/passkeys/new", {"password": PASSWORD})
    page = browser.page("/account/passkeys/new")
    form = re.search(r"<form[^>]*data-webauthn[^>]*>", page).group(0)
    assert " hidden" in form
    assert "data-webauthn-missing" in page and "webauthn.js" in page
    assert "<script>" not in page and "onclick" not in page  # nothing inline (CSP)


def test_a_second_key_is_added_without_new_codes_and_names_stay_unique(app, browser):
    browser.login()
    first = SoftKey(ORIGIN)
    add_key(browser, first, name="One")
    browser.save_recovery_codes()
    response = add_key(browser, SoftKey(ORIGIN), name="One", proof_key=first)
    assert location(response) == "/account/passkeys/new"
    assert "already have a key with that name" in html.unescape(browser.page("/account/passkeys"))
    response = add_key(
        browser, SoftKey(ORIGIN, uv=False, resident=False), name="USB", kind="security_key"
    )
    assert location(response) == "/account/passkeys"
    assert keys_of(app, "alice") == ["One", "USB"]


def test_rename_and_remove_a_key(app, browser):
    browser.login()
    add_key(browser, SoftKey(ORIGIN), name="Old")
    browser.save_recovery_codes()
    with app.app_context():
        key_id = WebAuthnCredential.get().id
    browser.get("/account/passkeys")
    browser.post(f"/account/passkeys/{key_id}/rename", {"name": "New"})
    assert keys_of(app, "alice") == ["New"]
    browser.post(f"/account/passkeys/{key_id}/remove")
    assert keys_of(app, "alice") == []


def test_another_users_key_cannot_be_renamed_or_removed(app, browser, new_browser):
    other = new_browser()
    browser.login()
    add_key(browser, SoftKey(ORIGIN), name="Alice's")
    with app.app_context():
        key_id = WebAuthnCredential.get().id
    other.login("bob")
    other.get("/account/passkeys")
    other.post(f"/account/passkeys/{key_id}/rename", {"name": "Bob's now"})
    other.post(f"/account/passkeys/{key_id}/remove")
    assert keys_of(app, "alice") == ["Alice's"]


def test_sc51_the_proof_before_adding_a_key_is_this_sessions_only(app, browser, new_browser):
    other = new_browser()
    browser.login()
    browser.post("/account/passkeys/new", {"password": PASSWORD})
    other.login()
    assert "passkey-create" not in other.page("/account/passkeys/new")


# --- The code step


def test_a_security_key_after_the_password_signs_in(totp_app, browser, new_browser):
    other = new_browser()
    secret = browser.enrol()
    key = SoftKey(ORIGIN, uv=False, resident=False)
    add_key(browser, key, name="USB", kind="security_key", code=browser.code(secret, 1))
    assert keys_of(totp_app, "alice") == ["USB"]
    assert location(other.login()) == "/mfa/verify"
    response = use_key(other, key)
    assert location(response) == "/"
    assert signed_in_as(other, "alice")


def test_sc52_another_users_key_does_not_pass_the_code_step(totp_app, browser, new_browser):
    other = new_browser()
    bobs = SoftKey(ORIGIN)
    bob = new_browser()
    bob_secret = bob.enrol("bob")
    add_key(bob, bobs, name="Bob's", code=bob.code(bob_secret, 1))
    secret = browser.enrol()
    add_key(browser, SoftKey(ORIGIN), name="Alice's", code=browser.code(secret, 1))
    other.login()
    response = use_key(other, bobs)
    assert location(response) == "/mfa/verify"
    assert not signed_in_as(other, "alice")
    assert failures(totp_app, "alice") == 1  # counted as a wrong code


def test_sc51_an_assertion_replayed_at_the_code_step_is_refused(totp_app, browser, new_browser):
    other = new_browser()
    secret = browser.enrol()
    key = SoftKey(ORIGIN)
    add_key(browser, key, code=browser.code(secret, 1))
    other.login()
    page = other.page("/mfa/verify")
    answer = key.get(options_on(page, "webauthn-options-second-factor"))
    assert location(other.post("/mfa/security-key", {"credential": answer})) == "/"
    other.logout()
    other.login()
    other.page("/mfa/verify")  # a new challenge was given: the old answer is dead
    assert location(other.post("/mfa/security-key", {"credential": answer})) == "/mfa/verify"
    assert not signed_in_as(other, "alice")


def test_sc54_a_security_key_alone_never_signs_in(totp_app, browser, new_browser):
    other = new_browser()
    secret = browser.enrol()
    key = SoftKey(ORIGIN, uv=False, resident=False)
    add_key(browser, key, kind="security_key", code=browser.code(secret, 1))
    other.get("/login")
    response = other.post("/mfa/security-key", {"credential": "{}"})
    assert location(response) == "/login"
    assert not signed_in_as(other, "alice")


def test_wrong_keys_are_counted_and_end_the_pending_sign_in_like_codes(
    totp_app, browser, new_browser
):
    other = new_browser()
    secret = browser.enrol()
    add_key(browser, SoftKey(ORIGIN), code=browser.code(secret, 1))
    stranger = SoftKey(ORIGIN)
    stranger.rp_id, stranger.user_handle = "localhost", b"\1" * 64
    other.login()
    for _ in range(5):
        other.get("/mfa/verify")
        options = options_on(other.page("/mfa/verify"), "webauthn-options-second-factor")
        last = other.post("/mfa/security-key", {"credential": stranger.get(options)})
    assert location(last) == "/login"  # five failures: the pending login ended
    assert failures(totp_app, "alice") == 5


# --- Set-up: a passkey in place of an authenticator app


def test_a_passkey_at_set_up_then_at_each_sign_in(totp_app, browser, new_browser):
    other = new_browser()
    browser.login()
    assert 'id="setup-passkey"' in browser.page("/mfa/setup")
    page = browser.page("/mfa/setup/passkey")
    assert 'id="passkey-create"' in page
    key = SoftKey(ORIGIN)
    response = browser.post(
        "/mfa/setup/passkey",
        {
            "name": "Phone",
            "kind": "passkey",
            "credential": key.create(options_on(page, "webauthn-options-passkey")),
        },
    )
    assert location(response) == "/mfa/recovery-codes"
    browser.save_recovery_codes()
    assert signed_in_as(browser, "alice")
    # Next time: the code page offers the key (and no code: there is no app).
    assert location(other.login()) == "/mfa/verify"
    page = other.page("/mfa/verify")
    assert 'name="code"' not in page
    assert location(use_key(other, key)) == "/"
    assert signed_in_as(other, "alice")
