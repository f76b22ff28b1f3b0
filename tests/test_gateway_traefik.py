"""The gateway as Traefik's forwardAuth uses it, with deploy/traefik-dynamic.toml.

Traefik is not in Debian, so it does not run here. Instead the portal (a real server
on 127.0.0.1) is asked exactly what Traefik asks with the shipped settings, byte for
byte as far as the headers go: Traefik's `writeHeader` (pkg/middlewares/auth/
forward.go, v2.4 and later) builds the check from the browser's request as

- `trustForwardHeader: false`: none of the browser's X-Forwarded-* (nor X-Real-Ip);
- `authRequestHeaders: ["Cookie"]`: of the browser's headers, only Cookie;
- then its own X-Forwarded-For (the browser's address), -Method, -Proto, -Port,
  -Host (the Host the browser sent) and -Uri (path and query as sent);
- and Go's client adds Host (the address's), User-Agent: Go-http-client/1.1 and
  Accept-Encoding: gzip.

Traefik then passes a non-2xx answer back to the browser as it is (status, Location,
body), and on a 2xx deletes the browser's own authResponseHeaders and copies the
portal's. So what must hold is what these tests check: the redirect to sign in with
`rd`, 200 with Remote-User/Remote-Groups only for a signed-in user, 200 without them
for `bypass`, 403 for a refusal, and nothing the browser adds changing the decision.
"""

from __future__ import annotations

import http.client
import tomllib
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import pytest
from conftest import PASSWORD, START, csrf_from, make_app
from helpers import quiet_server
from proxies import DEPLOY, DOMAIN, FORGED_IDENTITY, FORGED_URL, PORTAL_HOST, new_account
from proxies import portal_config as gateway_portal_config

from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.db import db
from standalone_mfa.core.models import User
from standalone_mfa.directory import settings
from standalone_mfa.factors import totp

pytestmark = pytest.mark.server

SHIPPED = tomllib.loads((DEPLOY / "traefik-dynamic.toml").read_text())
FORWARD_AUTH = SHIPPED["http"]["middlewares"]["smfa"]["forwardAuth"]
WIKI = f"wiki.{DOMAIN}"
PORTAL_URL = f"https://{PORTAL_HOST}"  # Traefik on the standard HTTPS port
CLIENT_IP = "203.0.113.9"
# Traefik's own names (forwardedheaders.XHeadersSet), dropped from the browser's.
TRAEFIK_X_HEADERS = {
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-scheme",
    "x-real-ip",
}


@dataclass
class BrowserRequest:
    """A request as it reached Traefik's entry point (TLS, port 443)."""

    method: str
    uri: str
    host: str = WIKI
    headers: dict[str, str] = field(default_factory=dict)


def traefik_check_headers(request: BrowserRequest, address: str) -> list[tuple[str, str]]:
    """The header lines Traefik's forwardAuth sends the portal for `request`, with the
    shipped settings (see the module docstring)."""
    assert FORWARD_AUTH["trustForwardHeader"] is False
    allowed = {name.lower() for name in FORWARD_AUTH["authRequestHeaders"]}
    lines = [("Host", urlsplit(address).netloc), ("User-Agent", "Go-http-client/1.1")]
    for name, value in request.headers.items():
        if name.lower() in allowed and name.lower() not in TRAEFIK_X_HEADERS:
            lines.append((name, value))
    lines += [
        ("X-Forwarded-For", CLIENT_IP),
        ("X-Forwarded-Method", request.method),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Host", request.host),
        ("X-Forwarded-Uri", request.uri),
        ("Accept-Encoding", "gzip"),
    ]
    return lines


def send(address: str, lines: list[tuple[str, str]]) -> tuple[int, dict[str, list[str]], bytes]:
    """GET `address` with exactly `lines` as its headers; (status, headers, body)."""
    parts = urlsplit(address)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("GET", parts.path, skip_host=True, skip_accept_encoding=True)
        for name, value in lines:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        headers: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            headers.setdefault(name.lower(), []).append(value)
        return response.status, headers, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """(app, clock, the shipped forwardAuth address pointed at the running portal)."""
    folder = tmp_path_factory.mktemp("gateway-traefik")
    clock = FrozenClock(START)
    config = gateway_portal_config("https", 443, GATEWAY_PORTAL_URL=PORTAL_URL)
    app = make_app(folder, clock, **config)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    try:
        with quiet_server(app) as url:
            port = urlsplit(url).port
            shipped = urlsplit(FORWARD_AUTH["address"])
            yield app, clock, shipped._replace(netloc=f"127.0.0.1:{port}").geturl()
    finally:
        with app.app_context():
            db.close()


def ask(portal, request: BrowserRequest):
    _app, _clock, address = portal
    return send(address, traefik_check_headers(request, address))


def session_cookie(portal, groups=()) -> tuple[str, str]:
    """A user signed in on the portal (password and code, through its router over
    HTTPS); (their name, the Cookie header their browser sends to the wiki)."""
    app, clock, _ = portal
    clock.advance(30)
    account = new_account(app, "traefik", groups, int(clock.timestamp()) // totp.PERIOD - 1)
    client = app.test_client()
    base = PORTAL_URL
    page = client.get(f"{base}/login").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "username": account.username, "password": PASSWORD}
    assert client.post(f"{base}/login", data=data).headers["Location"] == "/mfa/verify"
    page = client.get(f"{base}/mfa/verify").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "code": account.code(clock)}
    assert client.post(f"{base}/mfa/verify", data=data).status_code == 302
    cookie = client.get_cookie("__Secure-smfa_session", domain=DOMAIN)
    assert cookie is not None and cookie.secure
    return account.username, f"__Secure-smfa_session={cookie.value}"


def test_the_shipped_middleware_is_what_these_tests_send():
    assert urlsplit(FORWARD_AUTH["address"]).path == "/auth/forward"
    assert FORWARD_AUTH["trustForwardHeader"] is False
    assert FORWARD_AUTH["authRequestHeaders"] == ["Cookie"]
    assert FORWARD_AUTH["authResponseHeaders"] == ["Remote-User", "Remote-Groups", "Remote-Email"]
    routers = SHIPPED["http"]["routers"]
    assert routers["wiki"]["middlewares"] == ["smfa"]
    assert "middlewares" not in routers["portal"]  # the portal itself is not behind it


def test_unsigned_get_is_sent_to_sign_in_and_comes_back(portal):
    status, headers, body = ask(portal, BrowserRequest("GET", "/page?x=1&y=%2F"))
    assert status == 302 and body == b""
    target = f"https://{WIKI}/page?x=1&y=%2F"
    assert headers["location"] == [f"{PORTAL_URL}/login?rd={quote(target, safe='')}"]
    assert "set-cookie" not in headers  # a check makes no session


def test_unsigned_post_gets_a_303(portal):
    status, headers, _ = ask(portal, BrowserRequest("POST", "/save"))
    assert status == 303
    assert headers["location"][0].startswith(f"{PORTAL_URL}/login?rd=")


def test_signed_in_user_passes_with_their_name_and_groups(portal):
    username, cookie = session_cookie(portal, groups=("staff", "docs"))
    status, headers, body = ask(portal, BrowserRequest("GET", "/", headers={"Cookie": cookie}))
    assert (status, body) == (200, b"")
    assert headers["remote-user"] == [username]
    assert headers["remote-groups"] == ["docs,staff"]
    assert "remote-email" not in headers  # no address: none (Traefik drops the browser's)
    with portal[0].app_context():
        User.update(email="t@example.com").where(User.username == username).execute()
    _, headers, _ = ask(portal, BrowserRequest("GET", "/", headers={"Cookie": cookie}))
    assert headers["remote-email"] == ["t@example.com"]
    assert "set-cookie" not in headers


def test_bypass_answers_200_without_identity_and_deny_403(portal):
    _, cookie = session_cookie(portal)
    public = BrowserRequest("GET", "/", host=f"public.{DOMAIN}", headers={"Cookie": cookie})
    status, headers, _ = ask(portal, public)
    assert status == 200
    # No Remote-* in the answer: Traefik then deletes the browser's and copies none.
    assert not any(name in headers for name in ("remote-user", "remote-groups", "remote-email"))
    closed = BrowserRequest("GET", "/closed", host=f"app1.{DOMAIN}", headers={"Cookie": cookie})
    status, headers, _ = ask(portal, closed)
    assert status == 403 and "location" not in headers


def test_sc32_headers_a_browser_adds_never_change_the_decision(portal):
    """With the shipped settings Traefik passes none of the browser's own Remote-*,
    X-Original-* or X-Forwarded-* on. A Traefik set up without authRequestHeaders
    would pass on all but its X-Forwarded-* (trustForwardHeader: false replaces
    those), and the check still reads the URL only from Traefik's own."""
    _app, _clock, address = portal
    forged = {**FORGED_IDENTITY, **FORGED_URL}
    request = BrowserRequest("GET", "/page", host=f"app1.{DOMAIN}", headers=forged)
    shipped_lines = traefik_check_headers(request, address)
    sent = dict(shipped_lines)
    assert not any(name in sent for name in FORGED_IDENTITY)
    assert "X-Original-URL" not in sent and "X-Original-Method" not in sent
    assert (sent["X-Forwarded-Host"], sent["X-Forwarded-Uri"]) == (f"app1.{DOMAIN}", "/page")

    passed_on = [(n, v) for n, v in forged.items() if n.lower() not in TRAEFIK_X_HEADERS]
    status, headers, _ = send(address, passed_on + shipped_lines)
    assert status == 302  # app1 needs a sign-in; not the public site's 200
    assert "remote-user" not in headers
    target = quote(f"https://app1.{DOMAIN}/page", safe="")
    assert headers["location"] == [f"{PORTAL_URL}/login?rd={target}"]
