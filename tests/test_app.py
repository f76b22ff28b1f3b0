"""The application as deployed: configuration, cookies, headers, errors, the database
going away, and the README's state diagram matching the code."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import make_app

from standalone_mfa import create_app
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.core.crypto import generate_key
from standalone_mfa.signin import state

ROOT = Path(__file__).resolve().parent.parent


def test_refuses_to_start_without_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_MFA_ENCRYPTION_KEYS", raising=False)
    with pytest.raises(ConfigurationError) as raised:
        create_app(instance_path=str(tmp_path))
    message = str(raised.value)
    assert "SECRET_KEY and MFA_ENCRYPTION_KEYS are not set" in message
    assert "make run" in message and "FLASK_MFA_ENCRYPTION_KEYS" in message


def test_refuses_malformed_encryption_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASK_SECRET_KEY", "x" * 64)
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", '["not-a-fernet-key"]')
    with pytest.raises(ConfigurationError, match="Fernet"):
        create_app(instance_path=str(tmp_path))


def test_reads_instance_config_then_environment(tmp_path, monkeypatch):
    old, new = generate_key(), generate_key()
    (tmp_path / "config.py").write_text(
        f'SECRET_KEY = "from-file"\nMFA_ENCRYPTION_KEYS = ["{old}"]\nMFA_ISSUER = "Acme"\n'
    )
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", json.dumps([new, old]))
    monkeypatch.setenv("FLASK_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    app = create_app(instance_path=str(tmp_path))
    assert app.config["SECRET_KEY"] == "from-file"
    assert app.config["MFA_ENCRYPTION_KEYS"] == [new, old]
    assert app.config["MFA_ISSUER"] == "Acme"
    assert app.config["DATABASE_URL"].endswith("env.sqlite3")


def test_instance_config_is_written_once_and_never_overwritten(tmp_path):
    from standalone_mfa.instance import write_config

    path = tmp_path / "config.py"
    assert write_config(path)
    first = path.read_text()
    assert not write_config(path)
    assert path.read_text() == first
    assert path.stat().st_mode & 0o077 == 0
    namespace = {}
    exec(compile(first, str(path), "exec"), namespace)  # noqa: S102 - our own generated file
    assert len(namespace["SECRET_KEY"]) >= 64
    assert len(namespace["MFA_ENCRYPTION_KEYS"]) == 1


def test_default_password_hash_is_scrypt(tmp_path, clock):
    app = make_app(tmp_path, clock, PASSWORD_HASH_METHOD="scrypt")
    from standalone_mfa.core.models import User

    with app.app_context():
        assert User.get(User.username == "alice").password_hash.startswith("scrypt:")
    assert create_app.__module__  # the default config is scrypt too
    from standalone_mfa.core.config import DEFAULTS

    assert DEFAULTS["PASSWORD_HASH_METHOD"] == "scrypt"


def test_sc16_cookie_flags(browser):
    response = browser.get("/login")
    header = response.headers["Set-Cookie"]
    assert header.startswith("smfa_session=")
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header


def test_sc16_secure_cookie_uses_host_prefix(tmp_path, clock):
    app = make_app(tmp_path, clock, SESSION_COOKIE_SECURE=True)
    response = app.test_client().get("/login", base_url="https://localhost")
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-smfa_session=")
    assert "Secure" in header and "Path=/" in header and "Domain" not in header
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


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


def test_readme_diagram_matches_transition_table():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```mermaid", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*(\w+) --> (\w+) : (\w+)\s*$", block, re.MULTILINE))
    table = {(source, target, event) for source, event, target in state.TRANSITIONS}
    assert drawn == table


def test_wrong_username_costs_one_password_hash_check_like_a_wrong_password(
    app, new_browser, monkeypatch
):
    from standalone_mfa.factors import passwords

    methods = []
    real_check = passwords.check_password_hash

    def counting_check(pwhash, password):
        methods.append(pwhash.split("$", 1)[0])
        return real_check(pwhash, password)

    monkeypatch.setattr(passwords, "check_password_hash", counting_check)
    pages = []
    for username in ("alice", "nobody-here"):
        person = new_browser()
        person.get("/login")
        response = person.post("/login", {"username": username, "password": "wrong password"})
        pages.append(response.get_data(as_text=True).split('name="csrf_token"')[0])
    # One check each, with the same hash method and cost: the same work either way.
    assert methods == [methods[0], methods[0]]
    assert methods[0] == app.config["PASSWORD_HASH_METHOD"]
    assert pages[0] == pages[1]
    assert "The username or password is not right." in pages[0]


def test_audit_events_are_json_log_lines(browser, caplog):
    caplog.set_level("INFO", logger="standalone_mfa.audit")
    browser.login(password="wrong password")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "standalone_mfa.audit"]
    event = json.loads(line)
    assert event["event"] == "login" and event["outcome"] == "failed"
    assert event["user"] == "alice" and event["ip"] == "127.0.0.1"
    assert event["at"].endswith("Z")
