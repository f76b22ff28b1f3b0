"""web/errors: the security headers on every response, plain error pages (JSON on the
API) without a traceback, 405, 413 and 503 when the database is away (SC-31)."""

from __future__ import annotations

import re
import sqlite3

import pytest
from support.app import PASSWORD, make_app
from support.db import table_dump
from support.pages import CSRF_INPUT_RE, VALUE_RE
from support.steps import pending_setup

from standalone_mfa.core.db import db
from standalone_mfa.core.db import open_database as open_db
from standalone_mfa.core.models import AuditEvent, User
from standalone_mfa.directory import tokens


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, (response.request.path, "no CSP")
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = [w.lower() for w in words[1:]]
    return directives


def assert_security_headers(response):
    what = f"{response.request.method} {response.request.path} -> {response.status_code}"
    directives = csp_directives(response)
    policy = response.headers["Content-Security-Policy"].lower()
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, what
    assert directives.get("frame-ancestors") == ["'none'"], what
    scripts = directives.get("script-src") or directives.get("default-src")
    assert scripts, what
    assert not {"*", "data:", "http:", "https:"} & set(scripts), what
    assert directives.get("object-src") == ["'none'"] or "object-src" not in directives, what
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert response.headers.get("Referrer-Policy") in {
        "no-referrer",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
    }, what


def pages_in_every_state(totp_app, new_browser, clock):
    """(response, is_html) for pages, redirects, errors and the API in every state."""
    seen = []
    anonymous = new_browser()
    seen += [anonymous.get("/login"), anonymous.get("/"), anonymous.get("/nowhere")]
    seen.append(anonymous.post("/login", {"username": "alice", "password": "wrong!"}))
    seen.append(anonymous.post("/login", {"username": "x"}, csrf=False))  # CSRF 400
    setup, secret = pending_setup(new_browser)
    seen += [setup.get("/mfa/setup"), setup.get("/admin/")]
    setup.post("/mfa/setup", {"code": setup.code(secret)})
    seen += [setup.get("/mfa/recovery-codes"), setup.get("/mfa/recovery-codes.txt")]
    setup.post("/mfa/recovery-codes")
    seen += [setup.get("/"), setup.client.put("/logout"), setup.get("/mfa/setup")]
    seen += [setup.get("/account/security"), setup.get("/account/password")]
    clock.advance(60)
    verify = new_browser()
    verify.login()
    seen += [verify.get("/mfa/verify"), verify.get("/api/v1/users/alice/totp")]
    seen.append(verify.get("/mfa/recovery"))
    root = new_browser()
    root_secret = root.enrol("root")
    assert root_secret
    seen += [root.get("/admin/"), root.get("/admin/mfa")]
    seen.append(setup.get("/admin/mfa"))  # 403 for a normal user
    seen.append(setup.get("/static/style.css"))
    return seen


def test_sc31_headers_on_every_page_and_error(browser):
    for path in ("/login", "/nowhere", "/static/style.css"):
        response = browser.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP: no HSTS


def test_sc31_unexpected_error_shows_no_traceback(app, browser, monkeypatch):
    from standalone_mfa.signin import steps

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(steps, "submit_password", explode)
    response = browser.login()
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Traceback" not in page and "secret internals" not in page
    assert "Something went wrong" in page


# --- SC-31 headers and errors


def test_sc31_security_headers_on_every_kind_of_response(totp_app, new_browser, clock):
    responses = pages_in_every_state(totp_app, new_browser, clock)
    statuses = {r.status_code for r in responses}
    assert {200, 302, 400, 401, 403, 404, 405} <= statuses
    for response in responses:
        assert_security_headers(response)


def test_sc31_rendered_pages_have_no_inline_script_or_style(totp_app, new_browser, clock):
    responses = pages_in_every_state(totp_app, new_browser, clock)
    html_pages = [r for r in responses if r.mimetype == "text/html" and r.status_code != 302]
    assert len(html_pages) >= 8
    for response in html_pages:
        page = response.get_data(as_text=True)
        what = f"{response.request.path} ({response.status_code})"
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script\s*>", page, re.I | re.S)
        assert scripts, what  # the page does load our script; the check below is real
        for attributes, body in scripts:
            assert "src=" in attributes and not body.strip(), f"inline script on {what}"
        assert not re.search(r"<style\b", page, re.I), f"<style> on {what}"
        assert not re.search(r"\sstyle\s*=", page, re.I), f"style= on {what}"
        assert not re.search(r"\son[a-z]+\s*=", page, re.I), f"event handler on {what}"
        assert "javascript:" not in page.lower(), what
        assert "Traceback" not in page, what


# --- SC-31 headers, errors and 413


def test_sc31_oversized_form_gets_a_clear_413_page_and_changes_nothing(app, browser):
    browser.get("/login")
    before = table_dump(app, AuditEvent)
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = browser.post("/login", {"username": "alice", "password": "x" * (limit + 1)})
    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "What was sent is too large." in page
    assert "Traceback" not in page and "Request Entity Too Large" not in page
    assert response.headers["Content-Security-Policy"]
    assert table_dump(app, AuditEvent) == before


def test_sc31_oversized_api_request_gets_a_json_413(app):
    with app.app_context():
        token = tokens.create_token(User.get(User.username == "root"), actor="test")
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = app.test_client().delete(
        "/api/v1/users/alice/totp",
        data=b"{" + b" " * limit + b"}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 413
    assert response.get_json() == {"error": "What was sent is too large."}


def test_sc31_https_pages_and_errors_carry_hsts(app):
    client = app.test_client()
    for path in ("/login", "/nowhere", "/admin/mfa"):
        response = client.get(path, base_url="https://mfa.example")
        assert response.headers["Strict-Transport-Security"].startswith("max-age="), path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "TRACE"])
def test_sc31_unexpected_methods_get_a_plain_405_everywhere(app, browser, method):
    for path in ("/login", "/logout", "/mfa/verify", "/admin/mfa"):
        response = browser.client.open(path, method=method)
        page = response.get_data(as_text=True)
        assert response.status_code in (302, 405), (method, path)
        assert "Traceback" not in page and "werkzeug" not in page.lower(), (method, path)


def test_database_locked_gives_503_page_and_changes_nothing(tmp_path, clock):
    # SQLite's own lock, whatever TEST_DATABASE_URL says.
    sqlite_url = f"sqlite:///{tmp_path}/locked.sqlite3"
    app = make_app(tmp_path, clock, DATABASE_TIMEOUT=0.2, DATABASE_URL=sqlite_url)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post(
            "/login", data={"username": "alice", "password": "x" * 10, "csrf_token": token}
        )
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "briefly unavailable" in page and "Traceback" not in page
    # Once the lock is gone the same client carries on.
    assert client.get("/login").status_code == 200


def test_database_unreachable_gives_503_html_and_json(tmp_path, clock):
    app = make_app(tmp_path, clock)
    app.config["DATABASE_URL"] = "sqlite:////nonexistent-dir/x.sqlite3"
    from standalone_mfa.core import db

    db.db.initialize(db.open_database(app.config["DATABASE_URL"], 0.1))
    client = app.test_client()
    client.set_cookie("smfa_session", "a" * 43)
    response = client.get("/")
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)
    response = client.get("/api/v1/users/alice/totp", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert response.get_json() == {
        "error": "The service is briefly unavailable. Please try again in a moment."
    }


# --- the database away: 503


def test_post_while_database_unreachable_is_503(tmp_path, clock):
    app = make_app(tmp_path, clock)
    client = app.test_client()
    token = VALUE_RE.search(
        CSRF_INPUT_RE.search(client.get("/login").get_data(as_text=True)).group(0)
    ).group(1)
    db.initialize(open_db("sqlite:////nonexistent-dir/x.sqlite3", 0.1))
    response = client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 503
    assert "briefly unavailable" in response.get_data(as_text=True)
