"""The sign-in, set-up, step-up and account steps a person or an administrator takes,
one name each."""

from __future__ import annotations

import html

from standalone_mfa.directory import tokens
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import totp
from support.app import PASSWORD
from support.client import Browser, device_token, signed_in_as
from support.db import credential_secret, mfa_method
from support.oath import fresh_code
from support.pages import SECRET_RE, admin_messages, location, text


def pending_setup(new_browser, username="alice"):
    """A new browser at /mfa/setup of a first sign-in; returns it and its secret."""
    browser = new_browser()
    assert location(browser.login(username)) == "/mfa/setup"
    return browser, browser.setup_secret()


def enrol_then_pending_verify(new_browser, clock, username="alice"):
    """`username` enrols in one browser; later, another browser passes the password
    step and waits at /mfa/verify. Returns (that browser, the secret)."""
    secret = new_browser().enrol(username)
    clock.advance(60)  # the enrolment step is used; start from a fresh one
    pending = new_browser()
    response = pending.login(username)
    assert location(response) == "/mfa/verify"
    return pending, secret


def api_token(app, username="root") -> str:
    """A new API token of `username` (root, the administrator, by default)."""
    with app.app_context():
        return tokens.create_token(find_user(username), actor="test")


def give_credential(app, clock, username) -> str:
    """A confirmed credential, last used one step before now; returns the secret."""
    with app.app_context():
        user = find_user(username) or create_user(username, PASSWORD)
        secret = totp.new_secret()
        step = int(clock.timestamp()) // totp.PERIOD
        assert totp.enrol(user, secret, step - 1) is not None
    return secret


def pending_verify_with_credential(new_browser, app, clock, username="alice"):
    """`username` has a credential and a browser waiting at /mfa/verify."""
    secret = give_credential(app, clock, username)
    browser = new_browser()
    assert location(browser.login(username)) == "/mfa/verify"
    return browser, secret


def pending_verify(new_browser, username="alice"):
    """A new browser that passed the password step and waits at /mfa/verify."""
    browser = new_browser()
    response = browser.login(username)
    assert location(response) == "/mfa/verify"
    return browser


def signed_in_with_code(new_browser, secret, username="alice", remember=False):
    """A new browser signed in with the password and a fresh code."""
    browser = pending_verify(new_browser, username)
    data = {"code": fresh_code(browser, secret)}
    if remember:
        data["remember_device"] = "y"
    response = browser.post("/mfa/verify", data)
    assert location(response) == "/", text(browser.page("/mfa/verify"))
    return browser


def remembered_browser(new_browser, secret, username="alice"):
    """A browser that ticked "Remember this device" with a code, then signed out."""
    browser = signed_in_with_code(new_browser, secret, username, remember=True)
    assert device_token(browser)
    browser.logout()
    assert not signed_in_as(browser, username)
    return browser


def use_recovery_code(browser, code):
    """At the code step: "Use a recovery code instead", then enter `code`."""
    page = browser.page("/mfa/recovery")
    assert 'name="recovery_code"' in page
    return browser.post("/mfa/recovery", {"recovery_code": code})


def confirm_identity(browser, path, password, code=None, recovery_code=None):
    """Open `path` and prove it is you there: the password, and a code or a recovery code."""
    browser.get(path)
    data = {"password": password}
    if code is not None:
        data["code"] = code
    if recovery_code is not None:
        data["recovery_code"] = recovery_code
    return browser.post(path, data)


def regenerate(browser, password, code=None, recovery_code=None):
    return confirm_identity(browser, "/account/recovery-codes", password, code, recovery_code)


def confirm_for_new_authenticator(browser, password, code=None, recovery_code=None):
    return confirm_identity(browser, "/account/authenticator", password, code, recovery_code)


def new_authenticator_secret(browser) -> str:
    page = browser.page("/account/authenticator/new")
    match = SECRET_RE.search(page)
    assert match, page
    return html.unescape(match.group(1)).replace(" ", "")


def change_password(browser, current, new, confirm=None):
    browser.get("/account/password")
    return browser.post(
        "/account/password",
        {
            "current_password": current,
            "new_password": new,
            "confirm_password": new if confirm is None else confirm,
        },
    )


def signed_in_admin(app, clock):
    """root's browser, signed in (through the second factor when the method is TOTP:
    root's secret is then `admin.secret`)."""
    admin = Browser(app, clock)
    if mfa_method(app) == "totp":
        admin.enrol("root")
    else:
        assert admin.login("root").headers["Location"] == "/"
    assert admin.get("/admin/").status_code == 200
    return admin


ACTIONS = ("reset-mfa", "unlock", "grant-admin", "revoke-admin", "sign-out")


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
    assert "/admin/step-up" not in response.headers["Location"], admin_messages(admin)
    return response


def act(admin, username, action):
    """Open the confirmation page, then press its button."""
    page = admin.get(f"/admin/users/{username}/{action}")
    assert page.status_code == 200, page.headers.get("Location")
    return admin.post(f"/admin/users/{username}/{action}")


def save_mfa_settings(admin, data, username="root", **kwargs):
    """As an administrator does on /admin/mfa: step up first (a fresh code from their
    authenticator, or the password without one), open the page, then save `data`."""
    step_up(admin, credential_secret(admin.app, username))
    admin.get("/admin/mfa")
    return admin.post("/admin/mfa", data, **kwargs)
