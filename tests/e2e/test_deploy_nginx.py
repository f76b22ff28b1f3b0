"""deploy/nginx.conf, for real: nginx (with TLS) in front of the app, which trusts one
proxy. Only ports, certificate paths and the upstream address are changed from the
shipped file. nginx is Debian's nginx-light, which `make test` installs (system-deps).

What a client sends as X-Forwarded-* is never believed; the session cookie is Secure
and __Host- at the root and __Secure- with Path=/mfa-app under the prefix; HSTS is
sent; redirects stay on the site; the audit log has nginx's view of the client.
"""

from __future__ import annotations

import http.client
import ssl
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from support.app import PASSWORD, make_app
from support.pages import csrf_from
from support.proxies import TRUST_ONE_PROXY, nginx, shipped, wildcard_certificate
from support.servers import free_port, quiet_server
from urllib3.exceptions import InsecureRequestWarning

from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent

pytestmark = pytest.mark.server

HOST = "mfa.example.org"
SPOOFING = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Prefix": "/evil",
}


def site_config(folder: Path, app_port: int, http_port: int, https_port: int) -> str:
    """The shipped site file with this test's ports and a throwaway certificate for HOST."""
    cert, key = wildcard_certificate(folder, HOST)
    return shipped(
        "nginx.conf",
        [
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"),
            ("    listen [::]:80;\n", ""),
            ("    listen [::]:443 ssl http2;\n", ""),
            ("listen 80;", f"listen 127.0.0.1:{http_port};"),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
            ("/etc/ssl/certs/mfa.example.org.pem", str(cert)),
            ("/etc/ssl/private/mfa.example.org.key", str(key)),
        ],
    )


@pytest.fixture
def behind_nginx(tmp_path, clock):
    """(app, http URL, https URL): the app on a threaded server, nginx in front."""
    app = make_app(tmp_path, clock, **TRUST_ONE_PROXY)
    try:
        with quiet_server(app) as app_url:
            folder = tmp_path / "nginx"
            folder.mkdir()
            http_port, https_port = free_port(), free_port()
            site = site_config(folder, urlsplit(app_url).port, http_port, https_port)
            with nginx(folder, {"site.conf": site}, [http_port, https_port]):
                yield app, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}"
    finally:
        with app.app_context():
            db.close()


def browser() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = False  # our throwaway certificate
    session.headers.update({"Host": HOST, **SPOOFING})
    return session


def cookie_header(response, name: str) -> str:
    """The Set-Cookie header of the response for cookie `name` (with its prefix)."""
    for header in response.raw.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie set: {response.raw.headers.getlist('Set-Cookie')}")


@pytest.fixture(autouse=True)
def _no_insecure_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


def test_nginx_redirects_plain_http_to_https(behind_nginx):
    _app, http_url, _https_url = behind_nginx
    response = browser().get(http_url + "/login?next=/admin/", allow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{HOST}/login?next=/admin/"


def test_sc16_sc30_through_nginx_at_the_root(behind_nginx):
    app, _http_url, https_url = behind_nginx
    client = browser()
    page = client.get(https_url + "/login", allow_redirects=False)
    assert page.status_code == 200
    # Before the password only the anonymous session's cookie (SC-45), prefixed alike.
    header = cookie_header(page, "__Host-smfa_anon")
    assert "Secure" in header and "Path=/;" in header and "Domain" not in header
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert 'href="/static/style.css"' in page.text  # no /evil prefix from the client

    token = csrf_from(page.text)
    response = client.post(
        https_url + "/login",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD},
        allow_redirects=False,
    )
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    header = cookie_header(response, "__Host-smfa_session")
    assert "Secure" in header and "Path=/;" in header and "Domain" not in header
    home = client.get(https_url + "/", allow_redirects=False)
    assert 'id="signed-in-user">alice<' in home.text
    with app.app_context():
        ips = [e.ip for e in AuditEvent.select().where(AuditEvent.event == "login")]
    assert ips == ["127.0.0.1"]  # what nginx saw, not the client's 6.6.6.6


def test_sc16_through_nginx_under_a_prefix(behind_nginx):
    _app, _http_url, https_url = behind_nginx
    client = browser()
    response = client.get(https_url + "/mfa-app/admin/", allow_redirects=False)
    assert response.headers["Location"] == "/mfa-app/login?next=/admin/"
    page = client.get(https_url + "/mfa-app/login", allow_redirects=False)
    header = cookie_header(page, "__Secure-smfa_anon")
    assert "Secure" in header and "Path=/mfa-app;" in header
    assert 'href="/mfa-app/static/style.css"' in page.text
    assert client.get(https_url + "/mfa-app/static/style.css").status_code == 200

    token = csrf_from(page.text)
    response = client.post(
        https_url + "/mfa-app/login?next=/admin/",
        data={"csrf_token": token, "username": "root", "password": PASSWORD},
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/mfa-app/admin/"
    header = cookie_header(response, "__Secure-smfa_session")
    assert "Secure" in header and "Path=/mfa-app;" in header
    admin = client.get(https_url + "/mfa-app/admin/", allow_redirects=False)
    assert admin.status_code == 200 and "Multi-Factor Authentication" in admin.text


def raw_get(base_url: str, target: str) -> int:
    """The status of GET `target` written byte for byte (requests would clean the path)."""
    parts = urlsplit(base_url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
    try:
        connection.putrequest("GET", target, skip_host=True)
        connection.putheader("Host", HOST)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


CHECK_SPELLINGS = [
    "/auth/nginx",
    "/auth/forward",
    "/auth%2Fnginx",
    "//auth/forward",
    "/x/../auth/nginx",
    "/./auth/forward",
    "/%61uth/nginx",
]


def test_sc69_the_checks_are_not_answered_on_the_portals_server(behind_nginx):
    """The checks are for the app servers' auth_request, straight to gunicorn; the
    portal's public server answers 404 for them, at the root and under the prefix."""
    app, _http_url, https_url = behind_nginx
    direct = app.test_client()
    assert direct.get("/auth/nginx").status_code != 404  # the portal has them
    for target in CHECK_SPELLINGS:
        assert raw_get(https_url, target) == 404, target
        assert raw_get(https_url, "/mfa-app" + target) == 404, "/mfa-app" + target
    assert raw_get(https_url, "/login") == 200  # and the rest of the portal is served
