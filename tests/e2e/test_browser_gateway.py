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
from urllib.parse import quote

import pytest
from playwright.sync_api import expect
from support.browser import (
    ACTION_TIMEOUT_MS,
    AXE_JS,
    AXE_RUN_JS,
    CODE_LABEL,
    SECRET_FORMAT,
    code_now,
    echoed,
    gateway_url,
    gateway_window,
    sign_in,
)
from support.proxies import (
    DOMAIN,
    PORTAL_HOST,
    new_account,
)

from standalone_mfa.core.models import User
from standalone_mfa.directory.users import find_user
from standalone_mfa.factors import totp

pytestmark = [pytest.mark.browser, pytest.mark.server]

SITE = "gateway"  # the conftest's `site`: the portal and two apps behind nginx


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_round_trip_through_nginx_two_apps_one_sign_in_and_out(site, chromium, javascript):
    app, _port = site
    account = new_account(app, "browser", groups=("staff",))
    context, page = gateway_window(chromium, javascript)
    try:
        target = gateway_url(site, "app1", "/wiki/Main?rev=2")
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
        page.goto(gateway_url(site, "app2", "/"))
        expect(page).to_have_url(gateway_url(site, "app2", "/"))
        assert echoed(page)["remote-user"] == account.username

        # The app's "sign out" link: the portal asks to confirm, then every app asks
        # to sign in again.
        back = gateway_url(site, "app2", "/")
        page.goto(f"https://{PORTAL_HOST}:{site[1]}/logout?rd={quote(back, safe='')}")
        page.locator("#confirm-sign-out").click()
        expect(page).to_have_url(re.compile(r"/login\?rd=" + re.escape(quote(back, safe=""))))
        page.goto(gateway_url(site, "app1", "/"))
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
        page.get_by_label("URL").fill(gateway_url(site, "staff", "/"))
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
