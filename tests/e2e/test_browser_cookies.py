"""SC-67 and SC-68 in a real browser, through the shipped nginx configs (the portal at
https://auth.example.test, apps at app1/app2: the gateway site of support/browser.py):
the binding cookie is set and honoured through
the proxy and never reaches an app; a copy of the domain-wide session cookie alone
passes the gateway but opens none of the portal's pages; a form that a sibling
subdomain's page sends to the portal is refused by what Chromium itself says
(`Origin`, `Sec-Fetch-Site`)."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest
from playwright.sync_api import expect
from support.browser import (
    CODE_LABEL,
    code_now,
    echoed,
    gateway_url,
    gateway_window,
    sign_in,
)
from support.proxies import DOMAIN, PORTAL_HOST, new_account

from standalone_mfa.factors import totp

pytestmark = [pytest.mark.browser, pytest.mark.server]

SITE = "gateway"  # the conftest's `site`: the portal and two apps behind nginx


SESSION = "__Secure-smfa_session"
BINDING = "__Host-smfa_binding"


def portal(site, path: str = "/") -> str:
    return f"https://{PORTAL_HOST}:{site[1]}{path}"


def signed_in_through_app1(site, chromium, javascript=True):
    """A new user with an authenticator signs in from app1; the window and user."""
    app, _port = site
    account = new_account(app, "cookies", enrolled_at_step=int(time.time()) // totp.PERIOD - 2)
    context, page = gateway_window(chromium, javascript)
    target = gateway_url(site, "app1", "/")
    page.goto(target)
    sign_in(page, account.username)
    expect(page).to_have_url(re.compile(r"/mfa/verify$"))
    page.get_by_label(CODE_LABEL).fill(code_now(account.secret))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(target)
    return context, page, account


def test_sc67_through_nginx_a_copied_domain_cookie_passes_the_apps_but_not_the_portal(
    site, chromium
):
    context, page, account = signed_in_through_app1(site, chromium)
    thief = None
    try:
        cookies = {c["name"]: c for c in context.cookies()}
        binding = cookies[BINDING]
        assert binding["domain"] == PORTAL_HOST  # host-only: Chromium keeps no leading dot
        assert binding["secure"] and binding["httpOnly"] and binding["sameSite"] == "Lax"
        assert cookies[SESSION]["domain"] == f".{DOMAIN}"
        # The app never receives the binding (whatever the proxy strips besides).
        assert BINDING not in echoed(page).get("cookie", "")

        # The person's own browser opens the portal's pages through the proxy.
        page.goto(portal(site, "/account/security"))
        expect(page).to_have_url(portal(site, "/account/security"))
        expect(page.locator("h1")).to_contain_text("Account security")

        # Another browser with a copy of the domain cookie only (what an app could see).
        thief, other = gateway_window(chromium, True)
        thief.add_cookies(
            [
                {
                    k: cookies[SESSION][k]
                    for k in ("name", "value", "domain", "path", "secure", "httpOnly", "sameSite")
                }
            ]
        )
        other.goto(gateway_url(site, "app2", "/"))
        expect(other).to_have_url(gateway_url(site, "app2", "/"))
        assert echoed(other)["remote-user"] == account.username
        other.goto(portal(site, "/account/security"))
        expect(other).to_have_url(portal(site, "/login?next=/account/security"))
        expect(other.locator(".messages")).to_contain_text("Sign in again to open this page.")
        other.goto(portal(site, "/admin/users"))
        expect(other).to_have_url(re.compile(re.escape(portal(site, "/login"))))
    finally:
        context.close()
        if thief is not None:
            thief.close()


def test_sc68_through_nginx_a_form_from_a_sibling_subdomain_is_refused(site, chromium):
    context, page, account = signed_in_through_app1(site, chromium)
    try:
        # app1's page (a sibling of the portal under the cookie domain) posts a sign-out
        # form to the portal, as a page there could without anyone's click.
        page.evaluate(
            """action => {
              const form = document.createElement("form");
              form.method = "post";
              form.action = action;
              const rd = document.createElement("input");
              rd.name = "rd"; rd.value = location.href;
              form.appendChild(rd);
              document.body.appendChild(form);
              form.submit();
            }""",
            portal(site, "/logout"),
        )
        expect(page).to_have_url(portal(site, "/logout"))
        expect(page.locator("main")).to_contain_text("This form was sent from another site")
        # Still signed in, on the apps and on the portal.
        page.goto(gateway_url(site, "app2", "/"))
        expect(page).to_have_url(gateway_url(site, "app2", "/"))
        assert echoed(page)["remote-user"] == account.username
        # The portal's own sign-out form works (same origin).
        back = gateway_url(site, "app2", "/")
        page.goto(portal(site, f"/logout?rd={quote(back, safe='')}"))
        page.locator("#confirm-sign-out").click()
        expect(page).to_have_url(re.compile(r"/login\?rd="))
    finally:
        context.close()
