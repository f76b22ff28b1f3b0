"""Helpers shared by the test files: reading pages and the database, the common sign-in
and account steps, a quiet live server and oathtool."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import re
import shutil
import subprocess
import threading
import time

import peewee
import pyotp
import pytest
import requests
from conftest import PASSWORD, SECRET_RE, START, Browser
from werkzeug.serving import WSGIRequestHandler, make_server

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
from standalone_mfa.directory import settings, tokens
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import recovery, throttle, totp
from standalone_mfa.web.session_cookie import ANONYMOUS_COOKIE

# A value for each argument of a URL rule, to visit every route: `ARGUMENT` finds them.
PLACEHOLDERS = {"username": "alice", "filename": "style.css", "key_id": "1"}
ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def location(response) -> str | None:
    return response.headers.get("Location")


def signed_in_as(browser_or_client, username) -> bool:
    """The home page answers and names `username` as the signed-in user."""
    client = getattr(browser_or_client, "client", browser_or_client)
    response = client.get("/")
    page = response.get_data(as_text=True)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in page


def client_with_cookie(app, value):
    """A fresh client (another person's browser) that presents `value` as its cookie."""
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return client


def client_with_anonymous_cookie(app, value):
    """A fresh client that presents `value` as its anonymous session's signed cookie."""
    client = app.test_client()
    client.set_cookie(ANONYMOUS_COOKIE, value)
    return client


def wrong_code(secret, clock=None) -> str:
    """A well-formed code that matches no step anywhere near now (not even the ±10
    steps the clock-drift hint looks at); now is the clock's, or the real time."""
    now = clock.timestamp() if clock is not None else time.time()
    totp = pyotp.TOTP(secret)
    near = {totp.at(now + 30 * s) for s in range(-25, 26)}
    number = 123456
    while f"{number:06d}" in near:
        number += 1
    return f"{number:06d}"


def cli(app, *args, input=None):
    # `flask --app standalone_mfa ...` (FlaskGroup) pushes an app context for every
    # command; the test runner invokes `app.cli` directly, so push one here.
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args), input=input)


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


def pending_setup(new_browser, username="alice"):
    """A new browser at /mfa/setup of a first sign-in; returns it and its secret."""
    browser = new_browser()
    assert location(browser.login(username)) == "/mfa/setup"
    return browser, browser.setup_secret()


@contextlib.contextmanager
def quiet_server(app):
    """Serve `app` with werkzeug's threaded server on a free port of 127.0.0.1, without
    an access-log line per request (errors are still logged); yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


def tool(name: str) -> str:
    """The path of a command the tests need; fails the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it with apt")
    return path


def oathtool_codes(secret: str, first_step: int, count: int = 1) -> list[str]:
    """Codes for `count` time steps from `first_step`, by oathtool (not our code)."""
    when = dt.datetime.fromtimestamp(first_step * totp.PERIOD, dt.UTC)
    result = subprocess.run(
        [
            tool("oathtool"),
            "--totp",
            "--base32",
            f"--window={count - 1}",
            "--now",
            when.strftime("%Y-%m-%d %H:%M:%S UTC"),
            secret,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, f"oathtool failed: {result.stderr}"
    codes = result.stdout.split()
    assert len(codes) == count and all(re.fullmatch(r"\d{6}", c) for c in codes), codes
    return codes


def cookie_name(app) -> str:
    return app.config["SESSION_COOKIE_NAME"]


def valid_codes(secret, clock, spread=3):
    totp = pyotp.TOTP(secret)
    return {totp.at(clock.timestamp() + 30 * s) for s in range(-spread, spread + 1)}


def credential_count(app) -> int:
    with app.app_context():
        return TotpCredential.select().count()


def enrol_then_pending_verify(new_browser, clock, username="alice"):
    """`username` enrols in one browser; later, another browser passes the password
    step and waits at /mfa/verify. Returns (that browser, the secret)."""
    secret = new_browser().enrol(username)
    clock.advance(60)  # the enrolment step is used; start from a fresh one
    pending = new_browser()
    response = pending.login(username)
    assert location(response) == "/mfa/verify"
    return pending, secret


class RecordingBrowser(Browser):
    """A Browser that keeps every (method, path, response) it saw."""

    def __init__(self, app, clock):
        super().__init__(app, clock)
        self.seen = []

    def get(self, path, **kwargs):
        response = super().get(path, **kwargs)
        self.seen.append(("GET", path, response))
        return response

    def post(self, path, data=None, csrf=True, **kwargs):
        response = super().post(path, data, csrf, **kwargs)
        self.seen.append(("POST", path, response))
        return response


HTTP_TIMEOUT = 30


MESSAGE_RE = re.compile(r'class="message message-[a-z]+"[^>]*>([^<]*)<')


CSRF_INPUT_RE = re.compile(r'<input\b[^>]*\bname="csrf_token"[^>]*>')


VALUE_RE = re.compile(r'\bvalue="([^"]*)"')


def messages(response) -> list[str]:
    return [m.strip() for m in MESSAGE_RE.findall(response.get_data(as_text=True))]


def credential_of(app, username):
    with app.app_context():
        return totp.credential_of(find_user(username))


def bound_sessions(app) -> list[tuple[str, str]]:
    """(username, state) of every session bound to a user."""
    with app.app_context():
        query = WebSession.select(WebSession, User).join(User)
        return sorted((s.user.username, s.state) for s in query)


def admin_token(app) -> str:
    with app.app_context():
        return tokens.create_token(find_user("root"), actor="test")


def give_credential(app, clock, username) -> str:
    """A confirmed credential, last used one step before now; returns the secret."""
    with app.app_context():
        user = find_user(username) or create_user(username, PASSWORD)
        secret = totp.new_secret()
        step = int(clock.timestamp()) // totp.PERIOD
        assert totp.enrol(user, secret, step - 1) is not None
    return secret


def pending_verify_with_credential(new_browser, app, clock, username="alice"):
    """`username` has a credential and a browser waiting at /mfa/verify."""
    secret = give_credential(app, clock, username)
    browser = new_browser()
    assert location(browser.login(username)) == "/mfa/verify"
    return browser, secret


def raise_on_audit(monkeypatch, event_name):
    """Make the audit write of one event fail as a locked or lost database would."""
    real_record = audit.record

    def record(event, *args, **kwargs):
        if event == event_name:
            raise peewee.OperationalError("database is locked")
        return real_record(event, *args, **kwargs)

    monkeypatch.setattr(audit, "record", record)


def http(base_url, cookie=None, name="smfa_session") -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    if cookie:
        session.cookies.set(name, cookie)
    return session


def form_token(response) -> str:
    field = CSRF_INPUT_RE.search(response.text)
    assert field, f"no CSRF field: {response.status_code}"
    return html.unescape(VALUE_RE.search(field.group(0)).group(1))


def http_signed_in_as(base_url, cookie, username, name="smfa_session") -> bool:
    response = http(base_url, cookie, name).get(base_url + "/", allow_redirects=False, timeout=30)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in response.text


def set_cookie_value(response, name="smfa_session") -> str | None:
    """The value the response sets for cookie `name`, whatever its prefix (None: not set)."""
    # A test-client response, or a `requests` one (whose raw headers keep every one).
    headers = response.headers if hasattr(response.headers, "getlist") else response.raw.headers
    for header in headers.getlist("Set-Cookie"):
        key, value = header.split(";", 1)[0].split("=", 1)
        if key.removeprefix("__Host-").removeprefix("__Secure-") == name:
            return value
    return None


NEW_PASSWORD = "a brand new passphrase for alice"


DEVICE_COOKIE = "smfa_device"
TRUSTED_BROWSER_COOKIE = "smfa_browser"


# Well-formed (base32, 16 characters) but nobody's code.
UNKNOWN_RECOVERY_CODE = "abcd-efgh-ijkl-mnop"


def text(page_or_response) -> str:
    """The page as a person reads it: entities such as &#39; decoded, white space
    (line breaks in the templates) collapsed."""
    if not isinstance(page_or_response, str):
        page_or_response = page_or_response.get_data(as_text=True)
    return re.sub(r"\s+", " ", html.unescape(page_or_response))


def fresh_code(browser, secret, steps=0) -> str:
    """Move to the next time step, then read the code `steps` steps from now."""
    browser.clock.advance(30)
    return browser.code(secret, steps)


def spellings(code: str) -> set[str]:
    """Every way a recovery code could be written down or stored in plain."""
    plain = code.replace("-", "")
    return {code, code.upper(), plain, plain.upper()}


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
    """(event, outcome, username, actor, detail) of every audit row, oldest first."""
    with app.app_context():
        query = AuditEvent.select().order_by(AuditEvent.id)
        if event:
            query = query.where(AuditEvent.event == event)
        return [(e.event, e.outcome, e.username, e.actor, e.detail) for e in query]


def set_remember_days(app, days: int) -> None:
    with app.app_context():
        settings.set_remember_days(days, actor="test")


def device_token(browser) -> str | None:
    cookie = browser.client.get_cookie(DEVICE_COOKIE)
    return cookie.value if cookie else None


def pending_verify(new_browser, username="alice"):
    """A new browser that passed the password step and waits at /mfa/verify."""
    browser = new_browser()
    response = browser.login(username)
    assert location(response) == "/mfa/verify"
    return browser


def signed_in_with_code(new_browser, secret, username="alice", remember=False):
    """A new browser signed in with the password and a fresh code."""
    browser = pending_verify(new_browser, username)
    data = {"code": fresh_code(browser, secret)}
    if remember:
        data["remember_device"] = "y"
    response = browser.post("/mfa/verify", data)
    assert location(response) == "/", text(browser.page("/mfa/verify"))
    return browser


def remembered_browser(new_browser, secret, username="alice"):
    """A browser that ticked "Remember this device" with a code, then signed out."""
    browser = signed_in_with_code(new_browser, secret, username, remember=True)
    assert device_token(browser)
    browser.logout()
    assert not signed_in_as(browser, username)
    return browser


def use_recovery_code(browser, code):
    """At the code step: "Use a recovery code instead", then enter `code`."""
    page = browser.page("/mfa/recovery")
    assert 'name="recovery_code"' in page
    return browser.post("/mfa/recovery", {"recovery_code": code})


def confirm_identity(browser, path, password, code=None, recovery_code=None):
    """Open `path` and prove it is you there: the password, and a code or a recovery code."""
    browser.get(path)
    data = {"password": password}
    if code is not None:
        data["code"] = code
    if recovery_code is not None:
        data["recovery_code"] = recovery_code
    return browser.post(path, data)


def regenerate(browser, password, code=None, recovery_code=None):
    return confirm_identity(browser, "/account/recovery-codes", password, code, recovery_code)


def confirm_for_new_authenticator(browser, password, code=None, recovery_code=None):
    return confirm_identity(browser, "/account/authenticator", password, code, recovery_code)


def new_authenticator_secret(browser) -> str:
    page = browser.page("/account/authenticator/new")
    match = SECRET_RE.search(page)
    assert match, page
    return html.unescape(match.group(1)).replace(" ", "")


def change_password(browser, current, new, confirm=None):
    browser.get("/account/password")
    return browser.post(
        "/account/password",
        {
            "current_password": current,
            "new_password": new,
            "confirm_password": new if confirm is None else confirm,
        },
    )


def set_method(app, method):
    with app.app_context():
        settings.set_mfa_method(method, actor="test")


def audit_events(app, event):
    with app.app_context():
        return list(AuditEvent.select().where(AuditEvent.event == event).order_by(AuditEvent.id))


def goes_to_login(response) -> bool:
    return response.status_code == 302 and location(response).startswith("/login")


def api(app, method, username, token=None, *, client=None, headers=None):
    """One request to the reset API, as a script would send it (no cookies)."""
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    client = client or app.test_client()
    return client.open(f"/api/v1/users/{username}/totp", method=method, headers=headers)


def make_token(app, username):
    with app.app_context():
        return tokens.create_token(User.get(User.username == username), actor="test")


def credential(app, username):
    with app.app_context():
        return TotpCredential.select().join(User).where(User.username == username).get_or_none()


def signed_in_admin(app, clock):
    """root, signed in (and through the second factor when the method is TOTP)."""
    admin = Browser(app, clock)
    if mfa_method(app) == "totp":
        admin.enrol("root")
    else:
        assert admin.login("root").headers["Location"] == "/"
    assert admin.get("/admin/").status_code == 200
    return admin


ACTIONS = ("reset-mfa", "unlock", "grant-admin", "revoke-admin", "sign-out")


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


def admin_signed_in(app, clock):
    """root signed in (through the second factor when the method is TOTP); returns the
    browser and root's TOTP secret (None without one)."""
    admin = Browser(app, clock)
    with app.app_context():
        from standalone_mfa.directory import settings

        totp_on = settings.mfa_method() == "totp"
    secret = admin.enrol("root") if totp_on else None
    if not totp_on:
        assert admin.login("root").headers["Location"] == "/"
    assert admin.get("/admin/users").status_code == 200
    return admin, secret


def step_up(admin, secret=None, steps=1):
    """Prove it is root again: the code `steps` time steps ahead (the sign-in code's
    step is used up), or the password when root has no authenticator."""
    admin.get("/admin/step-up")
    if secret:
        admin.clock.advance(30 * steps)
        response = admin.post("/admin/step-up", {"code": admin.code(secret)})
    else:
        response = admin.post("/admin/step-up", {"password": PASSWORD})
    assert response.status_code == 302
    assert "/admin/step-up" not in response.headers["Location"], flashes(admin)
    return response


def act(admin, username, action):
    """Open the confirmation page, then press its button."""
    page = admin.get(f"/admin/users/{username}/{action}")
    assert page.status_code == 200, page.headers.get("Location")
    return admin.post(f"/admin/users/{username}/{action}")


def flashes(browser):
    page = browser.page("/admin/")
    return [html.unescape(m) for m in re.findall(r'<p class="message [^"]*"[^>]*>([^<]*)<', page)]


def row_of(page, username):
    """The cells of one user's line in the Users table."""
    match = re.search(rf'<th scope="row">{re.escape(username)}</th>(.*?)</tr>', page, re.S)
    assert match, f"no row for {username}"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]


def call(app, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().open(path, method=method, headers=headers, **kwargs)


def code_failures(app, username):
    with app.app_context():
        row = MfaThrottle.select().join(User).where(User.username == username).get_or_none()
        return row.failures if row else 0


def signed_in_root(app, clock):
    admin = Browser(app, clock)
    assert admin.login("root").headers["Location"] == "/"
    return admin


def add_events(app, clock, specs):
    """Audit events at given offsets (seconds) from now, as (event, user, actor)."""
    start = clock.now()
    with app.app_context():
        for offset, event, username, actor in specs:
            clock.set(start + dt.timedelta(seconds=offset))
            audit.record(event, "ok", username=username, actor=actor)
    clock.set(start)


def save_mfa_settings(admin, data, username="root", **kwargs):
    """As an administrator does on /admin/mfa: step up first (a fresh code from their
    authenticator, or the password without one), open the page, then save `data`."""
    step_up(admin, credential_secret(admin.app, username))
    admin.get("/admin/mfa")
    return admin.post("/admin/mfa", data, **kwargs)


# --- the schema, as the database reports it (tests/test_migrations.py)


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
