"""`GET /healthz`, and a database that goes away and comes back: a 503 page (JSON on
the probe and the API) and never a traceback while it is gone, and service again as
soon as it is back, without restarting the app."""

from __future__ import annotations

import peewee
from support.app import PASSWORD, make_app
from support.client import Browser
from support.db import needs_postgresql, terminate_backend

from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent, User, WebSession
from standalone_mfa.factors import passwords
from standalone_mfa.ops import schema


def web_sessions(app) -> int:
    with app.app_context():
        return WebSession.select().count()


def assert_unavailable_page(response):
    page = response.get_data(as_text=True)
    assert response.status_code == 503, page[:300]
    assert "briefly unavailable" in page
    assert "Traceback" not in page and "Exception" not in page


def test_healthz_ok_without_a_session(app):
    client = app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json and response.get_json() == {"status": "ok"}
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert client.head("/healthz").status_code == 200
    assert web_sessions(app) == 0


def test_healthz_is_not_behind_the_sign_in_guard(totp_app, clock):
    """A browser half-way through a sign-in still gets the probe's answer, and its
    pending login is left as it was."""
    browser = Browser(totp_app, clock)
    browser.login("alice")
    cookie = browser.cookie()
    response = browser.get("/healthz")
    assert response.get_json() == {"status": "ok"}
    assert browser.cookie() == cookie
    assert browser.get("/mfa/setup").status_code == 200


def test_healthz_503_without_schema(tmp_path, clock):
    """An empty database (init-db never run) is not healthy: no sign-in could work."""
    app = make_app(tmp_path, clock)
    with app.app_context():
        db.initialize(peewee.SqliteDatabase(str(tmp_path / "empty.sqlite3")))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "schema": "mismatch"}


def test_schema_creation_is_idempotent(app):
    """init-db on a database that has everything already changes nothing (both engines:
    the whole suite also runs on PostgreSQL)."""
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "Database ready" in result.output
        assert "Created the first administrator" not in result.output
    with app.app_context():
        assert sorted(u.username for u in User.select()) == ["alice", "bob", "root"]
        assert schema.upgrade() == []  # what init-db runs, once more directly: nothing to do


# ------------------------------------------ SQLite: the file's folder goes away


def test_sqlite_database_gone_gives_503_then_recovers(tmp_path, clock):
    data = tmp_path / "data"
    data.mkdir()
    app = make_app(tmp_path, clock, DATABASE_URL=f"sqlite:///{data}/app.sqlite3")
    browser = Browser(app, clock)
    assert browser.get("/healthz").status_code == 200
    browser.get("/login")  # a form and its CSRF token, before the outage

    hidden = tmp_path / "data-hidden"
    data.rename(hidden)  # the disk is unmounted, the volume detached...
    try:
        response = browser.get("/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "unavailable"}
        assert_unavailable_page(
            browser.post("/login", {"username": "alice", "password": PASSWORD})
        )
        # The anonymous form needs no database (its session is a signed cookie, SC-45);
        # a browser with a session cookie does.
        assert browser.get("/login").status_code == 200
        browser.client.set_cookie(app.config["SESSION_COOKIE_NAME"], "x" * 43)
        assert_unavailable_page(browser.get("/login"))
        browser.client.delete_cookie(app.config["SESSION_COOKIE_NAME"])
        assert not data.exists(), "the app made a new, empty database instead of failing"
    finally:
        hidden.rename(data)

    assert browser.get("/healthz").get_json() == {"status": "ok"}
    response = browser.login("alice")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert 'id="signed-in-user">alice<' in browser.page("/")


# ------------------------------ PostgreSQL: the connection is killed mid-request


@needs_postgresql
def test_postgres_connection_killed_mid_request_gives_503_then_recovers(app, clock, monkeypatch):
    check_password = passwords.check_password
    killed = []

    def killed_during_the_password_check(user, password):
        if not killed:  # the first sign-in only
            pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            terminate_backend(pid)
            killed.append(pid)
        return check_password(user, password)

    monkeypatch.setattr(passwords, "check_password", killed_during_the_password_check)
    browser = Browser(app, clock)
    browser.get("/login")
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert killed, "the connection was never killed"
    assert_unavailable_page(response)
    with app.app_context():  # the failed step kept nothing
        assert WebSession.select().where(WebSession.user.is_null(False)).count() == 0

    # The next request opens a new connection: no restart needed.
    assert browser.get("/healthz").get_json() == {"status": "ok"}
    response = browser.login("alice")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert 'id="signed-in-user">alice<' in browser.page("/")
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "login").count() == 1
