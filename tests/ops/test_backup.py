"""ops/backup and `flask --app standalone_mfa backup PATH`: a consistent copy of the
SQLite database while a writer is busy, verified, owner-only from its first byte, never
over an existing file without --force, and restorable; on PostgreSQL, pg_dump."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

import pytest
from support.app import PASSWORD
from support.client import Browser, cli, signed_in_as
from support.pages import location

from standalone_mfa.core.db import db, is_sqlite
from standalone_mfa.ops import backup

sqlite_only = pytest.mark.skipif(
    bool(os.environ.get("TEST_DATABASE_URL")), reason="SQLite's backup (this pass: PostgreSQL)"
)


def database_file(app) -> str:
    with app.app_context():
        return db.obj.database


def rows(path, table="audit_event") -> int:
    with sqlite3.connect(path) as copy:
        return copy.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608


class BusyWriter(threading.Thread):
    """Commits an audit row after another on its own connection, until stopped."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.stop = threading.Event()
        self.written = 0
        self.started_writing = threading.Event()

    def run(self):
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            while not self.stop.is_set():
                with connection:
                    connection.execute(
                        "INSERT INTO audit_event (at, event, outcome) "
                        "VALUES ('2026-11-28 12:00:00', 'busy_writer', 'ok')"
                    )
                self.written += 1
                if self.written >= 50:
                    self.started_writing.set()
        finally:
            connection.close()


@sqlite_only
def test_backup_while_a_writer_is_busy_is_consistent_and_verified(app, tmp_path):
    source = database_file(app)
    writer = BusyWriter(source)
    writer.start()
    try:
        assert writer.started_writing.wait(30)
        committed_before = rows(source)
        target = tmp_path / "mfa-2026-12-01.sqlite3"
        result = cli(app, "backup", str(target))
        assert writer.is_alive()  # it wrote all along
    finally:
        writer.stop.set()
        writer.join()
    assert result.exit_code == 0, result.output
    assert "integrity check: ok" in result.output
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        users = {name for (name,) in copy.execute('SELECT username FROM "user"')}
    assert users == {"alice", "bob", "root"}
    assert rows(target) >= committed_before  # everything committed before it started
    assert rows(target) <= rows(source)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


@sqlite_only
def test_the_copy_is_owner_only_from_its_first_byte(app, tmp_path, monkeypatch):
    """Even with a umask of 000: the file exists with mode 0600 before SQLite writes."""
    modes = []
    real_connect = sqlite3.connect

    def connect(path, *args, **kwargs):
        if ".partial" in str(path):
            modes.append(stat.S_IMODE(os.stat(path).st_mode))
        return real_connect(path, *args, **kwargs)

    monkeypatch.setattr(backup.sqlite3, "connect", connect)
    old_umask = os.umask(0)
    try:
        assert cli(app, "backup", str(tmp_path / "copy.sqlite3")).exit_code == 0
    finally:
        os.umask(old_umask)
    assert modes == [0o600]
    assert stat.S_IMODE(os.stat(tmp_path / "copy.sqlite3").st_mode) == 0o600


@sqlite_only
def test_backup_never_replaces_a_file_without_force(app, tmp_path):
    target = tmp_path / "existing.sqlite3"
    target.write_text("an older backup")
    result = cli(app, "backup", str(target))
    assert result.exit_code == 1
    assert "exists" in result.output and "--force" in result.output
    assert target.read_text() == "an older backup"

    forced = cli(app, "backup", "--force", str(target))
    assert forced.exit_code == 0, forced.output
    assert rows(target, "user") == 3
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


@sqlite_only
def test_backup_refuses_clearly_and_writes_nothing(app, tmp_path):
    missing = cli(app, "backup", str(tmp_path / "no" / "such" / "folder.sqlite3"))
    assert missing.exit_code != 0
    assert "does not exist" in missing.output or "Invalid value" in missing.output
    itself = cli(app, "backup", "--force", database_file(app))
    assert itself.exit_code == 1
    assert "cannot replace the database itself" in itself.output
    assert rows(database_file(app), "user") == 3


@sqlite_only
def test_a_restored_backup_serves_as_before(app, clock, tmp_path):
    target = tmp_path / "backup.sqlite3"
    assert cli(app, "backup", str(target)).exit_code == 0
    with app.app_context():
        from standalone_mfa.core.models import User

        User.delete().where(User.username == "bob").execute()  # the mistake to undo
        db.obj.close_all()  # the app is stopped for the restore (docs/operating/backups.md)
    source = database_file(app)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(source + suffix):
            os.unlink(source + suffix)
    os.replace(target, source)
    browser = Browser(app, clock)
    assert location(browser.login("bob", PASSWORD)) == "/"
    assert signed_in_as(browser, "bob")


def test_backup_on_postgresql_says_to_use_pg_dump(app, tmp_path):
    if is_sqlite():
        pytest.skip("the PostgreSQL pass")
    target = tmp_path / "dump.sqlite3"
    result = cli(app, "backup", str(target))
    assert result.exit_code == 1
    assert "pg_dump" in result.output and "MFA_ENCRYPTION_KEYS" in result.output
    assert not target.exists()
