"""The database connection: one Peewee proxy bound at app start from `DATABASE_URL`.

SQLite runs with WAL, a busy timeout and foreign keys; any `playhouse.db_url` URL
works, PostgreSQL included. Errors that mean "the database is not available right
now" are grouped in `UNAVAILABLE` so the app can answer 503 instead of a traceback.
"""

from __future__ import annotations

import contextlib

import peewee
from playhouse import db_url

db = peewee.DatabaseProxy()

# A locked SQLite file or an unreachable server: the request cannot be served now.
UNAVAILABLE = (peewee.OperationalError, peewee.InterfaceError)

SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("foreign_keys", 1),
    ("synchronous", "normal"),
)


def is_sqlite(database: peewee.Database | None = None) -> bool:
    return isinstance(database or db.obj, peewee.SqliteDatabase)


def open_database(url: str, timeout: float = 10) -> peewee.Database:
    """Build (but do not connect) the database named by a Peewee URL.

    `timeout`: seconds a SQLite writer waits for the lock before giving up (503)."""
    if url.startswith("sqlite"):
        pragmas = (*SQLITE_PRAGMAS, ("busy_timeout", int(timeout * 1000)))
        return db_url.connect(url, pragmas=pragmas, timeout=timeout)
    return db_url.connect(url)


def init_app(app) -> None:
    db.initialize(open_database(app.config["DATABASE_URL"], app.config["DATABASE_TIMEOUT"]))
    app.teardown_appcontext(close_connection)


def close_connection(_exc=None) -> None:
    with contextlib.suppress(*UNAVAILABLE):
        if not db.is_closed():
            db.close()


def write_transaction():
    """A transaction that takes the write lock at once on SQLite.

    A deferred SQLite transaction that reads and then writes can fail with "database
    is locked" without waiting for the busy timeout; IMMEDIATE waits its turn instead.
    """
    if is_sqlite():
        return db.obj.atomic("IMMEDIATE")
    return db.atomic()
