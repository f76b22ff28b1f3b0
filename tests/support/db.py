"""Reading and writing the database directly: sessions, credentials, the throttle,
recovery codes, remembered devices, audit rows, settings and the schema itself."""

from __future__ import annotations

import datetime as dt
import os
import time

import peewee
import pytest

from standalone_mfa.core import audit, crypto
from standalone_mfa.core.db import db
from standalone_mfa.core.models import (
    ALL_MODELS,
    AuditEvent,
    MfaThrottle,
    RecoveryCode,
    RememberedDevice,
    TotpCredential,
    User,
    WebSession,
)
from standalone_mfa.directory import settings
from standalone_mfa.factors import recovery, throttle
from support.app import START


def audit_events(app, event=None) -> list[AuditEvent]:
    """The audit rows, oldest first (only `event`'s if given)."""
    with app.app_context():
        query = AuditEvent.select().order_by(AuditEvent.id)
        if event is not None:
            query = query.where(AuditEvent.event == event)
        return list(query)


def sessions_of(app, username) -> list[WebSession]:
    with app.app_context():
        return list(WebSession.select().join(User).where(User.username == username))


def failures(app, username="alice") -> int:
    """How many wrong codes in a row the throttle holds for `username`."""
    with app.app_context():
        return throttle.failures(User.get(User.username == username))


def set_code_failures(app, username, failures):
    """As if `username` had entered `failures` wrong codes in a row."""
    with app.app_context():
        who = User.get(User.username == username)
        MfaThrottle.delete().where(MfaThrottle.user == who).execute()
        MfaThrottle.create(user=who, failures=failures, last_failure_at=START)


def credential_secret(app, username) -> str | None:
    with app.app_context():
        credential = (
            TotpCredential.select().join(User).where(User.username == username).get_or_none()
        )
        return crypto.decrypt(credential.secret_encrypted) if credential else None


def mfa_method(app) -> str:
    with app.app_context():
        return settings.mfa_method()


def credential_count(app) -> int:
    with app.app_context():
        return TotpCredential.select().count()


def bound_sessions(app) -> list[tuple[str, str]]:
    """(username, state) of every session bound to a user."""
    with app.app_context():
        query = WebSession.select(WebSession, User).join(User)
        return sorted((s.user.username, s.state) for s in query)


def raise_on_audit(monkeypatch, event_name):
    """Make the audit write of one event fail as a locked or lost database would."""
    real_record = audit.record

    def record(event, *args, **kwargs):
        if event == event_name:
            raise peewee.OperationalError("database is locked")
        return real_record(event, *args, **kwargs)

    monkeypatch.setattr(audit, "record", record)


def table_dump(app, model) -> str:
    """Every column of every row of a table, as one string (raw SQL: nothing hidden)."""
    with app.app_context():
        cursor = db.execute_sql(f'SELECT * FROM "{model._meta.table_name}"')  # noqa: S608
        return "\n".join(repr(row) for row in cursor.fetchall())


def database_dump(app) -> str:
    return "\n".join(table_dump(app, model) for model in ALL_MODELS)


def recovery_hashes(app, username) -> set[str]:
    with app.app_context():
        rows = RecoveryCode.select().join(User).where(User.username == username)
        return {row.code_hash for row in rows}


def codes_left(app, username) -> int:
    with app.app_context():
        return recovery.remaining(User.get(User.username == username))


def devices_of(app, username) -> list[RememberedDevice]:
    with app.app_context():
        return list(RememberedDevice.select().join(User).where(User.username == username))


def audit_rows(app, event=None) -> list[tuple]:
    """`audit_events` as (event, outcome, username, actor, detail) tuples."""
    return [(e.event, e.outcome, e.username, e.actor, e.detail) for e in audit_events(app, event)]


def credential(app, username) -> TotpCredential | None:
    """`username`'s TOTP credential row (None without one)."""
    with app.app_context():
        return TotpCredential.select().join(User).where(User.username == username).get_or_none()


def set_remember_days(app, days: int) -> None:
    with app.app_context():
        settings.set_remember_days(days, actor="test")


def set_method(app, method):
    with app.app_context():
        settings.set_mfa_method(method, actor="test")


def user(app, username):
    with app.app_context():
        return User.get_or_none(User.username == username)


def state_snapshot(app):
    """Everything an action on a user could change."""
    with app.app_context():
        return (
            sorted((u.username, u.is_admin) for u in User.select()),
            TotpCredential.select().count(),
            sorted((t.user_id, t.failures) for t in MfaThrottle.select()),
            WebSession.select().where(WebSession.user.is_null(False)).count(),
        )


def add_events(app, clock, specs):
    """Audit events at given offsets (seconds) from now, as (event, user, actor)."""
    start = clock.now()
    with app.app_context():
        for offset, event, username, actor in specs:
            clock.set(start + dt.timedelta(seconds=offset))
            audit.record(event, "ok", username=username, actor=actor)
    clock.set(start)


def describe_schema(database: peewee.Database, schema: str | None = None) -> dict:
    """Every table's columns (name, type, nullability, primary key, default), indexes
    (name, columns, unique), and foreign keys (column, target, ON DELETE), as the
    engine reports them: two databases with equal descriptions have the same schema."""
    found = {}
    sqlite = isinstance(database, peewee.SqliteDatabase)
    for table in database.get_tables(schema=schema):
        columns = {
            (c.name, c.data_type.lower(), c.null, c.primary_key, c.default)
            for c in database.get_columns(table, schema=schema)
        }
        indexes = {
            (i.name, tuple(i.columns), i.unique) for i in database.get_indexes(table, schema)
        }
        if sqlite:
            rows = database.execute_sql(f'PRAGMA foreign_key_list("{table}")').fetchall()
            keys = {(r[3], r[2], r[4], r[6].upper()) for r in rows}
        else:
            rows = database.execute_sql(
                """SELECT kcu.column_name, ccu.table_name, ccu.column_name, rc.delete_rule
                FROM information_schema.referential_constraints rc
                JOIN information_schema.key_column_usage kcu
                  ON kcu.constraint_name = rc.constraint_name
                 AND kcu.constraint_schema = rc.constraint_schema
                JOIN information_schema.constraint_column_usage ccu
                  ON ccu.constraint_name = rc.constraint_name
                 AND ccu.constraint_schema = rc.constraint_schema
                WHERE kcu.table_name = %s AND kcu.table_schema = %s""",
                (table, schema or "public"),
            ).fetchall()
            keys = {tuple(r) for r in rows}
        found[table] = {"columns": columns, "indexes": indexes, "foreign_keys": keys}
    return found


# The run's PostgreSQL database, when there is one (`make test` in CI sets it): what
# several instances share, and where a backend can be killed under the app.
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL") or ""
needs_postgresql = pytest.mark.skipif(
    not POSTGRES_URL.startswith("postgres"),
    reason="needs PostgreSQL: set TEST_DATABASE_URL=postgresql://... (make test in CI does)",
)


def terminate_backend(pid: int) -> None:
    """What a database restart or failover does to a connection of the app's; returns
    once the backend is gone (the signal is asynchronous)."""
    import psycopg2

    admin = psycopg2.connect(POSTGRES_URL)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert cursor.fetchone() == (True,)
            for _ in range(200):
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                if cursor.fetchone() == (0,):
                    return
                time.sleep(0.05)
    finally:
        admin.close()
