"""Passkeys and security keys in a real Chromium under the portal's own CSP, with the
browser's virtual authenticators (CDP's WebAuthn domain: the browser's own RP-ID and
origin rules apply, unlike Playwright's injected credentials). The portal is browsed
as http://localhost:PORT: an IP address cannot hold a passkey (SC-53, SC-54, SC-55)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from support.app import PASSWORD, START, make_app
from support.browser import AXE_JS, CHROMIUM, SCREENSHOTS_DIR
from support.servers import quiet_server

from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent, User, WebAuthnCredential
from standalone_mfa.directory import settings
from standalone_mfa.directory.users import create_user
from standalone_mfa.factors import webauthn

ACTION_TIMEOUT_MS = 10_000
AXE_RUN_JS = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, targets: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}));
}"""
WIDE_JS = """(w) => [...document.querySelectorAll("body *")]
  .filter(e => e.getBoundingClientRect().right > w && !e.closest("table"))
  .map(e => e.tagName + "." + e.className + "#" + e.id).slice(0, 8)"""
PASSKEY = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}
SECURITY_KEY = {
    "protocol": "ctap2",
    "transport": "usb",
    "hasResidentKey": False,
    "hasUserVerification": False,
    "automaticPresenceSimulation": True,
}

pytestmark = [pytest.mark.browser, pytest.mark.server]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The portal on a free port, browsed as http://localhost:PORT (its only origin)."""
    app = make_app(tmp_path_factory.mktemp("passkeys"), FrozenClock(START))
    with quiet_server(app) as url:
        base = url.replace("127.0.0.1", "localhost")
        app.config["WEBAUTHN_ORIGINS"] = [base]  # read at each ceremony
        app.base = base
        yield app
    with app.app_context():
        db.close()


@pytest.fixture(scope="module")
def chromium(site):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


class Window:
    """One person's browser window, with a virtual authenticator plugged in."""

    def __init__(self, site, chromium, authenticator: dict | None, **options):
        self.site = site
        self.context = chromium.new_context(base_url=site.base, **options)
        self.context.set_default_timeout(ACTION_TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        self.authenticator = None
        if authenticator is not None:
            self.authenticator = self.cdp.send(
                "WebAuthn.addVirtualAuthenticator", {"options": authenticator}
            )["authenticatorId"]

    def credentials(self) -> list[dict]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})[
            "credentials"
        ]

    def sign_in(self, username: str) -> None:
        self.page.goto("/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in", exact=True).click()

    def add_key(self, name: str, kind: str = "A passkey") -> None:
        """Account security's "Add a passkey or security key": the password, then the
        name and kind, then the browser makes the key."""
        self.page.goto("/account/passkeys/new")
        self.page.get_by_label("Your password").fill(PASSWORD)
        self.page.get_by_role("button", name="Continue").click()
        self.page.wait_for_url(re.compile(r".*/account/passkeys/new$"))
        self.page.get_by_label("Name of the key").fill(name)
        self.page.get_by_label(re.compile(f"^{kind}")).check()
        self.page.locator("#passkey-create").click()

    def close(self):
        self.context.close()


@pytest.fixture
def window(site, chromium):
    windows = []

    def open_(authenticator=PASSKEY, **options) -> Window:
        opened = Window(site, chromium, authenticator, **options)
        windows.append(opened)
        return opened

    yield open_
    for opened in windows:
        opened.close()


_names = iter(f"pk{n}" for n in range(1000))


@pytest.fixture
def person(site):
    name = next(_names)
    with site.app_context():
        settings.set_mfa_method("disabled", actor="test")
        create_user(name, PASSWORD)
    return name


def stored(site, username) -> list[WebAuthnCredential]:
    with site.app_context():
        user = User.get(User.username == username)
        return list(WebAuthnCredential.select().where(WebAuthnCredential.user == user))


def test_sc53_a_passkey_is_made_on_account_security_for_localhost_under_the_csp(
    site, window, person
):
    me = window()
    me.sign_in(person)
    me.add_key("Work laptop")
    me.page.wait_for_url(re.compile(r".*/mfa/recovery-codes$"))  # a first second factor
    (key,) = stored(site, person)
    assert (key.name, key.kind, key.rp_id, key.user_verified) == (
        "Work laptop", "passkey", "localhost", True,
    )  # fmt: skip
    (made,) = me.credentials()
    assert made["isResidentCredential"] and made["rpId"] == "localhost"
    with site.app_context():
        handle = webauthn.user_handle(User.get(User.username == person))
    assert base64.b64decode(made["userHandle"]) == handle
    assert base64.b64decode(made["credentialId"]) == bytes(key.credential_id)
    assert me.errors == []  # no CSP violation, no script error


def test_a_security_key_after_the_password_on_the_code_page(site, window, person):
    me = window(SECURITY_KEY)
    me.sign_in(person)
    me.add_key("Blue USB key", kind="A security key")
    me.page.wait_for_url(re.compile(r".*/mfa/recovery-codes$"))
    assert [k.kind for k in stored(site, person)] == ["security_key"]
    assert me.credentials()[0]["isResidentCredential"] is False
    with site.app_context():
        settings.set_mfa_method("totp", actor="test")
    later = window(None)  # the same key, in another browser: plug it in there
    later.authenticator = later.cdp.send(
        "WebAuthn.addVirtualAuthenticator", {"options": SECURITY_KEY}
    )["authenticatorId"]
    for credential in me.credentials():
        later.cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": later.authenticator, "credential": credential},
        )
    later.sign_in(person)
    later.page.wait_for_url(re.compile(r".*/mfa/verify$"))
    later.page.locator("#security-key-verify").click()
    later.page.wait_for_url(re.compile(r".*/$"))
    expect(later.page.locator("#signed-in-user")).to_have_text(person)
    assert stored(site, person)[0].last_used_at is not None
    assert me.errors == later.errors == []


def test_sc54_user_verification_off_makes_no_passkey(site, window, person):
    me = window({**PASSKEY, "isUserVerified": False})
    me.sign_in(person)
    me.add_key("No fingerprint")
    expect(me.page.locator("[data-webauthn-status]")).to_contain_text("The key was not made")
    assert stored(site, person) == []
    assert me.credentials() == []


def test_sc55_a_counter_that_went_backwards_is_refused_and_marked(site, window, person):
    me = window()
    me.sign_in(person)
    me.add_key("Copied?")
    me.page.wait_for_url(re.compile(r".*/mfa/recovery-codes$"))
    me.page.get_by_role("button", name=re.compile("saved")).click()
    with site.app_context():
        settings.set_mfa_method("totp", actor="test")
        WebAuthnCredential.update(sign_count=1000).execute()  # as if a copy ran ahead
    other = window(None)
    other.sign_in(person)
    other.page.wait_for_url(re.compile(r".*/mfa/verify$"))
    other.authenticator = other.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": PASSKEY})[
        "authenticatorId"
    ]
    for credential in me.credentials():
        other.cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": other.authenticator, "credential": credential},
        )
    other.page.locator("#security-key-verify").click()
    other.page.wait_for_url(re.compile(r".*/mfa/verify$"))
    expect(other.page.get_by_role("alert").filter(has_text="was not accepted")).to_have_count(1)
    (key,) = stored(site, person)
    assert key.clone_warning_at is not None and key.sign_count == 1000


def test_a_keys_only_person_confirms_it_is_them_with_the_key(site, window, person):
    """Re-authentication (new recovery codes) and an administrator's step-up for a
    person whose only second factor is a passkey: the password alone is refused, the
    key's button does it, with the browser's own ceremony under the CSP."""
    with site.app_context():
        User.update(is_admin=True).where(User.username == person).execute()
    me = window()
    me.sign_in(person)
    me.add_key("Laptop")
    me.page.wait_for_url(re.compile(r".*/mfa/recovery-codes$"))
    me.page.get_by_role("button", name=re.compile("saved")).click()
    me.page.goto("/account/recovery-codes")
    me.page.get_by_label("Your password").fill(PASSWORD)
    me.page.get_by_role("button", name="Continue").click()
    expect(me.page.get_by_role("alert")).to_contain_text("Use your security key or passkey")
    me.page.get_by_label("Your password").fill(PASSWORD)
    me.page.locator("#security-key-reauth").click()
    me.page.wait_for_url(re.compile(r".*/mfa/recovery-codes$"))
    expect(me.page.get_by_role("heading", level=1)).to_contain_text("recovery codes")
    me.page.get_by_role("button", name=re.compile("saved")).click()
    me.page.goto("/admin/step-up?next=/admin/mfa")
    expect(me.page.get_by_label("Password")).to_have_count(0)  # the key, nothing else
    shown(me, "step-up-key", "light")
    me.page.locator("#security-key-reauth").click()
    me.page.wait_for_url(re.compile(r"^[^?]*/admin/mfa$"))  # not ?next=/admin/mfa
    with site.app_context():
        events = list(
            AuditEvent.select().where(AuditEvent.event == "reauth").order_by(AuditEvent.id)
        )
    assert [(e.outcome, e.detail) for e in events[-2:]] == [
        ("ok", "security key"), ("ok", "security key"),
    ]  # fmt: skip
    assert me.errors == []


@pytest.mark.parametrize("width", [1280, 360])
def test_the_passkey_pages_pass_axe_and_fit_a_phone(site, window, person, width):
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: `make test` runs npm ci in tests/browser")
    # axe is injected as a script, which the CSP rightly forbids: bypassed for it only.
    me = window(bypass_csp=True, viewport={"width": width, "height": 800})
    me.sign_in(person)
    me.add_key("Phone")
    me.page.wait_for_url(re.compile(r".*/mfa/recovery-codes$"))
    me.page.get_by_role("button", name=re.compile("saved")).click()
    with site.app_context():
        settings.set_mfa_method("totp", actor="test")
    pages = ["/account/passkeys", "/account/security", "/account/passkeys/new"]
    for path in pages:
        me.page.goto(path)
        me.page.add_script_tag(content=AXE_JS.read_text())
        assert me.page.evaluate(AXE_RUN_JS) == [], path
        width_used = me.page.evaluate("document.documentElement.scrollWidth")
        wide = me.page.evaluate(WIDE_JS, width)
        assert width_used <= width, f"{path} scrolls sideways at {width}px: {width_used} {wide}"
    # A second key: the password and the first key (keys are this person's only factor).
    me.page.get_by_label("Your password").fill(PASSWORD)
    me.page.locator("#security-key-reauth").click()
    expect(me.page.locator("#passkey-create")).to_be_visible()
    me.page.add_script_tag(content=AXE_JS.read_text())
    assert me.page.evaluate(AXE_RUN_JS) == [], "the name and kind form"
    # The code page with a key, and set-up's passkey page.
    code_page = window(bypass_csp=True, viewport={"width": width, "height": 800})
    code_page.sign_in(person)
    code_page.page.wait_for_url(re.compile(r".*/mfa/verify$"))
    expect(code_page.page.locator("#security-key-verify")).to_be_visible()
    code_page.page.add_script_tag(content=AXE_JS.read_text())
    assert code_page.page.evaluate(AXE_RUN_JS) == [], "/mfa/verify"
    newcomer = next(_names)
    with site.app_context():
        create_user(newcomer, PASSWORD)
    setup = window(bypass_csp=True, viewport={"width": width, "height": 800})
    setup.sign_in(newcomer)
    setup.page.wait_for_url(re.compile(r".*/mfa/setup$"))
    setup.page.locator("#setup-passkey").click()
    setup.page.wait_for_url(re.compile(r".*/mfa/setup/passkey$"))
    setup.page.add_script_tag(content=AXE_JS.read_text())
    assert setup.page.evaluate(AXE_RUN_JS) == [], "/mfa/setup/passkey"
    assert setup.page.evaluate("document.documentElement.scrollWidth") <= width


LOOKS = {
    "light": {"viewport": {"width": 1280, "height": 800}, "color_scheme": "light"},
    "dark": {"viewport": {"width": 1280, "height": 800}, "color_scheme": "dark"},
    "fr-phone": {"viewport": {"width": 360, "height": 800}, "color_scheme": "light"},
}


def shown(me: Window, name: str, look: str) -> None:
    """The page as the docs show it (`make screenshots`: SCREENSHOTS_DIR): in French
    for the phone (the `lang` cookie, as the picker sets it), where nothing may be
    wider than the screen."""
    if look == "fr-phone":
        me.context.add_cookies([{"name": "lang", "value": "fr", "url": me.site.base}])
        me.page.reload()
        assert me.page.evaluate("document.documentElement.lang") == "fr"
        assert me.page.evaluate("document.documentElement.scrollWidth") <= 360, name
    if SCREENSHOTS_DIR:
        Path(SCREENSHOTS_DIR).mkdir(parents=True, exist_ok=True)
        path = Path(SCREENSHOTS_DIR) / f"{name}-{look}.png"
        me.page.screenshot(path=str(path), full_page=True)
    if look == "fr-phone":
        me.context.clear_cookies(name="lang")
        me.page.reload()


@pytest.mark.parametrize("look", LOOKS)
def test_the_passkey_pages_show_their_passkey_parts(site, window, person, look):
    """The sign-in page's passkey button, Account security's list and new-key form,
    the code page's "Use your security key or passkey" and set-up's passkey page, each
    with its passkey part shown (a browser that can use one), in light, dark and
    French on a 360 px phone: saved as the docs' screenshots by `make screenshots`."""
    me = window(**LOOKS[look])
    me.page.goto("/login")
    expect(me.page.locator("#passkey-signin")).to_be_visible()
    shown(me, "passkey-login", look)
    me.sign_in(person)
    me.add_key("Phone")
    me.page.wait_for_url(re.compile(r".*/mfa/recovery-codes$"))
    me.page.get_by_role("button", name=re.compile("saved")).click()
    me.page.goto("/account/passkeys")
    expect(me.page.get_by_text("Phone", exact=True)).to_be_visible()
    shown(me, "passkeys", look)
    me.page.goto("/account/passkeys/new")
    me.page.get_by_label("Your password").fill(PASSWORD)
    me.page.locator("#security-key-reauth").click()  # the first key confirms it is them
    expect(me.page.locator("#passkey-create")).to_be_visible()
    shown(me, "passkey-new", look)
    with site.app_context():
        settings.set_mfa_method("totp", actor="test")
    code_page = window(SECURITY_KEY, **LOOKS[look])
    code_page.sign_in(person)
    code_page.page.wait_for_url(re.compile(r".*/mfa/verify$"))
    expect(code_page.page.locator("#security-key-verify")).to_be_visible()
    shown(code_page, "verify-key", look)
    newcomer = next(_names)
    with site.app_context():
        create_user(newcomer, PASSWORD)
    setup = window(**LOOKS[look])
    setup.sign_in(newcomer)
    setup.page.wait_for_url(re.compile(r".*/mfa/setup$"))
    setup.page.locator("#setup-passkey").click()
    setup.page.wait_for_url(re.compile(r".*/mfa/setup/passkey$"))
    expect(setup.page.locator("#passkey-create")).to_be_visible()
    shown(setup, "setup-passkey", look)
