"""Test fixtures: an app on a fresh database with a frozen clock, and `Browser`, a
test-client helper whose methods read like a person's steps."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import html
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pyotp
import pytest

from standalone_mfa import create_app
from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.db import db
from standalone_mfa.core.models import ALL_MODELS
from standalone_mfa.directory.users import create_user
from standalone_mfa.ops import schema
from standalone_mfa.web.cookies import DEVICE_COOKIE
from standalone_mfa.web.session_cookie import ANONYMOUS_COOKIE

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


# --- the schema, built as production builds it: by `ops.schema.upgrade`

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


@pytest.fixture
def clock():
    return FrozenClock(START)


@pytest.fixture
def app(tmp_path, clock):
    app = make_app(tmp_path, clock)
    yield app
    with app.app_context():
        db.close()


@pytest.fixture
def totp_app(app):
    """The app with the MFA method set to TOTP."""
    from standalone_mfa.directory import settings

    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    return app


CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)
SECRET_RE = re.compile(r'id="totp-secret"[^>]*>([^<]+)<')


def csrf_from(page: str) -> str:
    match = CSRF_RE.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


RECOVERY_CODE_RE = re.compile(r"<code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code>")


class Browser:
    """One person's browser (one cookie jar) using the app through the test client."""

    def __init__(self, app, clock):
        self.app = app
        self.clock = clock
        self.client = app.test_client()
        self.token = None

    def get(self, path, **kwargs):
        response = self.client.get(path, **kwargs)
        text = response.get_data(as_text=True)
        if "csrf_token" in text:
            self.token = csrf_from(text)
        return response

    def post(self, path, data=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf:
            if self.token is None:
                self.get("/login")
            data.setdefault("csrf_token", self.token)
        return self.client.post(path, data=data, **kwargs)

    def login(self, username="alice", password=PASSWORD, next=None):
        path = "/login" + (f"?next={next}" if next else "")
        self.get(path)
        response = self.post(path, {"username": username, "password": password})
        if response.status_code == 302:
            # As a browser would: load the next page (and its fresh CSRF token).
            self.get(response.headers["Location"])
        return response

    def setup_secret(self) -> str:
        page = self.get("/mfa/setup").get_data(as_text=True)
        match = SECRET_RE.search(page)
        assert match, "no secret on the set-up page"
        return html.unescape(match.group(1)).replace(" ", "")

    def code(self, secret, steps=0) -> str:
        return pyotp.TOTP(secret).at(self.clock.timestamp() + 30 * steps)

    def enrol(self, username="alice"):
        """Sign in for the first time with TOTP on, set up and save the recovery codes
        (kept in `self.recovery_codes`); returns the secret."""
        self.login(username)
        secret = self.setup_secret()
        response = self.post("/mfa/setup", {"code": self.code(secret)})
        assert response.status_code == 302, response.get_data(as_text=True)
        assert response.headers["Location"] == "/mfa/recovery-codes"
        self.save_recovery_codes()
        return secret

    def submit_code(self, path, data):
        """Post a code form (a code, or the form's fields) as a person would: after a
        set-up, read and save the recovery codes too. The last response."""
        if isinstance(data, str):
            data = {"code": data}
        response = self.post(path, data)
        if response.headers.get("Location") == "/mfa/recovery-codes":
            return self.save_recovery_codes()
        return response

    def save_recovery_codes(self):
        """Read the recovery codes shown after set-up, then "I have saved these codes"."""
        page = self.page("/mfa/recovery-codes")
        self.recovery_codes = RECOVERY_CODE_RE.findall(page)
        assert len(self.recovery_codes) == 10, page
        return self.post("/mfa/recovery-codes")

    def logout(self):
        self.get("/")
        return self.post("/logout")

    def cookie(self):
        cookie = self.client.get_cookie(self.app.config["SESSION_COOKIE_NAME"])
        return cookie.value if cookie else None

    def anonymous_cookie(self):
        """The signed cookie of an anonymous session (which has no row)."""
        cookie = self.client.get_cookie(ANONYMOUS_COOKIE)
        return cookie.value if cookie else None

    def cookies(self) -> dict[str, str]:
        """The app's cookies this browser holds, by name."""
        names = (self.app.config["SESSION_COOKIE_NAME"], ANONYMOUS_COOKIE, DEVICE_COOKIE)
        held = {name: self.client.get_cookie(name) for name in names}
        return {name: cookie.value for name, cookie in held.items() if cookie}

    def page(self, path, **kwargs) -> str:
        return self.get(path, **kwargs).get_data(as_text=True)


@pytest.fixture
def browser(app, clock):
    return Browser(app, clock)


@pytest.fixture
def new_browser(app, clock):
    return lambda: Browser(app, clock)


@pytest.fixture
def serve():
    """serve(app) -> base URL of a quiet threaded werkzeug server for `app`."""
    from helpers import quiet_server

    with contextlib.ExitStack() as servers:
        yield lambda app: servers.enter_context(quiet_server(app))


def together(*actions, timeout: float = 30):
    """Run the callables on threads released at once by one barrier; their results in
    order. Fails if one raised or is stuck."""
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)

    def worker(i):
        try:
            barrier.wait(timeout=timeout)
            results[i] = actions[i]()
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * timeout)
    assert not any(thread.is_alive() for thread in threads), "a request is stuck"
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} requests failed, first: {errors[0]!r}"
    return results


def events(app, event=None):
    """The audit rows, oldest first (only `event`'s if given)."""
    from standalone_mfa.core.models import AuditEvent

    with app.app_context():
        query = AuditEvent.select().order_by(AuditEvent.id)
        if event is not None:
            query = query.where(AuditEvent.event == event)
        return list(query)


@pytest.fixture
def smtp():
    """A real SMTP server on 127.0.0.1 (see tests/smtp.py)."""
    from smtp import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mail_app(tmp_path, clock, smtp):
    """The app sending notices through `smtp`; alice, bob and root have addresses."""
    from smtp import mail_config

    from standalone_mfa.core.models import User
    from standalone_mfa.notices import sender

    app = make_app(tmp_path, clock, **mail_config(smtp))
    with app.app_context():
        for name in ("alice", "bob", "root"):
            User.update(email=f"{name}@example.com").where(User.username == name).execute()
    yield app
    sender.wait_idle(10)  # no round of this app's may outlive its database
    with app.app_context():
        db.close()
