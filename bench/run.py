"""`make bench`: serve the app with gunicorn on a fresh seeded database, drive complete
sign-ins and gateway checks with wrk at several concurrency levels, print a table and
the targets, write JSON.

One pass per user count (default 5,000 then 100,000), each on a new database and a
new server: at every concurrency level the floor (a bare Flask app, `bench/floor.py`,
served by its own gunicorn with the same settings for the whole run), the baseline (a
trivial route of the real app), the gateway check (GET /auth/nginx with a signed-in
session's cookie), the same check for a WebDAV PROPFIND, the password step (GET +
POST /login), the code step (POST /mfa/verify on pending logins) and the passkey
sign-in (POST /login/passkey with an assertion to its own challenge). Server CPU per
operation: the gunicorn processes' CPU time (/proc) over the phase ÷ its operations.

    python -m bench.run [--users 5000,100000] [--clients 16,64] [--seconds 10]
                        [--phases floor,baseline,gateway,propfind,password,code,passkey]
                        [--workers 2]
                        [--threads 1] [--database-url URL] [--no-pool] [--output FILE]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pyotp

from standalone_mfa import create_app
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.crypto import generate_key
from standalone_mfa.core.db import db, is_sqlite

from . import load, seed

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
STEP_SECONDS = 30
SERVER_START_TIMEOUT = 60

PHASES = (
    "floor",
    "baseline",
    "gateway",
    "propfind",
    "apppw",
    "password",
    "code",
    "passkey",
    "userinfo",
    "token",
)
# App passwords (Basic credentials at the gateway) exist once the app has them.
HAS_APP_PASSWORDS = importlib.util.find_spec("standalone_mfa.factors.app_passwords") is not None

# Targets: reported, never asserted (a busy machine must not fail a build).
BASELINE_VS_FLOOR_MIN = 0.7
CODE_VS_FLOOR_MIN = {"sqlite": 0.25, "postgresql": 0.25}  # by engine (issue 18: both)
PEAK_RSS_MB_MAX = 80  # per worker
CODE_VS_BASELINE_MIN = 0.5
GATEWAY_VS_FLOOR_MIN = 0.5  # GET /auth/nginx with a signed-in cookie
GATEWAY_P99_OVER_P50_MAX = 10
USERINFO_VS_FLOOR_MIN = 0.5  # GET /userinfo with a Bearer access token
TOKEN_VS_FLOOR_MIN = 0.25  # POST /token: a code for tokens, the ID token signed
TOKEN_CODES = 5000  # codes seeded for one token phase (each exchanged once)
# The gateway phase's rules: one_factor on the host the checks ask about.
BENCH_HOST = "app.bench.test"
DAV_HOST = "dav.bench.test"  # the app-password phase's: a CalDAV client's requests
BENCH_RULES = {
    "default_policy": "deny",
    "rules": [
        *(
            [{"domain": DAV_HOST, "policy": "one_factor", "app_passwords": True}]
            if HAS_APP_PASSWORDS
            else []
        ),
        {"domain": "*.bench.test", "policy": "one_factor"},
    ],
}
BENCH_PORTAL = "http://auth.bench.test"
CODE_P99_OVER_P50_MAX = 10
PASSWORD_VS_BOUND_MIN = 0.8
P50_GROWTH_MAX = 1.2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A TERM (or an INT that a background job ignores otherwise) unwinds normally, so
    # gunicorn is stopped and the temporary files go.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    keys = {
        # Prefixed so that FLASK_SECRET_KEY can never parse as JSON (a number).
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
        "MFA_ENCRYPTION_KEYS": [generate_key()],
    }
    workdir = Path(tempfile.mkdtemp(prefix="smfa-bench-"))
    load_at_start = os.getloadavg()
    engine = _engine(args.database_url)
    floor = None
    try:
        with contextlib.ExitStack() as stack:
            if "floor" in args.phases:
                floor = stack.enter_context(
                    serve(args, {}, workdir, workdir / "gunicorn-floor.log", "bench.floor:app")
                )
            passes = [run_pass(args, keys, workdir, count, floor) for count in args.users]
            floor_rss = floor.peak_rss_mb() if floor else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "meta": {
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "engine": engine,
            "pool": args.pool,
            "phases": args.phases,
            "server": f"gunicorn, {args.workers} workers x {args.threads} threads",
            "workers": args.workers,
            "threads": args.threads,
            "clients": args.clients,
            "duration_s": args.duration,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),  # at the end of the run
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
            "generator": "wrk (bench/wrk.lua), requests built beforehand",
        },
        "password_hash": password_hash_summary(args, passes),
        "floor_peak_rss_mb": floor_rss,
        "passes": passes,
    }
    report["targets"] = targets(report)
    print_report(report)
    output = Path(args.output) if args.output else default_output(engine, args.pool)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {output}")
    return 0


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--users",
        type=_int_list,
        default=_int_list(os.environ.get("BENCH_USERS", "5000,100000")),
        help="user counts, one pass each (env BENCH_USERS; default 5000,100000)",
    )
    parser.add_argument("--clients", type=_int_list, default=[1, 16, 64])
    parser.add_argument(
        "--duration", "--seconds", dest="duration", type=float, default=10.0,
        help="seconds per phase",
    )  # fmt: skip
    parser.add_argument(
        "--phases",
        type=_phase_list,
        default=[name for name in PHASES if name != "apppw" or HAS_APP_PASSWORDS],
        help="which phases to measure, in this order (default: " + ",".join(PHASES) + ")",
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", 2)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 1)))
    parser.add_argument(
        "--database-url",
        help="a server database to WIPE and use (default: a new SQLite file per pass)",
    )
    parser.add_argument(
        "--no-pool",
        dest="pool",
        action="store_false",
        help="a new database connection per request (DATABASE_POOL = False)",
    )
    parser.add_argument(
        "--pending",
        type=int,
        default=20000,
        help="most pending logins prepared for one code-step phase (each sent once: the "
        "phase ends when they are used up, or after --seconds)",
    )
    parser.add_argument(
        "--app-passwords",
        type=int,
        default=1000,
        help="app passwords (one per user) the apppw phase cycles through",
    )
    parser.add_argument(
        "--passkeys",
        type=int,
        default=1000,
        help="users with a passkey (one each) whose assertions the passkey phase sends",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=5000,
        help="signed-in sessions the gateway phases cycle through",
    )
    parser.add_argument(
        "--hash-checks", type=int, default=5, help="password hash checks timed per phase"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="cProfile the app's workers into DIR/PID.prof (measurement; slows them)",
    )
    parser.add_argument(
        "--profile-path", default="/", help="profile only requests under this path"
    )
    parser.add_argument("--output", help="JSON file (default: bench/results/…)")
    return parser.parse_args(argv)


def _int_list(text: str) -> list[int]:
    return [int(part) for part in str(text).split(",") if part.strip()]


def _phase_list(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(PHASES)}; not {unknown}")
    if "apppw" in chosen and not HAS_APP_PASSWORDS:
        raise argparse.ArgumentTypeError("this version has no app passwords: no apppw phase")
    return [name for name in PHASES if name in chosen]


def _engine(database_url: str | None) -> str:
    """sqlite or postgresql (whatever the URL's spelling: postgres://, +pool)."""
    if database_url is None:
        return "sqlite"
    scheme = database_url.split(":")[0].split("+")[0]
    return "postgresql" if scheme.startswith("postgres") else scheme


def default_output(engine: str, pool: bool) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS / f"bench-{engine}{'' if pool else '-nopool'}-{stamp}.json"


# --- one pass: a database, a server, every phase at every concurrency level ----------


def run_pass(args, keys: dict, workdir: Path, count: int, floor) -> dict:
    database_url = args.database_url or f"sqlite:///{workdir}/bench-{count}.sqlite3"
    config = {
        **keys,
        "DATABASE_URL": database_url,
        "DATABASE_POOL": args.pool,
        "ACCESS_CONTROL": BENCH_RULES,
        "GATEWAY_PORTAL_URL": BENCH_PORTAL,
        "OIDC_ISSUER": BENCH_PORTAL,
    }
    app = create_app(config, str(workdir))
    with app.app_context():
        started = time.perf_counter()
        seed.fresh_database()
        users = seed.seed_users(count)
        seeding_s = time.perf_counter() - started
    print(f"\n{count} users seeded in {seeding_s:.1f} s; starting gunicorn", flush=True)
    print(HEADER, flush=True)
    log_path = workdir / f"gunicorn-{count}.log"
    with serve(args, config, workdir, log_path, "bench.wsgi:app") as server:
        if not database_url.startswith("sqlite"):
            server.database = PostgresBackends(app.config["DATABASE_URL"])
        phases = drive(args, app, server, floor, users)
        rss = server.peak_rss_mb()
        rss_now = server.rss_mb()
    with app.app_context():
        db.close()
    if any(phase["errors"] for phase in phases):
        print(f"gunicorn log tail ({log_path}):\n" + _tail(log_path), file=sys.stderr)
    return {
        "users": count,
        "seeding_s": round(seeding_s, 1),
        "phases": phases,
        "peak_rss_mb": rss,
        "rss_mb": rss_now,  # resident at the end of the pass (peak: during a password hash)
        "password_vs_bound": {
            str(phase["clients"]): _ratio(phase["rps"], phase["bound_rps"])
            for phase in phases
            if phase["phase"] == "password"
        },
        "code_vs_baseline": _ratios(phases, "code", "baseline", args.clients),
        "vs_floor": {
            name: _ratios(phases, name, "floor", args.clients)
            for name in PHASES[1:]
            if name in args.phases and "floor" in args.phases
        },
    }


def _ratios(phases, name: str, against: str, clients_list) -> dict:
    """req/s of phase `name` ÷ req/s of phase `against`, at each concurrency level
    where both were measured."""
    found = {}
    for clients in clients_list:
        top, bottom = _find(phases, name, clients), _find(phases, against, clients)
        if top and bottom:
            found[str(clients)] = _ratio(top["rps"], bottom["rps"])
    return found


def drive(args, app, server, floor, users: list[seed.BenchUser]) -> list[dict]:
    rng = random.Random(len(users))  # noqa: S311 - which users, not secrets
    last_step: dict[int, int] = {}  # user id -> time step whose code was submitted
    phases = []
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    host = load.host_of(server.url)
    signed_in, app_passwords = [], []
    if {"gateway", "propfind"} & set(args.phases):
        with app.app_context():
            signed_in = seed.seed_signed_in_sessions(users[: args.sessions])
    if "apppw" in args.phases:
        with app.app_context():
            app_passwords = seed.seed_app_passwords(users[: args.app_passwords])
    passkeys = (
        seed.seed_passkeys(app, users[: args.passkeys], soft_key_class())
        if ("passkey" in args.phases)
        else []
    )
    oidc_client, access_tokens = None, []
    if {"userinfo", "token"} & set(args.phases):
        with app.app_context():
            oidc_client = seed.seed_oidc_client()
            access_tokens = seed.seed_oidc_access_tokens(oidc_client, users[: args.sessions])
    warm_up(server, floor)
    fixed = {
        "floor": lambda: [load.http_request("GET", "/bench/ping", load.host_of(floor.url))],
        "baseline": lambda: [load.http_request("GET", "/bench/ping", host)],
        "gateway": lambda: [
            gateway_request(host, cookie_name, token, "GET") for token in signed_in
        ],
        "propfind": lambda: [
            gateway_request(host, cookie_name, token, "PROPFIND") for token in signed_in
        ],
        "apppw": lambda: [
            app_password_request(host, username, secret) for username, secret in app_passwords
        ],
        "password": lambda: password_requests(server, host, users, rng),
        "userinfo": lambda: [userinfo_request(host, token) for token in access_tokens],
    }
    checks = {
        "floor": "ping",
        "baseline": "ping",
        "gateway": "gateway",
        "propfind": "gateway",
        "apppw": "gateway",
        "userinfo": "userinfo",
    }
    for clients in args.clients:
        for name in args.phases:
            target = floor if name == "floor" else server
            if name == "code":
                pending = pending_logins(args, app, users, last_step, rng)
                requests = code_requests(host, cookie_name, pending, last_step)
                phases.append(measure(target, name, clients, args.duration, requests, "code", app))
                continue
            if name == "passkey":
                requests = passkey_requests(args, app, server, host, passkeys)
                phases.append(measure(target, name, clients, args.duration, requests, "code", app))
                continue
            if name == "token":
                with app.app_context():
                    chosen = rng.choices(users, k=min(args.pending, TOKEN_CODES))
                    codes = seed.seed_oidc_codes(oidc_client, chosen)
                requests = [token_request(host, oidc_client, code) for code in codes]
                summary = measure(target, name, clients, args.duration, requests, "token", app)
                phases.append(summary)
                continue
            bound = {}
            if name == "password":
                # Measured now, in this process, while the server is idle: the machine
                # may be busier or quieter than at any other moment of the run.
                with app.app_context():
                    hashed, hashed_cpu = seed.password_hash_seconds(args.hash_checks)
                bound = {
                    "hash_check_ms": round(hashed * 1000, 2),
                    "hash_check_cpu_ms": round(hashed_cpu * 1000, 2),
                    "bound_rps": round(args.workers / hashed, 2),
                }
            check = checks.get(name, "login")
            summary = measure(target, name, clients, args.duration, fixed[name](), check, app)
            phases.append({**summary, **bound})
    return phases


def gateway_request(host: str, cookie_name: str, token: str, method: str) -> bytes:
    """nginx's auth_request subrequest for a signed-in browser's request to a
    one_factor site: the original URL and method, and the session cookie."""
    path = "/static/app.css" if method == "GET" else "/dav/calendars/user/"
    headers = {
        "X-Original-URL": f"http://{BENCH_HOST}{path}",
        "X-Original-Method": method,
        "Cookie": f"{cookie_name}={token}",
    }
    return load.http_request("GET", "/auth/nginx", host, headers)


def app_password_request(host: str, username: str, secret: str) -> bytes:
    """nginx's subrequest for a calendar client's PROPFIND with an app password as
    Basic credentials (no session cookie, no HTML in Accept), on an app-password rule."""
    credentials = base64.b64encode(f"{username}:{secret}".encode()).decode()
    headers = {
        "X-Original-URL": f"http://{DAV_HOST}/calendars/{username}/",
        "X-Original-Method": "PROPFIND",
        "Authorization": f"Basic {credentials}",
        "Accept": "text/xml",
    }
    return load.http_request("GET", "/auth/nginx", host, headers)


def userinfo_request(host: str, access_token: str) -> bytes:
    """An app reading who signed in: GET /userinfo with the access token."""
    return load.http_request("GET", "/userinfo", host, {"Authorization": f"Bearer {access_token}"})


def token_request(host: str, client, code: str) -> bytes:
    """An app's server exchanging a code (client_secret_basic, PKCE verifier): the
    access token and the ID token, signed RS256, come back."""
    credentials = base64.b64encode(f"{client.client_id}:{client.secret}".encode()).decode()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": seed.OIDC_REDIRECT_URI,
        "code_verifier": seed.PKCE_VERIFIER,
    }
    headers = {
        "Authorization": f"Basic {credentials}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return load.http_request("POST", "/token", host, headers, urlencode(form).encode())


LOGIN_FORMS = 20  # anonymous browsers whose sign-in form the password phase posts
PASSKEY_SIGNINS_MAX = 8000  # assertions made for one passkey phase (each signed here)


def password_requests(server, host: str, users, rng) -> list[bytes]:
    """A new browser's sign-in, GET /login then POST /login, in turns. The POSTs carry
    the cookie and CSRF token of sign-in pages fetched from the server just before (wrk
    cannot carry them from one request to the next); the GETs are real page loads."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    forms = [load.login_form(server.url, opener) for _ in range(LOGIN_FORMS)]
    page = load.http_request("GET", "/login", host)
    requests = []
    for index in range(max(LOGIN_FORMS, 200)):
        cookie, csrf_token = forms[index % LOGIN_FORMS]
        form = {
            "csrf_token": csrf_token,
            "username": rng.choice(users).username,
            "password": seed.PASSWORD,
        }
        # The POST first: each connection starts with a step, not a page.
        requests += [load.form_post("/login", host, cookie, form), page]
    return requests


def code_requests(host: str, cookie_name: str, pending, last_step: dict[int, int]) -> list[bytes]:
    """POST /mfa/verify for each pending login, with the code of the current time step
    computed here from the user's secret. The server accepts it for the window's steps
    after this one too (MFA_TOTP_WINDOW), longer than a phase. A user is given at most
    one code per step: the server would rightly refuse a second as a replay."""
    requests = []
    for login in pending:
        otp = pyotp.TOTP(login.user.secret)
        step = otp.timecode(time.time())
        last_step[login.user.id] = step
        form = {"csrf_token": login.csrf_token, "code": otp.generate_otp(step)}
        requests.append(load.form_post("/mfa/verify", host, f"{cookie_name}={login.cookie}", form))
    return requests


def soft_key_class():
    """The tests' software WebAuthn authenticator (tests/support/softkey.py, on
    cryptography and cbor2): the bench answers the portal's options the same way."""
    path = REPO / "tests" / "support" / "softkey.py"
    spec = importlib.util.spec_from_file_location("bench_softkey", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SoftKey


def passkey_requests(args, app, server, host: str, keys: list) -> list[bytes]:
    """POST /login/passkey for a new browser each time, as the sign-in page's passkey
    form posts it: the anonymous cookie and CSRF token of sign-in pages fetched from
    the server just before (their ceremony binding is in that cookie), and an
    assertion to a challenge of its own, made beforehand by the product's own options
    function for that browser (wrk cannot sign one). Each is sent once: a challenge
    is single-use (SC-51)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    forms = [load.login_form(server.url, opener) for _ in range(LOGIN_FORMS)]
    each = -(-min(args.pending, PASSKEY_SIGNINS_MAX) // LOGIN_FORMS)
    requests = []
    for cookie, csrf_token in forms:
        for answer in seed.passkey_assertions(app, cookie, keys, each):
            form = {"csrf_token": csrf_token, "credential": answer}
            requests.append(load.form_post("/login/passkey", host, cookie, form))
    random.Random(len(requests)).shuffle(requests)  # noqa: S311 - order, not secrets
    return requests


def warm_up(server, floor) -> None:
    """A few requests first, so no phase pays for the workers' first imports."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(10):
        for target in (server, floor):
            if target:
                with opener.open(target.url + "/bench/ping", timeout=30) as response:
                    response.read()
    load.login_form(server.url, opener)


def measure(target, name, clients, duration, requests, check, app) -> dict:
    settle(app)
    cpu_before = target.cpu_seconds()
    database = getattr(target, "database", None)
    database_before = database.cpu_seconds() if database else None
    result = load.run_phase(
        name, target.url, clients, duration, requests, check, once=check in ("code", "token")
    )
    cpu = target.cpu_seconds() - cpu_before
    summary = result.summary()
    summary["server_cpu_pct"] = round(100 * cpu / result.duration_s, 1)
    # CPU the server spent per successful operation: what an operation costs, even when
    # other programs on the machine decide how much CPU the server gets.
    summary["server_cpu_ms_per_op"] = round(1000 * cpu / result.ok, 3) if result.ok else None
    # PostgreSQL's backends for this database work on the same cores: their share too.
    database = getattr(target, "database", None)
    database_cpu = database.cpu_seconds() - database_before if database else None
    summary["database_cpu_ms_per_op"] = (
        round(1000 * database_cpu / result.ok, 3) if database and result.ok else None
    )
    line = _row(summary)
    print(line, flush=True)
    return summary


def settle(app) -> None:
    """On SQLite, what the harness wrote before a phase (its users, sessions, pending
    logins, codes) is checkpointed into the database file and the WAL emptied: else
    the phase's first checkpoints copy and sync the harness's pages, a stall of up to
    seconds inside the phase that is not the phase's work."""
    with app.app_context():
        if is_sqlite():
            db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def pending_logins(args, app, users, last_step, rng) -> list[seed.PendingLogin]:
    """Pending logins for one code-step phase, for users whose current step is unused.
    If too few are left this step (small user counts), wait for the next one."""
    wanted = min(len(users), args.pending)
    fresh = unused_this_step(users, last_step)
    if len(fresh) < wanted / 2:
        time.sleep(STEP_SECONDS - time.time() % STEP_SECONDS + 0.1)
        fresh = unused_this_step(users, last_step)
    chosen = rng.sample(fresh, min(wanted, len(fresh)))
    with app.app_context():
        return seed.seed_pending_logins(app, chosen)


def unused_this_step(users, last_step: dict[int, int]) -> list:
    """The users whose code for the current time step has not been submitted yet."""
    step = int(time.time()) // STEP_SECONDS
    return [user for user in users if last_step.get(user.id, -1) < step]


def password_hash_summary(args, passes: list[dict]) -> dict:
    """The hash method and the median of every in-process check time of the run."""
    checks = [
        phase["hash_check_ms"]
        for each in passes
        for phase in each["phases"]
        if phase["phase"] == "password"
    ]
    if not checks:
        return {"method": current_method(), "check_ms": None, "check_cpu_ms": None}
    check_ms = statistics.median(checks)
    cpu_ms = statistics.median(
        phase["hash_check_cpu_ms"]
        for each in passes
        for phase in each["phases"]
        if phase["phase"] == "password"
    )
    return {
        "method": current_method(),
        "check_ms": round(check_ms, 2),
        "check_cpu_ms": round(cpu_ms, 2),
        "bound_rps": round(args.workers / (check_ms / 1000), 2),
    }


def current_method() -> str:
    """The production default's name (scrypt), without its parameters."""
    return DEFAULTS["PASSWORD_HASH_METHOD"].split(":")[0]


# --- the server ------------------------------------------------------------------------


class Server:
    def __init__(self, process: subprocess.Popen, url: str):
        self.process = process
        self.url = url

    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        master = self.process.pid
        return [master, *_children(master)]

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def peak_rss_mb(self) -> dict:
        """VmHWM (peak resident set) of the master and of each worker, in MB."""
        return self._memory("VmHWM:")

    def rss_mb(self) -> dict:
        """VmRSS (resident now) of the master and of each worker, in MB."""
        return self._memory("VmRSS:")

    def _memory(self, field: str) -> dict:
        return {
            "master": _status_mb(self.process.pid, field),
            "workers": [_status_mb(pid, field) for pid in _children(self.process.pid)],
        }


class PostgresBackends:
    """The PostgreSQL server processes serving one database (their command line reads
    "postgres: [CLUSTER:] USER DATABASE HOST(PORT) …"), for their CPU time."""

    def __init__(self, database_url: str):
        self.database = urlsplit(database_url).path.lstrip("/")

    def cpu_seconds(self) -> float:
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                words = (entry / "cmdline").read_bytes().decode(errors="replace").split()
                if words[:1] != ["postgres:"]:
                    continue
                if words[1:2] and words[1].endswith(":"):  # the cluster's name: "15/main:"
                    words = words[1:]
                if words[2:3] == [self.database]:
                    total += _cpu_seconds(int(entry.name))
        return total


@contextlib.contextmanager
def serve(args, config: dict, workdir: Path, log_path: Path, app_name: str):
    """gunicorn on a socket this process bound to a free port, handed over by fd, so no
    other program can take the port in between."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    env = {**os.environ, "BENCH_INSTANCE_PATH": str(workdir)}
    if config and args.profile:
        env |= {"BENCH_PROFILE": args.profile, "BENCH_PROFILE_PATH": args.profile_path}
    if config:  # the product (the floor takes no configuration)
        env |= {
            "FLASK_SECRET_KEY": config["SECRET_KEY"],
            "FLASK_MFA_ENCRYPTION_KEYS": json.dumps(config["MFA_ENCRYPTION_KEYS"]),
            "FLASK_DATABASE_URL": config["DATABASE_URL"],
            "FLASK_DATABASE_POOL": json.dumps(config["DATABASE_POOL"]),
            "FLASK_ACCESS_CONTROL": json.dumps(config["ACCESS_CONTROL"]),
            "FLASK_GATEWAY_PORTAL_URL": config["GATEWAY_PORTAL_URL"],
        }
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(args.workers),
        "--threads", str(args.threads),
        "--bind", f"fd://{listener.fileno()}",
        "--backlog", "2048",
        "--timeout", "120",
        "--graceful-timeout", "10",
        app_name,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, cwd=REPO, env=env, stdout=log, stderr=log, pass_fds=[listener.fileno()]
        )
    listener.close()
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        _wait_until_up(server, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(server: Server, log_path: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{_tail(log_path)}")
        with (
            contextlib.suppress(OSError),
            opener.open(server.url + "/bench/ping", timeout=5) as response,
        ):
            if response.status == 200 and _children(server.process.pid):
                return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {SERVER_START_TIMEOUT} s")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if _stat_fields(int(entry.name))[1] == str(pid):
                    found.append(int(entry.name))
    return sorted(found)


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, … (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _status_mb(pid: int, field: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- the report ------------------------------------------------------------------------


def _find(phases: list[dict], name: str, clients: int) -> dict | None:
    return next((p for p in phases if p["phase"] == name and p["clients"] == clients), None)


def _ratio(numerator, denominator) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def targets(report: dict) -> list[dict]:
    """Each target with its measured value and PASS/MISS, at the highest concurrency.
    A target whose phases were not measured (`--phases`) is left out."""
    passes = report["passes"]
    meta = report["meta"]
    top = max(meta["clients"])
    code_vs_floor_min = CODE_VS_FLOOR_MIN.get(meta["engine"], CODE_VS_FLOOR_MIN["sqlite"])
    found = []

    def add(name, value, limit, ok):
        found.append({"target": name, "value": value, "limit": limit, "pass": bool(ok)})

    def at_least(name, value, limit):
        add(name, value, f">= {limit}", value is not None and value >= limit)

    def at_most(name, value, limit):
        add(name, value, f"<= {limit}", value is not None and value <= limit)

    for each in passes:
        users = each["users"]
        where = f"at {top} clients, {users} users"
        errors = sum(p["errors"] for p in each["phases"] if p["clients"] == top)
        add(f"errors {where}", errors, 0, errors == 0)
        vs_floor = each["vs_floor"]
        if "baseline" in vs_floor:
            at_least(
                f"baseline / floor req/s {where}", vs_floor["baseline"][str(top)],
                BASELINE_VS_FLOOR_MIN,
            )  # fmt: skip
        if "code" in vs_floor:
            at_least(
                f"code step / floor req/s {where}", vs_floor["code"][str(top)], code_vs_floor_min
            )
        if "passkey" in vs_floor and "code" in vs_floor:
            # Issue 20: a passkey sign-in at least as fast, against the floor, as the
            # code step it replaces.
            code_ratio = vs_floor["code"][str(top)]
            add(
                f"passkey sign-in / floor req/s {where}",
                vs_floor["passkey"][str(top)],
                f">= {code_ratio} (the code step's)",
                vs_floor["passkey"][str(top)] >= code_ratio,
            )
        for name in ("gateway", "propfind", "apppw"):
            if name in vs_floor:
                at_least(
                    f"{name} check / floor req/s {where}", vs_floor[name][str(top)],
                    GATEWAY_VS_FLOOR_MIN,
                )  # fmt: skip
        if "userinfo" in vs_floor:
            at_least(
                f"userinfo / floor req/s {where}", vs_floor["userinfo"][str(top)],
                USERINFO_VS_FLOOR_MIN,
            )  # fmt: skip
        if "token" in vs_floor:
            at_least(
                f"token exchange / floor req/s {where}", vs_floor["token"][str(top)],
                TOKEN_VS_FLOOR_MIN,
            )  # fmt: skip
        gateway = _find(each["phases"], "gateway", top)
        if gateway:
            spread = _ratio(gateway["p99_ms"], gateway["p50_ms"])
            at_most(f"gateway check p99 / p50 {where}", spread, GATEWAY_P99_OVER_P50_MAX)
        if str(top) in each["code_vs_baseline"]:
            at_least(
                f"code step / baseline req/s {where}", each["code_vs_baseline"][str(top)],
                CODE_VS_BASELINE_MIN,
            )  # fmt: skip
        code = _find(each["phases"], "code", top)
        if code:
            spread = _ratio(code["p99_ms"], code["p50_ms"])
            at_most(f"code step p99 / p50 {where}", spread, CODE_P99_OVER_P50_MAX)
        if str(top) in each["password_vs_bound"]:
            at_least(
                f"password step / hash bound {where}", each["password_vs_bound"][str(top)],
                PASSWORD_VS_BOUND_MIN,
            )  # fmt: skip
        workers = [mb for mb in each["peak_rss_mb"]["workers"] if mb is not None]
        at_most(
            f"peak RSS per worker (MB), {users} users", max(workers, default=None),
            PEAK_RSS_MB_MAX,
        )  # fmt: skip
    if len(passes) > 1:
        small, large = passes[0], passes[-1]
        for name in ("code", "password"):
            if name not in meta["phases"]:
                continue
            growth = _ratio(
                _find(large["phases"], name, top)["p50_ms"],
                _find(small["phases"], name, top)["p50_ms"],
            )
            at_most(
                f"{name} step p50 at {large['users']} / at {small['users']} users, {top} clients",
                growth,
                P50_GROWTH_MAX,
            )
    return found


HEADER = (
    f"{'phase':<9} {'clients':>7} {'seconds':>7} {'ops/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
    f"{'p99 ms':>8} {'errors':>6} {'wrk CPU%':>8} {'srv CPU%':>8} {'srv ms/op':>9} "
    f"{'db ms/op':>8}"
)


def _row(p: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{p['phase']:<9} {p['clients']:>7} {p['duration_s']:>7.1f} {p['rps']:>8.1f} "
        f"{ms(p['p50_ms']):>8} "
        f"{ms(p['p95_ms']):>8} {ms(p['p99_ms']):>8} {p['errors']:>6} "
        f"{p['generator_cpu_pct']:>8.1f} {p['server_cpu_pct']:>8.1f} "
        f"{_cpu_ms(p['server_cpu_ms_per_op']):>9} {_cpu_ms(p.get('database_cpu_ms_per_op')):>8}"
    )


def print_report(report: dict) -> None:
    meta, hashing = report["meta"], report["password_hash"]
    pooling = "pooled connections" if meta["pool"] else "a connection per request"
    print(f"\n=== Standalone MFA benchmark: {meta['engine']} ({pooling}), {meta['server']} ===")
    load_start, load_end = meta["load_average_at_start"], meta["load_average"]
    print(
        f"load average (1, 5, 15 min) at start {_loads(load_start)}, at end {_loads(load_end)}"
        f" on {meta['cpu_count']} CPUs"
    )
    if hashing["check_ms"] is not None:
        print(
            f"password hash ({hashing['method']}): {hashing['check_ms']:.1f} ms per check "
            f"({hashing['check_cpu_ms']:.1f} ms CPU); "
            f"bound {hashing['bound_rps']:.1f} password steps/s ({meta['workers']} workers)"
        )
    if report["floor_peak_rss_mb"]:
        rss = report["floor_peak_rss_mb"]
        print(f"floor (bare Flask) peak RSS MB: workers {rss['workers']}, master {rss['master']}")
    for each in report["passes"]:
        print(f"\n{each['users']} users (seeded in {each['seeding_s']} s)")
        print(HEADER)
        for phase in each["phases"]:
            print(_row(phase))
        for name, ratios in each["vs_floor"].items():
            print(f"{name} / floor req/s: {_by_clients(ratios)}")
        if each["code_vs_baseline"]:
            print(f"code step / baseline req/s: {_by_clients(each['code_vs_baseline'])}")
        if each["password_vs_bound"]:
            print(f"password step / hash bound: {_by_clients(each['password_vs_bound'])}")
        rss, now = each["peak_rss_mb"], each["rss_mb"]
        print(
            f"peak RSS MB: workers {rss['workers']}, master {rss['master']}; "
            f"resident at the end: workers {now['workers']}"
        )
        busiest = max(phase["generator_cpu_pct"] for phase in each["phases"])
        print(f"load generator (wrk): at most {busiest}% of one core")
        for phase in each["phases"]:
            if phase["errors"]:
                examples = "; ".join(phase["error_examples"])
                print(f"errors in {phase['phase']} at {phase['clients']} clients: {examples}")
    print("\nTargets (reported, not asserted):")
    for target in report["targets"]:
        verdict = "PASS" if target["pass"] else "MISS"
        print(f"  {verdict}  {target['target']}: {target['value']} (target {target['limit']})")


def _cpu_ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _by_clients(ratios: dict) -> str:
    return ", ".join(f"{clients} clients {ratio}" for clients, ratio in ratios.items())


def _loads(loads) -> str:
    return " ".join(f"{value:.2f}" for value in loads)


if __name__ == "__main__":
    sys.exit(main())
