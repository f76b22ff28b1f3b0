"""Real apps behind real proxies running the shipped configurations (deploy/: names,
ports and certificates swapped, one app block per app as their comments say):
Radicale (CalDAV, header login, owner-only rights), a Django project with
RemoteUserMiddleware, a WSGI app that decodes `%2F` (on wsgiref, which merges `-` and
`_` as CGI does) and the same app over FastCGI (flup; nginx's fastcgi_pass, Caddy's
fastcgi transport: Traefik has none), behind nginx, Caddy and Traefik 3.

Each proxy runs once for the module, over TLS (so HTTP/2 too), with a portal of its own
(its public URL is the proxy's); the apps run once for all three. The portal runs in
this process on a frozen clock; every test uses new users.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from urllib.parse import urlsplit

import pytest
import requests
from support.app import START
from support.proxies import (
    DOMAIN,
    PORTAL_HOST,
    Gateway,
    Upstream,
    Visitor,
    caddy,
    caddy_sites,
    free_port,
    nginx_apps_gateway,
    nginx_snippets,
    rd_of,
    served_portal,
    traefik,
    traefik_dynamic,
)
from support.real_apps import django_probe, probe, radicale

from standalone_mfa.accounts.reset import reset_totp
from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.directory.users import find_user

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

PROXIES = ("nginx", "caddy", "traefik")
# The apps' host names: each app also has a `bypass` name, pub-<name>.
CAL, DJANGO, WSGI, FCGI = "cal", "dj", "wsgi", "fcgi"
APPS_WITH_ADMIN = [f"{name}.{DOMAIN}" for name in (DJANGO, WSGI, FCGI)]
RULES = {
    "default_policy": "deny",
    "rules": [
        {
            "domain": [f"pub-{name}.{DOMAIN}" for name in (CAL, DJANGO, WSGI, FCGI)],
            "policy": "bypass",
        },
        # The README's own example: /admin for the admins group only.
        {
            "domain": APPS_WITH_ADMIN,
            "resources": ["^/admin(/|$)"],
            "subject": ["group:admins"],
            "policy": "one_factor",
        },
        {"domain": APPS_WITH_ADMIN, "resources": ["^/admin(/|$)"], "policy": "deny"},
        {"domain": [f"*.{DOMAIN}"], "policy": "one_factor"},
    ],
}
# Every spelling of the identity headers a client might send, repeats included (SC-47).
FORGED = [
    ("Remote-User", "root"),
    ("Remote_User", "root"),
    ("REMOTE-USER", "root"),
    ("remote-user", "root"),
    ("REMOTE_USER", "root"),
    ("remote_user", "root"),
    ("Remote-User", "root"),
    ("Remote-Groups", "admins"),
    ("Remote_Groups", "admins"),
    ("REMOTE-GROUPS", "admins"),
    ("remote_groups", "admins"),
    ("Remote-Email", "root@example.test"),
    ("Remote_Email", "root@example.test"),
    ("remote-email", "root@example.test"),
]
# Ways to write /admin/users that an app may read as /admin/users (SC-66).
ADMIN_SPELLINGS = [
    "/admin%2Fusers",
    "/admin%2fusers",
    "/%2Fadmin/users",
    "/admin/%2e%2e/users",
    "/admin/../users",
    "/x/%2e%2e/admin/users",
    "/x/../admin/users",
    "/admin;x/users",
    "/admin%3Bx/users",
    "/%61dmin/users",
    "//admin/users",
    "/./admin/users",
    "/admin%5Cusers",
]
CHECK_PATHS = [
    "/auth/nginx",
    "/auth/forward",
    "/auth//forward",
    "//auth/nginx",
    "/x/../auth/forward",
    "/./auth/nginx",
    "/auth/%66orward",
    "/%61uth/nginx",
    "/auth%2Fforward",
    "/auth%2fnginx",
    "/AUTH/forward",
]
EVENT = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//standalone-mfa tests//EN
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20260101T000000Z
DTSTART:20260102T090000Z
DTEND:20260102T093000Z
SUMMARY:{summary}
END:VEVENT
END:VCALENDAR
"""
MKCALENDAR = """<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:set><D:prop><D:displayname>Work</D:displayname></D:prop></D:set>
</C:mkcalendar>"""
REPORT = """<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/></C:comp-filter>
  </C:filter>
</C:calendar-query>"""


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """The apps, started once for every proxy: {name: Upstream}."""
    folder = tmp_path_factory.mktemp("real-apps")
    with (
        radicale(folder / "radicale") as cal,
        django_probe(folder / "django") as dj,
        probe(folder / "wsgi", "http") as wsgi,
        probe(folder / "fcgi", "fastcgi") as fcgi,
    ):
        yield {
            CAL: Upstream((CAL, f"pub-{CAL}"), cal),
            DJANGO: Upstream((DJANGO, f"pub-{DJANGO}"), dj),
            WSGI: Upstream((WSGI, f"pub-{WSGI}"), wsgi),
            FCGI: Upstream((FCGI, f"pub-{FCGI}"), fcgi, "fastcgi"),
        }


@pytest.fixture(scope="module", params=PROXIES)
def gateway(request, apps, tmp_path_factory):
    """A proxy with the shipped configuration in front of a portal and every app."""
    kind = request.param
    folder = tmp_path_factory.mktemp(f"apps-{kind}")
    clock = FrozenClock(START)
    port = free_port()
    scheme = "https"
    upstreams = list(apps.values())
    with served_portal(folder, clock, scheme, port, upstream=False, ACCESS_CONTROL=RULES) as (
        app,
        portal_port,
        _,
    ):
        if kind == "nginx":
            proxy = nginx_apps_gateway(folder, port, portal_port, upstreams)
        elif kind == "caddy":
            certificates = nginx_snippets(folder / "certificates")
            caddyfile = caddy_sites(portal_port, port, upstreams, certificates)
            proxy = caddy(folder / "caddy", caddyfile, [port])
        else:
            certificates = nginx_snippets(folder / "certificates")
            dynamic = traefik_dynamic(portal_port, upstreams)
            proxy = traefik(folder / "traefik", dynamic, port, certificates)
        with proxy:
            gateway = Gateway(app, clock, scheme, port)
            gateway.kind = kind
            gateway.apps = apps
            gateway.set_method("totp")
            yield gateway


def app_names(gateway) -> list[str]:
    """The apps this proxy serves: FastCGI only where the proxy speaks it."""
    names = [CAL, DJANGO, WSGI, FCGI]
    return [name for name in names if name != FCGI or gateway.kind != "traefik"]


def probes(gateway) -> list[str]:
    return [name for name in (WSGI, FCGI) if name in app_names(gateway)]


def signed_in(gateway, prefix: str, groups=(), where: str = WSGI) -> tuple[Visitor, str]:
    """A visitor who opened an app, was sent to sign in and came back; (visitor, name)."""
    gateway.clock.advance(30)  # a time step of its own
    account = gateway.account(prefix, groups=groups, enrolled=True)
    visitor = Visitor()
    page = gateway.url(where, "/start?from=test")
    login = visitor.get(page)
    assert urlsplit(login.url).path == "/login", (login.status_code, login.url)
    landed = visitor.sign_in(login, account, gateway.clock)
    assert landed.url == page, (landed.status_code, landed.url)
    return visitor, account.username


# ------------------------------------------------------------------ raw requests


def raw(gateway, host: str, target: str, lines=(), method="GET", body: bytes = b""):
    """One HTTP/1.1 request written byte for byte (the target and the header lines as
    given, repeats kept, nothing normalised), over TLS with `host` as the server name
    when the proxy speaks TLS; (status, headers by lower-case name, body)."""
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    if gateway.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
        sock = context.wrap_socket(sock, server_hostname=host.split(":")[0])
    head = [f"{method} {target} HTTP/1.1"]
    names = {name.lower() for name, _ in lines}
    if "host" not in names:
        head.append(f"Host: {host}:{gateway.port}")
    head += [f"{name}: {value}" for name, value in lines]
    head += ["Connection: close", f"Content-Length: {len(body)}"]
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionError):
            return 0, {}, b""  # closed unanswered (nginx's 444)
        headers: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            headers.setdefault(name.lower(), []).append(value)
        return response.status, headers, response.read()
    finally:
        sock.close()


def cookie_line(visitor: Visitor) -> tuple[str, str]:
    return "Cookie", "; ".join(f"{c.name}={c.value}" for c in visitor.http.cookies)


def _app_json(status: int, body: bytes) -> dict:
    """What the app said, or {} when it was not the app that answered 200 (a refusal,
    a redirect, a proxy's empty answer for a name it does not serve, a closed stream)."""
    if status != 200:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        return {}


def reached_admin(status: int, body: bytes) -> bool:
    return _app_json(status, body).get("area") == "admin"


def seen_json(status: int, body: bytes) -> dict:
    assert status == 200, (status, body[:300])
    return json.loads(body)


# ------------------------------------------------------------------ Radicale


def seed_calendar(gateway, username: str) -> str:
    """A calendar with one event for `username`, made on Radicale directly (as the
    user's own client would); returns the event's path."""
    base = f"http://127.0.0.1:{gateway.apps[CAL].port}"
    headers = {"Remote-User": username}
    with requests.Session() as direct:
        direct.trust_env = False
        made = direct.request("MKCALENDAR", f"{base}/{username}/work/", headers=headers)
        assert made.status_code == 201, made.text
        event = EVENT.format(uid=f"{username}-1", summary=f"Standup of {username}")
        put = direct.put(f"{base}/{username}/work/evt-1.ics", data=event, headers=headers)
        assert put.status_code == 201, put.text
    return f"/{username}/work/evt-1.ics"


# ------------------------------------------------------------------ tests


def test_a_signed_out_visitor_is_sent_to_sign_in_and_comes_back_to_each_app(gateway):
    for name in app_names(gateway):
        gateway.clock.advance(30)  # a time step of each sign-in's own
        account = gateway.account(f"round{name}", enrolled=True)
        if name == CAL:
            page = gateway.url(CAL, seed_calendar(gateway, account.username))
        else:
            page = gateway.url(name, "/whoami?x=1&y=%20z")
        visitor = Visitor()
        first = visitor.get(page, follow=False)
        assert first.status_code in (302, 303), (name, first.status_code)
        assert rd_of(first.headers["Location"]) == page
        landed = visitor.sign_in(visitor.get(page), account, gateway.clock)
        assert landed.url == page and landed.status_code == 200, (name, landed.status_code)
        if name == CAL:
            assert f"Standup of {account.username}" in landed.text
        else:  # Django made and signed in the user; the probes read the header
            assert landed.json()["user"] == account.username, landed.json()
        # Signed in once: every other app at once, without a redirect.
        for other in app_names(gateway):
            if other != CAL:
                response = visitor.get(gateway.url(other, "/whoami"), follow=False)
                assert response.json()["user"] == account.username, (other, response.text)


def test_the_user_reaches_their_own_data_and_another_user_is_refused(gateway):
    owner, owner_name = signed_in(gateway, "owner")
    other, other_name = signed_in(gateway, "other")
    path = seed_calendar(gateway, owner_name)
    assert f"Standup of {owner_name}" in owner.get(gateway.url(CAL, path)).text
    refused = other.get(gateway.url(CAL, path))
    assert refused.status_code == 403 and "Standup" not in refused.text

    assert owner.get(gateway.url(DJANGO, f"/notes/{owner_name}/")).json()["user"] == owner_name
    assert other.get(gateway.url(DJANGO, f"/notes/{owner_name}/")).status_code == 403
    for name in probes(gateway):
        assert owner.get(gateway.url(name, f"/data/{owner_name}/x")).status_code == 200
        assert other.get(gateway.url(name, f"/data/{owner_name}/x")).status_code == 403


def test_sc48_caldav_propfind_mkcalendar_put_report_through_the_proxy(gateway):
    visitor, username = signed_in(gateway, "caldav", where=CAL)
    home = gateway.url(CAL, f"/{username}/")
    found = visitor.open("PROPFIND", home, headers={"Depth": "0"}, follow=False)
    assert found.status_code == 207, (found.status_code, found.text[:300])
    assert f"/{username}/" in found.text
    made = visitor.open("MKCALENDAR", home + "cal/", data=MKCALENDAR, follow=False)
    assert made.status_code == 201, made.text[:300]
    event = EVENT.format(uid="dav-1", summary="Through the gateway")
    put = visitor.open("PUT", home + "cal/dav-1.ics", data=event, follow=False)
    assert put.status_code == 201, put.text[:300]
    report = visitor.open(
        "REPORT", home + "cal/", data=REPORT, headers={"Depth": "1"}, follow=False
    )
    assert report.status_code == 207 and "Through the gateway" in report.text
    intruder, _ = signed_in(gateway, "intruder", where=CAL)
    refused = intruder.open("PROPFIND", home + "cal/", headers={"Depth": "1"}, follow=False)
    assert refused.status_code == 403 and "Through the gateway" not in refused.text


def test_sc47_forged_identity_on_bypass_is_anonymous_in_every_app(gateway):
    victim = gateway.account("victim")
    path = seed_calendar(gateway, victim.username)
    status, _, body = raw(gateway, f"pub-{CAL}.{DOMAIN}", path, FORGED)
    assert status != 200 and b"Standup" not in body, (status, body[:200])
    status, _, body = raw(
        gateway, f"pub-{CAL}.{DOMAIN}", path, [(n, victim.username) for n, _ in FORGED[:7]]
    )
    assert status != 200 and b"Standup" not in body, (status, body[:200])

    assert (
        seen_json(*_pick(raw(gateway, f"pub-{DJANGO}.{DOMAIN}", "/whoami", FORGED)))["user"]
        is None
    )
    for name in probes(gateway):
        seen = seen_json(*_pick(raw(gateway, f"pub-{name}.{DOMAIN}", "/whoami", FORGED)))
        assert (seen["user"], seen["groups"], seen["email"]) == (None, None, None), seen
        assert not seen["remote_user"], seen  # none, or fastcgi_params' empty $remote_user
        status, _, _ = raw(gateway, f"pub-{name}.{DOMAIN}", "/data/root/x", FORGED)
        assert status == 403


def _pick(response):
    status, _, body = response
    return status, body


def test_sc47_forged_identity_signed_in_is_the_signed_in_user(gateway):
    visitor, username = signed_in(gateway, "honest")
    victim = gateway.account("target")
    path = seed_calendar(gateway, victim.username)
    forged = [
        (name, victim.username if "user" in name.lower() else value) for name, value in FORGED
    ]
    lines = [cookie_line(visitor), *forged]
    status, _, body = raw(gateway, f"{CAL}.{DOMAIN}", path, lines)
    assert status == 403 and b"Standup" not in body, (status, body[:200])

    seen = seen_json(*_pick(raw(gateway, f"{DJANGO}.{DOMAIN}", "/whoami", lines)))
    assert seen["user"] == username
    for name in probes(gateway):
        seen = seen_json(*_pick(raw(gateway, f"{name}.{DOMAIN}", "/whoami", lines)))
        assert seen["user"] == username, seen  # the portal's alone, not joined with another
        assert seen["groups"] in (None, "")
        assert seen["email"] is None
        assert seen["remote_user"] in (None, "", username)  # Caddy FastCGI: basic auth's, empty
        status, _, _ = raw(gateway, f"{name}.{DOMAIN}", f"/data/{victim.username}/x", lines)
        assert status == 403


def test_sc67_the_portals_cookies_never_reach_an_app(gateway):
    visitor, username = signed_in(gateway, "crumbs")
    portal_cookies = {c.name for c in visitor.http.cookies}
    assert portal_cookies, "signed in without a cookie?"
    name, value = cookie_line(visitor)
    planted = f"{value}; theme=dark; __Host-smfa_bind=b1; smfa_anon=a1; __Secure-smfa_bind=b2"
    for host in (f"{WSGI}.{DOMAIN}", f"pub-{WSGI}.{DOMAIN}"):
        seen = seen_json(*_pick(raw(gateway, host, "/c", [(name, planted)])))
        assert seen["cookie"] == "theme=dark", seen
    seen = seen_json(*_pick(raw(gateway, f"{DJANGO}.{DOMAIN}", "/c", [(name, planted)])))
    assert seen["user"] == username and "theme" in seen["cookies"]
    assert not any("smfa" in cookie for cookie in seen["cookies"]), seen
    if FCGI in probes(gateway):
        seen = seen_json(*_pick(raw(gateway, f"{FCGI}.{DOMAIN}", "/c", [(name, planted)])))
        assert seen["cookie"] == "theme=dark", seen
    # Only the portal's: nothing at all.
    seen = seen_json(*_pick(raw(gateway, f"{WSGI}.{DOMAIN}", "/c", [(name, value)])))
    assert seen["cookie"] in (None, ""), seen


def test_sc66_path_spellings_never_reach_a_denied_path(gateway):
    """Refused by the portal, or read by it as the app reads them: either way no
    non-admin reaches the app's /admin (with Django, `/admin/../users` is under /admin
    to the app: it does not resolve dot segments)."""
    visitor, _ = signed_in(gateway, "walker")
    admin, _ = signed_in(gateway, "boss", groups=("admins",))
    lines = [cookie_line(visitor)]
    reached = []
    for name in [DJANGO, *probes(gateway)]:
        host = f"{name}.{DOMAIN}"
        # The rule holds for the plain spelling, and the admin passes it.
        assert raw(gateway, host, "/admin/users", lines)[0] == 403
        assert (
            seen_json(*_pick(raw(gateway, host, "/admin/users", [cookie_line(admin)])))["area"]
            == "admin"
        )
        for spelling in ADMIN_SPELLINGS:
            status, _, body = raw(gateway, host, spelling, lines)
            if reached_admin(status, body):
                reached.append(f"{name}{spelling}")
    assert reached == [], f"{len(reached)} spellings reached /admin: {reached}"


def test_sc65_the_check_judges_the_host_the_proxy_serves(gateway):
    visitor, _ = signed_in(gateway, "hostile")
    wsgi = f"{WSGI}.{DOMAIN}"
    # An absolute-form target naming a protected app, with a bypass app's Host.
    for target in (f"{gateway.scheme}://{wsgi}:{gateway.port}/admin/users",
                   f"{gateway.scheme}://{wsgi}/admin/users"):  # fmt: skip
        status, _, body = raw(gateway, wsgi, target, [("Host", f"pub-{WSGI}.{DOMAIN}")])
        assert not reached_admin(status, body), (target, status)
        status, _, body = raw(
            gateway, wsgi, target, [("Host", f"pub-{WSGI}.{DOMAIN}"), cookie_line(visitor)]
        )
        assert not reached_admin(status, body), (target, status)
    # A Host that would hide the path from a check reading it raw.
    for host in (f"{wsgi}:{gateway.port}#", f"{wsgi}:{gateway.port}?", f"{wsgi}#", f"{wsgi}?"):
        status, _, body = raw(
            gateway, wsgi, "/admin/users", [("Host", host), cookie_line(visitor)]
        )
        assert not reached_admin(status, body), (host, status)
        status, _, body = raw(gateway, wsgi, "/whoami", [("Host", host)])
        assert _app_json(status, body).get("user") is None, (host, status)


def curl_http2(gateway, host_header: str, url: str, cookie: str) -> tuple[int, str, bytes]:
    """GET `url` over HTTP/2 with curl (`Host` becomes :authority); (curl's exit code,
    the HTTP version, the body), the status first on its last line."""
    name = urlsplit(url).hostname
    result = subprocess.run(
        [
            "curl", "--silent", "--insecure", "--http2", "--max-time", "20",
            "--connect-to", f"{name}:{gateway.port}:127.0.0.1:{gateway.port}",
            "--header", f"Host: {host_header}", "--header", f"Cookie: {cookie}",
            "--write-out", "\n%{http_code} %{http_version}", url,
        ],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    body, _, last = result.stdout.rpartition(b"\n")
    status, version = last.decode().split()
    return result.returncode, f"{status} {version}", body


def test_sc65_over_http2_too(gateway):
    visitor, _ = signed_in(gateway, "h2")
    wsgi = f"{WSGI}.{DOMAIN}"
    cookie = cookie_line(visitor)[1]
    url = f"https://{wsgi}:{gateway.port}/admin/users"
    # The plain request: over HTTP/2, and refused by the rule.
    assert curl_http2(gateway, f"{wsgi}:{gateway.port}", url, cookie)[:2] == (0, "403 2")
    for host in (f"{wsgi}:{gateway.port}#", f"{wsgi}#", f"{wsgi}:{gateway.port}?"):
        code, status, body = curl_http2(gateway, host, url, cookie)
        # Refused, or the stream reset (curl's 92), never the admin page.
        assert not reached_admin(int(status.split()[0]), body), (host, code, status)


def test_sc69_the_checks_are_not_public_on_the_portals_host(gateway):
    for path in CHECK_PATHS:
        status, headers, _ = raw(gateway, PORTAL_HOST, path)
        assert status == 404, (path, status, headers)


def test_signing_out_ends_access_at_the_next_request(gateway):
    visitor, username = signed_in(gateway, "leaver")
    path = seed_calendar(gateway, username)
    assert visitor.get(gateway.url(CAL, path)).status_code == 200
    assert visitor.get(gateway.url(DJANGO, "/whoami")).json()["user"] == username
    visitor.sign_out(gateway.portal)
    for name, page in ((CAL, path), (DJANGO, "/whoami"), (WSGI, "/whoami")):
        response = visitor.get(gateway.url(name, page), follow=False)
        assert response.status_code in (302, 303), (name, response.status_code)
        assert urlsplit(response.headers["Location"]).path == "/login"


def test_a_reset_ends_access_at_the_next_request(gateway):
    visitor, username = signed_in(gateway, "lost")
    assert visitor.get(gateway.url(DJANGO, "/whoami")).json()["user"] == username
    with gateway.app.app_context():
        assert reset_totp(find_user(username), actor="root")
    for name in app_names(gateway):
        response = visitor.get(gateway.url(name, "/whoami"), follow=False)
        assert response.status_code in (302, 303), (name, response.status_code)
