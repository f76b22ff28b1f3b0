"""core/db: a prepared statement of the hot path answers as Peewee would, built once per
database. (Upgrading older databases: tests/ops/test_migrations.py.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from support.app import test_config

from standalone_mfa import create_app
from standalone_mfa.core.db import db
from standalone_mfa.core.models import User

# --- prepared statements of the hot path


def test_a_prepared_statement_answers_as_peewee_does_and_is_built_once(app):
    from standalone_mfa.core.db import Prepared
    from standalone_mfa.core.models import User

    built = []

    def build(slot):
        built.append(1)
        return User.select().where(User.username == slot("name")).order_by(User.id)

    by_name = Prepared(build)
    with app.app_context():
        for name in ("alice", "bob", "nobody", "alice"):
            expected = list(User.select().where(User.username == name))
            assert [u.id for u in by_name.run(name=name)] == [u.id for u in expected]
        assert len(built) == 1  # the SQL was made once, the values changed
        rename = Prepared(
            lambda slot: User.update(username=slot("new")).where(User.username == slot("old"))
        )
        assert rename.run(new="alicia", old="alice") == 1
        assert rename.run(new="alicia", old="alice") == 0  # the row count, as Peewee's
        assert User.get_or_none(User.username == "alicia") is not None


def test_a_prepared_join_makes_the_same_models_on_every_run(app):
    """What the cursor wrapper works out from a joined query's columns is kept from the
    first run that had a row: later runs (other values, no row, a row again) still give
    each model its own fields, converted, and None for a missing outer join."""
    from peewee import JOIN

    from standalone_mfa.core.db import Prepared
    from standalone_mfa.core.models import TotpCredential, User

    def build(slot):
        return (
            User.select(User, TotpCredential)
            .join(
                TotpCredential, JOIN.LEFT_OUTER, on=(TotpCredential.user == User.id), attr="cred"
            )
            .where(User.username == slot("name"))
        )

    joined = Prepared(build)
    with app.app_context():
        user = User.get(User.username == "bob")
        TotpCredential.create(
            user=user, secret_encrypted="x", algorithm="SHA1", digits=6, period=30,
            confirmed_at=user.created_at, last_used_step=7,
        )  # fmt: skip
        for name in ("nobody", "bob", "alice", "nobody", "bob", "alice"):
            expected = list(build(lambda _n, _f=None, name=name: name))
            found = joined.run(name=name)
            assert [(u.id, u.username, u.created_at) for u in found] == [
                (u.id, u.username, u.created_at) for u in expected
            ]
            for got, want in zip(found, expected, strict=True):
                if want.cred is None:
                    assert got.cred is None
                else:
                    assert (got.cred.id, got.cred.last_used_step) == (want.cred.id, 7)


def test_a_slot_with_a_field_converts_its_value_like_the_field(app, clock):
    from standalone_mfa.core.db import Prepared
    from standalone_mfa.core.models import AuditEvent

    insert = Prepared(
        lambda slot: AuditEvent.insert(
            at=slot("at", AuditEvent.at), event=slot("event"), outcome=slot("outcome")
        )
    )
    with app.app_context():
        new_id = insert.run(at=clock.now(), event="test", outcome="ok")
        row = AuditEvent.get_by_id(new_id)
        assert (row.at, row.event, row.outcome) == (clock.now(), "test", "ok")


def test_a_prepared_statement_is_built_again_for_another_database(tmp_path, clock):
    from support.app import make_app

    from standalone_mfa.core.db import Prepared, db
    from standalone_mfa.core.models import User

    count = Prepared(lambda slot: User.select().where(User.is_admin == slot("admin")))
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    first = make_app(tmp_path / "one", clock)
    with first.app_context():
        assert len(count.run(admin=True)) == 1
        db.close()
    second = make_app(tmp_path / "two", clock)
    with second.app_context():
        User.update(is_admin=True).execute()
        assert len(count.run(admin=True)) == 3  # this database's rows, not the first's


# --- SC-70: the live database's files are the owner's alone


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask():
    old = os.umask(0o022)  # files 0644, folders 0755, unless the code says otherwise
    yield
    os.umask(old)


def _write_through(app) -> Path:
    """Write to the app's database (so SQLite makes its -wal and -shm); its file."""
    with app.app_context():
        db.connect(reuse_if_open=True)
        db.execute_sql("CREATE TABLE IF NOT EXISTS probe (x)")
        db.execute_sql("INSERT INTO probe VALUES (1)")
        path = Path(db.obj.database)
        db.close()
    return path


def test_sc70_a_new_sqlite_database_its_wal_and_shm_are_0600_in_a_0700_instance(
    tmp_path, clock, usual_umask
):
    instance = tmp_path / "instance"
    url = f"sqlite:///{instance}/standalone_mfa.sqlite3"
    app = create_app(test_config(tmp_path, clock, DATABASE_URL=url), instance_path=str(instance))
    path = _write_through(app)
    assert path.parent == instance and _mode(instance) == 0o700
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        assert _mode(path.with_name(name)) == 0o600, name


def test_sc70_an_existing_database_and_instance_are_made_private_at_start(
    tmp_path, clock, usual_umask
):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    path = instance / "old.sqlite3"
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        path.with_name(name).touch(mode=0o644)
    url = f"sqlite:///{path}"
    app = create_app(test_config(tmp_path, clock, DATABASE_URL=url), instance_path=str(instance))
    assert _mode(instance) == 0o700
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        assert _mode(path.with_name(name)) == 0o600, name
    _write_through(app)
    assert _mode(path) == 0o600


def test_sc70_make_setup_writes_its_keys_in_a_0700_folder(tmp_path, usual_umask):
    from standalone_mfa.instance import write_config

    made, kept = tmp_path / "made" / "instance", tmp_path / "kept"
    kept.mkdir(mode=0o755)
    for folder in (made, kept):
        assert write_config(folder / "config.py")
        assert _mode(folder) == 0o700 and _mode(folder / "config.py") == 0o600


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="needs PostgreSQL: set TEST_DATABASE_URL=postgresql://... (CI does)",
)
def test_on_postgresql_a_prepared_select_is_prepared_once_per_connection(app):
    """Outside a transaction a prepared SELECT is PREPAREd on the server once per
    connection, then EXECUTEd; one the server lost (DEALLOCATE ALL, as a pooler may do)
    is prepared again, and the answer is the same; inside a transaction it is sent as
    plain SQL (an error there would abort the transaction)."""
    from standalone_mfa.core.db import Prepared, db
    from standalone_mfa.core.models import User

    by_name = Prepared(lambda slot: User.select().where(User.username == slot("name")))
    name = f"smfa_{by_name.number}"

    def prepared_here():
        cursor = db.execute_sql("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}

    with app.app_context():
        for _ in range(3):
            assert [u.username for u in by_name.run(name="alice")] == ["alice"]
        assert name in prepared_here()
        db.execute_sql("DEALLOCATE ALL")
        assert [u.username for u in by_name.run(name="bob")] == ["bob"]
        assert name in prepared_here()
        db.execute_sql("DEALLOCATE ALL")
        with db.atomic():
            assert [u.username for u in by_name.run(name="bob")] == ["bob"]
            assert name not in prepared_here()


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="needs PostgreSQL: set TEST_DATABASE_URL=postgresql://... (CI does)",
)
def test_on_postgresql_a_server_that_keeps_losing_them_gets_plain_sql(app, monkeypatch):
    """Behind a pooler in transaction mode each statement may reach another backend, so
    a PREPAREd statement is gone at the next one: the answer is still right, and the
    process stops preparing (no PREPARE sent again)."""
    from standalone_mfa.core.db import Prepared, db

    by_name = Prepared(lambda slot: User.select().where(User.username == slot("name")))
    sent = []
    with app.app_context():
        database = db.obj
        plain = type(database).execute_sql

        def lossy(self, sql, params=None, *args, **kwargs):
            sent.append(sql.split()[0])
            cursor = plain(self, sql, params, *args, **kwargs)
            if sql.startswith("PREPARE"):
                plain(self, "DEALLOCATE ALL")  # another backend takes the next statement
            return cursor

        monkeypatch.setattr(type(database), "execute_sql", lossy)
        assert [u.username for u in by_name.run(name="alice")] == ["alice"]
        assert sent.count("PREPARE") == 2 and sent[-1] == "SELECT"
        sent.clear()
        assert [u.username for u in by_name.run(name="bob")] == ["bob"]
        assert sent == ["SELECT"]
