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


def create_tables() -> None:
    from . import models

    with db.connection_context():
        db.create_tables(models.ALL_MODELS, safe=True)
        add_missing_columns(models.ALL_MODELS)


def add_missing_columns(models) -> list[str]:
    """Add the nullable columns a newer version gave an existing table (such as
    `web_session.step_up_at`), so `init-db` upgrades a database made by an older one.
    Only nullable columns: anything else needs a real migration."""
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = SchemaMigrator.from_database(db.obj)
    added = []
    for model in models:
        table = model._meta.table_name
        present = {column.name for column in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in present and field.null:
                migrate(migrator.add_column(table, field.column_name, field))
                added.append(f"{table}.{field.column_name}")
    return added
