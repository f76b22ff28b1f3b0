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
