"""The gateway through the test client (the client plays the proxy): the portal's
host, the rules the gateway tests share, the proxy's subrequests (nginx's auth_request,
Caddy's and Traefik's forward auth) and the way back from the portal."""

from __future__ import annotations

import functools
from urllib.parse import parse_qs, quote, urlsplit

from support.app import make_app
from support.client import Browser

PORTAL = "https://auth.example.test"
GATEWAY_RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": "public.example.test", "policy": "bypass"},
        {"domain": "*.example.test", "resources": ["^/private/"], "policy": "deny"},
        {"domain": "staff.example.test", "subject": "group:staff", "policy": "one_factor"},
        {"domain": "staff.example.test", "policy": "deny"},
        {"domain": "vault.example.test", "policy": "two_factor"},
        {"domain": "*.example.test", "policy": "one_factor"},
    ],
}


class PortalBrowser(Browser):
    """A browser on the portal's host, so that the Domain=example.test cookie is kept."""

    def __init__(self, app, clock):
        super().__init__(app, clock)
        for name in ("get", "post"):
            method = getattr(self.client, name)
            setattr(
                self.client, name, functools.partial(method, base_url="http://auth.example.test")
            )

    def session_token(self):
        cookie = self.client.get_cookie("smfa_session", domain="example.test")
        return cookie.value if cookie else None


def cookie_header(url, token):
    """The session cookie as the browser sends it to `url`: over HTTPS it has the
    __Secure- name the portal gives it there (these tests' portal is plain HTTP)."""
    prefix = "__Secure-" if url.startswith("https:") else ""
    return {"Cookie": f"{prefix}smfa_session={token}"} if token else {}


def ask_nginx(app, url, token=None, method="GET", **headers):
    """The proxy's subrequest: the browser's cookie and the original URL and method."""
    client = app.test_client(use_cookies=False)
    sent = {"X-Original-URL": url, "X-Original-Method": method, **headers}
    return client.get("/auth/nginx", headers={**sent, **cookie_header(url, token)})


def ask_forward(app, url, token=None, method="GET"):
    parts = urlsplit(url)
    client = app.test_client(use_cookies=False)
    sent = {
        "X-Forwarded-Proto": parts.scheme,
        "X-Forwarded-Host": parts.netloc,
        "X-Forwarded-Uri": parts.path + (f"?{parts.query}" if parts.query else ""),
        "X-Forwarded-Method": method,
    }
    return client.get("/auth/forward", headers={**sent, **cookie_header(url, token)})


def signed_in_at_portal(portal, username="alice"):
    browser = portal()
    browser.login(username)
    assert browser.session_token()
    return browser


def portal_rd(response) -> str:
    target = urlsplit(response.headers["Location"])
    assert f"{target.scheme}://{target.netloc}" == PORTAL and target.path == "/login"
    return parse_qs(target.query)["rd"][0]


CONTINUE_BUTTON = 'id="second-factor-continue"'


def continue_to_second_factor(browser, rd):
    """The person's click on the page a protected app's link opens."""
    page = browser.page("/login?rd=" + quote(rd, safe=""))
    assert CONTINUE_BUTTON in page
    return browser.post("/login?rd=" + quote(rd, safe=""))


# One rule for every app under example.test: signed in, whatever the factor.
SHARED_RULES = {
    "default_policy": "deny",
    "rules": [{"domain": "*.example.test", "policy": "one_factor"}],
}


def make_gateway_app(tmp_path, clock, rules=None, **overrides):
    """An app that is the portal of https://auth.example.test, with its session cookie
    for example.test and `rules` (GATEWAY_RULES by default)."""
    return make_app(
        tmp_path,
        clock,
        ACCESS_CONTROL=GATEWAY_RULES if rules is None else rules,
        GATEWAY_PORTAL_URL=PORTAL,
        SESSION_COOKIE_DOMAIN="example.test",
        **overrides,
    )


def forward_user(app, cookie: str) -> str | None:
    """What the forward-auth check answers a request to https://wiki.example.test/
    carrying the Cookie header `cookie`: the user it lets through, or None (sent to
    sign in)."""
    client = app.test_client(use_cookies=False)
    response = client.get(
        "/auth/forward",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "wiki.example.test",
            "X-Forwarded-Uri": "/",
            "X-Forwarded-Method": "GET",
            "Cookie": cookie,
        },
    )
    if response.status_code == 200:
        return response.headers["Remote-User"]
    assert response.status_code == 302, response.status_code
    return None
