"""Passkey sign-in in a real browser: Debian's Chromium with a virtual authenticator
(CDP `WebAuthn.*`, which applies the browser's own RP-ID and origin rules, unlike
Playwright's `context.credentials`), through nginx over TLS as the gateway's browser
tests run: the portal at https://auth.example.test:PORT (RP ID auth.example.test, the
exact origin with its port), a `phishing_resistant` app at https://secure.example.test.
The button, autofill (a conditional request that completes by itself), user
verification off refused, no CSP violation, axe, and 360 px.

The key is made by the in-repo software authenticator (registered through the
portal's own ceremony) and its private key handed to the virtual authenticator, so
each test starts from a known credential.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import expect, sync_playwright
from support.browser import AXE_JS, AXE_RUN_JS, CHROMIUM, echoed
from support.passkeys import register
from support.proxies import (
    DOMAIN,
    PORTAL_HOST,
    TRUST_ONE_PROXY,
    echo_upstream,
    new_account,
    nginx_gateway,
)
from support.servers import (
    clean_env,
    free_port,
    gunicorn,
    instance_target,
    port_of,
    write_instance,
)
from support.softkey import SoftKey

from standalone_mfa import create_app
from standalone_mfa.core.db import db
from standalone_mfa.directory import settings
from standalone_mfa.ops import schema

pytestmark = [pytest.mark.browser, pytest.mark.server]

TIMEOUT_MS = 10_000
RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": [f"secure.{DOMAIN}"], "policy": "phishing_resistant"},
        {"domain": [f"public.{DOMAIN}"], "policy": "bypass"},
        {"domain": [f"*.{DOMAIN}"], "policy": "two_factor"},
    ],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(in-process app on the portal's database, nginx's HTTPS port)."""
    folder = tmp_path_factory.mktemp("browser-passkeys")
    port = free_port()
    instance = write_instance(
        folder / "instance",
        {
            "ACCESS_CONTROL": RULES,
            "GATEWAY_PORTAL_URL": f"https://{PORTAL_HOST}:{port}",
            "SESSION_COOKIE_DOMAIN": DOMAIN,
            **TRUST_ONE_PROXY,
        },
    )
    app = create_app(instance_path=str(instance))
    with app.app_context():
        schema.upgrade()
        settings.set_mfa_method("totp", actor="browser-tests")
    try:
        with (
            gunicorn(instance_target(instance), folder / "portal.log", clean_env()) as portal,
            echo_upstream() as up,
            nginx_gateway(folder, port, port_of(portal), port_of(portal), up),
        ):
            yield app, port
    finally:
        with app.app_context():
            db.close()


@pytest.fixture(scope="module")
def chromium(site):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1"],
        )
        yield browser
        browser.close()


def portal(site) -> str:
    return f"https://{PORTAL_HOST}:{site[1]}"


def secure_url(site, path="/vault") -> str:
    return f"https://secure.{DOMAIN}:{site[1]}{path}"


class Person:
    """A Chromium window with a virtual authenticator; console errors (a CSP
    violation is one) kept."""

    def __init__(self, chromium, *, width=None, bypass_csp=False):
        options = {"ignore_https_errors": True, "bypass_csp": bypass_csp}
        if width:
            options |= {"viewport": {"width": width, "height": 740}, "is_mobile": True}
        self.context = chromium.new_context(**options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        self.authenticator = None

    def add_authenticator(self, **options):
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
            **options,
        }
        self.authenticator = self.cdp.send(
            "WebAuthn.addVirtualAuthenticator", {"options": options}
        )["authenticatorId"]

    def hold(self, key: SoftKey) -> None:
        """Put the software key's passkey into the virtual authenticator."""
        der = key.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.cdp.send(
            "WebAuthn.addCredential",
            {
                "authenticatorId": self.authenticator,
                "credential": {
                    "credentialId": base64.b64encode(key.credential_id).decode(),
                    "isResidentCredential": True,
                    "rpId": key.rp_id,
                    "privateKey": base64.b64encode(der).decode(),
                    "userHandle": base64.b64encode(key.user_handle).decode(),
                    "signCount": key.counter,
                },
            },
        )

    def close(self):
        self.context.close()


def passkey_user(site):
    """A new user with a passkey registered for the portal's RP ID and origin."""
    app, _ = site
    account = new_account(app, "pk")
    key = register(app, _clock(), account.username, SoftKey(portal(site)))
    assert key.rp_id == PORTAL_HOST
    return account, key


def _clock():
    from standalone_mfa.core.clock import SystemClock

    return SystemClock()


def test_sc54_the_button_signs_in_through_nginx_to_a_phishing_resistant_app(site, chromium):
    account, key = passkey_user(site)
    person = Person(chromium)
    try:
        page = person.page
        page.goto(secure_url(site))
        expect(page).to_have_url(re.compile(re.escape(portal(site)) + r"/login\?rd="))
        # The authenticator arrives after the page's autofill request started (a
        # security key plugged in): the button's own request is the one answered.
        person.add_authenticator()
        person.hold(key)
        button = page.locator("#passkey-signin")
        expect(button).to_be_visible()
        button.click()
        expect(page).to_have_url(secure_url(site))
        assert echoed(page)["remote-user"] == account.username
        assert person.console_errors == []  # no CSP violation, no script error
    finally:
        person.close()


def test_autofill_signs_in_with_no_click(site, chromium):
    account, key = passkey_user(site)
    person = Person(chromium)
    try:
        person.add_authenticator()
        person.hold(key)
        page = person.page
        page.goto(secure_url(site))
        # The conditional request started on load completes by itself (the virtual
        # authenticator's presence simulation stands for picking the passkey).
        expect(page).to_have_url(secure_url(site))
        assert echoed(page)["remote-user"] == account.username
        assert person.console_errors == []
    finally:
        person.close()


def test_sc54_user_verification_off_does_not_sign_in(site, chromium):
    _account, key = passkey_user(site)
    person = Person(chromium)
    try:
        page = person.page
        page.goto(portal(site) + "/login")
        person.add_authenticator(isUserVerified=False)
        person.hold(key)
        page.locator("#passkey-signin").click()
        expect(page.locator("[data-webauthn-status]")).to_contain_text("did not go through")
        expect(page).to_have_url(portal(site) + "/login")
        assert [e for e in person.console_errors if "NotAllowedError" not in e] == []
    finally:
        person.close()


def test_the_rp_id_is_the_portals_host_and_only_its_origin_works(site, chromium):
    """The virtual authenticator holds a credential for the portal's host; the
    portal's own options name that RP ID, and a page on another subdomain cannot use
    it (the browser refuses an RP ID that is not its own registrable suffix)."""
    person = Person(chromium)
    try:
        page = person.page
        page.goto(portal(site) + "/login")
        options = json.loads(page.locator("#webauthn-options-signin").text_content())
        assert options["rpId"] == PORTAL_HOST
        person.add_authenticator()
        page.goto(f"https://public.{DOMAIN}:{site[1]}/")  # another subdomain's page
        error = person.page.evaluate(
            """async (rpId) => {
                 try {
                   await navigator.credentials.get({publicKey: {
                     challenge: new Uint8Array(32), rpId, userVerification: "required"}});
                   return "no error";
                 } catch (e) { return e.name; }
               }""",
            PORTAL_HOST,
        )
        assert error == "SecurityError"
    finally:
        person.close()


@pytest.mark.parametrize("width", [None, 360], ids=["desktop", "mobile-360"])
def test_sign_in_page_with_passkeys_is_accessible_and_fits(site, chromium, width):
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: `make test` runs npm ci in tests/browser")
    person = Person(chromium, width=width, bypass_csp=True)
    try:
        page = person.page
        page.goto(portal(site) + "/login")
        expect(page.locator("#passkey-signin")).to_be_visible()
        if width:
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width, f"the page scrolls sideways: {scroll_width}px"
            box = page.locator("#passkey-signin").bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        page.add_script_tag(content=AXE_JS.read_text())
        found = {}
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            found[scheme] = page.evaluate(AXE_RUN_JS)
        assert found == {"light": [], "dark": []}, json.dumps(found, indent=1)
    finally:
        person.close()


def test_without_javascript_the_sign_in_page_is_the_password_form(site, chromium):
    context = chromium.new_context(ignore_https_errors=True, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(portal(site) + "/login")
        expect(page.locator("#passkey-signin")).to_be_hidden()
        expect(page.get_by_label("Username")).to_be_visible()
    finally:
        context.close()


def test_a_user_without_a_key_is_told_how_to_add_one(site, chromium):
    """Signed in with a password and a code, a phishing_resistant app's link shows how
    to add a key (the page passes axe at 360 px)."""
    import time

    import pyotp

    from standalone_mfa.factors import totp

    app, _ = site
    account = new_account(app, "nokey", enrolled_at_step=int(time.time()) // totp.PERIOD - 2)
    person = Person(chromium, width=360, bypass_csp=True)
    try:
        page = person.page
        page.goto(secure_url(site))
        page.get_by_label("Username").fill(account.username)
        page.get_by_label("Password").fill("correct horse battery staple")
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.get_by_label("6-digit code from your authenticator app").fill(
            pyotp.TOTP(account.secret).now()
        )
        page.get_by_role("button", name="Verify").click()
        expect(page.locator("#add-passkey")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.add_script_tag(content=AXE_JS.read_text())
        assert page.evaluate(AXE_RUN_JS) == []
    finally:
        person.close()


def test_sc56_a_code_session_is_taken_through_its_key_and_back(site, chromium):
    """Signed in with a password and a code, the phishing_resistant app sends the
    person to the portal: one click, the code step offering only the key (no code
    field), the key, and back on the app."""
    import time

    import pyotp

    from standalone_mfa.factors import totp

    app, _ = site
    account = new_account(app, "keyed", enrolled_at_step=int(time.time()) // totp.PERIOD - 2)
    key = register(app, _clock(), account.username, SoftKey(portal(site)))
    person = Person(chromium)
    try:
        page = person.page
        page.goto(f"https://app1.{DOMAIN}:{site[1]}/")
        page.get_by_label("Username").fill(account.username)
        page.get_by_label("Password").fill("correct horse battery staple")
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.get_by_label("6-digit code from your authenticator app").fill(
            pyotp.TOTP(account.secret).now()
        )
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(f"https://app1.{DOMAIN}:{site[1]}/")
        page.goto(secure_url(site))
        page.locator("#phishing-resistant-continue").click()
        expect(page).to_have_url(portal(site) + "/mfa/verify")
        expect(page.get_by_label("6-digit code from your authenticator app")).to_have_count(0)
        person.add_authenticator()
        person.hold(key)
        page.locator("#security-key-verify").click()
        expect(page).to_have_url(secure_url(site))
        assert echoed(page)["remote-user"] == account.username
        assert person.console_errors == []
    finally:
        person.close()
