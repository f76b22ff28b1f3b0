"""Behind a reverse proxy: X-Forwarded-* headers are believed only as far as the
`PROXY_FIX_*` hop counts say; over HTTPS the session cookie is Secure and prefixed and
HSTS is sent; under a path prefix (/mfa-app/) every link, redirect and cookie stays
below the prefix.

`ProxiedBrowser` plays a browser at https://mfa.example/mfa-app/ talking to the app
through a simulated proxy: it adds the headers nginx would add and keeps its cookies
the way a browser does (by name, checking the Path and Secure it was given).
"""

from __future__ import annotations

import re
import runpy
from http.cookies import SimpleCookie

import pyotp
import pytest
from support.app import PASSWORD, make_app
from support.pages import csrf_from
from support.paths import ROOT
from werkzeug.middleware.proxy_fix import ProxyFix

from standalone_mfa import create_app
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent, WebSession
from standalone_mfa.directory import settings
from standalone_mfa.web.cookies import portal_cookie_policy

PROXY_ADDR = "10.0.0.2"  # the proxy, as the app's socket sees it
CLIENT_ADDR = "198.51.100.7"  # the real client, as the proxy saw it
SPOOFED_ADDR = "6.6.6.6"  # what a client claims about itself
TRUST_ONE_PROXY = {
    "PROXY_FIX_X_FOR": 1,
    "PROXY_FIX_X_PROTO": 1,
    "PROXY_FIX_X_HOST": 1,
    "PROXY_FIX_X_PREFIX": 1,
}
HREF_RE = re.compile(r'(?:href|src|action)="([^"]*)"')


@pytest.fixture
def make(tmp_path, clock):
    apps = []

    def build(**config):
        app = make_app(tmp_path, clock, **config)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.close()


class ProxiedBrowser:
    """A browser at `scheme://host{prefix}/`, behind one proxy that strips the prefix."""

    def __init__(self, app, clock, *, prefix="", scheme="https", host="mfa.example",
                 forwarded_for=CLIENT_ADDR):  # fmt: skip
        self.app, self.clock, self.prefix = app, clock, prefix
        self.client = app.test_client(use_cookies=False)
        self.headers = {
            "X-Forwarded-For": forwarded_for,
            "X-Forwarded-Proto": scheme,
            "X-Forwarded-Host": host,
            "X-Forwarded-Prefix": prefix,
        }
        self.secure = scheme == "https"
        self.cookies: dict[str, str] = {}
        self.set_cookies: list = []  # every Set-Cookie morsel received
        self.token = None

    def open(self, method, path, data=None):
        """`path` is what the user sees, below the prefix; the proxy strips the prefix."""
        assert path.startswith(self.prefix + "/"), f"{path} is outside {self.prefix}/"
        app_path = path.removeprefix(self.prefix)
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.client.open(
            app_path,
            method=method,
            data=data,
            headers=headers,
            environ_base={"REMOTE_ADDR": PROXY_ADDR},
        )
        for header in response.headers.getlist("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                self.set_cookies.append(morsel)
                # What a browser would do: keep it only if it is for this path and,
                # when Secure, only over HTTPS.
                if path.startswith(morsel["path"]) and (self.secure or not morsel["secure"]):
                    if morsel["max-age"] == "0":  # deleted
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
        text = response.get_data(as_text=True)
        if "csrf_token" in text:
            self.token = csrf_from(text)
        return response

    def get(self, path):
        return self.open("GET", self.prefix + path)

    def post(self, path, data):
        return self.open("POST", self.prefix + path, {"csrf_token": self.token, **data})

    def follow(self, response):
        location = response.headers["Location"]
        assert location.startswith(self.prefix + "/"), location
        return self.open("GET", location)

    def last_cookie(self, name):
        """The last Set-Cookie morsel received for `name`."""
        return [m for m in self.set_cookies if m.key == name][-1]


def audit_ips(app, event, outcome="ok"):
    with app.app_context():
        rows = AuditEvent.select().where(
            (AuditEvent.event == event) & (AuditEvent.outcome == outcome)
        )
        return [row.ip for row in rows]


def session_ips(app):
    with app.app_context():
        return [row.ip for row in WebSession.select()]


# ---------------------------------------------------- SC-30: whose IP is recorded


def test_sc30_forwarded_headers_are_ignored_with_proxy_fix_off(make, clock):
    """By default a client cannot choose its IP, scheme, host or prefix by header."""
    app = make()
    browser = ProxiedBrowser(app, clock, prefix="/mfa-app", forwarded_for=SPOOFED_ADDR)
    browser.prefix = ""  # the app knows nothing of a prefix: it serves at /
    response = browser.get("/login")
    assert response.status_code == 200
    morsel = browser.set_cookies[-1]
    assert morsel.key == "smfa_anon"  # not __Host-: this was plain HTTP
    assert not morsel["secure"] and morsel["path"] == "/"
    assert "Strict-Transport-Security" not in response.headers
    assert 'href="/static/style.css"' in response.get_data(as_text=True)

    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    morsel = browser.last_cookie("smfa_session")  # not __Host- either
    assert not morsel["secure"] and morsel["path"] == "/"
    # The socket's peer (the proxy) is recorded, never the header's claim.
    assert audit_ips(app, "login") == [PROXY_ADDR]
    assert session_ips(app) == [PROXY_ADDR]


def test_sc30_forwarded_for_trusted_for_one_hop_only(make, clock):
    """With one trusted proxy, the address it appended counts; what the client put
    in front of it does not."""
    app = make(PROXY_FIX_X_FOR=1)
    browser = ProxiedBrowser(app, clock, forwarded_for=f"{SPOOFED_ADDR}, {CLIENT_ADDR}")
    browser.get("/login")
    response = browser.post("/login", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert audit_ips(app, "login", "failed") == [CLIENT_ADDR]
    assert audit_ips(app, "login") == [CLIENT_ADDR]
    assert session_ips(app) == [CLIENT_ADDR]


def test_sc30_forwarded_for_alone_does_not_trust_the_scheme(make, clock):
    app = make(PROXY_FIX_X_FOR=1)
    response = ProxiedBrowser(app, clock).get("/login")
    assert "Strict-Transport-Security" not in response.headers
    assert "Secure" not in response.headers["Set-Cookie"]


# ------------------------------------------- SC-16 / SC-31: HTTPS through the proxy


def test_sc16_https_proxy_secure_host_cookie_hsts_and_full_sign_in(make, clock):
    app = make(**TRUST_ONE_PROXY)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    browser = ProxiedBrowser(app, clock)

    response = browser.get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    morsel = browser.set_cookies[-1]
    assert morsel.key == "__Host-smfa_anon"  # the anonymous session: no row (SC-45)
    assert morsel["secure"] and morsel["httponly"] and morsel["path"] == "/"
    assert not morsel["domain"] and morsel["samesite"] == "Lax"

    # A browser sends no Referer (Referrer-Policy: no-referrer): HTTPS forms still work.
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert (response.status_code, response.headers["Location"]) == (302, "/mfa/setup")
    morsel = browser.last_cookie("__Host-smfa_session")
    assert morsel["secure"] and morsel["httponly"] and morsel["path"] == "/"
    assert not morsel["domain"] and morsel["samesite"] == "Lax"
    page = browser.follow(response).get_data(as_text=True)
    secret = re.search(r'id="totp-secret"[^>]*>([^<]+)<', page).group(1).replace(" ", "")
    code = pyotp.TOTP(secret).at(clock.timestamp())
    response = browser.post("/mfa/setup", {"code": code})
    assert (response.status_code, response.headers["Location"]) == (302, "/mfa/recovery-codes")
    assert "I have saved these codes" in browser.follow(response).get_data(as_text=True)
    response = browser.post("/mfa/recovery-codes", {})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    home = browser.follow(response)
    assert 'id="signed-in-user">alice<' in home.get_data(as_text=True)
    assert home.headers["Strict-Transport-Security"].startswith("max-age=")
    # Every cookie of the sign-in (the anonymous session's, the session's, then the
    # trusted browser's) was Secure and __Host-.
    assert {m.key for m in browser.set_cookies} == {
        "__Host-smfa_session",
        "__Host-smfa_anon",
        "__Host-smfa_browser",
    }
    assert all(m["secure"] for m in browser.set_cookies)
    assert audit_ips(app, "totp_enrolled") == [CLIENT_ADDR]


def test_sc16_plain_http_cookie_is_not_sent_back_over_https(make, clock):
    """The HTTPS session cookie has its own name: a cookie set over plain HTTP (by a
    man in the middle, say) is not the HTTPS session."""
    app = make(**TRUST_ONE_PROXY)
    plain = ProxiedBrowser(app, clock, scheme="http")
    plain.get("/login")
    response = plain.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert sorted(plain.cookies) == ["smfa_browser", "smfa_session"]

    secure = ProxiedBrowser(app, clock)
    secure.cookies = dict(plain.cookies)  # planted
    response = secure.get("/")
    assert (response.status_code, response.headers["Location"]) == (302, "/login")


def test_sc16_secure_config_without_https_still_secure(make, clock):
    app = make(SESSION_COOKIE_SECURE=True)
    browser = ProxiedBrowser(app, clock, scheme="http")
    browser.secure = True  # a browser that keeps it (localhost, say)
    response = browser.get("/login")
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-smfa_anon=") and "Secure" in header
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    morsel = browser.last_cookie("__Host-smfa_session")
    assert morsel["secure"]


# ----------------------------------------------------------- under /mfa-app/


def test_prefix_links_redirects_next_and_cookie_stay_under_the_prefix(make, clock):
    app = make(**TRUST_ONE_PROXY)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    browser = ProxiedBrowser(app, clock, prefix="/mfa-app")

    response = browser.get("/admin/mfa")
    assert response.status_code == 302
    assert response.headers["Location"] == "/mfa-app/login?next=/admin/mfa"
    page = browser.follow(response).get_data(as_text=True)
    links = HREF_RE.findall(page)
    assert "/mfa-app/static/style.css" in links
    assert all(link.startswith("/mfa-app/") for link in links if link.startswith("/")), links
    morsel = browser.set_cookies[-1]
    # Not at /: __Host- is impossible, __Secure- still keeps plain HTTP from setting it.
    assert morsel.key == "__Secure-smfa_anon"
    assert morsel["secure"] and morsel["path"] == "/mfa-app"

    response = browser.open(
        "POST",
        "/mfa-app/login?next=/admin/mfa",
        {"csrf_token": browser.token, "username": "root", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/mfa-app/mfa/setup"
    morsel = browser.last_cookie("__Secure-smfa_session")
    assert morsel["secure"] and morsel["path"] == "/mfa-app"
    page = browser.follow(response).get_data(as_text=True)
    secret = re.search(r'id="totp-secret"[^>]*>([^<]+)<', page).group(1).replace(" ", "")
    response = browser.post("/mfa/setup", {"code": pyotp.TOTP(secret).at(clock.timestamp())})
    assert response.headers["Location"] == "/mfa-app/mfa/recovery-codes"
    browser.follow(response)
    response = browser.post("/mfa/recovery-codes", {})
    # Back to the page first asked for, below the prefix.
    assert response.headers["Location"] == "/mfa-app/admin/mfa"
    page = browser.follow(response)
    assert page.status_code == 200 and 'name="mfa_method"' in page.get_data(as_text=True)

    response = browser.post("/logout", {})
    assert response.headers["Location"] == "/mfa-app/login"
    assert browser.get("/").headers["Location"] == "/mfa-app/login"


def test_portal_cookie_policy_for_the_portals_own_cookies(make, clock):
    """The one decision other cookies (a remembered device) use: same flags, name, path."""
    app = make(**TRUST_ONE_PROXY)
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/mfa-app"}
    with app.test_request_context("/", headers=headers, base_url="https://mfa.example"):
        policy = portal_cookie_policy()
        assert (policy.secure, policy.path) == (True, "/")
        assert policy.name("smfa_device") == "__Host-smfa_device"
    with app.test_request_context("/", base_url="https://mfa.example/mfa-app"):
        policy = portal_cookie_policy()
        assert policy.path == "/mfa-app"
        assert policy.name("smfa_device") == "__Secure-smfa_device"
        response = app.response_class()
        policy.set(response, "smfa_device", "v", max_age=60)
        policy.delete(response, "smfa_device")
        set_header, delete_header = response.headers.getlist("Set-Cookie")
        assert set_header.startswith("__Secure-smfa_device=v;")
        assert "Secure" in set_header and "Path=/mfa-app" in set_header
        assert "HttpOnly" in set_header and "Max-Age=60" in set_header
        assert delete_header.startswith("__Secure-smfa_device=;")
        assert "Path=/mfa-app" in delete_header and "Max-Age=0" in delete_header
    with app.test_request_context("/", base_url="http://mfa.example"):
        policy = portal_cookie_policy()
        assert not policy.secure and policy.name("__Host-smfa_device") == "smfa_device"


# ----------------------------------------------------------- configuration


@pytest.mark.parametrize("value", [-1, "two", True, 1.5, None])
def test_proxy_fix_hop_counts_are_validated(tmp_path, clock, value):
    config = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
        "CLOCK": clock,
        "PROXY_FIX_X_FOR": value,
    }
    with pytest.raises(ConfigurationError, match="PROXY_FIX_X_FOR"):
        create_app(config)


def test_proxy_fix_from_environment(tmp_path, monkeypatch):
    """FLASK_PROXY_FIX_X_FOR=1 in the environment turns trust on for one proxy."""
    monkeypatch.setenv("FLASK_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", '["' + "A" * 43 + '="]')
    monkeypatch.setenv("FLASK_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    monkeypatch.setenv("FLASK_PROXY_FIX_X_FOR", "1")
    monkeypatch.setenv("FLASK_PROXY_FIX_X_PROTO", "0")
    app = create_app(instance_path=str(tmp_path / "instance"))
    assert app.config["PROXY_FIX_X_FOR"] == 1 and app.config["PROXY_FIX_X_PROTO"] == 0
    assert app.config["PROXY_FIX_X_HOST"] == 0 and app.config["PROXY_FIX_X_PREFIX"] == 0


def test_wsgi_module_serves_create_app_with_proxy_fix(tmp_path, monkeypatch):
    """`gunicorn wsgi:app` gets the app built from the instance config and FLASK_*."""
    monkeypatch.setenv("FLASK_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", '["' + "A" * 43 + '="]')
    monkeypatch.setenv("FLASK_DATABASE_URL", f"sqlite:///{tmp_path}/wsgi.sqlite3")
    monkeypatch.setenv("FLASK_PROXY_FIX_X_FOR", "1")
    module = runpy.run_path(str(ROOT / "wsgi.py"))
    app = module["app"]
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path}/wsgi.sqlite3"
    assert isinstance(app.wsgi_app, ProxyFix) and app.wsgi_app.x_for == 1
    assert app.wsgi_app.x_proto == 0 and app.wsgi_app.x_prefix == 0
