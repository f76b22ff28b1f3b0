"""The gateway in a real browser: Debian's Chromium (Playwright) through nginx with
TLS, the shipped deploy/nginx.conf in front of the portal (gunicorn, real clock, its own
SQLite file) at https://auth.example.test and deploy/nginx-app.conf with its snippets
in front of two protected apps, https://app1.example.test and app2, served by an app
that echoes the headers it received. Chromium's --host-resolver-rules sends every
*.example.test name to 127.0.0.1 (the nginx port stays in the URLs) and the throwaway
certificate is for *.example.test, so the `__Secure-` session cookie for the parent
domain is a real one, shared by the apps as in production. With JavaScript on and off.

One portal, nginx and Chromium serve the module; each flow uses a new user and one
code of its key, so nothing waits for a time step.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import quote

import pyotp
import pytest
from playwright.sync_api import expect, sync_playwright
from proxies import (
    DOMAIN,
    PORTAL_HOST,
    RULES,
    TRUST_ONE_PROXY,
    echo_upstream,
    free_port,
    gunicorn_portal,
    new_account,
    nginx_gateway,
    write_portal_instance,
)

from standalone_mfa import create_app
from standalone_mfa.core.db import db
from standalone_mfa.core.models import User
from standalone_mfa.directory import settings
from standalone_mfa.directory.users import find_user
from standalone_mfa.factors import totp
from standalone_mfa.ops import schema

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
ACTION_TIMEOUT_MS = 10_000
CODE_LABEL = "6-digit code from your authenticator app"
SECRET_FORMAT = re.compile(r"(?:[A-Z2-7]{4} ){7}[A-Z2-7]{4}")
AXE_JS = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
AXE_RUN_JS = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}));
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(in-process app on the portal's database, nginx's HTTPS port)."""
    folder = tmp_path_factory.mktemp("browser-gateway")
    port = free_port()
    instance = write_portal_instance(
        folder / "instance",
        {
            "ACCESS_CONTROL": RULES,
            "GATEWAY_PORTAL_URL": f"https://{PORTAL_HOST}:{port}",
            "SESSION_COOKIE_DOMAIN": DOMAIN,
            **TRUST_ONE_PROXY,
        },
    )  # no DATABASE_URL: a SQLite file in the instance folder, whatever the test pass
    app = create_app(instance_path=str(instance))
    with app.app_context():
        schema.upgrade()
        settings.set_mfa_method("totp", actor="browser-tests")
    try:
        with (
            gunicorn_portal(instance, folder / "portal.log") as portal_port,
            echo_upstream() as up,
            nginx_gateway(folder, port, portal_port, portal_port, up),
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


def url(site, name: str, path: str = "/") -> str:
    return f"https://{name}.{DOMAIN}:{site[1]}{path}"


def code_now(secret: str) -> str:
    """What the authenticator app shows now (each user's key is used once)."""
    return pyotp.TOTP(secret).at(time.time())


def echoed(page) -> dict[str, str]:
    """The headers the app received, from the JSON it answered (lower-case names)."""
    body = json.loads(page.locator("body").inner_text())
    return {name.lower(): value for name, value in body["headers"]}


def window(chromium, javascript: bool, bypass_csp: bool = False):
    context = chromium.new_context(
        ignore_https_errors=True, java_script_enabled=javascript, bypass_csp=bypass_csp
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context, context.new_page()


def sign_in(page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in", exact=True).click()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_round_trip_through_nginx_two_apps_one_sign_in_and_out(site, chromium, javascript):
    app, _port = site
    account = new_account(app, "browser", groups=("staff",))
    context, page = window(chromium, javascript)
    try:
        target = url(site, "app1", "/wiki/Main?rev=2")
        page.goto(target)
        expect(page).to_have_url(
            re.compile(
                re.escape(f"https://{PORTAL_HOST}:{site[1]}/login?rd={quote(target, safe='')}")
            )
        )
        sign_in(page, account.username)

        # First sign-in: set up the authenticator, keep the recovery codes, then back.
        expect(page).to_have_url(re.compile(r"/mfa/setup$"))
        shown = page.locator("#totp-secret").inner_text()
        assert SECRET_FORMAT.fullmatch(shown), shown
        page.get_by_label(CODE_LABEL).fill(code_now(shown.replace(" ", "")))
        page.get_by_role("button", name="Confirm and sign in").click()
        expect(page).to_have_url(re.compile(r"/mfa/recovery-codes$"))
        page.locator("#codes-saved").click()
        expect(page).to_have_url(target)
        seen = echoed(page)
        assert seen["remote-user"] == account.username and seen["remote-groups"] == "staff"

        # The cookie: the portal's, for the parent domain, Secure and __Secure- prefixed.
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["__Secure-smfa_session"]
        assert session["domain"] == f".{DOMAIN}"
        assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"

        # The second app: no new sign-in.
        page.goto(url(site, "app2", "/"))
        expect(page).to_have_url(url(site, "app2", "/"))
        assert echoed(page)["remote-user"] == account.username

        # The app's "sign out" link: the portal asks to confirm, then every app asks
        # to sign in again.
        back = url(site, "app2", "/")
        page.goto(f"https://{PORTAL_HOST}:{site[1]}/logout?rd={quote(back, safe='')}")
        page.locator("#confirm-sign-out").click()
        expect(page).to_have_url(re.compile(r"/login\?rd=" + re.escape(quote(back, safe=""))))
        page.goto(url(site, "app1", "/"))
        expect(page).to_have_url(re.compile(re.escape(f"https://{PORTAL_HOST}:") + r"\d+/login\?"))
    finally:
        context.close()


def test_access_rules_page_is_accessible(site, chromium):
    """Administration » Access rules, with a URL tested, through nginx: no serious axe
    finding in light or dark. axe is injected inline, which the site's CSP forbids, so
    this window bypasses the CSP."""
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: `make test` runs npm ci in tests/browser")
    app, port = site
    admin = new_account(app, "admin", enrolled_at_step=int(time.time()) // totp.PERIOD - 2)
    with app.app_context():
        User.update(is_admin=True).where(User.id == find_user(admin.username).id).execute()
    context = chromium.new_context(ignore_https_errors=True, bypass_csp=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    try:
        portal = f"https://{PORTAL_HOST}:{port}"
        page.goto(portal + "/login")
        sign_in(page, admin.username)
        expect(page).to_have_url(re.compile(r"/mfa/verify$"))
        page.get_by_label(CODE_LABEL).fill(code_now(admin.secret))
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(portal + "/")
        page.goto(portal + "/admin/access")
        page.get_by_label("URL").fill(url(site, "staff", "/"))
        page.get_by_label("As user (optional)").fill(admin.username)
        page.get_by_role("button", name="Test").click()
        expect(page.locator("#access-result")).to_contain_text("Refused (403)")
        page.add_script_tag(content=AXE_JS.read_text())
        found = {}
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            found[scheme] = page.evaluate(AXE_RUN_JS)
        assert found == {"light": [], "dark": []}, json.dumps(found, indent=1)
    finally:
        context.close()
