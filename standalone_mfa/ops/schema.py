"""The database schema's version: which migrations (`standalone_mfa/migrations/`, run
by peewee-migrate) are applied, applying the pending ones, and telling the app whether
its database matches its code (SC-38).

`upgrade()` is the only way the schema changes, and several instances starting
together run each migration once. On PostgreSQL it holds an advisory lock for the
whole run: the others wait, then find nothing to do. On SQLite each step takes the
write lock and reads the history under it: upgraders may take turns, step by step,
and none runs a migration another has applied.
Each migration runs in its own transaction with its history row: one that fails rolls
back and leaves the database at the previous version, still usable by the old code.

Databases made before migrations existed (the first release and those after it ran
`init-db`: tables, no history) are recognised by their tables and columns, and the
migrations whose schema they already hold are recorded as applied (stamped), not run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import peewee
from peewee_migrate import Migrator, Router
from peewee_migrate.models import MIGRATE_TABLE, MigrateHistory

from ..core.clock import now
from ..core.db import db, is_sqlite, write_transaction

logger = logging.getLogger("standalone_mfa.schema")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
HISTORY_TABLE = MIGRATE_TABLE  # peewee-migrate's own name, "migratehistory"

# The migrations that releases before the history table made with `init-db`. Only
# these are ever stamped: every database upgraded since has its history, so a later
# migration is always run, never guessed from the tables.
LEGACY_MIGRATIONS = (
    "001_first_release",
    "002_trusted_browsers_address_throttle",
    "003_user_group",
)

# pg_advisory_lock's key: any fixed 64-bit number, the same for every instance.
ADVISORY_LOCK_KEY = 0x534D_4641_0001  # "SMFA", 1

UPGRADE_COMMAND = "flask --app standalone_mfa db upgrade"


class SchemaError(RuntimeError):
    """The database cannot be upgraded by this code (newer, or not recognised)."""


class MigrationFailed(SchemaError):
    """A migration failed and was rolled back; those before it (`ran`) stay applied."""

    def __init__(self, name: str, ran: list[str], current: str | None, cause: Exception):
        self.name, self.ran, self.current = name, ran, current
        super().__init__(
            f"Migration {name} failed and was rolled back ({type(cause).__name__}: {cause}). "
            f"The database is at {current or 'no version'}, as before it; fix the cause "
            f"and run `{UPGRADE_COMMAND}` again."
        )


@dataclasses.dataclass(frozen=True)
class Status:
    """The migrations this code knows and those the database has applied, in order."""

    known: tuple[str, ...]
    applied: tuple[str, ...]
    has_tables: bool  # any of our tables, with or without a history

    @property
    def current(self) -> str | None:
        return self.applied[-1] if self.applied else None

    @property
    def pending(self) -> list[str]:
        return [name for name in self.known if name not in self.applied]

    @property
    def unknown(self) -> list[str]:
        """Applied migrations this code does not have: the database is newer."""
        return [name for name in self.applied if name not in self.known]

    @property
    def matches(self) -> bool:
        return self.applied == self.known

    @property
    def newer(self) -> bool:
        return bool(self.unknown)

    def problem(self) -> str | None:
        """One line for the operator: why the app will not serve, and what to run."""
        if self.matches:
            return None
        if self.newer:
            return (
                f"The database schema is newer than this code (it has {', '.join(self.unknown)}"
                f"); run the newer release, or restore a backup made for this one. "
                "The app refuses to serve until they match."
            )
        if not self.applied and not self.has_tables:
            return (
                "The database is empty: run `flask --app standalone_mfa init-db` (the schema"
                " and a first administrator). The app refuses to serve until then."
            )
        if not self.pending:  # the same migrations, recorded in another order
            return (
                "The database recorded this code's migrations in another order ("
                f"{', '.join(self.applied)}): its schema may not be the one this code "
                "expects. Restore a backup made for this release. "
                "The app refuses to serve until they match."
            )
        return (
            f"The database schema is older than this code ({len(self.pending)} migration(s) "
            f"pending, first {self.pending[0]}): run `{UPGRADE_COMMAND}`. "
            "The app refuses to serve until then."
        )


def router() -> Router:
    return Router(db, migrate_dir=MIGRATIONS_DIR, migrate_table=HISTORY_TABLE, logger=logger)


def known_migrations() -> list[str]:
    """The migration files shipped with this code, in the order they apply."""
    return router().todo


def _tables() -> set[str]:
    return set(db.get_tables())


def _history_model() -> type[MigrateHistory]:
    meta = MigrateHistory._meta
    meta.database = db
    meta.table_name = HISTORY_TABLE
    return MigrateHistory


def _applied(tables: set[str]) -> list[str]:
    if HISTORY_TABLE not in tables:
        return []
    history = _history_model()
    return [row.name for row in history.select(history.name).order_by(history.id)]


def status() -> Status:
    """Read the database's version (two short queries; changes nothing)."""
    tables = _tables()
    return Status(
        known=tuple(known_migrations()),
        applied=tuple(_applied(tables)),
        has_tables=bool(tables - {HISTORY_TABLE}),
    )


def history() -> list[tuple[str, object]]:
    """(name, when applied) of every applied migration, oldest first."""
    if HISTORY_TABLE not in _tables():
        return []
    model = _history_model()
    return [(row.name, row.migrated_at) for row in model.select().order_by(model.id)]


def _replay(migrator: Migrator, names) -> Migrator:
    """Bring `migrator.orm` to the models as they are after `names`, running nothing
    (what peewee-migrate calls a fake run): a migration only queues operations."""
    source = router()
    for name in names:
        migrate, _ = source.read(name)
        migrate(migrator, db.obj, fake=True)
        migrator.__ops__ = []
    return migrator


def _holds(models, tables: set[str]) -> bool:
    """Every table of `models` exists with (at least) every one of its columns."""
    for model in models:
        table = model._meta.table_name
        if table not in tables:
            return False
        present = {column.name for column in db.get_columns(table)}
        if not {field.column_name for field in model._meta.sorted_fields} <= present:
            return False
    return True


def _stamp_legacy(known: list[str]) -> list[str]:
    """In a database with our tables and no history: record as applied the legacy
    migrations whose schema it already holds. Runs inside the upgrade's lock."""
    tables = _tables()
    if _applied(tables) or not tables - {HISTORY_TABLE}:
        return []
    migrator = Migrator(db)
    stamped = []
    for name in (n for n in LEGACY_MIGRATIONS if n in known):
        _replay(migrator, [name])
        if not _holds(list(migrator.orm), tables):
            break
        stamped.append(name)
    if not stamped:
        raise SchemaError(
            "The database has tables but not those of any release of Standalone MFA "
            f"({', '.join(sorted(tables))}); check DATABASE_URL. Nothing was changed."
        )
    history = _history_model()
    history.create_table(safe=True)
    for name in stamped:
        history.create(name=name, migrated_at=now())
    logger.info("Recognised a database made before migrations: stamped %s", ", ".join(stamped))
    return stamped


@contextlib.contextmanager
def _upgrade_lock():
    """One upgrader at a time on PostgreSQL: a session-level advisory lock, released
    when the connection ends even if this process dies. SQLite needs none here: every
    step takes the write lock (BEGIN IMMEDIATE) and reads the history under it."""
    if is_sqlite():
        yield
        return
    db.connect(reuse_if_open=True)
    db.execute_sql("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        yield
    finally:
        with contextlib.suppress(peewee.DatabaseError):
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


@contextlib.contextmanager
def _foreign_keys_deferred():
    """SQLite: foreign keys off while migrating (its documented way to change a table):
    rebuilding a table, as a column change does there, drops the old one, and with the
    keys on that would delete every row that points at it (ON DELETE CASCADE). Each
    step checks the keys before it commits instead. The pragma cannot change inside a
    transaction, hence here, around them."""
    if not is_sqlite():
        yield
        return
    db.connect(reuse_if_open=True)
    db.pragma("foreign_keys", 0, permanent=False)
    try:
        yield
    finally:
        db.pragma("foreign_keys", 1, permanent=False)


def _check_foreign_keys() -> None:
    if is_sqlite():
        broken = db.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise SchemaError(f"The migration left {len(broken)} broken foreign keys.")


def upgrade(target: str | None = None) -> list[str]:
    """Apply every pending migration in order (up to `target` if given), each in its
    own transaction; the names it ran (stamped ones are not counted). Raises
    SchemaError, changing nothing, for a database newer than this code."""
    known = known_migrations()
    if target is not None and target not in known:
        raise SchemaError(f"No migration named {target!r}.")
    ran: list[str] = []
    with _upgrade_lock(), _foreign_keys_deferred():
        with write_transaction():
            _stamp_legacy(known)
        while True:
            with write_transaction():
                # Read under the lock: another instance may have migrated meanwhile.
                applied = _applied(_tables())
                unknown = [name for name in applied if name not in known]
                if unknown:
                    raise SchemaError(Status(tuple(known), tuple(applied), True).problem())
                pending = [name for name in known if name not in applied]
                if not pending or (target is not None and target in applied):
                    return ran
                name = pending[0]
                try:
                    with write_transaction():  # a savepoint: what fails leaves no trace
                        _apply(name, applied)
                        _check_foreign_keys()
                except Exception as exc:
                    logger.exception("Migration %s failed; rolled back", name)
                    current = applied[-1] if applied else None
                    raise MigrationFailed(name, ran, current, exc) from exc
            ran.append(name)
            logger.info("Applied migration %s", name)


def _apply(name: str, applied: list[str]) -> None:
    """Run one migration and record it, in the caller's transaction."""
    migrator = _replay(Migrator(db), applied)
    migrate, _ = router().read(name)
    migrate(migrator, db.obj, fake=False)
    migrator()
    history = _history_model()
    history.create_table(safe=True)
    history.create(name=name, migrated_at=now())
