"""ops/schema and the migrations (SC-38): a database made by an earlier release upgrades
with every row kept and its people still able to sign in; the migrations build exactly
the models' schema; two upgraders at once migrate once; a failed migration leaves the
previous version intact; the app refuses to serve a schema older or newer than its
code, and picks up an upgrade made while it runs. Both engines (the suite runs again
on PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time

import peewee
import pyotp
import pytest
from cryptography.fernet import Fernet
from support.app import (
    _SERVER_READY,
    FAST_HASH,
    PASSWORD,
    START,
    drop_schema,
    make_app,
    test_config,
)
from support.client import Browser, cli, signed_in_as
from support.db import describe_schema
from support.pages import location
from support.paths import ROOT
from support.servers import app_env
from werkzeug.security import generate_password_hash

from standalone_mfa import create_app
from standalone_mfa.core.db import db, is_sqlite, open_database
from standalone_mfa.core.models import ALL_MODELS, User
from standalone_mfa.ops import schema
from standalone_mfa.web import errors

KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="  # the legacy database's Fernet key
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # alice's authenticator
RECOVERY = "abcd-efgh-ijkl-mnop"  # one of alice's unused recovery codes
API_TOKEN = "legacy-api-token-0123456789abcdefghijklmnopqrstuv"  # root's
DEVICE_TOKEN = "legacy-device-token-0123456789abcdefghijklmnopqr"  # alice's browser
RELEASES = ("71f8405", "8909730")
# The migrations a database of each release already holds (stamped, not run).
HELD = {"71f8405": 1, "8909730": 2}


def sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def build_release(release: str) -> dict[str, list[tuple]]:
    """In the current app context: the tables as `release`'s init-db made them, and the
    rows a year of use would leave; every table's rows, to compare after the upgrade."""
    legacy = importlib.import_module(f"support.legacy_models_{release}")
    legacy.db.initialize(db.obj)
    models = legacy.ALL_MODELS
    db.create_tables(models, safe=True)  # what that release's init-db ran
    day = dt.timedelta(days=1)
    then = START - 30 * day
    password_hash = generate_password_hash(PASSWORD, method=FAST_HASH)
    alice = legacy.User.create(username="alice", password_hash=password_hash, created_at=then)
    legacy.User.create(username="bob", password_hash=password_hash, created_at=then)
    root = legacy.User.create(
        username="root", password_hash=password_hash, is_admin=True, created_at=then
    )
    credential = legacy.TotpCredential.create(
        user=alice,
        secret_encrypted=Fernet(KEY).encrypt(SECRET.encode()).decode(),
        confirmed_at=then,
        last_used_step=int(then.replace(tzinfo=dt.UTC).timestamp()) // 30,
    )
    for code in (RECOVERY, "qrst-uvwx-yz23-4567"):
        legacy.RecoveryCode.create(
            user=alice, code_hash=sha256(code.replace("-", "").upper()), created_at=then
        )
    legacy.RecoveryCode.create(
        user=alice, code_hash=sha256("USEDUSEDUSEDUSED"), created_at=then, used_at=then + day
    )
    legacy.RememberedDevice.create(
        user=alice,
        credential=credential,
        token_hash=sha256(DEVICE_TOKEN),
        password_fingerprint=sha256(password_hash),
        created_at=START - day,
        expires_at=START + 20 * day,
        ip="192.0.2.7",
        user_agent="Firefox",
    )
    legacy.MfaThrottle.create(user=root, failures=2, last_failure_at=then)
    legacy.PasswordThrottle.create(key=sha256("bob"), failures=3, last_failure_at=then)
    legacy.Setting.create(key="mfa_method", value="totp")
    legacy.Setting.create(key="remember_days", value="30")
    legacy.ApiToken.create(user=root, token_hash=sha256(API_TOKEN), created_at=then)
    for n in range(5):
        legacy.AuditEvent.create(
            at=then + n * day, event="login_password", outcome="ok", username="alice", ip="::1"
        )
    if hasattr(legacy, "TrustedBrowser"):
        legacy.TrustedBrowser.create(
            user=alice,
            token_hash=sha256("legacy-trusted-browser"),
            password_fingerprint=sha256(password_hash),
            created_at=then,
            last_used_at=then,
            expires_at=START + 60 * day,
        )
        legacy.AddressThrottle.create(key=sha256("192.0.2"), window_started_at=START)
    return rows_of(model._meta.table_name for model in models)


def rows_of(tables) -> dict[str, list[tuple]]:
    return {
        table: db.execute_sql(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()  # noqa: S608
        for table in tables
    }


def prefixes(after: dict, before: dict) -> dict[str, list[tuple]]:
    """`after`'s rows cut to the width of `before`'s (the columns a release had)."""
    width = {table: len(rows[0]) if rows else 0 for table, rows in before.items()}
    return {table: [row[: width[table]] for row in rows] for table, rows in after.items()}


@pytest.fixture(autouse=True)
def schema_rebuilt_afterwards():
    """These tests change the schema and its history: on a server database, the next
    test's make_app builds it again from empty (a SQLite file is the test's own)."""
    yield
    _SERVER_READY.clear()


@pytest.fixture
def legacy_app(tmp_path, clock):
    """An app on an empty database (no make_app: no schema), with the legacy key."""
    app = create_app(test_config(tmp_path, clock, MFA_ENCRYPTION_KEYS=[KEY]))
    with app.app_context():
        drop_schema()
    yield app
    with app.app_context():
        drop_schema()  # the next test's make_app builds the schema again
        db.close()


def reference_schema(tmp_path) -> dict:
    """The schema Peewee makes from today's models, in a scratch database (another
    SQLite file, or another schema of the same PostgreSQL database)."""
    if is_sqlite():
        scratch = peewee.SqliteDatabase(str(tmp_path / "reference.sqlite3"))
        with scratch.bind_ctx(ALL_MODELS):
            scratch.create_tables(ALL_MODELS)
            found = describe_schema(scratch)
        scratch.close()
        return found
    url = os.environ["TEST_DATABASE_URL"]
    admin = open_database(url, pool_size=0)
    admin.execute_sql("DROP SCHEMA IF EXISTS smfa_reference CASCADE")
    admin.execute_sql("CREATE SCHEMA smfa_reference")
    scratch = open_database(url, pool_size=0)
    scratch.connect_params["options"] = "-c search_path=smfa_reference"
    try:
        with scratch.bind_ctx(ALL_MODELS):
            scratch.create_tables(ALL_MODELS)
        return describe_schema(scratch, "smfa_reference")
    finally:
        scratch.close()
        admin.execute_sql("DROP SCHEMA smfa_reference CASCADE")
        admin.close()


def without_history(described: dict) -> dict:
    return {t: d for t, d in described.items() if t != schema.HISTORY_TABLE}


# --- upgrading the databases of earlier releases


@pytest.mark.parametrize("release", RELEASES)
def test_sc38_a_database_of_an_earlier_release_upgrades_with_every_row_kept(
    legacy_app, clock, tmp_path, release
):
    with legacy_app.app_context():
        before = build_release(release)
        assert schema.status().problem().startswith("The database schema is older")
    result = cli(legacy_app, "db", "upgrade")
    assert result.exit_code == 0, result.output
    known = schema.known_migrations()
    for name in known[HELD[release] :]:
        assert f"Applied {name}" in result.output
    for name in known[: HELD[release]]:
        assert f"Applied {name}" not in result.output  # recognised, not run again
    with legacy_app.app_context():
        # Every user, credential, code, device, token, row; later migrations only add
        # columns, after the release's own.
        assert prefixes(rows_of(before), before) == before
        assert schema.status().matches
        assert [name for name, _ in schema.history()] == known
        assert without_history(describe_schema(db.obj)) == reference_schema(tmp_path)
    assert cli(legacy_app, "db", "upgrade").output.count("Applied") == 0  # nothing left


@pytest.mark.parametrize("release", RELEASES)
def test_sc38_after_the_upgrade_people_sign_in_as_before(legacy_app, clock, release):
    with legacy_app.app_context():
        build_release(release)
    assert cli(legacy_app, "db", "upgrade").exit_code == 0

    # The password, then a code of the authenticator set up under the old release.
    browser = Browser(legacy_app, clock)
    assert location(browser.login("alice")) == "/mfa/verify"
    response = browser.post("/mfa/verify", {"code": pyotp.TOTP(SECRET).at(clock.now())})
    assert location(response) == "/"
    assert signed_in_as(browser, "alice")

    # A recovery code saved under the old release.
    other = Browser(legacy_app, clock)
    other.login("alice")
    other.get("/mfa/recovery")
    assert location(other.post("/mfa/recovery", {"recovery_code": RECOVERY})) == "/"
    assert signed_in_as(other, "alice")

    # The browser remembered under the old release skips the code.
    remembered = Browser(legacy_app, clock)
    remembered.client.set_cookie("smfa_device", DEVICE_TOKEN)
    assert location(remembered.login("alice")) == "/"
    assert signed_in_as(remembered, "alice")

    # The API token made under the old release.
    response = legacy_app.test_client().get(
        "/api/v1/users/alice/totp", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["enrolled"] is True


def test_sc38_tables_of_no_release_are_refused_untouched(legacy_app):
    with legacy_app.app_context():
        db.execute_sql('CREATE TABLE "user" (id INTEGER PRIMARY KEY, name TEXT)')
    result = cli(legacy_app, "db", "upgrade")
    assert result.exit_code == 1
    assert "not those of any release" in result.output
    with legacy_app.app_context():
        assert db.get_tables() == ["user"]  # nothing added, not even the history


# --- models and migrations cannot drift apart


def test_every_migration_on_an_empty_database_gives_exactly_the_models_schema(
    legacy_app, tmp_path
):
    with legacy_app.app_context():
        assert schema.upgrade() == schema.known_migrations()
        migrated = describe_schema(db.obj)
    assert set(migrated) == {m._meta.table_name for m in ALL_MODELS} | {schema.HISTORY_TABLE}
    assert without_history(migrated) == reference_schema(tmp_path)


def test_migration_001_is_exactly_the_first_release(legacy_app, tmp_path):
    """Stamping trusts that 001 made what 71f8405's init-db made: compare them."""
    with legacy_app.app_context():
        assert schema.upgrade(target="001_first_release") == ["001_first_release"]
        migrated = without_history(describe_schema(db.obj))
        drop_schema()
        build_release("71f8405")
        assert describe_schema(db.obj) == migrated


def test_the_migrations_ship_with_the_package():
    """setup.cfg's package data names them; an installed copy has them beside ops."""
    assert schema.MIGRATIONS_DIR.is_dir()
    assert schema.known_migrations()[: len(schema.LEGACY_MIGRATIONS)] == list(
        schema.LEGACY_MIGRATIONS
    )
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "migrations/*.py" in setup["options.package_data"]["standalone_mfa"]


# --- concurrency and failure


def hold_the_upgrade_lock():
    """Take what an upgrader takes first (the advisory lock; SQLite's write lock): a
    context manager the upgraders started meanwhile queue behind."""
    if is_sqlite():
        return db.obj.atomic("IMMEDIATE")
    return schema._upgrade_lock()


@pytest.mark.server
def test_sc38_two_processes_upgrading_at_once_migrate_once(legacy_app, tmp_path):
    env = {
        **os.environ,
        "FLASK_DATABASE_URL": legacy_app.config["DATABASE_URL"],
        "FLASK_SECRET_KEY": "x" * 64,
        "FLASK_MFA_ENCRYPTION_KEYS": f'["{KEY}"]',
        "FLASK_PASSWORD_HASH_METHOD": FAST_HASH,
        "FLASK_DATABASE_TIMEOUT": "60",
    }
    app_spec = f"standalone_mfa:create_app(instance_path={str(tmp_path / 'instance')!r})"
    command = [sys.executable, "-m", "flask", "--app", app_spec, "db", "upgrade"]
    with legacy_app.app_context():
        with hold_the_upgrade_lock():
            upgraders = [
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                for _ in range(2)
            ]
            time.sleep(1.5)  # both started and waiting for the lock
            assert all(p.poll() is None for p in upgraders), "an upgrader did not wait"
        outputs = [p.communicate(timeout=60)[0] for p in upgraders]
        assert [p.returncode for p in upgraders] == [0, 0], outputs
        known = schema.known_migrations()
        assert [name for name, _ in schema.history()] == known  # each recorded once
    # Every migration ran once, by one upgrader or the other: on PostgreSQL one holds the
    # advisory lock for its whole run (the other finds nothing to do); on SQLite each
    # step takes the write lock and reads the history under it, so they may take turns.
    applied = [output.count("Applied ") for output in outputs]
    assert sum(applied) == len(known), outputs
    if not is_sqlite():
        assert sorted(applied) == [0, len(known)], outputs


@pytest.fixture
def migrations_with(tmp_path, monkeypatch):
    """migrations_with({"006_x": source, ...}): the shipped migrations plus these."""

    shipped = schema.MIGRATIONS_DIR

    def make(extra: dict[str, str]):
        folder = tmp_path / "migrations"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(shipped, folder)
        for name, source in extra.items():
            (folder / f"{name}.py").write_text(source)
        monkeypatch.setattr(schema, "MIGRATIONS_DIR", folder)
        return folder

    return make


GOOD_LATER = """
import peewee as pw


def migrate(migrator, database, *, fake=False):
    migrator.add_fields("user", nickname=pw.CharField(max_length=40, null=True))
"""
BROKEN_LATER = """
import peewee as pw


def migrate(migrator, database, *, fake=False):
    @migrator.create_model
    class Half(pw.Model):
        name = pw.CharField()

        class Meta:
            table_name = "half_done"

    migrator.sql("UPDATE setting SET value = 'changed'")
    migrator.sql("THIS IS NOT SQL")
"""


def test_sc38_a_migration_that_fails_half_way_leaves_the_previous_version(
    app, clock, migrations_with, monkeypatch
):
    shipped = schema.known_migrations()
    with app.app_context():
        from standalone_mfa.directory import settings

        settings.set_mfa_method("totp", actor="test")
    migrations_with({"900_nickname": GOOD_LATER, "901_broken": BROKEN_LATER})
    result = cli(app, "db", "upgrade")
    assert result.exit_code == 1
    assert "Applied 900_nickname" in result.output
    with app.app_context():
        assert [name for name, _ in schema.history()] == [*shipped, "900_nickname"]
        assert "half_done" not in db.get_tables()  # 901 rolled back entirely
        assert "nickname" in {c.name for c in db.get_columns("user")}
        from standalone_mfa.core.models import Setting

        assert Setting.get(Setting.key == "mfa_method").value == "totp"

    # This code (which has 901) refuses to serve until 901 succeeds...
    monkeypatch.setattr(errors, "SCHEMA_RECHECK_SECONDS", 0)
    response = Browser(app, clock).get("/login")
    assert response.status_code == 503
    # ...and the database, at 900, is intact: the fixed 901 applies and all serves.
    fixed = "def migrate(migrator, database, fake=False):\n    pass\n"
    migrations_with({"900_nickname": GOOD_LATER, "901_broken": fixed})
    assert cli(app, "db", "upgrade").exit_code == 0
    browser = Browser(app, clock)
    assert location(browser.login("bob")) == "/mfa/setup"


def test_sc38_the_previous_code_serves_the_database_a_failed_upgrade_left(
    app, clock, migrations_with, monkeypatch
):
    """The code is rolled back after the failure: the old release finds the database
    at its own version and serves."""
    migrations_with({"900_broken": BROKEN_LATER})
    assert cli(app, "db", "upgrade").exit_code == 1
    monkeypatch.undo()  # the previous code: the shipped migrations only
    browser = Browser(app, clock)
    assert location(browser.login("alice")) == "/"
    assert signed_in_as(browser, "alice")


# --- the app refuses a schema that is not its own


def at_migration(app, name):
    """The app's database brought back to just after `name` (in this test only)."""
    with app.app_context():
        drop_schema()
        schema.upgrade(target=name)
        User.create(username="carol", password_hash="x", created_at=START)


def test_sc38_an_older_schema_is_refused_with_one_line_and_a_503_page(
    app, clock, caplog, monkeypatch
):
    at_migration(app, "002_trusted_browsers_address_throttle")
    caplog.set_level(logging.ERROR, logger="standalone_mfa")
    client = app.test_client()
    for path in ("/login", "/", "/admin/users", "/api/v1/users", "/mfa/verify"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert "Traceback" not in response.get_data(as_text=True)
    page = client.get("/login").get_data(as_text=True)
    assert "flask --app standalone_mfa db upgrade" in page
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 503
    health = client.get("/healthz")
    assert (health.status_code, health.get_json()["status"]) == (503, "unavailable")
    refusals = [r.getMessage() for r in caplog.records if "refusing to serve" in r.getMessage()]
    assert len(refusals) == 1, refusals  # one line, not one per request
    assert "flask --app standalone_mfa db upgrade" in refusals[0]
    assert "first 003_user_group" in refusals[0]

    # The CLI works regardless: `db current` says where it is (and exits 1).
    current = cli(app, "db", "current")
    assert current.exit_code == 1
    assert current.output.startswith("002_trusted_browsers_address_throttle")

    # The upgrade, made while the app runs, is picked up without a restart.
    assert cli(app, "db", "upgrade").exit_code == 0
    monkeypatch.setattr(errors, "SCHEMA_RECHECK_SECONDS", 0)
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").get_json() == {"status": "ok"}
    with app.app_context():
        assert User.select().where(User.username == "carol").count() == 1


def test_sc38_a_newer_schema_is_refused_and_never_downgraded(app, clock, caplog):
    with app.app_context():
        schema._history_model().create(name="006_from_a_newer_release", migrated_at=START)
    caplog.set_level(logging.ERROR, logger="standalone_mfa")
    client = app.test_client()
    assert client.get("/login").status_code == 503
    assert client.get("/healthz").status_code == 503
    (line,) = [r.getMessage() for r in caplog.records if "refusing to serve" in r.getMessage()]
    assert "newer than this code" in line
    assert "006_from_a_newer_release" in line
    result = cli(app, "db", "upgrade")
    assert result.exit_code == 1
    assert "newer than this code" in result.output
    with app.app_context():
        assert schema.history()[-1][0] == "006_from_a_newer_release"  # nothing undone


def test_sc38_an_empty_database_says_to_run_init_db(legacy_app, caplog, monkeypatch):
    caplog.set_level(logging.ERROR, logger="standalone_mfa")
    assert legacy_app.test_client().get("/login").status_code == 503
    assert any("init-db" in r.getMessage() for r in caplog.records)
    result = cli(legacy_app, "init-db")
    assert result.exit_code == 0, result.output
    assert "Created the first administrator" in result.output
    monkeypatch.setattr(errors, "SCHEMA_RECHECK_SECONDS", 0)
    assert legacy_app.test_client().get("/healthz").status_code == 200


def test_a_table_missing_under_a_matching_history_is_a_503_on_both_engines(app, clock):
    """PostgreSQL's UndefinedTable is the schema's 503, as SQLite's "no such table"."""
    browser = Browser(app, clock)
    browser.get("/login")
    with app.app_context():
        db.execute_sql('DROP TABLE "password_throttle"')
    response = browser.post("/login", {"username": "alice", "password": "wrong"})
    assert response.status_code == 503
    assert "Something went wrong" not in response.get_data(as_text=True)
    with app.app_context():
        drop_schema()  # the next test builds it again


def test_db_history_lists_what_was_applied_and_when(app):
    result = cli(app, "db", "history")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == schema.known_migrations()
    assert all("\tapplied " in line for line in lines)


def test_upgrading_while_requests_are_served_does_not_disturb_them(tmp_path, clock):
    """The fake replay of earlier migrations queues operations only: a request served
    on another thread during an upgrade runs real SQL."""
    app = make_app(tmp_path, clock)
    stop = threading.Event()
    statuses = []

    def serve():
        client = app.test_client()
        while not stop.is_set():
            statuses.append(client.get("/healthz").status_code)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with app.app_context():
            for _ in range(20):
                assert schema.upgrade() == []
    finally:
        stop.set()
        thread.join()
    assert statuses and set(statuses) == {200}


def test_sc38_gunicorns_entry_point_logs_the_mismatch_at_start(app, tmp_path):
    """`wsgi.py` checks at import, before any request: one line in the log."""
    at_migration(app, "002_trusted_browsers_address_throttle")
    started = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=app_env(app),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    lines = [line for line in started.stderr.splitlines() if "refusing to serve" in line]
    assert len(lines) == 1, started.stderr
    assert "flask --app standalone_mfa db upgrade" in lines[0]


def test_status_names_migrations_recorded_in_another_order():
    """The same migrations as this code's, recorded in another order: one line saying
    so (it used to raise IndexError looking for the first pending one)."""
    from standalone_mfa.ops.schema import Status

    known = ("001_first_release", "002_trusted_browsers_address_throttle")
    status = Status(known=known, applied=tuple(reversed(known)), has_tables=True)
    assert not status.matches and not status.newer and status.pending == []
    assert status.problem().startswith("The database recorded this code's migrations in")
