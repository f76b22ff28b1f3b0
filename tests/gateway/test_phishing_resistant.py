"""The gateway's `phishing_resistant` policy (SC-56): only a session that passed a
WebAuthn ceremony (a passkey with user verification, or the password and a security
key) gets through; one that signed in with a code, a recovery code or a remembered
device is taken through a ceremony at the portal (the code step offering only the
keys), or told how to add a key. Through the Flask client; through nginx in
tests/e2e/test_phishing_resistant_nginx.py."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

import pytest
from support.app import make_app
from support.db import audit_rows, sessions_of
from support.gateway import PORTAL, PortalBrowser, ask_nginx
from support.pages import location
from support.passkeys import options_in, register
from support.softkey import SoftKey
from support.steps import give_credential

from standalone_mfa.core.db import db
from standalone_mfa.directory import settings
from standalone_mfa.factors import webauthn
from standalone_mfa.gateway import rules

VAULT = "https://vault.example.test/secrets"
WIKI = "https://wiki.example.test/"
RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": "vault.example.test", "policy": "phishing_resistant"},
        {"domain": "*.example.test", "policy": "two_factor"},
    ],
}


@pytest.fixture
def app(tmp_path, clock):
    app = make_app(
        tmp_path,
        clock,
        ACCESS_CONTROL=RULES,
        GATEWAY_PORTAL_URL=PORTAL,
        SESSION_COOKIE_DOMAIN="example.test",
    )
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    yield app
    with app.app_context():
        db.close()


@pytest.fixture
def portal(app, clock):
    return lambda: PortalBrowser(app, clock)


def with_code(portal, app, clock, secret, remember=False):
    browser = portal()
    assert location(browser.login("alice")) == "/mfa/verify"
    clock.advance(30)
    data = {"code": browser.code(secret)} | ({"remember_device": "y"} if remember else {})
    assert location(browser.post("/mfa/verify", data)) == "/"
    return browser


def passkey_options(browser, path="/login") -> dict:
    return options_in(browser.page(path))


def test_sc56_the_rules_know_the_policy_and_rank_it_above_two_factor():
    access = rules.parse(RULES)
    assert access.rules[0].policy == rules.PHISHING_RESISTANT
    with pytest.raises(rules.RulesError, match="phishing_resistant"):
        rules.parse({"rules": [{"domain": "a.example.test", "policy": "phishing-resistant"}]})


def test_sc56_code_and_recovery_code_sessions_are_sent_to_sign_in(app, portal, clock):
    secret = give_credential(app, clock, "alice")
    browser = with_code(portal, app, clock, secret)
    token = browser.session_token()
    assert ask_nginx(app, WIKI, token).status_code == 200  # two_factor: through
    response = ask_nginx(app, VAULT, token)
    assert response.status_code == 401 and "Remote-User" not in response.headers
    assert response.headers["Location"].startswith(f"{PORTAL}/login?rd=")

    other = portal()
    other.enrol("bob")
    codes = other.recovery_codes
    other.logout()
    other.login("bob")
    other.post("/mfa/recovery", {"recovery_code": codes[0]})
    assert ask_nginx(app, WIKI, other.session_token()).status_code == 200
    assert ask_nginx(app, VAULT, other.session_token()).status_code == 401


def test_sc56_a_remembered_device_never_counts(app, portal, clock):
    with app.app_context():
        settings.set_remember_days(30, actor="test")
    secret = give_credential(app, clock, "alice")
    browser = with_code(portal, app, clock, secret, remember=True)
    browser.logout()
    assert location(browser.login("alice")) == "/"  # the device skipped the code
    assert [s.signin_methods for s in sessions_of(app, "alice")] == ["password,remembered_device"]
    assert ask_nginx(app, WIKI, browser.session_token()).status_code == 200
    assert ask_nginx(app, VAULT, browser.session_token()).status_code == 401


def test_sc56_a_passkey_sign_in_passes(app, portal, clock):
    key = register(app, clock, "alice", SoftKey("https://auth.example.test"))
    browser = portal()
    answer = key.get(passkey_options(browser))
    response = browser.post("/login/passkey?rd=" + quote(VAULT, safe=""), {"credential": answer})
    assert location(response) == VAULT
    passed = ask_nginx(app, VAULT, browser.session_token())
    assert passed.status_code == 200 and passed.headers["Remote-User"] == "alice"


def test_sc56_without_a_key_the_user_is_told_how_to_add_one(app, portal, clock):
    secret = give_credential(app, clock, "alice")
    browser = with_code(portal, app, clock, secret)
    before = [(s.state, s.signin_methods) for s in sessions_of(app, "alice")]
    page = browser.page("/login?rd=" + quote(VAULT, safe=""))
    assert 'id="add-passkey"' in page and "vault.example.test" in page
    assert 'id="phishing-resistant-continue"' not in page
    assert [(s.state, s.signin_methods) for s in sessions_of(app, "alice")] == before
    # A two_factor app of the same session is not stopped by this.
    assert location(browser.get("/login?rd=" + quote(WIKI, safe=""))) == WIKI


def test_sc56_with_a_key_the_code_step_offers_only_the_key_and_comes_back(app, portal, clock):
    secret = give_credential(app, clock, "alice")
    key = register(
        app, clock, "alice", SoftKey("https://auth.example.test", uv=False, resident=False),
        webauthn.SECURITY_KEY,
    )  # fmt: skip
    browser = with_code(portal, app, clock, secret)
    page = browser.page("/login?rd=" + quote(VAULT, safe=""))
    assert 'id="phishing-resistant-continue"' in page
    # A link alone moves nothing: only the page's button (a POST with its token).
    assert browser.post("/login?rd=" + quote(VAULT, safe=""), {}, csrf=False).status_code == 400
    assert location(browser.post("/login?rd=" + quote(VAULT, safe=""))) == "/mfa/verify"
    verify = browser.page("/mfa/verify")
    assert 'id="security-key-verify"' in verify
    assert 'name="code"' not in verify and 'id="use-recovery-code"' not in verify
    # A code is not what this step asks for.
    clock.advance(30)
    refused = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert location(refused) == "/mfa/verify"
    assert ask_nginx(app, VAULT, browser.session_token()).status_code == 401
    options, action = key_step(browser)  # one page: each load issues a new challenge
    response = browser.post(action, {"credential": key.get(options)})
    assert location(response) == VAULT
    assert [s.signin_methods for s in sessions_of(app, "alice")] == ["password,code,security_key"]
    passed = ask_nginx(app, VAULT, browser.session_token())
    assert passed.status_code == 200 and passed.headers["Remote-User"] == "alice"
    events = {r[:3] for r in audit_rows(app)}
    assert ("phishing_resistance_required", "ok", "alice") in events


KEY_FORM_RE = re.compile(r'<form[^>]*action="([^"]+)"[^>]*data-webauthn\b', re.S)
KEY_OPTIONS_RE = re.compile(
    r'<script type="application/json" id="webauthn-options-second-factor">(.*?)</script>'
)


def key_step(browser) -> tuple[dict, str]:
    """The code step's key options and where its key form posts."""
    page = browser.page("/mfa/verify")
    options = json.loads(html.unescape(KEY_OPTIONS_RE.search(page).group(1)))
    return options, html.unescape(KEY_FORM_RE.search(page).group(1))


def test_sc56_app_passwords_are_refused_on_a_phishing_resistant_rule():
    """A client that sends a secret in a header has passed no WebAuthn ceremony: a rule
    that would take app passwords for such an app stops the app at start."""
    with pytest.raises(rules.RulesError, match="not phishing_resistant"):
        rules.parse(
            {
                "rules": [
                    {
                        "domain": "vault.example.test",
                        "policy": "phishing_resistant",
                        "app_passwords": True,
                    }
                ]
            }
        )


def test_sc56_the_admin_box_says_what_a_passkey_session_gets(app, clock):
    admin = PortalBrowser(app, clock)
    secret = give_credential(app, clock, "root")
    assert location(admin.login("root")) == "/mfa/verify"
    clock.advance(30)
    admin.post("/mfa/verify", {"code": admin.code(secret)})
    page = admin.page("/admin/access?url=" + quote(VAULT, safe="") + "&method=GET&username=alice")
    text = re.sub(r"\s+", " ", page)
    assert "signed in with the second factor: <strong>Sent to sign in</strong>" in text
    assert "signed in with a passkey or security key: <strong>Let through</strong>" in text
