"""Pooled database connections (the default on SQLite and PostgreSQL): a request
borrows a connection and gives it back at teardown, whatever happened; a connection
that died meanwhile is never handed out; a pool with nothing free answers 503 within
DATABASE_TIMEOUT; a forked worker never shares its parent's connections.

The PostgreSQL tests run when TEST_DATABASE_URL names a server (CI sets it)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import peewee
import pytest
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase
from support.app import PASSWORD, make_app, test_config
from support.client import Browser
from support.db import POSTGRES_URL, needs_postgresql, terminate_backend

from standalone_mfa import create_app
from standalone_mfa.core import db as db_module
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.core.db import db, is_sqlite
from standalone_mfa.core.models import User
from standalone_mfa.factors import passwords


def sqlite_app(tmp_path, clock, **overrides):
    """On SQLite whatever TEST_DATABASE_URL says."""
    url = f"sqlite:///{tmp_path}/pool.sqlite3"
    return make_app(tmp_path, clock, DATABASE_URL=url, **overrides)


def record_connections(app) -> list:
    """The driver connection each request (or app context) used, read at teardown
    just before the connection goes back to the pool."""
    used = []

    def record(_exc=None):
        if not db.is_closed():
            used.append(db.connection())

    app.teardown_appcontext(record)  # runs before the app's own (teardowns run reversed)
    return used


def pool_counts() -> tuple[int, int]:
    """(idle, checked out) connections of the pool."""
    return len(db.obj._connections), len(db.obj._in_use)


def backend_pid(connection) -> int:
    return connection.get_backend_pid()


def assert_unavailable(response):
    page = response.get_data(as_text=True)
    assert response.status_code == 503, page[:300]
    assert "briefly unavailable" in page and "Traceback" not in page


# ------------------------------------------------------------------ the default


def test_connections_are_pooled_by_default(app):
    """On the suite's engine: SQLite, or PostgreSQL when TEST_DATABASE_URL is set."""
    assert isinstance(db.obj, PooledDatabase)
    assert is_sqlite() == (not POSTGRES_URL.startswith("postgres"))
    assert app.config["DATABASE_POOL"] is True


def test_sqlite_is_pooled_by_default(tmp_path, clock):
    sqlite_app(tmp_path, clock)
    assert isinstance(db.obj, PooledDatabase) and is_sqlite()


@needs_postgresql
def test_postgres_is_pooled_by_default(tmp_path, clock):
    make_app(tmp_path, clock, DATABASE_URL=POSTGRES_URL)
    assert isinstance(db.obj, PooledDatabase) and not is_sqlite()


def test_database_pool_false_opens_a_connection_per_request(tmp_path, clock):
    app = make_app(tmp_path, clock, DATABASE_POOL=False)
    assert not isinstance(db.obj, PooledDatabase)
    used = record_connections(app)
    client = app.test_client()
    for _ in range(2):
        assert client.get("/healthz").status_code == 200
    assert len(used) == 2 and used[0] is not used[1]
    assert db.is_closed()


@pytest.mark.parametrize(
    ("name", "value"),
    [("DATABASE_POOL", "yes"), ("DATABASE_POOL_SIZE", 0), ("DATABASE_POOL_SIZE", True)],
)
def test_pool_settings_are_checked(tmp_path, clock, name, value):
    with pytest.raises(ConfigurationError, match=name):
        create_app(test_config(tmp_path, clock, **{name: value}))


# ------------------------------------------------------- borrowed and given back


def test_connection_is_reused_across_requests_and_returned_each_time(app, clock):
    used = record_connections(app)
    browser = Browser(app, clock)
    assert browser.get("/healthz").status_code == 200
    assert pool_counts() == (1, 0)  # back in the pool, nothing checked out
    response = browser.login("alice")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert pool_counts() == (1, 0)
    assert len(used) >= 3 and all(connection is used[0] for connection in used)
    if not is_sqlite():
        assert len({backend_pid(connection) for connection in used}) == 1


def test_connection_is_returned_after_an_error(app, clock, monkeypatch):
    """A view that fails (500) or whose database fails (503) still gives its
    connection back, and the next request uses it."""
    used = record_connections(app)
    browser = Browser(app, clock)
    browser.get("/login")

    def broken(user, password):
        raise RuntimeError("a bug")

    monkeypatch.setattr(passwords, "check_password", broken)
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 500
    assert pool_counts() == (1, 0)

    def database_error(user, password):
        raise peewee.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(passwords, "check_password", database_error)
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 503
    assert pool_counts() == (1, 0)

    monkeypatch.undo()
    response = browser.login("alice")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert all(connection is used[0] for connection in used)


def test_cli_command_gives_its_connection_back(app):
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert pool_counts() == (1, 0)


def test_pooled_sqlite_connections_keep_wal_busy_timeout_and_foreign_keys(tmp_path, clock):
    """Every connection of the pool, not only the first (two threads hold two)."""
    app = sqlite_app(tmp_path, clock, DATABASE_TIMEOUT=2.5)
    found = []
    both_open = threading.Barrier(2)

    def pragmas():
        with app.app_context():
            row = [
                db.execute_sql(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            ]
            found.append((db.connection(), row))
            both_open.wait(timeout=10)

    threads = [threading.Thread(target=pragmas) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(found) == 2 and found[0][0] is not found[1][0]
    for _connection, row in found:
        assert row == ["wal", 2500, 1, 1]  # synchronous 1 = NORMAL
    assert pool_counts() == (2, 0)


def test_sqlite_file_replaced_is_not_served_from_an_old_connection(tmp_path, clock):
    """A pooled connection keeps the file it opened. When the folder is swapped for
    another (a restore, a new volume), the next request reads the new file."""
    data = tmp_path / "data"
    data.mkdir()
    app = make_app(tmp_path, clock, DATABASE_URL=f"sqlite:///{data}/app.sqlite3")
    assert app.test_client().get("/healthz").status_code == 200
    assert pool_counts() == (1, 0)

    restored = tmp_path / "restored"
    restored.mkdir()
    with (
        sqlite3.connect(data / "app.sqlite3") as old,
        sqlite3.connect(restored / "app.sqlite3") as new,
    ):
        old.backup(new)
        new.execute("DELETE FROM user WHERE username = 'bob'")
    old.close()
    new.close()
    data.rename(tmp_path / "data-old")
    restored.rename(data)

    with app.app_context():
        assert sorted(User.select(User.username).tuples()) == [("alice",), ("root",)]


# --------------------------------------------------------------- a full pool


def test_full_pool_answers_503_within_the_timeout_then_recovers(tmp_path, clock):
    """Pool of one, held by another thread: the page and the API answer 503 (the
    usual page and JSON) once DATABASE_TIMEOUT has passed, not a 500 and no hang."""
    app = make_app(tmp_path, clock, DATABASE_POOL_SIZE=1, DATABASE_TIMEOUT=0.3)
    signed_in = Browser(app, clock)
    signed_in.login("alice")
    anonymous = Browser(app, clock)
    anonymous.get("/login")
    holding, release = threading.Event(), threading.Event()

    def hold_the_only_connection():
        with app.app_context():
            db.connect()
            holding.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        started = time.monotonic()
        # The session cannot be loaded, so nothing is (the guard's path)...
        assert_unavailable(signed_in.get("/"))
        # ...and a view's own query cannot run (the error handler's path).
        assert_unavailable(anonymous.post("/login", {"username": "bob", "password": PASSWORD}))
        response = anonymous.client.get(
            "/api/v1/users/alice/totp", headers={"Authorization": "Bearer x"}
        )
        assert response.status_code == 503
        assert response.get_json() == {
            "error": "The service is briefly unavailable. Please try again in a moment."
        }
        assert anonymous.client.get("/healthz").status_code == 503
        elapsed = time.monotonic() - started
        assert 4 * 0.3 <= elapsed < 4 * 0.3 + 5, elapsed  # waited, but not much longer
    finally:
        release.set()
        holder.join(timeout=10)
    assert signed_in.get("/").status_code == 200
    response = anonymous.login("bob")
    assert (response.status_code, response.headers["Location"]) == (302, "/")


# ------------------------------------------------- PostgreSQL: a killed backend


@needs_postgresql
@pytest.mark.parametrize("with_session", [False, True], ids=["anonymous", "signed-in"])
def test_postgres_backend_killed_in_the_pool_is_dropped_not_a_500(
    tmp_path, clock, with_session, monkeypatch
):
    """The pooled connection's backend is killed while it is idle in the pool (longer
    than PING_AFTER_IDLE): the pool drops it and the next request is served on a new
    connection, and so is every one after it."""
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE", 0.0)  # idle "long enough" at once
    app = make_app(tmp_path, clock)
    used = record_connections(app)
    browser = Browser(app, clock)
    if with_session:
        browser.login("alice")
    else:
        # An anonymous GET needs no database (SC-45); a wrong password does.
        browser.login("alice", "wrong")
    killed = backend_pid(used[-1])
    assert pool_counts() == (1, 0)
    terminate_backend(killed)

    if with_session:
        response = browser.get("/")
    else:
        response = browser.post("/login", {"username": "alice", "password": "wrong"})
    # An idle pooled PostgreSQL connection is checked (SELECT 1) before it is lent.
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    if with_session:
        assert browser.get("/").status_code == 200
        assert 'id="signed-in-user">alice<' in browser.page("/")
    else:
        response = browser.login("bob")
        assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert backend_pid(used[-1]) != killed
    assert pool_counts() == (1, 0)


@needs_postgresql
def test_postgres_backend_killed_just_after_use_costs_one_503_never_a_500(tmp_path, clock):
    """A connection in steady use (given back under PING_AFTER_IDLE ago) is lent without
    a round trip: if its backend died in that second, its next request is a 503 (the
    database is briefly unavailable), never a 500, and the one after that is served."""
    app = make_app(tmp_path, clock)
    used = record_connections(app)
    browser = Browser(app, clock)
    browser.login("alice", "wrong")
    killed = backend_pid(used[-1])
    terminate_backend(killed)
    response = browser.post("/login", {"username": "alice", "password": "wrong"})
    assert response.status_code in (200, 503), response.get_data(as_text=True)[:300]
    assert "Traceback" not in response.get_data(as_text=True)
    response = browser.login("bob")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert backend_pid(used[-1]) != killed


def test_postgres_connections_in_steady_use_are_not_pinged(monkeypatch):
    """The pool's check before lending costs a round trip only after an idle second."""
    from standalone_mfa.core.db import PooledPostgresql

    class FakeAdapter:
        txn_idle, txn_unknown = 0, 4

        def txn_status(self, conn):
            return conn.status

    class Conn:
        closed = 0
        status = 0

    pool = PooledPostgresql.__new__(PooledPostgresql)
    pool._returned_at = {}
    pool._adapter = FakeAdapter()
    pool.conn_key = id  # as Peewee sets it
    pinged = []
    # Peewee's own check (the SELECT 1), as the class below ours does it.
    monkeypatch.setattr(
        PooledPostgresqlDatabase, "_is_closed", lambda self, conn: pinged.append(conn) or False
    )
    conn = Conn()
    pool._returned_at[pool.conn_key(conn)] = time.monotonic()
    assert pool._is_closed(conn) is False and pinged == []  # just given back: no ping
    pool._returned_at[pool.conn_key(conn)] = time.monotonic() - db_module.PING_AFTER_IDLE - 1
    assert pool._is_closed(conn) is False and pinged == [conn]  # idle: pinged
    conn.status = 2  # in a transaction (or broken): pinged whatever its age
    pool._returned_at[pool.conn_key(conn)] = time.monotonic()
    pool._is_closed(conn)
    assert pinged == [conn, conn]


# ------------------------------------------------------------------- fork


def test_create_app_leaves_no_connection_open(tmp_path, clock):
    """gunicorn may build the app before forking its workers (--preload)."""
    create_app(test_config(tmp_path, clock))
    assert db.is_closed() and pool_counts() == (0, 0)


def test_forked_child_never_uses_or_closes_the_parents_connections(app):
    used = record_connections(app)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    parent_connection = used[-1]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report, then leave without any clean-up
        try:
            fresh = pool_counts() == (0, 0) and db.is_closed()
            with app.app_context():
                User.select().count()
                fresh = fresh and db.connection() is not parent_connection
            os.write(write, b"ok" if fresh else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(child, 0)
    assert answer == b"ok"
    # The parent's pooled connection survived the child (a closed PostgreSQL backend,
    # or a lost SQLite file lock, would show here).
    assert client.get("/healthz").status_code == 200
    assert used[-1] is parent_connection
    if not is_sqlite():
        assert backend_pid(parent_connection) == backend_pid(used[0])
