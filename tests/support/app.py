"""The app under test: its configuration (a fast password hash, a frozen clock), a fresh
database migrated by the real upgrade, and the people every test starts with."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

from standalone_mfa import create_app
from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.db import db
from standalone_mfa.core.models import (
    ALL_MODELS,
)
from standalone_mfa.directory.users import create_user
from standalone_mfa.ops import schema

# 12:00:00 UTC: the start of a 30-second time step.
START = dt.datetime(2026, 11, 28, 12, 0, 0)


PASSWORD = "correct horse battery staple"


FAST_HASH = "pbkdf2:sha256:1000"  # tests only; the default (scrypt) is tested on its own


def database_url(tmp_path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path}/test.sqlite3"


def test_config(tmp_path, clock, **overrides) -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": database_url(tmp_path),
        "CLOCK": clock,
        "PASSWORD_HASH_METHOD": FAST_HASH,
        **overrides,
    }


test_config.__test__ = False  # a helper, not a test


_SQLITE_TEMPLATE: list[Path] = []  # the migrated SQLite file of this session, once built


_SERVER_READY: set[str] = set()  # server database URLs upgraded in this session


def migrated_sqlite_template() -> Path:
    """A SQLite file made by the real upgrade, once per session: each test copies it
    (a file that no connection holds open, so a plain copy is exact)."""
    if not _SQLITE_TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="smfa-schema-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "migrated.sqlite3"
        url = f"sqlite:///{path}"
        template = create_app(test_config(folder, FrozenClock(START), DATABASE_URL=url))
        with template.app_context():
            schema.upgrade()
            db.obj.close_all()  # the last connection checkpoints and removes the WAL
        assert not Path(f"{path}-wal").exists()
        _SQLITE_TEMPLATE.append(path)
    return _SQLITE_TEMPLATE[0]


def sqlite_file(url: str) -> Path | None:
    """The file a `sqlite:///` URL names (None for another database or `:memory:`)."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def drop_schema() -> None:
    """Every table, the migration history included: an empty database (in the app
    context of the app whose database it is)."""
    from standalone_mfa.core.db import is_sqlite

    cascade = "" if is_sqlite() else " CASCADE"
    if is_sqlite():  # a child table dropped after its parent would fail its key check
        db.execute_sql("PRAGMA foreign_keys = OFF")
    for table in db.get_tables():
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"{cascade}')
    if is_sqlite():
        db.execute_sql("PRAGMA foreign_keys = ON")
    _SERVER_READY.clear()


def fresh_schema() -> None:
    """An empty database, then the real upgrade (in an app context)."""
    drop_schema()
    schema.upgrade()
    _SERVER_READY.add(current_url())


def current_url() -> str:
    from flask import current_app

    return current_app.config["DATABASE_URL"]


def empty_server_tables() -> None:
    """Start a test from empty tables, never touching the schema or its history."""
    names = ", ".join(f'"{model._meta.table_name}"' for model in ALL_MODELS)
    db.execute_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


def make_app(tmp_path, clock, **overrides):
    """An app on a fresh database with users alice, bob and root (an admin)."""
    config = test_config(tmp_path, clock, **overrides)
    path = sqlite_file(config["DATABASE_URL"])
    if path is not None and not path.exists() and path.parent.is_dir():
        shutil.copyfile(migrated_sqlite_template(), path)
    app = create_app(config)
    with app.app_context():
        url = app.config["DATABASE_URL"]
        if not url.startswith("sqlite"):
            # A shared server database: upgraded once per session, then emptied.
            if url in _SERVER_READY:
                empty_server_tables()
            else:
                fresh_schema()
        elif path is None:
            schema.upgrade()  # in memory
        create_user("alice", PASSWORD)
        create_user("bob", PASSWORD)
        create_user("root", PASSWORD, is_admin=True)
    return app


NEW_PASSWORD = "a brand new passphrase for alice"
