"""gunicorn.conf.py: gunicorn, started as docs/deploy.md says (from the repository root,
no `-c`), believes forwarded headers only when the app's `PROXY_FIX_*` settings say a
proxy sets them, so `X-Forwarded-Proto: https` from 127.0.0.1 makes no Secure cookie and
no HSTS on its own (SC-46)."""

from __future__ import annotations

import contextlib
import os
import runpy

import pytest
import requests
from support import servers
from support.app import PASSWORD
from support.pages import form_token
from support.paths import ROOT
from support.servers import app_env

from standalone_mfa.core.config import ConfigurationError, proxy_hops

HTTP_TIMEOUT = 30
# Every header gunicorn believes by default, each saying "this came over HTTPS".
CLAIMS_HTTPS = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Protocol": "ssl",
}


@contextlib.contextmanager
def gunicorn(app, tmp_path, **flask_env):
    """`gunicorn wsgi:app` from the repository root, on the test app's database and
    keys, with `FLASK_<name>` set from `flask_env` (and no other FLASK_ variable of this
    shell); yields the base URL."""
    with servers.gunicorn("wsgi:app", tmp_path / "gunicorn.log", app_env(app, **flask_env)) as url:
        yield url


def sign_in(base_url, headers):
    """alice's password sign-in, the cookie carried by hand (a Secure cookie would not
    be sent back over http by a client library); the two responses."""
    page = requests.get(base_url + "/login", headers=headers, timeout=HTTP_TIMEOUT)
    cookie = "; ".join(h.split(";", 1)[0] for h in page.raw.headers.getlist("Set-Cookie"))
    answer = requests.post(
        base_url + "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": form_token(page)},
        headers={**headers, **({"Cookie": cookie} if cookie else {})},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"] in ("/", "https://" + base_url.split("//")[1] + "/")
    return page, answer


def session_cookie(response) -> str:
    """The Set-Cookie header of the session cookie (whatever its prefix), or ""."""
    for header in response.raw.headers.getlist("Set-Cookie"):
        if header.split("=", 1)[0].endswith("smfa_session"):
            return header
    return ""


def test_sc46_forwarded_https_from_localhost_is_ignored_without_proxy_fix(app, tmp_path):
    with gunicorn(app, tmp_path, PROXY_FIX_X_PROTO=0, PROXY_FIX_X_FOR=0) as base_url:
        page, answer = sign_in(base_url, CLAIMS_HTTPS)
        script_name = requests.get(
            base_url + "/evil/login", headers={"SCRIPT_NAME": "/evil"}, timeout=HTTP_TIMEOUT
        )
    cookie = session_cookie(answer)
    assert cookie.startswith("smfa_session=")
    assert "secure" not in cookie.lower()
    for response in (page, answer):
        assert "Strict-Transport-Security" not in response.headers
        assert not response.headers.get("Location", "").startswith("https:")
    # Nor does gunicorn take a path prefix from a SCRIPT_NAME header.
    assert script_name.status_code == 404


def test_sc46_with_proxy_fix_x_proto_the_forwarded_https_is_believed(app, tmp_path):
    with gunicorn(app, tmp_path, PROXY_FIX_X_PROTO=1) as base_url:
        page, answer = sign_in(base_url, {"X-Forwarded-Proto": "https"})
        plain_page, plain_answer = sign_in(base_url, {})
    cookie = session_cookie(answer)
    assert cookie.startswith("__Host-smfa_session=")
    assert "; secure" in cookie.lower()
    assert "max-age=" in answer.headers["Strict-Transport-Security"]
    # Without the header the same server still answers plain HTTP.
    assert session_cookie(plain_answer).startswith("smfa_session=")
    assert "Strict-Transport-Security" not in plain_answer.headers


def conf(monkeypatch, **flask_env) -> dict:
    """gunicorn.conf.py's settings, read as gunicorn reads the file, with FLASK_ set."""
    for name in [n for n in os.environ if n.startswith("FLASK_PROXY_FIX_")]:
        monkeypatch.delenv(name)
    for name, value in flask_env.items():
        monkeypatch.setenv(f"FLASK_{name}", str(value))
    monkeypatch.chdir(ROOT)
    # The file sets up the metrics' folder for gunicorn's workers: not for this process.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # unset for the file; restored after
    found = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    found["on_exit"](None)  # the temporary folder it made
    return found


def test_sc46_gunicorn_conf_follows_the_proxy_fix_settings(monkeypatch):
    off = conf(monkeypatch)  # the defaults (and this checkout's instance folder)
    if not any(proxy_hops().values()):
        assert (off["forwarded_allow_ips"], off["secure_scheme_headers"]) == ("", {})
    none = conf(monkeypatch, PROXY_FIX_X_FOR=0, PROXY_FIX_X_PROTO=0, PROXY_FIX_X_HOST=1)
    assert (none["forwarded_allow_ips"], none["secure_scheme_headers"]) == ("", {})
    addresses = conf(monkeypatch, PROXY_FIX_X_FOR=1, PROXY_FIX_X_PROTO=0)
    assert addresses["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert addresses["secure_scheme_headers"] == {}
    https = conf(monkeypatch, PROXY_FIX_X_FOR=0, PROXY_FIX_X_PROTO=2)
    assert https["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert https["secure_scheme_headers"] == {"X-FORWARDED-PROTO": "https"}
    for settings in (off, none, addresses, https):
        assert settings["forwarder_headers"] == ""


def test_sc46_proxy_hops_reads_the_instance_config_then_the_environment(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("FLASK_PROXY_FIX_")]:
        monkeypatch.delenv(name)
    (tmp_path / "config.py").write_text("PROXY_FIX_X_PROTO = 1\nPROXY_FIX_X_FOR = '2'\n")
    hops = proxy_hops(str(tmp_path))
    assert (hops["PROXY_FIX_X_PROTO"], hops["PROXY_FIX_X_FOR"], hops["PROXY_FIX_X_HOST"]) == (
        1,
        2,
        0,
    )
    monkeypatch.setenv("FLASK_PROXY_FIX_X_PROTO", "0")
    assert proxy_hops(str(tmp_path))["PROXY_FIX_X_PROTO"] == 0
    monkeypatch.setenv("FLASK_PROXY_FIX_X_PROTO", '"yes"')
    with pytest.raises(ConfigurationError, match="PROXY_FIX_X_PROTO"):
        proxy_hops(str(tmp_path))
