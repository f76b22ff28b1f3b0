"""The database connection: one Peewee proxy bound at app start from `DATABASE_URL`.

SQLite runs with WAL, a busy timeout and foreign keys; any `playhouse.db_url` URL
works, PostgreSQL included. Connections are pooled (Peewee's `playhouse.pool`): a
request borrows one and gives it back at teardown. Errors that mean "the database is
not available right now" are grouped in `UNAVAILABLE` so the app can answer 503
instead of a traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sqlite3
import time
import weakref
from urllib.parse import urlsplit

import peewee
from playhouse import db_url
from playhouse.pool import (
    MaxConnectionsExceeded,
    PooledDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)

from .config import setting

db = peewee.DatabaseProxy()

# A locked SQLite file, an unreachable server, or every pooled connection in use for
# longer than DATABASE_TIMEOUT: the request cannot be served now.
UNAVAILABLE = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)

SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("foreign_keys", 1),
    ("synchronous", "normal"),
)

# A plain URL gets Peewee's pooled class for it; "+pool" URLs are pooled anyway.
POOLED_SCHEMES = {
    "sqlite": "sqlite+pool",
    "postgres": "postgres+pool",
    "postgresql": "postgresql+pool",
}


def is_sqlite(database: peewee.Database | None = None) -> bool:
    return isinstance(database or db.obj, peewee.SqliteDatabase)


class WriteLockPolling:
    """Mixed into the SQLite databases: the wait for the write lock (`BEGIN IMMEDIATE`,
    see `write_transaction`) is a loop of short pauses, not SQLite's busy handler.

    SQLite's default handler sleeps 1, 2, 5, 10, 15, 20 … ms between looks at a lock
    that a write transaction here holds for about 0.3 ms: under `make bench`'s code
    step the two workers spent 19–33 % of their time asleep in it (py-spy), the lock
    free most of that time. Here `BEGIN IMMEDIATE` is tried with the handler off, then
    again after a pause that grows from 50 µs to at most 1 ms, until the busy timeout
    (`DATABASE_TIMEOUT`) has passed; then it fails as before (503). Every other
    statement keeps SQLite's handler and the same timeout."""

    FIRST_PAUSE = 50e-6
    LONGEST_PAUSE = 1e-3

    def begin(self, lock_type=None):
        if (lock_type or self._lock_type) != "IMMEDIATE":
            return super().begin(lock_type)
        busy_ms = dict(self._pragmas).get("busy_timeout", 0)
        cursor = self.cursor()
        with peewee.__exception_wrapper__:
            cursor.execute("PRAGMA busy_timeout = 0")
            try:
                self._take_write_lock(cursor, time.monotonic() + busy_ms / 1000)
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        return None

    def _take_write_lock(self, cursor, deadline: float) -> None:
        pause = self.FIRST_PAUSE
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                busy = error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, self.LONGEST_PAUSE)


class SqliteFile(WriteLockPolling, peewee.SqliteDatabase):
    """A SQLite database with no pool (`DATABASE_POOL = false`)."""


class PooledSqliteFile(WriteLockPolling, PooledSqliteDatabase):
    """Peewee's SQLite pool, for a database file that may be moved or replaced.

    A pooled connection keeps the file it opened: were the file renamed, deleted or
    restored from a backup, it would go on serving the old one. So a connection is
    handed out again only while the path still names the file it opened; otherwise
    it is closed and a new one opened (which fails, 503, if the file is gone)."""

    def __init__(self, database, **kwargs):
        self._files = {}  # id(connection) -> (device, inode) of the file it opened
        # The pool hands a connection to one thread at a time, not always the same one.
        super().__init__(database, check_same_thread=False, **kwargs)

    def _add_conn_hooks(self, conn):
        super()._add_conn_hooks(conn)  # the pragmas, on every new connection
        self._files[id(conn)] = _file_id(self.database)

    def _is_closed(self, conn):
        if super()._is_closed(conn):
            self._files.pop(id(conn), None)
            return True
        if self._files.get(id(conn)) != _file_id(self.database):
            self._close_raw(conn)
            return True
        return False

    def _close_raw(self, conn):
        self._files.pop(id(conn), None)
        super()._close_raw(conn)


# A pooled PostgreSQL connection given back longer ago than this is pinged before it
# is lent again; one given back more recently is lent as it is (see PooledPostgresql).
PING_AFTER_IDLE = 1.0


class PooledPostgresql(PooledPostgresqlDatabase):
    """Peewee's PostgreSQL pool, without a round trip for a connection in steady use.

    Peewee checks a pooled connection with `SELECT 1` each time it lends it: a second
    round trip to the server for every request, as long as the one query of the
    gateway's check. Here a connection given back less than `PING_AFTER_IDLE` seconds
    ago (under load, milliseconds) is lent without it, its local state still checked;
    one idle for longer is pinged as before, so after a database restart or failover
    idle connections are dropped, not used. Only a connection given back in the very
    second the server went away can fail its next request: a 503, never a 500, and
    it is discarded when given back."""

    def __init__(self, *args, **kwargs):
        self._returned_at = {}  # connection key -> time.monotonic() it was given back
        super().__init__(*args, **kwargs)

    def _is_closed(self, conn):
        returned = self._returned_at.pop(self.conn_key(conn), None)
        adapter = self._adapter
        recent = returned is not None and time.monotonic() - returned < PING_AFTER_IDLE
        if recent and not conn.closed and adapter.txn_status(conn) == adapter.txn_idle:
            return False
        return super()._is_closed(conn)

    def _close(self, conn, close_conn=False):
        super()._close(conn, close_conn)
        if not close_conn and not conn.closed:
            self._returned_at[self.conn_key(conn)] = time.monotonic()


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


# SQLite's own files beside the database; it makes them with the database file's mode.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private(path: str | os.PathLike, mode: int = 0o600) -> None:
    """Take group and others' access away from `path` if it has any (SC-70): what an
    older release made with the umask's 0644 or 0755 is mended at start. A file this
    process does not own and cannot change is left as it is (the start goes on)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, mode)


def private_sqlite_file(path: str) -> None:
    """The database file (made empty, 0600, if it does not exist yet: SQLite then makes
    its -wal and -shm with the same mode) and its companions, 0600 whatever the umask."""
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", *SQLITE_COMPANIONS):
        make_private(path + suffix)


def open_database(url: str, timeout: float = 10, pool_size: int = 8) -> peewee.Database:
    """Build (but do not connect) the database named by a Peewee URL.

    `timeout`: seconds a SQLite writer waits for the lock, and a request for a pooled
    connection, before giving up (503). `pool_size`: most connections this process
    keeps open (0: none, a new connection for every request)."""
    scheme = urlsplit(url).scheme
    in_memory = scheme.startswith("sqlite") and db_url.parse(url)["database"] == ":memory:"
    if pool_size and scheme in POOLED_SCHEMES and not in_memory:
        scheme = POOLED_SCHEMES[scheme]
        url = scheme + url[url.index(":") :]
    options = {}
    if scheme.endswith("+pool"):
        # Peewee's pool waits forever for timeout=0; None is "do not wait".
        options = {"max_connections": pool_size or 8, "timeout": timeout if timeout > 0 else None}
        # What the URL's query string says wins, as db_url does for every option.
        options = {k: v for k, v in options.items() if k not in db_url.parse(url)}
    if scheme.startswith("sqlite") and not in_memory:
        private_sqlite_file(db_url.parse(url)["database"])
    if scheme.startswith("sqlite"):
        # busy_timeout first: it must already apply while WAL mode is being switched on.
        options["pragmas"] = (("busy_timeout", int(timeout * 1000)), *SQLITE_PRAGMAS)
    if scheme == "sqlite+pool":
        return PooledSqliteFile(**{**db_url.parse(url), **options})
    if scheme in ("postgres+pool", "postgresql+pool"):
        return PooledPostgresql(**{**db_url.parse(url), **options})
    if scheme == "sqlite":
        options["timeout"] = timeout
        return SqliteFile(**{**db_url.parse(url), **options})
    return db_url.connect(url, **options)


def init_app(app) -> None:
    previous = db.obj
    pool_size = setting("DATABASE_POOL_SIZE", app) if setting("DATABASE_POOL", app) else 0
    url, timeout = setting("DATABASE_URL", app), setting("DATABASE_TIMEOUT", app)
    db.initialize(open_database(url, timeout, pool_size))
    if isinstance(previous, PooledDatabase):
        # Another app in this process (tests build many): its idle connections would
        # otherwise stay open until the garbage collector finds them.
        previous.close_idle()
    app.teardown_appcontext(close_connection)


def close_connection(_exc=None) -> None:
    """At the end of every request and CLI command: give the connection back (to the
    pool, or closed without one)."""
    with contextlib.suppress(*UNAVAILABLE):
        if not db.is_closed():
            db.close()


# Connections opened before a fork (gunicorn --preload, or a CLI that forks) belong to
# the parent: a child that used one would share its socket or file lock with it, and
# one that closed it (even by garbage collection) would end the parent's session. The
# child forgets them (Peewee's `dispose`) and keeps a reference so none is ever closed.
_INHERITED: list = []


def _forget_inherited_connections() -> None:
    database = db.obj
    if database is None:
        return
    if not database.is_closed():
        _INHERITED.append(database._state.conn)
    if isinstance(database, PooledDatabase):
        _INHERITED.extend(conn for _, _, conn in database._connections)
        _INHERITED.extend(pooled.connection for pooled in database._in_use.values())
    database.dispose()


os.register_at_fork(after_in_child=_forget_inherited_connections)


def write_transaction():
    """A transaction that takes the write lock at once on SQLite.

    A deferred SQLite transaction that reads and then writes can fail with "database
    is locked" without waiting for the busy timeout; IMMEDIATE waits its turn instead.
    """
    if is_sqlite():
        return db.obj.atomic("IMMEDIATE")
    return db.atomic()


_STATEMENT_NUMBERS = itertools.count(1)


class _Slot:
    """Where a value goes in a prepared statement (see `Prepared`)."""

    __slots__ = ("name", "field")

    def __init__(self, name: str, field: peewee.Field | None):
        self.name = name
        self.field = field


class Prepared:
    """A statement of the hot path (the code step, the gateway check), built by Peewee
    once per database and run again with new values.

    Building the SQL is most of what Peewee spends on a statement: about 0.3 ms for the
    session's four-table query and 0.1 ms for an UPDATE, against a few microseconds
    to run it. `build(slot)` makes the query with `slot("name")` (or
    `slot("name", Model.field)`, to convert the value as that field does) wherever a
    value goes; `run(**values)` executes it and answers as Peewee's own `execute`
    would: the model instances for a SELECT, the row count for an UPDATE or DELETE,
    the new id for an INSERT (None when it inserted nothing: ON CONFLICT DO NOTHING)."""

    def __init__(self, build):
        self._build = build
        self._compiled = None  # (database, query, sql, params, slots)
        self.number = next(_STATEMENT_NUMBERS)  # its server-side name (PostgreSQL)
        self._columns = None  # (database, what the cursor wrapper worked out of them)

    def _compile(self):
        database = db.obj
        if self._compiled is None or self._compiled[0] is not database:

            def slot(name, field=None):
                return peewee.SQL(database.param, [_Slot(name, field)])

            query = self._build(slot)
            if isinstance(query, peewee.Insert) and database.returning_clause:
                # What Peewee's own execute adds on PostgreSQL, to learn the new id.
                query = query.returning(query.table._meta.primary_key)
            sql, params = database.get_sql_context().sql(query).query()
            slots = [(i, p) for i, p in enumerate(params) if isinstance(p, _Slot)]
            self._compiled = (database, query, sql, params, slots)
        return self._compiled

    def run(self, **values):
        database, query, sql, params, slots = self._compile()
        params = list(params)
        for i, found in slots:
            value = values[found.name]
            params[i] = found.field.db_value(value) if found.field is not None else value
        if isinstance(database, peewee.PostgresqlDatabase) and isinstance(
            query, peewee.SelectBase
        ):
            cursor = _execute_prepared(database, self, sql, params)
        else:
            cursor = database.execute_sql(sql, params)
        if isinstance(query, peewee.SelectBase):
            return self._rows(query, cursor)
        if isinstance(query, peewee.Insert):
            if database.returning_clause:
                row = cursor.fetchone()
                return row[0] if row else None
            if database.rows_affected(cursor) == 0:  # ON CONFLICT DO NOTHING did nothing
                return None
            return database.last_insert_id(cursor, query._query_type)
        return database.rows_affected(cursor)

    def _rows(self, query, cursor) -> list:
        """The rows as Peewee's cursor wrapper makes them. What the wrapper works out
        from the columns (which model and converter each belongs to: a third of a
        joined query's cost) is the same every time for the same SQL: kept from the
        first run."""
        wrapper = query._get_cursor_wrapper(cursor)
        database = self._compiled[0]
        if self._columns is not None and self._columns[0] is database:
            wrapper.__dict__.update(self._columns[1])
            wrapper.initialized = True
            return list(wrapper)
        rows = list(wrapper)
        if wrapper.initialized:  # not if there was no row
            worked_out = {
                name: value for name, value in vars(wrapper).items() if name not in _PER_CURSOR
            }
            self._columns = (database, worked_out)
        return rows


# --- Server-side prepared statements (PostgreSQL) --------------------------------------
#
# psycopg2 sends each query as text, which PostgreSQL parses and plans every time: for
# the gateway's four-table query, planning cost several times what running it does. So
# on PostgreSQL a prepared SELECT outside a transaction (the gateway's check, the
# session's load) is PREPAREd once per connection and then EXECUTEd. A server that
# lost it (DISCARD ALL, a restart) answers "does not exist": prepared again and run
# again; lost again at once (a pooler in transaction mode, whose next statement goes
# to another backend), the process stops preparing them. Statements inside a
# transaction (the code step's writes, plain single-table ones) are sent as before:
# an error there would abort the transaction.

_PREPARED_ON: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> names
_UNPREPARED: weakref.WeakSet = weakref.WeakSet()  # databases whose server keeps losing them
_PLACEHOLDER = re.compile(r"%%|%s")
_NOT_PREPARED = "26000"  # invalid_sql_statement_name
_ALREADY_PREPARED = "42P05"  # duplicate_prepared_statement


def _numbered(sql: str) -> str:
    """psycopg2's placeholders (%s; %% for a literal %) as PREPARE's ($1, $2, ...)."""
    count = iter(range(1, 1_000_000))
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(count)}", sql)


def _pgcode(exc: BaseException) -> str | None:
    return getattr(exc.__context__, "pgcode", None) or getattr(exc.__cause__, "pgcode", None)


def _execute_prepared(database, statement: Prepared, sql: str, params: list):
    if database.in_transaction() or database in _UNPREPARED:
        return database.execute_sql(sql, params)
    name = f"smfa_{statement.number}"
    execute = f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}"
    for _attempt in (1, 2):
        connection = database.connection()
        names = _PREPARED_ON.setdefault(connection, set())
        if name not in names:
            try:
                database.execute_sql(f"PREPARE {name} AS {_numbered(sql)}")
            except peewee.DatabaseError as exc:
                if _pgcode(exc) != _ALREADY_PREPARED:
                    raise
            names.add(name)
        try:
            return database.execute_sql(execute, params)
        except peewee.DatabaseError as exc:
            if _pgcode(exc) != _NOT_PREPARED:
                raise
            names.discard(name)
    # Lost twice in a row: a pooler that hands each statement to another backend. Plain
    # SQL from now on, for this database, in this process.
    _UNPREPARED.add(database)
    return database.execute_sql(sql, params)


# A cursor wrapper's own state, never carried from one run to the next.
_PER_CURSOR = frozenset({"cursor", "count", "index", "initialized", "populated", "row_cache"})
