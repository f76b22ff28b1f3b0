"""SQLite's write lock (`write_transaction`, `BEGIN IMMEDIATE`): a writer that finds it
taken looks again after pauses of 50 µs growing to 1 ms, not after SQLite's busy
handler's 1, 2, 5, 10 … ms sleeps; it still waits DATABASE_TIMEOUT at most and then
fails as a locked database does (503, see tests/web/test_errors.py); every other
statement keeps SQLite's busy timeout. Pooled or not, whatever TEST_DATABASE_URL says."""

from __future__ import annotations

import sqlite3
import threading
import time

import peewee
import pytest
from support.app import make_app

from standalone_mfa.core import db as db_module
from standalone_mfa.core.db import db, write_transaction
from standalone_mfa.core.models import Setting


@pytest.fixture(params=[True, False], ids=["pooled", "no-pool"])
def sqlite_app(request, tmp_path, clock):
    def made(**overrides):
        url = f"sqlite:///{tmp_path}/lock.sqlite3"
        return make_app(
            tmp_path, clock, DATABASE_URL=url, DATABASE_POOL=request.param, **overrides
        )

    return made


def hold_write_lock(app) -> sqlite3.Connection:
    """Another process's writer, as far as SQLite can tell: its own connection."""
    path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
    locker = sqlite3.connect(path, check_same_thread=False)
    locker.isolation_level = None
    locker.execute("BEGIN IMMEDIATE")
    return locker


@pytest.fixture
def pauses(monkeypatch):
    """Every pause the writer takes, each still taken (short) so the loop really waits."""
    taken, real_sleep = [], time.sleep

    def sleep(seconds):
        taken.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(db_module.time, "sleep", sleep)
    return taken


def busy_timeout() -> int:
    return db.execute_sql("PRAGMA busy_timeout").fetchone()[0]


def test_a_writer_gets_the_lock_soon_after_it_is_freed_polling_in_short_pauses(sqlite_app, pauses):
    app = sqlite_app()
    locker = hold_write_lock(app)
    freed = threading.Timer(0.2, lambda: locker.execute("ROLLBACK"))
    with app.app_context():
        started = time.monotonic()
        freed.start()
        with write_transaction():
            Setting.insert(key="write_lock_test", value="1").execute()
        waited = time.monotonic() - started
        assert Setting.get(Setting.key == "write_lock_test").value == "1"
        # The other statements' busy timeout is back (DATABASE_TIMEOUT, in ms).
        assert busy_timeout() == int(app.config["DATABASE_TIMEOUT"] * 1000)
    freed.join()
    locker.close()
    assert waited >= 0.2
    assert pauses[0] == db_module.WriteLockPolling.FIRST_PAUSE
    assert max(pauses) == db_module.WriteLockPolling.LONGEST_PAUSE
    assert pauses == sorted(pauses)  # growing, never back to SQLite's longer sleeps


def test_a_writer_gives_up_after_the_database_timeout_and_changes_nothing(sqlite_app, pauses):
    app = sqlite_app(DATABASE_TIMEOUT=0.3)
    locker = hold_write_lock(app)
    try:
        with app.app_context():
            started = time.monotonic()
            with pytest.raises(peewee.OperationalError, match="locked"), write_transaction():
                Setting.insert(key="write_lock_test", value="1").execute()
            waited = time.monotonic() - started
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert 0.25 <= waited < 5
    with app.app_context():
        assert busy_timeout() == 300
        assert not Setting.select().where(Setting.key == "write_lock_test").exists()
        assert not db.in_transaction()


def test_a_read_or_a_plain_write_keeps_sqlites_own_busy_timeout(sqlite_app, pauses):
    app = sqlite_app()
    with app.app_context():
        with db.atomic():  # a deferred transaction: no polling
            Setting.insert(key="write_lock_test", value="1").execute()
        assert busy_timeout() == int(app.config["DATABASE_TIMEOUT"] * 1000)
    assert pauses == []
