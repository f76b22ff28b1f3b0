"""What one password step, one code step, one passkey sign-in and one token exchange
cost in-process: the SQL statements and commits each runs (counted at the driver
cursor, so BEGIN/COMMIT/SAVEPOINT count too; a write outside a transaction is a commit
of its own, as is each COMMIT), its wall time and CPU time, and optionally a profile
(pyinstrument's when it is installed, measurement only, not a dependency; else the
standard library's cProfile).

    python -m bench.statements [--steps 200] [--database-url URL] [--no-pool] [--profile]
                               [--only "passkey sign-in"]

No server, no network: Flask's test client on a fresh database seeded like `make
bench`'s (a server database named by --database-url is WIPED).
"""

from __future__ import annotations

import argparse
import base64
import collections
import cProfile
import io
import logging
import pstats
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyotp

from standalone_mfa import create_app
from standalone_mfa.core.crypto import generate_key
from standalone_mfa.core.db import db

from . import load, seed
from .run import BENCH_PORTAL, BENCH_RULES, soft_key_class


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statements")
    parser.add_argument("--steps", type=int, default=200, help="code steps (password: 1/10)")
    parser.add_argument("--database-url", help="a server database to WIPE and use")
    parser.add_argument("--no-pool", dest="pool", action="store_false")
    parser.add_argument(
        "--profile", action="store_true", help="pyinstrument if installed, else cProfile"
    )
    parser.add_argument("--only", choices=STEPS, help="measure this step alone")
    args = parser.parse_args(argv)
    logging.getLogger("standalone_mfa.audit").disabled = True  # one JSON line per event
    workdir = Path(tempfile.mkdtemp(prefix="smfa-statements-"))
    try:
        app = create_app(
            {
                "SECRET_KEY": secrets.token_hex(32),
                "MFA_ENCRYPTION_KEYS": [generate_key()],
                "DATABASE_URL": args.database_url or f"sqlite:///{workdir}/statements.sqlite3",
                "DATABASE_POOL": args.pool,
                # As `make bench` configures the app it serves.
                "ACCESS_CONTROL": BENCH_RULES,
                "GATEWAY_PORTAL_URL": BENCH_PORTAL,
                "OIDC_ISSUER": BENCH_PORTAL,
            },
            str(workdir),
        )
        with app.app_context():
            seed.fresh_database()
            users = seed.seed_users(args.steps)
            keys = seed.seed_passkeys(app, users[:PASSKEYS], soft_key_class())
        counter = StatementCounter()
        counter.install()
        passwords = max(1, args.steps // 10)
        requests = {
            "password step": lambda: password_steps(app, users[:passwords]),
            "code step": lambda: code_steps(app, users),
            "passkey sign-in": lambda: passkey_signins(app, keys, args.steps),
            "token exchange": lambda: token_exchanges(app, users),
        }
        steps = {
            name: measure(app, counter, made(), args.profile)
            for name, made in requests.items()
            if args.only in (None, name)
        }
        counter.uninstall()
        for name, found in steps.items():
            print(
                f"\n{name}: {found['count']} steps, median {found['median_ms']:.2f} ms, "
                f"CPU {found['cpu_ms']:.2f} ms per step"
            )
            for part, statements in found["statements"].items():
                print(f"  {part}: {statements}")
        with app.app_context():
            db.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


STEPS = ("password step", "code step", "passkey sign-in", "token exchange")
PASSKEYS = 50  # users with a passkey: the sign-ins take them in turn
WRITES = {"INSERT", "UPDATE", "DELETE"}
HELD = "held"  # a microsecond of a transaction's life, counted like a statement


class StatementCounter:
    """Every statement sent through a Peewee cursor, by kind and by request part, and
    how long the transactions lasted (from BEGIN to the end of COMMIT: on SQLite, a
    write transaction holds the one write lock that long; `HELD`, in microseconds)."""

    def __init__(self):
        self.seen: list[str] = []
        self._original = None

    def install(self) -> None:
        database_class = type(db.obj)
        original = database_class.cursor
        seen = self.seen
        began = []

        class CountingCursor:
            def __init__(self, cursor):
                self._cursor = cursor

            def execute(self, sql, *args, **kwargs):
                kind = sql.split(None, 1)[0].upper().rstrip(";")
                seen.append(kind)
                if kind == "BEGIN":
                    began[:] = [time.perf_counter()]
                if kind == "COMMIT" or (kind in WRITES and not db.in_transaction()):
                    seen.append("commits")
                try:
                    return self._cursor.execute(sql, *args, **kwargs)
                finally:
                    if kind in ("COMMIT", "ROLLBACK") and began:
                        held = round((time.perf_counter() - began.pop()) * 1e6)
                        seen.extend([HELD] * held)

            def __getattr__(self, name):
                return getattr(self._cursor, name)

            def __iter__(self):
                return iter(self._cursor)

        def counting_cursor(database, *args, **kwargs):
            return CountingCursor(original(database, *args, **kwargs))

        self._original = (database_class, original)
        database_class.cursor = counting_cursor

    def uninstall(self) -> None:
        database_class, original = self._original
        database_class.cursor = original

    def take(self) -> collections.Counter:
        kinds = collections.Counter(self.seen)
        self.seen.clear()
        return kinds


def password_steps(app, users):
    """GET /login then POST /login, each a new browser; must land on /mfa/verify."""
    for user in users:
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = load.CSRF_RE.search(page).group(1)
        yield "GET /login"
        form = {"csrf_token": token, "username": user.username, "password": seed.PASSWORD}
        response = client.post("/login", data=form)
        assert response.headers["Location"] == "/mfa/verify", response.status
        yield "POST /login"


def code_steps(app, users):
    """POST /mfa/verify on a pending login with the current code; must land on /."""
    with app.app_context():
        pending = seed.seed_pending_logins(app, users)
    yield None  # the work so far is not the step's
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    for login in pending:
        client = app.test_client()
        client.set_cookie(cookie_name, login.cookie)
        form = {"csrf_token": login.csrf_token, "code": pyotp.TOTP(login.user.secret).now()}
        response = client.post("/mfa/verify", data=form)
        assert response.headers["Location"] == "/", response.get_data(as_text=True)[:300]
        yield "POST /mfa/verify"


def passkey_signins(app, keys, count: int):
    """POST /login/passkey from an anonymous browser (its cookie and CSRF token from
    one GET /login, as the bench's), each with an assertion to a challenge of its own;
    must land on /. The assertions are made and signed before the first is sent."""
    page = app.test_client().get("/login")
    token = load.CSRF_RE.search(page.get_data(as_text=True)).group(1)
    cookie = "; ".join(value.split(";", 1)[0] for value in page.headers.getlist("Set-Cookie"))
    answers = seed.passkey_assertions(app, cookie, keys, count)
    yield None  # the work so far is not the step's
    for answer in answers:
        form = {"csrf_token": token, "credential": answer}
        response = app.test_client(use_cookies=False).post(
            "/login/passkey", data=form, headers={"Cookie": cookie}
        )
        assert response.headers.get("Location") == "/", response.get_data(as_text=True)[-400:]
        yield "POST /login/passkey"


def token_exchanges(app, users):
    """POST /token: an app's server exchanging a code for tokens (client_secret_basic,
    the PKCE verifier), signing included; each code once, as `make bench` sends them."""
    with app.app_context():
        client = seed.seed_oidc_client()
        codes = seed.seed_oidc_codes(client, users)
    yield None  # the work so far is not the step's
    secret = base64.b64encode(f"{client.client_id}:{client.secret}".encode()).decode()
    for code in codes:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": seed.OIDC_REDIRECT_URI,
            "code_verifier": seed.PKCE_VERIFIER,
        }
        response = app.test_client(use_cookies=False).post(
            "/token", data=form, headers={"Authorization": f"Basic {secret}"}
        )
        assert "id_token" in (response.get_json(silent=True) or {}), response.get_data()[:300]
        yield "POST /token"


def measure(app, counter, requests, profile: bool = False) -> dict:
    """Statements per request part (the median over all steps), the median wall time
    of one whole step (all its parts) and the CPU time of all steps over their count.
    A part named None is preparation, left out."""
    profiler = _profiler() if profile else None
    by_part: dict[str, list[collections.Counter]] = collections.defaultdict(list)
    durations, step_started = [], time.perf_counter()
    cpu, cpu_started = 0.0, time.process_time()
    counter.take()
    if profiler:
        profiler.start()
    for part in requests:
        if part is None:
            counter.take()
            if profiler:  # start over: what came before was preparation
                profiler.stop()
                profiler = _profiler()
                profiler.start()
            step_started, cpu_started = time.perf_counter(), time.process_time()
            continue
        by_part[part].append(counter.take())
        if part != "GET /login":
            durations.append(time.perf_counter() - step_started)
            cpu += time.process_time() - cpu_started
            step_started, cpu_started = time.perf_counter(), time.process_time()
    if profiler:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    return {
        "count": len(durations),
        "median_ms": statistics.median(durations) * 1000,
        "cpu_ms": cpu / len(durations) * 1000,
        "statements": {part: _typical(kinds) for part, kinds in by_part.items()},
    }


def _typical(per_request: list[collections.Counter]) -> str:
    kinds = sorted({kind for counted in per_request for kind in counted} - {"commits", HELD})
    median = {kind: statistics.median(c[kind] for c in per_request) for kind in kinds}
    total = statistics.median(sum(c.values()) - c["commits"] - c[HELD] for c in per_request)
    commits = statistics.median(c["commits"] for c in per_request)
    held = statistics.median(c[HELD] for c in per_request) / 1000
    return f"{total:g} statements ({', '.join(f'{k} {v:g}' for k, v in median.items())}), " + (
        f"{commits:g} commits, transactions {held:.2f} ms"
    )


class _CProfile:
    """cProfile (the standard library's), cumulative and own time, top functions."""

    def __init__(self):
        self._profile = cProfile.Profile()

    def start(self) -> None:
        self._profile.enable()

    def stop(self) -> None:
        self._profile.disable()

    def output_text(self, **_options) -> str:
        out = io.StringIO()
        stats = pstats.Stats(self._profile, stream=out).strip_dirs()
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
        return out.getvalue()


def _profiler():
    try:
        from pyinstrument import Profiler
    except ImportError:
        return _CProfile()
    return Profiler(interval=0.0005)


if __name__ == "__main__":
    sys.exit(main())
